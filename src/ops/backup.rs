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

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use super::Progress;
use crate::chunker::Cut;
use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, Summary};
use crate::format::tree::{EXT_SQLITE_CAPTURE, Node, NodeKind, Tree};
use crate::format::{BlobType, Compression, aad};
use crate::id::{BlobId, SnapshotId};
use crate::repo::packer::{Packer, PackerOptions, SealedBlob};
use crate::repo::{Repository, SharedLock};
use crate::source::exclude::ExcludeMatcher;
use crate::source::fs::{self as sfs, Meta, NameCache};
use crate::source::sqlite;

/// What to back up and how.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Source paths (files or directories).
    pub paths: Vec<PathBuf>,
    /// Exclude patterns (see [`ExcludeMatcher`]).
    pub excludes: Vec<String>,
    /// Names whose presence excludes their directory.
    pub exclude_if_present: Vec<String>,
    /// Exclude directories tagged with a valid `CACHEDIR.TAG`.
    pub exclude_caches: bool,
    /// Do not descend into other filesystems.
    pub one_file_system: bool,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    pub host: Option<String>,
    /// zstd level (default: the repository's).
    pub compression_level: Option<i32>,
    /// Pack writer threads (default: as many as the backend takes at once,
    /// [`crate::backend::Backend::preferred_writers`]).
    pub writers: Option<usize>,
    /// Parent snapshot; `None` picks the latest one of this host with the
    /// same paths.
    pub parent: Option<SnapshotId>,
    /// Read every file, even when the parent says it is unchanged.
    pub force: bool,
    /// Do not compare inode and device numbers (filesystems where they are
    /// not stable, e.g. some network and FUSE filesystems).
    pub ignore_inode: bool,
    /// Do not compare ctimes.
    pub ignore_ctime: bool,
    /// Store SQLite databases raw instead of capturing a consistent state.
    pub sqlite_off: bool,
    /// Also store a stream (standard input, or a command's output) as one
    /// file at the top of the snapshot.
    pub stream: Option<StreamSource>,
    /// Record this time instead of now (ns since the epoch), e.g. when
    /// importing older backups.
    pub time_ns: Option<i64>,
    /// How long to wait for a busy database before giving up on it
    /// (default 60 s).
    pub sqlite_timeout: Option<std::time::Duration>,
}

/// A stream stored as one file: `pg_dumpall | cairn backup --stdin`, or a
/// command whose output is stored and whose failure fails the backup.
#[derive(Debug, Clone)]
pub enum StreamSource {
    /// Standard input, stored under this file name.
    Stdin {
        /// Name of the file in the snapshot's root directory.
        filename: String,
    },
    /// A command's standard output, stored under this file name. A command
    /// that exits non-zero fails the backup: no snapshot is written.
    Command {
        /// Program and arguments (no shell).
        argv: Vec<String>,
        /// Name of the file in the snapshot's root directory.
        filename: String,
    },
}

impl BackupOptions {
    /// Check what the snapshot will record — tags, host name, paths, the
    /// stream's file name — against the format's limits, before anything is
    /// read or written (a tag the format cannot carry must fail here, not
    /// after an hour of backup, and never be stored cut short).
    pub fn validate(&self) -> Result<()> {
        let host = self.host.clone().unwrap_or_else(crate::repo::hostname);
        let mut paths = Vec::with_capacity(self.paths.len() + 1);
        for p in &self.paths {
            paths.push(clean_absolute(p)?.into_os_string().into_vec());
        }
        if let Some(s) = &self.stream {
            crate::format::tree::validate_name(s.filename().as_bytes()).map_err(|_| {
                Error::invalid(format!("invalid --stdin-filename {:?}", s.filename()))
            })?;
            paths.push(format!("/{}", s.filename()).into_bytes());
        }
        crate::format::snapshot::check_labels(&host, &self.tags, &paths)
    }
}

impl StreamSource {
    fn filename(&self) -> &str {
        match self {
            StreamSource::Stdin { filename } | StreamSource::Command { filename, .. } => filename,
        }
    }
}

/// Bytes of a stream held at once: chunks are cut in windows of this size.
const STREAM_WINDOW: usize = 32 << 20;

/// Pages per blob when a SQLite capture is cut on page boundaries (see
/// docs/BENCHMARKS.md for the measurement behind it).
pub const CAPTURE_CHUNK_PAGES: usize = 1;
/// Pages read per batch from a database before hashing them in parallel.
const CAPTURE_BATCH_BYTES: usize = 16 << 20;

/// What a capture extension records: the page size, and the on-disk state
/// of the database and its WAL when it was captured (to decide whether the
/// next backup may reuse it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureInfo {
    /// SQLite page size.
    pub page_size: u32,
    /// Size of the database file on disk (the capture may differ).
    pub file_size: u64,
    /// Size of the `-wal` file, 0 if absent.
    pub wal_size: u64,
    /// Modification time of the `-wal` file (seconds, nanoseconds).
    pub wal_mtime: (i64, u32),
}

impl CaptureInfo {
    /// Encoded as the value of [`EXT_SQLITE_CAPTURE`] (32 bytes, LE).
    pub fn to_bytes(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32);
        v.extend_from_slice(&self.page_size.to_le_bytes());
        v.extend_from_slice(&self.file_size.to_le_bytes());
        v.extend_from_slice(&self.wal_size.to_le_bytes());
        v.extend_from_slice(&self.wal_mtime.0.to_le_bytes());
        v.extend_from_slice(&self.wal_mtime.1.to_le_bytes());
        v
    }
    /// Decode; `None` if malformed.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 32 {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        Some(CaptureInfo {
            page_size: u32_at(0),
            file_size: u64_at(4),
            wal_size: u64_at(12),
            wal_mtime: (u64_at(20) as i64, u32_at(28)),
        })
    }
}

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
}

#[derive(Default)]
struct Counters {
    files: AtomicU64,
    dirs: AtomicU64,
    others: AtomicU64,
    files_read: AtomicU64,
    bytes_read: AtomicU64,
    total_bytes: AtomicU64,
    data_blobs_added: AtomicU64,
    tree_blobs_added: AtomicU64,
    bytes_added: AtomicU64,
    bytes_stored: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// A file's content as read and stored.
struct FileRead {
    /// Its blobs, in order.
    ids: Vec<BlobId>,
    /// Bytes read.
    len: u64,
    /// Details of a SQLite capture.
    capture: Option<CaptureInfo>,
    /// Bytes already reported to the progress sink.
    streamed: u64,
    /// `fstat` when it was opened, before it was read: the metadata stored.
    meta: Meta,
    /// The open file.
    file: File,
    /// What changed while it was read, if anything did.
    changed: Option<String>,
}

/// IDs of blobs claimed by this backup (stored or being stored), sharded to
/// keep lock contention low.
struct Claims {
    shards: Vec<Mutex<HashSet<(BlobType, BlobId)>>>,
}

impl Claims {
    fn new() -> Self {
        Claims {
            shards: (0..64).map(|_| Mutex::new(HashSet::new())).collect(),
        }
    }
    /// True if the caller is the first to claim the blob.
    fn claim(&self, t: BlobType, id: BlobId) -> bool {
        let shard = &self.shards[usize::from(id.0[0]) % self.shards.len()];
        shard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((t, id))
    }
}

thread_local! {
    static ZSTD: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

/// zstd-compress with a per-thread context; `None` if it does not shrink.
pub fn compress(level: i32, data: &[u8]) -> Option<Vec<u8>> {
    if level == 0 || data.len() < 64 {
        return None;
    }
    ZSTD.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|(l, _)| *l) != Some(level) {
            *slot = zstd::bulk::Compressor::new(level).ok().map(|c| (level, c));
        }
        let (_, c) = slot.as_mut()?;
        let out = c.compress(data).ok()?;
        (out.len() < data.len()).then_some(out)
    })
}

struct Ctx<'a> {
    repo: &'a Repository,
    packer: &'a Packer,
    claims: Claims,
    counters: Counters,
    errors: Mutex<Vec<(PathBuf, String)>>,
    changed: Mutex<Vec<(PathBuf, String)>>,
    excludes: ExcludeMatcher,
    one_file_system: bool,
    level: i32,
    names: NameCache,
    hardlinks: Mutex<HashMap<(u64, u64), crate::format::tree::FileContent>>,
    progress: &'a dyn Progress,
    change: ChangeRules,
    sqlite: bool,
    sqlite_timeout: std::time::Duration,
    cancel: super::CancelToken,
}

/// How a file is judged unchanged against its parent snapshot's entry.
#[derive(Debug, Clone, Copy)]
struct ChangeRules {
    use_parent: bool,
    ignore_inode: bool,
    ignore_ctime: bool,
}

impl ChangeRules {
    /// True if `old` (from the parent snapshot) describes the same content
    /// as `meta`: same size and mtime (ns), and unless ignored the same
    /// ctime (ns), inode and device.
    fn unchanged(&self, old: &Node, meta: &Meta) -> bool {
        // A capture's size is the captured state's; compare the file's.
        let size = old
            .extension(EXT_SQLITE_CAPTURE)
            .and_then(CaptureInfo::from_bytes)
            .map_or(old.size, |c| c.file_size);
        self.use_parent
            && size == meta.size()
            && old.mtime == meta.mtime()
            && (self.ignore_ctime || old.ctime == meta.ctime())
            && (self.ignore_inode || (old.inode == meta.ino() && old.device == meta.dev()))
    }
}

/// A source path tree: leaves are backed up whole; inner nodes are the
/// directories on the way to them.
#[derive(Debug, Default)]
struct Virtual {
    children: BTreeMap<Vec<u8>, VirtualChild>,
}

#[derive(Debug)]
enum VirtualChild {
    Source,
    Inner(Virtual),
}

/// Make `p` absolute and lexically clean (no `.`, `..` resolved
/// textually), without following symlinks.
pub fn clean_absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io_path("cannot resolve", p, e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

fn build_virtual(paths: &[PathBuf]) -> Virtual {
    let mut root = Virtual::default();
    'paths: for p in paths {
        let comps: Vec<Vec<u8>> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.as_bytes().to_vec()),
                _ => None,
            })
            .collect();
        let mut cur = &mut root;
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let entry = cur
                .children
                .entry(c.clone())
                .or_insert_with(|| VirtualChild::Inner(Virtual::default()));
            if last {
                *entry = VirtualChild::Source;
                continue 'paths;
            }
            match entry {
                VirtualChild::Source => continue 'paths, // an ancestor is backed up whole
                VirtualChild::Inner(v) => cur = v,
            }
        }
    }
    root
}

impl Ctx<'_> {
    fn record_error(&self, path: &Path, e: Error) {
        self.progress.error(path, &e);
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((path.to_path_buf(), e.to_string()));
    }

    /// Store a blob unless the repository or this backup already has it.
    /// `data` must be private to this process (never a memory map of a
    /// file another process may write): the bytes hashed for the ID are the
    /// bytes compressed and sealed.
    fn save_blob(&self, t: BlobType, data: &[u8]) -> Result<BlobId> {
        self.cancel.check()?;
        let id = self.repo.id_key().blob_id(data);
        if self.repo.index().contains(t, &id) || !self.claims.claim(t, id) {
            return Ok(id);
        }
        crate::failpoint::hit("backup::blob_hashed")?;
        let (compression, payload) = match compress(self.level, data) {
            Some(c) => (Compression::Zstd, c),
            None => (Compression::None, Vec::new()),
        };
        let plain: &[u8] = if compression == Compression::Zstd {
            &payload
        } else {
            data
        };
        let sealed = self
            .repo
            .seal_key()
            .seal(&aad::blob(t, compression, &id), plain);
        if t == BlobType::Tree {
            self.repo.cache_tree(&id, &sealed);
        }
        add(&self.counters.bytes_added, data.len() as u64);
        add(&self.counters.bytes_stored, sealed.len() as u64);
        add(
            match t {
                BlobType::Data => &self.counters.data_blobs_added,
                BlobType::Tree => &self.counters.tree_blobs_added,
            },
            1,
        );
        self.packer.add(SealedBlob {
            blob_type: t,
            id,
            compression,
            raw_len: data.len() as u32,
            sealed,
        })?;
        Ok(id)
    }

    fn save_chunks(&self, data: &[u8], cuts: &[Cut]) -> Result<Vec<BlobId>> {
        if cuts.len() == 1 {
            return Ok(vec![self.save_blob(BlobType::Data, data)?]);
        }
        cuts.par_iter()
            .map(|c| self.save_blob(BlobType::Data, &data[c.offset..c.offset + c.len]))
            .collect()
    }

    /// Chunk and store everything `input` yields, in windows of at least
    /// twice the largest chunk held in private buffers. The next window is
    /// read while the chunks of the current one are hashed, compressed and
    /// sealed (two buffers). Returns the blob list and the length.
    /// `report`: count the bytes towards progress as they go; `err` makes a
    /// read error.
    fn save_reader(
        &self,
        input: &mut (dyn Read + Send),
        report: bool,
        err: &(dyn Fn(std::io::Error) -> Error + Sync),
    ) -> Result<(Vec<BlobId>, u64)> {
        let window = STREAM_WINDOW.max(2 * self.repo.chunker().params().max_len as usize);
        let mut cur = vec![0u8; window];
        let mut next = vec![0u8; window];
        let (mut filled, mut eof) = fill(input, &mut cur, 0).map_err(err)?;
        let mut ids = Vec::new();
        let mut total = 0u64;
        while filled > 0 {
            let data = &cur[..filled];
            let mut cuts: Vec<Cut> = self.repo.chunker().cuts(data).collect();
            if !eof && cuts.len() > 1 {
                cuts.pop(); // cut by the window, not by the content
            }
            let consumed: usize = cuts.iter().map(|c| c.len).sum();
            let tail = &data[consumed..];
            let (saved, read) = rayon::join(
                || self.save_chunks(data, &cuts),
                || {
                    next[..tail.len()].copy_from_slice(tail);
                    if eof {
                        Ok((tail.len(), true))
                    } else {
                        fill(input, &mut next, tail.len())
                    }
                },
            );
            ids.extend(saved?);
            (filled, eof) = read.map_err(err)?;
            total += consumed as u64;
            if report {
                self.progress.advance(0, consumed as u64);
            }
            std::mem::swap(&mut cur, &mut next);
        }
        Ok((ids, total))
    }

    /// Read, chunk and store the content of the regular file `name` in
    /// `dir`, listed as `listed`. The file is opened without following a
    /// symlink or blocking, and must be the object that was listed
    /// ([`sfs::open_file_at`]). Large files and captures report their bytes
    /// to the progress sink as they go (`Progress::advance`, counted in
    /// [`FileRead::streamed`]); the caller's `file_done` adds the rest.
    fn save_file_content(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        path: &Path,
        listed: &Meta,
    ) -> Result<FileRead> {
        let (mut file, before) = sfs::open_file_at(dir, name, path, listed)?;
        let size = before.size();
        if self.sqlite && size >= 512 {
            let page =
                sqlite::sniff(&file).map_err(|e| Error::source_io("cannot read", path, e))?;
            if page.is_some() {
                // The page size the read transaction sees is the one used.
                let (ids, total, capture) = self.save_capture(dir, name, path, &before)?;
                return Ok(FileRead {
                    ids,
                    len: total,
                    capture: Some(capture),
                    streamed: total,
                    meta: before,
                    file,
                    changed: None,
                });
            }
        }
        let read_err = |e: std::io::Error| Error::source_io("cannot read", path, e);
        let window = STREAM_WINDOW as u64;
        let (ids, len, streamed) = if size < window {
            let data = sfs::read_all(&mut file, size, path)?;
            let cuts: Vec<Cut> = self.repo.chunker().cuts(&data).collect();
            (self.save_chunks(&data, &cuts)?, data.len() as u64, 0)
        } else {
            sfs::advise_sequential(&file);
            let (ids, len) = self.save_reader(&mut file, true, &read_err)?;
            (ids, len, len)
        };
        let after = Meta::of(file.as_fd()).map_err(|e| read_err(e.into()))?;
        Ok(FileRead {
            ids,
            len,
            capture: None,
            streamed,
            meta: before,
            file,
            changed: sfs::changed_while_read(&before, &after),
        })
    }

    /// Capture a consistent state of a live SQLite database (`name` in
    /// `dir`, opened and checked by the caller as `meta`) and store it cut
    /// on page boundaries.
    fn save_capture(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        path: &Path,
        meta: &Meta,
    ) -> Result<(Vec<BlobId>, u64, CaptureInfo)> {
        let (wal_size, wal_mtime) = sqlite::wal_state_at(dir, name);
        let reader = sqlite::PageReader::open_at(dir, name, meta, path, self.sqlite_timeout)?;
        let ps = reader.page_size as usize;
        let chunk = ps * CAPTURE_CHUNK_PAGES;
        let mut ids = Vec::with_capacity(reader.page_count as usize / CAPTURE_CHUNK_PAGES + 1);
        let total = reader.for_each_batch(path, (CAPTURE_BATCH_BYTES / ps).max(1), &mut |buf| {
            let cuts: Vec<Cut> = (0..buf.len())
                .step_by(chunk)
                .map(|offset| Cut {
                    offset,
                    len: chunk.min(buf.len() - offset),
                })
                .collect();
            ids.extend(self.save_chunks(buf, &cuts)?);
            self.progress.advance(0, buf.len() as u64);
            Ok(())
        })?;
        reader.finish(path)?;
        Ok((
            ids,
            total,
            CaptureInfo {
                page_size: reader_page_size(ps),
                file_size: meta.size(),
                wal_size,
                wal_mtime,
            },
        ))
    }

    /// Back up the entry `name` of the open directory `dir` (`path` is its
    /// full path, for messages and exclude rules); `None` if excluded or
    /// unreadable (unreadable entries are recorded as errors). Nothing is
    /// reached by path: the entry is `lstat`ed through `dir`, and opened
    /// through it, without following symlinks, only if it is still the
    /// object that was `lstat`ed.
    fn save_entry(
        &self,
        dir: BorrowedFd<'_>,
        path: &Path,
        name: &[u8],
        parent_dev: Option<u64>,
        old: Option<&Node>,
    ) -> Result<Option<Node>> {
        self.cancel.check()?;
        let os_name = OsStr::from_bytes(name);
        let meta = match sfs::stat_at(dir, os_name, path) {
            Ok(m) => m,
            Err(e) => {
                self.record_error(path, e);
                return Ok(None);
            }
        };
        if self.excludes.is_excluded(path, meta.is_dir()) {
            return Ok(None);
        }
        // The handle the entry was opened through, if it was: its xattrs
        // are read through it.
        let mut opened: Option<OwnedFd> = None;
        // A file reused from the parent snapshot with an unchanged ctime has
        // unchanged xattrs too (setting or removing one moves the ctime):
        // they are taken from there, without a system call.
        let mut old_xattrs = None;
        let mut node = if meta.is_file() {
            let key = (meta.dev(), meta.ino());
            let cached = if meta.nlink() > 1 {
                self.hardlinks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&key)
                    .cloned()
            } else {
                None
            };
            // Unchanged since the parent snapshot: reuse its content list
            // without opening the file (if every blob is still indexed).
            let reused = old.and_then(|o| match &o.kind {
                NodeKind::File { content }
                    if self.change.unchanged(o, &meta)
                        && self.capture_still_valid(o, dir, os_name)
                        && crate::repo::chunklist::content_indexed(self.repo, o, content) =>
                {
                    Some((
                        content.clone(),
                        o.size,
                        o.extension(EXT_SQLITE_CAPTURE).map(<[u8]>::to_vec),
                    ))
                }
                _ => None,
            });
            let was_reused = reused.is_some();
            let mut capture_ext: Option<Vec<u8>> = None;
            let found = match reused {
                Some((c, len, ext)) => {
                    capture_ext = ext;
                    Some((c, len))
                }
                None => cached.map(|c| (c, meta.size())),
            };
            let mut streamed = 0;
            let mut stored_meta = meta;
            let (content, len) = match found {
                Some(found) => found,
                None => {
                    crate::failpoint::hit("backup::before_open_file")?;
                    match self.save_file_content(dir, os_name, path, &meta) {
                        Ok(read) => {
                            streamed = read.streamed;
                            capture_ext = read.capture.map(CaptureInfo::to_bytes);
                            stored_meta = read.meta;
                            add(&self.counters.files_read, 1);
                            add(&self.counters.bytes_read, read.len);
                            // The chunk list becomes the entry's content:
                            // inline, or a tree of ID-list blobs stored here.
                            let content = crate::format::chunklist::build(read.ids, &mut |list| {
                                self.save_blob(BlobType::Tree, list)
                            })?;
                            if meta.nlink() > 1 {
                                self.hardlinks
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .insert(key, content.clone());
                            }
                            if let Some(what) = read.changed {
                                self.changed
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push((path.to_path_buf(), what));
                            }
                            opened = Some(read.file.into());
                            (content, read.len)
                        }
                        Err(e) if e.kind() == crate::error::ErrorKind::Source => {
                            self.record_error(path, e);
                            return Ok(None);
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            self.progress.file_done(path, len.saturating_sub(streamed));
            add(&self.counters.files, 1);
            add(&self.counters.total_bytes, len);
            let mut n =
                sfs::node_from_meta(name, &stored_meta, NodeKind::File { content }, &self.names);
            n.size = len;
            if let Some(ext) = capture_ext {
                n.extensions.push((EXT_SQLITE_CAPTURE, ext));
            }
            if was_reused && let Some(o) = old {
                if self.change.ignore_ctime {
                    // The content was judged unchanged without the ctime:
                    // keep the ctime it was read under, so a later backup
                    // that does compare ctimes still notices a change this
                    // one trusted away.
                    n.ctime = o.ctime;
                } else {
                    old_xattrs = Some(o.xattrs.clone());
                }
            }
            n
        } else if meta.is_dir() {
            if super::depth(path.as_os_str().as_bytes()) > super::MAX_TREE_DEPTH {
                // Handles reach any depth, but restore refuses deeper trees
                // (and recursion needs a bound).
                self.record_error(
                    path,
                    Error::new(
                        crate::error::ErrorKind::Source,
                        format!(
                            "{} is more than {} directories deep; not backed up (restore \
                             refuses deeper trees)",
                            path.display(),
                            super::MAX_TREE_DEPTH
                        ),
                    ),
                );
                return Ok(None);
            }
            crate::failpoint::hit("backup::before_open_dir")?;
            let sub = match sfs::open_dir_at(dir, os_name, path, &meta) {
                Ok(fd) => fd,
                Err(e) if e.kind() == crate::error::ErrorKind::Source => {
                    self.record_error(path, e);
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            let crosses = self.one_file_system && parent_dev.is_some_and(|d| d != meta.dev());
            let subtree = if crosses {
                self.save_tree(&Tree::default())?
            } else {
                let old_subtree = old.and_then(|o| match o.kind {
                    NodeKind::Dir { subtree } => Some(subtree),
                    _ => None,
                });
                match self.save_dir(sub.as_fd(), path, meta.dev(), old_subtree) {
                    Ok(Some(id)) => id,
                    Ok(None) => return Ok(None),
                    Err(e) if e.kind() == crate::error::ErrorKind::Source => {
                        self.record_error(path, e);
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
            };
            opened = Some(sub);
            add(&self.counters.dirs, 1);
            sfs::node_from_meta(name, &meta, NodeKind::Dir { subtree }, &self.names)
        } else if meta.is_symlink() {
            let target = match sfs::read_link_at(dir, os_name, path) {
                Ok(t) => t,
                Err(e) => {
                    self.record_error(path, e);
                    return Ok(None);
                }
            };
            add(&self.counters.others, 1);
            sfs::node_from_meta(name, &meta, NodeKind::Symlink { target }, &self.names)
        } else if let Some(kind) = sfs::special_kind(&meta) {
            add(&self.counters.others, 1);
            sfs::node_from_meta(name, &meta, kind, &self.names)
        } else {
            return Ok(None);
        };
        let xattrs = match (&opened, old_xattrs) {
            (_, Some(x)) => Ok(x),
            (Some(fd), None) => sfs::read_xattrs_fd(fd.as_fd(), path),
            (None, None) => sfs::read_xattrs_at(dir, os_name, path),
        };
        match xattrs {
            Ok(x) => node.xattrs = x,
            Err(e) => self.record_error(path, e),
        }
        Ok(Some(node))
    }

    /// A parent entry may be reused: a plain file when capture is off or it
    /// was stored raw; a capture when capture is on and its WAL is as it was.
    fn capture_still_valid(&self, old: &Node, dir: BorrowedFd<'_>, name: &OsStr) -> bool {
        match old
            .extension(EXT_SQLITE_CAPTURE)
            .map(CaptureInfo::from_bytes)
        {
            None => true,
            Some(None) => false,
            Some(Some(c)) => {
                self.sqlite && {
                    let (size, mtime) = sqlite::wal_state_at(dir, name);
                    size == c.wal_size && mtime == c.wal_mtime
                }
            }
        }
    }

    /// The parent snapshot's version of a directory, if there is one and it
    /// can be read (a damaged parent only costs the shortcut, not the backup).
    fn old_tree(&self, path: &Path, id: Option<BlobId>) -> Option<Tree> {
        let id = id?;
        match self.repo.load_tree(&id) {
            Ok(t) => Some(t),
            Err(e) => {
                self.progress.error(
                    path,
                    &e.context("cannot read the parent snapshot's tree; reading all files below"),
                );
                None
            }
        }
    }

    /// Back up the entries of the open directory `dir` (at `path`); `None`
    /// if a marker file excludes it. `old` is the directory's tree in the
    /// parent snapshot.
    fn save_dir(
        &self,
        dir: BorrowedFd<'_>,
        path: &Path,
        dev: u64,
        old: Option<BlobId>,
    ) -> Result<Option<BlobId>> {
        let mut names = sfs::list_dir(dir, path)?;
        if self.excludes.excludes_dir(dir, &names) {
            return Ok(None);
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        if self.sqlite {
            drop_companions(dir, &mut names);
        }
        let old = self.old_tree(path, old);
        let nodes: Vec<Option<Node>> = names
            .par_iter()
            .map(|n| {
                let prev = old.as_ref().and_then(|t| t.find(n.as_bytes()));
                self.save_entry(dir, &path.join(n), n.as_bytes(), Some(dev), prev)
            })
            .collect::<Result<_>>()?;
        self.save_tree(&Tree {
            nodes: nodes.into_iter().flatten().collect(),
        })
        .map(Some)
    }

    /// Back up the source paths below the open directory `dir` (at `path`).
    /// Directories on the way to a source path are opened as the paths
    /// name them (a symlink there is followed, as the administrator wrote
    /// the path), once; from a source path down, nothing is followed.
    fn save_virtual(
        &self,
        dir: BorrowedFd<'_>,
        path: &Path,
        v: &Virtual,
        old: Option<BlobId>,
        extra: Option<Node>,
    ) -> Result<BlobId> {
        let old = self.old_tree(path, old);
        let nodes: Vec<Option<Node>> = v
            .children
            .par_iter()
            .map(|(name, child)| {
                let p = path.join(OsStr::from_bytes(name));
                let prev = old.as_ref().and_then(|t| t.find(name));
                match child {
                    VirtualChild::Source => self.save_entry(dir, &p, name, None, prev),
                    VirtualChild::Inner(inner) => {
                        let io =
                            |e: rustix::io::Errno| Error::io_path("cannot back up", &p, e.into());
                        let sub = rustix::fs::openat(
                            dir,
                            OsStr::from_bytes(name),
                            rustix::fs::OFlags::RDONLY
                                | rustix::fs::OFlags::DIRECTORY
                                | rustix::fs::OFlags::CLOEXEC,
                            rustix::fs::Mode::empty(),
                        )
                        .map_err(io)?;
                        let meta = Meta::of(sub.as_fd()).map_err(io)?;
                        let prev_subtree = prev.and_then(|o| match o.kind {
                            NodeKind::Dir { subtree } => Some(subtree),
                            _ => None,
                        });
                        let subtree =
                            self.save_virtual(sub.as_fd(), &p, inner, prev_subtree, None)?;
                        Ok(Some(sfs::node_from_meta(
                            name,
                            &meta,
                            NodeKind::Dir { subtree },
                            &self.names,
                        )))
                    }
                }
            })
            .collect::<Result<_>>()?;
        let mut nodes: Vec<Node> = nodes.into_iter().flatten().collect();
        if let Some(x) = extra {
            if nodes.iter().any(|n| n.name == x.name) {
                return Err(Error::invalid(format!(
                    "--stdin-filename {:?} clashes with a backed-up path",
                    String::from_utf8_lossy(&x.name)
                )));
            }
            nodes.push(x);
        }
        let mut tree = Tree { nodes };
        tree.sort();
        self.save_tree(&tree)
    }

    fn save_tree(&self, tree: &Tree) -> Result<BlobId> {
        self.save_blob(BlobType::Tree, &tree.to_bytes()?)
    }

    /// Chunk and store a stream of unknown length, holding at most a window
    /// of it in memory. Returns the blob list and the length.
    fn save_stream(&self, what: &str, input: &mut (dyn Read + Send)) -> Result<(Vec<BlobId>, u64)> {
        self.save_reader(input, false, &|e| {
            Error::io(format!("cannot read {what}"), e)
        })
    }

    /// Store a stream source as a file node named after it.
    fn save_stream_node(&self, source: &StreamSource) -> Result<Node> {
        let name = source.filename().as_bytes().to_vec();
        crate::format::tree::validate_name(&name).map_err(|_| {
            Error::invalid(format!("invalid --stdin-filename {:?}", source.filename()))
        })?;
        let (content, len) = match source {
            StreamSource::Stdin { .. } => {
                self.save_stream("standard input", &mut std::io::stdin())?
            }
            StreamSource::Command { argv, .. } => {
                let (prog, args) = argv.split_first().ok_or_else(|| {
                    Error::invalid("--stdin-from-command needs a command after --")
                })?;
                let mut child = std::process::Command::new(prog)
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::inherit())
                    .spawn()
                    .map_err(|e| Error::io(format!("cannot run {prog:?}"), e))?;
                let result = match child.stdout.as_mut() {
                    Some(out) => self.save_stream(&format!("the output of {prog:?}"), out),
                    None => Err(Error::invalid("no output pipe")),
                };
                let status = child
                    .wait()
                    .map_err(|e| Error::io(format!("cannot wait for {prog:?}"), e))?;
                let stored = result?;
                if !status.success() {
                    return Err(Error::invalid(format!(
                        "the command {} failed ({status}); no snapshot was written",
                        argv.join(" ")
                    )));
                }
                stored
            }
        };
        add(&self.counters.files, 1);
        add(&self.counters.files_read, 1);
        add(&self.counters.bytes_read, len);
        add(&self.counters.total_bytes, len);
        let now = jiff::Timestamp::now();
        let t = crate::format::tree::Timestamp {
            sec: now.as_second(),
            nsec: now.subsec_nanosecond().clamp(0, 999_999_999) as u32,
        };
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let content = crate::format::chunklist::build(content, &mut |list| {
            self.save_blob(BlobType::Tree, list)
        })?;
        let mut n = Node::new(name, NodeKind::File { content });
        n.mode = 0o600;
        n.uid = uid;
        n.gid = gid;
        n.user = self.names.user(uid);
        n.group = self.names.group(gid);
        n.mtime = t;
        n.ctime = t;
        n.size = len;
        Ok(n)
    }
}

/// Read from `input` into `buf[start..]` until it is full or the input
/// ends. Returns the bytes now in `buf` and whether the input ended.
fn fill(input: &mut dyn Read, buf: &mut [u8], start: usize) -> std::io::Result<(usize, bool)> {
    let mut filled = start;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => return Ok((filled, true)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((filled, false))
}

/// Remove `-wal`, `-shm` and `-journal` files from `names` when the
/// database they belong to is in `names` too (it is captured with its WAL
/// folded in; a raw log would be replayed over it on restore). `dir` is
/// the open directory holding them.
fn drop_companions(dir: BorrowedFd<'_>, names: &mut Vec<std::ffi::OsString>) {
    let set: HashSet<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
    let mut drop: HashSet<Vec<u8>> = HashSet::new();
    for n in names.iter() {
        let b = n.as_bytes();
        for suffix in sqlite::COMPANIONS {
            if let Some(stem) = b.strip_suffix(suffix.as_bytes())
                && set.contains(stem)
                && sqlite::is_database_at(dir, OsStr::from_bytes(stem))
            {
                drop.insert(b.to_vec());
            }
        }
    }
    if !drop.is_empty() {
        names.retain(|n| !drop.contains(n.as_bytes()));
    }
}

fn reader_page_size(ps: usize) -> u32 {
    u32::try_from(ps).unwrap_or(0)
}

/// The parent for a backup: the newest snapshot of `host` with exactly
/// these source paths.
pub fn find_parent(
    repo: &Repository,
    host: &str,
    paths: &[Vec<u8>],
) -> Result<Option<(SnapshotId, Snapshot)>> {
    Ok(repo
        .load_snapshots()?
        .into_iter()
        .rfind(|(_, s)| s.hostname == host && s.paths == paths))
}

/// Say what a lost lock means for a backup.
fn aborted(e: Error) -> Error {
    if e.kind() == crate::error::ErrorKind::LockLost {
        e.context("backup aborted, no snapshot was written")
    } else {
        e
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
    let parent = match &opts.parent {
        Some(id) => Some((*id, repo.load_snapshot(id)?)),
        None => find_parent(repo, &host, &raw_paths)?,
    };
    let level = opts
        .compression_level
        .unwrap_or(repo.config().compression_level);
    let mut popts = PackerOptions::new(repo.config().pack_size as usize);
    popts.writers = opts
        .writers
        .unwrap_or_else(|| repo.backend().preferred_writers())
        .max(1);
    let packer = Packer::with_gate(
        repo.backend().clone(),
        repo.seal_key().clone(),
        popts,
        lock.gate(),
    );
    let ctx = Ctx {
        repo,
        packer: &packer,
        claims: Claims::new(),
        counters: Counters::default(),
        errors: Mutex::new(Vec::new()),
        changed: Mutex::new(Vec::new()),
        excludes,
        one_file_system: opts.one_file_system,
        level,
        names: NameCache::default(),
        hardlinks: Mutex::new(HashMap::new()),
        progress,
        change: ChangeRules {
            use_parent: !opts.force,
            ignore_inode: opts.ignore_inode,
            ignore_ctime: opts.ignore_ctime,
        },
        sqlite: !opts.sqlite_off,
        cancel: lock.cancel_token().clone(),
        sqlite_timeout: opts
            .sqlite_timeout
            .unwrap_or(std::time::Duration::from_secs(60)),
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
        ..
    } = ctx;
    let mut changed = changed.into_inner().unwrap_or_else(|p| p.into_inner());
    changed.sort();
    let tree = match tree {
        Ok(t) => t,
        Err(e) => {
            // Interrupted or failed: index what was stored, so the next run
            // reuses it. No snapshot is written.
            if let Err(fe) = packer.finish(&**repo.backend()) {
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
    let stored = packer.finish(&**repo.backend()).map_err(aborted)?;

    let errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    let c = counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut tags = opts.tags.clone();
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
            data_blobs_added: get(&c.data_blobs_added),
            tree_blobs_added: get(&c.tree_blobs_added),
            bytes_added: get(&c.bytes_added),
            bytes_stored: stored.bytes_written,
            errors: errors.len() as u64,
            duration_ns: started.elapsed().as_nanos() as u64,
        },
        extensions: Vec::new(),
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
