//! `cairn restore`: restore a snapshot (or part of it) into a directory.

use std::path::PathBuf;

use anyhow::Result;
use cairn::ops::restore::{RestoreOptions, RestoreRoot, restore};
use cairn::ops::walk::{self, Found};

use super::progress::Reporter;
use super::{GlobalArgs, human_bytes, split_snapshot_path};
use cairn::ops::Progress;

/// Arguments of `cairn restore`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// `SNAPSHOT` or `SNAPSHOT:PATH` (restore only the content of PATH).
    snapshot: String,
    /// Directory to restore into.
    #[arg(long, short = 't')]
    target: PathBuf,
    /// Only restore entries matching this glob (repeatable).
    #[arg(long = "include", short = 'i', value_name = "GLOB")]
    include: Vec<String>,
    #[command(flatten)]
    filter: super::FilterArgs,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let mut repo = g.open()?;
    let mut lock = repo.lock_shared()?;
    let _interrupts = super::Interrupts::install_exiting(&lock, || {})?;
    let repo = lock.load_index()?;
    let (spec, sub) = split_snapshot_path(&a.snapshot);
    let (id, snap) = repo.select_snapshot(spec, &a.filter.filter()?)?;
    let sub = sub.unwrap_or("/");
    let root = match walk::find(&repo, &snap.tree, sub.as_bytes())? {
        Found::Dir(t, _) => RestoreRoot::Tree(t),
        Found::Entry(n) => RestoreRoot::Entry(Box::new(n)),
    };
    let opts = RestoreOptions {
        target: a.target.clone(),
        include: a.include.clone(),
        owners: None,
    };
    let reporter = Reporter::new(g, "restore");
    if sub == "/" && a.include.is_empty() {
        reporter.start(
            "restore",
            Some(snap.summary.files),
            Some(snap.summary.total_bytes),
        );
    }
    let r = restore(&repo, &root, sub.as_bytes(), &opts, &reporter);
    reporter.finish();
    let shows_errors = reporter.shows_errors();
    let r = r?;
    if g.json {
        let errors = super::errors_json(&r.errors);
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "snapshot_id": id.to_hex(),
                "files": r.files, "dirs": r.dirs, "others": r.others,
                "bytes": r.bytes, "errors": errors,
                "databases": r.databases.iter().map(|(p, v)| serde_json::json!({"path": p.to_string_lossy(), "integrity_check": v})).collect::<Vec<_>>(),
            })
        );
    } else {
        // Listed as they happened, unless the progress reporter was quiet.
        if !shows_errors {
            for (p, e) in &r.errors {
                eprintln!("error: {}: {e}", p.display());
            }
        }
        if !g.quiet {
            for (p, v) in &r.databases {
                println!("database {}: integrity_check {v}", p.display());
            }
        }
        if !g.quiet {
            println!(
                "restored snapshot {} to {}: {} files, {} dirs, {} others, {}",
                id.short(),
                a.target.display(),
                r.files,
                r.dirs,
                r.others,
                human_bytes(r.bytes)
            );
        }
    }
    if r.errors.is_empty() {
        Ok(super::exit::OK)
    } else {
        eprintln!("cairn: {} entries could not be restored", r.errors.len());
        Ok(super::exit::FATAL)
    }
}
