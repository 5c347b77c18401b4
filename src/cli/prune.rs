//! `cairn prune`: give back the space of blobs no snapshot references.

use anyhow::{Result, anyhow};
use cairn::ops::prune::{PruneOptions, PruneResult, plan, prune};

use super::{GlobalArgs, human_bytes};

/// Arguments of `cairn prune`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Unused data to tolerate, as a share of the repository: partly used
    /// packs are repacked, the most wasteful first, until no more than this
    /// is unused ("5%"; "0%" repacks every partly used pack).
    #[arg(long, default_value = "5%", value_name = "PERCENT")]
    max_unused: String,
    /// Only say what would be done.
    #[arg(long, short = 'n')]
    dry_run: bool,
}

/// Parse "5%" or "0.05" into a share.
pub fn parse_percent(s: &str) -> Result<f64> {
    let v = match s.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => s.trim().parse::<f64>(),
    }
    .map_err(|_| anyhow!("--max-unused {s:?}: give a percentage such as 5%"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(anyhow!("--max-unused {s:?} must be between 0% and 100%"));
    }
    Ok(v)
}

/// Print a prune result.
pub fn report(g: &GlobalArgs, r: &PruneResult) {
    if g.json {
        let _ = super::print_summary(r);
        return;
    }
    if g.quiet {
        return;
    }
    println!(
        "{}{} used and {} unused; {} deleted, {} repacked, {} left by interrupted runs deleted; {} replaced",
        if r.dry_run { "would prune: " } else { "" },
        r.used_blobs,
        super::count(r.unused_blobs, "blob"),
        super::count(r.packs_deleted, "pack"),
        r.packs_repacked,
        r.unindexed_packs_deleted,
        super::count(r.index_files_replaced, "index file")
    );
    if r.recent_packs_kept > 0 {
        println!(
            "{} with unused or unindexed data kept: younger than {} hours, they may belong to a backup still running",
            super::count(r.recent_packs_kept, "pack"),
            cairn::ops::prune::PACK_GRACE.as_secs() / 3600
        );
    }
    println!(
        "packs {} {} -> {} ({} freed)",
        if r.dry_run {
            "would go from"
        } else {
            "went from"
        },
        human_bytes(r.bytes_before),
        human_bytes(r.bytes_after),
        human_bytes(r.bytes_before.saturating_sub(r.bytes_after))
    );
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let opts = PruneOptions {
        max_unused: parse_percent(&a.max_unused)?,
        dry_run: a.dry_run,
    };
    execute(g, &opts)
}

/// The `--max-unused` default, 5%.
pub const DEFAULT_MAX_UNUSED: f64 = 0.05;

/// Prune (or plan, for a dry run) and print the result; `cairn run` calls
/// this too.
pub fn execute(g: &GlobalArgs, opts: &PruneOptions) -> Result<i32> {
    let opts = *opts;
    let mut repo = g.open()?;
    let r = if opts.dry_run {
        let mut lock = repo.lock_shared()?;
        let _interrupts = super::Interrupts::install(lock.cancel_token())?;
        let reporter = super::progress::Reporter::new(g, "prune");
        let r = plan(&mut lock, &opts, &reporter);
        reporter.finish();
        r
    } else {
        let mut lock = repo.lock_exclusive()?;
        let _interrupts = super::Interrupts::install(lock.cancel_token())?;
        let reporter = super::progress::Reporter::new(g, "prune");
        let r = prune(&mut lock, &opts, &reporter);
        reporter.finish();
        r
    };
    report(g, &r?);
    Ok(super::exit::OK)
}
