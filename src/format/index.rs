//! Index files: which blobs live in which packs, at which offsets.

use super::pack::check_lengths;
use super::wire::{Reader, Writer};
use super::{BlobType, Compression};
use crate::error::Result;
use crate::id::{BlobId, IndexId, PackId};

const RECORD: &str = "index file";
/// Version byte at the start of every index file.
pub const INDEX_VERSION: u8 = 1;
/// Encoded length of one blob entry.
pub const INDEX_ENTRY_LEN: usize = 1 + 1 + 32 + 4 + 4 + 4;

/// One blob's location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexBlob {
    /// Data or tree.
    pub blob_type: BlobType,
    /// How the plaintext was compressed.
    pub compression: Compression,
    /// The blob's ID.
    pub id: BlobId,
    /// Offset of the sealed box in the pack.
    pub offset: u32,
    /// Length of the sealed box.
    pub sealed_len: u32,
    /// Plaintext length after decompression.
    pub raw_len: u32,
}

/// One pack and its blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    /// The pack.
    pub id: PackId,
    /// Its blobs.
    pub blobs: Vec<IndexBlob>,
}

/// A decoded index file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexFile {
    /// Packs described by this file.
    pub packs: Vec<IndexPack>,
    /// Index files this one replaces (written by prune; they may be deleted
    /// once this one is stored).
    pub supersedes: Vec<IndexId>,
}

impl IndexFile {
    /// Encode, checked: the bytes are decoded again before they are
    /// returned, so an index file its decoder would reject is an error here.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let buf = self.to_bytes_unchecked()?;
        IndexFile::from_bytes(&buf).map_err(|e| super::encode_error(RECORD, e))?;
        Ok(buf)
    }

    /// The encoding without the decode check (for tests of the decoder).
    pub fn to_bytes_unchecked(&self) -> Result<Vec<u8>> {
        let n: usize = self.packs.iter().map(|p| p.blobs.len()).sum();
        let mut w = Writer::with_capacity(RECORD, 16 + self.packs.len() * 36 + n * INDEX_ENTRY_LEN);
        w.u8(INDEX_VERSION);
        w.len32(self.packs.len(), "the number of packs");
        for p in &self.packs {
            w.raw(p.id.as_bytes());
            w.len32(p.blobs.len(), "the number of blobs in a pack");
            for b in &p.blobs {
                w.u8(b.blob_type.to_byte());
                w.u8(b.compression.to_byte());
                w.raw(b.id.as_bytes());
                w.u32(b.offset);
                w.u32(b.sealed_len);
                w.u32(b.raw_len);
            }
        }
        w.len32(
            self.supersedes.len(),
            "the number of superseded index files",
        );
        for s in &self.supersedes {
            w.raw(s.as_bytes());
        }
        w.finish()
    }

    /// Decode and check every entry's lengths.
    pub fn from_bytes(buf: &[u8]) -> Result<IndexFile> {
        let mut r = Reader::new(buf, RECORD);
        let version = r.u8()?;
        if version != INDEX_VERSION {
            return Err(r.error(format!("unknown index version {version}")));
        }
        let np = r.count32(36)?;
        let mut packs = Vec::with_capacity(np);
        for _ in 0..np {
            let id = PackId(r.array()?);
            let nb = r.count32(INDEX_ENTRY_LEN)?;
            let mut blobs = Vec::with_capacity(nb);
            for _ in 0..nb {
                let t = r.u8()?;
                let blob_type =
                    BlobType::from_byte(t).ok_or_else(|| r.error(format!("blob type {t}")))?;
                let c = r.u8()?;
                let compression =
                    Compression::from_byte(c).ok_or_else(|| r.error(format!("compression {c}")))?;
                let id = BlobId(r.array()?);
                let offset = r.u32()?;
                let sealed_len = r.u32()?;
                let raw_len = r.u32()?;
                check_lengths(sealed_len, raw_len, compression).map_err(|e| r.error(e))?;
                if offset.checked_add(sealed_len).is_none() {
                    return Err(r.error("blob extends past 4 GiB"));
                }
                blobs.push(IndexBlob {
                    blob_type,
                    compression,
                    id,
                    offset,
                    sealed_len,
                    raw_len,
                });
            }
            packs.push(IndexPack { id, blobs });
        }
        let ns = r.count32(32)?;
        let mut supersedes = Vec::with_capacity(ns);
        for _ in 0..ns {
            supersedes.push(IndexId(r.array()?));
        }
        r.finish()?;
        Ok(IndexFile { packs, supersedes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let f = IndexFile {
            packs: vec![IndexPack {
                id: PackId([3; 32]),
                blobs: vec![IndexBlob {
                    blob_type: BlobType::Data,
                    compression: Compression::Zstd,
                    id: BlobId([4; 32]),
                    offset: 0,
                    sealed_len: 140,
                    raw_len: 4096,
                }],
            }],
            supersedes: vec![IndexId([5; 32])],
        };
        let b = f.to_bytes().unwrap();
        assert_eq!(IndexFile::from_bytes(&b).unwrap(), f);
        for cut in 0..b.len() {
            assert!(IndexFile::from_bytes(&b[..cut]).is_err());
        }
    }
}
