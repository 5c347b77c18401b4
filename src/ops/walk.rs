//! Walking snapshot trees: path lookup, listing, and file content reads.

use std::io::Write;

use crate::error::{Error, Result};
use crate::format::BlobType;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::BlobId;
use crate::repo::Repository;

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

/// Write a file node's content to `out`, in order.
pub fn dump_file(repo: &Repository, node: &Node, out: &mut dyn Write) -> Result<u64> {
    let NodeKind::File { content } = &node.kind else {
        return Err(Error::invalid(format!(
            "{} is a {}, not a file",
            String::from_utf8_lossy(&node.name),
            node.kind.name()
        )));
    };
    let mut n = 0u64;
    let limit = crate::repo::chunklist::chunk_limit(node);
    crate::repo::chunklist::for_each_data_id(repo, content, limit, &mut |id| {
        let data = repo.read_blob(BlobType::Data, id)?;
        out.write_all(&data)
            .map_err(|e| Error::io("cannot write to the output", e))?;
        n += data.len() as u64;
        Ok(())
    })?;
    Ok(n)
}
