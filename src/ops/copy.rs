//! Copy: snapshots from one repository into another (another backend,
//! other keys), sending only the blobs the destination lacks.
//!
//! When both repositories share chunker parameters and ID key (`init
//! --copy-chunker-params`), blob and tree IDs are the same in both and
//! trees are copied as they are. Otherwise every blob is re-hashed under
//! the destination's ID key and trees are rewritten with the new IDs.
//! Copied snapshots record where they came from, so copying again sends
//! nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use rayon::prelude::*;

use super::Progress;
use crate::error::Result;
use crate::format::BlobType;
use crate::format::snapshot::{EXT_COPIED_FROM, Snapshot};
use crate::format::tree::{FileContent, Node, NodeKind, Tree};
use crate::id::{BlobId, SnapshotId};
use crate::repo::lock::RepoLock;
use crate::repo::save::{BlobSaver, SaveOptions};
use crate::repo::{Indexed, Repository, SharedLock};

/// What a copy did.
#[derive(Debug, Default, serde::Serialize)]
pub struct CopyResult {
    /// Snapshots copied.
    pub copied: u64,
    /// Snapshots skipped because the destination already has them.
    pub skipped: u64,
    /// Blobs sent to the destination.
    pub blobs_sent: u64,
    /// Plaintext bytes of those blobs.
    pub bytes_sent: u64,
}

struct Ctx<'a> {
    src: &'a Repository,
    /// Stores into the destination (its index is what is deduplicated
    /// against).
    saver: &'a BlobSaver<'a>,
    same_ids: bool,
    memo: Mutex<HashMap<BlobId, BlobId>>,
    progress: &'a dyn Progress,
}

impl Ctx<'_> {
    /// Store `plain` in the destination unless it is there; its ID there.
    fn store(&self, t: BlobType, plain: &[u8]) -> Result<BlobId> {
        let saved = self.saver.save(t, plain)?;
        if saved.added {
            self.progress.advance(0, plain.len() as u64);
        }
        Ok(saved.id)
    }

    fn data(&self, id: &BlobId) -> Result<BlobId> {
        if self.same_ids && self.saver.repo().index().contains(BlobType::Data, id) {
            return Ok(*id);
        }
        let plain = self.src.read_blob(BlobType::Data, id)?;
        self.store(BlobType::Data, &plain)
    }

    fn tree(&self, id: &BlobId, depth: usize) -> Result<BlobId> {
        if let Some(d) = self.memo.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(*d);
        }
        // No shortcut on trees the destination has: an interrupted run may
        // have indexed a tree whose children never arrived, so every tree
        // is walked (its blobs are only looked up, not sent, when present).
        if depth > super::MAX_TREE_DEPTH {
            return Err(crate::error::Error::integrity("tree nested too deep"));
        }
        let t = self.src.load_tree(id)?;
        let nodes: Vec<Node> = t
            .nodes
            .par_iter()
            .map(|n| {
                let mut n = n.clone();
                let limit = crate::repo::chunklist::chunk_limit(&n);
                match &mut n.kind {
                    NodeKind::File {
                        content: FileContent::Inline(ids),
                    } => {
                        for b in ids.iter_mut() {
                            *b = self.data(b)?;
                        }
                    }
                    // A chunk-list tree is built again from the copied data
                    // blob IDs: under another ID key its boundaries differ;
                    // under the same one it comes out as it was.
                    NodeKind::File { content } => {
                        let mut ids = Vec::new();
                        crate::repo::chunklist::for_each_data_id(
                            self.src,
                            content,
                            limit,
                            &mut |b| {
                                ids.push(self.data(b)?);
                                Ok(())
                            },
                        )?;
                        *content = crate::format::chunklist::build(ids, &mut |list| {
                            self.store(BlobType::Tree, list)
                        })?;
                    }
                    NodeKind::Dir { subtree } => *subtree = self.tree(subtree, depth + 1)?,
                    _ => {}
                }
                Ok(n)
            })
            .collect::<Result<_>>()?;
        // Encoded and decoded again before it is stored.
        let new = self.store(BlobType::Tree, &Tree { nodes }.to_bytes()?)?;
        self.memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*id, new);
        Ok(new)
    }
}

/// The copied-from marker of a snapshot copied from `src`.
fn marker(src: &Repository, id: &SnapshotId) -> Vec<u8> {
    let mut v = src.config().repo_id.to_vec();
    v.extend_from_slice(id.as_bytes());
    v
}

/// Copy `snapshots` of `src` (indexed, under a shared lock) into `dst`
/// (under a shared lock): every index file and snapshot written to `dst`
/// is committed only after that lock is verified. The destination's index
/// is loaded here, trusting only its packs that are present.
pub fn copy(
    src: &Indexed<'_>,
    dst: &mut SharedLock<'_>,
    snapshots: &[(SnapshotId, Snapshot)],
    progress: &dyn Progress,
) -> Result<CopyResult> {
    let src: &Repository = src;
    let (dst, dst_lock) = dst.parts();
    dst.load_index_present()?;
    copy_inner(src, dst, dst_lock, snapshots, progress)
}

fn copy_inner(
    src: &Repository,
    dst: &mut Repository,
    dst_lock: &RepoLock,
    snapshots: &[(SnapshotId, Snapshot)],
    progress: &dyn Progress,
) -> Result<CopyResult> {
    let mut r = CopyResult::default();
    let present: HashSet<Vec<u8>> = dst
        .load_snapshots()?
        .into_iter()
        .filter_map(|(_, s)| {
            s.extensions
                .iter()
                .find(|(t, _)| *t == EXT_COPIED_FROM)
                .map(|(_, v)| v.clone())
        })
        .collect();
    let todo: Vec<&(SnapshotId, Snapshot)> = snapshots
        .iter()
        .filter(|(id, _)| !present.contains(&marker(src, id)))
        .collect();
    r.skipped = (snapshots.len() - todo.len()) as u64;
    if todo.is_empty() {
        return Ok(r);
    }
    // Packs a killed copy stored without indexing them are indexed and
    // reused instead of being sent again.
    dst.adopt_unindexed_packs(None, dst_lock)?;
    let same_ids =
        src.config().id_key == dst.config().id_key && src.config().chunker == dst.config().chunker;
    let saver = BlobSaver::new(&*dst, dst_lock.gate(), SaveOptions::for_repo(dst));
    let ctx = Ctx {
        src,
        saver: &saver,
        same_ids,
        memo: Mutex::new(HashMap::new()),
        progress,
    };
    progress.start("copy", Some(todo.len() as u64), None);
    let mut new_snaps = Vec::new();
    let outcome = super::in_pool(|| -> Result<()> {
        for (id, s) in &todo {
            let tree = ctx.tree(&s.tree, 0)?;
            let mut copy = s.clone();
            copy.tree = tree;
            copy.parent = None;
            copy.extensions.retain(|(t, _)| *t != EXT_COPIED_FROM);
            copy.extensions.push((EXT_COPIED_FROM, marker(src, id)));
            copy.extensions.sort_by_key(|(t, _)| *t);
            new_snaps.push(copy);
            progress.advance(1, 0);
        }
        Ok(())
    });
    drop(ctx);
    let sent = saver.stats();
    r.blobs_sent = sent.data_blobs + sent.tree_blobs;
    r.bytes_sent = sent.raw_bytes;
    if let Err(e) = outcome {
        // Index what was sent, so the next run does not send it again.
        let _ = saver.finish();
        return Err(e);
    }
    // Packs and their index first, then the snapshots.
    saver.finish()?;
    for s in &new_snaps {
        dst_lock.verify()?;
        dst.save_snapshot(s)?;
        r.copied += 1;
    }
    dst.load_index()?;
    Ok(r)
}
