//! The in-memory blob index: blob ID → (pack, offset, lengths).
//!
//! Owns: a compact lookup structure and nothing else. Each blob costs one
//! 48-byte [`Entry`] in a sorted array, plus a radix table of `u32` offsets
//! sized to about one slot per 16 entries (≈ 0.25 bytes per entry), plus 32
//! bytes per *pack* for the pack ID table (≈ 2 bytes per entry with 1 MiB
//! chunks in 16 MiB packs, far less for small files). Data and tree blobs live in
//! separate tables, so the type costs no space. Never touches: I/O, keys.

use std::collections::HashMap;

use crate::format::index::IndexBlob;
use crate::format::{BlobType, Compression};
use crate::id::{BlobId, PackId};

/// High bit of [`Entry::pack`]: the blob is zstd-compressed.
const ZSTD_FLAG: u32 = 1 << 31;
/// Most packs one index can address (31 bits).
pub const MAX_PACKS: usize = (1 << 31) - 1;

/// One indexed blob: exactly 48 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Entry {
    /// The blob ID.
    pub id: [u8; 32],
    /// Pack number (index into the pack table) plus the compression flag.
    pack: u32,
    /// Offset of the sealed box in the pack.
    pub offset: u32,
    /// Length of the sealed box.
    pub sealed_len: u32,
    /// Plaintext length.
    pub raw_len: u32,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 48);

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The pack holding it.
    pub pack: PackId,
    /// Offset of the sealed box.
    pub offset: u32,
    /// Length of the sealed box.
    pub sealed_len: u32,
    /// Plaintext length.
    pub raw_len: u32,
    /// Compression of the plaintext.
    pub compression: Compression,
}

/// Merge the sorted `new` into the sorted `entries` in place, working from
/// the back so no second copy of the table is needed (loading many index
/// files stays linear, not a full re-sort per file).
fn merge_sorted_tail(entries: &mut Vec<Entry>, new: &[Entry]) {
    let m = entries.len();
    if new.is_empty() {
        return;
    }
    entries.reserve_exact(new.len());
    entries.extend_from_slice(new);
    if m == 0 || entries[m - 1].id <= new[0].id {
        return;
    }
    let (mut i, mut j, mut k) = (m, new.len(), m + new.len());
    while j > 0 {
        k -= 1;
        if i > 0 && entries[i - 1].id > new[j - 1].id {
            entries[k] = entries[i - 1];
            i -= 1;
        } else {
            entries[k] = new[j - 1];
            j -= 1;
        }
    }
}

#[derive(Default)]
struct Table {
    /// Sorted by ID, unique.
    entries: Vec<Entry>,
    /// `buckets[b]..buckets[b+1]` is the range of entries whose ID starts
    /// with the `bits`-bit prefix `b`.
    buckets: Vec<u32>,
    bits: u32,
    /// Added since the last `finalize`, not yet sorted in.
    pending: HashMap<BlobId, Entry>,
}

impl Table {
    fn prefix(id: &[u8; 32], bits: u32) -> usize {
        if bits == 0 {
            return 0;
        }
        let p = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        (p >> (32 - bits)) as usize
    }

    fn finalize(&mut self) {
        if !self.pending.is_empty() {
            let mut new: Vec<Entry> = self.pending.drain().map(|(_, e)| e).collect();
            self.pending = HashMap::new();
            new.sort_unstable_by_key(|e| e.id);
            merge_sorted_tail(&mut self.entries, &new);
            self.entries.dedup_by(|a, b| a.id == b.id);
        }
        self.entries.shrink_to_fit();
        let n = self.entries.len();
        // About 16 entries per bucket; at most 2^24 buckets.
        self.bits = if n < 32 {
            0
        } else {
            (usize::BITS - n.leading_zeros() - 1)
                .saturating_sub(4)
                .min(24)
        };
        let nb = 1usize << self.bits;
        let mut buckets = vec![0u32; nb + 1];
        let mut i = 0usize;
        for (b, slot) in buckets.iter_mut().enumerate().take(nb) {
            *slot = i as u32;
            while i < n && Self::prefix(&self.entries[i].id, self.bits) == b {
                i += 1;
            }
        }
        buckets[nb] = n as u32;
        self.buckets = buckets;
    }

    fn get(&self, id: &BlobId) -> Option<&Entry> {
        if !self.buckets.is_empty() {
            let b = Self::prefix(id.as_bytes(), self.bits);
            let range = self.buckets[b] as usize..self.buckets[b + 1] as usize;
            let slice = &self.entries[range];
            if let Ok(i) = slice.binary_search_by(|e| e.id.cmp(id.as_bytes())) {
                return Some(&slice[i]);
            }
        }
        self.pending.get(id)
    }

    fn len(&self) -> usize {
        self.entries.len() + self.pending.len()
    }

    fn memory_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.buckets.capacity() * 4
            + self.pending.capacity() * (32 + std::mem::size_of::<Entry>() + 8)
    }
}

/// The index of every blob in a repository.
#[derive(Default)]
pub struct Index {
    packs: Vec<PackId>,
    pack_numbers: HashMap<PackId, u32>,
    data: Table,
    trees: Table,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    fn pack_number(&mut self, pack: PackId) -> u32 {
        if let Some(&n) = self.pack_numbers.get(&pack) {
            return n;
        }
        let n = self.packs.len() as u32;
        self.packs.push(pack);
        self.pack_numbers.insert(pack, n);
        n
    }

    /// Add every blob of one pack. Call [`Index::finalize`] after a batch
    /// of additions for fast lookups (lookups work before, more slowly).
    pub fn add_pack(&mut self, pack: PackId, blobs: &[IndexBlob]) {
        if self.packs.len() >= MAX_PACKS {
            return;
        }
        let n = self.pack_number(pack);
        for b in blobs {
            let flag = if b.compression == Compression::Zstd {
                ZSTD_FLAG
            } else {
                0
            };
            let e = Entry {
                id: *b.id.as_bytes(),
                pack: n | flag,
                offset: b.offset,
                sealed_len: b.sealed_len,
                raw_len: b.raw_len,
            };
            let table = self.table_mut(b.blob_type);
            if table.get(&b.id).is_none() {
                table.pending.insert(b.id, e);
            }
        }
    }

    /// Sort pending additions in. Idempotent.
    pub fn finalize(&mut self) {
        self.data.finalize();
        self.trees.finalize();
        self.packs.shrink_to_fit();
        // The reverse map is only needed while adding; a pack seen again
        // later just gets a second number.
        self.pack_numbers = HashMap::new();
    }

    fn table(&self, t: BlobType) -> &Table {
        match t {
            BlobType::Data => &self.data,
            BlobType::Tree => &self.trees,
        }
    }

    fn table_mut(&mut self, t: BlobType) -> &mut Table {
        match t {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.trees,
        }
    }

    /// Every pack that holds an indexed blob (a pack may appear twice).
    pub fn packs(&self) -> &[PackId] {
        &self.packs
    }

    /// Where a blob is stored, if indexed.
    pub fn get(&self, t: BlobType, id: &BlobId) -> Option<Location> {
        let e = self.table(t).get(id)?;
        let pack = *self.packs.get((e.pack & !ZSTD_FLAG) as usize)?;
        Some(Location {
            pack,
            offset: e.offset,
            sealed_len: e.sealed_len,
            raw_len: e.raw_len,
            compression: if e.pack & ZSTD_FLAG != 0 {
                Compression::Zstd
            } else {
                Compression::None
            },
        })
    }

    /// True if the blob is indexed.
    pub fn contains(&self, t: BlobType, id: &BlobId) -> bool {
        self.table(t).get(id).is_some()
    }

    /// Number of indexed blobs of type `t`.
    pub fn len(&self, t: BlobType) -> usize {
        self.table(t).len()
    }

    /// True if nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.data.len() == 0 && self.trees.len() == 0
    }

    /// Number of packs referenced.
    pub fn pack_count(&self) -> usize {
        self.packs.len()
    }

    /// Heap bytes held by the index (entries, radix tables, pack table).
    pub fn memory_bytes(&self) -> usize {
        self.data.memory_bytes()
            + self.trees.memory_bytes()
            + self.packs.capacity() * 32
            + self.pack_numbers.capacity() * (32 + 4 + 8)
    }

    /// Every blob of type `t`, with its location (sorted by ID after
    /// `finalize`).
    pub fn iter(&self, t: BlobType) -> impl Iterator<Item = (BlobId, Location)> + '_ {
        let table = self.table(t);
        table
            .entries
            .iter()
            .chain(table.pending.values())
            .filter_map(move |e| {
                let id = BlobId(e.id);
                self.get(t, &id).map(|l| (id, l))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(i: u32, t: BlobType) -> IndexBlob {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
        id[4..8].copy_from_slice(&i.to_le_bytes());
        IndexBlob {
            blob_type: t,
            compression: if i % 2 == 0 {
                Compression::Zstd
            } else {
                Compression::None
            },
            id: BlobId(id),
            offset: i,
            sealed_len: 100 + i,
            raw_len: 60 + i,
        }
    }

    #[test]
    fn lookups_before_and_after_finalize() {
        for n in [0u32, 1, 31, 32, 33, 1000, 20_000] {
            let mut idx = Index::new();
            let blobs: Vec<_> = (0..n).map(|i| blob(i, BlobType::Data)).collect();
            idx.add_pack(PackId([1; 32]), &blobs);
            idx.add_pack(PackId([2; 32]), &[blob(n + 1, BlobType::Tree)]);
            for pass in 0..2 {
                for b in &blobs {
                    let l = idx.get(BlobType::Data, &b.id).unwrap();
                    assert_eq!(l.offset, b.offset, "n={n} pass={pass}");
                    assert_eq!(l.compression, b.compression);
                    assert_eq!(l.pack, PackId([1; 32]));
                    assert!(!idx.contains(BlobType::Tree, &b.id));
                }
                assert!(idx.contains(BlobType::Tree, &blob(n + 1, BlobType::Tree).id));
                assert!(!idx.contains(BlobType::Data, &blob(n + 5, BlobType::Data).id));
                idx.finalize();
            }
            assert_eq!(idx.len(BlobType::Data), n as usize);
            assert_eq!(idx.iter(BlobType::Data).count(), n as usize);
        }
    }

    #[test]
    fn interleaved_batches_merge_into_one_sorted_table() {
        let mut idx = Index::new();
        let blobs: Vec<_> = (0..5000).map(|i| blob(i, BlobType::Data)).collect();
        for batch in 0..5 {
            let part: Vec<_> = blobs.iter().skip(batch).step_by(5).copied().collect();
            idx.add_pack(PackId([batch as u8; 32]), &part);
            idx.finalize();
        }
        let ids: Vec<[u8; 32]> = idx.data.entries.iter().map(|e| e.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        assert_eq!(ids.len(), 5000);
        for b in &blobs {
            assert!(idx.contains(BlobType::Data, &b.id));
        }
    }

    #[test]
    fn duplicates_keep_one_entry() {
        let mut idx = Index::new();
        idx.add_pack(PackId([1; 32]), &[blob(1, BlobType::Data)]);
        idx.finalize();
        idx.add_pack(PackId([2; 32]), &[blob(1, BlobType::Data)]);
        idx.finalize();
        assert_eq!(idx.len(BlobType::Data), 1);
    }

    #[test]
    fn memory_per_entry_is_about_48_bytes() {
        let mut idx = Index::new();
        let n = 100_000u32;
        let blobs: Vec<_> = (0..n).map(|i| blob(i, BlobType::Data)).collect();
        for chunk in blobs.chunks(1000) {
            idx.add_pack(PackId::random(), chunk);
        }
        idx.finalize();
        let per_entry = idx.memory_bytes() as f64 / f64::from(n);
        // 48 bytes of entry, 0.25 of radix table, 32/1000 of pack IDs and
        // the pack-number map (~ 0.1): well under 49.
        assert!(per_entry < 49.0, "{per_entry} bytes per entry");
    }
}
