//! Backup: walk sources, chunk, hash, dedup, compress, seal, pack, and
//! commit a snapshot.
//!
//! The walk is a fork-join recursion on rayon: the entries of a directory
//! are processed in parallel, and the chunks of one file are processed in
//! parallel too, so both wide trees of small files and single huge files
//! keep every core busy. Work is pulled, not queued: a rayon worker holds
//! at most one file's buffer (or the two read windows of a large file) at
//! a time, and the packer's bounded queue blocks workers when storage falls
//! behind, so memory stays flat whatever the input.
//!
//! Entries are reached through their parent directory's handle and opened
//! only if they are still what was listed (`source::fs`); content is read
//! into private buffers, so a blob's bytes are hashed, compressed and
//! sealed as one copy, whatever other processes write meanwhile. A file
//! whose size, mtime or ctime moved while it was read is reported in
//! [`BackupResult::changed`].
//!
//! Write ordering: packs are stored, then the index files listing them,
//! then the snapshot. A crash at any point leaves a valid repository. Each
//! index file and the snapshot are written only after the backup's lock is
//! verified (`repo::lock`): a backup whose lock was lost (not refreshed in
//! time, removed) stops with no snapshot rather than commit over data a
//! prune may have deleted meanwhile.
//!
//! Split by role, as restic's `internal/archiver` is:
//!
//! - `options`: [`BackupOptions`], the stream sources, validation;
//! - `walk`: the virtual tree of source paths and the directory walk;
//! - `file`: the file saver (change detection against the parent, reading,
//!   and the one place a chunk list becomes a file's tree entry);
//! - `tree`: the tree saver (canonical directory trees, parent trees);
//! - `sqlite`: capture of live databases, companions left out;
//! - `stream`: `--stdin` and `--stdin-from-command`;
//! - `record`: the capture record's byte layout.
//!
//! Every blob goes through the repository's save path
//! ([`crate::repo::save::BlobSaver`]): hash, dedup, compress, seal, pack.

mod file;
mod options;
mod prefetch;
mod record;
mod sqlite;
mod stream;
mod tree;
mod walk;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::Progress;
use crate::error::{Error, Result};
use crate::format::snapshot::{
    EXT_CAPTURE_PATHS, EXT_SUSPECT_PATHS, SUSPECT_TAG, Snapshot, Summary,
};
use crate::format::suspect::Suspect;
use crate::format::tree::Tree;
use crate::id::{BlobId, SnapshotId};
use crate::repo::save::{BlobSaver, SaveOptions};
use crate::repo::{Repository, SharedLock};
use crate::source::exclude::ExcludeMatcher;
use crate::source::fs::{Meta, NameCache};

pub use crate::repo::save::compress;
use file::ChangeRules;
pub use options::{BackupOptions, DEFAULT_CHECK_LIMIT, DEFAULT_READ_CONCURRENCY, StreamSource};
pub use record::CaptureInfo;
pub use sqlite::{CAPTURE_CHUNK_PAGES, REWRITE_MIN_PAGES};
use walk::build_virtual;
pub use walk::clean_absolute;

/// What a backup produced.
#[derive(Debug)]
pub struct BackupResult {
    /// The new snapshot's ID.
    pub id: SnapshotId,
    /// The snapshot record.
    pub snapshot: Snapshot,
    /// Entries that could not be read (missing from the snapshot).
    pub errors: Vec<(PathBuf, String)>,
    /// Packs an interrupted run had stored without indexing them, indexed
    /// and reused by this backup.
    pub packs_adopted: u64,
    /// Files that changed while they were read, with what changed: stored
    /// as read (their blobs are sound), but possibly a mix of old and new
    /// content.
    pub changed: Vec<(PathBuf, String)>,
    /// Suspect database captures (stored; the snapshot is tagged
    /// `suspect`), with why.
    pub suspects: Vec<(PathBuf, Suspect)>,
}

/// A file with several links as this backup read it: what its other
/// links' entries take over.
#[derive(Clone)]
struct Linked {
    content: crate::format::tree::FileContent,
    /// Bytes read (a capture's length, not the file's size).
    len: u64,
    /// Its capture record, if it is a captured database.
    capture: Option<Vec<u8>>,
}

#[derive(Default)]
struct Counters {
    files: AtomicU64,
    dirs: AtomicU64,
    others: AtomicU64,
    files_read: AtomicU64,
    bytes_read: AtomicU64,
    total_bytes: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

struct Ctx<'a> {
    repo: &'a Repository,
    /// The save path: every blob of the backup goes through it.
    saver: &'a BlobSaver<'a>,
    counters: Counters,
    errors: Mutex<Vec<(PathBuf, String)>>,
    changed: Mutex<Vec<(PathBuf, String)>>,
    suspects: Mutex<Vec<(PathBuf, Suspect)>>,
    /// Files stored as good captures (listed in the snapshot).
    captured: Mutex<Vec<PathBuf>>,
    /// For each path an earlier snapshot of this host lists as a good
    /// capture: the newest such snapshot and its root tree. A path whose
    /// parent entry is no capture is judged against that one.
    captured_before: HashMap<Vec<u8>, (SnapshotId, BlobId)>,
    excludes: ExcludeMatcher,
    one_file_system: bool,
    names: NameCache,
    hardlinks: Mutex<HashMap<(u64, u64), Linked>>,
    progress: &'a dyn Progress,
    change: ChangeRules,
    sqlite: bool,
    sqlite_timeout: std::time::Duration,
    /// Databases up to this size get a whole `quick_check` at capture,
    /// larger ones a slice (`None`: no check).
    db_check: Option<u64>,
    /// Which slice a sampled check takes (random: a job run on a schedule
    /// must not land on the same slice every time).
    check_turn: u64,
    cancel: super::CancelToken,
    /// Read-ahead of the files the walk lists.
    prefetch: prefetch::Prefetcher,
}

impl Ctx<'_> {
    pub(super) fn record_error(&self, path: &Path, e: Error) {
        self.progress.error(path, &e);
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((path.to_path_buf(), e.to_string()));
    }
}

/// The parent for a backup among `snapshots` (as
/// [`Repository::load_snapshots`] lists them): the newest snapshot of
/// `host` with exactly these source paths.
pub fn find_parent(
    snapshots: &[(SnapshotId, Snapshot)],
    host: &str,
    paths: &[Vec<u8>],
) -> Option<(SnapshotId, Snapshot)> {
    snapshots
        .iter()
        .rfind(|(_, s)| s.hostname == host && s.paths == paths)
        .cloned()
}

/// For each path that a snapshot of `host` lists as a good capture, the
/// newest such snapshot (by time) and its root tree.
fn newest_captures(
    snapshots: &[(SnapshotId, Snapshot)],
    host: &str,
) -> HashMap<Vec<u8>, (SnapshotId, BlobId)> {
    let mut order: Vec<&(SnapshotId, Snapshot)> = snapshots
        .iter()
        .filter(|(_, s)| s.hostname == host)
        .collect();
    order.sort_by(|a, b| b.1.time_ns.cmp(&a.1.time_ns).then(b.0.cmp(&a.0)));
    let mut out = HashMap::new();
    for (id, s) in order {
        for p in crate::format::suspect::captures_of_snapshot(s) {
            out.entry(p).or_insert((*id, s.tree));
        }
    }
    out
}

/// Say what a lost lock means for a backup.
fn aborted(e: Error) -> Error {
    match e.kind() {
        crate::error::ErrorKind::LockLost => e.context("backup aborted, no snapshot was written"),
        crate::error::ErrorKind::Interrupted => Error::new(
            crate::error::ErrorKind::Interrupted,
            "interrupted; what was stored so far is indexed, and the next run reuses it",
        ),
        _ => e,
    }
}

/// Run a backup under `guard` and commit its snapshot. The guard's
/// cancellation token stops it early (Ctrl-C, SIGTERM, or the lock found
/// lost): what was stored is indexed, no snapshot is written. The index is
/// loaded here, under the lock, trusting only packs that are present.
pub fn backup(
    guard: &mut SharedLock<'_>,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    let started = Instant::now();
    let time = jiff::Zoned::now();
    if opts.paths.is_empty() && opts.stream.is_none() {
        return Err(Error::invalid(
            "nothing to back up: give at least one path, --stdin or --stdin-from-command",
        ));
    }
    let mut paths = Vec::new();
    for p in &opts.paths {
        let abs = clean_absolute(p)?;
        std::fs::symlink_metadata(&abs).map_err(|e| Error::io_path("cannot back up", &abs, e))?;
        paths.push(abs);
    }
    paths.sort();
    paths.dedup();
    if paths.iter().any(|p| p == Path::new("/")) {
        paths.retain(|p| p == Path::new("/"));
    }
    opts.validate()?;
    let excludes = ExcludeMatcher::new(&opts.excludes, &opts.exclude_if_present)?
        .with_exclude_caches(opts.exclude_caches);
    let read_ahead_excludes = excludes.clone();
    let (repo, lock) = guard.parts();
    // Deduplicate only against packs that are there: an index entry whose
    // pack is gone (a replayed index file, a lost pack) would make this
    // snapshot reference data that cannot be read. Such blobs count as not
    // stored, and parent content lists that need them as not reusable.
    let present = repo.load_index_present()?;
    // Packs an interrupted backup stored but could not index are indexed
    // now, so this run reuses them instead of storing their blobs again.
    let adopted = repo.adopt_unindexed_packs(Some(&present), lock)?;

    let host = opts
        .host
        .clone()
        .unwrap_or_else(|| repo.identity().hostname.clone());
    let mut raw_paths: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .collect();
    if let Some(stream) = &opts.stream {
        raw_paths.push(format!("/{}", stream.filename()).into_bytes());
        raw_paths.sort();
    }
    let snapshots = repo.load_snapshots()?;
    let parent = match &opts.parent {
        Some(id) => Some((*id, repo.load_snapshot(id)?)),
        None => find_parent(&snapshots, &host, &raw_paths),
    };
    let captured_before = newest_captures(&snapshots, &host);
    drop(snapshots);
    let level = opts
        .compression_level
        .unwrap_or(repo.config().compression_level);
    let mut sopts = SaveOptions::for_repo(repo);
    sopts.compression_level = level;
    sopts.packer.writers = opts
        .writers
        .unwrap_or_else(|| repo.backend().preferred_writers())
        .max(1);
    let cancel = lock.cancel_token().clone();
    let saver = BlobSaver::new(repo, lock.gate(), sopts).with_cancel({
        let cancel = cancel.clone();
        move || cancel.check()
    });
    let ctx = Ctx {
        repo,
        saver: &saver,
        counters: Counters::default(),
        errors: Mutex::new(Vec::new()),
        changed: Mutex::new(Vec::new()),
        suspects: Mutex::new(Vec::new()),
        captured: Mutex::new(Vec::new()),
        captured_before,
        excludes,
        one_file_system: opts.one_file_system,
        names: NameCache::default(),
        hardlinks: Mutex::new(HashMap::new()),
        progress,
        change: ChangeRules {
            use_parent: !opts.force,
            ignore_inode: opts.ignore_inode,
            ignore_ctime: opts.ignore_ctime,
        },
        sqlite: !opts.sqlite_off,
        db_check: (!opts.sqlite_check_off)
            .then(|| opts.sqlite_check_limit.unwrap_or(DEFAULT_CHECK_LIMIT)),
        check_turn: u64::from_le_bytes(crate::crypto::random_array()),
        cancel,
        sqlite_timeout: opts
            .sqlite_timeout
            .unwrap_or(std::time::Duration::from_secs(60)),
        prefetch: prefetch::Prefetcher::start(
            opts.read_concurrency
                .unwrap_or(options::DEFAULT_READ_CONCURRENCY),
            prefetch::Rules {
                use_parent: !opts.force,
                ignore_inode: opts.ignore_inode,
                ignore_ctime: opts.ignore_ctime,
            },
            read_ahead_excludes,
            opts.one_file_system,
        ),
    };
    let old_root = parent.as_ref().map(|(_, s)| s.tree);
    let tree = super::in_pool(|| {
        // The stream first: a failing command must fail the backup before
        // anything else is done.
        let extra = opts
            .stream
            .as_ref()
            .map(|s| ctx.save_stream_node(s))
            .transpose()?;
        if paths.iter().any(|p| p == Path::new("/")) {
            if extra.is_some() {
                return Err(Error::invalid(
                    "--stdin cannot be combined with backing up / (the name would clash)",
                ));
            }
            // The whole filesystem: the root directory is the source itself.
            let root = open_root()?;
            let dev = Meta::of(root.as_fd())
                .map_err(|e| Error::io_path("cannot back up", "/", e.into()))?
                .dev();
            ctx.save_dir(root.as_fd(), Path::new("/"), dev, old_root)
                .and_then(|t| t.map_or_else(|| ctx.save_tree(&Tree::default()), Ok))
        } else {
            let root = open_root()?;
            ctx.save_virtual(
                root.as_fd(),
                Path::new("/"),
                &build_virtual(&paths),
                old_root,
                extra,
            )
        }
    });
    let Ctx {
        counters,
        errors,
        changed,
        suspects,
        captured,
        ..
    } = ctx;
    let captured = captured.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut changed = changed.into_inner().unwrap_or_else(|p| p.into_inner());
    changed.sort();
    let mut suspects = suspects.into_inner().unwrap_or_else(|p| p.into_inner());
    suspects.sort_by(|a, b| a.0.cmp(&b.0));
    let tree = match tree {
        Ok(t) => t,
        Err(e) => {
            // Interrupted or failed: index what was stored, so the next run
            // reuses it. No snapshot is written.
            if let Err(fe) = saver.finish() {
                repo.observer().warning(&format!(
                    "what the backup stored could not be indexed: {fe}"
                ));
            }
            return Err(aborted(e));
        }
    };
    // Packs, then their index files (inside `finish`), then the snapshot.
    // The repository's in-memory index is left as loaded: it is reloaded at
    // the start of every operation that needs it.
    let stored = saver.finish().map_err(aborted)?;

    let errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    let c = counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut tags = opts.tags.clone();
    let mut extensions = Vec::new();
    if !suspects.is_empty() {
        tags.push(SUSPECT_TAG.to_string());
        let list: Vec<(Vec<u8>, Suspect)> = suspects
            .iter()
            .map(|(p, s)| (p.as_os_str().as_bytes().to_vec(), s.clone()))
            .collect();
        extensions.push((
            EXT_SUSPECT_PATHS,
            crate::format::suspect::encode_list(&list)?,
        ));
    }
    if !captured.is_empty() {
        let list: Vec<Vec<u8>> = captured
            .iter()
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .collect();
        extensions.push((
            EXT_CAPTURE_PATHS,
            crate::format::suspect::encode_paths(&list)?,
        ));
    }
    tags.sort();
    tags.dedup();
    let snapshot = Snapshot {
        time_ns: opts
            .time_ns
            .unwrap_or(time.timestamp().as_nanosecond() as i64),
        utc_offset_s: time.offset().seconds(),
        tree,
        parent: parent.map(|(id, _)| id.0),
        hostname: host,
        username: repo.identity().username.clone(),
        paths: raw_paths,
        tags,
        program_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        summary: Summary {
            files: get(&c.files),
            dirs: get(&c.dirs),
            others: get(&c.others),
            files_read: get(&c.files_read),
            bytes_read: get(&c.bytes_read),
            total_bytes: get(&c.total_bytes),
            data_blobs_added: stored.stats.data_blobs,
            tree_blobs_added: stored.stats.tree_blobs,
            bytes_added: stored.stats.raw_bytes,
            bytes_stored: stored.packer.bytes_written,
            errors: errors.len() as u64,
            duration_ns: started.elapsed().as_nanos() as u64,
        },
        extensions,
    };
    crate::failpoint::hit("backup::before_snapshot")?;
    lock.verify().map_err(aborted)?;
    let id = repo.save_snapshot(&snapshot)?;
    Ok(BackupResult {
        id,
        snapshot,
        errors,
        packs_adopted: adopted,
        changed,
        suspects,
    })
}

/// The filesystem root, where every source path is resolved from.
fn open_root() -> Result<OwnedFd> {
    rustix::fs::open(
        "/",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::io_path("cannot open", "/", e.into()))
}
