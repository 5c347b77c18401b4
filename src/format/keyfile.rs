//! Key files: the master secret wrapped under a passphrase.
//!
//! The header is cleartext (so the KDF parameters can be read before the
//! passphrase is known); the wrapped secret is a sealed box whose associated
//! data is the whole header, so no header field can be altered unnoticed.
//!
//! Version 2, written since 2026-12, keeps the creation time, host and user
//! in a second sealed box under a key derived from the master secret
//! ([`KeyInfo`]): only someone who can open the repository reads them.
//! Version 1, still read, carried them in the clear header.

use super::SEAL_OVERHEAD;
use super::wire::{Reader, Writer};
use crate::error::{Error, ErrorKind, Result};

const RECORD: &str = "key file";
/// First bytes of every key file.
pub const KEY_MAGIC: &[u8; 8] = b"CAIRNKEY";
/// Key file layout version written by this build.
pub const KEY_VERSION: u16 = 2;
/// The first key file layout (cleartext host and user), still read.
pub const KEY_VERSION_1: u16 = 1;
/// KDF identifier: Argon2id, version 0x13.
pub const KDF_ARGON2ID: u8 = 1;
/// Salt length in bytes.
pub const SALT_LEN: usize = 32;
/// Length of the sealed master secret (32 bytes plus seal overhead).
pub const WRAPPED_LEN: usize = 32 + SEAL_OVERHEAD;
/// Largest key file a reader accepts (checked before reading it whole).
/// Version 2 key files are about 300 bytes, and at most 809.
pub const MAX_KEY_FILE_LEN: usize = 4096;
/// Longest host or user name in a version 2 key file (display only).
pub const MAX_KEY_INFO_NAME_LEN: usize = 255;
/// The sealed key information is padded to a multiple of this many bytes,
/// so its length does not tell the lengths of the names.
pub const KEY_INFO_PAD: usize = 128;
/// Associated-data prefix of the sealed key information (version 2).
pub const KEY_INFO_AAD_PREFIX: &[u8; 16] = b"cairn/keyinfo/v2";

/// When, where and by whom a key was made (shown by `key list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Host that created the key.
    pub hostname: String,
    /// User that created the key.
    pub username: String,
}

impl KeyInfo {
    /// Encode (the plaintext of a version 2 key file's information box):
    /// created `i64`, hostname `string16`, username `string16`, then zeros
    /// up to a multiple of [`KEY_INFO_PAD`] bytes. Names longer than
    /// [`MAX_KEY_INFO_NAME_LEN`] are an error: the caller shortens them.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        for (what, v) in [("host", &self.hostname), ("user", &self.username)] {
            if v.len() > MAX_KEY_INFO_NAME_LEN {
                return Err(Error::invalid(format!(
                    "key file: {what} name of {} bytes is longer than {MAX_KEY_INFO_NAME_LEN}",
                    v.len()
                )));
            }
        }
        let mut w = Writer::with_capacity("key file information", KEY_INFO_PAD);
        w.i64(self.created);
        w.bytes16(self.hostname.as_bytes());
        w.bytes16(self.username.as_bytes());
        let mut out = w.finish()?;
        out.resize(out.len().div_ceil(KEY_INFO_PAD) * KEY_INFO_PAD, 0);
        Ok(out)
    }

    /// Decode; the padding must be zeros, shorter than one pad unit.
    pub fn from_bytes(buf: &[u8]) -> Result<KeyInfo> {
        let mut r = Reader::new(buf, "key file information");
        let created = r.i64()?;
        let hostname = r.string16()?;
        let username = r.string16()?;
        if hostname.len() > MAX_KEY_INFO_NAME_LEN || username.len() > MAX_KEY_INFO_NAME_LEN {
            return Err(r.error("host or user name too long"));
        }
        let pad = r.take(r.remaining())?;
        if buf.len() % KEY_INFO_PAD != 0 || pad.len() >= KEY_INFO_PAD || pad.iter().any(|&b| b != 0)
        {
            return Err(r.error("bad padding"));
        }
        Ok(KeyInfo {
            created,
            hostname,
            username,
        })
    }
}

/// A key file's information: in the clear (version 1) or sealed (version 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMeta {
    /// Version 1: in the cleartext header.
    Clear(KeyInfo),
    /// Version 2: a sealed box of [`KeyInfo::to_bytes`] under the key-info
    /// key derived from the master secret; associated data
    /// [`KeyFile::info_aad`].
    Sealed(Vec<u8>),
}

/// A decoded key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    /// Argon2id costs.
    pub kdf: KdfParams,
    /// Random salt.
    pub salt: [u8; SALT_LEN],
    /// The master secret sealed under the passphrase-derived key.
    pub wrapped: Vec<u8>,
    /// Creation time, host and user.
    pub meta: KeyMeta,
}

impl KeyFile {
    /// The layout version: 1 with cleartext information, else 2.
    pub fn version(&self) -> u16 {
        match self.meta {
            KeyMeta::Clear(_) => KEY_VERSION_1,
            KeyMeta::Sealed(_) => KEY_VERSION,
        }
    }

    /// The header bytes (everything before the wrapped secret): the
    /// associated data of the sealed master secret.
    pub fn header_bytes(&self) -> Result<Vec<u8>> {
        let mut w = Writer::with_capacity(RECORD, 128);
        w.raw(KEY_MAGIC);
        w.u16(self.version());
        w.u8(KDF_ARGON2ID);
        w.u32(self.kdf.memory_kib);
        w.u32(self.kdf.iterations);
        w.u32(self.kdf.parallelism);
        w.raw(&self.salt);
        if let KeyMeta::Clear(info) = &self.meta {
            w.i64(info.created);
            w.bytes16(info.hostname.as_bytes());
            w.bytes16(info.username.as_bytes());
        }
        w.finish()
    }

    /// Associated data of a version 2 key file's information box: a fixed
    /// prefix and the cleartext header (so the box opens only in the key
    /// file it was made for: the header holds the random salt).
    pub fn info_aad(&self) -> Result<Vec<u8>> {
        let mut a = KEY_INFO_AAD_PREFIX.to_vec();
        a.extend_from_slice(&self.header_bytes()?);
        Ok(a)
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
        if let KeyMeta::Sealed(info) = &self.meta {
            out.extend_from_slice(info);
        }
        Ok(out)
    }

    /// Decode; rejects unknown versions and out-of-range KDF costs.
    pub fn from_bytes(buf: &[u8]) -> Result<KeyFile> {
        let mut r = Reader::new(buf, RECORD);
        if r.array::<8>()? != *KEY_MAGIC {
            return Err(r.error("not a Cairn key file (bad magic)"));
        }
        let version = r.u16()?;
        if version != KEY_VERSION && version != KEY_VERSION_1 {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!(
                    "key file version {version} is not supported by this Cairn (it reads versions {KEY_VERSION_1} and {KEY_VERSION}); upgrade Cairn"
                ),
            ));
        }
        if buf.len() > MAX_KEY_FILE_LEN {
            return Err(r.error(format!(
                "{} bytes, more than the {MAX_KEY_FILE_LEN} a key file may have",
                buf.len()
            )));
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
        let clear = if version == KEY_VERSION_1 {
            Some(KeyInfo {
                created: r.i64()?,
                hostname: r.string16()?,
                username: r.string16()?,
            })
        } else {
            None
        };
        let wrapped = r.take(WRAPPED_LEN)?.to_vec();
        let meta = match clear {
            Some(info) => KeyMeta::Clear(info),
            None => {
                let sealed = r.take(r.remaining())?;
                let body = sealed.len().saturating_sub(SEAL_OVERHEAD);
                if sealed.len() < SEAL_OVERHEAD + KEY_INFO_PAD || body % KEY_INFO_PAD != 0 {
                    return Err(r.error(format!(
                        "sealed key information of {} bytes (expected 40 plus a multiple of {KEY_INFO_PAD})",
                        sealed.len()
                    )));
                }
                KeyMeta::Sealed(sealed.to_vec())
            }
        };
        r.finish()?;
        Ok(KeyFile {
            kdf,
            salt,
            wrapped,
            meta,
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
    /// **Insecure**: 64 KiB, 1 pass — for test suites only. A key file this
    /// cheap lets anyone who copies it try passphrases by the million.
    /// Opening accepts it only under `KdfLimits::INSECURE_TEST`, which
    /// exists only in builds with the test-only `insecure-test-kdf`
    /// feature.
    pub const INSECURE_TEST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    /// Upper bound accepted when decoding a key file: 4 GiB. (Whether a
    /// key is *tried* is decided by the tighter `KdfLimits`.)
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    /// Upper bound on passes accepted when decoding a key file.
    pub const MAX_ITERATIONS: u32 = 1000;
    /// Upper bound on lanes accepted when decoding a key file.
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
            return Err(Error::malformed(
                "key file",
                format!("Argon2id parameters out of range: {self:?}"),
            ));
        }
        Ok(())
    }
}

/// A memory size in KiB, in the largest unit that divides it: "64 MiB".
pub fn human_kib(m: u32) -> String {
    if m >= 1024 * 1024 && m % (1024 * 1024) == 0 {
        format!("{} GiB", m / (1024 * 1024))
    } else if m >= 1024 && m % 1024 == 0 {
        format!("{} MiB", m / 1024)
    } else {
        format!("{m} KiB")
    }
}

impl std::fmt::Display for KdfParams {
    /// "Argon2id 64 MiB, 3 passes, 1 lane".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mem = human_kib(self.memory_kib);
        let s = |n: u32| if n == 1 { "" } else { "es" };
        let l = |n: u32| if n == 1 { "" } else { "s" };
        write!(
            f,
            "Argon2id {mem}, {} pass{}, {} lane{}",
            self.iterations,
            s(self.iterations),
            self.parallelism,
            l(self.parallelism)
        )
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

    fn info() -> KeyInfo {
        KeyInfo {
            created: 1_790_000_000,
            hostname: "h".into(),
            username: "u".into(),
        }
    }

    #[test]
    fn round_trip_and_truncation_in_both_versions() {
        let v1 = KeyFile {
            kdf: KdfParams::DEFAULT,
            salt: [5; SALT_LEN],
            wrapped: vec![7; WRAPPED_LEN],
            meta: KeyMeta::Clear(info()),
        };
        let v2 = KeyFile {
            meta: KeyMeta::Sealed(vec![9; SEAL_OVERHEAD + KEY_INFO_PAD]),
            ..v1.clone()
        };
        for k in [v1, v2] {
            let b = k.to_bytes().unwrap();
            assert_eq!(KeyFile::from_bytes(&b).unwrap(), k);
            assert_eq!(u16::from_le_bytes([b[8], b[9]]), k.version());
            for cut in 0..b.len() {
                assert!(KeyFile::from_bytes(&b[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    /// A version 2 key file says nothing in the clear about who made it.
    #[test]
    fn version_2_has_no_cleartext_host_or_user() {
        let k = KeyFile {
            kdf: KdfParams::DEFAULT,
            salt: [5; SALT_LEN],
            wrapped: vec![7; WRAPPED_LEN],
            meta: KeyMeta::Sealed(vec![9; SEAL_OVERHEAD + KEY_INFO_PAD]),
        };
        assert_eq!(k.header_bytes().unwrap().len(), 55);
        assert_eq!(
            k.to_bytes().unwrap().len(),
            55 + WRAPPED_LEN + SEAL_OVERHEAD + KEY_INFO_PAD
        );
    }

    #[test]
    fn key_info_is_padded_and_checked() {
        let b = info().to_bytes().unwrap();
        assert_eq!(b.len(), KEY_INFO_PAD);
        assert_eq!(KeyInfo::from_bytes(&b).unwrap(), info());
        let long = KeyInfo {
            hostname: "h".repeat(MAX_KEY_INFO_NAME_LEN),
            username: "u".repeat(MAX_KEY_INFO_NAME_LEN),
            ..info()
        };
        let lb = long.to_bytes().unwrap();
        assert_eq!(lb.len() % KEY_INFO_PAD, 0);
        assert_eq!(KeyInfo::from_bytes(&lb).unwrap(), long);
        let too_long = KeyInfo {
            hostname: "h".repeat(MAX_KEY_INFO_NAME_LEN + 1),
            ..info()
        };
        assert!(too_long.to_bytes().is_err());
        // Non-zero padding, a missing pad unit, an extra pad unit.
        let mut bad = b.clone();
        *bad.last_mut().unwrap() = 1;
        assert!(KeyInfo::from_bytes(&bad).is_err());
        assert!(KeyInfo::from_bytes(&b[..b.len() - 1]).is_err());
        let mut extra = b.clone();
        extra.extend_from_slice(&[0; KEY_INFO_PAD]);
        assert!(KeyInfo::from_bytes(&extra).is_err());
    }

    #[test]
    fn oversized_and_future_key_files_are_refused() {
        let k = KeyFile {
            kdf: KdfParams::DEFAULT,
            salt: [5; SALT_LEN],
            wrapped: vec![7; WRAPPED_LEN],
            meta: KeyMeta::Sealed(vec![9; SEAL_OVERHEAD + 32 * KEY_INFO_PAD]),
        };
        assert!(KeyFile::from_bytes(&k.to_bytes_unchecked().unwrap()).is_err());
        assert!(k.to_bytes().is_err(), "the checked encoder refuses it");
        let mut b = KeyFile {
            meta: KeyMeta::Sealed(vec![9; SEAL_OVERHEAD + KEY_INFO_PAD]),
            ..k
        }
        .to_bytes()
        .unwrap();
        b[8] = 3;
        let e = KeyFile::from_bytes(&b).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnsupportedVersion);
    }

    #[test]
    fn costs_read_well() {
        assert_eq!(
            KdfParams::DEFAULT.to_string(),
            "Argon2id 64 MiB, 3 passes, 1 lane"
        );
        assert_eq!(
            KdfParams::INSECURE_TEST.to_string(),
            "Argon2id 64 KiB, 1 pass, 1 lane"
        );
    }
}
