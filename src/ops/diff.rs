//! Differences between two snapshot trees.
//!
//! Subtrees with equal IDs are identical and skipped without being read,
//! so comparing two nightly snapshots costs about what changed between
//! them.

use crate::error::Result;
use crate::format::tree::{EXT_SQLITE_CAPTURE, Node, NodeKind};
use crate::id::BlobId;
use crate::repo::{Repository, chunklist};

/// What happened to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Only in the newer snapshot.
    Added,
    /// Only in the older snapshot.
    Removed,
    /// Content changed (or a symlink's target, or a device number).
    Modified,
    /// Same content, other metadata (mode, owner, mtime, xattrs).
    Metadata,
    /// A different kind of entry under the same name.
    TypeChanged,
}

impl ChangeKind {
    /// The one-letter marker used in listings.
    pub fn marker(self) -> char {
        match self {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Modified => 'M',
            ChangeKind::Metadata => 'U',
            ChangeKind::TypeChanged => 'T',
        }
    }
}

/// One difference.
#[derive(Debug, Clone)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// Full path in the snapshots.
    pub path: Vec<u8>,
    /// The entry in the older snapshot.
    pub old: Option<Node>,
    /// The entry in the newer snapshot.
    pub new: Option<Node>,
    /// For SQLite captures: pages that differ, and pages in the newer one.
    pub db_pages: Option<(u64, u64)>,
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = prefix.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn same_metadata(a: &Node, b: &Node) -> bool {
    a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.mtime == b.mtime
        && a.xattrs == b.xattrs
}

/// Report every entry below `tree`, as `kind` (added or removed).
fn all_below(
    repo: &Repository,
    n: &Node,
    path: &[u8],
    kind: ChangeKind,
    f: &mut dyn FnMut(Change) -> Result<()>,
) -> Result<()> {
    let change = |node: &Node, p: &[u8]| Change {
        kind,
        path: p.to_vec(),
        old: (kind == ChangeKind::Removed).then(|| node.clone()),
        new: (kind == ChangeKind::Added).then(|| node.clone()),
        db_pages: None,
    };
    f(change(n, path))?;
    if let NodeKind::Dir { subtree } = &n.kind {
        super::walk::walk(repo, subtree, path, &mut |p, node| f(change(node, p)))?;
    }
    Ok(())
}

/// Call `f` for every difference between the trees `a` (older) and `b`
/// (newer), in path order; `prefix` is the path both trees stand for.
pub fn diff(
    repo: &Repository,
    a: &BlobId,
    b: &BlobId,
    prefix: &[u8],
    f: &mut dyn FnMut(Change) -> Result<()>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    if super::depth(prefix) > super::MAX_TREE_DEPTH {
        return Err(crate::error::Error::integrity(format!(
            "{} is nested deeper than {} directories",
            String::from_utf8_lossy(prefix),
            super::MAX_TREE_DEPTH
        )));
    }
    let (ta, tb) = (repo.load_tree(a)?, repo.load_tree(b)?);
    let (mut i, mut j) = (0, 0);
    while i < ta.nodes.len() || j < tb.nodes.len() {
        let order = match (ta.nodes.get(i), tb.nodes.get(j)) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                let x = &ta.nodes[i];
                all_below(repo, x, &join(prefix, &x.name), ChangeKind::Removed, f)?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let y = &tb.nodes[j];
                all_below(repo, y, &join(prefix, &y.name), ChangeKind::Added, f)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (&ta.nodes[i], &tb.nodes[j]);
                let path = join(prefix, &x.name);
                compare(repo, x, y, &path, f)?;
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

fn compare(
    repo: &Repository,
    x: &Node,
    y: &Node,
    path: &[u8],
    f: &mut dyn FnMut(Change) -> Result<()>,
) -> Result<()> {
    let change = |kind, db_pages| Change {
        kind,
        path: path.to_vec(),
        old: Some(x.clone()),
        new: Some(y.clone()),
        db_pages,
    };
    match (&x.kind, &y.kind) {
        (NodeKind::Dir { subtree: sa }, NodeKind::Dir { subtree: sb }) => {
            if !same_metadata(x, y) {
                f(change(ChangeKind::Metadata, None))?;
            }
            diff(repo, sa, sb, path, f)
        }
        (NodeKind::File { content: ca }, NodeKind::File { content: cb }) => {
            // Equal entries mean equal content in either form; otherwise
            // the data blob lists are compared (an old inline list and a
            // chunk-list tree of the same content are the same file).
            let differ = if ca == cb {
                None
            } else {
                let a = chunklist::data_ids(repo, ca, chunklist::chunk_limit(x))?;
                let b = chunklist::data_ids(repo, cb, chunklist::chunk_limit(y))?;
                (a != b).then_some((a, b))
            };
            if let Some((ca, cb)) = differ {
                let db = (x.extension(EXT_SQLITE_CAPTURE).is_some()
                    && y.extension(EXT_SQLITE_CAPTURE).is_some())
                .then(|| {
                    let same = ca.iter().zip(cb.iter()).filter(|(p, q)| p == q).count();
                    ((cb.len() - same.min(cb.len())) as u64, cb.len() as u64)
                });
                f(change(ChangeKind::Modified, db))
            } else if !same_metadata(x, y) {
                f(change(ChangeKind::Metadata, None))
            } else {
                Ok(())
            }
        }
        (a, b) if std::mem::discriminant(a) != std::mem::discriminant(b) => {
            f(change(ChangeKind::TypeChanged, None))?;
            if let NodeKind::Dir { subtree } = a {
                super::walk::walk(repo, subtree, path, &mut |p, node| {
                    f(Change {
                        kind: ChangeKind::Removed,
                        path: p.to_vec(),
                        old: Some(node.clone()),
                        new: None,
                        db_pages: None,
                    })
                })?;
            }
            if let NodeKind::Dir { subtree } = b {
                super::walk::walk(repo, subtree, path, &mut |p, node| {
                    f(Change {
                        kind: ChangeKind::Added,
                        path: p.to_vec(),
                        old: None,
                        new: Some(node.clone()),
                        db_pages: None,
                    })
                })?;
            }
            Ok(())
        }
        (a, b) => {
            if a != b {
                f(change(ChangeKind::Modified, None))
            } else if !same_metadata(x, y) {
                f(change(ChangeKind::Metadata, None))
            } else {
                Ok(())
            }
        }
    }
}
