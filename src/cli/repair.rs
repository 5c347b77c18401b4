//! `cairn repair`: rebuild the index from the packs, and rewrite damaged
//! snapshots into ones that hold everything still readable.

use anyhow::{Result, bail};
use cairn::id::SnapshotId;
use cairn::ops::repair::{
    REPAIRED_TAG, RepairIndexOptions, RepairSnapshotsOptions, plan_repair_index, repair_index,
    repair_snapshots, repair_snapshots_and_forget,
};

use super::{GlobalArgs, lossy};

/// Arguments of `cairn repair`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// Rebuild the index from the headers of the packs that are there
    /// (after a pack was lost, or an index file damaged or copied back).
    Index {
        /// Only say what would be done.
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
    /// Rewrite snapshots that need missing trees or data into new
    /// snapshots (tagged "repaired") holding everything still readable;
    /// files with missing data are left out, directories whose tree is
    /// missing become empty. Run `repair index` first.
    Snapshots {
        /// Snapshots to repair (ID prefixes or `latest`); all by default.
        snapshots: Vec<String>,
        /// Delete the damaged originals once their repaired copies are
        /// stored (and snapshot objects that cannot be read at all).
        #[arg(long)]
        forget: bool,
        /// Only say what would be done.
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    match &a.what {
        What::Index { dry_run } => index(g, *dry_run),
        What::Snapshots {
            snapshots,
            forget,
            dry_run,
        } => snapshots_cmd(g, snapshots, *forget, *dry_run),
    }
}

fn index(g: &GlobalArgs, dry_run: bool) -> Result<i32> {
    let mut repo = g.open()?;
    let reporter;
    let interrupts;
    let r = if dry_run {
        let mut lock = repo.lock_shared()?;
        interrupts = super::Interrupts::install(lock.cancel_token())?;
        reporter = super::progress::Reporter::new(g, "repair index");
        plan_repair_index(&mut lock, &reporter)
    } else {
        let mut lock = repo.lock_exclusive()?;
        interrupts = super::Interrupts::install(lock.cancel_token())?;
        reporter = super::progress::Reporter::new(g, "repair index");
        repair_index(&mut lock, &RepairIndexOptions { dry_run }, &reporter)
    };
    reporter.finish();
    drop(interrupts);
    let r = r?;
    let hex = |v: &[cairn::id::PackId]| v.iter().map(|p| p.to_hex()).collect::<Vec<_>>();
    if g.json {
        super::print_summary(&serde_json::json!({
            "dry_run": r.dry_run,
            "unchanged": r.unchanged,
            "packs": r.packs,
            "blobs": r.blobs,
            "packs_added": hex(&r.packs_added),
            "packs_missing": hex(&r.packs_missing),
            "packs_unreadable": r.packs_unreadable.iter().map(|u| serde_json::json!({
                "pack": u.pack.to_hex(),
                "error": u.error,
                "kept_old_entries": u.kept_old_entries,
            })).collect::<Vec<_>>(),
            "index_files_written": r.index_files_written,
            "index_files_removed": r.index_files_removed,
        }))?;
        return Ok(super::exit::OK);
    }
    for p in &r.packs_missing {
        println!("pack {p} is missing: its blobs are lost and no longer indexed");
    }
    for p in &r.packs_added {
        println!("pack {p} was in no index file: indexed from its header");
    }
    for u in &r.packs_unreadable {
        if u.kept_old_entries {
            println!(
                "pack {}: header unusable ({}); its entries from the old index are kept, each blob is still authenticated when read",
                u.pack, u.error
            );
        } else {
            println!(
                "pack {}: header unusable ({}) and no index file listed it: its blobs cannot be located; it is left in place (`cairn prune` would delete it as unindexed: keep a copy first if you want to try to recover it)",
                u.pack, u.error
            );
        }
    }
    if !g.quiet {
        if r.unchanged {
            println!(
                "the index already matches the {} ({}): nothing to do",
                super::count(r.packs, "pack"),
                super::count(r.blobs, "blob")
            );
        } else if r.dry_run {
            println!(
                "would index {} ({}) in new index files replacing the old ones (dry run: nothing changed)",
                super::count(r.packs, "pack"),
                super::count(r.blobs, "blob")
            );
        } else {
            println!(
                "indexed {} ({}): {} written, {} old ones removed",
                super::count(r.packs, "pack"),
                super::count(r.blobs, "blob"),
                super::count(r.index_files_written, "index file"),
                r.index_files_removed
            );
        }
        if !r.packs_missing.is_empty() && !r.dry_run {
            println!(
                "snapshots that used the missing packs are damaged: run `cairn repair snapshots --forget`, then `cairn check`"
            );
        }
    }
    Ok(super::exit::OK)
}

fn snapshots_cmd(g: &GlobalArgs, specs: &[String], forget: bool, dry_run: bool) -> Result<i32> {
    let mut repo = g.open()?;
    let opts = RepairSnapshotsOptions { forget, dry_run };
    let reporter;
    let interrupts;
    let r = if forget && !dry_run {
        let mut lock = repo.lock_exclusive()?;
        interrupts = super::Interrupts::install(lock.cancel_token())?;
        let ids = resolve_all(&lock, specs)?;
        reporter = super::progress::Reporter::new(g, "repair snapshots");
        repair_snapshots_and_forget(&mut lock, &ids, &opts, &reporter)
    } else {
        let mut lock = repo.lock_shared()?;
        interrupts = super::Interrupts::install(lock.cancel_token())?;
        let ids = resolve_all(&lock, specs)?;
        reporter = super::progress::Reporter::new(g, "repair snapshots");
        repair_snapshots(&mut lock, &ids, &opts, &reporter)
    };
    reporter.finish();
    drop(interrupts);
    let r = r?;
    if g.json {
        super::print_summary(&serde_json::json!({
            "dry_run": r.dry_run,
            "snapshots": r.snapshots,
            "intact": r.intact,
            "repaired": r.repaired.iter().map(|x| serde_json::json!({
                "original": x.original.to_hex(),
                "id": x.id.map(|i| i.to_hex()),
                "earlier": x.earlier,
                "lost": x.lost.iter().map(|l| serde_json::json!({
                    "path": lossy(&l.path),
                    "reason": l.reason,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "unreadable": r.unreadable.iter().map(|(id, e)| serde_json::json!({
                "id": id.to_hex(),
                "error": e,
            })).collect::<Vec<_>>(),
            "removed": r.removed.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
            "tree_blobs_added": r.tree_blobs_added,
        }))?;
        return Ok(super::exit::OK);
    }
    for x in &r.repaired {
        println!(
            "snapshot {}: {} lost",
            x.original.short(),
            super::count(x.lost.len(), "path")
        );
        for l in &x.lost {
            println!("  {} ({})", lossy(&l.path), l.reason);
        }
        match (x.id, x.earlier) {
            (Some(id), true) => println!(
                "  already repaired as snapshot {} by an earlier run",
                id.short()
            ),
            (Some(id), false) => {
                println!("  saved as snapshot {} (tag {REPAIRED_TAG:?})", id.short())
            }
            (None, _) => println!("  would be saved as a new snapshot (tag {REPAIRED_TAG:?})"),
        }
    }
    for (id, e) in &r.unreadable {
        println!(
            "snapshot {} cannot be read: {e}{}",
            id.short(),
            if forget {
                ""
            } else {
                " (`--forget` removes it)"
            }
        );
    }
    if !g.quiet {
        if !r.removed.is_empty() {
            println!(
                "removed {}",
                super::count(r.removed.len(), "damaged snapshot")
            );
        }
        println!(
            "{} {} of {}; {} intact{}",
            if r.dry_run {
                "would repair"
            } else {
                "repaired"
            },
            r.repaired.len(),
            super::count(r.snapshots, "snapshot"),
            r.intact,
            if r.dry_run {
                " (dry run: nothing changed)"
            } else {
                ""
            }
        );
        let damaged_left = !r.repaired.is_empty() || !r.unreadable.is_empty();
        if !forget && !r.dry_run && damaged_left {
            println!(
                "the damaged originals are kept; `cairn repair snapshots --forget` removes them (check reports them until then)"
            );
        }
    }
    Ok(super::exit::OK)
}

/// The snapshots named (`latest` or ID prefixes).
fn resolve_all(repo: &cairn::repo::Repository, specs: &[String]) -> Result<Vec<SnapshotId>> {
    let mut ids = Vec::new();
    for spec in specs {
        ids.push(if spec == "latest" {
            repo.find_snapshot(spec)?.0
        } else {
            resolve(repo, spec)?
        });
    }
    Ok(ids)
}

/// A snapshot ID from a unique hex prefix (at least 4 characters), without
/// reading the snapshot: one that cannot be read can still be named.
fn resolve(repo: &cairn::repo::Repository, spec: &str) -> Result<SnapshotId> {
    let spec_l = spec.to_ascii_lowercase();
    if spec_l.len() < 4 || !spec_l.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{spec:?} is not a snapshot ID: give `latest` or at least 4 hex characters");
    }
    let matches: Vec<SnapshotId> = repo
        .list_snapshot_ids()?
        .into_iter()
        .filter(|id| id.to_hex().starts_with(&spec_l))
        .collect();
    match matches.as_slice() {
        [id] => Ok(*id),
        [] => bail!("no snapshot matches {spec:?}"),
        _ => bail!(
            "{spec:?} matches {} snapshots; give more characters",
            matches.len()
        ),
    }
}
