//! Gathering a file's small blobs into large writes.
//!
//! A database captured page by page is one 4 KiB blob a page, and its
//! pages arrive in no useful order: the packer spreads a file's blobs over
//! two packs being filled at once and shuffles each pack (FORMAT.md §8).
//! Written one `pwrite` each, the 836 MiB benchmark database costs 214 000
//! system calls, two threads contending for the file's lock, and ext4
//! extent work for every out-of-order page: about 1.5 s of system time
//! more than writing the same bytes in 1 MiB pieces.
//!
//! So a file restored through one held handle plans its small blobs by
//! **region**: the blobs that start in the same [`REGION`]-aligned stretch
//! of the file. The first blob of a region to arrive allocates the
//! region's buffer, each blob is copied to its place, and the blob that
//! completes the region has the caller write the whole buffer at once.
//! Buffers held at once across the restore are bounded by a [`Budget`]
//! ([`BUDGET`]); a region that starts when the budget is spent is written
//! blob by blob, as before, so memory stays bounded whatever the order of
//! arrival. Owns: the bookkeeping; never touches: files (the caller
//! writes).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Width of a region: blobs starting in the same aligned stretch of this
/// many bytes are written together.
pub const REGION: u64 = 1 << 20;

/// Blobs at most this long are gathered; longer ones are written as they
/// come (one `pwrite` of a large blob costs little).
pub const SMALL: u32 = 64 << 10;

/// Bytes gathered at once over a whole restore. The pages of a first
/// capture's 64 MiB of file lie in two packs read one after the other,
/// each pack spread over all of it: 64 MiB gathers nearly every page of
/// such a database; beyond it regions are written blob by blob.
pub const BUDGET: usize = 64 << 20;

/// Longest region buffer: a region's blobs start within [`REGION`] bytes
/// of its first, and each is at most [`SMALL`].
const BUFFER: usize = REGION as usize + SMALL as usize;

/// The gathering buffers' shared allowance, and the buffers given back,
/// kept for the next region: a buffer is allocated once and reused, so
/// the allocator is not left with a heap of freed megabytes.
#[derive(Debug)]
pub struct Budget {
    /// Buffers that may still be allocated.
    left: Mutex<(usize, Vec<Vec<u8>>)>,
}

impl Budget {
    /// An allowance of `bytes` (whole buffers of [`BUFFER`] bytes).
    pub fn new(bytes: usize) -> Budget {
        Budget {
            left: Mutex::new((bytes / BUFFER, Vec::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, Vec<Vec<u8>>)> {
        self.left.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A zeroed buffer of `len` bytes, if the allowance has one left.
    fn take(&self, len: usize) -> Option<Vec<u8>> {
        let mut buf = {
            let mut l = self.lock();
            if l.0 == 0 {
                return None;
            }
            l.0 -= 1;
            l.1.pop()
        }
        .unwrap_or_else(|| Vec::with_capacity(BUFFER));
        buf.clear();
        buf.resize(len, 0);
        Some(buf)
    }

    /// Give a buffer back (it was written or dropped).
    pub fn give(&self, buf: Vec<u8>) {
        let mut l = self.lock();
        l.0 += 1;
        if buf.capacity() >= BUFFER {
            l.1.push(buf);
        }
    }

    /// Buffers not taken.
    #[cfg(test)]
    pub fn left(&self) -> usize {
        self.lock().0
    }
}

#[derive(Debug)]
enum State {
    /// No blob arrived yet.
    Waiting,
    /// Blobs are being copied in.
    Gathering(Vec<u8>),
    /// Written blob by blob (the budget was spent when it started), or
    /// already written.
    Direct,
}

/// A run of small blobs, each starting where the one before ends.
#[derive(Debug)]
struct Region {
    /// End of its last blob (its first starts at its key).
    end: u64,
    /// Blobs still to come.
    left: u32,
    state: State,
}

/// What the caller does with a blob it handed to [`Regions::put`].
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    /// Copied into its region's buffer: nothing to write yet.
    Gathered,
    /// It completed its region: write these bytes at this offset, then
    /// give the buffer back to the budget.
    Write(u64, Vec<u8>),
    /// Not gathered: write the blob itself.
    Direct,
}

/// One file's regions of small blobs, by first byte.
#[derive(Debug, Default)]
pub struct Regions {
    by_start: BTreeMap<u64, Region>,
}

impl Regions {
    /// Plan the regions of a file from its blobs' (offset, length). A
    /// region is a run of small blobs that tile it exactly (each starts
    /// where the one before ends) and start within [`REGION`] bytes of its
    /// first: a large blob, or anything else between two small ones, ends
    /// the run, so a region's write never covers bytes of another blob.
    pub fn plan(blobs: impl IntoIterator<Item = (u64, u32)>) -> Regions {
        let mut blobs: Vec<(u64, u32)> = blobs.into_iter().collect();
        blobs.sort_unstable();
        let mut by_start = BTreeMap::new();
        let mut run: Option<(u64, Region)> = None;
        for (at, len) in blobs {
            let small = len > 0 && len <= SMALL;
            if let Some((start, r)) = &mut run
                && small
                && at == r.end
                && at < *start + REGION
            {
                r.end += u64::from(len);
                r.left += 1;
                continue;
            }
            if let Some((start, r)) = run.take() {
                by_start.insert(start, r);
            }
            if small {
                run = Some((
                    at,
                    Region {
                        end: at + u64::from(len),
                        left: 1,
                        state: State::Waiting,
                    },
                ));
            }
        }
        if let Some((start, r)) = run {
            by_start.insert(start, r);
        }
        Regions { by_start }
    }

    /// A blob of `data` arrived for offset `at`.
    pub fn put(&mut self, at: u64, data: &[u8], budget: &Budget) -> Put {
        let Some((&start, r)) = self.by_start.range_mut(..=at).next_back() else {
            return Put::Direct;
        };
        let end = at + data.len() as u64;
        if data.len() > SMALL as usize || end > r.end || r.left == 0 {
            return Put::Direct;
        }
        r.left -= 1;
        if matches!(r.state, State::Waiting) {
            r.state = match (r.left > 0)
                .then(|| budget.take((r.end - start) as usize))
                .flatten()
            {
                Some(buf) => State::Gathering(buf),
                None => State::Direct,
            };
        }
        let State::Gathering(buf) = &mut r.state else {
            return Put::Direct;
        };
        let from = (at - start) as usize;
        buf[from..from + data.len()].copy_from_slice(data);
        if r.left > 0 {
            return Put::Gathered;
        }
        match std::mem::replace(&mut r.state, State::Direct) {
            State::Gathering(buf) => Put::Write(start, buf),
            _ => Put::Direct,
        }
    }

    /// Drop every buffer (the file failed), giving them back.
    pub fn release(&mut self, budget: &Budget) {
        for r in self.by_start.values_mut() {
            if let State::Gathering(buf) = std::mem::replace(&mut r.state, State::Direct) {
                budget.give(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `pages` 4 KiB pages, each filled with its number.
    fn page(k: u64) -> Vec<u8> {
        vec![(k % 251) as u8; 4096]
    }

    /// Feed the pages in `order`, applying writes to `file` as the caller
    /// would; returns the number of writes made.
    fn feed(regions: &mut Regions, order: &[u64], budget: &Budget, file: &mut [u8]) -> usize {
        let mut writes = 0;
        for &k in order {
            let data = page(k);
            let at = k * 4096;
            match regions.put(at, &data, budget) {
                Put::Gathered => {}
                Put::Write(start, buf) => {
                    file[start as usize..start as usize + buf.len()].copy_from_slice(&buf);
                    budget.give(buf);
                    writes += 1;
                }
                Put::Direct => {
                    file[at as usize..at as usize + 4096].copy_from_slice(&data);
                    writes += 1;
                }
            }
        }
        writes
    }

    fn shuffled(n: u64, seed: u64) -> Vec<u64> {
        let mut v: Vec<u64> = (0..n).collect();
        let mut s = seed;
        for i in (1..v.len()).rev() {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            v.swap(i, (s >> 33) as usize % (i + 1));
        }
        v
    }

    #[test]
    fn shuffled_pages_are_written_one_region_at_a_time_and_exactly() {
        let pages = 1000u64; // 3.9 MiB: four regions
        let mut regions = Regions::plan((0..pages).map(|k| (k * 4096, 4096)));
        let budget = Budget::new(BUDGET);
        let mut file = vec![0u8; (pages * 4096) as usize];
        let writes = feed(&mut regions, &shuffled(pages, 7), &budget, &mut file);
        assert_eq!(writes, 4, "one write a region");
        assert_eq!(budget.left(), BUDGET / BUFFER, "every buffer given back");
        for k in 0..pages {
            assert_eq!(file[(k * 4096) as usize..][..4096], page(k)[..], "page {k}");
        }
    }

    #[test]
    fn a_spent_budget_writes_new_regions_blob_by_blob_and_loses_nothing() {
        let pages = 1000u64;
        let mut regions = Regions::plan((0..pages).map(|k| (k * 4096, 4096)));
        // Room for one region's buffer only.
        let budget = Budget::new(BUFFER);
        let mut file = vec![0u8; (pages * 4096) as usize];
        let order = shuffled(pages, 11);
        let writes = feed(&mut regions, &order, &budget, &mut file);
        assert!(writes > 4 && writes < pages as usize, "{writes} writes");
        assert_eq!(budget.left(), 1);
        for k in 0..pages {
            assert_eq!(file[(k * 4096) as usize..][..4096], page(k)[..], "page {k}");
        }
    }

    #[test]
    fn a_failed_file_gives_its_buffers_back() {
        let mut regions = Regions::plan((0..600u64).map(|k| (k * 4096, 4096)));
        let budget = Budget::new(BUDGET);
        let mut file = vec![0u8; 600 * 4096];
        // Half the pages of both regions, then the file fails.
        let order: Vec<u64> = (0..600).step_by(2).collect();
        assert_eq!(feed(&mut regions, &order, &budget, &mut file), 0);
        assert_eq!(budget.left(), BUDGET / BUFFER - 3);
        regions.release(&budget);
        assert_eq!(budget.left(), BUDGET / BUFFER);
    }

    #[test]
    fn large_blobs_unknown_offsets_and_a_blob_used_twice_are_handled() {
        // A large blob is never gathered; a page used at two offsets
        // counts at both; an offset the plan does not list is direct.
        let blobs = [(0u64, 4096u32), (4096, 4096), (8192, 1 << 20)];
        let mut regions = Regions::plan(blobs);
        let budget = Budget::new(BUDGET);
        assert_eq!(regions.put(8192, &vec![1u8; 1 << 20], &budget), Put::Direct);
        assert_eq!(regions.put(1 << 30, &[1u8; 4096], &budget), Put::Direct);
        assert_eq!(regions.put(4096, &[2u8; 4096], &budget), Put::Gathered);
        match regions.put(0, &[3u8; 4096], &budget) {
            Put::Write(0, buf) => {
                assert_eq!(buf.len(), 8192);
                assert!(buf[..4096].iter().all(|&b| b == 3));
                assert!(buf[4096..].iter().all(|&b| b == 2));
            }
            other => panic!("{other:?}"),
        }
        // The region is done: a surplus arrival is written as it is.
        assert_eq!(regions.put(0, &[3u8; 4096], &budget), Put::Direct);
    }

    #[test]
    fn a_large_blob_between_small_ones_ends_the_region_and_is_never_overwritten() {
        // small, small, large, small, small: all within one aligned
        // megabyte. The two runs of small blobs are two regions; the
        // large blob's bytes are the caller's alone.
        let blobs = [
            (0u64, 4096u32),
            (4096, 4096),
            (8192, 100_000),
            (108_192, 4096),
            (112_288, 4096),
        ];
        let mut regions = Regions::plan(blobs);
        let budget = Budget::new(BUDGET);
        let mut file = vec![0u8; 116_384];
        let mut put =
            |at: u64, data: Vec<u8>, file: &mut Vec<u8>| match regions.put(at, &data, &budget) {
                Put::Gathered => {}
                Put::Write(start, buf) => {
                    file[start as usize..start as usize + buf.len()].copy_from_slice(&buf);
                    budget.give(buf);
                }
                Put::Direct => file[at as usize..at as usize + data.len()].copy_from_slice(&data),
            };
        put(8192, vec![9; 100_000], &mut file);
        put(112_288, vec![4; 4096], &mut file);
        put(0, vec![1; 4096], &mut file);
        put(4096, vec![2; 4096], &mut file);
        put(108_192, vec![3; 4096], &mut file);
        let want: Vec<u8> = [
            vec![1; 4096],
            vec![2; 4096],
            vec![9; 100_000],
            vec![3; 4096],
            vec![4; 4096],
        ]
        .concat();
        assert!(file == want, "a region's write covered another blob");
        assert_eq!(budget.left(), BUDGET / BUFFER);
    }
}
