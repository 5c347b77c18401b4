//! The tree saver: directory nodes become canonical tree blobs; the
//! parent snapshot's trees are loaded for change detection.

use std::path::Path;

use super::Ctx;
use crate::error::Result;
use crate::format::tree::Tree;
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
}
