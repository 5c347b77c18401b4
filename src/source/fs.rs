//! Filesystem metadata and content reading.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::RwLock;

use crate::error::{Error, Result};
use crate::format::tree::{FLAG_SPARSE, Node, NodeKind, Timestamp, Xattr};

/// Files at least this large are read through a memory map, in windows.
pub const MMAP_THRESHOLD: u64 = 8 * 1024 * 1024;

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

/// A node carrying `meta`'s metadata; `kind` is filled by the caller.
pub fn node_from_metadata(name: &[u8], meta: &Metadata, kind: NodeKind, names: &NameCache) -> Node {
    let ft = meta.file_type();
    let mut flags = 0;
    if ft.is_file() && meta.blocks().saturating_mul(512) < meta.size() {
        flags |= FLAG_SPARSE;
    }
    Node {
        name: name.to_vec(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        user: names.user(meta.uid()),
        group: names.group(meta.gid()),
        mtime: Timestamp {
            sec: meta.mtime(),
            nsec: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
        },
        ctime: Timestamp {
            sec: meta.ctime(),
            nsec: meta.ctime_nsec().clamp(0, 999_999_999) as u32,
        },
        inode: meta.ino(),
        device: meta.dev(),
        nlink: meta.nlink(),
        size: if ft.is_file() { meta.size() } else { 0 },
        flags,
        xattrs: Vec::new(),
        extensions: Vec::new(),
    }
}

/// The non-content kind of a special file, or `None` for files and dirs.
pub fn special_kind(meta: &Metadata) -> Option<NodeKind> {
    let ft = meta.file_type();
    if ft.is_fifo() {
        Some(NodeKind::Fifo)
    } else if ft.is_char_device() {
        Some(NodeKind::CharDevice { rdev: meta.rdev() })
    } else if ft.is_block_device() {
        Some(NodeKind::BlockDevice { rdev: meta.rdev() })
    } else if ft.is_socket() {
        Some(NodeKind::Socket)
    } else {
        None
    }
}

/// Extended attributes of `path` (not following symlinks), sorted by name.
/// A filesystem without xattr support yields none.
pub fn read_xattrs(path: &Path) -> Result<Vec<Xattr>> {
    use rustix::io::Errno;
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names) {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let want = rustix::fs::llistxattr(path, &mut [0u8; 0][..])
                    .map_err(|e| Error::source_io("cannot list xattrs of", path, e.into()))?;
                names.resize(want.max(names.len() * 2), 0);
            }
            Err(Errno::NOTSUP) | Err(Errno::NOSYS) => return Ok(Vec::new()),
            Err(e) => return Err(Error::source_io("cannot list xattrs of", path, e.into())),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let mut value = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(path, name, &mut value) {
                Ok(len) => break Some(len),
                Err(Errno::RANGE) => {
                    let want = rustix::fs::lgetxattr(path, name, &mut [0u8; 0][..])
                        .map_err(|e| Error::source_io("cannot read xattr of", path, e.into()))?;
                    value.resize(want.max(value.len() * 2), 0);
                }
                // Removed between list and get.
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(Error::source_io("cannot read xattr of", path, e.into())),
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

/// Read a whole (small) file.
pub fn read_small(file: &mut File, size_hint: u64, path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(size_hint as usize + 1);
    file.read_to_end(&mut buf)
        .map_err(|e| Error::source_io("cannot read", path, e))?;
    Ok(buf)
}

/// The bytes of a file name.
pub fn name_bytes(name: &OsStr) -> &[u8] {
    name.as_bytes()
}

/// A read-only map of `len` bytes of `file` from `offset` (page-aligned).
///
/// One of the two `unsafe` blocks in Cairn (the other removes the
/// passphrase variables from the environment at start,
/// `cli::take_secret_env`). Mapping a file is unsafe because the
/// mapped bytes may change, or vanish, if another process writes to or
/// truncates the file while it is mapped. Cairn only reads the bytes into
/// the chunker and hash (a concurrent write yields a torn but harmless
/// chunk, as a plain read would), and maps only up to the size measured
/// just before mapping. A truncation racing with the read can still raise
/// SIGBUS; files that are rewritten while being backed up (live databases)
/// are captured through their own consistent path instead.
#[allow(unsafe_code)]
pub fn map_window(file: &File, offset: u64, len: usize) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: see the function documentation: the mapping is read-only,
    // private to this process, and lives no longer than the file handle's
    // window being processed.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map(file)?
    };
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(map)
}
