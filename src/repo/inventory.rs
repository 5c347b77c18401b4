//! The inventory: what the repository's index files say about its packs,
//! against what the storage holds. One listing of `index/`, every index
//! file read once (in parallel), then one listing of `data/` — in that
//! order, so a pack stored and indexed by a concurrent writer between the
//! two listings shows up as unindexed (harmless), never as an indexed pack
//! that is missing.
//!
//! `check` reports from it, `prune` decides from it, `repair index`
//! rebuilds against it; `load_index` sorts index files with the same rules
//! ([`load_index_files`]): a file named in the `supersedes` list of another
//! readable file is ignored (FORMAT.md §5.4), and damaged or vanished files
//! are set apart.
//!
//! Never touches: blobs' content, the in-memory index, anything it would
//! have to write.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use super::{IndexFiles, Repository, pack_name};
use crate::error::{Error, ErrorKind, Result};
use crate::format::BlobType;
use crate::format::index::{IndexBlob, IndexFile};
use crate::id::{BlobId, IndexId, PackId};

/// A pack that live index files list.
#[derive(Debug, Clone, Default)]
pub struct IndexedPack {
    /// Its blobs, as every live index file listing it says (a pack listed
    /// by two files has its entries twice).
    pub blobs: Vec<IndexBlob>,
    /// The storage time of the oldest index file listing it, if the
    /// backend gives times.
    pub first_listed: Option<i64>,
}

/// A pack the storage holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredPack {
    /// Its size in bytes.
    pub size: u64,
    /// When it was written, by the storage's clock, if the backend says.
    pub mtime: Option<i64>,
}

/// Index files and packs; see the module documentation.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Readable index files no readable index file supersedes: the index.
    pub live: Vec<IndexId>,
    /// Readable index files another readable one supersedes, each with the
    /// one naming it: ignored.
    pub superseded: Vec<(IndexId, IndexId)>,
    /// Index files that failed authentication or decoding, or vanished
    /// while being read: ignored.
    pub unreadable: Vec<(IndexId, Error)>,
    /// Packs the live index files list.
    pub indexed: HashMap<PackId, IndexedPack>,
    /// Packs on storage.
    pub stored: HashMap<PackId, StoredPack>,
    /// Objects in `data/` whose names are not a pack's.
    pub strays: Vec<String>,
}

impl Inventory {
    /// List and read the index files, then list the packs.
    pub fn load(repo: &Repository) -> Result<Inventory> {
        let (files, listed_at) = load_index_files(repo)?;
        let mut indexed: HashMap<PackId, IndexedPack> = HashMap::new();
        let mut live = Vec::with_capacity(files.live.len());
        for (id, f) in files.live {
            let at = listed_at.get(&id).copied().flatten();
            for p in f.packs {
                let e = indexed.entry(p.id).or_default();
                e.blobs.extend(p.blobs);
                e.first_listed = match (e.first_listed, at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            live.push(id);
        }
        live.sort();
        let mut stored = HashMap::new();
        let mut strays = Vec::new();
        for o in repo.backend().list("data")? {
            let file = o.name.rsplit('/').next().unwrap_or("");
            match PackId::from_hex(file) {
                Ok(id) if pack_name(&id) == o.name => {
                    stored.insert(
                        id,
                        StoredPack {
                            size: o.size,
                            mtime: o.mtime,
                        },
                    );
                }
                _ => strays.push(o.name),
            }
        }
        strays.sort();
        Ok(Inventory {
            live,
            superseded: files.superseded,
            unreadable: files.unreadable,
            indexed,
            stored,
            strays,
        })
    }

    /// Every index file listed: live, superseded and unreadable, sorted.
    pub fn index_files(&self) -> Vec<IndexId> {
        let mut v: Vec<IndexId> = self
            .live
            .iter()
            .copied()
            .chain(self.superseded.iter().map(|(id, _)| *id))
            .chain(self.unreadable.iter().map(|(id, _)| *id))
            .collect();
        v.sort();
        v
    }

    /// Indexed packs, sorted.
    pub fn indexed_packs(&self) -> Vec<PackId> {
        let mut v: Vec<PackId> = self.indexed.keys().copied().collect();
        v.sort();
        v
    }

    /// Packs the live index lists that the storage does not hold: their
    /// blobs are lost. Sorted.
    pub fn missing(&self) -> Vec<PackId> {
        let mut v: Vec<PackId> = self
            .indexed
            .keys()
            .filter(|id| !self.stored.contains_key(id))
            .copied()
            .collect();
        v.sort();
        v
    }

    /// Packs on storage that no live index file lists (left by an
    /// interrupted writer, or stored by one still running). Sorted.
    pub fn unindexed(&self) -> Vec<PackId> {
        let mut v: Vec<PackId> = self
            .stored
            .keys()
            .filter(|id| !self.indexed.contains_key(id))
            .copied()
            .collect();
        v.sort();
        v
    }

    /// Blobs (by type and ID) that the live index lists more than once.
    pub fn duplicate_blobs(&self) -> usize {
        let mut seen: HashSet<(BlobType, BlobId)> = HashSet::new();
        let mut dups: HashSet<(BlobType, BlobId)> = HashSet::new();
        for p in self.indexed.values() {
            for b in &p.blobs {
                if !seen.insert((b.blob_type, b.id)) {
                    dups.insert((b.blob_type, b.id));
                }
            }
        }
        dups.len()
    }

    /// Sizes of the packs on storage.
    pub fn stored_sizes(&self) -> HashMap<PackId, u64> {
        self.stored.iter().map(|(id, p)| (*id, p.size)).collect()
    }
}

/// Read every index file (in parallel) and sort them by what a reader may
/// trust: index files named in the `supersedes` list of another readable
/// index file are set apart and must not be used (FORMAT.md §5.4): they
/// were replaced by a prune or `repair index`, and are either left by one
/// that was interrupted, or copied back. Damaged and vanished index files
/// are set apart too; other failures (I/O) fail. Also returns the time the
/// storage gives each file.
pub fn load_index_files(repo: &Repository) -> Result<(IndexFiles, HashMap<IndexId, Option<i64>>)> {
    let listed: HashMap<IndexId, Option<i64>> = repo
        .backend()
        .list("index")?
        .into_iter()
        .filter_map(|o| {
            let file = o.name.rsplit('/').next().unwrap_or("");
            Some((IndexId::from_hex(file).ok()?, o.mtime))
        })
        .collect();
    let mut ids: Vec<IndexId> = listed.keys().copied().collect();
    ids.sort();
    let loaded: Vec<Result<IndexFile>> =
        ids.par_iter().map(|id| repo.load_index_file(id)).collect();
    let mut files = Vec::with_capacity(ids.len());
    let mut unreadable = Vec::new();
    for (id, f) in ids.into_iter().zip(loaded) {
        match f {
            Ok(f) => files.push((id, f)),
            Err(e) if e.kind() == ErrorKind::Integrity || e.is_not_found() => {
                unreadable.push((id, e));
            }
            Err(e) => return Err(e),
        }
    }
    let mut superseded_by: HashMap<IndexId, IndexId> = HashMap::new();
    for (id, f) in &files {
        for old in &f.supersedes {
            if old != id {
                superseded_by.entry(*old).or_insert(*id);
            }
        }
    }
    let mut live = Vec::with_capacity(files.len());
    let mut superseded = Vec::new();
    for (id, f) in files {
        match superseded_by.get(&id) {
            Some(by) => superseded.push((id, *by)),
            None => live.push((id, f)),
        }
    }
    superseded.sort();
    Ok((
        IndexFiles {
            live,
            superseded,
            unreadable,
        },
        listed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::IndexPack;
    use crate::repo::lock::RepoLock;
    use crate::repo::save::{BlobSaver, SaveOptions};

    fn repo() -> Repository {
        crate::repo::test_repo()
    }

    /// One of each: a live index file and its pack, a pack no index lists,
    /// an indexed pack that is gone, an index file another supersedes, a
    /// damaged index file, a stray object in `data/`, and blobs indexed
    /// twice.
    #[test]
    fn every_kind_of_index_file_and_pack_is_told_apart() {
        let r = repo();
        let lock = RepoLock::acquire(&r, false).unwrap();
        let saver = BlobSaver::new(&r, lock.gate(), SaveOptions::for_repo(&r));
        // One blob: one pack (blobs are spread over two open packs).
        saver.save(BlobType::Data, b"one").unwrap();
        let done = saver.finish().unwrap();
        drop(lock);
        let [first] = done.packer.index_files[..] else {
            panic!("one index file expected")
        };
        let good = r.load_index_file(&first).unwrap();
        let pack = good.packs[0].id;
        let b = r.backend();

        // A pack no index file lists (its bytes are another pack's).
        let orphan = PackId::random();
        b.put(&pack_name(&orphan), &b.get(&pack_name(&pack)).unwrap())
            .unwrap();
        // An index file listing a pack that is not there, superseded by one
        // that lists the good pack again (so its blob is indexed twice).
        let gone = PackId::random();
        let old = r
            .save_index_file(&IndexFile {
                packs: vec![IndexPack {
                    id: gone,
                    blobs: good.packs[0].blobs.clone(),
                }],
                supersedes: vec![],
            })
            .unwrap();
        let newer = r
            .save_index_file(&IndexFile {
                packs: good.packs.clone(),
                supersedes: vec![old],
            })
            .unwrap();
        // An index file listing the missing pack, live.
        let lists_gone = r
            .save_index_file(&IndexFile {
                packs: vec![IndexPack {
                    id: gone,
                    blobs: vec![],
                }],
                supersedes: vec![],
            })
            .unwrap();
        // A damaged index file and a stray object.
        let damaged = IndexId::random();
        b.put(&crate::repo::index_name(&damaged), b"not sealed")
            .unwrap();
        b.put("data/00/README", b"hello").unwrap();

        let inv = Inventory::load(&r).unwrap();
        let mut live = vec![first, newer, lists_gone];
        live.sort();
        assert_eq!(inv.live, live);
        assert_eq!(inv.superseded, vec![(old, newer)]);
        assert_eq!(inv.unreadable.len(), 1);
        assert_eq!(inv.unreadable[0].0, damaged);
        assert_eq!(inv.unreadable[0].1.kind(), ErrorKind::Integrity);
        let mut all = vec![first, newer, lists_gone, old, damaged];
        all.sort();
        assert_eq!(inv.index_files(), all);
        assert_eq!(inv.missing(), vec![gone]);
        assert_eq!(inv.unindexed(), vec![orphan]);
        assert_eq!(inv.strays, vec!["data/00/README".to_string()]);
        assert_eq!(inv.duplicate_blobs(), 1);
        let mut indexed = vec![pack, gone];
        indexed.sort();
        assert_eq!(inv.indexed_packs(), indexed);
        assert_eq!(inv.indexed[&pack].blobs.len(), 2, "listed by two files");
        assert!(inv.indexed[&pack].first_listed.is_some());
        assert_eq!(inv.stored.len(), 2);
        assert_eq!(
            inv.stored_sizes()[&orphan],
            b.get(&pack_name(&pack)).unwrap().len() as u64
        );
        // The in-memory index follows the same rules: the superseded file's
        // entries are not used.
        let (files, _) = load_index_files(&r).unwrap();
        assert_eq!(files.live.len(), 3);
        assert_eq!(files.superseded, inv.superseded);
    }

    #[test]
    fn an_empty_repository_has_an_empty_inventory() {
        let inv = Inventory::load(&repo()).unwrap();
        assert!(inv.live.is_empty() && inv.indexed.is_empty() && inv.stored.is_empty());
        assert!(inv.missing().is_empty() && inv.unindexed().is_empty());
        assert_eq!(inv.duplicate_blobs(), 0);
    }
}
