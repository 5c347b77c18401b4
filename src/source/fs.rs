//! Filesystem metadata and content reading, relative to directory handles.
//!
//! Below a source path, every entry is reached through an open handle of
//! its parent directory, never by a path that could be re-resolved: its
//! metadata with `statat(dir, name, AT_SYMLINK_NOFOLLOW)`, a subdirectory
//! with `openat(dir, name, O_DIRECTORY | O_NOFOLLOW)`, a file's content with
//! `openat(dir, name, O_NOFOLLOW | O_NONBLOCK)` then `fstat`, compared with
//! what `statat` said ([`open_file_at`], [`open_dir_at`]). An entry swapped
//! for a symlink, a FIFO or another file between the two calls is an error
//! for that entry: never another file's content, never a hang.
//!
//! Content is read with `read` into private buffers (no memory maps), so
//! the bytes that are hashed are the bytes that are compressed and sealed,
//! whatever another process writes to the file meanwhile; a file whose
//! size, mtime or ctime moved while it was read is reported by the caller
//! ([`changed_while_read`]).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{FLAG_SPARSE, Node, NodeKind, Timestamp, Xattr};

/// Cache of user and group names by ID (read-mostly: almost every file
/// has an owner seen before).
#[derive(Default)]
pub struct NameCache {
    users: RwLock<HashMap<u32, String>>,
    groups: RwLock<HashMap<u32, String>>,
}

fn cached(map: &RwLock<HashMap<u32, String>>, id: u32, resolve: impl FnOnce() -> String) -> String {
    if let Some(n) = map.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
        return n.clone();
    }
    let name = resolve();
    map.write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, name.clone());
    name
}

impl NameCache {
    /// The user name for `uid`, or empty if it does not resolve.
    pub fn user(&self, uid: u32) -> String {
        cached(&self.users, uid, || {
            uzers::get_user_by_uid(uid)
                .map(|u| u.name().to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    }
    /// The group name for `gid`, or empty if it does not resolve.
    pub fn group(&self, gid: u32) -> String {
        cached(&self.groups, gid, || {
            uzers::get_group_by_gid(gid)
                .map(|g| g.name().to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    }
}

/// What `lstat` (`statat` without following) or `fstat` said about an
/// entry.
#[derive(Debug, Clone, Copy)]
pub struct Meta(Stat);

fn nsec(n: i64) -> u32 {
    n.clamp(0, 999_999_999) as u32
}

// The field types of `struct stat` differ between architectures.
#[allow(clippy::unnecessary_cast)]
impl Meta {
    /// Wrap a `stat` result.
    pub fn new(st: Stat) -> Meta {
        Meta(st)
    }
    /// The metadata of an open handle.
    pub fn of(fd: BorrowedFd<'_>) -> std::result::Result<Meta, Errno> {
        rustix::fs::fstat(fd).map(Meta)
    }
    /// File type.
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.0.st_mode as _)
    }
    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.file_type() == FileType::RegularFile
    }
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }
    /// A symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.file_type() == FileType::Symlink
    }
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        (self.0.st_size as i64).max(0) as u64
    }
    /// Permission bits, setuid, setgid and sticky (`st_mode & 0o7777`).
    pub fn mode(&self) -> u32 {
        self.0.st_mode as u32 & 0o7777
    }
    /// Owner.
    pub fn uid(&self) -> u32 {
        self.0.st_uid as u32
    }
    /// Group.
    pub fn gid(&self) -> u32 {
        self.0.st_gid as u32
    }
    /// Device holding the entry.
    pub fn dev(&self) -> u64 {
        self.0.st_dev as u64
    }
    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.0.st_ino as u64
    }
    /// Hard-link count.
    pub fn nlink(&self) -> u64 {
        self.0.st_nlink as u64
    }
    /// Device number of a character or block device.
    pub fn rdev(&self) -> u64 {
        self.0.st_rdev as u64
    }
    /// 512-byte blocks allocated.
    pub fn blocks(&self) -> u64 {
        (self.0.st_blocks as i64).max(0) as u64
    }
    /// Modification time.
    pub fn mtime(&self) -> Timestamp {
        Timestamp {
            sec: self.0.st_mtime as i64,
            nsec: nsec(self.0.st_mtime_nsec as i64),
        }
    }
    /// Status change time.
    pub fn ctime(&self) -> Timestamp {
        Timestamp {
            sec: self.0.st_ctime as i64,
            nsec: nsec(self.0.st_ctime_nsec as i64),
        }
    }
    /// Same device, inode and file type: the same filesystem object.
    pub fn same_object(&self, other: &Meta) -> bool {
        self.dev() == other.dev()
            && self.ino() == other.ino()
            && self.file_type() == other.file_type()
    }
}

/// A short name for a file type, for messages.
pub fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "file of unknown type",
    }
}

/// A node carrying `meta`'s metadata; `kind` is filled by the caller.
pub fn node_from_meta(name: &[u8], meta: &Meta, kind: NodeKind, names: &NameCache) -> Node {
    let mut flags = 0;
    if meta.is_file() && meta.blocks().saturating_mul(512) < meta.size() {
        flags |= FLAG_SPARSE;
    }
    Node {
        name: name.to_vec(),
        kind,
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        user: names.user(meta.uid()),
        group: names.group(meta.gid()),
        mtime: meta.mtime(),
        ctime: meta.ctime(),
        inode: meta.ino(),
        device: meta.dev(),
        nlink: meta.nlink(),
        size: if meta.is_file() { meta.size() } else { 0 },
        flags,
        xattrs: Vec::new(),
        extensions: Vec::new(),
    }
}

/// The non-content kind of a special file, or `None` for files, dirs and
/// symlinks.
pub fn special_kind(meta: &Meta) -> Option<NodeKind> {
    match meta.file_type() {
        FileType::Fifo => Some(NodeKind::Fifo),
        FileType::CharacterDevice => Some(NodeKind::CharDevice { rdev: meta.rdev() }),
        FileType::BlockDevice => Some(NodeKind::BlockDevice { rdev: meta.rdev() }),
        FileType::Socket => Some(NodeKind::Socket),
        _ => None,
    }
}

fn source_errno(what: &str, path: &Path, e: Errno) -> Error {
    Error::source_io(what, path, e.into())
}

/// `lstat` of `name` in the directory `dir` (`path` names it in messages).
pub fn stat_at(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<Meta> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map(Meta)
        .map_err(|e| source_errno("cannot stat", path, e))
}

/// The error for an entry that is no longer what `statat` saw when it is
/// opened: it was replaced meanwhile (by a symlink, a FIFO, another file).
fn replaced(path: &Path, was: &Meta, now: &str) -> Error {
    Error::new(
        ErrorKind::Source,
        format!(
            "{} was replaced while it was backed up (a {} when listed, now {now}); \
             not stored, as its content could come from another file",
            path.display(),
            type_name(was.file_type()),
        ),
    )
}

/// Open a regular file listed as `expect` (by [`stat_at`]) without
/// following symlinks or blocking, and check with `fstat` that it is the
/// object that was listed. Returns the handle and its `fstat`.
pub fn open_file_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    expect: &Meta,
) -> Result<(File, Meta)> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // O_NOFOLLOW on a symlink.
        Errno::LOOP => replaced(path, expect, "a symlink"),
        e => source_errno("cannot open", path, e),
    })?;
    let now = Meta::of(fd.as_fd()).map_err(|e| source_errno("cannot stat", path, e))?;
    if !now.same_object(expect) {
        let what = if now.file_type() == expect.file_type() {
            format!("another {}", type_name(now.file_type()))
        } else {
            format!("a {}", type_name(now.file_type()))
        };
        return Err(replaced(path, expect, &what));
    }
    // A regular file: reads need no O_NONBLOCK, and some network and FUSE
    // filesystems pass it on.
    rustix::fs::fcntl_setfl(&fd, OFlags::empty())
        .map_err(|e| source_errno("cannot open", path, e))?;
    Ok((File::from(fd), now))
}

/// Open a directory listed as `expect` without following symlinks, and
/// check with `fstat` that it is the object that was listed.
pub fn open_dir_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    expect: &Meta,
) -> Result<OwnedFd> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // O_DIRECTORY on a symlink fails with ENOTDIR before O_NOFOLLOW is
        // looked at: say what is there now.
        Errno::LOOP | Errno::NOTDIR => {
            let now = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| format!("a {}", type_name(Meta(st).file_type())))
                .unwrap_or_else(|_| "not a directory".to_string());
            replaced(path, expect, &now)
        }
        e => source_errno("cannot open", path, e),
    })?;
    let now = Meta::of(fd.as_fd()).map_err(|e| source_errno("cannot stat", path, e))?;
    if !now.same_object(expect) {
        return Err(replaced(path, expect, "another directory"));
    }
    Ok(fd)
}

/// The names in the open directory `dir`, without `.` and `..`, unsorted.
pub fn list_dir(dir: BorrowedFd<'_>, path: &Path) -> Result<Vec<OsString>> {
    let mut d =
        rustix::fs::Dir::read_from(dir).map_err(|e| source_errno("cannot list", path, e))?;
    let mut names = Vec::new();
    while let Some(entry) = d.read() {
        let entry = entry.map_err(|e| source_errno("cannot list", path, e))?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsString::from_vec(n.to_vec()));
        }
    }
    Ok(names)
}

/// The target of the symlink `name` in `dir`.
pub fn read_link_at(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<Vec<u8>> {
    rustix::fs::readlinkat(dir, name, Vec::new())
        .map(|t| t.into_bytes())
        .map_err(|e| source_errno("cannot read link", path, e))
}

/// True if `/proc/self/fd` can be used to name an entry through an open
/// directory handle (checked once).
pub fn proc_fd_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

/// A path naming `name` inside the open directory `dir`, resolved by the
/// kernel through the handle (`/proc/self/fd/N/name`): the directory cannot
/// be swapped for another or for a symlink under it. `None` when `/proc`
/// is not mounted. The handle must stay open while the path is used.
pub fn pinned_path(dir: BorrowedFd<'_>, name: &OsStr) -> Option<PathBuf> {
    if !proc_fd_available() {
        return None;
    }
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    Some(PathBuf::from(OsString::from_vec(p)))
}

/// Where extended attributes are read from: an open handle, or a path whose
/// last component is not followed.
enum XattrSource<'a> {
    Fd(BorrowedFd<'a>),
    Path(&'a Path),
}

impl XattrSource<'_> {
    fn list(&self, buf: &mut [u8]) -> std::result::Result<usize, Errno> {
        match self {
            XattrSource::Fd(fd) => rustix::fs::flistxattr(fd, buf),
            XattrSource::Path(p) => rustix::fs::llistxattr(*p, buf),
        }
    }
    fn get(&self, name: &[u8], buf: &mut [u8]) -> std::result::Result<usize, Errno> {
        match self {
            XattrSource::Fd(fd) => rustix::fs::fgetxattr(fd, name, buf),
            XattrSource::Path(p) => rustix::fs::lgetxattr(*p, name, buf),
        }
    }
}

/// Extended attributes of an open file or directory, sorted by name. A
/// filesystem without xattr support yields none.
pub fn read_xattrs_fd(fd: BorrowedFd<'_>, path: &Path) -> Result<Vec<Xattr>> {
    read_xattrs_from(&XattrSource::Fd(fd), path)
}

/// Extended attributes of `name` in the open directory `dir`, not
/// following a symlink, for entries that are not opened (symlinks, special
/// files, files unchanged since the parent snapshot). Read through the
/// directory handle ([`pinned_path`]); without `/proc`, through `path`.
pub fn read_xattrs_at(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<Vec<Xattr>> {
    match pinned_path(dir, name) {
        Some(p) => read_xattrs_from(&XattrSource::Path(&p), path),
        None => read_xattrs_from(&XattrSource::Path(path), path),
    }
}

fn read_xattrs_from(src: &XattrSource<'_>, path: &Path) -> Result<Vec<Xattr>> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        match src.list(&mut names) {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let want = src
                    .list(&mut [])
                    .map_err(|e| source_errno("cannot list xattrs of", path, e))?;
                names.resize(want.max(names.len() * 2), 0);
            }
            Err(Errno::NOTSUP) | Err(Errno::NOSYS) => return Ok(Vec::new()),
            Err(e) => return Err(source_errno("cannot list xattrs of", path, e)),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let mut value = vec![0u8; 256];
        let len = loop {
            match src.get(name, &mut value) {
                Ok(len) => break Some(len),
                Err(Errno::RANGE) => {
                    let want = src
                        .get(name, &mut [])
                        .map_err(|e| source_errno("cannot read xattr of", path, e))?;
                    value.resize(want.max(value.len() * 2), 0);
                }
                // Removed between list and get.
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(source_errno("cannot read xattr of", path, e)),
            }
        };
        if let Some(len) = len {
            value.truncate(len);
            out.push(Xattr {
                name: name.to_vec(),
                value,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Read a whole (small) file into a private buffer.
pub fn read_all(file: &mut File, size_hint: u64, path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(size_hint as usize + 1);
    file.read_to_end(&mut buf)
        .map_err(|e| Error::source_io("cannot read", path, e))?;
    Ok(buf)
}

/// Tell the kernel a file is read once, front to back (more read-ahead).
pub fn advise_sequential(file: &File) {
    let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::Sequential);
}

/// What changed between `before` (the `fstat` when a file was opened) and
/// `after` (when it was read to the end), if its size, mtime or ctime did:
/// the file was written to while it was read, and what was stored may mix
/// old and new content.
pub fn changed_while_read(before: &Meta, after: &Meta) -> Option<String> {
    let mut what = Vec::new();
    if before.size() != after.size() {
        what.push(format!("size {} → {} bytes", before.size(), after.size()));
    }
    if before.mtime() != after.mtime() {
        what.push("modification time changed".to_string());
    }
    if before.ctime() != after.ctime() {
        what.push("status change time changed".to_string());
    }
    (!what.is_empty()).then(|| {
        format!(
            "changed while backed up ({}); stored as read, which may mix old and new content",
            what.join(", ")
        )
    })
}

/// The bytes of a file name.
pub fn name_bytes(name: &OsStr) -> &[u8] {
    name.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn dir_fd(p: &Path) -> OwnedFd {
        rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    #[test]
    fn an_entry_swapped_after_its_stat_is_refused_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("secret");
        std::fs::write(&secret, b"secret").unwrap();
        std::fs::write(d.path().join("f"), b"mine").unwrap();
        let fd = dir_fd(d.path());
        let f = OsStr::new("f");
        let listed = stat_at(fd.as_fd(), f, &d.path().join("f")).unwrap();
        // Unchanged: opens, and fstat agrees.
        let (_, now) = open_file_at(fd.as_fd(), f, Path::new("f"), &listed).unwrap();
        assert!(now.same_object(&listed));
        // A symlink to another file in its place.
        std::fs::remove_file(d.path().join("f")).unwrap();
        symlink(&secret, d.path().join("f")).unwrap();
        let e = open_file_at(fd.as_fd(), f, Path::new("f"), &listed).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Source);
        assert!(e.to_string().contains("now a symlink"), "{e}");
        // Another regular file (a hard link to the secret) in its place.
        std::fs::remove_file(d.path().join("f")).unwrap();
        std::fs::hard_link(&secret, d.path().join("f")).unwrap();
        let e = open_file_at(fd.as_fd(), f, Path::new("f"), &listed).unwrap_err();
        assert!(e.to_string().contains("another regular file"), "{e}");
        // A FIFO: no hang, an error.
        std::fs::remove_file(d.path().join("f")).unwrap();
        rustix::fs::mknodat(&fd, f, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let e = open_file_at(fd.as_fd(), f, Path::new("f"), &listed).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
    }

    #[test]
    fn xattrs_through_the_directory_handle_match_the_path() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        std::fs::write(&p, b"x").unwrap();
        if rustix::fs::setxattr(&p, "user.k", b"v", rustix::fs::XattrFlags::empty()).is_err() {
            return; // no user xattrs on this filesystem
        }
        let fd = dir_fd(d.path());
        let at = read_xattrs_at(fd.as_fd(), OsStr::new("x"), &p).unwrap();
        let f = File::open(&p).unwrap();
        let by_fd = read_xattrs_fd(f.as_fd(), &p).unwrap();
        assert_eq!(at, by_fd);
        assert_eq!(at.len(), 1);
        assert_eq!(at[0].value, b"v");
    }
}
