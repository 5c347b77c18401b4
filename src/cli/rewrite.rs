//! `cairn rewrite`: new snapshots without the entries matching exclude
//! patterns (a secret or a huge file backed up by mistake); with
//! `--forget`, the originals removed.

use anyhow::{Result, bail};
use cairn::id::SnapshotId;
use cairn::ops::rewrite::{
    REWRITTEN_TAG, RewriteOptions, RewriteResult, rewrite, rewrite_and_forget,
};
use cairn::source::exclude::ExcludeMatcher;

use super::{GlobalArgs, count, human_bytes, lossy};

/// Which snapshots `rewrite` and `tag` change: the IDs given, else every
/// snapshot the filters pass (all of them with no filter), as restic does.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Selection {
    /// Snapshots to change (ID prefixes or `latest`); without any, every
    /// snapshot that passes --host, --tag and --path (all by default).
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// Only snapshots of this host.
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Only snapshots with this tag (repeat to require several).
    #[arg(long, value_name = "TAG")]
    tag: Vec<String>,
    /// Only snapshots that backed up this path.
    #[arg(long, value_name = "PATH")]
    path: Option<String>,
    #[command(flatten)]
    pub(super) job: super::JobArgs,
}

impl Selection {
    /// The IDs of the selected snapshots, resolved under the caller's lock.
    pub fn resolve(
        &self,
        g: &GlobalArgs,
        repo: &cairn::repo::Repository,
    ) -> Result<Vec<SnapshotId>> {
        let filter = g.scoped(cairn::repo::SnapshotFilter {
            host: self.host.clone(),
            tags: self.tag.clone(),
            path: self
                .path
                .as_deref()
                .map(|p| p.trim_end_matches('/').as_bytes().to_vec())
                .map(|p| if p.is_empty() { b"/".to_vec() } else { p }),
            ..Default::default()
        });
        if self.snapshots.is_empty() {
            let all = repo.load_snapshots()?;
            if all.is_empty() {
                bail!("the repository has no snapshots");
            }
            let ids: Vec<SnapshotId> = all
                .into_iter()
                .filter(|(_, s)| filter.matches(s))
                .map(|(id, _)| id)
                .collect();
            if ids.is_empty() {
                bail!("no snapshot matches {}", filter.describe());
            }
            return Ok(ids);
        }
        let mut ids = Vec::new();
        for spec in &self.snapshots {
            let (id, _) = repo.select_snapshot(spec, &filter)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

/// Arguments of `cairn rewrite`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Leave out entries matching PATTERN (repeatable; the rules of
    /// `backup --exclude`: a pattern without `/` matches a name anywhere,
    /// one with `/` the whole path, a trailing `/` only directories).
    #[arg(long, short = 'e', value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Read exclude patterns from FILE, one per line (repeatable).
    #[arg(long, value_name = "FILE")]
    exclude_file: Vec<std::path::PathBuf>,
    /// Remove each original once its new snapshot is stored (`cairn prune`
    /// then deletes the data only the originals used).
    #[arg(long)]
    forget: bool,
    /// Only say what would be removed; write nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    #[command(flatten)]
    pub(super) select: Selection,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let mut exclude = a.exclude.clone();
    for f in &a.exclude_file {
        exclude.extend(ExcludeMatcher::read_file(f)?);
    }
    if exclude.iter().all(|p| p.trim().is_empty()) {
        anyhow::bail!("nothing to exclude: give --exclude PATTERN or --exclude-file FILE");
    }
    // Bad patterns are reported before the repository is opened.
    ExcludeMatcher::new(&exclude, &[])?;
    let opts = RewriteOptions {
        exclude,
        forget: a.forget,
        dry_run: a.dry_run,
    };
    let mut repo = g.open()?;
    let reporter;
    let r = if a.forget && !a.dry_run {
        let mut lock = repo.lock_exclusive()?;
        let ids = a.select.resolve(g, &lock)?;
        reporter = super::progress::Reporter::new(g, "rewrite");
        rewrite_and_forget(&mut lock, &ids, &opts, &reporter)
    } else {
        let mut lock = repo.lock_shared()?;
        let ids = a.select.resolve(g, &lock)?;
        reporter = super::progress::Reporter::new(g, "rewrite");
        rewrite(&mut lock, &ids, &opts, &reporter)
    };
    reporter.finish();
    let r = r?;
    if g.json {
        print_json(&r)?;
        return Ok(super::exit::OK);
    }
    for x in &r.rewritten {
        println!(
            "snapshot {}: {} {}",
            x.original.short(),
            count(x.removed.len() as u64, "entry"),
            if r.dry_run {
                "would be removed"
            } else {
                "removed"
            }
        );
        for e in &x.removed {
            let c = &e.counts;
            let what = if e.kind == "dir" {
                format!(
                    "dir with {}, {}",
                    count(c.files, "file"),
                    human_bytes(c.bytes)
                )
            } else if e.kind == "file" {
                format!("file, {}", human_bytes(c.bytes))
            } else {
                e.kind.to_string()
            };
            println!("  {} ({what})", lossy(&e.path));
        }
        match (x.id, x.earlier) {
            (Some(id), true) => println!(
                "  already rewritten as snapshot {} by an earlier run",
                id.short()
            ),
            (Some(id), false) => {
                println!("  saved as snapshot {} (tag {REWRITTEN_TAG:?})", id.short())
            }
            (None, _) => println!("  would be saved as a new snapshot (tag {REWRITTEN_TAG:?})"),
        }
    }
    if !g.quiet {
        if !r.removed.is_empty() {
            println!(
                "removed {}",
                count(r.removed.len() as u64, "original snapshot")
            );
        }
        println!(
            "{} {} of {}; {} had nothing to exclude{}",
            if r.dry_run {
                "would rewrite"
            } else {
                "rewrote"
            },
            r.rewritten.len(),
            count(r.snapshots, "snapshot"),
            r.unchanged,
            if r.dry_run {
                " (dry run: nothing changed)"
            } else {
                ""
            }
        );
        if !r.rewritten.is_empty() && !r.dry_run {
            if a.forget {
                println!("run `cairn prune` to delete the data only the originals used");
            } else {
                println!(
                    "the originals are kept, and so is their data: `cairn rewrite --forget` removes them (then `cairn prune`)"
                );
            }
        }
    }
    Ok(super::exit::OK)
}

/// The summary of `rewrite` and `tag`.
pub fn print_json(r: &RewriteResult) -> Result<()> {
    super::print_summary(&serde_json::json!({
        "dry_run": r.dry_run,
        "snapshots": r.snapshots,
        "unchanged": r.unchanged,
        "rewritten": r.rewritten.iter().map(|x| serde_json::json!({
            "original": x.original.to_hex(),
            "id": x.id.map(|i| i.to_hex()),
            "earlier": x.earlier,
            "tags": x.tags,
            "removed": x.removed.iter().map(|e| serde_json::json!({
                "path": lossy(&e.path),
                "type": e.kind,
                "files": e.counts.files,
                "dirs": e.counts.dirs,
                "others": e.counts.others,
                "bytes": e.counts.bytes,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "removed": r.removed.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
        "tree_blobs_added": r.tree_blobs_added,
    }))
}
