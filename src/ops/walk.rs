//! Walking snapshot trees: path lookup, listing, and file content reads.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::format::BlobType;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::BlobId;
use crate::index::Location;
use crate::repo::Repository;
use crate::repo::readplan::Wanted;

/// What a path in a snapshot names.
#[derive(Debug, Clone)]
pub enum Found {
    /// The snapshot root (or a directory), as its tree.
    Dir(BlobId, Option<Node>),
    /// A non-directory entry.
    Entry(Node),
}

/// Split a `/`-separated snapshot path into components (empty and `.`
/// components are skipped; `..` is refused).
pub fn components(path: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(Error::invalid("`..` is not allowed in snapshot paths")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Find `path` (absolute, `/`-separated) below the tree `root`.
pub fn find(repo: &Repository, root: &BlobId, path: &[u8]) -> Result<Found> {
    let comps = components(path)?;
    let mut tree_id = *root;
    let mut node: Option<Node> = None;
    for (i, c) in comps.iter().enumerate() {
        let tree = repo.load_tree(&tree_id)?;
        let n = tree.find(c).cloned().ok_or_else(|| {
            Error::not_found(format!(
                "{} is not in the snapshot",
                String::from_utf8_lossy(path)
            ))
        })?;
        match &n.kind {
            NodeKind::Dir { subtree } => {
                tree_id = *subtree;
                node = Some(n);
            }
            _ if i + 1 == comps.len() => return Ok(Found::Entry(n)),
            _ => {
                return Err(Error::not_found(format!(
                    "{} is not in the snapshot ({} is not a directory)",
                    String::from_utf8_lossy(path),
                    String::from_utf8_lossy(c)
                )));
            }
        }
    }
    Ok(Found::Dir(tree_id, node))
}

/// Visit every entry below `tree` depth-first in name order; `prefix` is the
/// path of `tree` itself. The callback gets each entry's full path.
pub fn walk(
    repo: &Repository,
    tree: &BlobId,
    prefix: &[u8],
    f: &mut dyn FnMut(&[u8], &Node) -> Result<()>,
) -> Result<()> {
    if super::depth(prefix) > super::MAX_TREE_DEPTH + 64 {
        return Err(Error::integrity(format!(
            "{} is nested deeper than {} directories (hostile or corrupt tree)",
            String::from_utf8_lossy(prefix),
            super::MAX_TREE_DEPTH
        )));
    }
    let t: Tree = repo.load_tree(tree)?;
    for n in &t.nodes {
        let mut p = prefix.to_vec();
        if !p.ends_with(b"/") {
            p.push(b'/');
        }
        p.extend_from_slice(&n.name);
        f(&p, n)?;
        if let NodeKind::Dir { subtree } = &n.kind {
            walk(repo, subtree, &p, f)?;
        }
    }
    Ok(())
}

/// Plaintext bytes [`dump_file`] reads ahead of what it has written: the
/// blobs of a window are read by pack, then written in order.
pub const DUMP_WINDOW: u64 = 32 << 20;

/// Write a file node's content to `out`, in order. The content is read a
/// window of [`DUMP_WINDOW`] bytes at a time, each window's blobs by pack
/// ([`Repository::read_planned`]: each pack they lie in read once, in as
/// few ranged requests as they allow, up to the backend's connections in
/// flight), a blob that recurs in the window read once.
pub fn dump_file(repo: &Repository, node: &Node, out: &mut dyn Write) -> Result<u64> {
    dump_file_in_windows(repo, node, out, DUMP_WINDOW)
}

/// [`dump_file`], reading ahead `window` bytes at a time.
pub(crate) fn dump_file_in_windows(
    repo: &Repository,
    node: &Node,
    out: &mut dyn Write,
    window_len: u64,
) -> Result<u64> {
    let NodeKind::File { content } = &node.kind else {
        return Err(Error::invalid(format!(
            "{} is a {}, not a file",
            String::from_utf8_lossy(&node.name),
            node.kind.name()
        )));
    };
    let workers = crate::repo::readplan::read_workers(repo);
    let mut n = 0u64;
    let mut window: Vec<(BlobId, Location)> = Vec::new();
    let mut ahead = 0u64;
    let limit = crate::repo::chunklist::chunk_limit(node);
    crate::repo::chunklist::for_each_data_id(repo, content, limit, &mut |id| {
        let loc = repo.locate(BlobType::Data, id)?;
        if !window.is_empty() && ahead + u64::from(loc.raw_len) > window_len {
            n += write_window(repo, &window, workers, out)?;
            window.clear();
            ahead = 0;
        }
        window.push((*id, loc));
        ahead += u64::from(loc.raw_len);
        Ok(())
    })?;
    n += write_window(repo, &window, workers, out)?;
    Ok(n)
}

/// Read the distinct blobs of `window` by pack, then write them to `out`
/// in the window's order; the first that could not be read is the error.
fn write_window(
    repo: &Repository,
    window: &[(BlobId, Location)],
    workers: usize,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut slot: HashMap<BlobId, usize> = HashMap::new();
    let mut wanted: Vec<Wanted> = Vec::new();
    for (id, loc) in window {
        slot.entry(*id).or_insert_with(|| {
            wanted.push(Wanted {
                blob_type: BlobType::Data,
                id: *id,
                loc: *loc,
            });
            wanted.len() - 1
        });
    }
    let got: Vec<Mutex<Option<Result<Vec<u8>>>>> =
        wanted.iter().map(|_| Mutex::new(None)).collect();
    repo.read_planned(&wanted, workers, &|i, r| {
        *got[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    });
    let got: Vec<Option<Result<Vec<u8>>>> = got
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect();
    let mut n = 0u64;
    for (id, _) in window {
        let data = match &got[slot[id]] {
            Some(Ok(data)) => data,
            Some(Err(e)) => return Err(Error::new(e.kind(), e.to_string())),
            None => {
                return Err(Error::integrity(format!("data blob {id} was not read")));
            }
        };
        out.write_all(data)
            .map_err(|e| Error::io("cannot write to the output", e))?;
        n += data.len() as u64;
    }
    Ok(n)
}
