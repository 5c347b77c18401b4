//! Pack files: sealed blobs followed by a sealed header and its length.
//!
//! ```text
//! blob 0 | blob 1 | … | blob n-1 | sealed header | header length (u32 LE)
//! ```
//! Blob i starts where blob i-1 ends; the header lists every blob in file
//! order with its type, compression, ID, sealed length and plaintext length.

use super::SEAL_OVERHEAD;
use super::wire::{Reader, Writer};
use super::{BlobType, Compression, MAX_BLOB_LEN};
use crate::error::{Error, Result};
use crate::id::BlobId;

const RECORD: &str = "pack header";
/// Version byte at the start of every pack header.
pub const PACK_HEADER_VERSION: u8 = 1;
/// Encoded length of one header entry.
pub const HEADER_ENTRY_LEN: usize = 1 + 1 + 32 + 4 + 4;
/// Length of the trailing header-length field.
pub const TRAILER_LEN: usize = 4;
/// Most blobs one pack may hold.
pub const MAX_BLOBS_PER_PACK: usize = 1 << 20;

/// One blob as listed in a pack header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// Data or tree.
    pub blob_type: BlobType,
    /// How the plaintext was compressed.
    pub compression: Compression,
    /// The blob's ID.
    pub id: BlobId,
    /// Length of the sealed box in the pack.
    pub sealed_len: u32,
    /// Length of the plaintext after decompression.
    pub raw_len: u32,
}

/// Encode a pack header's plaintext, checked: the bytes are decoded again
/// (every entry's limits validated) before they are returned.
pub fn header_to_bytes(entries: &[PackEntry]) -> Result<Vec<u8>> {
    let buf = header_to_bytes_unchecked(entries)?;
    header_from_bytes(&buf).map_err(|e| super::encode_error(RECORD, e))?;
    Ok(buf)
}

/// The encoding without the decode check (for tests of the decoder).
pub fn header_to_bytes_unchecked(entries: &[PackEntry]) -> Result<Vec<u8>> {
    let mut w = Writer::with_capacity(RECORD, 5 + entries.len() * HEADER_ENTRY_LEN);
    w.u8(PACK_HEADER_VERSION);
    w.len32(entries.len(), "the number of blobs");
    for e in entries {
        w.u8(e.blob_type.to_byte());
        w.u8(e.compression.to_byte());
        w.raw(e.id.as_bytes());
        w.u32(e.sealed_len);
        w.u32(e.raw_len);
    }
    w.finish()
}

/// Decode a pack header's plaintext and check every length.
pub fn header_from_bytes(buf: &[u8]) -> Result<Vec<PackEntry>> {
    let mut r = Reader::new(buf, RECORD);
    let version = r.u8()?;
    if version != PACK_HEADER_VERSION {
        return Err(r.error(format!("unknown pack header version {version}")));
    }
    let n = r.count32(HEADER_ENTRY_LEN)?;
    if n > MAX_BLOBS_PER_PACK {
        return Err(r.error(format!("{n} blobs exceed the limit")));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = r.u8()?;
        let blob_type = BlobType::from_byte(t).ok_or_else(|| r.error(format!("blob type {t}")))?;
        let c = r.u8()?;
        let compression =
            Compression::from_byte(c).ok_or_else(|| r.error(format!("compression {c}")))?;
        let id = BlobId(r.array()?);
        let sealed_len = r.u32()?;
        let raw_len = r.u32()?;
        check_lengths(sealed_len, raw_len, compression).map_err(|e| r.error(e))?;
        out.push(PackEntry {
            blob_type,
            compression,
            id,
            sealed_len,
            raw_len,
        });
    }
    r.finish()?;
    Ok(out)
}

/// The lengths a blob entry may have: a sealed box holds at least its
/// overhead; an uncompressed blob's plaintext is exactly the box's content.
pub fn check_lengths(sealed_len: u32, raw_len: u32, c: Compression) -> Result<(), String> {
    if (sealed_len as usize) < SEAL_OVERHEAD {
        return Err(format!(
            "sealed length {sealed_len} below the seal overhead"
        ));
    }
    if raw_len > MAX_BLOB_LEN || sealed_len as u64 > MAX_BLOB_LEN as u64 + 1024 {
        return Err(format!("blob length {raw_len} exceeds the limit"));
    }
    if c == Compression::None && raw_len as usize + SEAL_OVERHEAD != sealed_len as usize {
        return Err(format!(
            "uncompressed blob: sealed length {sealed_len} does not match plaintext length {raw_len}"
        ));
    }
    Ok(())
}

/// Split a whole pack into (blob region, sealed header), checking the
/// trailer. The blob region's length must equal the sum of the entries.
pub fn split_pack(pack: &[u8]) -> Result<(&[u8], &[u8])> {
    if pack.len() < TRAILER_LEN + SEAL_OVERHEAD {
        return Err(Error::malformed(RECORD, "pack too short"));
    }
    let t = pack.len() - TRAILER_LEN;
    let mut len = [0u8; 4];
    len.copy_from_slice(&pack[t..]);
    let hlen = u32::from_le_bytes(len) as usize;
    if hlen > t || hlen < SEAL_OVERHEAD {
        return Err(Error::malformed(
            RECORD,
            format!(
                "header length {hlen} does not fit a pack of {} bytes",
                pack.len()
            ),
        ));
    }
    Ok((&pack[..t - hlen], &pack[t - hlen..t]))
}

/// Check that entries exactly tile a blob region of `region_len` bytes and
/// return each entry's offset.
pub fn entry_offsets(entries: &[PackEntry], region_len: u64) -> Result<Vec<u64>> {
    let mut off = 0u64;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        out.push(off);
        off += u64::from(e.sealed_len);
    }
    if off != region_len {
        return Err(Error::malformed(
            RECORD,
            format!("entries cover {off} bytes but the blob region has {region_len}"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_truncation() {
        let e = vec![
            PackEntry {
                blob_type: BlobType::Data,
                compression: Compression::Zstd,
                id: BlobId([1; 32]),
                sealed_len: 100,
                raw_len: 1000,
            },
            PackEntry {
                blob_type: BlobType::Tree,
                compression: Compression::None,
                id: BlobId([2; 32]),
                sealed_len: 50,
                raw_len: 10,
            },
        ];
        let b = header_to_bytes(&e).unwrap();
        assert_eq!(header_from_bytes(&b).unwrap(), e);
        for cut in 0..b.len() {
            assert!(header_from_bytes(&b[..cut]).is_err());
        }
        assert_eq!(entry_offsets(&e, 150).unwrap(), vec![0, 100]);
        assert!(entry_offsets(&e, 151).is_err());
    }

    #[test]
    fn split_rejects_bad_trailers() {
        assert!(split_pack(&[0; 10]).is_err());
        let mut p = vec![0u8; 100];
        p[96..].copy_from_slice(&1000u32.to_le_bytes());
        assert!(split_pack(&p).is_err());
        p[96..].copy_from_slice(&50u32.to_le_bytes());
        let (region, header) = split_pack(&p).unwrap();
        assert_eq!((region.len(), header.len()), (46, 50));
    }
}
