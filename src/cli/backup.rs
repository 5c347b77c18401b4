//! `cairn backup`: back up paths into a new snapshot.

use std::path::PathBuf;

use anyhow::Result;
use cairn::ops::backup::{BackupOptions, StreamSource, backup};
use cairn::source::exclude::ExcludeMatcher;

use super::progress::Reporter;
use super::{GlobalArgs, count, human_bytes};
use cairn::ops::Progress;

/// Arguments of `cairn backup`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files and directories to back up.
    #[arg(required_unless_present_any = ["stdin", "stdin_from_command"])]
    paths: Vec<PathBuf>,
    /// Store standard input as one file (see --stdin-filename).
    #[arg(long, conflicts_with = "stdin_from_command")]
    stdin: bool,
    /// Run the command given after `--` and store its output as one file;
    /// if it exits non-zero the backup fails and no snapshot is written.
    #[arg(long, requires = "command")]
    stdin_from_command: bool,
    /// Name of the file that holds standard input or the command's output.
    #[arg(long, default_value = "stdin", value_name = "NAME")]
    stdin_filename: String,
    /// The command for --stdin-from-command.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
    /// Exclude entries matching a glob (a pattern without `/` matches any name).
    #[arg(long = "exclude", short = 'e', value_name = "GLOB")]
    exclude: Vec<String>,
    /// Read exclude patterns from a file (one per line).
    #[arg(long = "exclude-file", value_name = "FILE")]
    exclude_file: Vec<PathBuf>,
    /// Exclude a directory if it contains an entry with this name.
    #[arg(long = "exclude-if-present", value_name = "NAME")]
    exclude_if_present: Vec<String>,
    /// Exclude directories tagged as caches (a valid CACHEDIR.TAG file).
    #[arg(long)]
    exclude_caches: bool,
    /// Do not cross filesystem boundaries.
    #[arg(long, short = 'x')]
    one_file_system: bool,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tag: Vec<String>,
    /// Host name to record instead of this machine's.
    #[arg(long = "host", value_name = "HOST")]
    host: Option<String>,
    /// Record this time for the snapshot instead of now (same forms as
    /// --as-of).
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
    /// Snapshot to compare against (default: the latest of this host with
    /// the same paths).
    #[arg(long, value_name = "SNAPSHOT")]
    parent: Option<String>,
    /// Read every file, even those unchanged since the parent snapshot.
    #[arg(long)]
    force: bool,
    /// Do not compare inode numbers to detect changes (unstable on some
    /// network and FUSE filesystems).
    #[arg(long)]
    ignore_inode: bool,
    /// Do not compare ctimes to detect changes.
    #[arg(long)]
    ignore_ctime: bool,
    /// Capture live SQLite databases consistently (on), or store them as
    /// plain files (off).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    sqlite: String,
    /// Check each captured database with SQLite's quick_check (quick), or
    /// not (off). A database that fails it, is no longer a database, or
    /// had most of its pages rewritten is stored, reported as suspect, and
    /// the backup exits with 3.
    #[arg(long, default_value = "quick", value_parser = ["quick", "off"])]
    sqlite_check: String,
    /// Databases larger than this are checked a slice of their tables at a
    /// time, drawn at random each capture (e.g. 256M, 2G).
    #[arg(long, default_value = "256M", value_name = "SIZE")]
    sqlite_check_limit: String,
    /// Seconds to wait for a busy SQLite database before reporting it.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    sqlite_timeout: u64,
    /// zstd level for new data (0 = off; default: the repository's).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=22))]
    compression: Option<i32>,
    /// Files read ahead at once, apart from the CPU workers (0: no
    /// read-ahead; more for fast disks and arrays, fewer for one spinning
    /// disk).
    #[arg(long, value_name = "N", default_value_t = cairn::ops::backup::DEFAULT_READ_CONCURRENCY as u16,
          value_parser = clap::value_parser!(u16).range(0..=1024))]
    read_concurrency: u16,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    execute(g, &options(a)?, a.parent.as_deref()).map(|r| r.code)
}

/// A finished backup, for `cairn run`.
pub struct Done {
    /// Exit code: OK, or PARTIAL when entries were left out.
    pub code: i32,
    /// The new snapshot.
    pub id: cairn::id::SnapshotId,
    /// The entries left out, with the reason.
    pub errors: Vec<(PathBuf, String)>,
    /// The files that changed while they were read, with what changed.
    pub changed: Vec<(PathBuf, String)>,
    /// Suspect database captures, with why.
    pub suspects: Vec<(PathBuf, String)>,
    /// Files in the snapshot.
    pub files: u64,
    /// Plaintext bytes of the blobs new to the repository.
    pub bytes_added: u64,
    /// Bytes of the repository's packs after the backup.
    pub repository_bytes: u64,
}

/// The engine's options for these arguments (exclude files read).
fn options(a: &Args) -> Result<BackupOptions> {
    let mut excludes = a.exclude.clone();
    for f in &a.exclude_file {
        excludes.extend(ExcludeMatcher::read_file(f)?);
    }
    Ok(BackupOptions {
        paths: a.paths.clone(),
        excludes,
        exclude_if_present: a.exclude_if_present.clone(),
        exclude_caches: a.exclude_caches,
        one_file_system: a.one_file_system,
        tags: a.tag.clone(),
        host: a.host.clone(),
        compression_level: a.compression,
        // As many as the backend takes at once.
        writers: None,
        read_concurrency: Some(usize::from(a.read_concurrency)),
        parent: None,
        force: a.force,
        ignore_inode: a.ignore_inode,
        ignore_ctime: a.ignore_ctime,
        sqlite_off: a.sqlite == "off",
        sqlite_check_off: a.sqlite_check == "off",
        sqlite_check_limit: Some(super::parse_size(
            "--sqlite-check-limit",
            &a.sqlite_check_limit,
        )?),
        time_ns: a
            .time
            .as_deref()
            .map(|t| cairn::repo::parse_time(t, jiff::Zoned::now()))
            .transpose()?,
        stream: if a.stdin {
            Some(StreamSource::Stdin {
                filename: a.stdin_filename.clone(),
            })
        } else if a.stdin_from_command {
            Some(StreamSource::Command {
                argv: a.command.clone(),
                filename: a.stdin_filename.clone(),
            })
        } else {
            None
        },
        sqlite_timeout: Some(std::time::Duration::from_secs(a.sqlite_timeout)),
    })
}

/// Run a backup with these options (and the parent snapshot `parent`
/// names, if any) and print its result; `cairn run` calls this too.
pub fn execute(g: &GlobalArgs, opts: &BackupOptions, parent: Option<&str>) -> Result<Done> {
    // Tags, host and paths the format cannot carry fail before the
    // repository is opened or anything is written.
    opts.validate()?;
    let mut repo = g.open()?;
    let mut lock = repo.lock_shared()?;
    execute_locked(g, &mut lock, opts, parent)
}

/// [`execute`] under a lock the caller took: `cairn run` opens and locks
/// the repository before its `before` hooks stop anything.
pub fn execute_locked(
    g: &GlobalArgs,
    lock: &mut cairn::repo::SharedLock<'_>,
    opts: &BackupOptions,
    parent: Option<&str>,
) -> Result<Done> {
    opts.validate()?;
    let mut opts = opts.clone();
    if let Some(spec) = parent {
        opts.parent = Some(lock.find_snapshot(spec)?.0);
    }
    let reporter = Reporter::new(g, "backup");
    reporter.start("backup", None, None);
    reporter.scan_sources(&opts.paths);
    let interrupts = super::Interrupts::install(lock.cancel_token())?;
    let r = backup(lock, &opts, &reporter);
    drop(interrupts);
    reporter.finish();
    let shows_errors = reporter.shows_errors();
    let r = r?;
    let s = &r.snapshot.summary;
    let (files, bytes_added) = (s.files, s.bytes_added);
    // The packs on the storage, as `cairn stats` counts them (one listing;
    // a figure for the metrics file, so a failure to list is no error).
    let repository_bytes: u64 = lock
        .backend()
        .list("data")
        .map(|l| l.iter().map(|o| o.size).sum())
        .unwrap_or(0);
    if g.json {
        let errors = super::errors_json(&r.errors);
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "snapshot_id": r.id.to_hex(),
                "parent": r.snapshot.parent.map(hex::encode),
                "files": s.files,
                "dirs": s.dirs,
                "others": s.others,
                "files_read": s.files_read,
                "bytes_read": s.bytes_read,
                "total_bytes": s.total_bytes,
                "data_blobs_added": s.data_blobs_added,
                "tree_blobs_added": s.tree_blobs_added,
                "bytes_added": s.bytes_added,
                "bytes_stored": s.bytes_stored,
                "packs_adopted": r.packs_adopted,
                "duration_seconds": s.duration_ns as f64 / 1e9,
                "errors": errors,
                "changed": r.changed.iter().map(|(p, w)| serde_json::json!({"path": p.to_string_lossy(), "warning": w})).collect::<Vec<_>>(),
                "suspect": r.suspects.iter().map(|(p, s)| serde_json::json!({"path": p.to_string_lossy(), "reason": s.reason.name(), "detail": s.detail})).collect::<Vec<_>>(),
            })
        );
    } else {
        // Listed as they happened, unless the progress reporter was quiet.
        if !shows_errors {
            for (p, e) in &r.errors {
                eprintln!("error: {}: {e}", p.display());
            }
        }
        for (p, w) in &r.changed {
            eprintln!("warning: {}: {w}", p.display());
        }
        for (p, s) in &r.suspects {
            eprintln!("suspect: {}: {}", p.display(), s.detail);
        }
        if !g.quiet {
            if r.packs_adopted > 0 {
                println!(
                    "reusing {} stored by an interrupted run",
                    count(r.packs_adopted, "pack")
                );
            }
            if let Some(p) = r.snapshot.parent {
                println!("using parent snapshot {}", &hex::encode(p)[..8]);
            }
            println!(
                "processed {}, {}, {} in {} ({} read, {} unchanged)",
                count(s.files, "file"),
                count(s.dirs, "dir"),
                human_bytes(s.total_bytes),
                super::human_duration(s.duration_ns as f64 / 1e9),
                count(s.files_read, "file"),
                s.files.saturating_sub(s.files_read)
            );
            println!(
                "added {} and {}: {} ({} stored)",
                count(s.data_blobs_added, "new data blob"),
                count(s.tree_blobs_added, "new tree"),
                human_bytes(s.bytes_added),
                human_bytes(s.bytes_stored)
            );
            println!("snapshot {} saved", r.id.short());
        }
    }
    let suspects: Vec<(PathBuf, String)> = r
        .suspects
        .iter()
        .map(|(p, s)| (p.clone(), s.detail.clone()))
        .collect();
    if r.errors.is_empty() && r.changed.is_empty() && suspects.is_empty() {
        return Ok(Done {
            code: super::exit::OK,
            id: r.id,
            errors: r.errors,
            changed: r.changed,
            suspects,
            files,
            bytes_added,
            repository_bytes,
        });
    }
    if !g.json {
        if !r.errors.is_empty() {
            eprintln!(
                "warning: {} could not be read and {} missing from snapshot {}",
                count(r.errors.len(), "entry"),
                if r.errors.len() == 1 { "is" } else { "are" },
                r.id.short()
            );
        }
        if !r.changed.is_empty() {
            let (they, them, were) = if r.changed.len() == 1 {
                ("it", "it", "was")
            } else {
                ("they", "them", "were")
            };
            eprintln!(
                "warning: {} changed while {they} {were} backed up; snapshot {} holds {them} as {they} {were} read",
                count(r.changed.len(), "file"),
                r.id.short()
            );
        }
        if !suspects.is_empty() {
            eprintln!(
                "warning: {} in snapshot {} (tagged {}); retention keeps the last good one \
                 (see `cairn forget --help`)",
                count(suspects.len(), "suspect database capture"),
                r.id.short(),
                cairn::format::snapshot::SUSPECT_TAG
            );
        }
    }
    Ok(Done {
        code: super::exit::PARTIAL,
        id: r.id,
        errors: r.errors,
        changed: r.changed,
        suspects,
        files,
        bytes_added,
        repository_bytes,
    })
}
