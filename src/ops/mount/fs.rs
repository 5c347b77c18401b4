//! The mounted filesystem's logic, apart from FUSE: inode numbers, the
//! browsing layout, attributes, directory listings, symlink targets,
//! extended attributes and file reads, in plain types that unit tests call
//! directly. `super` wires it to the kernel.
//!
//! Layout (restic's):
//!
//! ```text
//! /snapshots/2026-12-01T03:00:00+01:00/   one directory per snapshot, named by its time
//! /snapshots/latest -> …                  the newest
//! /ids/1a2b3c4d/                          by short ID
//! /hosts/HOST/<time>/, /hosts/HOST/latest
//! /tags/TAG/<time>/,   /tags/TAG/latest
//! ```
//!
//! Inode numbers: the directories and `latest` links above are numbered
//! when the filesystem is built; entries inside snapshots get numbers as
//! they are first looked up, one per path (so `ls -i` is stable while
//! mounted), except that the links of a hard-linked file within one
//! snapshot directory share one number (the inode and device it had at
//! backup time say which), as they did on the source.
//!
//! Never touches: the kernel protocol, the lock (the caller holds it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::cache::{BlobCache, ReadAhead};
use crate::error::Error;
use crate::format::BlobType;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind, Timestamp, Tree};
use crate::id::{BlobId, SnapshotId};
use crate::repo::Repository;
use crate::repo::readplan::Wanted;

/// The inode number of the filesystem's root.
pub const ROOT_INO: u64 = 1;

/// Directory trees kept decoded (a listing asks for its tree once per
/// batch of entries, and every lookup below it).
const TREES_KEPT: usize = 4096;

/// File layouts (blob lists) kept for files opened again.
const LAYOUTS_KEPT: usize = 1024;

/// What kind of object an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix socket.
    Socket,
}

/// What `stat` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// Size in bytes (a file's content, a link's target; 0 for others).
    pub size: u64,
    /// 512-byte blocks.
    pub blocks: u64,
    /// Modification time (also shown as the access time).
    pub mtime: Timestamp,
    /// Status change time.
    pub ctime: Timestamp,
    /// Type.
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub perm: u16,
    /// Hard-link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number (Linux's `new_encode_dev` form), for devices.
    pub rdev: u32,
}

/// Why an operation failed, as an errno-like code the caller maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    /// No such entry.
    NotFound,
    /// Not a directory.
    NotDir,
    /// Not a regular file (or not a link, for `readlink`).
    Invalid,
    /// No such extended attribute.
    NoAttr,
    /// The repository could not give what was asked (a read failed or
    /// data is damaged); reported to the observer.
    Io,
}

/// A virtual directory of the layout.
struct VDir {
    mtime: Timestamp,
    entries: Vec<(Vec<u8>, u64)>,
}

/// What an inode is.
#[derive(Clone)]
enum What {
    /// A directory of the layout (index into `vdirs`).
    Virtual(usize),
    /// A `latest` link of the layout, with its target.
    Link(Vec<u8>),
    /// A snapshot's root directory (index into `snaps`).
    Root(usize),
    /// An entry inside a snapshot.
    Node(Arc<Node>),
}

struct Inode {
    what: What,
    /// The snapshot root directory it lies in (0 for the layout).
    root: u64,
    /// The directory it was first found in (the root for the root).
    parent: u64,
}

#[derive(Default)]
struct Table {
    /// Inode `n` is `inodes[n - 1]`.
    inodes: Vec<Inode>,
    /// (parent, name) → inode, for entries inside snapshots.
    by_name: HashMap<(u64, Vec<u8>), u64>,
    /// (snapshot root, device, inode at backup) → inode, for hard links.
    by_link: HashMap<(u64, u64, u64), u64>,
}

impl Table {
    fn add(&mut self, what: What, root: u64, parent: u64) -> u64 {
        self.inodes.push(Inode { what, root, parent });
        self.inodes.len() as u64
    }
}

/// A file's content as the blobs that make it, with where each starts.
pub struct Layout {
    blobs: Vec<Wanted>,
    /// `starts[i]` is the offset of blob `i`; one more entry: the end.
    starts: Vec<u64>,
}

impl Layout {
    /// Bytes of content.
    pub fn len(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }
    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The blobs covering `[from, to)`, as a range of indices.
    fn covering(&self, from: u64, to: u64) -> std::ops::Range<usize> {
        if from >= to || self.blobs.is_empty() {
            return 0..0;
        }
        let first = self
            .starts
            .partition_point(|&s| s <= from)
            .saturating_sub(1);
        let end = self.starts[..self.blobs.len()].partition_point(|&s| s < to);
        first..end.max(first)
    }
}

/// An open file.
struct Handle {
    layout: Arc<Layout>,
    /// End of the last read: a read starting near it continues a
    /// sequential read.
    last_end: u64,
    /// Content up to here has been asked for ahead of the reader.
    ahead_until: u64,
}

/// The filesystem over one repository's snapshots.
pub struct SnapshotFs<'a> {
    repo: &'a Repository,
    snaps: Vec<(SnapshotId, Snapshot)>,
    vdirs: Vec<VDir>,
    table: Mutex<Table>,
    trees: Mutex<HashMap<BlobId, Arc<Tree>>>,
    layouts: Mutex<HashMap<u64, Arc<Layout>>>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_handle: std::sync::atomic::AtomicU64,
    cache: BlobCache,
    read_ahead: u64,
    ahead: Option<ReadAhead>,
    owner: (u32, u32),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The time of a snapshot as a tree timestamp.
fn snap_time(s: &Snapshot) -> Timestamp {
    Timestamp {
        sec: s.time_ns.div_euclid(1_000_000_000),
        nsec: s.time_ns.rem_euclid(1_000_000_000) as u32,
    }
}

/// A snapshot directory's name: its time in its recorded UTC offset,
/// `2026-12-01T03:00:00+01:00`.
pub fn snapshot_dir_name(s: &Snapshot) -> String {
    let ts = jiff::Timestamp::from_nanosecond(i128::from(s.time_ns)).unwrap_or_default();
    let off = jiff::tz::Offset::from_seconds(s.utc_offset_s).unwrap_or(jiff::tz::Offset::UTC);
    ts.to_zoned(jiff::tz::TimeZone::fixed(off))
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// A host or tag as one path component: `/` and NUL become `_`; `.`, `..`
/// and the empty name get a leading `_`.
fn component(name: &str) -> Vec<u8> {
    let mut out: Vec<u8> = name
        .bytes()
        .map(|b| if b == b'/' || b == 0 { b'_' } else { b })
        .collect();
    if out.is_empty() || out == b"." || out == b".." {
        out.insert(0, b'_');
    }
    out
}

/// Linux's `new_encode_dev` of a `dev_t` (glibc's `makedev` encoding), the
/// form FUSE carries in 32 bits.
fn encode_dev(dev: u64) -> u32 {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    ((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)) as u32
}

/// Sizes of the blob cache and the read-ahead window.
#[derive(Debug, Clone, Copy)]
pub struct CacheSizes {
    /// Bytes of plaintext blobs kept at most.
    pub cache_bytes: u64,
    /// Bytes a sequential reader is read ahead of (0: no read-ahead).
    pub read_ahead: u64,
}

impl<'a> SnapshotFs<'a> {
    /// The filesystem over `snaps` (oldest first) of `repo`, whose index is
    /// loaded; `owner` (uid, gid) owns the layout's directories. Read-ahead
    /// requests go to `ahead` (none: only what is read is fetched).
    pub fn new(
        repo: &'a Repository,
        snaps: Vec<(SnapshotId, Snapshot)>,
        owner: (u32, u32),
        sizes: CacheSizes,
        ahead: Option<ReadAhead>,
    ) -> Self {
        let mut fs = SnapshotFs {
            repo,
            snaps,
            vdirs: Vec::new(),
            table: Mutex::new(Table::default()),
            trees: Mutex::new(HashMap::new()),
            layouts: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            next_handle: std::sync::atomic::AtomicU64::new(1),
            cache: BlobCache::new(sizes.cache_bytes),
            read_ahead: sizes.read_ahead,
            ahead,
            owner,
        };
        fs.build_layout();
        fs
    }

    /// The blob cache (shared with the read-ahead thread).
    pub fn cache(&self) -> &BlobCache {
        &self.cache
    }

    /// The repository read from.
    pub fn repo(&self) -> &'a Repository {
        self.repo
    }

    fn build_layout(&mut self) {
        let newest = self
            .snaps
            .last()
            .map(|(_, s)| snap_time(s))
            .unwrap_or_default();
        let mut t = Table::default();
        let mut vdirs: Vec<VDir> = Vec::new();
        let new_vdir = |t: &mut Table, vdirs: &mut Vec<VDir>, mtime| {
            vdirs.push(VDir {
                mtime,
                entries: Vec::new(),
            });
            t.add(What::Virtual(vdirs.len() - 1), 0, ROOT_INO)
        };
        let root = new_vdir(&mut t, &mut vdirs, newest);
        debug_assert_eq!(root, ROOT_INO);
        // Each snapshot's name, unique within the repository (a second
        // snapshot of the same second gets `-1`, as restic names them).
        let mut seen: HashMap<String, usize> = HashMap::new();
        let names: Vec<Vec<u8>> = self
            .snaps
            .iter()
            .map(|(_, s)| {
                let base = snapshot_dir_name(s);
                let n = seen.entry(base.clone()).or_insert(0);
                let name = if *n == 0 { base } else { format!("{base}-{n}") };
                *n += 1;
                name.into_bytes()
            })
            .collect();
        // A directory of snapshot directories (the given ones, oldest
        // first) with a `latest` link to the newest.
        let fill = |t: &mut Table, vdirs: &mut Vec<VDir>, dir: u64, members: &[usize]| {
            let What::Virtual(d) = t.inodes[dir as usize - 1].what else {
                return;
            };
            for &i in members {
                let ino = t.add(What::Root(i), 0, dir);
                t.inodes[ino as usize - 1].root = ino;
                vdirs[d].entries.push((names[i].clone(), ino));
            }
            if let Some(&last) = members.last() {
                let ino = t.add(What::Link(names[last].clone()), 0, dir);
                vdirs[d].entries.push((b"latest".to_vec(), ino));
            }
        };
        let all: Vec<usize> = (0..self.snaps.len()).collect();
        let snapshots = new_vdir(&mut t, &mut vdirs, newest);
        fill(&mut t, &mut vdirs, snapshots, &all);
        // By short ID (the full ID where two share a short one).
        let ids = new_vdir(&mut t, &mut vdirs, newest);
        let mut shorts: HashMap<String, usize> = HashMap::new();
        for (id, _) in &self.snaps {
            *shorts.entry(id.short()).or_insert(0) += 1;
        }
        for (i, (id, _)) in self.snaps.iter().enumerate() {
            let name = if shorts[&id.short()] > 1 {
                id.to_hex()
            } else {
                id.short()
            };
            let ino = t.add(What::Root(i), 0, ids);
            t.inodes[ino as usize - 1].root = ino;
            let What::Virtual(d) = t.inodes[ids as usize - 1].what else {
                continue;
            };
            vdirs[d].entries.push((name.into_bytes(), ino));
        }
        // By host and by tag.
        let group = |key: &dyn Fn(&Snapshot) -> Vec<String>| {
            let mut by: std::collections::BTreeMap<Vec<u8>, Vec<usize>> = Default::default();
            for (i, (_, s)) in self.snaps.iter().enumerate() {
                for k in key(s) {
                    let members = by.entry(component(&k)).or_default();
                    if members.last() != Some(&i) {
                        members.push(i);
                    }
                }
            }
            by
        };
        let hosts = new_vdir(&mut t, &mut vdirs, newest);
        let tags = new_vdir(&mut t, &mut vdirs, newest);
        for (parent, by) in [
            (hosts, group(&|s: &Snapshot| vec![s.hostname.clone()])),
            (tags, group(&|s: &Snapshot| s.tags.clone())),
        ] {
            for (name, members) in by {
                let mtime = members
                    .last()
                    .map(|&i| snap_time(&self.snaps[i].1))
                    .unwrap_or_default();
                let dir = new_vdir(&mut t, &mut vdirs, mtime);
                t.inodes[dir as usize - 1].parent = parent;
                fill(&mut t, &mut vdirs, dir, &members);
                let What::Virtual(p) = t.inodes[parent as usize - 1].what else {
                    continue;
                };
                vdirs[p].entries.push((name, dir));
            }
        }
        let What::Virtual(r) = t.inodes[root as usize - 1].what else {
            return;
        };
        vdirs[r].entries = vec![
            (b"snapshots".to_vec(), snapshots),
            (b"ids".to_vec(), ids),
            (b"hosts".to_vec(), hosts),
            (b"tags".to_vec(), tags),
        ];
        self.vdirs = vdirs;
        self.table = Mutex::new(t);
    }

    fn inode(&self, ino: u64) -> std::result::Result<(What, u64), Fail> {
        let t = lock(&self.table);
        let i = ino
            .checked_sub(1)
            .and_then(|i| t.inodes.get(i as usize))
            .ok_or(Fail::NotFound)?;
        Ok((i.what.clone(), i.root))
    }

    /// Report a repository failure to the observer, as an I/O error.
    fn io(&self, what: &str, e: &Error) -> Fail {
        self.repo
            .observer()
            .warning(&format!("mount: cannot read {what}: {e}"));
        Fail::Io
    }

    fn tree(&self, id: &BlobId) -> std::result::Result<Arc<Tree>, Fail> {
        if let Some(t) = lock(&self.trees).get(id) {
            return Ok(Arc::clone(t));
        }
        let tree = Arc::new(
            self.repo
                .load_tree(id)
                .map_err(|e| self.io(&format!("tree {id}"), &e))?,
        );
        let mut trees = lock(&self.trees);
        if trees.len() >= TREES_KEPT {
            trees.clear();
        }
        trees.insert(*id, Arc::clone(&tree));
        Ok(tree)
    }

    /// The tree a directory inode lists, if it is a snapshot directory.
    fn dir_tree(&self, what: &What) -> std::result::Result<Option<BlobId>, Fail> {
        match what {
            What::Root(i) => Ok(Some(self.snaps[*i].1.tree)),
            What::Node(n) => match &n.kind {
                NodeKind::Dir { subtree } => Ok(Some(*subtree)),
                _ => Err(Fail::NotDir),
            },
            What::Virtual(_) => Ok(None),
            What::Link(_) => Err(Fail::NotDir),
        }
    }

    /// The inode of `node`, named `name` in directory `parent` of the
    /// snapshot directory `root`.
    fn intern(&self, parent: u64, root: u64, node: &Node) -> u64 {
        let mut t = lock(&self.table);
        let key = (parent, node.name.clone());
        if let Some(&ino) = t.by_name.get(&key) {
            return ino;
        }
        let linked = node.nlink > 1 && matches!(node.kind, NodeKind::File { .. });
        let link_key = (root, node.device, node.inode);
        if linked && let Some(&ino) = t.by_link.get(&link_key) {
            t.by_name.insert(key, ino);
            return ino;
        }
        let ino = t.add(What::Node(Arc::new(node.clone())), root, parent);
        t.by_name.insert(key, ino);
        if linked {
            t.by_link.insert(link_key, ino);
        }
        ino
    }

    fn node_attr(&self, ino: u64, n: &Node) -> Attr {
        let (kind, size, rdev) = match &n.kind {
            NodeKind::File { .. } => (Kind::File, n.size, 0),
            NodeKind::Dir { .. } => (Kind::Dir, 0, 0),
            NodeKind::Symlink { target } => (Kind::Symlink, target.len() as u64, 0),
            NodeKind::Fifo => (Kind::Fifo, 0, 0),
            NodeKind::CharDevice { rdev } => (Kind::CharDevice, 0, encode_dev(*rdev)),
            NodeKind::BlockDevice { rdev } => (Kind::BlockDevice, 0, encode_dev(*rdev)),
            NodeKind::Socket => (Kind::Socket, 0, 0),
        };
        Attr {
            ino,
            size,
            blocks: size.div_ceil(512),
            mtime: n.mtime,
            ctime: n.ctime,
            kind,
            perm: (n.mode & 0o7777) as u16,
            nlink: u32::try_from(n.nlink).unwrap_or(u32::MAX).max(1),
            uid: n.uid,
            gid: n.gid,
            rdev,
        }
    }

    fn dir_attr(&self, ino: u64, mtime: Timestamp) -> Attr {
        Attr {
            ino,
            size: 0,
            blocks: 0,
            mtime,
            ctime: mtime,
            kind: Kind::Dir,
            perm: 0o555,
            nlink: 2,
            uid: self.owner.0,
            gid: self.owner.1,
            rdev: 0,
        }
    }

    /// What `stat` shows for `ino`.
    pub fn getattr(&self, ino: u64) -> std::result::Result<Attr, Fail> {
        let (what, _) = self.inode(ino)?;
        Ok(match what {
            What::Virtual(d) => self.dir_attr(ino, self.vdirs[d].mtime),
            What::Root(i) => self.dir_attr(ino, snap_time(&self.snaps[i].1)),
            What::Link(target) => Attr {
                size: target.len() as u64,
                kind: Kind::Symlink,
                perm: 0o777,
                nlink: 1,
                ..self.dir_attr(ino, self.vdirs[0].mtime)
            },
            What::Node(n) => self.node_attr(ino, &n),
        })
    }

    /// The entry `name` of directory `parent`.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> std::result::Result<Attr, Fail> {
        let (what, root) = self.inode(parent)?;
        if let What::Virtual(d) = what {
            let ino = self.vdirs[d]
                .entries
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, ino)| *ino)
                .ok_or(Fail::NotFound)?;
            return self.getattr(ino);
        }
        let Some(tree) = self.dir_tree(&what)? else {
            return Err(Fail::NotFound);
        };
        let tree = self.tree(&tree)?;
        let node = tree.find(name).ok_or(Fail::NotFound)?;
        let ino = self.intern(parent, root, node);
        Ok(self.node_attr(ino, node))
    }

    /// The entries of directory `ino` (without `.` and `..`): inode, type,
    /// name.
    pub fn readdir(&self, ino: u64) -> std::result::Result<Vec<(u64, Kind, Vec<u8>)>, Fail> {
        let (what, root) = self.inode(ino)?;
        if let What::Virtual(d) = what {
            return self.vdirs[d]
                .entries
                .iter()
                .map(|(name, child)| Ok((*child, self.getattr(*child)?.kind, name.clone())))
                .collect();
        }
        let Some(tree) = self.dir_tree(&what)? else {
            return Err(Fail::NotDir);
        };
        let tree = self.tree(&tree)?;
        Ok(tree
            .nodes
            .iter()
            .map(|n| {
                let child = self.intern(ino, root, n);
                (child, self.node_attr(child, n).kind, n.name.clone())
            })
            .collect())
    }

    /// The parent directory's inode of a directory, for `..` (the root for
    /// entries whose parent is not known).
    pub fn parent_of(&self, ino: u64) -> u64 {
        let t = lock(&self.table);
        ino.checked_sub(1)
            .and_then(|i| t.inodes.get(i as usize))
            .map_or(ROOT_INO, |i| i.parent)
    }

    /// A symbolic link's target.
    pub fn readlink(&self, ino: u64) -> std::result::Result<Vec<u8>, Fail> {
        match self.inode(ino)?.0 {
            What::Link(t) => Ok(t),
            What::Node(n) => match &n.kind {
                NodeKind::Symlink { target } => Ok(target.clone()),
                _ => Err(Fail::Invalid),
            },
            _ => Err(Fail::Invalid),
        }
    }

    /// Names of the extended attributes of `ino`.
    pub fn listxattr(&self, ino: u64) -> std::result::Result<Vec<Vec<u8>>, Fail> {
        Ok(match self.inode(ino)?.0 {
            What::Node(n) => n.xattrs.iter().map(|x| x.name.clone()).collect(),
            _ => Vec::new(),
        })
    }

    /// The value of extended attribute `name` of `ino`.
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> std::result::Result<Vec<u8>, Fail> {
        match self.inode(ino)?.0 {
            What::Node(n) => n
                .xattrs
                .iter()
                .find(|x| x.name == name)
                .map(|x| x.value.clone())
                .ok_or(Fail::NoAttr),
            _ => Err(Fail::NoAttr),
        }
    }

    fn layout(&self, ino: u64, n: &Node) -> std::result::Result<Arc<Layout>, Fail> {
        if let Some(l) = lock(&self.layouts).get(&ino) {
            return Ok(Arc::clone(l));
        }
        let NodeKind::File { content } = &n.kind else {
            return Err(Fail::Invalid);
        };
        let name = String::from_utf8_lossy(&n.name).into_owned();
        let mut blobs = Vec::new();
        let mut starts = vec![0u64];
        let limit = crate::repo::chunklist::chunk_limit(n);
        crate::repo::chunklist::for_each_data_id(self.repo, content, limit, &mut |id| {
            let loc = self.repo.locate(BlobType::Data, id)?;
            blobs.push(Wanted {
                blob_type: BlobType::Data,
                id: *id,
                loc,
            });
            let end = starts.last().copied().unwrap_or(0) + u64::from(loc.raw_len);
            starts.push(end);
            Ok(())
        })
        .map_err(|e| self.io(&format!("the content of {name}"), &e))?;
        let layout = Arc::new(Layout { blobs, starts });
        let mut layouts = lock(&self.layouts);
        if layouts.len() >= LAYOUTS_KEPT {
            layouts.clear();
        }
        layouts.insert(ino, Arc::clone(&layout));
        Ok(layout)
    }

    /// Open file `ino` for reading: a handle for [`SnapshotFs::read`].
    pub fn open(&self, ino: u64) -> std::result::Result<u64, Fail> {
        let What::Node(n) = self.inode(ino)?.0 else {
            return Err(Fail::Invalid);
        };
        let layout = self.layout(ino, &n)?;
        let fh = self
            .next_handle
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.handles).insert(
            fh,
            Handle {
                layout,
                last_end: 0,
                ahead_until: 0,
            },
        );
        Ok(fh)
    }

    /// Forget handle `fh`.
    pub fn release(&self, fh: u64) {
        lock(&self.handles).remove(&fh);
    }

    /// Up to `size` bytes of open file `fh` from `offset` (fewer at the end
    /// of the file). A read that continues where the last one ended keeps
    /// the read-ahead window's worth of the following blobs on its way.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> std::result::Result<Vec<u8>, Fail> {
        let (layout, ahead) = {
            let mut handles = lock(&self.handles);
            let h = handles.get_mut(&fh).ok_or(Fail::Invalid)?;
            let end = offset.saturating_add(u64::from(size)).min(h.layout.len());
            // Continuing (the kernel's own read-ahead may reorder requests
            // a little): keep the window full, topping it up by halves.
            let window = self.read_ahead;
            let sequential = offset <= h.last_end.saturating_add(window)
                && offset.saturating_add(window) >= h.last_end;
            h.last_end = h.last_end.max(end);
            let mut ahead = None;
            if window > 0 && sequential && h.ahead_until < end.saturating_add(window / 2) {
                let from = h.ahead_until.max(end);
                let to = end.saturating_add(window).min(h.layout.len());
                h.ahead_until = to;
                if from < to {
                    ahead = Some((from, to));
                }
            }
            (Arc::clone(&h.layout), ahead)
        };
        let end = offset.saturating_add(u64::from(size)).min(layout.len());
        if offset >= end {
            return Ok(Vec::new());
        }
        if let (Some((from, to)), Some(q)) = (ahead, &self.ahead) {
            let r = layout.covering(from, to);
            q.request(layout.blobs[r].to_vec());
        }
        let r = layout.covering(offset, end);
        let wanted = &layout.blobs[r.clone()];
        let got = self
            .cache
            .get(self.repo, wanted)
            .map_err(|e| self.io("file content", &e))?;
        let mut out = Vec::with_capacity((end - offset) as usize);
        for (k, data) in got.iter().enumerate() {
            let start = layout.starts[r.start + k];
            let from = offset.saturating_sub(start) as usize;
            let to = ((end - start) as usize).min(data.len());
            if from < to {
                out.extend_from_slice(&data[from..to]);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(len: u32) -> Wanted {
        Wanted {
            blob_type: BlobType::Data,
            id: BlobId([len as u8; 32]),
            loc: crate::index::Location {
                pack: crate::id::PackId([0; 32]),
                offset: 0,
                sealed_len: len,
                raw_len: len,
                compression: crate::format::Compression::None,
            },
        }
    }

    #[test]
    fn a_read_covers_exactly_the_blobs_it_touches() {
        let l = Layout {
            blobs: vec![w(10), w(20), w(5)],
            starts: vec![0, 10, 30, 35],
        };
        assert_eq!(l.covering(0, 1), 0..1);
        assert_eq!(l.covering(0, 10), 0..1);
        assert_eq!(l.covering(9, 11), 0..2);
        assert_eq!(l.covering(10, 30), 1..2);
        assert_eq!(l.covering(29, 35), 1..3);
        assert_eq!(l.covering(34, 100), 2..3);
        assert_eq!(l.covering(35, 100), 3..3);
        assert_eq!(l.covering(5, 5), 0..0);
    }

    #[test]
    fn device_numbers_keep_major_and_minor() {
        // makedev(8, 1) and makedev(259, 65536) in glibc's encoding.
        let mk = |major: u64, minor: u64| {
            ((major & 0xfffff000) << 32)
                | ((major & 0xfff) << 8)
                | ((minor & 0xffffff00) << 12)
                | (minor & 0xff)
        };
        assert_eq!(encode_dev(mk(8, 1)), (8 << 8) | 1);
        assert_eq!(
            encode_dev(mk(259, 300)),
            (300 & 0xff) | (259 << 8) | ((300 & !0xff) << 12)
        );
    }

    fn snap(time_s: i64, host: &str, tags: &[&str]) -> Snapshot {
        Snapshot {
            time_ns: time_s * 1_000_000_000 + 5,
            utc_offset_s: 3600,
            tree: BlobId([0; 32]),
            parent: None,
            hostname: host.into(),
            username: "u".into(),
            paths: vec![b"/a".to_vec()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            program_version: String::new(),
            summary: Default::default(),
            extensions: vec![],
        }
    }

    fn listing(fs: &SnapshotFs<'_>, path: &[&str]) -> Vec<String> {
        let mut ino = ROOT_INO;
        for c in path {
            ino = fs.lookup(ino, c.as_bytes()).unwrap().ino;
        }
        fs.readdir(ino)
            .unwrap()
            .into_iter()
            .map(|(_, _, n)| String::from_utf8(n).unwrap())
            .collect()
    }

    /// Two snapshots of the same second are told apart by a suffix, two
    /// sharing a short ID by their full IDs; `latest` names the newest of
    /// each directory.
    #[test]
    fn the_layout_names_every_snapshot_once_per_directory() {
        let repo = crate::repo::test_repo();
        let id = |b: u8, c: u8| {
            let mut x = [b; 32];
            x[31] = c;
            SnapshotId(x)
        };
        let snaps = vec![
            (id(1, 0), snap(1_764_000_000, "alpha", &["daily"])),
            (id(2, 0), snap(1_764_000_000, "beta", &[])),
            (id(2, 1), snap(1_764_086_400, "alpha", &["daily", "x/y"])),
        ];
        let sizes = CacheSizes {
            cache_bytes: 1 << 20,
            read_ahead: 0,
        };
        let fs = SnapshotFs::new(&repo, snaps, (7, 8), sizes, None);
        let (t0, t1) = ("2025-11-24T17:00:00+01:00", "2025-11-25T17:00:00+01:00");
        assert_eq!(listing(&fs, &[]), ["snapshots", "ids", "hosts", "tags"]);
        assert_eq!(
            listing(&fs, &["snapshots"]),
            [
                t0.to_string(),
                format!("{t0}-1"),
                t1.into(),
                "latest".into()
            ]
        );
        let latest = fs.lookup(ROOT_INO + 1, b"latest").unwrap();
        assert_eq!(latest.kind, Kind::Symlink);
        assert_eq!(fs.readlink(latest.ino).unwrap(), t1.as_bytes());
        assert_eq!(
            listing(&fs, &["ids"]),
            [
                "01010101".to_string(),
                hex::encode([2u8; 31]) + "00",
                hex::encode([2u8; 31]) + "01"
            ]
        );
        assert_eq!(listing(&fs, &["hosts"]), ["alpha", "beta"]);
        assert_eq!(listing(&fs, &["hosts", "alpha"]), [t0, t1, "latest"]);
        assert_eq!(
            listing(&fs, &["hosts", "beta"]),
            [format!("{t0}-1"), "latest".into()]
        );
        assert_eq!(listing(&fs, &["tags"]), ["daily", "x_y"]);
        assert_eq!(listing(&fs, &["tags", "x_y"]), [t1, "latest"]);
        let dir = fs.lookup(ROOT_INO, b"tags").unwrap();
        assert_eq!(
            (dir.kind, dir.perm, dir.uid, dir.gid),
            (Kind::Dir, 0o555, 7, 8)
        );
        let root = fs
            .lookup(
                fs.lookup(ROOT_INO, b"snapshots").unwrap().ino,
                t1.as_bytes(),
            )
            .unwrap();
        assert_eq!(
            root.mtime,
            Timestamp {
                sec: 1_764_086_400,
                nsec: 5
            }
        );
        assert_eq!(fs.lookup(ROOT_INO, b"nothing"), Err(Fail::NotFound));
    }

    #[test]
    fn hosts_and_tags_become_single_components() {
        assert_eq!(component("a/b"), b"a_b");
        assert_eq!(component(".."), b"_..");
        assert_eq!(component(""), b"_");
        assert_eq!(component("web-1"), b"web-1");
    }
}
