//! `cairn check`: verify the repository's structure, and optionally its data.

use anyhow::Result;
use cairn::ops::check::{CheckOptions, ReadData, Severity, check};

use super::{GlobalArgs, human_bytes};

/// Arguments of `cairn check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also read, decrypt and verify every blob of every pack.
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Read only part of the packs: `N/T` (slice N of T, for rotating
    /// nightly checks) or `P%` (a random share).
    #[arg(long, value_name = "SUBSET")]
    read_data_subset: Option<String>,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let read_data = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => ReadData::parse_subset(s)?,
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    execute(g, read_data)
}

/// Check the repository, reading `read_data` of the packs, and print the
/// findings; `cairn run` calls this too.
pub fn execute(g: &GlobalArgs, read_data: ReadData) -> Result<i32> {
    let mut repo = g.open()?;
    let mut lock = repo.lock_shared()?;
    let _interrupts = super::Interrupts::install_exiting(&lock, || {})?;
    let reporter = super::progress::Reporter::new(g, "check");
    let r = check(&mut lock, &CheckOptions { read_data }, &reporter);
    reporter.finish();
    let r = r?;
    if g.json {
        super::print_summary(&r)?;
    } else {
        for p in &r.problems {
            let tag = match p.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            println!("{tag}: {}", p.message);
        }
        if !r.affected.is_empty() {
            println!(
                "damaged snapshot content ({}):",
                super::count(r.affected.len(), "path")
            );
            for line in &r.affected {
                println!("  {line}");
            }
        }
        if !g.quiet {
            println!(
                "checked {}, {}{}: {}, {}",
                super::count(r.snapshots, "snapshot"),
                super::count(r.trees, "tree"),
                if read_data == ReadData::None {
                    String::new()
                } else {
                    format!(
                        ", read {} ({}, {})",
                        super::count(r.packs_read, "pack"),
                        super::count(r.blobs_read, "blob"),
                        human_bytes(r.bytes_read)
                    )
                },
                super::count(r.errors(), "error"),
                super::count(r.problems.len() - r.errors(), "warning")
            );
        }
    }
    if r.errors() > 0 {
        if !g.json {
            eprintln!(
                "cairn: the repository has {} (see above); `cairn repair index` and `cairn repair snapshots` recover from lost packs and index files (docs/GUIDE.md, \"When check reports damage\")",
                super::count(r.errors(), "error")
            );
        }
        Ok(super::exit::FATAL)
    } else {
        Ok(super::exit::OK)
    }
}
