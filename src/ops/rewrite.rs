//! Rewriting snapshot records: [`rewrite`] writes new snapshots without the
//! entries that match exclude patterns (a secret or a huge file backed up
//! by mistake), [`retag`] writes them with other tags.
//!
//! A new record keeps the original's time, UTC offset, parent, host, user,
//! paths, program version and other extensions, and carries the extension
//! [`EXT_REWRITTEN_FROM`] naming the original (the first one: a record
//! rewritten again keeps the value it had). [`rewrite`] adds the tag
//! [`REWRITTEN_TAG`] and lowers the summary's `files`, `dirs`, `others`
//! and `total_bytes` by what it removed. Only the trees on the way to a
//! removed entry are re-encoded and stored; every other tree keeps its ID,
//! so a rewrite stores a few tree blobs, never data. A snapshot where
//! nothing changes is left alone (no new record).
//!
//! Write ordering is the backup's (FORMAT.md §7): new packs, their index
//! file, then the snapshot records, and only then (with `forget`, and
//! always for [`retag`]) the originals are deleted, under an exclusive
//! lock. Run again after a crash, either finishes the job: a record equal
//! to the one it would write is already there, so it is not written twice,
//! and the original is deleted then.
//!
//! Exclude patterns mean what they mean to `backup --exclude`
//! ([`crate::source::exclude::ExcludeMatcher`]): a pattern without `/`
//! matches a name anywhere, one with `/` the whole absolute path, a
//! trailing `/` only directories. The data of removed files stays in the
//! repository until the originals are gone and `prune` runs.
//!
//! Never touches: packs of data (nothing is rewritten or deleted but
//! snapshot records), key files, the CLI.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use super::Progress;
use crate::error::{Error, Result};
use crate::format::BlobType;
use crate::format::snapshot::{EXT_REWRITTEN_FROM, Snapshot, check_tag};
use crate::format::tree::{NodeKind, Tree};
use crate::id::{BlobId, SnapshotId};
use crate::repo::lock::RepoLock;
use crate::repo::save::{BlobSaver, SaveOptions};
use crate::repo::{ExclusiveLock, Repository, SharedLock, SnapshotList, snapshot_name};
use crate::source::exclude::ExcludeMatcher;

/// The tag every snapshot written by [`rewrite`] carries.
pub const REWRITTEN_TAG: &str = "rewritten";

/// Options for [`rewrite`].
#[derive(Debug, Clone, Default)]
pub struct RewriteOptions {
    /// Exclude patterns, as `backup --exclude` takes them.
    pub exclude: Vec<String>,
    /// Delete each original once its new record is stored.
    pub forget: bool,
    /// Report what would be done, change nothing.
    pub dry_run: bool,
}

/// What one removed entry held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Regular files (the entry itself, or below it).
    pub files: u64,
    /// Directories (the entry itself and those below it).
    pub dirs: u64,
    /// Other entries.
    pub others: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.others += o.others;
        self.bytes += o.bytes;
    }
}

/// An entry a rewritten snapshot no longer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedEntry {
    /// Absolute path in the snapshot.
    pub path: Vec<u8>,
    /// The entry's type name (`file`, `dir`, …).
    pub kind: &'static str,
    /// What it held (a directory: itself and everything below).
    pub counts: Counts,
}

/// One snapshot and the record that replaces it.
#[derive(Debug, Clone)]
pub struct RewrittenSnapshot {
    /// The original.
    pub original: SnapshotId,
    /// The new record: new (`None` with `dry_run`), or written by an
    /// earlier run that did not finish.
    pub id: Option<SnapshotId>,
    /// True if an earlier run had already written the new record.
    pub earlier: bool,
    /// What the new snapshot lacks ([`rewrite`]; empty for [`retag`]).
    pub removed: Vec<RemovedEntry>,
    /// The new record's tags.
    pub tags: Vec<String>,
}

/// What [`rewrite`] or [`retag`] did (or would do, with `dry_run`).
#[derive(Debug, Default)]
pub struct RewriteResult {
    /// Snapshots examined.
    pub snapshots: u64,
    /// Snapshots left alone: nothing matched (or nothing to change).
    pub unchanged: u64,
    /// Snapshots replaced by new records.
    pub rewritten: Vec<RewrittenSnapshot>,
    /// Originals deleted.
    pub removed: Vec<SnapshotId>,
    /// Tree blobs stored for the new snapshots.
    pub tree_blobs_added: u64,
    /// True if nothing was changed.
    pub dry_run: bool,
}

/// A tree after the exclusion.
struct Pruned {
    /// The new tree's ID (the original's if nothing matched below it).
    id: BlobId,
    /// Entries removed below it, with absolute paths.
    removed: Vec<RemovedEntry>,
    /// What they held, in total.
    total: Counts,
}

struct Rewriter<'a> {
    repo: &'a Repository,
    matcher: ExcludeMatcher,
    /// Rewritten trees by original ID and path (a pattern may name the
    /// path, so the same tree elsewhere may lose other entries).
    memo: HashMap<(BlobId, Vec<u8>), Arc<Pruned>>,
    /// What a removed tree holds, by ID.
    counted: HashMap<BlobId, Counts>,
    /// New tree blobs to store, by ID, with their encoding.
    new_trees: HashMap<BlobId, Vec<u8>>,
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(prefix.len() + 1 + name.len());
    p.extend_from_slice(prefix);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

impl Rewriter<'_> {
    fn put_tree(&mut self, tree: &Tree) -> Result<BlobId> {
        let bytes = tree.to_bytes()?;
        let id = self.repo.id_key().blob_id(&bytes);
        if !self.repo.index().contains(BlobType::Tree, &id) {
            self.new_trees.entry(id).or_insert(bytes);
        }
        Ok(id)
    }

    /// Everything below the tree `id` (not the directory itself).
    fn count(&mut self, id: &BlobId, depth: usize) -> Result<Counts> {
        if let Some(c) = self.counted.get(id) {
            return Ok(*c);
        }
        if depth > super::MAX_TREE_DEPTH {
            return Err(Error::integrity(format!(
                "tree {} is nested deeper than {} directories (hostile or corrupt tree)",
                id.short(),
                super::MAX_TREE_DEPTH
            )));
        }
        let tree = self.repo.load_tree(id)?;
        let mut c = Counts::default();
        for n in &tree.nodes {
            match &n.kind {
                NodeKind::Dir { subtree } => {
                    c.dirs += 1;
                    let below = self.count(subtree, depth + 1)?;
                    c.add(&below);
                }
                NodeKind::File { .. } => {
                    c.files += 1;
                    c.bytes += n.size;
                }
                _ => c.others += 1,
            }
        }
        self.counted.insert(*id, c);
        Ok(c)
    }

    /// The tree `id` found at `path` (absolute; empty for the root)
    /// without the excluded entries.
    fn prune(&mut self, id: &BlobId, path: &[u8], depth: usize) -> Result<Arc<Pruned>> {
        let key = (*id, path.to_vec());
        if let Some(m) = self.memo.get(&key) {
            return Ok(Arc::clone(m));
        }
        if depth > super::MAX_TREE_DEPTH {
            return Err(Error::integrity(format!(
                "{} is nested deeper than {} directories (hostile or corrupt tree)",
                String::from_utf8_lossy(path),
                super::MAX_TREE_DEPTH
            )));
        }
        let tree = self.repo.load_tree(id)?;
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        let mut removed = Vec::new();
        let mut total = Counts::default();
        let mut changed = false;
        for mut n in tree.nodes {
            let full = join(path, &n.name);
            let is_dir = matches!(n.kind, NodeKind::Dir { .. });
            if self
                .matcher
                .is_excluded(Path::new(OsStr::from_bytes(&full)), is_dir)
            {
                let counts = match &n.kind {
                    NodeKind::Dir { subtree } => {
                        let mut c = self.count(subtree, depth + 1)?;
                        c.dirs += 1;
                        c
                    }
                    NodeKind::File { .. } => Counts {
                        files: 1,
                        bytes: n.size,
                        ..Counts::default()
                    },
                    _ => Counts {
                        others: 1,
                        ..Counts::default()
                    },
                };
                total.add(&counts);
                removed.push(RemovedEntry {
                    path: full,
                    kind: n.kind.name(),
                    counts,
                });
                changed = true;
                continue;
            }
            if let NodeKind::Dir { subtree } = &n.kind {
                let below = self.prune(subtree, &full, depth + 1)?;
                if below.id != *subtree {
                    changed = true;
                    removed.extend(below.removed.iter().cloned());
                    total.add(&below.total);
                    n.kind = NodeKind::Dir { subtree: below.id };
                }
            }
            nodes.push(n);
        }
        let id = if changed {
            self.put_tree(&Tree { nodes })?
        } else {
            *id
        };
        let out = Arc::new(Pruned { id, removed, total });
        self.memo.insert(key, Arc::clone(&out));
        Ok(out)
    }
}

/// Every readable snapshot record, and the ones named by `ids` (each must
/// be there), in the order listed (oldest first).
fn chosen(repo: &Repository, ids: &[SnapshotId]) -> Result<(SnapshotList, SnapshotList)> {
    let all = repo.load_snapshots()?;
    for id in ids {
        if !all.iter().any(|(s, _)| s == id) {
            return Err(Error::not_found(format!("no snapshot {id}")));
        }
    }
    let todo = all
        .iter()
        .filter(|(id, _)| ids.contains(id))
        .cloned()
        .collect();
    Ok((all, todo))
}

/// `new` with the marker naming `original` (unless it names an earlier
/// one already) and its tags sorted.
fn mark(new: &mut Snapshot, original: &SnapshotId) {
    if !new.extensions.iter().any(|(t, _)| *t == EXT_REWRITTEN_FROM) {
        new.extensions
            .push((EXT_REWRITTEN_FROM, original.as_bytes().to_vec()));
        new.extensions.sort_by_key(|(t, _)| *t);
    }
    new.tags.sort();
    new.tags.dedup();
}

/// Store the new trees, then the new records (unless an equal record is
/// already there), then, with `forget`, delete the originals.
fn commit(
    repo: &Repository,
    lock: &RepoLock,
    new_trees: HashMap<BlobId, Vec<u8>>,
    new_snaps: Vec<(usize, Snapshot)>,
    forget: bool,
    r: &mut RewriteResult,
) -> Result<()> {
    if !new_trees.is_empty() {
        let saver = BlobSaver::new(repo, lock.gate(), SaveOptions::for_repo(repo));
        let mut trees: Vec<(BlobId, Vec<u8>)> = new_trees.into_iter().collect();
        trees.sort_by_key(|(id, _)| *id);
        let stored = trees.iter().try_for_each(|(_, bytes)| {
            saver.save(BlobType::Tree, bytes)?;
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
        r.rewritten[i].id = Some(id);
    }
    if forget {
        crate::failpoint::hit("rewrite::before_forget")?;
        lock.verify()
            .map_err(|e| e.context("no original snapshot was removed"))?;
        for x in &r.rewritten {
            lock.check()?;
            repo.backend().delete(&snapshot_name(&x.original))?;
            r.removed.push(x.original);
        }
    }
    Ok(())
}

/// The ID of a record equal to `s` among `all` (written by an earlier run).
fn already_there(all: &SnapshotList, s: &Snapshot) -> Option<SnapshotId> {
    all.iter().find(|(_, x)| x == s).map(|(id, _)| *id)
}

/// Rewrite the snapshots `ids` without the entries `opts.exclude` matches;
/// see the module documentation. Loads the index itself, trusting only
/// packs that are on storage. Deleting the originals (`opts.forget`, not a
/// dry run) needs [`rewrite_and_forget`]; here it is refused.
pub fn rewrite(
    guard: &mut SharedLock<'_>,
    ids: &[SnapshotId],
    opts: &RewriteOptions,
    progress: &dyn Progress,
) -> Result<RewriteResult> {
    if opts.forget && !opts.dry_run && !guard.is_exclusive() {
        return Err(Error::invalid(
            "removing the originals needs an exclusive lock: use rewrite_and_forget",
        ));
    }
    let (repo, lock) = guard.parts();
    repo.load_index_present()?;
    super::in_pool(|| rewrite_inner(repo, ids, opts, lock, progress))
}

/// [`rewrite`] that also deletes the originals once their new records are
/// stored, under an exclusive lock.
pub fn rewrite_and_forget(
    guard: &mut ExclusiveLock<'_>,
    ids: &[SnapshotId],
    opts: &RewriteOptions,
    progress: &dyn Progress,
) -> Result<RewriteResult> {
    let opts = RewriteOptions {
        forget: true,
        ..opts.clone()
    };
    let (repo, lock) = guard.parts();
    repo.load_index_present()?;
    super::in_pool(|| rewrite_inner(repo, ids, &opts, lock, progress))
}

fn rewrite_inner(
    repo: &Repository,
    ids: &[SnapshotId],
    opts: &RewriteOptions,
    lock: &RepoLock,
    progress: &dyn Progress,
) -> Result<RewriteResult> {
    if opts.exclude.iter().all(|p| p.trim().is_empty()) {
        return Err(Error::invalid(
            "nothing to exclude: give at least one exclude pattern",
        ));
    }
    let matcher = ExcludeMatcher::new(&opts.exclude, &[])?;
    let mut r = RewriteResult {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let (all, todo) = chosen(repo, ids)?;
    if todo.is_empty() {
        return Err(Error::not_found("no snapshot to rewrite"));
    }
    let mut w = Rewriter {
        repo,
        matcher,
        memo: HashMap::new(),
        counted: HashMap::new(),
        new_trees: HashMap::new(),
    };
    progress.start("rewrite", Some(todo.len() as u64), None);
    let mut new_snaps = Vec::new();
    for (id, s) in &todo {
        lock.check()?;
        r.snapshots += 1;
        let root = w
            .prune(&s.tree, b"", 0)
            .map_err(|e| e.context(format!("snapshot {}", id.short())))?;
        progress.advance(1, 0);
        if root.id == s.tree {
            r.unchanged += 1;
            continue;
        }
        let mut new = s.clone();
        new.tree = root.id;
        new.tags.push(REWRITTEN_TAG.to_string());
        mark(&mut new, id);
        let t = root.total;
        let sm = &mut new.summary;
        sm.files = sm.files.saturating_sub(t.files);
        sm.dirs = sm.dirs.saturating_sub(t.dirs);
        sm.others = sm.others.saturating_sub(t.others);
        sm.total_bytes = sm.total_bytes.saturating_sub(t.bytes);
        let earlier = already_there(&all, &new);
        r.rewritten.push(RewrittenSnapshot {
            original: *id,
            id: earlier,
            earlier: earlier.is_some(),
            removed: root.removed.clone(),
            tags: new.tags.clone(),
        });
        if earlier.is_none() {
            new_snaps.push((r.rewritten.len() - 1, new));
        }
    }
    if r.rewritten.is_empty() {
        // Most likely a mistyped pattern: saying "done" would leave the
        // secret the user meant to remove in every snapshot.
        return Err(Error::not_found(format!(
            "no entry in the {} selected snapshot{} matches the exclude patterns: nothing to rewrite",
            r.snapshots,
            if r.snapshots == 1 { "" } else { "s" }
        )));
    }
    // Trees only the new snapshots need (an earlier run's are indexed).
    r.tree_blobs_added = w.new_trees.len() as u64;
    if opts.dry_run {
        return Ok(r);
    }
    commit(repo, lock, w.new_trees, new_snaps, opts.forget, &mut r)?;
    Ok(r)
}

/// How [`retag`] changes the tags.
#[derive(Debug, Clone, Default)]
pub struct TagOptions {
    /// Tags to add.
    pub add: Vec<String>,
    /// Tags to remove.
    pub remove: Vec<String>,
    /// Replace all tags with these (excludes `add` and `remove`).
    pub set: Option<Vec<String>>,
    /// Report what would be done, change nothing.
    pub dry_run: bool,
}

impl TagOptions {
    /// Refuse options that change nothing or contradict each other, and
    /// tags a snapshot may not carry.
    pub fn validate(&self) -> Result<()> {
        if self.set.is_some() && (!self.add.is_empty() || !self.remove.is_empty()) {
            return Err(Error::invalid(
                "--set replaces every tag: it cannot be combined with --add or --remove",
            ));
        }
        if self.set.is_none() && self.add.is_empty() && self.remove.is_empty() {
            return Err(Error::invalid(
                "nothing to do: give --add TAG, --remove TAG or --set TAG",
            ));
        }
        for t in self.add.iter().chain(self.set.iter().flatten()) {
            check_tag(t)?;
        }
        Ok(())
    }

    /// The tags a snapshot with `tags` gets.
    pub fn apply(&self, tags: &[String]) -> Vec<String> {
        let mut out: Vec<String> = match &self.set {
            Some(set) => set.clone(),
            None => tags
                .iter()
                .filter(|t| !self.remove.contains(t))
                .chain(self.add.iter())
                .cloned()
                .collect(),
        };
        out.sort();
        out.dedup();
        out
    }
}

/// Change the tags of the snapshots `ids`: each snapshot whose tags change
/// is replaced by a new record (same tree), and the original deleted,
/// under an exclusive lock. See the module documentation.
pub fn retag(
    guard: &mut ExclusiveLock<'_>,
    ids: &[SnapshotId],
    opts: &TagOptions,
) -> Result<RewriteResult> {
    opts.validate()?;
    let (repo, lock) = guard.parts();
    let mut r = RewriteResult {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let (all, todo) = chosen(repo, ids)?;
    let mut new_snaps = Vec::new();
    for (id, s) in &todo {
        r.snapshots += 1;
        let mut sorted = s.tags.clone();
        sorted.sort();
        let tags = opts.apply(&s.tags);
        if tags == sorted {
            r.unchanged += 1;
            continue;
        }
        let mut new = s.clone();
        new.tags = tags;
        mark(&mut new, id);
        let earlier = already_there(&all, &new);
        r.rewritten.push(RewrittenSnapshot {
            original: *id,
            id: earlier,
            earlier: earlier.is_some(),
            removed: Vec::new(),
            tags: new.tags.clone(),
        });
        if earlier.is_none() {
            new_snaps.push((r.rewritten.len() - 1, new));
        }
    }
    if opts.dry_run {
        return Ok(r);
    }
    commit(repo, lock, HashMap::new(), new_snaps, true, &mut r)?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_changes_add_remove_and_set() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let add = TagOptions {
            add: t(&["b", "a"]),
            ..Default::default()
        };
        assert_eq!(add.apply(&t(&["c", "a"])), t(&["a", "b", "c"]));
        let remove = TagOptions {
            remove: t(&["a"]),
            ..Default::default()
        };
        assert_eq!(remove.apply(&t(&["c", "a"])), t(&["c"]));
        let set = TagOptions {
            set: Some(t(&["x"])),
            ..Default::default()
        };
        assert_eq!(set.apply(&t(&["c", "a"])), t(&["x"]));
        assert!(TagOptions::default().validate().is_err());
        let both = TagOptions {
            add: t(&["a"]),
            set: Some(t(&["x"])),
            ..Default::default()
        };
        assert!(both.validate().is_err());
        let bad = TagOptions {
            add: t(&["a\nb"]),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
