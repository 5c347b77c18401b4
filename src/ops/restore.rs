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

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::Progress;
use crate::error::{Error, Result};
use crate::format::BlobType;
use crate::format::tree::{EXT_SQLITE_CAPTURE, FLAG_SPARSE, Node, NodeKind, Timestamp};
use crate::id::BlobId;
use crate::repo::Repository;
use crate::source::exclude::ExcludeMatcher;

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
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreResult {
    /// Regular files restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Other entries restored.
    pub others: u64,
    /// Bytes of file content written (holes excluded).
    pub bytes: u64,
    /// Entries that failed, with the reason.
    pub errors: Vec<(PathBuf, String)>,
    /// Restored SQLite captures and SQLite's `integrity_check` verdict on
    /// each ("ok" when sound).
    pub databases: Vec<(PathBuf, String)>,
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

/// A later member of a hard-link group: (new path, group key, first path).
type PendingLink = (PathBuf, (u64, u64), PathBuf);

struct Ctx<'a> {
    repo: &'a Repository,
    target: PathBuf,
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
    /// Hard-link groups: (device, inode) at backup → first restored path.
    links: Mutex<HashMap<(u64, u64), PathBuf>>,
    /// Later members of hard-link groups, linked after the first pass.
    pending_links: Mutex<Vec<PendingLink>>,
    /// Directories whose metadata is applied at the end.
    dir_meta: Mutex<Vec<(PathBuf, Node)>>,
    /// Integrity-check verdicts of restored databases.
    databases: Mutex<Vec<(PathBuf, String)>>,
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

impl Ctx<'_> {
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

    /// Local path of a snapshot path below the restore root.
    fn local(&self, rel: &[u8]) -> PathBuf {
        self.target.join(std::ffi::OsStr::from_bytes(
            rel.strip_prefix(b"/").unwrap_or(rel),
        ))
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
                .push((self.local(rel), n.clone()));
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
                if n.nlink > 1 && n.inode != 0 {
                    let key = (n.device, n.inode);
                    let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(first) = links.get(&key) {
                        self.pending_links
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((self.local(rel), key, first.clone()));
                        self.files.fetch_add(1, Ordering::Relaxed);
                        return Ok(1);
                    }
                    links.insert(key, self.local(rel));
                }
                self.restore_file(dir, name, n, content, path, fresh)?;
                if n.extension(EXT_SQLITE_CAPTURE).is_some() {
                    self.check_database(&self.local(rel), path)?;
                }
                self.files.fetch_add(1, Ordering::Relaxed);
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
                self.set_meta_at(dir, name, n, path)?;
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

    fn restore_file(
        &self,
        dir: &OwnedFd,
        name: &std::ffi::OsStr,
        n: &Node,
        content: &[BlobId],
        path: &[u8],
        fresh: bool,
    ) -> Result<()> {
        // In a directory this restore created, a new file is owned by this
        // process, and a mode without special bits that the umask leaves
        // alone is final at creation: skip the chown and chmod calls then.
        let perm = n.mode & 0o777;
        let owner_ok = !self.owners || (n.uid == self.euid && n.gid == self.egid);
        let exact_mode = fresh && n.mode & 0o7000 == 0 && perm & self.umask == 0;
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(if exact_mode { perm } else { 0o600 }),
        )
        .map_err(|e| Error::io_path("cannot create", display(path), errno_io(e)))?;
        let file = File::from(fd);
        let sparse = n.flags & FLAG_SPARSE != 0;
        // Offsets from the index's plaintext lengths, so chunks of a large
        // file can be fetched and written in parallel.
        let mut offsets = Vec::with_capacity(content.len());
        let mut off = 0u64;
        for id in content {
            offsets.push(off);
            off += u64::from(self.repo.locate(BlobType::Data, id)?.raw_len);
        }
        let write = |(id, at): (&BlobId, &u64)| -> Result<()> {
            let data = self.repo.read_blob(BlobType::Data, id)?;
            let written = if sparse {
                write_sparse(&file, &data, *at)
            } else {
                file.write_all_at(&data, *at).map(|()| data.len() as u64)
            }
            .map_err(|e| Error::io_path("cannot write", display(path), e))?;
            self.bytes.fetch_add(written, Ordering::Relaxed);
            self.progress.advance(0, data.len() as u64);
            Ok(())
        };
        if content.len() > 1 {
            content
                .par_iter()
                .zip(offsets.par_iter())
                .try_for_each(write)?;
        } else {
            content.iter().zip(offsets.iter()).try_for_each(write)?;
        }
        // Holes were skipped, so a sparse file may end short of its size.
        if sparse {
            file.set_len(off)
                .map_err(|e| Error::io_path("cannot set the length of", display(path), e))?;
        }
        // Its bytes were reported blob by blob.
        self.progress.file_done(&display(path), 0);
        let skip = fresh && owner_ok && exact_mode;
        self.set_meta_fd(file.as_fd(), n, path, skip)
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

    fn set_meta_at(
        &self,
        dir: &OwnedFd,
        name: &std::ffi::OsStr,
        n: &Node,
        path: &[u8],
    ) -> Result<()> {
        let io = |what: &str, e: Errno| Error::io_path(what, display(path), errno_io(e));
        if self.owners {
            rustix::fs::chownat(
                dir,
                name,
                Some(rustix::fs::Uid::from_raw(n.uid)),
                Some(rustix::fs::Gid::from_raw(n.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io("cannot set the owner of", e))?;
        }
        rustix::fs::chmodat(
            dir,
            name,
            Mode::from_raw_mode(n.mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(|e| io("cannot set the mode of", e))?;
        rustix::fs::utimensat(dir, name, &times(n), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io("cannot set the times of", e))
    }

    /// Check a restored SQLite capture; a failed check is an error for the
    /// entry (the file stays, for inspection).
    fn check_database(&self, local: &std::path::Path, path: &[u8]) -> Result<()> {
        let verdict = crate::source::sqlite::check_restored(local)?;
        self.databases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((display(path), verdict.clone()));
        if verdict != "ok" {
            return Err(Error::integrity(format!(
                "restored database {} fails PRAGMA integrity_check: {verdict}",
                display(path).display()
            )));
        }
        Ok(())
    }

    fn finish_links(&self) {
        let pending =
            std::mem::take(&mut *self.pending_links.lock().unwrap_or_else(|p| p.into_inner()));
        for (new, _key, first) in pending {
            let r = std::fs::hard_link(&first, &new);
            if let Err(e) = r {
                let e = Error::io_path("cannot create hard link", &new, e);
                self.progress.error(&new, &e);
                self.errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((new, e.to_string()));
            }
        }
    }

    fn finish_dirs(&self) {
        let mut dirs =
            std::mem::take(&mut *self.dir_meta.lock().unwrap_or_else(|p| p.into_inner()));
        // Deepest first: a parent's mtime is set after its children change it.
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, n) in dirs {
            let r = rustix::fs::open(
                &p,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::io_path("cannot open directory", &p, errno_io(e)))
            .and_then(|fd| self.set_meta_fd(fd.as_fd(), &n, p.as_os_str().as_bytes(), false));
            if let Err(e) = r {
                self.progress.error(&p, &e);
                self.errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((p, e.to_string()));
            }
        }
    }
}

/// What to restore: a directory's tree, or one non-directory entry.
pub enum RestoreRoot {
    /// The content of a directory (its tree), restored into the target.
    Tree(BlobId),
    /// One entry, restored into the target under its own name.
    Entry(Box<Node>),
}

/// Restore `root` into `opts.target`. `root_path` is the snapshot path of
/// `root` (for messages and include patterns).
pub fn restore(
    repo: &Repository,
    root: &RestoreRoot,
    root_path: &[u8],
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    std::fs::create_dir_all(&opts.target)
        .map_err(|e| Error::io_path("cannot create the restore target", &opts.target, e))?;
    let target_was_empty = std::fs::read_dir(&opts.target)
        .map_err(|e| Error::io_path("cannot list the restore target", &opts.target, e))?
        .next()
        .is_none();
    let target = std::fs::canonicalize(&opts.target)
        .map_err(|e| Error::io_path("cannot resolve the restore target", &opts.target, e))?;
    let dir = rustix::fs::open(
        &target,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io_path("cannot open the restore target", &target, errno_io(e)))?;
    let include = if opts.include.is_empty() {
        None
    } else {
        Some(ExcludeMatcher::new(&opts.include, &[])?)
    };
    let ctx = Ctx {
        repo,
        target,
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
        progress,
    };
    super::in_pool(|| match root {
        RestoreRoot::Tree(t) => {
            let all = ctx.include.is_none() || ctx.included(root_path, true);
            ctx.restore_tree(&dir, t, root_path, b"", all, target_was_empty);
        }
        RestoreRoot::Entry(n) => {
            if let Err(e) = ctx.restore_node(&dir, n, root_path, &n.name, true, target_was_empty) {
                ctx.fail(root_path, e);
            }
        }
    });
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

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
