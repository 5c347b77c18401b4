//! Copy: snapshots from one repository into another (another backend,
//! other keys), sending only the blobs the destination lacks.
//!
//! When both repositories share chunker parameters and ID key (`init
//! --copy-chunker-params`), blob and tree IDs are the same in both and
//! trees are copied as they are. Otherwise every blob is re-hashed under
//! the destination's ID key and trees are rewritten with the new IDs.
//! Copied snapshots record where they came from, so copying again sends
//! nothing.
//!
//! The data blobs a snapshot needs sent are read from the source by pack
//! first ([`Repository::read_planned`]: each pack they lie in read once,
//! in as few ranged requests as they allow, up to the source backend's
//! connections in flight) and stored as they arrive; the walk that then
//! rebuilds the trees finds them sent.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use rayon::prelude::*;

use super::Progress;
use crate::error::{Error, Result};
use crate::format::BlobType;
use crate::format::snapshot::{EXT_COPIED_FROM, Snapshot};
use crate::format::tree::{FileContent, Node, NodeKind, Tree};
use crate::id::{BlobId, SnapshotId};
use crate::repo::lock::RepoLock;
use crate::repo::readplan::Wanted;
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
    /// Data blobs sent by the planned reads: source ID → destination ID.
    sent: Mutex<HashMap<BlobId, BlobId>>,
    progress: &'a dyn Progress,
}

/// Data blobs one planned read of a copy takes at most (the list of their
/// locations is held in memory).
const COPY_BATCH: usize = 1 << 16;

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
        if let Some(d) = self.sent.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(*d);
        }
        if self.same_ids && self.saver.repo().index().contains(BlobType::Data, id) {
            return Ok(*id);
        }
        let plain = self.src.read_blob(BlobType::Data, id)?;
        self.store(BlobType::Data, &plain)
    }

    /// Send the data blobs below `tree` that the destination lacks, read
    /// by pack, in batches of [`COPY_BATCH`] in the order the walk meets
    /// them (a backup stored them in about that order). Best effort: what
    /// cannot be walked or read here is left to [`Ctx::tree`], which reads
    /// each blob it still needs on its own and reports what fails.
    fn send_by_pack(&self, tree: &BlobId) -> Result<()> {
        let mut seen_trees: HashSet<BlobId> = HashSet::new();
        let mut seen: HashSet<BlobId> = HashSet::new();
        let mut batch: Vec<Wanted> = Vec::new();
        let mut stack: Vec<(BlobId, usize)> = vec![(*tree, 0)];
        while let Some((id, depth)) = stack.pop() {
            // A tree rebuilt for an earlier snapshot has everything below
            // it sent.
            if depth > super::MAX_TREE_DEPTH
                || !seen_trees.insert(id)
                || self
                    .memo
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(&id)
            {
                continue;
            }
            let Ok(t) = self.src.load_tree(&id) else {
                continue;
            };
            // Subdirectories are pushed in reverse: popped in tree order.
            for n in t.nodes.iter().rev() {
                if let NodeKind::Dir { subtree } = &n.kind {
                    stack.push((*subtree, depth + 1));
                }
            }
            for n in &t.nodes {
                let NodeKind::File { content } = &n.kind else {
                    continue;
                };
                let limit = crate::repo::chunklist::chunk_limit(n);
                let _ =
                    crate::repo::chunklist::for_each_data_id(self.src, content, limit, &mut |b| {
                        if !seen.insert(*b)
                            || self
                                .sent
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .contains_key(b)
                            || (self.same_ids
                                && self.saver.repo().index().contains(BlobType::Data, b))
                        {
                            return Ok(());
                        }
                        if let Some(loc) = self.src.index().get(BlobType::Data, b) {
                            batch.push(Wanted {
                                blob_type: BlobType::Data,
                                id: *b,
                                loc,
                            });
                        }
                        Ok(())
                    });
                if batch.len() >= COPY_BATCH {
                    self.send_batch(&batch)?;
                    batch.clear();
                }
            }
        }
        self.send_batch(&batch)
    }

    /// Read `batch` by pack and store each blob as it arrives; the first
    /// error storing one is the error (one that could not be read is left
    /// to [`Ctx::tree`]).
    fn send_batch(&self, batch: &[Wanted]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let failed: Mutex<Option<Error>> = Mutex::new(None);
        let workers = crate::repo::readplan::read_workers(self.src);
        self.src.read_planned(batch, workers, &|i, r| {
            let Ok(plain) = r else { return };
            match self.store(BlobType::Data, &plain) {
                Ok(new) => {
                    self.sent
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(batch[i].id, new);
                }
                Err(e) => {
                    failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
            }
        });
        match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
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
        sent: Mutex::new(HashMap::new()),
        progress,
    };
    progress.start("copy", Some(todo.len() as u64), None);
    let mut new_snaps = Vec::new();
    let outcome = super::in_pool(|| -> Result<()> {
        for (id, s) in &todo {
            src.prefetch_trees(&s.tree, crate::repo::readplan::read_workers(src));
            ctx.send_by_pack(&s.tree)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mem::{CountingBackend, MemBackend};
    use std::os::unix::ffi::OsStrExt;
    use std::sync::Arc;

    #[test]
    fn copy_reads_each_source_pack_once_not_one_request_per_blob() {
        // 300 small files, each a blob of its own, on a counted source
        // that claims four connections and streams in pieces.
        let counting =
            Arc::new(CountingBackend::new(Arc::new(MemBackend::new()), 4).with_pieces(997));
        let mut src = crate::repo::test_repo_on(counting.clone());
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<(String, Vec<u8>)> = (0..300u32)
            .map(|i| {
                let content: Vec<u8> = (0..1000 + 7 * i)
                    .map(|j| (j.wrapping_mul(2_654_435_761) ^ i.wrapping_mul(40_503)) as u8)
                    .collect();
                (format!("f{i:03}"), content)
            })
            .collect();
        for (name, content) in &files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        // Two snapshots: the second adds a file, its other blobs are the
        // first's (read once for both).
        for extra in [None, Some("g")] {
            if let Some(name) = extra {
                std::fs::write(dir.path().join(name), b"one more file").unwrap();
            }
            let mut lock = src.lock_shared().unwrap();
            let opts = crate::ops::backup::BackupOptions {
                paths: vec![dir.path().to_path_buf()],
                ..Default::default()
            };
            crate::ops::backup::backup(&mut lock, &opts, &crate::ops::NoProgress).unwrap();
        }
        let packs = src.list_packs().unwrap();
        // The trees from / down to the backed-up directory (each snapshot
        // has its own: the directory changed).
        let trees = dir.path().components().count() as u64;
        let mut dst = crate::repo::test_repo();
        let mut src_lock = src.lock_shared().unwrap();
        let src_ix = src_lock.load_index().unwrap();
        let snaps = src_ix.load_snapshots().unwrap();
        // Requests that read the packs holding data whole.
        let data_packs: HashSet<crate::id::PackId> = src_ix
            .index()
            .iter(BlobType::Data)
            .map(|(_, loc)| loc.pack)
            .collect();
        let data_requests: u64 = data_packs
            .iter()
            .map(|p| packs[p].div_ceil(crate::repo::readplan::MAX_RANGE))
            .sum();
        counting.take_pack_reads();
        let mut dst_lock = dst.lock_shared().unwrap();
        let r = copy(&src_ix, &mut dst_lock, &snaps, &crate::ops::NoProgress).unwrap();
        assert_eq!((r.copied, r.skipped), (2, 0));
        // Each tree of each snapshot twice (a source without a local tree
        // cache: once to find the data, once to rebuild it), each data
        // pack in one request, the blobs both snapshots share read once;
        // one request per blob was over 600.
        let reads = counting.take_pack_reads();
        assert!(
            reads <= data_requests + 2 * 2 * trees,
            "{reads} reads for {} data packs and 2 × {trees} trees",
            data_packs.len()
        );
        drop(dst_lock);

        // Every file reads back from the destination byte for byte.
        let mut dst_lock = dst.lock_shared().unwrap();
        let dst_ix = dst_lock.load_index().unwrap();
        let copied = dst_ix.load_snapshots().unwrap();
        assert_eq!(copied.len(), 2);
        for (name, content) in &files {
            let path = dir.path().join(name);
            let crate::ops::walk::Found::Entry(node) =
                crate::ops::walk::find(&dst_ix, &copied[0].1.tree, path.as_os_str().as_bytes())
                    .unwrap()
            else {
                panic!("{name} is a file")
            };
            let mut out = Vec::new();
            crate::ops::walk::dump_file(&dst_ix, &node, &mut out).unwrap();
            assert!(&out == content, "{name} differs");
        }
    }
}
