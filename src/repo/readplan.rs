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
//! Memory: a range is streamed ([`crate::backend::Backend::get_range_stream`])
//! and each blob handed over as soon as its last byte is in, so a worker
//! holds the piece the backend just handed over, the sealed bytes of the
//! blob being received and the plaintext of the blob it is handing over:
//! `workers × (piece + 2 × largest blob)`, however large the range (local
//! storage reads pieces of 1 MiB into a buffer each thread keeps; a
//! backend that cannot stream hands over a whole range at once: at most
//! [`MAX_RANGE`], or one larger blob).

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
/// default-sized pack, so a pack can be in flight on two connections and
/// its blobs opened on two threads as they arrive.
pub const MAX_RANGE: u64 = 8 << 20;

/// Ranges asked of the storage ahead of the ones being read
/// ([`crate::backend::Backend::will_read`]): with ranges of at most
/// [`MAX_RANGE`], up to 128 MiB that a cold local disk reads while the
/// workers open and hand over what came in.
pub const READ_AHEAD: usize = 16;

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
    // Each blob's key computed once (a pack lookup per comparison costs
    // more than the sort itself with hundreds of thousands of blobs).
    let mut order: Vec<(usize, u32, usize)> = wanted
        .iter()
        .enumerate()
        .map(|(i, w)| (first[&w.loc.pack], w.loc.offset, i))
        .collect();
    order.sort_unstable();
    let mut out: Vec<Range> = Vec::new();
    for (_, _, i) in order {
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
        let ahead = |i: usize| {
            let r = &ranges[i];
            self.backend()
                .will_read(&pack_name(&r.pack), r.offset, r.len);
        };
        in_flight_reading_ahead(ranges.len(), workers, READ_AHEAD, &ahead, &|i| {
            self.read_range(&ranges[i], wanted, deliver)
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

    /// One range, streamed ([`crate::backend::Backend::get_range_stream`]):
    /// each blob is opened and handed over as soon as its last byte has
    /// arrived, while the rest of the range is still on its way. A read
    /// that fails part-way is an error for the blobs not handed over yet.
    fn read_range(
        &self,
        r: &Range,
        wanted: &[Wanted],
        deliver: &(dyn Fn(usize, Result<Vec<u8>>) + Sync),
    ) {
        let spans: Vec<(u64, u64)> = r
            .blobs
            .iter()
            .map(|&i| {
                let start = u64::from(wanted[i].loc.offset);
                (start, start + u64::from(wanted[i].loc.sealed_len))
            })
            .collect();
        let mut cut = Cutter::new(r.offset, spans);
        let res =
            self.backend
                .get_range_stream(&pack_name(&r.pack), r.offset, r.len, &mut |piece| {
                    cut.feed(piece, &mut |k, sealed| {
                        let i = r.blobs[k];
                        deliver(i, self.open_planned(&wanted[i], &r.pack, sealed));
                    });
                    Ok(())
                });
        let left = cut.done()..r.blobs.len();
        if left.is_empty() {
            return;
        }
        let e = match res {
            Err(e) => e,
            Ok(()) => Error::integrity(format!(
                "pack {}: read {} bytes at {}, short of its blobs",
                r.pack,
                cut.read(),
                r.offset
            )),
        };
        for k in left {
            deliver(r.blobs[k], Err(Error::new(e.kind(), e.to_string())));
        }
    }

    /// Open one sealed blob of a planned read: authenticate, decompress,
    /// re-hash against its ID; a tree blob is also kept in the local tree
    /// cache.
    fn open_planned(&self, w: &Wanted, pack: &PackId, sealed: &[u8]) -> Result<Vec<u8>> {
        let mut plain = sealed.to_vec();
        let res = self
            .open_blob(
                w.blob_type,
                &w.id,
                w.loc.compression,
                w.loc.raw_len,
                &mut plain,
            )
            .and_then(|()| self.check_blob_id(w.blob_type, &w.id, &plain))
            .map_err(|e| e.context(format!("pack {pack}")));
        if res.is_ok()
            && w.blob_type == BlobType::Tree
            && let Some(c) = &self.tree_cache
        {
            c.put(&super::tree_cache_name(&w.id), sealed);
        }
        res.map(|()| plain)
    }
}

/// Run `work(i)` for every `i` below `count`, on up to `workers` threads
/// (each taking the next `i` when it is done with one): how planned reads
/// keep up to `--connections` requests in flight.
pub fn in_flight(count: usize, workers: usize, work: &(dyn Fn(usize) + Sync)) {
    in_flight_reading_ahead(count, workers, 0, &|_| {}, work)
}

/// [`in_flight`], announcing each `i` with `ahead(i)` (a read-ahead hint)
/// `depth` items before it is worked on: the first `depth` at the start,
/// then `i + depth` as each `i` is taken. Every item is announced once,
/// before its work begins.
pub fn in_flight_reading_ahead(
    count: usize,
    workers: usize,
    depth: usize,
    ahead: &(dyn Fn(usize) + Sync),
    work: &(dyn Fn(usize) + Sync),
) {
    for i in 0..depth.min(count) {
        ahead(i);
    }
    let next = AtomicUsize::new(0);
    let run = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= count {
                break;
            }
            if depth > 0 && i + depth < count {
                ahead(i + depth);
            }
            work(i);
        }
    };
    let workers = workers.clamp(1, count.max(1));
    if workers == 1 {
        run();
        return;
    }
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(run);
        }
    });
}

/// Requests in flight for planned reads of `repo`: its backend's
/// connections, or one per core when it takes fewer (each worker also
/// opens, checks and hands over what it read).
pub fn read_workers(repo: &Repository) -> usize {
    repo.backend()
        .preferred_writers()
        .max(std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Cuts the bytes of one range, arriving in pieces, into its blobs: keeps
/// the bytes of the blob being received (and of any later blob that
/// overlaps it, a blob wanted twice), skips the gaps between blobs.
struct Cutter {
    /// Each blob's (first byte, end), by first byte.
    spans: Vec<(u64, u64)>,
    /// Blobs handed over.
    next: usize,
    /// Offset of the next byte to arrive.
    pos: u64,
    /// Bytes from `kept_from` to `pos`, while a blob is being received.
    kept: Vec<u8>,
    kept_from: u64,
    /// Bytes received.
    read: u64,
}

impl Cutter {
    fn new(offset: u64, spans: Vec<(u64, u64)>) -> Self {
        Cutter {
            spans,
            next: 0,
            pos: offset,
            kept: Vec::new(),
            kept_from: offset,
            read: 0,
        }
    }

    /// Take the next piece; `out` gets each blob (its index in the spans,
    /// its bytes) once its last byte is in.
    fn feed(&mut self, mut piece: &[u8], out: &mut dyn FnMut(usize, &[u8])) {
        self.read += piece.len() as u64;
        while !piece.is_empty() && self.next < self.spans.len() {
            let (start, end) = self.spans[self.next];
            if self.kept.is_empty() {
                if self.pos < start {
                    let skip = (start - self.pos).min(piece.len() as u64);
                    piece = &piece[skip as usize..];
                    self.pos += skip;
                    continue;
                }
                self.kept_from = self.pos;
            }
            let take = (end.saturating_sub(self.pos)).min(piece.len() as u64) as usize;
            self.kept.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            self.pos += take as u64;
            while let Some(&(start, end)) = self.spans.get(self.next)
                && end <= self.pos
            {
                let at = (start - self.kept_from) as usize;
                out(self.next, &self.kept[at..at + (end - start) as usize]);
                self.next += 1;
                match self.spans.get(self.next) {
                    Some(&(next, _)) if next < self.pos => {
                        self.kept.drain(..(next - self.kept_from) as usize);
                        self.kept_from = next;
                    }
                    _ => self.kept.clear(),
                }
            }
        }
    }

    /// Blobs handed over so far.
    fn done(&self) -> usize {
        self.next
    }

    /// Bytes received so far.
    fn read(&self) -> u64 {
        self.read
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
    fn planned_reads_announce_each_item_once_and_before_its_work() {
        for (count, workers, depth) in [(0, 1, 4), (3, 1, 16), (40, 1, 4), (40, 2, 4), (40, 4, 16)]
        {
            let log = Mutex::new(Vec::new());
            in_flight_reading_ahead(
                count,
                workers,
                depth,
                &|i| log.lock().unwrap().push(('a', i)),
                &|i| log.lock().unwrap().push(('w', i)),
            );
            let log = log.into_inner().unwrap();
            for i in 0..count {
                let a: Vec<usize> = (0..log.len()).filter(|&k| log[k] == ('a', i)).collect();
                let w: Vec<usize> = (0..log.len()).filter(|&k| log[k] == ('w', i)).collect();
                assert_eq!((a.len(), w.len()), (1, 1), "item {i} of {count}");
                assert!(a[0] < w[0], "item {i} announced after its work began");
            }
            if workers == 1 {
                // One worker: announced exactly `depth` items ahead.
                for (k, e) in log.iter().enumerate().filter(|(_, e)| e.0 == 'w') {
                    let announced = log[..k].iter().filter(|e| e.0 == 'a').count();
                    assert_eq!(announced, (e.1 + depth + 1).min(count), "{log:?}");
                }
            }
        }
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

    /// Feed `data` (a range from offset 100) to a cutter in pieces of
    /// `piece` bytes; what it hands over, in order.
    fn cut(spans: &[(u64, u64)], data: &[u8], piece: usize) -> Vec<(usize, Vec<u8>)> {
        let mut c = Cutter::new(100, spans.to_vec());
        let mut out = Vec::new();
        for p in data.chunks(piece) {
            c.feed(p, &mut |k, b| out.push((k, b.to_vec())));
        }
        assert_eq!(c.read(), data.len() as u64);
        out
    }

    #[test]
    fn a_streamed_range_is_cut_into_its_blobs_whatever_the_pieces() {
        let data: Vec<u8> = (0..200u8).collect();
        let at = |a: u64, b: u64| data[(a - 100) as usize..(b - 100) as usize].to_vec();
        // A blob at the start, a gap, two neighbours, a blob wanted twice,
        // one overlapping it, and (left out at first) one whose last bytes
        // never arrive.
        let spans = [
            (100, 110),
            (130, 140),
            (140, 175),
            (150, 160),
            (150, 160),
            (155, 170),
            (180, 320),
        ];
        let want: Vec<(usize, Vec<u8>)> = vec![
            (0, at(100, 110)),
            (1, at(130, 140)),
            (2, at(140, 175)),
            (3, at(150, 160)),
            (4, at(150, 160)),
            (5, at(155, 170)),
        ];
        for piece in [1, 2, 3, 7, 10, 64, 200] {
            let mut got = cut(&spans[..6], &data, piece);
            // Blobs come out as their last byte arrives: 3, 4 and 5 end
            // before 2 does.
            got.sort();
            assert_eq!(got, want, "pieces of {piece}");
        }
        // The last blob never completes: 20 bytes of it are missing, and
        // the cutter says how far it got.
        let mut c = Cutter::new(100, spans.to_vec());
        c.feed(&data, &mut |_, _| {});
        assert_eq!((c.done(), c.read()), (6, 200));
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
