//! Prune: give back the space of blobs no snapshot references.
//!
//! Runs under an exclusive lock, so no backup can add references while the
//! set of used blobs is computed (a backup waits for the lock or fails with
//! "locked"). The lock is verified before every commit: the new index
//! files, the deletion of the old ones, the deletion of packs.
//!
//! Defence in depth against a lock that failed anyway (a backup paused past
//! the stale age): a pack is deleted or repacked only if it is older than
//! [`PACK_GRACE`], or listed by an index file that is, judged by the
//! storage's own clock (the times the backend lists, against the time of
//! prune's own lock object) — never by this machine's clock. A younger pack
//! may belong to a backup that has not written its index or snapshot yet:
//! it is kept as it is, with all its index entries.
//!
//! Steps, in an order that survives a crash at any point:
//!
//! 1. mark every blob reachable from any snapshot (a snapshot or tree that
//!    cannot be read stops the prune: nothing is deleted on a guess);
//! 2. repack: copy the used blobs of packs whose unused share is above the
//!    threshold into new packs (each blob verified before it is copied);
//! 3. write new index files for every kept blob, naming the old ones as
//!    superseded;
//! 4. delete the old index files;
//! 5. delete packs that are now unreferenced (emptied, repacked, or left
//!    behind by interrupted backups).
//!
//! A crash after 3 leaves duplicate index entries; after 4, unreferenced
//! packs. Both are harmless and the next prune finishes the job.

use std::collections::HashSet;
use std::time::Duration;

use rayon::prelude::*;

use super::Progress;
use crate::error::{Error, Result};
use crate::format::BlobType;
use crate::format::index::{IndexBlob, IndexPack};
use crate::format::tree::NodeKind;
use crate::id::{BlobId, PackId};
use crate::repo::inventory::Inventory;
use crate::repo::lock::RepoLock;
use crate::repo::packer::{PackerOptions, SealedBlob, write_index_files};
use crate::repo::save::{BlobSaver, SaveOptions};
use crate::repo::{ExclusiveLock, Repository, SharedLock, index_name, pack_name};

/// Packs younger than this by the storage's clock, and not listed by an
/// index file older than this, are never deleted or repacked: they may
/// belong to a backup still running. Much longer than the lock stale age
/// (30 minutes), so that a backup whose lock was wrongly taken for stale
/// has stopped (its lock is no longer trusted after 22.5 minutes) long
/// before its packs could go.
pub const PACK_GRACE: Duration = Duration::from_secs(6 * 3600);

/// Options for [`prune`].
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// Unused data the repository may keep after the prune, as a share of
    /// its packs (0.0–1.0): partly used packs are repacked, the most wasteful
    /// first, until at most this share is unused (restic's `--max-unused`).
    pub max_unused: f64,
    /// Report what would be done, change nothing.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: 0.05,
            dry_run: false,
        }
    }
}

/// What prune did (or would do, with `dry_run`).
#[derive(Debug, Default, serde::Serialize)]
pub struct PruneResult {
    /// Blobs referenced by some snapshot.
    pub used_blobs: u64,
    /// Indexed blobs no snapshot references.
    pub unused_blobs: u64,
    /// Packs deleted because nothing in them is used.
    pub packs_deleted: u64,
    /// Packs rewritten to drop unused blobs.
    pub packs_repacked: u64,
    /// Packs on storage that no index listed, deleted.
    pub unindexed_packs_deleted: u64,
    /// Index files replaced.
    pub index_files_replaced: u64,
    /// Packs with unused or unindexed data kept because they are younger
    /// than the grace period ([`PACK_GRACE`]).
    pub recent_packs_kept: u64,
    /// Bytes of packs before.
    pub bytes_before: u64,
    /// Bytes of packs after.
    pub bytes_after: u64,
    /// True if nothing was changed.
    pub dry_run: bool,
}

/// Every blob reachable from a snapshot. Fails if anything is unreadable.
pub fn used_blobs(repo: &Repository) -> Result<HashSet<(BlobType, BlobId)>> {
    let mut used: HashSet<(BlobType, BlobId)> = HashSet::new();
    let mut stack: Vec<(BlobId, usize)> = Vec::new();
    for id in repo.list_snapshot_ids()? {
        let s = repo
            .load_snapshot(&id)
            .map_err(|e| e.context("prune stops: a snapshot cannot be read (run `cairn check`)"))?;
        stack.push((s.tree, 0));
    }
    while let Some((tree, depth)) = stack.pop() {
        if !used.insert((BlobType::Tree, tree)) {
            continue;
        }
        if depth > super::MAX_TREE_DEPTH {
            return Err(Error::integrity("prune stops: a tree is nested too deep"));
        }
        let t = repo
            .load_tree(&tree)
            .map_err(|e| e.context("prune stops: a tree cannot be read (run `cairn check`)"))?;
        for n in t.nodes {
            match n.kind {
                NodeKind::Dir { subtree } => stack.push((subtree, depth + 1)),
                // ID-list blobs are used too; each is read once, however
                // many snapshots share it.
                NodeKind::File { content } => {
                    crate::repo::chunklist::walk(repo, &content, &mut |t, id| {
                        Ok(used.insert((t, *id)))
                    })
                    .map_err(|e| {
                        e.context(
                            "prune stops: a file's chunk list cannot be read (run `cairn check`)",
                        )
                    })?
                }
                _ => {}
            }
        }
    }
    Ok(used)
}

/// Say what a lost lock means for a prune: what it did so far stays valid
/// (new index files before old ones go, old ones before packs go).
fn stopped(e: Error) -> Error {
    e.context("prune stopped before deleting anything more")
}

/// Prune the repository under an exclusive lock (a dry run if
/// `opts.dry_run`).
pub fn prune(
    guard: &mut ExclusiveLock<'_>,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneResult> {
    let (repo, lock) = guard.parts();
    super::in_pool(|| prune_inner(repo, lock, opts, progress))
}

/// What a prune would do, under a shared lock: a dry run, whatever
/// `opts.dry_run` says.
pub fn plan(
    guard: &mut SharedLock<'_>,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneResult> {
    let opts = PruneOptions {
        dry_run: true,
        ..*opts
    };
    let (repo, lock) = guard.parts();
    super::in_pool(|| prune_inner(repo, lock, &opts, progress))
}

fn prune_inner(
    repo: &mut Repository,
    lock: &RepoLock,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneResult> {
    let mut r = PruneResult {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    // Ages by the storage's clock: against the time of our own lock object.
    let now = lock.storage_time();
    if now.is_none() {
        repo.observer().warning(&format!(
            "{} gives no modification times: prune cannot tell old packs from new ones and deletes none",
            repo.backend().location()
        ));
    }
    let grace = PACK_GRACE.as_nanos() as i64;
    let old =
        |t: Option<i64>| matches!((now, t), (Some(n), Some(t)) if n.saturating_sub(t) > grace);
    // Every index file and pack as they are now (index files first, then
    // packs: a pack indexed meanwhile looks unindexed and young, never
    // missing). A damaged index file stops the prune: its packs would look
    // unreferenced. Index files another one supersedes (left by an
    // interrupted prune or repair, or copied back) are ignored, as by every
    // reader (FORMAT.md §5.4): the packs only they list were to be deleted.
    // They are deleted with the other old index files below.
    let mut inv = Inventory::load(repo)?;
    if !inv.unreadable.is_empty() {
        let (_, e) = inv.unreadable.swap_remove(0);
        return Err(e.context("prune stops: an index file cannot be read (run `cairn check`)"));
    }
    let index_ids = inv.index_files();
    repo.load_index()?;
    let used = used_blobs(repo)?;
    // A used blob missing from the index may sit in a pack that now looks
    // unreferenced: deleting that pack would lose it for good.
    let missing = used
        .iter()
        .filter(|(t, id)| !repo.index().contains(*t, id))
        .count();
    if missing > 0 {
        return Err(Error::integrity(format!(
            "prune stops: {missing} blobs that snapshots use are in no index file (run `cairn check`); nothing was deleted"
        )));
    }

    let on_disk = inv.stored_sizes();
    // May this pack go (be deleted, or repacked)? Only if it is old, or an
    // index file that is old lists it.
    let may_go = |id: &PackId| {
        old(inv.indexed.get(id).and_then(|p| p.first_listed))
            || old(inv.stored.get(id).and_then(|p| p.mtime))
    };
    r.bytes_before = on_disk.values().sum();
    if let Some(id) = inv.missing().first() {
        return Err(Error::integrity(format!(
            "prune stops: indexed pack {id} is missing (run `cairn check`)"
        )));
    }

    // Decide, pack by pack. A blob indexed twice is kept once: the first
    // pack (in ID order) that has it keeps it; the other copies are unused.
    let order = inv.indexed_packs();
    let mut homed: HashSet<(BlobType, BlobId)> = HashSet::new();
    let mut duplicates = 0u64;
    let mut keep_as_is: Vec<IndexPack> = Vec::new();
    let mut repack: Vec<(PackId, Vec<IndexBlob>)> = Vec::new();
    let mut delete: Vec<PackId> = Vec::new();
    // Partly used packs: (unused share, unused bytes, pack, live blobs, the
    // index entries it keeps if it is not repacked).
    type Partial = (f64, u64, PackId, Vec<IndexBlob>, Vec<IndexBlob>);
    let mut partial: Vec<Partial> = Vec::new();
    let mut used_bytes = 0u64;
    for id in order {
        let blobs = &inv.indexed[&id].blobs;
        if !may_go(&id) {
            // Too new to judge: it may be a running backup's, whose
            // snapshot is still to come. Kept whole, every entry listed.
            let mut live = 0;
            for b in blobs {
                if used.contains(&(b.blob_type, b.id)) {
                    live += 1;
                    used_bytes += u64::from(b.sealed_len);
                }
            }
            r.used_blobs += live as u64;
            r.unused_blobs += (blobs.len() - live) as u64;
            if live < blobs.len() {
                r.recent_packs_kept += 1;
            }
            keep_as_is.push(IndexPack {
                id,
                blobs: blobs.clone(),
            });
            continue;
        }
        let mut live = Vec::new();
        // Entries a pack kept as it is goes on listing: its used blobs and
        // its unused ones (so later prunes still see that waste, and later
        // backups may use them again), but no second copy of a blob.
        let mut entries = Vec::new();
        let (mut live_bytes, mut all_bytes) = (0u64, 0u64);
        for b in blobs {
            all_bytes += u64::from(b.sealed_len);
            let key = (b.blob_type, b.id);
            if !homed.insert(key) {
                duplicates += 1;
                continue;
            }
            entries.push(*b);
            if used.contains(&key) {
                live_bytes += u64::from(b.sealed_len);
                live.push(*b);
            }
        }
        r.used_blobs += live.len() as u64;
        r.unused_blobs += (blobs.len() - live.len()) as u64;
        used_bytes += live_bytes;
        if live.is_empty() {
            delete.push(id);
        } else if live.len() == blobs.len() {
            keep_as_is.push(IndexPack { id, blobs: live });
        } else {
            let unused = all_bytes - live_bytes;
            partial.push((unused as f64 / all_bytes as f64, unused, id, live, entries));
        }
    }
    // Repack the most wasteful packs until the unused data left is at most
    // `max_unused` of what remains: a few percent spread over many packs
    // is not worth rewriting them.
    partial.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.2.cmp(&b.2)));
    let mut unused_left: u64 = partial.iter().map(|p| p.1).sum();
    let allowed = if opts.max_unused >= 1.0 {
        f64::INFINITY
    } else {
        opts.max_unused / (1.0 - opts.max_unused) * used_bytes as f64
    };
    for (_, unused, id, live, entries) in partial {
        if unused_left as f64 > allowed {
            unused_left -= unused;
            repack.push((id, live));
        } else {
            keep_as_is.push(IndexPack { id, blobs: entries });
        }
    }
    // Packs no index lists: left by an interrupted backup or prune, or
    // stored by a backup that has not indexed them yet.
    let (unindexed, recent_unindexed): (Vec<PackId>, Vec<PackId>) =
        inv.unindexed().into_iter().partition(|id| may_go(id));
    r.recent_packs_kept += recent_unindexed.len() as u64;
    r.packs_deleted = delete.len() as u64;
    r.packs_repacked = repack.len() as u64;
    r.unindexed_packs_deleted = unindexed.len() as u64;
    r.index_files_replaced = index_ids.len() as u64;
    let kept_bytes: u64 = keep_as_is
        .iter()
        .map(|p| &p.id)
        .chain(&recent_unindexed)
        .map(|id| on_disk[id])
        .sum();
    let repacked_estimate: u64 = repack
        .iter()
        .flat_map(|(_, b)| b.iter().map(|x| u64::from(x.sealed_len) + 42))
        .sum();
    r.bytes_after = kept_bytes + repacked_estimate;
    if opts.dry_run {
        return Ok(r);
    }
    // Nothing to delete or rewrite: the index files stay as they are
    // (superseded ones still present are work: they are deleted).
    if delete.is_empty()
        && repack.is_empty()
        && unindexed.is_empty()
        && duplicates == 0
        && inv.superseded.is_empty()
    {
        r.index_files_replaced = 0;
        return Ok(r);
    }

    // 2. Repack: copy each used blob's sealed bytes as they are (a sealed
    //    blob is bound to its type and ID, not to its pack), after the save
    //    path opened it and checked it hashes to its ID.
    let saver = BlobSaver::new(
        repo,
        lock.gate(),
        SaveOptions {
            packer: PackerOptions {
                index_every_blobs: usize::MAX,
                index_every_bytes: u64::MAX,
                index_every: std::time::Duration::MAX,
                ..PackerOptions::new(repo.config().pack_size as usize)
            },
            ..SaveOptions::for_repo(repo)
        },
    );
    progress.start(
        "repack",
        Some(repack.len() as u64),
        Some(repack.iter().map(|(id, _)| on_disk[id]).sum()),
    );
    for (id, blobs) in &repack {
        let name = pack_name(id);
        blobs
            .par_iter()
            .map(|b| {
                let sealed = repo.backend().get_range(
                    &name,
                    u64::from(b.offset),
                    u64::from(b.sealed_len),
                )?;
                saver
                    .save_sealed(SealedBlob {
                        blob_type: b.blob_type,
                        id: b.id,
                        compression: b.compression,
                        raw_len: b.raw_len,
                        sealed,
                    })
                    .map_err(|e| e.context(format!("prune stops: pack {id}")))
            })
            .collect::<Result<Vec<bool>>>()?;
        progress.advance(1, on_disk[id]);
    }
    // 3. New index files: the repacked packs (written by the packer) and
    //    every pack kept as it is; the old index files are superseded.
    saver.finish()?;
    lock.verify().map_err(stopped)?;
    // At most 4096 packs or 1 000 000 blobs per index file (≈ 46 MB), far
    // below the size readers accept (`caps::INDEX_FILE`); the last one
    // written names the old files as superseded.
    if !keep_as_is.is_empty() {
        write_index_files(
            &**repo.backend(),
            repo.seal_key(),
            &keep_as_is,
            4096,
            index_ids.clone(),
            &mut || lock.check().map_err(stopped),
        )?;
    }
    crate::failpoint::hit("prune::before_delete")?;
    // 4. Old index files go.
    lock.verify().map_err(stopped)?;
    for id in &index_ids {
        lock.check().map_err(stopped)?;
        repo.backend().delete(&index_name(id))?;
    }
    // 5. Unreferenced packs go.
    let doomed: Vec<PackId> = delete
        .into_iter()
        .chain(repack.iter().map(|(id, _)| *id))
        .chain(unindexed)
        .collect();
    lock.verify().map_err(stopped)?;
    doomed
        .par_iter()
        .map(|id| {
            lock.check().map_err(stopped)?;
            repo.backend().delete(&pack_name(id))
        })
        .collect::<Result<Vec<()>>>()?;
    r.bytes_after = repo.backend().list("data")?.iter().map(|o| o.size).sum();
    repo.load_index()?;
    Ok(r)
}
