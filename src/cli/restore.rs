//! `cairn restore`: restore a snapshot (or part of it) into a directory.

use std::path::PathBuf;

use anyhow::Result;
use cairn::ops::restore::{
    Action, DbCheck, Overwrite, RestoreOptions, RestoreRoot, refusal, restore,
};
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
    /// What to do with files the target already holds that differ from
    /// the snapshot's: replace them (`always`; `if-changed` takes a file
    /// whose size and modification time match as unchanged without reading
    /// it), replace them only if the snapshot's is newer (`if-newer`), or
    /// keep them (`never`). Without it such a restore is refused before
    /// anything is written. Identical files are always left alone.
    #[arg(long, value_name = "WHEN")]
    overwrite: Option<OverwriteArg>,
    /// Remove files and directories in the restored directories that the
    /// snapshot lacks (with --include, only those that match).
    #[arg(long)]
    delete: bool,
    /// List what would change in the target, write nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// How each restored SQLite capture is checked: `quick` runs `PRAGMA
    /// quick_check` (every page read, the b-trees checked), `full` runs
    /// `PRAGMA integrity_check` (indexes compared with their tables too),
    /// `off` opens nothing. Every restored byte is re-hashed against its
    /// blob ID whatever this says.
    #[arg(long, value_name = "CHECK", default_value = "quick")]
    verify_db: VerifyDbArg,
    #[command(flatten)]
    filter: super::FilterArgs,
    #[command(flatten)]
    pub(super) job: super::JobArgs,
}

/// `--overwrite` values (restic's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OverwriteArg {
    Always,
    IfChanged,
    IfNewer,
    Never,
}

/// `--verify-db` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum VerifyDbArg {
    Quick,
    Full,
    Off,
}

impl From<VerifyDbArg> for DbCheck {
    fn from(a: VerifyDbArg) -> DbCheck {
        match a {
            VerifyDbArg::Quick => DbCheck::Quick,
            VerifyDbArg::Full => DbCheck::Full,
            VerifyDbArg::Off => DbCheck::Off,
        }
    }
}

/// The library's choice for `--overwrite` (absent: refuse).
fn overwrite(a: Option<OverwriteArg>) -> Overwrite {
    match a {
        None => Overwrite::Refuse,
        Some(OverwriteArg::Always) => Overwrite::Always,
        Some(OverwriteArg::IfChanged) => Overwrite::IfChanged,
        Some(OverwriteArg::IfNewer) => Overwrite::IfNewer,
        Some(OverwriteArg::Never) => Overwrite::Never,
    }
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let mut repo = g.open()?;
    let mut lock = repo.lock_shared()?;
    let _interrupts = super::Interrupts::install_exiting(&lock, || {})?;
    let repo = lock.load_index()?;
    let (spec, sub) = split_snapshot_path(&a.snapshot);
    let (id, snap) = super::select_snapshot(g, &repo, spec, &a.filter.filter()?, sub)?;
    let sub = sub.unwrap_or("/");
    warn_suspect(&repo, &id, &snap, sub)?;
    let root = match walk::find(&repo, &snap.tree, sub.as_bytes())? {
        Found::Dir(t, _) => RestoreRoot::Tree(t),
        Found::Entry(n) => RestoreRoot::Entry(Box::new(n)),
    };
    let opts = RestoreOptions {
        target: a.target.clone(),
        include: a.include.clone(),
        owners: None,
        overwrite: overwrite(a.overwrite),
        delete: a.delete,
        dry_run: a.dry_run,
        verify_db: a.verify_db.into(),
    };
    let pragma = opts.verify_db.pragma().unwrap_or_default();
    let reporter = Reporter::new(g, "restore");
    if sub == "/" && a.include.is_empty() && !a.dry_run {
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
    let differing = r.changes.iter().filter(|c| c.action == Action::Differs);
    let refused = differing
        .clone()
        .next()
        .map(|first| refusal(&a.target, &first.path, differing.count()));
    let counts = format!(
        "{}{}, {} unchanged, {} skipped, {}, {}, {}{}",
        super::count(r.files, "file"),
        if a.dry_run { "" } else { " written" },
        r.unchanged,
        r.skipped,
        super::count(r.dirs, "dir"),
        super::count(r.others, "other"),
        human_bytes(r.bytes),
        if a.delete {
            format!(", {} deleted", r.deleted)
        } else {
            String::new()
        }
    );
    if g.json {
        let errors = super::errors_json(&r.errors);
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "snapshot_id": id.to_hex(),
                "dry_run": a.dry_run,
                "files": r.files, "dirs": r.dirs, "others": r.others,
                "bytes": r.bytes, "unchanged": r.unchanged, "skipped": r.skipped,
                "deleted": r.deleted,
                "changes": r.changes.iter().map(|c| serde_json::json!({"action": c.action.name(), "path": c.path.to_string_lossy()})).collect::<Vec<_>>(),
                "errors": errors,
                "databases": r.databases.iter().map(|(p, v)| serde_json::json!({"path": p.to_string_lossy(), "check": pragma, "integrity_check": v})).collect::<Vec<_>>(),
            })
        );
    } else if a.dry_run {
        if !g.quiet {
            for c in &r.changes {
                println!(
                    "{:<8} {}{}",
                    c.action.name(),
                    c.path.display(),
                    if c.is_dir { "/" } else { "" }
                );
            }
            println!(
                "dry run: restoring snapshot {} to {} would write {counts}",
                id.short(),
                a.target.display(),
            );
        }
    } else {
        // Listed as they happened, unless the progress reporter was quiet.
        if !shows_errors {
            for (p, e) in &r.errors {
                eprintln!("error: {}: {e}", p.display());
            }
        }
        if !g.quiet {
            for (p, v) in &r.databases {
                println!("database {}: {pragma} {v}", p.display());
            }
        }
        if !g.quiet {
            println!(
                "restored snapshot {} to {}: {counts}",
                id.short(),
                a.target.display(),
            );
        }
    }
    if let Some(e) = refused {
        return Err(e.into());
    }
    if r.errors.is_empty() {
        Ok(super::exit::OK)
    } else {
        eprintln!("cairn: {} entries could not be restored", r.errors.len());
        Ok(super::exit::FATAL)
    }
}

/// Warn about the suspect database captures below `sub` in the snapshot
/// being restored, naming the snapshot that holds each one's last good
/// capture: after a night of damage, `restore latest` would otherwise put
/// the damaged file back without a word.
fn warn_suspect(
    repo: &cairn::repo::Repository,
    id: &cairn::id::SnapshotId,
    snap: &cairn::format::snapshot::Snapshot,
    sub: &str,
) -> Result<()> {
    let list = cairn::format::suspect::of_snapshot(snap);
    let prefix = sub.trim_end_matches('/').as_bytes();
    let below: Vec<_> = list
        .iter()
        .filter(|(p, _)| {
            p.starts_with(prefix) && (p.len() == prefix.len() || p[prefix.len()] == b'/')
        })
        .collect();
    if below.is_empty() {
        return Ok(());
    }
    let snaps = repo.load_snapshots()?;
    for (path, s) in below {
        let good = cairn::ops::forget::last_good_of(repo, &snaps, id, path)?;
        eprintln!(
            "warning: {} is a suspect capture in snapshot {} ({}); {}",
            super::lossy(path),
            id.short(),
            s.detail,
            match good {
                Some(g) => format!("its last good capture is in snapshot {}", g.short()),
                None => "no older snapshot holds a good capture of it".into(),
            }
        );
    }
    Ok(())
}
