//! Reading many blobs at once, planned by pack.
//!
//! Owns: turning a list of wanted blobs (with their index locations) into
//! as few ranged reads as their packs allow, running those reads with a
//! bounded number in flight, and handing each blob to the caller once it
//! is authenticated, decompressed and re-hashed against its ID — the same
//! checks as [`Repository::read_blob_at`]. Never touches: what the caller
//! does with the plaintext (restore writes it to files).
//!
//! Glossary:
//! - **wanted blob**: a blob the caller needs, with its [`Location`];
//! - **range**: one `get_range` of one pack covering one or more wanted
//!   blobs; neighbours are merged when the gap between them is below
//!   [`MAX_GAP`] and the range stays within [`MAX_RANGE`] (a blob larger
//!   than that is a range of its own). A pack most of whose blobs are
//!   wanted is thus read whole, in a request or two.
//!
//! Memory: each worker holds one range (at most [`MAX_RANGE`], or one
//! blob when a single blob is larger) and the plaintext of the blob it is
//! handing over, so `workers × (MAX_RANGE + largest blob)` bounds what is
//! in flight.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Repository, pack_name};
use crate::error::{Error, Result};
use crate::format::BlobType;
use crate::format::tree::{NodeKind, Tree};
use crate::id::{BlobId, PackId};
use crate::index::Location;

/// Wanted blobs of one pack closer than this are read in one request, the
/// bytes between them read and dropped: on loopback S3 a request costs
/// about as much as 256 KiB of transfer, over a WAN link far more.
pub const MAX_GAP: u64 = 256 << 10;

/// Longest range one request reads (unless one blob is longer): half a
/// default-sized pack, so a pack can be in flight on two connections.
pub const MAX_RANGE: u64 = 8 << 20;

/// Levels of directories [`Repository::prefetch_trees`] descends at most
/// (as deep as any walk goes: `ops::MAX_TREE_DEPTH`).
pub const MAX_PREFETCH_DEPTH: usize = 2048;

/// A blob the caller needs.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    /// Its type (for the authenticated data and messages).
    pub blob_type: BlobType,
    /// Its ID: the plaintext must hash to it.
    pub id: BlobId,
    /// Where the index says it is.
    pub loc: Location,
}

/// One ranged read of a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The pack.
    pub pack: PackId,
    /// Offset of the first byte read.
    pub offset: u64,
    /// Bytes read.
    pub len: u64,
    /// Indices (into the wanted list) of the blobs it covers, by offset.
    pub blobs: Vec<usize>,
}

/// Group `wanted` by pack and merge neighbours into ranges: blobs closer
/// than `max_gap` share a range as long as it stays within `max_range`.
/// Packs come in the order the caller first wants them, ranges of a pack
/// by offset.
pub fn plan(wanted: &[Wanted], max_gap: u64, max_range: u64) -> Vec<Range> {
    let mut first: HashMap<PackId, usize> = HashMap::new();
    for (i, w) in wanted.iter().enumerate() {
        first.entry(w.loc.pack).or_insert(i);
    }
    let mut order: Vec<usize> = (0..wanted.len()).collect();
    order.sort_by_key(|&i| (first[&wanted[i].loc.pack], wanted[i].loc.offset));
    let mut out: Vec<Range> = Vec::new();
    for i in order {
        let loc = &wanted[i].loc;
        let start = u64::from(loc.offset);
        let end = start + u64::from(loc.sealed_len);
        if let Some(r) = out.last_mut()
            && r.pack == loc.pack
            && start.saturating_sub(r.offset + r.len) < max_gap
            && end.max(r.offset + r.len) - r.offset <= max_range
        {
            r.len = end.max(r.offset + r.len) - r.offset;
            r.blobs.push(i);
            continue;
        }
        out.push(Range {
            pack: loc.pack,
            offset: start,
            len: end - start,
            blobs: vec![i],
        });
    }
    out
}

impl Repository {
    /// Read every blob of `wanted` by pack ([`plan`]), up to `workers`
    /// ranges in flight, and hand each to `deliver` with its index in
    /// `wanted`: its plaintext, authenticated and re-hashed against its ID,
    /// or the error that kept it (a failed read is an error for every blob
    /// of its range; a damaged blob only for itself). `deliver` runs on the
    /// worker threads, once per wanted blob, in no particular order.
    pub fn read_planned(
        &self,
        wanted: &[Wanted],
        workers: usize,
        deliver: &(dyn Fn(usize, Result<Vec<u8>>) + Sync),
    ) {
        let ranges = plan(wanted, MAX_GAP, MAX_RANGE);
        let next = AtomicUsize::new(0);
        let work = || {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = ranges.get(i) else { break };
                self.read_range(r, wanted, deliver);
            }
        };
        let workers = workers.clamp(1, ranges.len().max(1));
        if workers == 1 {
            work();
            return;
        }
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(work);
            }
        });
    }

    /// Fetch the directory trees below `root` into the local tree cache
    /// (a remote repository's; without one this does nothing), so that a
    /// walk of the snapshot then reads them locally. A level at a time:
    /// the trees of a level not cached yet name the packs to read, and
    /// every tree blob of those packs comes in one planned read
    /// ([`Repository::read_planned`]), as restic keeps whole tree packs:
    /// the trees a backup wrote lie in the same few packs, so a snapshot's
    /// trees usually arrive in two or three rounds of requests, not one
    /// round per level of directories (nor one request per directory).
    /// What is read beyond the snapshot's own trees is bounded by the tree
    /// blobs of the packs it touches, and stays cached for the next
    /// backup or restore. Stops below [`MAX_PREFETCH_DEPTH`] levels.
    /// Best effort: a tree that cannot be read here is left for the walk
    /// itself to report.
    pub fn prefetch_trees(&self, root: &BlobId, workers: usize) {
        let Some(cache) = &self.tree_cache else {
            return;
        };
        let cached = |id: &BlobId| cache.dir().join(super::tree_cache_name(id)).is_file();
        let subdirs = |t: &Tree| -> Vec<BlobId> {
            t.nodes
                .iter()
                .filter_map(|n| match &n.kind {
                    NodeKind::Dir { subtree } => Some(*subtree),
                    _ => None,
                })
                .collect()
        };
        // Subdirectories of the trees fetched and not yet visited.
        let fetched: Mutex<HashMap<BlobId, Vec<BlobId>>> = Mutex::new(HashMap::new());
        let mut packs_read: HashSet<PackId> = HashSet::new();
        let mut seen: HashSet<BlobId> = HashSet::from([*root]);
        let mut level = vec![*root];
        for _ in 0..MAX_PREFETCH_DEPTH {
            if level.is_empty() {
                break;
            }
            let mut next = Vec::new();
            let mut missing = Vec::new();
            let mut packs = HashSet::new();
            for id in level {
                let known = fetched
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if let Some(c) = known {
                    next.extend(c);
                } else if cached(&id) {
                    if let Ok(t) = self.load_tree(&id) {
                        next.extend(subdirs(&t));
                    }
                } else if let Ok(loc) = self.locate(BlobType::Tree, &id)
                    && !packs_read.contains(&loc.pack)
                {
                    packs.insert(loc.pack);
                    missing.push(id);
                }
            }
            if !packs.is_empty() {
                let wanted: Vec<Wanted> = self
                    .index
                    .iter(BlobType::Tree)
                    .filter(|(id, loc)| packs.contains(&loc.pack) && !cached(id))
                    .map(|(id, loc)| Wanted {
                        blob_type: BlobType::Tree,
                        id,
                        loc,
                    })
                    .collect();
                // Chunk-list blobs are tree blobs too (cached, useful to
                // the restore) but decode as no directory.
                self.read_planned(&wanted, workers, &|i, r| {
                    if let Ok(t) = r.and_then(|plain| Tree::from_bytes(&plain)) {
                        fetched
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(wanted[i].id, subdirs(&t));
                    }
                });
                packs_read.extend(packs);
                let mut f = fetched.lock().unwrap_or_else(|p| p.into_inner());
                for id in missing {
                    if let Some(c) = f.remove(&id) {
                        next.extend(c);
                    }
                }
            }
            level = next.into_iter().filter(|id| seen.insert(*id)).collect();
        }
    }

    /// One range: read, then open each of its blobs.
    fn read_range(
        &self,
        r: &Range,
        wanted: &[Wanted],
        deliver: &(dyn Fn(usize, Result<Vec<u8>>) + Sync),
    ) {
        let buf = match self.backend.get_range(&pack_name(&r.pack), r.offset, r.len) {
            Ok(b) => b,
            Err(e) => {
                for &i in &r.blobs {
                    deliver(i, Err(Error::new(e.kind(), e.to_string())));
                }
                return;
            }
        };
        for &i in &r.blobs {
            let w = &wanted[i];
            let start = (u64::from(w.loc.offset) - r.offset) as usize;
            let end = start + w.loc.sealed_len as usize;
            let Some(sealed) = buf.get(start..end) else {
                deliver(
                    i,
                    Err(Error::integrity(format!(
                        "pack {}: read {} bytes at {}, short of blob {}",
                        r.pack,
                        buf.len(),
                        r.offset,
                        w.id
                    ))),
                );
                continue;
            };
            let mut plain = sealed.to_vec();
            let cache = self
                .tree_cache
                .as_ref()
                .filter(|_| w.blob_type == BlobType::Tree);
            let res = self
                .open_blob(
                    w.blob_type,
                    &w.id,
                    w.loc.compression,
                    w.loc.raw_len,
                    &mut plain,
                )
                .and_then(|()| self.check_blob_id(w.blob_type, &w.id, &plain))
                .map_err(|e| e.context(format!("pack {}", r.pack)))
                .map(|()| plain);
            if let (Some(c), Ok(_)) = (cache, &res) {
                c.put(&super::tree_cache_name(&w.id), sealed);
            }
            deliver(i, res);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mem::{CountingBackend, MemBackend};
    use crate::format::Compression;

    fn w(pack: u8, offset: u32, len: u32) -> Wanted {
        Wanted {
            blob_type: BlobType::Data,
            id: BlobId([offset as u8; 32]),
            loc: Location {
                pack: PackId([pack; 32]),
                offset,
                sealed_len: len,
                raw_len: len,
                compression: Compression::None,
            },
        }
    }

    fn spans(r: &[Range]) -> Vec<(u8, u64, u64, Vec<usize>)> {
        r.iter()
            .map(|r| (r.pack.as_bytes()[0], r.offset, r.len, r.blobs.clone()))
            .collect()
    }

    #[test]
    fn neighbours_closer_than_the_gap_share_a_range_of_their_pack() {
        let wanted = [
            w(2, 1000, 100),
            w(1, 0, 10),
            w(2, 0, 100),
            w(1, 50, 10),
            // 90 bytes after the last: still merged with a gap of 100.
            w(2, 1190, 10),
            // 100 bytes after: a range of its own.
            w(2, 1300, 10),
        ];
        assert_eq!(
            spans(&plan(&wanted, 100, 1 << 20)),
            vec![
                (2, 0, 100, vec![2]),
                (2, 1000, 200, vec![0, 4]),
                (2, 1300, 10, vec![5]),
                (1, 0, 60, vec![1, 3]),
            ]
        );
    }

    #[test]
    fn ranges_stop_at_the_longest_read_but_a_larger_blob_is_read_whole() {
        let wanted = [w(1, 0, 40), w(1, 40, 40), w(1, 80, 40), w(1, 120, 500)];
        assert_eq!(
            spans(&plan(&wanted, 100, 100)),
            vec![
                (1, 0, 80, vec![0, 1]),
                (1, 80, 40, vec![2]),
                (1, 120, 500, vec![3])
            ]
        );
    }

    /// Store `n` small distinct data blobs in one run (one pack).
    fn store_small_blobs(repo: &mut Repository, n: usize, seed: u8) {
        let lock = crate::repo::lock::RepoLock::acquire(repo, false).unwrap();
        let saver = crate::repo::save::BlobSaver::new(
            repo,
            lock.gate(),
            crate::repo::save::SaveOptions::for_repo(repo),
        );
        for i in 0..n {
            let blob = format!("blob {seed} {i} of a pack with many small ones");
            saver.save(BlobType::Data, blob.as_bytes()).unwrap();
        }
        saver.finish().unwrap();
        drop(lock);
        repo.load_index().unwrap();
    }

    #[test]
    fn a_pack_header_and_its_trailer_come_in_one_request_unless_the_header_is_larger() {
        let counting = std::sync::Arc::new(CountingBackend::new(
            std::sync::Arc::new(MemBackend::new()),
            1,
        ));
        let mut repo = crate::repo::test_repo_on(counting.clone());
        // Packs of a few blobs: headers of a few hundred bytes; of about
        // 3000 (the saver fills two packs at once): about 126 KB, more than
        // is read ahead.
        store_small_blobs(&mut repo, 10, 1);
        store_small_blobs(&mut repo, 6000, 2);
        let mut seen = Vec::new();
        for (pack, size) in repo.list_packs().unwrap() {
            counting.take_counts();
            let entries = repo.load_pack_header(&pack, size).unwrap();
            let (reads, bytes) = counting.take_counts();
            seen.push((entries.len(), reads));
            assert!(bytes <= size, "{bytes} bytes of a {size}-byte pack");
        }
        assert!(seen.iter().any(|&(n, _)| n <= 10), "{seen:?}");
        assert!(seen.iter().any(|&(n, _)| n > 2000), "{seen:?}");
        let header = |n: usize| {
            5 + n * crate::format::pack::HEADER_ENTRY_LEN + crate::format::SEAL_OVERHEAD + 4
        };
        assert!(
            seen.iter().all(|&(n, reads)| reads
                == 1 + u64::from(header(n) as u64 > crate::repo::HEADER_READ_AHEAD)),
            "{seen:?}"
        );
    }

    #[test]
    fn a_blob_wanted_twice_is_read_once_and_delivered_twice() {
        let wanted = [w(1, 0, 40), w(1, 0, 40)];
        assert_eq!(
            spans(&plan(&wanted, MAX_GAP, MAX_RANGE)),
            vec![(1, 0, 40, vec![0, 1])]
        );
    }
}
