//! The repository config: format version (cleartext) plus the sealed
//! parameters every writer must share (chunker, ID key, pack size).

use super::wire::{Reader, Writer};
use crate::error::{Error, ErrorKind, Result};

const RECORD: &str = "config";
/// First bytes of the config object.
pub const CONFIG_MAGIC: &[u8; 8] = b"CAIRNCFG";
/// Length of the cleartext config header: magic plus version.
pub const CONFIG_HEADER_LEN: usize = 12;

/// Content-defined chunking parameters (FastCDC v2020, normalization level 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerParams {
    /// Smallest chunk, bytes.
    pub min_len: u32,
    /// Target average chunk, bytes.
    pub avg_len: u32,
    /// Largest chunk, bytes.
    pub max_len: u32,
    /// Key for the gear table (XORed into FastCDC's table).
    pub gear_seed: u64,
}

impl ChunkerParams {
    /// Default sizes: 512 KiB / 1 MiB / 8 MiB.
    pub fn with_seed(gear_seed: u64) -> Self {
        ChunkerParams {
            min_len: 512 * 1024,
            avg_len: 1024 * 1024,
            max_len: 8 * 1024 * 1024,
            gear_seed,
        }
    }

    /// Check the limits FastCDC v2020 requires (even sizes, min ≤ avg ≤ max,
    /// 64 ≤ min ≤ 1 MiB, 256 ≤ avg ≤ 4 MiB, 1 KiB ≤ max ≤ 16 MiB).
    pub fn validate(&self) -> Result<()> {
        let (min, avg, max) = (self.min_len, self.avg_len, self.max_len);
        let ok = min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0
            && (64..=1_048_576).contains(&min)
            && (256..=4_194_304).contains(&avg)
            && (1024..=16_777_216).contains(&max)
            && min <= avg
            && avg <= max;
        if !ok {
            return Err(Error::malformed(
                RECORD,
                format!("chunker sizes out of range: min {min}, avg {avg}, max {max}"),
            ));
        }
        Ok(())
    }
}

/// The sealed part of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Random repository ID.
    pub repo_id: [u8; 32],
    /// Chunker parameters.
    pub chunker: ChunkerParams,
    /// Key for blob IDs (keyed BLAKE3).
    pub id_key: [u8; 32],
    /// Target pack size, bytes.
    pub pack_size: u32,
    /// Default zstd level for new blobs (0 disables compression).
    pub compression_level: i32,
    /// Creation time, seconds since the epoch.
    pub created: i64,
}

impl Drop for Config {
    /// The ID key is a secret: wiped when the config goes.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.id_key);
    }
}

/// Smallest accepted target pack size.
pub const MIN_PACK_SIZE: u32 = 1024 * 1024;
/// Largest accepted target pack size.
pub const MAX_PACK_SIZE: u32 = 1024 * 1024 * 1024;

impl Config {
    /// The cleartext header: magic and format version.
    pub fn header_bytes(version: u32) -> [u8; CONFIG_HEADER_LEN] {
        let mut out = [0u8; CONFIG_HEADER_LEN];
        out[..8].copy_from_slice(CONFIG_MAGIC);
        out[8..].copy_from_slice(&version.to_le_bytes());
        out
    }

    /// Read the cleartext header and refuse versions this build cannot read.
    /// Returns the sealed remainder.
    pub fn split_header(buf: &[u8]) -> Result<(u32, &[u8])> {
        let mut r = Reader::new(buf, RECORD);
        if r.array::<8>()? != *CONFIG_MAGIC {
            return Err(r.error("not a Cairn repository config (bad magic)"));
        }
        let version = r.u32()?;
        if version != super::FORMAT_VERSION {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!(
                    "repository format version {version} is not supported by this Cairn {} (it reads version {}); upgrade Cairn",
                    env!("CARGO_PKG_VERSION"),
                    super::FORMAT_VERSION
                ),
            ));
        }
        Ok((version, &buf[CONFIG_HEADER_LEN..]))
    }

    /// Encode the sealed part, checked: the bytes are decoded again (every
    /// parameter validated) before they are returned.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let buf = self.to_bytes_unchecked()?;
        Config::from_bytes(&buf).map_err(|e| super::encode_error(RECORD, e))?;
        Ok(buf)
    }

    /// The encoding without the decode check (for tests of the decoder).
    pub fn to_bytes_unchecked(&self) -> Result<Vec<u8>> {
        let mut w = Writer::with_capacity(RECORD, 128);
        w.raw(&self.repo_id);
        w.u32(self.chunker.min_len);
        w.u32(self.chunker.avg_len);
        w.u32(self.chunker.max_len);
        w.u64(self.chunker.gear_seed);
        w.raw(&self.id_key);
        w.u32(self.pack_size);
        w.u32(self.compression_level as u32);
        w.i64(self.created);
        w.finish()
    }

    /// Decode the sealed part and validate every parameter.
    pub fn from_bytes(buf: &[u8]) -> Result<Config> {
        let mut r = Reader::new(buf, RECORD);
        let repo_id = r.array()?;
        let chunker = ChunkerParams {
            min_len: r.u32()?,
            avg_len: r.u32()?,
            max_len: r.u32()?,
            gear_seed: r.u64()?,
        };
        chunker.validate()?;
        let id_key = r.array()?;
        let pack_size = r.u32()?;
        if !(MIN_PACK_SIZE..=MAX_PACK_SIZE).contains(&pack_size) {
            return Err(r.error(format!("pack size {pack_size} out of range")));
        }
        let compression_level = r.u32()? as i32;
        if !(0..=22).contains(&compression_level) {
            return Err(r.error(format!(
                "compression level {compression_level} out of range"
            )));
        }
        let created = r.i64()?;
        r.finish()?;
        Ok(Config {
            repo_id,
            chunker,
            id_key,
            pack_size,
            compression_level,
            created,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let c = Config {
            repo_id: [1; 32],
            chunker: ChunkerParams::with_seed(42),
            id_key: [2; 32],
            pack_size: 16 << 20,
            compression_level: 3,
            created: 5,
        };
        let b = c.to_bytes().unwrap();
        assert_eq!(Config::from_bytes(&b).unwrap(), c);
        for cut in 0..b.len() {
            assert!(Config::from_bytes(&b[..cut]).is_err());
        }
    }

    #[test]
    fn newer_versions_are_refused_clearly() {
        let h = Config::header_bytes(2);
        let err = Config::split_header(&h).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnsupportedVersion);
        assert!(err.to_string().contains("upgrade Cairn"));
    }

    #[test]
    fn odd_chunker_sizes_are_rejected() {
        let mut p = ChunkerParams::with_seed(0);
        p.min_len += 1;
        assert!(p.validate().is_err());
        let mut p = ChunkerParams::with_seed(0);
        p.max_len = 32 << 20;
        assert!(p.validate().is_err());
    }
}
