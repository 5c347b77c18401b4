//! The tree saver: directory nodes become canonical tree blobs; the
//! parent snapshot's trees are loaded for change detection.

use std::path::Path;

use super::Ctx;
use crate::error::{Error, Result};
use crate::format::tree::{Node, Tree};
use crate::id::BlobId;

impl Ctx<'_> {
    /// The parent snapshot's version of a directory, if there is one and it
    /// can be read (a damaged parent only costs the shortcut, not the backup).
    pub(super) fn old_tree(&self, path: &Path, id: Option<BlobId>) -> Option<Tree> {
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

    pub(super) fn save_tree(&self, tree: &Tree) -> Result<BlobId> {
        Ok(self.saver.save_tree(tree)?.id)
    }

    /// Store a directory's tree: its entries (`None` for those left out,
    /// excluded or unreadable) and `extra`, the stream file of the top
    /// directory, in canonical order.
    pub(super) fn save_nodes(
        &self,
        nodes: Vec<Option<Node>>,
        extra: Option<Node>,
    ) -> Result<BlobId> {
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
}
