//! Repair: bring a damaged repository back to a state `check` passes,
//! keeping everything that can still be read, so damage does not mean a
//! new repository.
//!
//! - [`repair_index`] rebuilds the index from the packs that are there, by
//!   reading every pack's authenticated header, writes new index files that
//!   supersede every old one, then deletes the old ones. Packs that are
//!   gone drop out of the index; packs no index listed (left by an
//!   interrupted backup) come in.
//! - [`repair_snapshots`] rewrites each snapshot that needs a tree or data
//!   blob the index does not have (or whose pack is gone) into a new
//!   snapshot holding everything still readable: a directory whose tree is
//!   lost becomes an empty directory with its metadata, a file with any
//!   data blob lost is left out (a restored file is whole or absent). The
//!   new snapshot keeps the original's time, host, paths, parent and tags,
//!   adds the tag [`REPAIRED_TAG`] and the extension [`EXT_REPAIRED_FROM`],
//!   and its summary counts what is left. With `forget`, the damaged
//!   originals are deleted afterwards.
//!
//! Write ordering is the backup's (FORMAT.md §7): new packs, then index
//! files, then snapshots, and only then deletions. Run again after a crash,
//! either finishes the job: superseded index files are ignored by readers,
//! and an original that already has a repaired copy is not repaired twice.
//!
//! The caller holds the lock: exclusive for `repair_index` and for
//! `repair_snapshots` with `forget`, shared otherwise.
//!
//! Never touches: packs (neither operation rewrites or deletes one), key
//! files, the CLI.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rayon::prelude::*;

use super::Progress;
use crate::error::{Error, ErrorKind, Result};
use crate::format::BlobType;
use crate::format::index::{IndexBlob, IndexPack};
use crate::format::pack::PackEntry;
use crate::format::snapshot::{EXT_REPAIRED_FROM, Snapshot};
use crate::format::tree::{FileContent, NodeKind, Tree};
use crate::id::{BlobId, PackId, SnapshotId};
use crate::repo::inventory::Inventory;
use crate::repo::lock::RepoLock;
use crate::repo::packer::write_index_files;
use crate::repo::save::{BlobSaver, SaveOptions};
use crate::repo::{ExclusiveLock, Repository, SharedLock, index_name, snapshot_name};

/// The tag every repaired snapshot carries.
pub const REPAIRED_TAG: &str = "repaired";

/// Packs listed per new index file.
const PACKS_PER_INDEX_FILE: usize = 4096;

/// Options for [`repair_index`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RepairIndexOptions {
    /// Report what would be done, change nothing.
    pub dry_run: bool,
}

/// A pack whose header could not be read or authenticated.
#[derive(Debug, Clone)]
pub struct UnreadablePack {
    /// The pack.
    pub pack: PackId,
    /// Why its header is unusable.
    pub error: String,
    /// True if the old index listed the pack and its entries were kept
    /// (each blob is still authenticated when read); false if nothing
    /// locates its blobs any more.
    pub kept_old_entries: bool,
}

/// What [`repair_index`] did (or would do, with `dry_run`).
#[derive(Debug, Default)]
pub struct RepairIndexResult {
    /// Packs the new index lists.
    pub packs: u64,
    /// Blob entries the new index lists.
    pub blobs: u64,
    /// Packs on storage that no index file listed, now indexed.
    pub packs_added: Vec<PackId>,
    /// Packs the old index listed that are not on storage: their blobs are
    /// lost and no longer indexed.
    pub packs_missing: Vec<PackId>,
    /// Packs whose header cannot be used (left in place).
    pub packs_unreadable: Vec<UnreadablePack>,
    /// Index files written.
    pub index_files_written: u64,
    /// Old index files deleted (superseded, damaged ones included).
    pub index_files_removed: u64,
    /// True if the index already matched the packs: nothing was written.
    pub unchanged: bool,
    /// True if nothing was changed because of `dry_run`.
    pub dry_run: bool,
}

/// Rebuild the index from the pack headers. The caller holds an exclusive
/// lock. Any failure other than a damaged header (a network error, say)
/// stops the repair before anything is written: an index rebuilt from a
/// partial read would make the unread packs look unreferenced to prune.
pub fn repair_index(
    guard: &mut ExclusiveLock<'_>,
    opts: &RepairIndexOptions,
    progress: &dyn Progress,
) -> Result<RepairIndexResult> {
    let (repo, lock) = guard.parts();
    super::in_pool(|| repair_index_inner(repo, opts, lock, progress))
}

/// What [`repair_index`] would do, under a shared lock: a dry run.
pub fn plan_repair_index(
    guard: &mut SharedLock<'_>,
    progress: &dyn Progress,
) -> Result<RepairIndexResult> {
    let (repo, lock) = guard.parts();
    let opts = RepairIndexOptions { dry_run: true };
    super::in_pool(|| repair_index_inner(repo, &opts, lock, progress))
}

/// One pack's header entries as index entries (offsets computed from the
/// tiling the header was checked against).
fn index_entries(pack: &PackId, entries: &[PackEntry]) -> Result<Vec<IndexBlob>> {
    let mut out = Vec::with_capacity(entries.len());
    let mut offset = 0u64;
    for e in entries {
        let off = u32::try_from(offset)
            .ok()
            .filter(|o| o.checked_add(e.sealed_len).is_some())
            .ok_or_else(|| {
                Error::integrity(format!("pack {pack}: blob {} lies past 4 GiB", e.id))
            })?;
        out.push(IndexBlob {
            blob_type: e.blob_type,
            compression: e.compression,
            id: e.id,
            offset: off,
            sealed_len: e.sealed_len,
            raw_len: e.raw_len,
        });
        offset += u64::from(e.sealed_len);
    }
    Ok(out)
}

fn sorted_entries(mut v: Vec<IndexBlob>) -> Vec<IndexBlob> {
    v.sort_by_key(|b| (b.offset, b.blob_type.to_byte(), b.id));
    v
}

fn repair_index_inner(
    repo: &mut Repository,
    opts: &RepairIndexOptions,
    lock: &RepoLock,
    progress: &dyn Progress,
) -> Result<RepairIndexResult> {
    let mut r = RepairIndexResult {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let inv = Inventory::load(repo)?;
    let old_ids = inv.index_files();
    let stale_files = !inv.superseded.is_empty() || !inv.unreadable.is_empty();
    let mut order: Vec<(PackId, u64)> = inv.stored.iter().map(|(id, p)| (*id, p.size)).collect();
    order.sort();
    progress.start("read pack headers", Some(order.len() as u64), None);
    let headers: Vec<(PackId, Result<Vec<IndexBlob>>)> = order
        .par_iter()
        .map(|(id, size)| {
            let h = repo
                .load_pack_header(id, *size)
                .and_then(|entries| index_entries(id, &entries));
            progress.advance(1, 0);
            (*id, h)
        })
        .collect();

    let mut new_packs: Vec<IndexPack> = Vec::with_capacity(headers.len());
    let mut differs = false;
    for (id, h) in headers {
        match h {
            Ok(blobs) => {
                match inv.indexed.get(&id) {
                    None => r.packs_added.push(id),
                    Some(o) => {
                        differs |= sorted_entries(o.blobs.clone()) != sorted_entries(blobs.clone());
                    }
                }
                new_packs.push(IndexPack { id, blobs });
            }
            Err(e) if e.kind() == ErrorKind::Integrity => {
                let kept = inv.indexed.get(&id).map(|p| p.blobs.clone());
                r.packs_unreadable.push(UnreadablePack {
                    pack: id,
                    error: e.to_string(),
                    kept_old_entries: kept.is_some(),
                });
                if let Some(blobs) = kept {
                    new_packs.push(IndexPack { id, blobs });
                }
            }
            Err(e) => {
                return Err(e.context(format!(
                    "repair index stops: pack {id} cannot be read; nothing was changed"
                )));
            }
        }
    }
    r.packs_missing = inv.missing();
    r.packs = new_packs.len() as u64;
    r.blobs = new_packs.iter().map(|p| p.blobs.len() as u64).sum();
    r.unchanged =
        !differs && !stale_files && r.packs_added.is_empty() && r.packs_missing.is_empty();
    if opts.dry_run || r.unchanged {
        return Ok(r);
    }

    // New index files first, the last of them naming every old one as
    // superseded: from the moment it is stored, readers ignore the old ones.
    let (files, _) = write_index_files(
        &**repo.backend(),
        repo.seal_key(),
        &new_packs,
        PACKS_PER_INDEX_FILE,
        old_ids.clone(),
        &mut || lock.verify(),
    )?;
    r.index_files_written += files as u64;
    crate::failpoint::hit("repair::index_before_delete")?;
    lock.verify()?;
    for id in &old_ids {
        repo.backend().delete(&index_name(id))?;
        r.index_files_removed += 1;
    }
    repo.load_index()?;
    Ok(r)
}

/// Options for [`repair_snapshots`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RepairSnapshotsOptions {
    /// Delete each damaged original once its repaired copy is stored (and
    /// snapshot objects that cannot be read at all).
    pub forget: bool,
    /// Report what would be done, change nothing.
    pub dry_run: bool,
}

/// A path that a repaired snapshot no longer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostPath {
    /// Absolute path in the snapshot (`/` for the root directory).
    pub path: Vec<u8>,
    /// Why: which blob is missing.
    pub reason: String,
}

/// One damaged snapshot and its repaired copy.
#[derive(Debug, Clone)]
pub struct RepairedSnapshot {
    /// The damaged snapshot.
    pub original: SnapshotId,
    /// Its repaired copy: new (`None` with `dry_run`), or written by an
    /// earlier repair that was not finished.
    pub id: Option<SnapshotId>,
    /// True if an earlier repair had already written the copy.
    pub earlier: bool,
    /// What the copy lacks.
    pub lost: Vec<LostPath>,
}

/// What [`repair_snapshots`] did (or would do, with `dry_run`).
#[derive(Debug, Default)]
pub struct RepairSnapshotsResult {
    /// Snapshots examined.
    pub snapshots: u64,
    /// Snapshots with nothing missing (left alone).
    pub intact: u64,
    /// Damaged snapshots and their repaired copies.
    pub repaired: Vec<RepairedSnapshot>,
    /// Snapshot objects that cannot be read at all (removed with `forget`).
    pub unreadable: Vec<(SnapshotId, String)>,
    /// Snapshot objects deleted.
    pub removed: Vec<SnapshotId>,
    /// Tree blobs stored for the repaired copies.
    pub tree_blobs_added: u64,
    /// True if nothing was changed.
    pub dry_run: bool,
}

/// Counts of what a tree holds, as a backup's summary counts them.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    files: u64,
    dirs: u64,
    others: u64,
    bytes: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.others += o.others;
        self.bytes += o.bytes;
    }
}

/// A tree after repair.
struct Repaired {
    /// The repaired tree's ID (the original's if nothing was lost).
    id: BlobId,
    /// Paths lost below it, relative (`/name/…`; empty for the tree itself).
    lost: Vec<LostPath>,
    /// What is left below it. Directories are counted unless they are on
    /// the way to a backed-up path (the backup does not count those).
    counts: Counts,
}

struct Walker<'a> {
    repo: &'a Repository,
    /// Repairs of trees reached below a backed-up path, by original ID.
    memo: HashMap<BlobId, Arc<Repaired>>,
    /// New tree blobs to store, by ID, with their encoding.
    new_trees: HashMap<BlobId, Vec<u8>>,
    /// Paths of the directories on the way to the current snapshot's
    /// backed-up paths (not counted, not memoised).
    on_the_way: HashSet<Vec<u8>>,
}

/// Directories on the way to the backed-up paths (the root excluded),
/// as the backup builds them: ancestors of a path that lie inside another
/// backed-up path are part of that one.
fn ancestors_of(paths: &[Vec<u8>]) -> HashSet<Vec<u8>> {
    let inside = |x: &[u8], q: &[u8]| {
        q == b"/" || x == q || (x.starts_with(q) && x.get(q.len()) == Some(&b'/'))
    };
    let mut out = HashSet::new();
    for p in paths {
        let mut end = 0;
        while let Some(i) = p[end + 1..].iter().position(|&b| b == b'/') {
            end += 1 + i;
            let a = &p[..end];
            if !paths.iter().any(|q| inside(a, q)) {
                out.insert(a.to_vec());
            }
        }
    }
    out
}

impl Walker<'_> {
    /// Store-to-be a tree; returns its ID.
    fn put_tree(&mut self, tree: &Tree) -> Result<BlobId> {
        let bytes = tree.to_bytes()?;
        let id = self.repo.id_key().blob_id(&bytes);
        if !self.repo.index().contains(BlobType::Tree, &id) {
            self.new_trees.entry(id).or_insert(bytes);
        }
        Ok(id)
    }

    /// Load a tree, or say why it is lost. Failures that do not mean loss
    /// (I/O) are errors: a repair must not drop data on a network hiccup.
    fn load(&self, id: &BlobId, depth: usize) -> Result<std::result::Result<Tree, String>> {
        if depth > super::MAX_TREE_DEPTH {
            return Ok(Err(format!("tree {} is nested too deep", id.short())));
        }
        if !self.repo.index().contains(BlobType::Tree, id) {
            return Ok(Err(format!(
                "tree blob {} is not in the index or its pack is missing",
                id.short()
            )));
        }
        match self.repo.load_tree(id) {
            Ok(t) => Ok(Ok(t)),
            Err(e) if e.kind() == ErrorKind::Integrity || e.is_not_found() => {
                Ok(Err(format!("tree blob {} cannot be read: {e}", id.short())))
            }
            Err(e) => Err(e.context(format!("repair stops: tree {id}"))),
        }
    }

    /// Repair the tree `id` found at `path` (absolute; empty for the root).
    fn repair(&mut self, id: &BlobId, path: &[u8], depth: usize) -> Result<Arc<Repaired>> {
        let memoise = !path.is_empty() && !self.on_the_way.contains(path);
        if memoise && let Some(m) = self.memo.get(id) {
            return Ok(Arc::clone(m));
        }
        let out = match self.load(id, depth)? {
            Err(reason) => Repaired {
                id: self.put_tree(&Tree::default())?,
                lost: vec![LostPath {
                    path: Vec::new(),
                    reason: format!("directory emptied: {reason}"),
                }],
                counts: Counts::default(),
            },
            Ok(tree) => {
                let mut nodes = Vec::with_capacity(tree.nodes.len());
                let mut lost = Vec::new();
                let mut counts = Counts::default();
                let mut changed = false;
                for mut n in tree.nodes {
                    let mut rel = b"/".to_vec();
                    rel.extend_from_slice(&n.name);
                    match &n.kind {
                        NodeKind::Dir { subtree } => {
                            let mut full = path.to_vec();
                            full.extend_from_slice(&rel);
                            let below = self.repair(subtree, &full, depth + 1)?;
                            if !self.on_the_way.contains(&full) {
                                counts.dirs += 1;
                            }
                            counts.add(&below.counts);
                            for l in &below.lost {
                                let mut p = rel.clone();
                                p.extend_from_slice(&l.path);
                                lost.push(LostPath {
                                    path: p,
                                    reason: l.reason.clone(),
                                });
                            }
                            if below.id != *subtree {
                                changed = true;
                                n.kind = NodeKind::Dir { subtree: below.id };
                            }
                        }
                        NodeKind::File {
                            content: content @ FileContent::Tree { .. },
                        } => {
                            // A chunk-list tree: every list blob must be
                            // indexed and read (re-hashed, level-checked),
                            // every data blob indexed; else the file is left
                            // out, like a file with a lost data blob.
                            let index = self.repo.index();
                            let problem = |t: BlobType, b: &BlobId| {
                                (!index.contains(t, b)).then(|| {
                                    format!(
                                        "{} blob {} is in no index file, or its pack is gone",
                                        t.name(),
                                        b.short()
                                    )
                                })
                            };
                            let limit = crate::repo::chunklist::chunk_limit(&n);
                            let mut memo = crate::repo::chunklist::ScanMemo::new();
                            if let Err(why) = crate::repo::chunklist::scan(
                                self.repo, content, limit, &mut memo, &problem,
                            )
                            .map_err(|e| {
                                e.context(format!("repair stops: a chunk list below tree {id}"))
                            })? {
                                lost.push(LostPath {
                                    path: rel,
                                    reason: format!("file left out: {why}"),
                                });
                                changed = true;
                                continue;
                            }
                            counts.files += 1;
                            counts.bytes += n.size;
                        }
                        NodeKind::File {
                            content: FileContent::Inline(content),
                        } => {
                            let missing = content
                                .iter()
                                .filter(|b| !self.repo.index().contains(BlobType::Data, b))
                                .count();
                            if missing > 0 {
                                let first = content
                                    .iter()
                                    .find(|b| !self.repo.index().contains(BlobType::Data, b))
                                    .map(BlobId::short)
                                    .unwrap_or_default();
                                lost.push(LostPath {
                                    path: rel,
                                    reason: format!(
                                        "file left out: {missing} of its {} data blobs are lost (first {first}: in no index file, or its pack is gone)",
                                        content.len()
                                    ),
                                });
                                changed = true;
                                continue;
                            }
                            counts.files += 1;
                            counts.bytes += n.size;
                        }
                        _ => counts.others += 1,
                    }
                    nodes.push(n);
                }
                let id = if changed {
                    self.put_tree(&Tree { nodes })?
                } else {
                    *id
                };
                Repaired { id, lost, counts }
            }
        };
        let out = Arc::new(out);
        if memoise {
            self.memo.insert(*id, Arc::clone(&out));
        }
        Ok(out)
    }
}

/// Rewrite damaged snapshots (all of them if `ids` is empty); see the
/// module documentation. Loads the index itself, trusting only packs that
/// are on storage. Removing the originals (`opts.forget`, not a dry run)
/// deletes: [`repair_snapshots_and_forget`] does that, under an exclusive
/// lock; here `opts.forget` is refused.
pub fn repair_snapshots(
    guard: &mut SharedLock<'_>,
    ids: &[SnapshotId],
    opts: &RepairSnapshotsOptions,
    progress: &dyn Progress,
) -> Result<RepairSnapshotsResult> {
    if opts.forget && !opts.dry_run && !guard.is_exclusive() {
        return Err(Error::invalid(
            "removing the damaged originals needs an exclusive lock: use repair_snapshots_and_forget",
        ));
    }
    let (repo, lock) = guard.parts();
    repo.load_index_present()?;
    super::in_pool(|| repair_snapshots_inner(repo, ids, opts, lock, progress))
}

/// [`repair_snapshots`] that also removes the damaged originals once their
/// repaired copies are stored, under an exclusive lock.
pub fn repair_snapshots_and_forget(
    guard: &mut ExclusiveLock<'_>,
    ids: &[SnapshotId],
    opts: &RepairSnapshotsOptions,
    progress: &dyn Progress,
) -> Result<RepairSnapshotsResult> {
    let opts = RepairSnapshotsOptions {
        forget: true,
        ..*opts
    };
    let (repo, lock) = guard.parts();
    repo.load_index_present()?;
    super::in_pool(|| repair_snapshots_inner(repo, ids, &opts, lock, progress))
}

fn repair_snapshots_inner(
    repo: &Repository,
    ids: &[SnapshotId],
    opts: &RepairSnapshotsOptions,
    lock: &RepoLock,
    progress: &dyn Progress,
) -> Result<RepairSnapshotsResult> {
    let mut r = RepairSnapshotsResult {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    // Every snapshot record, to find copies an earlier run already wrote.
    let all = repo.list_snapshot_ids()?;
    let loaded: Vec<(SnapshotId, Result<Snapshot>)> = all
        .par_iter()
        .map(|id| (*id, repo.load_snapshot(id)))
        .collect();
    let mut snaps: Vec<(SnapshotId, Snapshot)> = Vec::new();
    let mut unreadable: Vec<(SnapshotId, Error)> = Vec::new();
    for (id, s) in loaded {
        match s {
            Ok(s) => snaps.push((id, s)),
            Err(e) if e.kind() == ErrorKind::Integrity => unreadable.push((id, e)),
            // Vanished meanwhile (forgotten by someone else): nothing to do.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    snaps.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
    let mut repaired_copy: HashMap<SnapshotId, SnapshotId> = HashMap::new();
    for (id, s) in &snaps {
        if let Some((_, v)) = s.extensions.iter().find(|(t, _)| *t == EXT_REPAIRED_FROM)
            && let Ok(orig) = <[u8; 32]>::try_from(v.as_slice())
        {
            repaired_copy.insert(SnapshotId(orig), *id);
        }
    }
    let chosen: HashSet<SnapshotId> = ids.iter().copied().collect();
    for id in &chosen {
        if !snaps.iter().any(|(s, _)| s == id) && !unreadable.iter().any(|(s, _)| s == id) {
            return Err(Error::not_found(format!("no snapshot {id}")));
        }
    }
    let wanted = |id: &SnapshotId| chosen.is_empty() || chosen.contains(id);
    r.unreadable = unreadable
        .into_iter()
        .filter(|(id, _)| wanted(id))
        .map(|(id, e)| (id, e.to_string()))
        .collect();

    let mut walker = Walker {
        repo,
        memo: HashMap::new(),
        new_trees: HashMap::new(),
        on_the_way: HashSet::new(),
    };
    let todo: Vec<&(SnapshotId, Snapshot)> = snaps.iter().filter(|(id, _)| wanted(id)).collect();
    progress.start("repair", Some(todo.len() as u64), None);
    let mut new_snaps: Vec<(usize, Snapshot)> = Vec::new();
    for (id, s) in todo {
        r.snapshots += 1;
        walker.on_the_way = ancestors_of(&s.paths);
        let root = walker.repair(&s.tree, b"", 0)?;
        progress.advance(1, 0);
        if root.id == s.tree {
            r.intact += 1;
            continue;
        }
        let lost: Vec<LostPath> = root
            .lost
            .iter()
            .map(|l| LostPath {
                path: if l.path.is_empty() {
                    b"/".to_vec()
                } else {
                    l.path.clone()
                },
                reason: l.reason.clone(),
            })
            .collect();
        if let Some(copy) = repaired_copy.get(id) {
            r.repaired.push(RepairedSnapshot {
                original: *id,
                id: Some(*copy),
                earlier: true,
                lost,
            });
            continue;
        }
        let mut fixed = s.clone();
        fixed.tree = root.id;
        if !fixed.tags.iter().any(|t| t == REPAIRED_TAG) {
            fixed.tags.push(REPAIRED_TAG.to_string());
            fixed.tags.sort();
        }
        fixed.extensions.retain(|(t, _)| *t != EXT_REPAIRED_FROM);
        fixed
            .extensions
            .push((EXT_REPAIRED_FROM, id.as_bytes().to_vec()));
        fixed.extensions.sort_by_key(|(t, _)| *t);
        let c = root.counts;
        fixed.summary.files = c.files;
        fixed.summary.dirs = c.dirs;
        fixed.summary.others = c.others;
        fixed.summary.total_bytes = c.bytes;
        fixed.summary.errors = s.summary.errors.saturating_add(lost.len() as u64);
        new_snaps.push((r.repaired.len(), fixed));
        r.repaired.push(RepairedSnapshot {
            original: *id,
            id: None,
            earlier: false,
            lost,
        });
    }
    r.tree_blobs_added = walker.new_trees.len() as u64;
    if opts.dry_run {
        return Ok(r);
    }

    // Trees (packs, then their index file), then the snapshots.
    if !walker.new_trees.is_empty() {
        let saver = BlobSaver::new(repo, lock.gate(), SaveOptions::for_repo(repo));
        let mut trees: Vec<(BlobId, Vec<u8>)> = walker.new_trees.into_iter().collect();
        trees.sort_by_key(|(id, _)| *id);
        let stored = trees.iter().try_for_each(|(id, bytes)| {
            let saved = saver.save(BlobType::Tree, bytes)?;
            debug_assert_eq!(saved.id, *id);
            Ok(())
        });
        if let Err(e) = stored {
            // Index what was stored; no snapshot is written.
            let _ = saver.finish();
            return Err(e);
        }
        saver.finish()?;
    }
    for (i, s) in new_snaps {
        lock.verify()?;
        let id = repo.save_snapshot(&s)?;
        r.repaired[i].id = Some(id);
    }
    if opts.forget {
        crate::failpoint::hit("repair::before_forget")?;
        let doomed: Vec<SnapshotId> = r
            .repaired
            .iter()
            .map(|x| x.original)
            .chain(r.unreadable.iter().map(|(id, _)| *id))
            .collect();
        lock.verify()?;
        for id in doomed {
            repo.backend().delete(&snapshot_name(&id))?;
            r.removed.push(id);
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directories_on_the_way_are_those_the_backup_builds() {
        let set =
            |v: &[&str]| -> HashSet<Vec<u8>> { v.iter().map(|s| s.as_bytes().to_vec()).collect() };
        let paths =
            |v: &[&str]| -> Vec<Vec<u8>> { v.iter().map(|s| s.as_bytes().to_vec()).collect() };
        assert_eq!(
            ancestors_of(&paths(&["/opt/app/data"])),
            set(&["/opt", "/opt/app"])
        );
        assert_eq!(ancestors_of(&paths(&["/"])), set(&[]));
        assert_eq!(ancestors_of(&paths(&["/stdin.sql"])), set(&[]));
        // /a is backed up whole: /a/b is inside it, not on the way.
        assert_eq!(ancestors_of(&paths(&["/a", "/a/b/c"])), set(&[]));
        // /ab is not inside /a.
        assert_eq!(ancestors_of(&paths(&["/a", "/ab/c"])), set(&["/ab"]));
        assert_eq!(
            ancestors_of(&paths(&["/srv/x", "/srv/y/z"])),
            set(&["/srv", "/srv/y"])
        );
    }
}
