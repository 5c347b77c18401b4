//! Tree nodes: the canonical encoding of one directory.
//!
//! A directory's entries are sorted by name bytes and encoded with a fixed
//! field order, so the same directory always yields the same bytes and so
//! the same blob ID: unchanged subtrees are shared between snapshots.

use super::chunklist::{MAX_HEIGHT, MAX_LIST_IDS};
use super::wire::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::{BlobId, ID_LEN};

const RECORD: &str = "tree node";
/// Version byte at the start of every tree node.
pub const TREE_VERSION: u8 = 1;
/// Longest entry name accepted (Linux allows 255; other systems more).
pub const MAX_NAME_LEN: usize = 4096;
/// Longest symlink target accepted.
pub const MAX_LINK_TARGET_LEN: usize = 65535;
/// Largest extended attribute value accepted.
pub const MAX_XATTR_VALUE_LEN: usize = 1024 * 1024;
/// Largest extension payload accepted.
pub const MAX_EXTENSION_LEN: usize = 1024 * 1024;

/// Smallest encoded entry: a one-byte name, no names, no xattrs, no payload.
pub const MIN_NODE_LEN: usize = 81;

/// Node flag: the file was sparse when backed up; restore it sparse.
pub const FLAG_SPARSE: u8 = 0x01;

/// Extension tag: the file is a consistent SQLite capture; the value is the
/// page size as u32 (reserved for the SQLite capture feature).
pub const EXT_SQLITE_CAPTURE: u16 = 1;

/// Extension tag: the file is a suspect capture of a database (no longer
/// a database, failed its check, unreadable by SQLite, or mostly
/// rewritten); the value is a [`super::suspect::Suspect`].
pub const EXT_SQLITE_SUSPECT: u16 = 2;

/// A file's content: its data blob IDs in file order, either listed in the
/// entry itself or as a chunk-list tree (FORMAT.md §5.8,
/// [`super::chunklist`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// The data blob IDs themselves (node kind 1; the only form written
    /// before chunk-list trees, and still the form of short lists).
    Inline(Vec<BlobId>),
    /// A chunk-list tree (node kind 8): `top` names ID-list blobs of level
    /// `height - 1`; a list blob of level 0 names data blobs.
    Tree {
        /// Levels of ID-list blobs below the entry, 1 ..= `MAX_HEIGHT`.
        height: u8,
        /// The top list, 1 ..= `MAX_LIST_IDS` ID-list blob IDs.
        top: Vec<BlobId>,
    },
}

impl FileContent {
    /// An empty file's content.
    pub fn empty() -> Self {
        FileContent::Inline(Vec::new())
    }

    /// The inline list, if the content is not a tree.
    pub fn inline(&self) -> Option<&[BlobId]> {
        match self {
            FileContent::Inline(ids) => Some(ids),
            FileContent::Tree { .. } => None,
        }
    }

    /// The IDs held by the entry itself: data blob IDs (inline) or the top
    /// list's ID-list blob IDs (tree), with the type they are stored as.
    pub fn entry_ids(&self) -> (super::BlobType, &[BlobId]) {
        match self {
            FileContent::Inline(ids) => (super::BlobType::Data, ids),
            FileContent::Tree { top, .. } => (super::BlobType::Tree, top),
        }
    }
}

impl From<Vec<BlobId>> for FileContent {
    fn from(ids: Vec<BlobId>) -> Self {
        FileContent::Inline(ids)
    }
}

/// What kind of filesystem object an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A regular file with its content as a list of data blobs.
    File {
        /// Data blob IDs in file order, inline or as a chunk-list tree.
        content: FileContent,
    },
    /// A directory with its subtree blob.
    Dir {
        /// The subtree's tree blob ID.
        subtree: BlobId,
    },
    /// A symbolic link; the target is stored as bytes.
    Symlink {
        /// The link target, verbatim.
        target: Vec<u8>,
    },
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice {
        /// Device number.
        rdev: u64,
    },
    /// A block device.
    BlockDevice {
        /// Device number.
        rdev: u64,
    },
    /// A Unix socket (restored as nothing; recorded for completeness).
    Socket,
}

impl NodeKind {
    fn tag(&self) -> u8 {
        match self {
            NodeKind::File {
                content: FileContent::Inline(_),
            } => 1,
            NodeKind::File {
                content: FileContent::Tree { .. },
            } => 8,
            NodeKind::Dir { .. } => 2,
            NodeKind::Symlink { .. } => 3,
            NodeKind::Fifo => 4,
            NodeKind::CharDevice { .. } => 5,
            NodeKind::BlockDevice { .. } => 6,
            NodeKind::Socket => 7,
        }
    }
    /// A one-word name for listings.
    pub fn name(&self) -> &'static str {
        match self {
            NodeKind::File { .. } => "file",
            NodeKind::Dir { .. } => "dir",
            NodeKind::Symlink { .. } => "symlink",
            NodeKind::Fifo => "fifo",
            NodeKind::CharDevice { .. } => "chardev",
            NodeKind::BlockDevice { .. } => "blockdev",
            NodeKind::Socket => "socket",
        }
    }
}

/// A timestamp: seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Timestamp {
    /// Whole seconds (may be negative).
    pub sec: i64,
    /// Nanoseconds, below 1e9.
    pub nsec: u32,
}

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    /// Attribute name, e.g. `user.comment`.
    pub name: Vec<u8>,
    /// Attribute value.
    pub value: Vec<u8>,
}

/// One directory entry with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The entry's name: one path component, any bytes but `/` and NUL.
    pub name: Vec<u8>,
    /// Type and type-specific payload.
    pub kind: NodeKind,
    /// Permission bits plus setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner user ID.
    pub uid: u32,
    /// Owner group ID.
    pub gid: u32,
    /// Owner user name, if it resolved.
    pub user: String,
    /// Owner group name, if it resolved.
    pub group: String,
    /// Modification time.
    pub mtime: Timestamp,
    /// Status change time (for change detection; not restored).
    pub ctime: Timestamp,
    /// Inode number at backup time (change detection, hard links).
    pub inode: u64,
    /// Device number at backup time.
    pub device: u64,
    /// Hard link count at backup time.
    pub nlink: u64,
    /// Size in bytes (file content length; 0 for directories).
    pub size: u64,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<Xattr>,
    /// Tagged extensions, sorted by tag; unknown tags are kept and ignored.
    pub extensions: Vec<(u16, Vec<u8>)>,
}

impl Node {
    /// A node with empty metadata, for tests and synthetic directories.
    pub fn new(name: impl Into<Vec<u8>>, kind: NodeKind) -> Self {
        Node {
            name: name.into(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            mtime: Timestamp::default(),
            ctime: Timestamp::default(),
            inode: 0,
            device: 0,
            nlink: 1,
            size: 0,
            flags: 0,
            xattrs: Vec::new(),
            extensions: Vec::new(),
        }
    }

    /// The extension with `tag`, if present.
    pub fn extension(&self, tag: u16) -> Option<&[u8]> {
        self.extensions
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_slice())
    }
}

/// Check that `name` is a single safe path component.
pub fn validate_name(name: &[u8]) -> Result<()> {
    if name.is_empty() {
        return Err(Error::malformed(RECORD, "empty entry name"));
    }
    if name == b"." || name == b".." {
        return Err(Error::malformed(
            RECORD,
            format!(
                "entry name {:?} is not allowed",
                String::from_utf8_lossy(name)
            ),
        ));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(Error::malformed(
            RECORD,
            format!(
                "entry name {:?} contains '/' or NUL",
                String::from_utf8_lossy(name)
            ),
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::malformed(RECORD, "entry name too long"));
    }
    Ok(())
}

/// A directory: its entries, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    /// Entries in strictly increasing name order.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sort entries into canonical order. Names must be unique.
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The canonical encoding, checked: the bytes are decoded again before
    /// they are returned, so a tree its decoder would reject (an unsafe or
    /// duplicate name, unsorted entries, a field over its limit) is an error
    /// here, before anything is stored.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let buf = self.to_bytes_unchecked()?;
        Tree::from_bytes(&buf).map_err(|e| super::encode_error(RECORD, e))?;
        Ok(buf)
    }

    /// The encoding without the decode check (for tests of the decoder).
    /// Fails only if a field does not fit its length prefix.
    pub fn to_bytes_unchecked(&self) -> Result<Vec<u8>> {
        let mut w = Writer::with_capacity(RECORD, 64 + self.nodes.len() * 160);
        w.u8(TREE_VERSION);
        w.len32(self.nodes.len(), "the number of entries");
        for n in &self.nodes {
            w.bytes16(&n.name);
            w.u8(n.kind.tag());
            w.u32(n.mode);
            w.u32(n.uid);
            w.u32(n.gid);
            w.bytes16(n.user.as_bytes());
            w.bytes16(n.group.as_bytes());
            w.i64(n.mtime.sec);
            w.u32(n.mtime.nsec);
            w.i64(n.ctime.sec);
            w.u32(n.ctime.nsec);
            w.u64(n.inode);
            w.u64(n.device);
            w.u64(n.nlink);
            w.u64(n.size);
            w.u8(n.flags);
            w.len16(n.xattrs.len(), "the number of extended attributes");
            for x in &n.xattrs {
                w.bytes16(&x.name);
                w.bytes32(&x.value);
            }
            match &n.kind {
                NodeKind::File {
                    content: FileContent::Inline(ids),
                } => {
                    w.len32(ids.len(), "the number of chunks");
                    for id in ids {
                        w.raw(id.as_bytes());
                    }
                }
                NodeKind::File {
                    content: FileContent::Tree { height, top },
                } => {
                    w.u8(*height);
                    w.len32(top.len(), "the number of chunk-list blobs");
                    for id in top {
                        w.raw(id.as_bytes());
                    }
                }
                NodeKind::Dir { subtree } => w.raw(subtree.as_bytes()),
                NodeKind::Symlink { target } => w.bytes16(target),
                NodeKind::CharDevice { rdev } | NodeKind::BlockDevice { rdev } => w.u64(*rdev),
                NodeKind::Fifo | NodeKind::Socket => {}
            }
            w.extensions(&n.extensions);
        }
        w.finish()
    }

    /// Decode and validate a tree node: names must be safe single components
    /// in strictly increasing order, every field within its limits.
    pub fn from_bytes(buf: &[u8]) -> Result<Tree> {
        let mut r = Reader::new(buf, RECORD);
        let version = r.u8()?;
        if version != TREE_VERSION {
            return Err(r.error(format!("unknown tree version {version}")));
        }
        let count = r.count32(MIN_NODE_LEN)?;
        let mut nodes: Vec<Node> = Vec::with_capacity(count);
        for _ in 0..count {
            let name = r.bytes16()?.to_vec();
            validate_name(&name)?;
            if let Some(prev) = nodes.last()
                && prev.name >= name
            {
                return Err(r.error(format!(
                    "entries not in strictly increasing order at {:?}",
                    String::from_utf8_lossy(&name)
                )));
            }
            let tag = r.u8()?;
            let mode = r.u32()?;
            let uid = r.u32()?;
            let gid = r.u32()?;
            let user = r.string16()?;
            let group = r.string16()?;
            let mtime = read_time(&mut r)?;
            let ctime = read_time(&mut r)?;
            let inode = r.u64()?;
            let device = r.u64()?;
            let nlink = r.u64()?;
            let size = r.u64()?;
            let flags = r.u8()?;
            let nx = r.count16(6)?;
            let mut xattrs = Vec::with_capacity(nx);
            for _ in 0..nx {
                let name = r.bytes16()?.to_vec();
                let value = r.bytes32(MAX_XATTR_VALUE_LEN)?.to_vec();
                xattrs.push(Xattr { name, value });
            }
            let kind = match tag {
                1 => {
                    let n = r.count32(ID_LEN)?;
                    let mut content = Vec::with_capacity(n);
                    for _ in 0..n {
                        content.push(BlobId(r.array()?));
                    }
                    NodeKind::File {
                        content: FileContent::Inline(content),
                    }
                }
                8 => {
                    let height = r.u8()?;
                    if height == 0 || height > MAX_HEIGHT {
                        return Err(r.error(format!(
                            "chunk-list tree of height {height} (1 to {MAX_HEIGHT} allowed)"
                        )));
                    }
                    let n = r.count32(ID_LEN)?;
                    if n == 0 || n > MAX_LIST_IDS {
                        return Err(r.error(format!(
                            "chunk-list tree with a top list of {n} IDs (1 to {MAX_LIST_IDS} \
                             allowed)"
                        )));
                    }
                    let mut top = Vec::with_capacity(n);
                    for _ in 0..n {
                        top.push(BlobId(r.array()?));
                    }
                    NodeKind::File {
                        content: FileContent::Tree { height, top },
                    }
                }
                2 => NodeKind::Dir {
                    subtree: BlobId(r.array()?),
                },
                3 => NodeKind::Symlink {
                    target: r.bytes16()?.to_vec(),
                },
                4 => NodeKind::Fifo,
                5 => NodeKind::CharDevice { rdev: r.u64()? },
                6 => NodeKind::BlockDevice { rdev: r.u64()? },
                7 => NodeKind::Socket,
                t => return Err(r.error(format!("unknown node kind {t}"))),
            };
            let extensions = r.extensions(MAX_EXTENSION_LEN)?;
            nodes.push(Node {
                name,
                kind,
                mode,
                uid,
                gid,
                user,
                group,
                mtime,
                ctime,
                inode,
                device,
                nlink,
                size,
                flags,
                xattrs,
                extensions,
            });
        }
        r.finish()?;
        Ok(Tree { nodes })
    }

    /// Find an entry by name (binary search over the sorted entries).
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

fn read_time(r: &mut Reader<'_>) -> Result<Timestamp> {
    let sec = r.i64()?;
    let nsec = r.u32()?;
    if nsec >= 1_000_000_000 {
        return Err(r.error("nanoseconds out of range"));
    }
    Ok(Timestamp { sec, nsec })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Tree {
        let mut file = Node::new(
            &b"a file\n"[..],
            NodeKind::File {
                content: vec![BlobId([1; 32]), BlobId([2; 32])].into(),
            },
        );
        file.xattrs.push(Xattr {
            name: b"user.k".to_vec(),
            value: b"v".to_vec(),
        });
        file.extensions
            .push((EXT_SQLITE_CAPTURE, 4096u32.to_le_bytes().to_vec()));
        let mut t = Tree {
            nodes: vec![
                file,
                Node::new(
                    &b"\xff\xfe"[..],
                    NodeKind::Dir {
                        subtree: BlobId([3; 32]),
                    },
                ),
                Node::new(
                    "link",
                    NodeKind::Symlink {
                        target: b"../x".to_vec(),
                    },
                ),
                Node::new("dev", NodeKind::CharDevice { rdev: 7 }),
                Node::new("fifo", NodeKind::Fifo),
                Node::new(
                    "big",
                    NodeKind::File {
                        content: FileContent::Tree {
                            height: 2,
                            top: vec![BlobId([4; 32]), BlobId([5; 32])],
                        },
                    },
                ),
            ],
        };
        t.sort();
        t
    }

    #[test]
    fn round_trip() {
        let t = sample();
        let b = t.to_bytes().unwrap();
        assert_eq!(Tree::from_bytes(&b).unwrap(), t);
    }

    #[test]
    fn truncations_fail() {
        let b = sample().to_bytes().unwrap();
        for cut in 0..b.len() {
            assert!(Tree::from_bytes(&b[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn hostile_names_and_order_are_rejected() {
        for bad in [&b".."[..], b".", b"a/b", b"", b"a\0"] {
            let t = Tree {
                nodes: vec![Node::new(bad, NodeKind::Fifo)],
            };
            assert!(
                Tree::from_bytes(&t.to_bytes_unchecked().unwrap()).is_err(),
                "{bad:?}"
            );
            // The checked encoder refuses to produce it in the first place.
            assert!(t.to_bytes().is_err(), "{bad:?}");
        }
        let dup = Tree {
            nodes: vec![
                Node::new("a", NodeKind::Fifo),
                Node::new("a", NodeKind::Fifo),
            ],
        };
        assert!(Tree::from_bytes(&dup.to_bytes_unchecked().unwrap()).is_err());
        assert!(dup.to_bytes().is_err());
        let unsorted = Tree {
            nodes: vec![
                Node::new("b", NodeKind::Fifo),
                Node::new("a", NodeKind::Fifo),
            ],
        };
        assert!(Tree::from_bytes(&unsorted.to_bytes_unchecked().unwrap()).is_err());
        assert!(unsorted.to_bytes().is_err());
    }

    #[test]
    fn encoding_is_canonical() {
        let mut t = sample();
        t.nodes.reverse();
        t.sort();
        assert_eq!(t.to_bytes().unwrap(), sample().to_bytes().unwrap());
    }
}
