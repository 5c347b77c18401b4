//! Restore: recreate a snapshot tree (or part of it) under a target
//! directory, byte for byte, with its metadata.
//!
//! Safety: every entry is created relative to an open handle of its parent
//! directory (`openat`/`mkdirat`/`symlinkat` with `O_NOFOLLOW`), entry names
//! are single components checked by the tree decoder (no `/`, `.`, `..`,
//! NUL, duplicates), and no restore step ever follows a symlink, so nothing
//! is written outside the target, whatever the snapshot holds.
//!
//! Directories get their metadata last, deepest first, so that restoring
//! their content does not disturb their mtimes or trip over read-only modes.
//! By then another user who can write into the target may have moved or
//! swapped things, so the steps after the entry pass — directory metadata,
//! hard links — reopen what they need through the target's handle with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (component by component
//! with `O_NOFOLLOW` where the kernel has no `openat2`), and check that each
//! directory and file is the very one this restore created (device and
//! inode) before touching it. A mismatch is an error for the entry; nothing
//! outside the target, and nothing this restore did not create, is changed.
//!
//! A target that already holds entries is planned first
//! (`restore/plan.rs`): what is identical to the snapshot is left alone,
//! what differs is replaced, kept or (by default) makes the whole restore
//! refuse before anything is written, as [`RestoreOptions::overwrite`]
//! says; `delete` removes what the snapshot lacks.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

mod plan;

pub use plan::{Action, Change, Overwrite, refusal};
use plan::{Decision, Planner};

use super::Progress;
use crate::error::{Error, ErrorKind, Result};
use crate::format::BlobType;
use crate::format::tree::{
    EXT_SQLITE_CAPTURE, FLAG_SPARSE, FileContent, Node, NodeKind, Timestamp,
};
use crate::id::BlobId;
use crate::repo::readplan::Wanted;
use crate::repo::{Indexed, Repository};
use crate::source::exclude::ExcludeMatcher;
use crate::source::fs::{Meta, proc_fd_available, type_name};
pub use crate::source::sqlite::DbCheck;

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Directory to restore into (created if missing).
    pub target: PathBuf,
    /// Only restore entries matching these patterns (and what they contain);
    /// empty means everything.
    pub include: Vec<String>,
    /// Restore owners (default: when running as root).
    pub owners: Option<bool>,
    /// What to do with entries the target holds that differ from the
    /// snapshot's (default: refuse the restore before writing anything).
    pub overwrite: Overwrite,
    /// Remove entries of the restored directories that the snapshot lacks
    /// (only where the restore takes entries: with `include`, those that
    /// match).
    pub delete: bool,
    /// Plan only: list what would change in [`RestoreResult::changes`] and
    /// count it, write nothing (not even the target directory).
    pub dry_run: bool,
    /// How each restored SQLite capture is checked (default: `PRAGMA
    /// quick_check`).
    pub verify_db: DbCheck,
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreResult {
    /// Regular files written (in a dry run: that would be written).
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Other entries restored.
    pub others: u64,
    /// Bytes of file content written (holes excluded).
    pub bytes: u64,
    /// Entries that failed, with the reason.
    pub errors: Vec<(PathBuf, String)>,
    /// Restored SQLite captures and SQLite's verdict on each ("ok" when
    /// sound), from the check [`RestoreOptions::verify_db`] named (none
    /// listed when it is [`DbCheck::Off`]).
    pub databases: Vec<(PathBuf, String)>,
    /// Entries (not directories) already in the target with the snapshot's
    /// content: left alone.
    pub unchanged: u64,
    /// Entries in the target that differ and were kept, as `overwrite`
    /// said.
    pub skipped: u64,
    /// Entries removed (`delete`); a directory counts once, with its content.
    pub deleted: u64,
    /// What changes in the target, in walk order: new entries (in a dry run
    /// only), replaced, kept, removed, and (in a dry run that would be
    /// refused) the differing ones. Unchanged entries are counted, not
    /// listed.
    pub changes: Vec<Change>,
}

/// Granularity of hole detection when restoring sparse files.
const HOLE_BLOCK: usize = 4096;

/// Write `data` at `at`, leaving aligned all-zero blocks unwritten so they
/// stay holes. Returns the bytes actually written.
fn write_sparse(file: &File, data: &[u8], at: u64) -> std::io::Result<u64> {
    let mut written = 0u64;
    let mut run: Option<usize> = None; // start of the current non-zero run
    let mut pos = 0usize;
    while pos < data.len() {
        // Align blocks to the file, not to the chunk.
        let file_pos = at + pos as u64;
        let end = (pos + HOLE_BLOCK - (file_pos % HOLE_BLOCK as u64) as usize).min(data.len());
        let zero = data[pos..end].iter().all(|&b| b == 0);
        match (zero, run) {
            (false, None) => run = Some(pos),
            (true, Some(start)) => {
                file.write_all_at(&data[start..pos], at + start as u64)?;
                written += (pos - start) as u64;
                run = None;
            }
            _ => {}
        }
        pos = end;
    }
    if let Some(start) = run {
        file.write_all_at(&data[start..], at + start as u64)?;
        written += (data.len() - start) as u64;
    }
    Ok(written)
}

/// Entries of one directory restored by one task, one after the other.
const FILES_PER_TASK: usize = 256;

/// A filesystem object's identity: (device, inode).
type ObjId = (u64, u64);

fn obj_id(fd: BorrowedFd<'_>) -> std::result::Result<ObjId, Errno> {
    let m = Meta::of(fd)?;
    Ok((m.dev(), m.ino()))
}

/// A restored directory, whose metadata is applied after the entry pass.
struct DirMeta {
    /// Its path below the target (`/`-separated, no leading `/`).
    rel: Vec<u8>,
    /// Its snapshot path (for messages).
    path: Vec<u8>,
    node: Node,
    /// The directory this restore created or reused.
    id: ObjId,
}

/// The first restored member of a hard-link group.
struct LinkFirst {
    rel: Vec<u8>,
    path: Vec<u8>,
    /// The file restore wrote; `None` until it is written (or if it failed).
    id: Option<ObjId>,
}

/// A later member of a hard-link group, linked to the first after the
/// entry pass.
struct PendingLink {
    rel: Vec<u8>,
    path: Vec<u8>,
    /// The group: (device, inode) at backup.
    key: (u64, u64),
}

/// A file created by the entry pass whose content comes from the planned
/// reads.
struct PendingFile {
    /// Its path below the target.
    rel: Vec<u8>,
    /// Its snapshot path (for messages).
    path: Vec<u8>,
    /// The directory it was created in.
    dir_id: ObjId,
    /// The file this restore created.
    id: ObjId,
    /// Its node (metadata only: the content list is dropped).
    node: Node,
    /// Its length.
    len: u64,
    /// Owner and mode were right at creation (see `restore_file`).
    skip_meta: bool,
    /// Its hard-link group, if it is the first member of one.
    group: Option<(u64, u64)>,
    /// Blob writes still to come.
    remaining: AtomicUsize,
    /// It failed (and was reported): later blobs are not written.
    failed: AtomicBool,
    /// Its blobs are written through one handle held from its first
    /// blob to its last ([`Held`]): it has at least [`HELD_MIN_BLOBS`].
    holds: bool,
    held: Mutex<Held>,
}

/// Files of at least this many blobs (a database captured page by page:
/// one blob a page) are written through one handle, instead of reopening
/// their directory and the file, and checking both, for every blob.
const HELD_MIN_BLOBS: usize = 16;

/// Files holding a handle at once; beyond that, files are written blob by
/// blob. (A pack's blobs are shuffled when it is written, see
/// `repo::packer`, so consecutive blobs of a file do not arrive in order:
/// each is written on its own, through the held handle.)
const HELD_OPEN: usize = 64;

/// The handle of a file written through one handle, opened through the
/// target's handle and checked to be the file this restore created at
/// its first blob. Its data goes through that handle (into the very file
/// this restore created, wherever it is moved meanwhile); its completion —
/// metadata, database check — reopens and checks the file again, as a
/// blob-by-blob write does.
#[derive(Default)]
struct Held {
    file: Option<Arc<File>>,
    /// No place was free at its first blob: written blob by blob.
    refused: bool,
    /// Complete, or failed: later blobs are dropped.
    ended: bool,
}

/// What the planned reads of a restore fetch, and where each blob goes.
#[derive(Default)]
struct Pending {
    files: Vec<PendingFile>,
    /// Each needed blob once.
    wanted: Vec<Wanted>,
    /// For each wanted blob: the first (file, offset) it is written to.
    first: Vec<(usize, u64)>,
    /// Every further (wanted blob, file, offset), for a blob used more
    /// than once (sorted by blob before the reads).
    more: Vec<(usize, usize, u64)>,
    /// Wanted blobs by ID (dropped before the reads).
    by_id: HashMap<BlobId, usize>,
}

struct Ctx<'a> {
    repo: &'a Repository,
    /// The target directory's handle: every later step starts from it.
    root: OwnedFd,
    root_id: ObjId,
    /// What the plan decided for entries the target holds (empty when the
    /// target was empty).
    decisions: HashMap<Vec<u8>, Decision>,
    include: Option<ExcludeMatcher>,
    owners: bool,
    euid: u32,
    egid: u32,
    /// The process umask, read once (it applies to files we create).
    umask: u32,
    files: AtomicU64,
    dirs: AtomicU64,
    others: AtomicU64,
    bytes: AtomicU64,
    errors: Mutex<Vec<(PathBuf, String)>>,
    /// Hard-link groups: (device, inode) at backup → first restored member.
    links: Mutex<HashMap<(u64, u64), LinkFirst>>,
    /// Later members of hard-link groups, linked after the first pass.
    pending_links: Mutex<Vec<PendingLink>>,
    /// Directories whose metadata is applied at the end.
    dir_meta: Mutex<Vec<DirMeta>>,
    /// Integrity-check verdicts of restored databases.
    databases: Mutex<Vec<(PathBuf, String)>>,
    /// Created files waiting for their content.
    pending: Mutex<Pending>,
    /// Files holding a [`Held`] handle now.
    held_open: AtomicUsize,
    verify_db: DbCheck,
    progress: &'a dyn Progress,
}

fn errno_io(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

fn ts(t: Timestamp) -> Timespec {
    Timespec {
        tv_sec: t.sec,
        tv_nsec: i64::from(t.nsec),
    }
}

fn times(n: &Node) -> Timestamps {
    Timestamps {
        last_access: ts(n.mtime),
        last_modification: ts(n.mtime),
    }
}

fn display(snapshot_path: &[u8]) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(snapshot_path))
}

impl<'a> Ctx<'a> {
    /// A restore into the target `root` (its handle and identity), with
    /// the plan's `decisions`, `include` and `opts`' owners and database
    /// check; nothing done yet.
    fn new(
        repo: &'a Repository,
        (root, root_id): (OwnedFd, ObjId),
        decisions: HashMap<Vec<u8>, Decision>,
        include: Option<ExcludeMatcher>,
        opts: &RestoreOptions,
        progress: &'a dyn Progress,
    ) -> Ctx<'a> {
        Ctx {
            repo,
            root,
            root_id,
            decisions,
            include,
            owners: opts
                .owners
                .unwrap_or_else(|| rustix::process::geteuid().is_root()),
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            umask: {
                let old = rustix::process::umask(Mode::from_raw_mode(0o022));
                rustix::process::umask(old);
                old.bits()
            },
            files: AtomicU64::new(0),
            dirs: AtomicU64::new(0),
            others: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: Mutex::new(Vec::new()),
            links: Mutex::new(HashMap::new()),
            pending_links: Mutex::new(Vec::new()),
            dir_meta: Mutex::new(Vec::new()),
            databases: Mutex::new(Vec::new()),
            pending: Mutex::new(Pending::default()),
            held_open: AtomicUsize::new(0),
            verify_db: opts.verify_db,
            progress,
        }
    }

    fn fail(&self, path: &[u8], e: Error) {
        let p = display(path);
        self.progress.error(&p, &e);
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((p, e.to_string()));
    }

    fn included(&self, path: &[u8], is_dir: bool) -> bool {
        match &self.include {
            None => true,
            Some(m) => m.is_excluded(&display(path), is_dir),
        }
    }

    /// Restore the entries of `tree` into the open directory `dir`.
    /// `path` is the snapshot path of `dir`, `rel` its path below the target.
    /// Returns how many entries were restored.
    /// `fresh`: `dir` was created empty by this restore, so no entry can be
    /// in the way and new files get this process's owner.
    fn restore_tree(
        &self,
        dir: &OwnedFd,
        tree: &BlobId,
        path: &[u8],
        rel: &[u8],
        all: bool,
        fresh: bool,
    ) -> u64 {
        if super::depth(rel) > super::MAX_TREE_DEPTH {
            self.fail(
                path,
                Error::integrity(format!(
                    "refusing to restore below {} levels of directories (hostile or corrupt tree)",
                    super::MAX_TREE_DEPTH
                )),
            );
            return 0;
        }
        let t = match self.repo.load_tree(tree) {
            Ok(t) => t,
            Err(e) => {
                self.fail(path, e.context("refusing to restore this directory"));
                return 0;
            }
        };
        let one = |n: &Node| -> u64 {
            let mut p = path.to_vec();
            if !p.ends_with(b"/") {
                p.push(b'/');
            }
            p.extend_from_slice(&n.name);
            let mut r = rel.to_vec();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(&n.name);
            let is_dir = matches!(n.kind, NodeKind::Dir { .. });
            let take = all || self.included(&p, is_dir);
            match self.restore_node(dir, n, &p, &r, take, fresh) {
                Ok(k) => k,
                Err(e) => {
                    self.fail(&p, e);
                    0
                }
            }
        };
        // Subdirectories in parallel, and this directory's other entries in
        // batches: two threads creating files in one directory contend on
        // its lock and on one inode group, which costs more than it gains.
        let (dirs, others): (Vec<&Node>, Vec<&Node>) = t
            .nodes
            .iter()
            .partition(|n| matches!(n.kind, NodeKind::Dir { .. }));
        let (a, b) = rayon::join(
            || dirs.par_iter().map(|n| one(n)).sum::<u64>(),
            || {
                others
                    .par_chunks(FILES_PER_TASK)
                    .map(|batch| batch.iter().map(|n| one(n)).sum::<u64>())
                    .sum::<u64>()
            },
        );
        a + b
    }

    fn restore_node(
        &self,
        dir: &OwnedFd,
        n: &Node,
        path: &[u8],
        rel: &[u8],
        take: bool,
        fresh: bool,
    ) -> Result<u64> {
        let name = std::ffi::OsStr::from_bytes(&n.name);
        let io = |what: &str, e: Errno| Error::io_path(what, display(path), errno_io(e));
        match self.decisions.get(rel) {
            Some(Decision::Skip) => return Ok(0),
            Some(Decision::Unchanged(id)) => {
                // Left alone; a later member of its hard-link group links
                // to it.
                if let (Some(id), true) = (id, n.nlink > 1 && n.inode != 0) {
                    self.links
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry((n.device, n.inode))
                        .or_insert_with(|| LinkFirst {
                            rel: rel.to_vec(),
                            path: path.to_vec(),
                            id: Some(*id),
                        });
                }
                return Ok(0);
            }
            Some(Decision::Replace) | None => {}
        }
        if let NodeKind::Dir { subtree } = &n.kind {
            let existed = self
                .make_dir(dir, name)
                .map_err(|e| io("cannot create directory", e))?;
            let sub = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io("cannot open directory", e))?;
            let id = obj_id(sub.as_fd()).map_err(|e| io("cannot stat directory", e))?;
            let inner = self.restore_tree(&sub, subtree, path, rel, take, !existed);
            if !take && inner == 0 {
                if !existed {
                    let _ = rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR);
                }
                return Ok(0);
            }
            self.dirs.fetch_add(1, Ordering::Relaxed);
            self.dir_meta
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(DirMeta {
                    rel: rel.to_vec(),
                    path: path.to_vec(),
                    node: n.clone(),
                    id,
                });
            return Ok(inner + 1);
        }
        if !take {
            return Ok(0);
        }
        if !fresh {
            self.remove_non_dir(dir, name);
        }
        match &n.kind {
            NodeKind::File { content } => {
                let group = (n.nlink > 1 && n.inode != 0).then_some((n.device, n.inode));
                if let Some(key) = group {
                    let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
                    if links.contains_key(&key) {
                        self.pending_links
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(PendingLink {
                                rel: rel.to_vec(),
                                path: path.to_vec(),
                                key,
                            });
                        self.files.fetch_add(1, Ordering::Relaxed);
                        return Ok(1);
                    }
                    links.insert(
                        key,
                        LinkFirst {
                            rel: rel.to_vec(),
                            path: path.to_vec(),
                            id: None,
                        },
                    );
                }
                // Counted, linked and checked once its content is written
                // (`complete`), now for an empty file, else after the
                // planned reads.
                self.restore_file(dir, name, n, content, path, rel, fresh, group)?;
                return Ok(1);
            }
            NodeKind::Symlink { target } => {
                rustix::fs::symlinkat(std::ffi::OsStr::from_bytes(target), dir, name)
                    .map_err(|e| io("cannot create symlink", e))?;
                if self.owners {
                    let _ = rustix::fs::chownat(
                        dir,
                        name,
                        Some(rustix::fs::Uid::from_raw(n.uid)),
                        Some(rustix::fs::Gid::from_raw(n.gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    );
                }
                rustix::fs::utimensat(dir, name, &times(n), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io("cannot set times of", e))?;
                self.others.fetch_add(1, Ordering::Relaxed);
            }
            NodeKind::Fifo | NodeKind::CharDevice { .. } | NodeKind::BlockDevice { .. } => {
                let (ft, dev) = match &n.kind {
                    NodeKind::Fifo => (FileType::Fifo, 0),
                    NodeKind::CharDevice { rdev } => (FileType::CharacterDevice, *rdev),
                    NodeKind::BlockDevice { rdev } => (FileType::BlockDevice, *rdev),
                    _ => (FileType::Fifo, 0),
                };
                rustix::fs::mknodat(dir, name, ft, Mode::from_raw_mode(0o600), dev)
                    .map_err(|e| io("cannot create special file", e))?;
                crate::failpoint::hit("restore::before_special_meta")?;
                self.set_meta_special(dir, name, ft, n, path)?;
                self.others.fetch_add(1, Ordering::Relaxed);
            }
            NodeKind::Socket | NodeKind::Dir { .. } => return Ok(0),
        }
        Ok(1)
    }

    /// Create a directory, or reuse an existing real directory. Returns true
    /// if it already existed. A non-directory in the way is replaced.
    fn make_dir(&self, dir: &OwnedFd, name: &std::ffi::OsStr) -> std::result::Result<bool, Errno> {
        match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => Ok(false),
            Err(Errno::EXIST) => {
                let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    Ok(true)
                } else {
                    rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
                    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?;
                    Ok(false)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Remove an existing non-directory entry so a new one can take its name.
    fn remove_non_dir(&self, dir: &OwnedFd, name: &std::ffi::OsStr) {
        if let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            && FileType::from_raw_mode(st.st_mode) != FileType::Directory
        {
            let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
        }
    }

    /// Create a file and list the blobs it needs (with the offsets they go
    /// to) for the planned reads ([`Ctx::fetch`]); a file without content
    /// is completed at once. `group`: its hard-link group.
    #[allow(clippy::too_many_arguments)]
    fn restore_file(
        &self,
        dir: &OwnedFd,
        name: &std::ffi::OsStr,
        n: &Node,
        content: &FileContent,
        path: &[u8],
        rel: &[u8],
        fresh: bool,
        group: Option<(u64, u64)>,
    ) -> Result<()> {
        // In a directory this restore created, a new file is owned by this
        // process, and a mode without special bits that the umask leaves
        // alone is final at creation: skip the chown and chmod calls then.
        // The file is opened again to write its content, so its owner must
        // be able to write it meanwhile.
        let perm = n.mode & 0o777;
        let owner_ok = !self.owners || (n.uid == self.euid && n.gid == self.egid);
        let exact_mode =
            fresh && n.mode & 0o7000 == 0 && perm & self.umask == 0 && perm & 0o200 != 0;
        // A new file, never an existing one: whatever takes the name
        // between clearing it and creating the file (a FIFO that would
        // block, a hard link to a file elsewhere) is cleared again, a few
        // times, or the entry fails.
        let mut tries = 0;
        let fd = loop {
            match rustix::fs::openat(
                dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(if exact_mode { perm } else { 0o600 }),
            ) {
                Ok(fd) => break fd,
                Err(Errno::EXIST) if tries < 3 => {
                    tries += 1;
                    self.remove_non_dir(dir, name);
                }
                Err(e) => {
                    return Err(Error::io_path("cannot create", display(path), errno_io(e)));
                }
            }
        };
        let file = File::from(fd);
        let io = |what: &str, e: Errno| Error::io_path(what, display(path), errno_io(e));
        let id = obj_id(file.as_fd()).map_err(|e| io("cannot stat", e))?;
        let dir_id = obj_id(dir.as_fd()).map_err(|e| io("cannot stat the directory of", e))?;
        // The data blob IDs in order: the entry's own list, or read from
        // its chunk-list tree (each list blob re-hashed to its ID).
        let content = crate::repo::chunklist::data_ids(
            self.repo,
            content,
            crate::repo::chunklist::chunk_limit(n),
        )
        .map_err(|e| e.context(display(path).display()))?;
        // Offsets from the index's plaintext lengths.
        let mut at = Vec::with_capacity(content.len());
        let mut off = 0u64;
        for id in content.iter() {
            let loc = self.repo.locate(BlobType::Data, id)?;
            at.push((*id, loc, off));
            off += u64::from(loc.raw_len);
        }
        let holds = at.len() >= HELD_MIN_BLOBS;
        let mut node = n.clone();
        // Only the metadata is needed from here on.
        if let NodeKind::File { content } = &mut node.kind {
            *content = FileContent::Inline(Vec::new());
        }
        let pf = PendingFile {
            rel: rel.to_vec(),
            path: path.to_vec(),
            dir_id,
            id,
            node,
            len: off,
            skip_meta: fresh && owner_ok && exact_mode,
            group,
            remaining: AtomicUsize::new(at.len()),
            failed: AtomicBool::new(false),
            holds,
            held: Mutex::new(Held::default()),
        };
        if at.is_empty() {
            return self.complete(&pf, &file, dir);
        }
        drop(file);
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let f = p.files.len();
        p.files.push(pf);
        for (id, loc, off) in at {
            match p.by_id.get(&id) {
                Some(&w) => p.more.push((w, f, off)),
                None => {
                    let w = p.wanted.len();
                    p.wanted.push(Wanted {
                        blob_type: BlobType::Data,
                        id,
                        loc,
                    });
                    p.first.push((f, off));
                    p.by_id.insert(id, w);
                }
            }
        }
        Ok(())
    }

    /// The last blob of a file is written: its length (sparse files end
    /// short of it), its metadata, its hard-link group's first member, the
    /// check of a SQLite capture; then it counts as restored. `file` and
    /// `dir` are the file and its directory, as created or reopened.
    fn complete(&self, pf: &PendingFile, file: &File, dir: &OwnedFd) -> Result<()> {
        let shown = display(&pf.path);
        if pf.node.flags & FLAG_SPARSE != 0 {
            file.set_len(pf.len)
                .map_err(|e| Error::io_path("cannot set the length of", &shown, e))?;
        }
        // Its bytes were reported blob by blob.
        self.progress.file_done(&shown, 0);
        self.set_meta_fd(file.as_fd(), &pf.node, &pf.path, pf.skip_meta)?;
        if let Some(key) = pf.group
            && let Some(first) = self
                .links
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&key)
            && first.rel == pf.rel
        {
            first.id = Some(pf.id);
        }
        if pf.node.extension(EXT_SQLITE_CAPTURE).is_some() {
            crate::failpoint::hit("restore::before_database_check")?;
            let (_, name) = split_last(&pf.rel);
            self.check_database(dir, name, &pf.path, Some(pf.id))?;
        }
        self.files.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Read every blob the created files need, planned by pack
    /// ([`Repository::read_planned`]), and write each to every file and
    /// offset that needs it; each file is completed when its last blob is
    /// written. A blob that cannot be read or fails its checks fails every
    /// file that needs it, each named once.
    fn fetch(&self) {
        let mut p = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if p.wanted.is_empty() {
            return;
        }
        p.by_id = HashMap::new();
        p.more.sort_unstable();
        self.repo.read_planned(
            &p.wanted,
            crate::repo::readplan::read_workers(self.repo),
            &|w, data: Result<Vec<u8>>| {
                let from = p.more.partition_point(|m| m.0 < w);
                let more = p.more[from..].iter().take_while(|m| m.0 == w);
                for (f, at) in std::iter::once(p.first[w]).chain(more.map(|m| (m.1, m.2))) {
                    let pf = &p.files[f];
                    if pf.failed.load(Ordering::Relaxed) {
                        continue;
                    }
                    let r = match &data {
                        Ok(d) => self.write_pending(pf, d, at),
                        Err(e) => Err(Error::new(e.kind(), e.to_string())),
                    };
                    if let Err(e) = r
                        && !pf.failed.swap(true, Ordering::Relaxed)
                    {
                        self.end_held(pf);
                        self.fail(&pf.path, e);
                    }
                }
            },
        );
    }

    /// Write one blob's plaintext at `at` in a created file: through its
    /// held handle ([`Ctx::write_held`]), or reopened through the target's
    /// handle and checked to be the very file this restore created;
    /// complete the file if it was its last blob.
    fn write_pending(&self, pf: &PendingFile, data: &[u8], at: u64) -> Result<()> {
        if pf.holds && self.write_held(pf, data, at)? {
            return Ok(());
        }
        let (file, dir) = self.reopen_pending(pf)?;
        self.write_at(pf, &file, data, at)?;
        self.progress.advance(0, data.len() as u64);
        if pf.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.complete(pf, &file, &dir)?;
        }
        Ok(())
    }

    /// Write one blob of a file written through its held handle
    /// ([`Held`]), opening and checking it at the first blob; the last
    /// blob completes the file, checked again. `Ok(false)`: no place was
    /// free, the caller writes the blob itself.
    fn write_held(&self, pf: &PendingFile, data: &[u8], at: u64) -> Result<bool> {
        let mut held = pf.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.ended {
            // Failed meanwhile: the blob is not written (nor counted), so
            // the file is never completed.
            return Ok(true);
        }
        if held.refused {
            return Ok(false);
        }
        let file = match &held.file {
            Some(f) => Arc::clone(f),
            None => {
                if self.held_open.fetch_add(1, Ordering::AcqRel) >= HELD_OPEN {
                    self.held_open.fetch_sub(1, Ordering::AcqRel);
                    held.refused = true;
                    return Ok(false);
                }
                match self.reopen_pending(pf) {
                    Ok((f, _)) => {
                        // Reserve the whole file at once: its pages come
                        // in no useful order (a pack's blobs are
                        // shuffled), and filling a file out of order
                        // costs the filesystem extent work at every
                        // page otherwise (about a fifth of the system
                        // time of restoring the 836 MiB benchmark
                        // database). Best effort: where the reservation
                        // fails (a filesystem without `fallocate`, or
                        // one that compresses and would fit the file
                        // anyway) it is written as before, and a write
                        // that finds no room fails the file as always.
                        // A sparse file keeps its holes.
                        if pf.node.flags & FLAG_SPARSE == 0 {
                            let _ = rustix::fs::fallocate(
                                &f,
                                rustix::fs::FallocateFlags::empty(),
                                0,
                                pf.len,
                            );
                        }
                        let f = Arc::new(f);
                        held.file = Some(Arc::clone(&f));
                        f
                    }
                    Err(e) => {
                        self.held_open.fetch_sub(1, Ordering::AcqRel);
                        held.ended = true;
                        return Err(e);
                    }
                }
            }
        };
        drop(held);
        self.write_at(pf, &file, data, at)?;
        self.progress.advance(0, data.len() as u64);
        crate::failpoint::hit("restore::after_held_write")?;
        if pf.remaining.fetch_sub(1, Ordering::AcqRel) == 1 && !pf.failed.load(Ordering::Acquire) {
            self.end_held(pf);
            // The handle written through was checked at the file's first
            // blob; its metadata and its database check go through the
            // file checked again now.
            let (file, dir) = self.reopen_pending(pf)?;
            self.complete(pf, &file, &dir)?;
        }
        Ok(true)
    }

    /// Close a file's held handle and give its place back (the file is
    /// done, or failed): later blobs of it are dropped.
    fn end_held(&self, pf: &PendingFile) {
        if !pf.holds {
            return;
        }
        let mut held = pf.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.file.take().is_some() {
            self.held_open.fetch_sub(1, Ordering::AcqRel);
        }
        held.ended = true;
    }

    /// Write `data` at `at` in a pending file (holes kept for a sparse
    /// one), counting the bytes written.
    fn write_at(&self, pf: &PendingFile, file: &File, data: &[u8], at: u64) -> Result<()> {
        let written = if pf.node.flags & FLAG_SPARSE != 0 {
            write_sparse(file, data, at)
        } else {
            file.write_all_at(data, at).map(|()| data.len() as u64)
        }
        .map_err(|e| Error::io_path("cannot write", display(&pf.path), e))?;
        self.bytes.fetch_add(written, Ordering::Relaxed);
        Ok(())
    }

    /// Reopen a created file to write its content, through the target's
    /// handle, checked to be the very file this restore created; with its
    /// directory.
    fn reopen_pending(&self, pf: &PendingFile) -> Result<(File, OwnedFd)> {
        const WHAT: &str = "cannot write";
        let shown = display(&pf.path);
        let (dir_rel, name) = split_last(&pf.rel);
        let dir = self.open_restored_dir(dir_rel, Some(pf.dir_id), WHAT, &pf.path)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io_path(WHAT, &shown, errno_io(e)))?;
        let now = obj_id(fd.as_fd()).map_err(|e| Error::io_path(WHAT, &shown, errno_io(e)))?;
        if now != pf.id {
            return Err(Error::new(
                ErrorKind::UnsafePath,
                format!(
                    "{WHAT} {}: the file there is not the one this restore created \
                     (it was replaced during the restore); left alone",
                    shown.display()
                ),
            ));
        }
        Ok((File::from(fd), dir))
    }

    /// Owner, mode, xattrs and times. `created_exact`: owner and mode are
    /// already right (see `restore_file`).
    fn set_meta_fd(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        n: &Node,
        path: &[u8],
        created_exact: bool,
    ) -> Result<()> {
        let io = |what: &str, e: Errno| Error::io_path(what, display(path), errno_io(e));
        if created_exact {
            self.set_xattrs(fd, n, path)?;
            return rustix::fs::futimens(fd, &times(n))
                .map_err(|e| io("cannot set the times of", e));
        }
        if self.owners {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(n.uid)),
                Some(rustix::fs::Gid::from_raw(n.gid)),
            )
            .map_err(|e| io("cannot set the owner of", e))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(n.mode & 0o7777))
            .map_err(|e| io("cannot set the mode of", e))?;
        self.set_xattrs(fd, n, path)?;
        rustix::fs::futimens(fd, &times(n)).map_err(|e| io("cannot set the times of", e))
    }

    fn set_xattrs(&self, fd: std::os::fd::BorrowedFd<'_>, n: &Node, path: &[u8]) -> Result<()> {
        let io = |what: &str, e: Errno| Error::io_path(what, display(path), errno_io(e));
        for x in &n.xattrs {
            if let Err(e) = rustix::fs::fsetxattr(
                fd,
                x.name.as_slice(),
                &x.value,
                rustix::fs::XattrFlags::empty(),
            ) {
                // Filesystems without xattrs, or namespaces we may not write
                // (trusted.* as non-root), are not fatal for the content.
                if e != Errno::NOTSUP && e != Errno::PERM {
                    return Err(io("cannot set an extended attribute of", e));
                }
            }
        }
        Ok(())
    }

    /// Owner, mode and times of a special file just created as `name` in
    /// `dir`. It is opened (`O_PATH`, not following a symlink) and checked
    /// to still be a `want`: if something else took its name meanwhile, it
    /// is left alone. An `O_PATH` handle takes no `fchmod` or `futimens`, so
    /// mode and times go through `/proc/self/fd/N`, which the kernel follows
    /// to the object itself, not to a path.
    fn set_meta_special(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        want: FileType,
        n: &Node,
        path: &[u8],
    ) -> Result<()> {
        let io = |what: &str, e: Errno| Error::io_path(what, display(path), errno_io(e));
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("cannot open", e))?;
        let now = Meta::of(fd.as_fd()).map_err(|e| io("cannot stat", e))?;
        if now.file_type() != want {
            return Err(Error::new(
                ErrorKind::UnsafePath,
                format!(
                    "{} was replaced by a {} before its metadata was set; left alone",
                    display(path).display(),
                    type_name(now.file_type())
                ),
            ));
        }
        if self.owners {
            rustix::fs::chownat(
                &fd,
                "",
                Some(rustix::fs::Uid::from_raw(n.uid)),
                Some(rustix::fs::Gid::from_raw(n.gid)),
                AtFlags::EMPTY_PATH,
            )
            .map_err(|e| io("cannot set the owner of", e))?;
        }
        if !proc_fd_available() {
            return Err(Error::io_path(
                "cannot set the mode of",
                display(path),
                std::io::Error::other("/proc is not mounted"),
            ));
        }
        let handle = format!("/proc/self/fd/{}", fd.as_raw_fd());
        rustix::fs::chmodat(
            rustix::fs::CWD,
            &handle,
            Mode::from_raw_mode(n.mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(|e| io("cannot set the mode of", e))?;
        rustix::fs::utimensat(rustix::fs::CWD, &handle, &times(n), AtFlags::empty())
            .map_err(|e| io("cannot set the times of", e))
    }

    /// Check a restored SQLite capture, `name` in `dir`, written as `id`;
    /// a failed check is an error for the entry (the file stays, for
    /// inspection). Everything goes through `dir`, the handle the file was
    /// created in.
    fn check_database(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &[u8],
        id: Option<ObjId>,
    ) -> Result<()> {
        let Some(verdict) = crate::source::sqlite::check_restored_at(
            dir.as_fd(),
            name,
            id,
            &display(path),
            self.verify_db,
        )?
        else {
            return Ok(());
        };
        self.databases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((display(path), verdict.clone()));
        if verdict != "ok" {
            return Err(Error::integrity(format!(
                "restored database {} fails PRAGMA {}: {verdict}",
                display(path).display(),
                self.verify_db.pragma().unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// Reopen the directory `rel` below the target through the target's
    /// handle ([`open_dir_beneath`]) and check that it is the directory
    /// `id` this restore created or reused. `what` and `path` make the
    /// messages.
    fn open_restored_dir(
        &self,
        rel: &[u8],
        id: Option<ObjId>,
        what: &str,
        path: &[u8],
    ) -> Result<OwnedFd> {
        let shown = display(path);
        let fd = open_dir_beneath(self.root.as_fd(), rel).map_err(|e| match e {
            Errno::LOOP | Errno::XDEV | Errno::NOTDIR | Errno::NOENT => Error::new(
                ErrorKind::UnsafePath,
                format!(
                    "{what} {}: the path to it below the target changed during the restore \
                     (a directory was moved, removed or replaced by a symlink: {}); \
                     nothing was changed there",
                    shown.display(),
                    std::io::Error::from(e)
                ),
            ),
            e => Error::io_path(what, &shown, errno_io(e)),
        })?;
        let now = obj_id(fd.as_fd()).map_err(|e| Error::io_path(what, &shown, errno_io(e)))?;
        match id {
            Some(id) if id != now => Err(Error::new(
                ErrorKind::UnsafePath,
                format!(
                    "{what} {}: the directory there is not the one this restore made \
                     (it was replaced during the restore); left alone",
                    shown.display()
                ),
            )),
            _ => Ok(fd),
        }
    }

    /// Link the later members of hard-link groups to their first member.
    fn finish_links(&self) {
        let pending =
            std::mem::take(&mut *self.pending_links.lock().unwrap_or_else(|p| p.into_inner()));
        if pending.is_empty() {
            return;
        }
        let firsts = std::mem::take(&mut *self.links.lock().unwrap_or_else(|p| p.into_inner()));
        let mut dirs: HashMap<Vec<u8>, ObjId> = self
            .dir_meta
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|d| (d.rel.clone(), d.id))
            .collect();
        dirs.insert(Vec::new(), self.root_id);
        for p in pending {
            if let Err(e) = self.link(&p, &firsts, &dirs) {
                self.fail(&p.path, e);
            }
        }
    }

    /// Link one later member of a hard-link group: the first member is
    /// opened (`O_PATH`, not following) in its reopened directory and must
    /// be the file this restore wrote; the link is made from that handle,
    /// not from a path.
    fn link(
        &self,
        p: &PendingLink,
        firsts: &HashMap<(u64, u64), LinkFirst>,
        dirs: &HashMap<Vec<u8>, ObjId>,
    ) -> Result<()> {
        const WHAT: &str = "cannot create hard link";
        let shown = display(&p.path);
        let first = firsts.get(&p.key).ok_or_else(|| {
            Error::io_path(WHAT, &shown, std::io::Error::other("no first member"))
        })?;
        let Some(first_id) = first.id else {
            return Err(Error::io_path(
                WHAT,
                &shown,
                std::io::Error::other(format!(
                    "the first member of its group, {}, was not restored",
                    display(&first.path).display()
                )),
            ));
        };
        let (first_dir, first_name) = split_last(&first.rel);
        let src_dir =
            self.open_restored_dir(first_dir, dirs.get(first_dir).copied(), WHAT, &p.path)?;
        let src = rustix::fs::openat(
            &src_dir,
            first_name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io_path(WHAT, &shown, errno_io(e)))?;
        let m = Meta::of(src.as_fd()).map_err(|e| Error::io_path(WHAT, &shown, errno_io(e)))?;
        if !m.is_file() || (m.dev(), m.ino()) != first_id {
            return Err(Error::new(
                ErrorKind::UnsafePath,
                format!(
                    "{WHAT} {}: {} is no longer the file this restore wrote (replaced during \
                     the restore); not linked",
                    shown.display(),
                    display(&first.path).display()
                ),
            ));
        }
        let (dir, name) = split_last(&p.rel);
        let dst_dir = self.open_restored_dir(dir, dirs.get(dir).copied(), WHAT, &p.path)?;
        link_handle(&src, &dst_dir, name).map_err(|e| Error::io_path(WHAT, &shown, errno_io(e)))
    }

    /// Remove the entries the plan lists (`delete`), each through its
    /// reopened parent directory, never following a symlink nor leaving
    /// the target's filesystem. Returns how many were removed.
    fn delete(&self, deletes: &[(Vec<u8>, bool)], target: &std::path::Path) -> u64 {
        let mut deleted = 0;
        for (rel, _) in deletes {
            let shown = target.join(display(rel));
            let (dir, name) = split_last(rel);
            let r = self
                .open_restored_dir(dir, None, "cannot remove", rel)
                .and_then(|fd| {
                    plan::remove_entry(fd.as_fd(), name, self.root_id.0, super::depth(rel))
                        .map_err(|e| Error::io_path("cannot remove", &shown, errno_io(e)))
                });
            match r {
                Ok(()) => deleted += 1,
                Err(e) => {
                    self.progress.error(&shown, &e);
                    self.errors
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((shown, e.to_string()));
                }
            }
        }
        deleted
    }

    fn finish_dirs(&self) {
        let mut dirs =
            std::mem::take(&mut *self.dir_meta.lock().unwrap_or_else(|p| p.into_inner()));
        // Deepest first: a parent's mtime is set after its children change it.
        dirs.sort_by_key(|d| std::cmp::Reverse(super::depth(&d.rel)));
        for d in dirs {
            let r = self
                .open_restored_dir(
                    &d.rel,
                    Some(d.id),
                    "cannot apply the metadata of directory",
                    &d.path,
                )
                .and_then(|fd| self.set_meta_fd(fd.as_fd(), &d.node, &d.path, false));
            if let Err(e) = r {
                self.fail(&d.path, e);
            }
        }
    }
}

/// Split a path below the target into its directory ("" for the target)
/// and its last component.
fn split_last(rel: &[u8]) -> (&[u8], &OsStr) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], OsStr::from_bytes(&rel[i + 1..])),
        None => (&[], OsStr::from_bytes(rel)),
    }
}

/// Make `name` in `dir` a hard link to the file open as `src` (an `O_PATH`
/// handle). `AT_EMPTY_PATH` needs `CAP_DAC_READ_SEARCH`; without it, the
/// file is named through `/proc/self/fd/N`, which the kernel follows to
/// the file itself.
fn link_handle(src: &OwnedFd, dir: &OwnedFd, name: &OsStr) -> std::result::Result<(), Errno> {
    match rustix::fs::linkat(src, "", dir, name, AtFlags::EMPTY_PATH) {
        Err(Errno::NOENT | Errno::PERM) if proc_fd_available() => rustix::fs::linkat(
            rustix::fs::CWD,
            format!("/proc/self/fd/{}", src.as_raw_fd()),
            dir,
            name,
            AtFlags::SYMLINK_FOLLOW,
        ),
        r => r,
    }
}

/// Set once `openat2` turned out to be missing (`ENOSYS`: kernels before
/// 5.6, or a seccomp filter that does not know it).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Longest path handed to one `openat2` call: `PATH_MAX` is 4096 bytes
/// with the terminating NUL, and deep trees make longer ones.
const RESOLVE_SEGMENT: usize = 4000;

/// Open the directory `rel` (`/`-separated, "" for `root` itself) below
/// `root`, never following a symlink and never leaving `root`:
/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, a segment of at most
/// [`RESOLVE_SEGMENT`] bytes at a time (each beneath the handle of the one
/// before), or where the kernel lacks `openat2`, one `openat(O_NOFOLLOW |
/// O_DIRECTORY)` per component ([`open_dir_by_components`]).
pub fn open_dir_beneath(root: BorrowedFd<'_>, rel: &[u8]) -> std::result::Result<OwnedFd, Errno> {
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return open_dir_by_components(root, rel);
    }
    let mut cur: Option<OwnedFd> = None;
    for seg in segments(rel, RESOLVE_SEGMENT) {
        let base = cur.as_ref().map_or(root, |f| f.as_fd());
        match openat2_beneath(base, seg) {
            Ok(fd) => cur = Some(fd),
            Err(Errno::NOSYS) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
                return open_dir_by_components(root, rel);
            }
            Err(e) => return Err(e),
        }
    }
    match cur {
        Some(fd) => Ok(fd),
        None => openat2_beneath(root, b"."),
    }
}

/// One `openat2` of a directory below `base`, retried when a concurrent
/// rename makes the kernel ask for it.
fn openat2_beneath(base: BorrowedFd<'_>, p: &[u8]) -> std::result::Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let mut again = 0;
    loop {
        match rustix::fs::openat2(base, OsStr::from_bytes(p), flags, Mode::empty(), how) {
            Err(Errno::AGAIN) if again < 16 => again += 1,
            r => return r,
        }
    }
}

/// `rel` cut at `/` into pieces of at most `max` bytes (a longer single
/// component is a piece of its own, and fails as too long).
fn segments(rel: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    let mut pos = 0;
    for c in rel.split(|&b| b == b'/') {
        let (from, to) = (pos, pos + c.len());
        pos = to + 1;
        if c.is_empty() {
            continue;
        }
        match start {
            Some(s) if to - s <= max => end = to,
            Some(s) => {
                out.push(&rel[s..end]);
                start = Some(from);
                end = to;
            }
            None => {
                start = Some(from);
                end = to;
            }
        }
    }
    if let Some(s) = start {
        out.push(&rel[s..end]);
    }
    out
}

/// [`open_dir_beneath`] without `openat2`: one `openat(O_NOFOLLOW |
/// O_DIRECTORY)` per component, each from the handle of the one before. A
/// component that is `.`, `..` or empty-but-not-a-separator is refused
/// (restore never makes one: names are checked when trees are decoded).
pub fn open_dir_by_components(
    root: BorrowedFd<'_>,
    rel: &[u8],
) -> std::result::Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut cur = rustix::fs::openat(root, ".", flags, Mode::empty())?;
    for c in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        if c == b"." || c == b".." {
            return Err(Errno::XDEV);
        }
        cur = rustix::fs::openat(&cur, OsStr::from_bytes(c), flags, Mode::empty())?;
    }
    Ok(cur)
}

/// What to restore: a directory's tree, or one non-directory entry.
pub enum RestoreRoot {
    /// The content of a directory (its tree), restored into the target.
    Tree(BlobId),
    /// One entry, restored into the target under its own name.
    Entry(Box<Node>),
}

/// Restore `root` into `opts.target`. `root_path` is the snapshot path of
/// `root` (for messages and include patterns). The index must be loaded
/// under a shared lock, which is held throughout.
pub fn restore(
    index: &Indexed<'_>,
    root: &RestoreRoot,
    root_path: &[u8],
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    let repo: &Repository = index;
    let exists = match std::fs::metadata(&opts.target) {
        Ok(m) if m.is_dir() => true,
        Ok(_) => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the restore target {} is a file, not a directory; give a directory \
                     (it is created if missing)",
                    opts.target.display()
                ),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            return Err(Error::io_path(
                "cannot stat the restore target",
                &opts.target,
                e,
            ));
        }
    };
    let include = if opts.include.is_empty() {
        None
    } else {
        Some(ExcludeMatcher::new(&opts.include, &[])?)
    };
    let mut opened = if exists {
        Some(open_target(&opts.target)?)
    } else {
        None
    };
    let target_was_empty = match &opened {
        None => true,
        Some((_, path, _)) => std::fs::read_dir(path)
            .map_err(|e| Error::io_path("cannot list the restore target", &opts.target, e))?
            .next()
            .is_none(),
    };
    // The directories' trees, a level at a time by pack, into the local
    // tree cache of a remote repository (which the walks below then read).
    if let RestoreRoot::Tree(t) = root {
        repo.prefetch_trees(t, crate::repo::readplan::read_workers(repo));
    }
    // A target that holds entries (or a dry run, or an include whose
    // matches must be found) is planned first: nothing is written before
    // it is known that nothing would be overwritten unasked.
    let plan = if !target_was_empty || opts.dry_run || include.is_some() {
        let planner = Planner::new(
            repo,
            include.as_ref(),
            opts.overwrite,
            opts.delete,
            opts.dry_run,
        );
        let dir = opened.as_ref().map(|(fd, _, _)| fd);
        super::in_pool(|| match root {
            RestoreRoot::Tree(t) => {
                let all = include.is_none() || planner_included(include.as_ref(), root_path);
                planner.tree(dir, t, root_path, b"", all);
            }
            RestoreRoot::Entry(n) => {
                planner.node(dir, n, root_path, &n.name, true);
            }
        });
        planner.finish(&opts.target)
    } else {
        plan::Plan::default()
    };
    if let Some((first, count)) = plan.differing()
        && !opts.dry_run
    {
        return Err(refusal(&opts.target, first, count));
    }
    if include.is_some() && plan.taken == 0 && !plan.incomplete {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "--include {} matched nothing in {}; nothing was restored",
                opts.include.join(" "),
                display(root_path).display()
            ),
        ));
    }
    if opts.dry_run {
        return Ok(RestoreResult {
            files: plan.files,
            dirs: plan.dirs,
            others: plan.others,
            bytes: plan.bytes,
            unchanged: plan.unchanged,
            skipped: plan.skipped,
            deleted: plan.deletes.len() as u64,
            changes: plan.changes,
            ..RestoreResult::default()
        });
    }
    if opened.is_none() {
        std::fs::create_dir_all(&opts.target)
            .map_err(|e| Error::io_path("cannot create the restore target", &opts.target, e))?;
        opened = Some(open_target(&opts.target)?);
    }
    let Some((dir, _, root_id)) = opened else {
        return Err(Error::io_path(
            "cannot open the restore target",
            &opts.target,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    };
    let ctx = Ctx::new(
        repo,
        (dir, root_id),
        plan.decisions,
        include,
        opts,
        progress,
    );
    let deleted = ctx.delete(&plan.deletes, &opts.target);
    super::in_pool(|| match root {
        RestoreRoot::Tree(t) => {
            let all = ctx.include.is_none() || ctx.included(root_path, true);
            ctx.restore_tree(&ctx.root, t, root_path, b"", all, target_was_empty);
        }
        RestoreRoot::Entry(n) => {
            if let Err(e) =
                ctx.restore_node(&ctx.root, n, root_path, &n.name, true, target_was_empty)
            {
                ctx.fail(root_path, e);
            }
        }
    });
    ctx.fetch();
    crate::failpoint::hit("restore::before_finish")?;
    ctx.finish_links();
    ctx.finish_dirs();
    let errors = ctx.errors.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(RestoreResult {
        files: ctx.files.into_inner(),
        dirs: ctx.dirs.into_inner(),
        others: ctx.others.into_inner(),
        bytes: ctx.bytes.into_inner(),
        errors,
        databases: ctx
            .databases
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
        unchanged: plan.unchanged,
        skipped: plan.skipped,
        deleted,
        changes: plan.changes,
    })
}

/// `root_path` matches an include pattern (as a directory).
fn planner_included(include: Option<&ExcludeMatcher>, root_path: &[u8]) -> bool {
    include.is_none_or(|m| m.is_excluded(&display(root_path), true))
}

/// Open the restore target (an existing directory): its handle, its
/// resolved path and its identity.
fn open_target(target: &std::path::Path) -> Result<(OwnedFd, PathBuf, ObjId)> {
    let resolved = std::fs::canonicalize(target)
        .map_err(|e| Error::io_path("cannot resolve the restore target", target, e))?;
    let dir = rustix::fs::open(
        &resolved,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io_path("cannot open the restore target", &resolved, errno_io(e)))?;
    let id = obj_id(dir.as_fd())
        .map_err(|e| Error::io_path("cannot stat the restore target", &resolved, errno_io(e)))?;
    Ok((dir, resolved, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mem::{CountingBackend, MemBackend};
    use std::os::unix::fs::MetadataExt;
    use std::sync::Arc;

    type Opener = fn(BorrowedFd<'_>, &[u8]) -> std::result::Result<OwnedFd, Errno>;

    #[test]
    fn long_paths_are_cut_into_segments_at_slashes() {
        assert!(segments(b"", 10).is_empty());
        assert_eq!(segments(b"a/bb/ccc", 100), vec![&b"a/bb/ccc"[..]]);
        assert_eq!(segments(b"a/bb/ccc", 4), vec![&b"a/bb"[..], b"ccc"]);
        assert_eq!(segments(b"a/bb/ccc", 3), vec![&b"a"[..], b"bb", b"ccc"]);
        assert_eq!(segments(b"abcdef/g", 3), vec![&b"abcdef"[..], b"g"]);
        let deep: Vec<u8> = b"d/".repeat(3000);
        let segs = segments(&deep[..deep.len() - 1], RESOLVE_SEGMENT);
        assert!(segs.iter().all(|s| s.len() <= RESOLVE_SEGMENT));
        assert_eq!(segs.join(&b'/'), &deep[..deep.len() - 1]);
    }

    #[test]
    fn reopening_below_the_target_never_follows_a_symlink_nor_leaves_it() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        std::fs::create_dir_all(t.join("a/b")).unwrap();
        std::fs::create_dir_all(d.path().join("outside/b")).unwrap();
        std::os::unix::fs::symlink(d.path().join("outside"), t.join("l")).unwrap();
        let root = rustix::fs::open(&t, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
        // openat2, and the fallback for kernels without it.
        for open in [open_dir_beneath as Opener, open_dir_by_components] {
            let fd = open(root.as_fd(), b"a/b").unwrap();
            assert_eq!(Meta::of(fd.as_fd()).unwrap().ino(), ino(&t.join("a/b")));
            let fd = open(root.as_fd(), b"").unwrap();
            assert_eq!(Meta::of(fd.as_fd()).unwrap().ino(), ino(&t));
            for bad in [&b"l/b"[..], b"l", b"../t/a", b"a/../../t"] {
                let e = open(root.as_fd(), bad).unwrap_err();
                assert!(
                    [Errno::LOOP, Errno::NOTDIR, Errno::XDEV].contains(&e),
                    "{:?}: {e:?}",
                    String::from_utf8_lossy(bad)
                );
            }
        }
    }

    /// Back up `files` (name, content) from a new directory into an
    /// in-memory repository; restore `opts` of its root into `target`.
    struct Restorer {
        repo: Repository,
        src: tempfile::TempDir,
        tree: BlobId,
    }

    impl Restorer {
        fn new(files: &[(&str, Vec<u8>)]) -> Restorer {
            Restorer::on(crate::repo::test_repo(), files)
        }

        fn on(mut repo: Repository, files: &[(&str, Vec<u8>)]) -> Restorer {
            let src = tempfile::tempdir().unwrap();
            for (name, content) in files {
                let path = src.path().join(name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, content).unwrap();
            }
            let opts = crate::ops::backup::BackupOptions {
                paths: vec![src.path().to_path_buf()],
                ..Default::default()
            };
            let snap = {
                let mut lock = repo.lock_shared().unwrap();
                crate::ops::backup::backup(&mut lock, &opts, &crate::ops::NoProgress)
                    .unwrap()
                    .snapshot
            };
            let mut r = Restorer {
                repo,
                src,
                tree: snap.tree,
            };
            let mut lock = r.repo.lock_shared().unwrap();
            let index = lock.load_index().unwrap();
            let path = r.src.path().as_os_str().as_bytes().to_vec();
            let tree = match crate::ops::walk::find(&index, &snap.tree, &path).unwrap() {
                crate::ops::walk::Found::Dir(t, _) => t,
                crate::ops::walk::Found::Entry(_) => panic!("a directory"),
            };
            drop(lock);
            r.tree = tree;
            r
        }

        fn restore(
            &mut self,
            target: &std::path::Path,
            overwrite: Overwrite,
            dry_run: bool,
        ) -> Result<RestoreResult> {
            self.restore_counted(target, overwrite, dry_run, None)
        }

        /// Restore; with `counter`, its counts start when the restore does.
        fn restore_counted(
            &mut self,
            target: &std::path::Path,
            overwrite: Overwrite,
            dry_run: bool,
            counter: Option<&CountingBackend>,
        ) -> Result<RestoreResult> {
            let path = self.src.path().as_os_str().as_bytes().to_vec();
            let mut lock = self.repo.lock_shared().unwrap();
            let index = lock.load_index().unwrap();
            if let Some(c) = counter {
                c.take_counts();
            }
            let opts = RestoreOptions {
                target: target.to_path_buf(),
                overwrite,
                dry_run,
                ..RestoreOptions::default()
            };
            restore(
                &index,
                &RestoreRoot::Tree(self.tree),
                &path,
                &opts,
                &crate::ops::NoProgress,
            )
        }
    }

    #[test]
    fn existing_files_are_compared_with_the_snapshot_chunk_by_chunk() {
        // Large enough for several chunks: one byte changed in the middle
        // keeps the size and every other chunk.
        let big: Vec<u8> = (0..3u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut r = Restorer::new(&[("big", big.clone()), ("small", b"small".to_vec())]);
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        let first = r.restore(&t, Overwrite::Refuse, false).unwrap();
        assert_eq!((first.files, first.unchanged, first.skipped), (2, 0, 0));
        let again = r.restore(&t, Overwrite::Refuse, false).unwrap();
        assert_eq!((again.files, again.unchanged, again.skipped), (0, 2, 0));
        assert!(again.changes.is_empty(), "{:?}", again.changes);

        let mut edited = big.clone();
        edited[big.len() / 2] ^= 1;
        std::fs::write(t.join("big"), &edited).unwrap();
        let e = r.restore(&t, Overwrite::Refuse, false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.to_string().contains(&format!(
                "{} already exists and differs",
                t.join("big").display()
            )),
            "{e}"
        );
        assert_eq!(
            std::fs::read(t.join("big")).unwrap(),
            edited,
            "nothing written"
        );

        let dry = r.restore(&t, Overwrite::Refuse, true).unwrap();
        assert_eq!(
            dry.changes,
            vec![Change {
                path: t.join("big"),
                action: Action::Differs,
                is_dir: false
            }]
        );
        let kept = r.restore(&t, Overwrite::Never, false).unwrap();
        assert_eq!((kept.files, kept.unchanged, kept.skipped), (0, 1, 1));
        assert_eq!(std::fs::read(t.join("big")).unwrap(), edited);
        let replaced = r.restore(&t, Overwrite::Always, false).unwrap();
        assert_eq!(
            (replaced.files, replaced.unchanged, replaced.skipped),
            (1, 1, 0)
        );
        assert_eq!(std::fs::read(t.join("big")).unwrap(), big);

        // A file cut short, or grown, differs too.
        std::fs::write(t.join("small"), b"smal").unwrap();
        let dry = r.restore(&t, Overwrite::Always, true).unwrap();
        assert_eq!(dry.changes[0].action, Action::Replace);
        std::fs::write(t.join("small"), b"smaller").unwrap();
        let dry = r.restore(&t, Overwrite::IfNewer, true).unwrap();
        assert_eq!(
            dry.changes[0].action,
            Action::Skip,
            "the local file is newer"
        );
    }

    /// Pseudo-random (incompressible) bytes.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// Files by name below the backed-up directory, with their content.
    type Files = Vec<(String, Vec<u8>)>;

    /// 300 small files (1–3 KB) and their restorer, on a counted memory
    /// backend that claims four connections and streams in pieces.
    fn many_small_files() -> (Restorer, Files, Arc<MemBackend>, Arc<CountingBackend>) {
        let files: Vec<(String, Vec<u8>)> = (0..300u64)
            .map(|i| (format!("f{i:03}"), noise(1000 + 7 * i as usize, i)))
            .collect();
        let named: Vec<(&str, Vec<u8>)> =
            files.iter().map(|(n, c)| (n.as_str(), c.clone())).collect();
        let mem = Arc::new(MemBackend::new());
        // Streamed reads arrive in pieces of 997 bytes, blobs cut across.
        let counting = Arc::new(CountingBackend::new(mem.clone(), 4).with_pieces(997));
        let r = Restorer::on(crate::repo::test_repo_on(counting.clone()), &named);
        (r, files, mem, counting)
    }

    #[test]
    fn a_restore_of_many_small_files_reads_each_pack_in_one_request_not_one_per_blob() {
        let (mut r, files, _, counting) = many_small_files();
        let packs = r.repo.list_packs().unwrap();
        let stored: u64 = packs.values().sum();
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        let res = r
            .restore_counted(&t, Overwrite::Refuse, false, Some(&counting))
            .unwrap();
        assert!(res.errors.is_empty(), "{:?}", res.errors);
        assert_eq!(res.files, 300);
        for (name, content) in &files {
            assert_eq!(&std::fs::read(t.join(name)).unwrap(), content, "{name}");
        }
        // The directory's tree blob, then one request for the data pack
        // (each blob was one request before: 301 in all).
        let (reads, bytes) = counting.take_counts();
        assert!(
            reads <= packs.len() as u64 + 1,
            "{reads} reads for {} packs",
            packs.len()
        );
        // Each byte at most once (the tree blob lies in a pack of its own).
        assert!(bytes <= stored, "{bytes} bytes read of {stored} stored");
    }

    #[test]
    fn a_restore_asks_the_storage_to_read_ahead_the_packs_it_reads() {
        let (mut r, _, _, counting) = many_small_files();
        let data_packs: std::collections::HashSet<String> = r
            .repo
            .list_packs()
            .unwrap()
            .keys()
            .map(crate::repo::pack_name)
            .collect();
        counting.take_hints();
        let d = tempfile::tempdir().unwrap();
        let res = r
            .restore_counted(
                &d.path().join("t"),
                Overwrite::Refuse,
                false,
                Some(&counting),
            )
            .unwrap();
        assert_eq!(res.files, 300);
        // Every range read was announced first, so a cold local disk has
        // the next ones in flight; nothing outside the repository's packs.
        let hints = counting.take_hints();
        assert!(!hints.is_empty());
        assert!(hints.iter().all(|h| data_packs.contains(h)), "{hints:?}");
    }

    /// Bytes of a pack read in one request at most: what
    /// [`crate::repo::readplan`] reads of `packs` when it needs all of
    /// them, in requests.
    fn requests_for_whole_packs(packs: &HashMap<crate::id::PackId, u64>) -> u64 {
        packs
            .values()
            .map(|&size| size.div_ceil(crate::repo::readplan::MAX_RANGE))
            .sum()
    }

    #[test]
    fn dump_reads_each_pack_of_a_file_once_not_one_request_per_blob() {
        // A file of many blobs, part of it twice (a recurring blob).
        let mut big = noise(14 << 20, 7);
        big.extend_from_within(..2 << 20);
        let named = [("big", big.clone()), ("small", noise(3000, 8))];
        let counting =
            Arc::new(CountingBackend::new(Arc::new(MemBackend::new()), 4).with_pieces(997));
        let mut r = Restorer::on(crate::repo::test_repo_on(counting.clone()), &named);
        let packs = r.repo.list_packs().unwrap();
        let mut lock = r.repo.lock_shared().unwrap();
        let index = lock.load_index().unwrap();
        let crate::ops::walk::Found::Entry(node) =
            crate::ops::walk::find(&index, &r.tree, b"/big").unwrap()
        else {
            panic!("a file")
        };
        let blobs = crate::repo::chunklist::data_ids(
            &index,
            match &node.kind {
                NodeKind::File { content } => content,
                _ => panic!("a file"),
            },
            crate::repo::chunklist::chunk_limit(&node),
        )
        .unwrap()
        .len() as u64;
        assert!(blobs >= 8, "{blobs} blobs");
        // The whole file in one window, then in windows of 1 MiB (the
        // blobs of each window by pack, written in the file's order).
        for window in [crate::ops::walk::DUMP_WINDOW, 1 << 20] {
            counting.take_pack_reads();
            let mut out = Vec::new();
            let n =
                crate::ops::walk::dump_file_in_windows(&index, &node, &mut out, window).unwrap();
            assert_eq!(n, big.len() as u64);
            assert!(out == big, "dumped bytes differ ({window})");
            let reads = counting.take_pack_reads();
            if window == crate::ops::walk::DUMP_WINDOW {
                // Each pack in one request (two for a pack past MAX_RANGE);
                // one request per blob was `blobs`.
                assert!(
                    reads <= requests_for_whole_packs(&packs) && reads < blobs,
                    "{reads} reads for {blobs} blobs in {} packs",
                    packs.len()
                );
            } else {
                assert!(reads <= blobs, "{reads} reads for {blobs} blobs");
            }
        }
    }

    #[test]
    fn restore_test_reads_each_pack_once_to_restore_and_no_data_to_verify() {
        // restore-test is a restore into a temporary directory (the read
        // plan above), then a verification that hashes the restored files
        // against the snapshot's blob IDs without reading their data.
        let (mut r, files, _, counting) = many_small_files();
        let packs = r.repo.list_packs().unwrap();
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        counting.take_pack_reads();
        let res = r
            .restore_counted(&t, Overwrite::Refuse, false, Some(&counting))
            .unwrap();
        assert!(res.errors.is_empty(), "{:?}", res.errors);
        for (name, content) in &files {
            assert_eq!(&std::fs::read(t.join(name)).unwrap(), content, "{name}");
        }
        // The directory's tree blob, then each data pack in one request.
        let reads = counting.take_pack_reads();
        assert!(
            reads <= requests_for_whole_packs(&packs) + 1,
            "{reads} reads for 300 files in {} packs",
            packs.len()
        );
        let mut lock = r.repo.lock_shared().unwrap();
        let index = lock.load_index().unwrap();
        counting.take_pack_reads();
        let v =
            crate::ops::verify::verify(&index, &r.tree, b"", &t, &crate::ops::NoProgress).unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.files, 300);
        // The directory's tree blob (this repository keeps no local tree
        // cache), not one data blob.
        assert_eq!(counting.take_pack_reads(), 1);
    }

    #[test]
    fn a_damaged_blob_inside_a_merged_range_fails_only_its_file_naming_the_blob() {
        let (mut r, files, mem, _) = many_small_files();
        // Flip a byte in the middle of the blob of f150.
        let root = r.repo.load_tree(&r.tree).unwrap();
        let node = root.nodes.iter().find(|n| n.name == b"f150").unwrap();
        let NodeKind::File {
            content: FileContent::Inline(ids),
        } = &node.kind
        else {
            panic!("one inline blob")
        };
        let loc = r.repo.locate(BlobType::Data, &ids[0]).unwrap();
        let name = crate::repo::pack_name(&loc.pack);
        let mut pack = mem.snapshot()[&name].clone();
        pack[loc.offset as usize + 100] ^= 1;
        mem.set_raw(&name, pack);

        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        let res = r.restore(&t, Overwrite::Refuse, false).unwrap();
        assert_eq!(res.files, 299);
        assert_eq!(res.errors.len(), 1, "{:?}", res.errors);
        let (path, e) = &res.errors[0];
        assert!(path.ends_with("f150"), "{path:?}");
        assert!(
            e.contains(&format!("data blob {}", ids[0])) && e.contains(&loc.pack.to_string()),
            "{e}"
        );
        for (name, content) in files.iter().filter(|(n, _)| n != "f150") {
            assert_eq!(&std::fs::read(t.join(name)).unwrap(), content, "{name}");
        }
    }

    #[test]
    fn a_cold_restore_of_nested_directories_fetches_their_trees_by_pack_not_one_per_directory() {
        // Five levels of three subdirectories (363 directories below the
        // root), a small file in each (364 files).
        let mut dirs = vec![String::new()];
        for depth in 0..5 {
            let mut next = Vec::new();
            for d in dirs.iter().filter(|d| d.matches('/').count() == depth) {
                for i in 0..3 {
                    next.push(format!("{d}d{i}/"));
                }
            }
            dirs.extend(next);
        }
        let files: Vec<(String, Vec<u8>)> = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| (format!("{d}f"), noise(500 + i, i as u64)))
            .collect();
        let named: Vec<(&str, Vec<u8>)> =
            files.iter().map(|(n, c)| (n.as_str(), c.clone())).collect();
        let cache = tempfile::tempdir().unwrap();
        let counting = Arc::new(
            CountingBackend::new(Arc::new(MemBackend::new()), 4)
                .with_cache_dir(cache.path().to_path_buf())
                .with_pieces(1000),
        );
        let mut r = Restorer::on(crate::repo::test_repo_on(counting.clone()), &named);
        let packs = r.repo.list_packs().unwrap();
        // Cold: the backup left its trees in the cache.
        std::fs::remove_dir_all(cache.path().join("trees")).unwrap();
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        let res = r
            .restore_counted(&t, Overwrite::Refuse, false, Some(&counting))
            .unwrap();
        assert!(res.errors.is_empty(), "{:?}", res.errors);
        assert_eq!((res.files, res.dirs), (364, 363));
        for (name, content) in &files {
            assert_eq!(&std::fs::read(t.join(name)).unwrap(), content, "{name}");
        }
        // The trees: their pack, in one read; then the data, one read per
        // pack. One read per directory would be 364 and more.
        let (reads, _) = counting.take_counts();
        assert!(
            reads <= packs.len() as u64,
            "{reads} reads for {} packs",
            packs.len()
        );
        // Warm: the trees come from the cache, only the data is read.
        let t2 = d.path().join("t2");
        let res = r
            .restore_counted(&t2, Overwrite::Refuse, false, Some(&counting))
            .unwrap();
        assert!(res.errors.is_empty(), "{:?}", res.errors);
        let (reads, _) = counting.take_counts();
        assert!(
            reads <= packs.len() as u64,
            "{reads} reads for {} packs",
            packs.len()
        );
    }

    /// A restore context on an empty target, driven by hand.
    fn hand_ctx<'a>(repo: &'a Repository, dir: &std::path::Path) -> Ctx<'a> {
        let (root, _, root_id) = open_target(dir).unwrap();
        let opts = RestoreOptions {
            owners: Some(false),
            verify_db: DbCheck::Off,
            ..RestoreOptions::default()
        };
        Ctx::new(
            repo,
            (root, root_id),
            HashMap::new(),
            None,
            &opts,
            &crate::ops::NoProgress,
        )
    }

    /// A created file `f` of `pages` 4 KiB pages, written through a held
    /// handle; with the mtime it gets when complete.
    fn held_file(ctx: &Ctx<'_>, pages: usize) -> PendingFile {
        let fd = rustix::fs::openat(
            &ctx.root,
            "f",
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let mut node = Node::new(
            "f",
            NodeKind::File {
                content: FileContent::Inline(Vec::new()),
            },
        );
        node.mtime = Timestamp {
            sec: 1_000_000_000,
            nsec: 0,
        };
        PendingFile {
            rel: b"f".to_vec(),
            path: b"/f".to_vec(),
            dir_id: ctx.root_id,
            id: obj_id(fd.as_fd()).unwrap(),
            node,
            len: (pages * 4096) as u64,
            skip_meta: true,
            group: None,
            remaining: AtomicUsize::new(pages),
            failed: AtomicBool::new(false),
            holds: true,
            held: Mutex::new(Held::default()),
        }
    }

    /// Whether the filesystem of `dir` takes `fallocate` (ext4, XFS,
    /// btrfs and tmpfs do).
    fn fallocate_works(dir: &std::path::Path) -> bool {
        let f = std::fs::File::create(dir.join("probe")).unwrap();
        let ok = rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, 4096).is_ok();
        std::fs::remove_file(dir.join("probe")).unwrap();
        ok
    }

    fn completed_mtime(dir: &std::path::Path) -> bool {
        let m = std::fs::metadata(dir.join("f")).unwrap();
        m.modified().unwrap()
            == std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000)
    }

    /// Thread B takes a page of a file written through its held handle
    /// past the `failed` check; thread A's write of the same file fails
    /// and ends its handle; B's page then arrives, the file's last. It
    /// must be dropped: written blob by blob instead, it completed a file
    /// that misses A's bytes (metadata applied, counted as restored).
    #[test]
    fn a_page_arriving_after_its_files_write_failed_does_not_complete_the_file() {
        let repo = crate::repo::test_repo();
        let dir = tempfile::tempdir().unwrap();
        let ctx = hand_ctx(&repo, dir.path());
        let blobs = HELD_MIN_BLOBS;
        let pf = held_file(&ctx, blobs);
        let page = [7u8; 4096];
        // Every page but the last arrives and is written.
        for k in 0..blobs - 1 {
            ctx.write_pending(&pf, &page, (k * 4096) as u64).unwrap();
        }
        // A's write failed: the fetch marks the file and ends its handle.
        pf.failed.store(true, Ordering::Relaxed);
        ctx.end_held(&pf);
        // B's page, past the check before the failure, arrives last.
        ctx.write_pending(&pf, &page, ((blobs - 1) * 4096) as u64)
            .unwrap();
        assert_eq!(ctx.files.load(Ordering::Relaxed), 0, "completed");
        assert_eq!(ctx.held_open.load(Ordering::Relaxed), 0);
        assert!(
            !completed_mtime(dir.path()),
            "the snapshot's mtime was applied to an unfinished file"
        );
    }

    #[test]
    fn a_held_file_is_allocated_whole_at_its_first_page_and_lands_exactly() {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let repo = crate::repo::test_repo();
        let dir = tempfile::tempdir().unwrap();
        let ctx = hand_ctx(&repo, dir.path());
        // 600 pages arriving as a shuffled pack hands them over.
        let pages = 600usize;
        let pf = held_file(&ctx, pages);
        let page = |k: usize| vec![(k % 253) as u8 + 1; 4096];
        let mut order: Vec<usize> = (0..pages).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(5));
        for (n, &k) in order.iter().enumerate() {
            ctx.write_pending(&pf, &page(k), (k * 4096) as u64).unwrap();
            if n == 0 && fallocate_works(dir.path()) {
                // Its blocks are reserved at once: pages written out of
                // order do not grow it piece by piece.
                let m = std::fs::metadata(dir.path().join("f")).unwrap();
                assert_eq!(m.len(), (pages * 4096) as u64);
                use std::os::unix::fs::MetadataExt;
                assert!(
                    m.blocks() * 512 >= (pages * 4096) as u64,
                    "{} blocks",
                    m.blocks()
                );
            }
            if n + 1 < pages {
                assert_eq!(ctx.files.load(Ordering::Relaxed), 0, "completed early");
            }
        }
        assert_eq!(ctx.files.load(Ordering::Relaxed), 1);
        assert!(completed_mtime(dir.path()));
        let got = std::fs::read(dir.path().join("f")).unwrap();
        let want: Vec<u8> = (0..pages).flat_map(page).collect();
        assert!(got == want, "restored bytes differ");
    }

    #[test]
    fn write_sparse_keeps_zero_blocks_as_holes_and_content_exact() {
        let dir = tempfile::tempdir().unwrap();
        for at in [0u64, 1, 4095, 4096, 10_000] {
            let p = dir.path().join(format!("f{at}"));
            let f = File::create(&p).unwrap();
            let mut data = vec![0u8; 1 << 20];
            data[5] = 1;
            data[300_000..300_010].copy_from_slice(&[7; 10]);
            let last = data.len() - 1;
            data[last] = 9;
            let n = write_sparse(&f, &data, at).unwrap();
            assert!(n < 3 * 8192 + 10, "wrote {n} bytes at {at}");
            f.set_len(at + data.len() as u64).unwrap();
            let back = std::fs::read(&p).unwrap();
            assert!(back[..at as usize].iter().all(|&b| b == 0));
            assert_eq!(&back[at as usize..], &data[..]);
            assert!(std::fs::metadata(&p).unwrap().blocks() * 512 < 64 * 1024);
        }
    }
}
