//! Chunk-list trees: a long list of a file's data blob IDs stored as a tree
//! of ID-list blobs (FORMAT.md §5.8), so that an unchanged range of a huge
//! file produces the same list blobs in every snapshot and dedups.
//!
//! Owns: the ID-list record's byte layout, the content-defined boundary rule
//! over a list of IDs, and the builder that turns a list into a tree through
//! a caller's store function. Never touches: I/O, backends, keys (the
//! caller's store function hashes, seals and packs; `repo::chunklist` reads).
//!
//! Glossary: an **ID-list blob** holds 1 ..= [`MAX_LIST_IDS`] IDs and its
//! **level**: level 0 names data blobs, level *l* names ID-list blobs of
//! level *l − 1*. A file entry holds the **top list** and the tree's
//! **height** (the top list names blobs of level `height − 1`).

use super::tree::FileContent;
use super::wire::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::{BlobId, ID_LEN};

const RECORD: &str = "ID-list blob";

/// First byte of every ID-list blob. Never a tree node's version byte, so a
/// list blob is never mistaken for a directory (or the reverse).
pub const LIST_TAG: u8 = 0xC1;

/// A list of at most this many IDs stays inline in the file's entry (node
/// kind 1, 2 KiB); a longer one becomes a tree, built up until a level has
/// at most this many IDs, which is then the entry's top list.
pub const MAX_INLINE_IDS: usize = 64;

/// A boundary is never placed before an ID-list blob holds this many IDs.
pub const MIN_LIST_IDS: usize = 4;

/// An ID-list blob is cut after this many IDs whatever the IDs are; readers
/// reject longer lists (and top lists).
pub const MAX_LIST_IDS: usize = 256;

/// A cut follows an ID whose first four bytes, read as a little-endian
/// `u32`, have their low `BOUNDARY_BITS` bits all zero (probability 1/16),
/// once the list holds [`MIN_LIST_IDS`] IDs: an average of about
/// `MIN_LIST_IDS - 1 + 16 = 19` IDs (612 bytes) per list blob. Smaller lists
/// make a scattered change cheaper (each changed page rewrites one leaf)
/// until the 128 bytes each stored blob costs (seal, pack header and index
/// entries) dominate. A changed page sits in a longer than average leaf
/// (size-biased: ~31 IDs here), and nearly every list of the level above
/// changes too. Estimated for 350 changed pages of a 210 MB database:
/// ~510 KB of list blobs with leaves of ~31 IDs, ~390 KB with ~19, ~385 KB
/// with ~13; measured with ~19: 362 KB (docs/BENCHMARKS.md).
pub const BOUNDARY_BITS: u32 = 4;

/// Most levels of ID-list blobs below an entry. With at least
/// [`MIN_LIST_IDS`] IDs in every list but the last of a level, 16 levels
/// hold more than 2^38 chunks even if every ID is a boundary; readers
/// reject higher trees, which bounds their recursion.
pub const MAX_HEIGHT: u8 = 16;

/// Most data blobs a reader follows for one file (the old form's `u32`
/// count); a reader also stops at the entry's `size` (every data blob holds
/// at least one byte), so a tree that names the same list blob many times
/// cannot make it loop beyond what the entry claims.
pub const MAX_FILE_CHUNKS: u64 = u32::MAX as u64;

/// Smallest encoded ID-list blob: tag, level, count and one ID.
pub const MIN_LIST_LEN: usize = 4 + ID_LEN;

/// True if a list is cut after `id` (once it holds [`MIN_LIST_IDS`]).
pub fn is_boundary(id: &BlobId) -> bool {
    let b = id.as_bytes();
    let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    v & ((1 << BOUNDARY_BITS) - 1) == 0
}

/// The lengths of the ID-list blobs `ids` is cut into, in order: a cut after
/// every boundary ID once a list holds [`MIN_LIST_IDS`], and after
/// [`MAX_LIST_IDS`] IDs; the last list holds the rest (it may be shorter).
/// An insertion or change moves only the cuts near it.
pub fn split(ids: &[BlobId]) -> impl Iterator<Item = usize> + '_ {
    let mut rest = ids;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut n = rest.len().min(MAX_LIST_IDS);
        for (i, id) in rest.iter().enumerate().take(MAX_LIST_IDS) {
            if i + 1 >= MIN_LIST_IDS && is_boundary(id) {
                n = i + 1;
                break;
            }
        }
        rest = &rest[n..];
        Some(n)
    })
}

/// Encode one ID-list blob of `level` holding `ids`, checked (decoded again
/// before it is returned).
///
/// ```text
/// tag u8 = 0xC1 | level u8 | count u16 | count × id
/// ```
pub fn list_to_bytes(level: u8, ids: &[BlobId]) -> Result<Vec<u8>> {
    let buf = list_to_bytes_unchecked(level, ids)?;
    IdList::from_bytes(&buf).map_err(|e| super::encode_error(RECORD, e))?;
    Ok(buf)
}

/// The encoding without the decode check (for tests of the decoder).
pub fn list_to_bytes_unchecked(level: u8, ids: &[BlobId]) -> Result<Vec<u8>> {
    let mut w = Writer::with_capacity(RECORD, 4 + ids.len() * ID_LEN);
    w.u8(LIST_TAG);
    w.u8(level);
    w.len16(ids.len(), "the number of IDs");
    for id in ids {
        w.raw(id.as_bytes());
    }
    w.finish()
}

/// One decoded ID-list blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdList {
    /// 0: the IDs name data blobs; *l*: ID-list blobs of level *l − 1*.
    pub level: u8,
    /// 1 ..= [`MAX_LIST_IDS`] IDs, in file order.
    pub ids: Vec<BlobId>,
}

impl IdList {
    /// Decode and validate an ID-list blob: the tag, a level below
    /// [`MAX_HEIGHT`], 1 ..= [`MAX_LIST_IDS`] IDs, nothing after them.
    pub fn from_bytes(buf: &[u8]) -> Result<IdList> {
        let mut r = Reader::new(buf, RECORD);
        let tag = r.u8()?;
        if tag != LIST_TAG {
            return Err(r.error(format!(
                "first byte is {tag:#04x}, not {LIST_TAG:#04x} (not an ID-list blob)"
            )));
        }
        let level = r.u8()?;
        if level >= MAX_HEIGHT {
            return Err(r.error(format!("level {level} (0 to {} allowed)", MAX_HEIGHT - 1)));
        }
        let n = r.count16(ID_LEN)?;
        if n == 0 || n > MAX_LIST_IDS {
            return Err(r.error(format!("{n} IDs (1 to {MAX_LIST_IDS} allowed)")));
        }
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(BlobId(r.array()?));
        }
        r.finish()?;
        Ok(IdList { level, ids })
    }
}

/// Turn a file's data blob IDs into its entry content: inline up to
/// [`MAX_INLINE_IDS`], else a chunk-list tree whose list blobs are handed,
/// encoded and checked, to `store`, which returns each one's blob ID (it
/// hashes and stores them as tree blobs, or finds them already stored).
/// Costs one pass over the IDs per level and one encoded buffer per list.
pub fn build(
    ids: Vec<BlobId>,
    store: &mut dyn FnMut(&[u8]) -> Result<BlobId>,
) -> Result<FileContent> {
    if ids.len() <= MAX_INLINE_IDS {
        return Ok(FileContent::Inline(ids));
    }
    if ids.len() as u64 > MAX_FILE_CHUNKS {
        return Err(Error::invalid(format!(
            "a file of {} chunks is more than the format's {MAX_FILE_CHUNKS}",
            ids.len()
        )));
    }
    let mut level: u8 = 0;
    let mut cur = ids;
    loop {
        if level >= MAX_HEIGHT {
            return Err(Error::invalid(format!(
                "a chunk list of {} IDs needs more than {MAX_HEIGHT} levels",
                cur.len()
            )));
        }
        let mut next = Vec::with_capacity(cur.len() / MIN_LIST_IDS + 1);
        let mut at = 0;
        for n in split(&cur) {
            let bytes = list_to_bytes(level, &cur[at..at + n])?;
            next.push(store(&bytes)?);
            at += n;
        }
        level += 1;
        if next.len() <= MAX_INLINE_IDS {
            return Ok(FileContent::Tree {
                height: level,
                top: next,
            });
        }
        cur = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A stand-in for a blob ID (this layer has no keyed hash): four
    /// SipHash values of `data`, uniform enough for the boundary rule.
    fn fake_id(data: &[u8]) -> BlobId {
        use std::hash::{Hash, Hasher};
        let mut out = [0u8; 32];
        for (k, part) in out.chunks_mut(8).enumerate() {
            let mut h = std::hash::DefaultHasher::new();
            (k, data).hash(&mut h);
            part.copy_from_slice(&h.finish().to_le_bytes());
        }
        BlobId(out)
    }

    fn ids(n: usize, seed: u8) -> Vec<BlobId> {
        (0..n)
            .map(|i| fake_id(&[&[seed][..], &(i as u64).to_le_bytes()].concat()))
            .collect()
    }

    /// A store that keeps list blobs in a map.
    fn store_in(map: &mut BTreeMap<BlobId, Vec<u8>>) -> impl FnMut(&[u8]) -> Result<BlobId> + '_ {
        |b: &[u8]| {
            let id = fake_id(b);
            map.insert(id, b.to_vec());
            Ok(id)
        }
    }

    fn flatten(map: &BTreeMap<BlobId, Vec<u8>>, c: &FileContent) -> Vec<BlobId> {
        match c {
            FileContent::Inline(v) => v.clone(),
            FileContent::Tree { height, top } => {
                let mut cur = top.clone();
                for lvl in (0..*height).rev() {
                    let mut next = Vec::new();
                    for id in &cur {
                        let l = IdList::from_bytes(&map[id]).unwrap();
                        assert_eq!(l.level, lvl);
                        next.extend(l.ids);
                    }
                    cur = next;
                }
                cur
            }
        }
    }

    #[test]
    fn short_lists_stay_inline_at_the_boundary_lengths() {
        for n in [0, 1, MAX_INLINE_IDS - 1, MAX_INLINE_IDS] {
            let mut map = BTreeMap::new();
            let c = build(ids(n, 1), &mut store_in(&mut map)).unwrap();
            assert_eq!(c, FileContent::Inline(ids(n, 1)));
            assert!(map.is_empty());
        }
        let mut map = BTreeMap::new();
        let c = build(ids(MAX_INLINE_IDS + 1, 1), &mut store_in(&mut map)).unwrap();
        assert!(matches!(c, FileContent::Tree { height: 1, .. }), "{c:?}");
    }

    #[test]
    fn trees_flatten_to_the_list_and_respect_the_limits() {
        for n in [65, 300, 5000, 200_000] {
            let mut map = BTreeMap::new();
            let list = ids(n, 2);
            let c = build(list.clone(), &mut store_in(&mut map)).unwrap();
            assert_eq!(flatten(&map, &c), list, "n = {n}");
            let FileContent::Tree { height, top } = &c else {
                panic!("inline")
            };
            assert!(top.len() <= MAX_INLINE_IDS && *height <= MAX_HEIGHT);
            for b in map.values() {
                let l = IdList::from_bytes(b).unwrap();
                assert!(l.ids.len() <= MAX_LIST_IDS);
            }
        }
    }

    #[test]
    fn lists_average_about_nineteen_ids() {
        let list = ids(200_000, 3);
        let lens: Vec<usize> = split(&list).collect();
        assert_eq!(lens.iter().sum::<usize>(), list.len());
        let avg = list.len() as f64 / lens.len() as f64;
        assert!((16.5..21.5).contains(&avg), "average {avg}");
        assert!(lens[..lens.len() - 1].iter().all(|&n| n >= MIN_LIST_IDS));
    }

    #[test]
    fn a_change_rewrites_only_nearby_list_blobs() {
        let list = ids(200_000, 4);
        let mut map = BTreeMap::new();
        build(list.clone(), &mut store_in(&mut map)).unwrap();
        let before: std::collections::BTreeSet<BlobId> = map.keys().copied().collect();
        // Change one ID, insert one and delete one, far apart.
        let mut changed = list.clone();
        changed[1000] = ids(1, 9)[0];
        changed.insert(100_000, ids(2, 9)[1]);
        changed.remove(150_000);
        let mut map2 = BTreeMap::new();
        build(changed, &mut store_in(&mut map2)).unwrap();
        let new = map2.keys().filter(|id| !before.contains(id)).count();
        // One leaf per change (two at most where a boundary moved) and
        // their parents: far below the ~11 000 list blobs of the tree.
        assert!(new <= 20, "{new} new list blobs");
    }

    #[test]
    fn a_run_of_equal_ids_is_cut_at_the_minimum_or_maximum() {
        let mut b = [0u8; 32];
        let boundary = BlobId(b);
        b[0] = 1;
        let plain = BlobId(b);
        assert!(is_boundary(&boundary) && !is_boundary(&plain));
        let lens: Vec<usize> = split(&vec![boundary; 100]).collect();
        assert_eq!(lens, [4; 25]);
        let lens: Vec<usize> = split(&vec![plain; 600]).collect();
        assert_eq!(lens, [256, 256, 88]);
        // Equal lists dedup: 100 000 equal IDs make a handful of blobs.
        let mut map = BTreeMap::new();
        let c = build(vec![plain; 100_000], &mut store_in(&mut map)).unwrap();
        assert!(map.len() <= 8, "{}", map.len());
        assert_eq!(flatten(&map, &c).len(), 100_000);
    }

    #[test]
    fn hostile_list_blobs_are_rejected() {
        let one = ids(1, 5);
        let good = list_to_bytes(0, &one).unwrap();
        assert_eq!(good.len(), MIN_LIST_LEN);
        assert_eq!(IdList::from_bytes(&good).unwrap().ids, one);
        for cut in 0..good.len() {
            assert!(IdList::from_bytes(&good[..cut]).is_err(), "cut {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(IdList::from_bytes(&trailing).is_err());
        let mut tag = good.clone();
        tag[0] = 1; // a tree node's version byte
        assert!(IdList::from_bytes(&tag).is_err());
        let deep = list_to_bytes_unchecked(MAX_HEIGHT, &one).unwrap();
        assert!(IdList::from_bytes(&deep).is_err());
        assert!(list_to_bytes(MAX_HEIGHT, &one).is_err());
        let empty = list_to_bytes_unchecked(0, &[]).unwrap();
        assert!(IdList::from_bytes(&empty).is_err());
        let long = list_to_bytes_unchecked(0, &ids(MAX_LIST_IDS + 1, 6)).unwrap();
        assert!(IdList::from_bytes(&long).is_err());
        // A count larger than the bytes that follow allocates nothing.
        let mut huge = good.clone();
        huge[2..4].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(IdList::from_bytes(&huge).is_err());
    }
}
