//! Key files: the master secret wrapped under a passphrase.
//!
//! The header is cleartext (so the KDF parameters can be read before the
//! passphrase is known); the wrapped secret is a sealed box whose associated
//! data is the whole header, so no header field can be altered unnoticed.

use super::SEAL_OVERHEAD;
use super::wire::{Reader, Writer};
use crate::error::Result;

const RECORD: &str = "key file";
/// First bytes of every key file.
pub const KEY_MAGIC: &[u8; 8] = b"CAIRNKEY";
/// Key file layout version.
pub const KEY_VERSION: u16 = 1;
/// KDF identifier: Argon2id, version 0x13.
pub const KDF_ARGON2ID: u8 = 1;
/// Salt length in bytes.
pub const SALT_LEN: usize = 32;
/// Length of the sealed master secret (32 bytes plus seal overhead).
pub const WRAPPED_LEN: usize = 32 + SEAL_OVERHEAD;

/// A decoded key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    /// Argon2id costs.
    pub kdf: KdfParams,
    /// Random salt.
    pub salt: [u8; SALT_LEN],
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Host that created the key.
    pub hostname: String,
    /// User that created the key.
    pub username: String,
    /// The master secret sealed under the passphrase-derived key.
    pub wrapped: Vec<u8>,
}

impl KeyFile {
    /// The header bytes (everything before the wrapped secret): the
    /// associated data of the sealed box.
    pub fn header_bytes(&self) -> Result<Vec<u8>> {
        let mut w = Writer::with_capacity(RECORD, 128);
        w.raw(KEY_MAGIC);
        w.u16(KEY_VERSION);
        w.u8(KDF_ARGON2ID);
        w.u32(self.kdf.memory_kib);
        w.u32(self.kdf.iterations);
        w.u32(self.kdf.parallelism);
        w.raw(&self.salt);
        w.i64(self.created);
        w.bytes16(self.hostname.as_bytes());
        w.bytes16(self.username.as_bytes());
        w.finish()
    }

    /// Encode, checked: the bytes are decoded again before they are
    /// returned.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let buf = self.to_bytes_unchecked()?;
        KeyFile::from_bytes(&buf).map_err(|e| super::encode_error(RECORD, e))?;
        Ok(buf)
    }

    /// The encoding without the decode check (for tests of the decoder).
    pub fn to_bytes_unchecked(&self) -> Result<Vec<u8>> {
        let mut out = self.header_bytes()?;
        out.extend_from_slice(&self.wrapped);
        Ok(out)
    }

    /// Decode; rejects unknown versions and out-of-range KDF costs.
    pub fn from_bytes(buf: &[u8]) -> Result<KeyFile> {
        let mut r = Reader::new(buf, RECORD);
        if r.array::<8>()? != *KEY_MAGIC {
            return Err(r.error("not a Cairn key file (bad magic)"));
        }
        let version = r.u16()?;
        if version != KEY_VERSION {
            return Err(crate::error::Error::new(
                crate::error::ErrorKind::UnsupportedVersion,
                format!(
                    "key file version {version} is not supported by this Cairn (it reads version {KEY_VERSION}); upgrade Cairn"
                ),
            ));
        }
        let kdf_id = r.u8()?;
        if kdf_id != KDF_ARGON2ID {
            return Err(r.error(format!("unknown KDF {kdf_id}")));
        }
        let kdf = KdfParams {
            memory_kib: r.u32()?,
            iterations: r.u32()?,
            parallelism: r.u32()?,
        };
        kdf.validate()?;
        let salt = r.array()?;
        let created = r.i64()?;
        let hostname = r.string16()?;
        let username = r.string16()?;
        let wrapped = r.take(WRAPPED_LEN)?.to_vec();
        r.finish()?;
        Ok(KeyFile {
            kdf,
            salt,
            created,
            hostname,
            username,
            wrapped,
        })
    }
}

/// Argon2id cost parameters, stored in every key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// The default for new keys: 64 MiB, 3 passes, 1 lane (~0.2 s here).
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };
    /// Upper bound accepted when reading a key file: 4 GiB.
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    /// Upper bound on passes accepted when reading a key file.
    pub const MAX_ITERATIONS: u32 = 1000;
    /// Upper bound on lanes accepted when reading a key file.
    pub const MAX_PARALLELISM: u32 = 64;

    /// Reject parameters a hostile key file could use to exhaust memory or
    /// time, and those Argon2 itself refuses.
    pub fn validate(&self) -> Result<()> {
        if self.memory_kib < self.parallelism.max(1).saturating_mul(8)
            || self.memory_kib > Self::MAX_MEMORY_KIB
            || self.iterations == 0
            || self.iterations > Self::MAX_ITERATIONS
            || self.parallelism == 0
            || self.parallelism > Self::MAX_PARALLELISM
        {
            return Err(crate::error::Error::malformed(
                "key file",
                format!("Argon2id parameters out of range: {self:?}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found by tests/decoders.rs): a huge lane count overflowed
    /// the minimum-memory check in debug builds.
    #[test]
    fn huge_lane_counts_are_rejected_without_overflow() {
        let p = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: u32::MAX,
        };
        assert!(p.validate().is_err());
    }

    #[test]
    fn round_trip_and_truncation() {
        let k = KeyFile {
            kdf: KdfParams::DEFAULT,
            salt: [5; SALT_LEN],
            created: 1_790_000_000,
            hostname: "h".into(),
            username: "u".into(),
            wrapped: vec![7; WRAPPED_LEN],
        };
        let b = k.to_bytes().unwrap();
        assert_eq!(KeyFile::from_bytes(&b).unwrap(), k);
        for cut in 0..b.len() {
            assert!(KeyFile::from_bytes(&b[..cut]).is_err());
        }
    }
}
