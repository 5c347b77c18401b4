//! Cryptography: key derivation, authenticated encryption, keyed hashing.
//!
//! Owns: Argon2id (RFC 9106) for passphrases, XChaCha20-Poly1305
//! (draft-irtf-cfrg-xchacha, over RFC 8439's ChaCha20-Poly1305) for every
//! sealed object and blob, keyed BLAKE3 for blob IDs, and zeroizing secrets.
//! Never touches: I/O, backends, the byte layout of records.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};
use crate::id::BlobId;

/// XChaCha20 nonce length in bytes.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length in bytes.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed box adds to its plaintext: nonce plus tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Length of every symmetric key.
pub const KEY_LEN: usize = 32;

/// Fill an array from the operating system's CSPRNG.
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // getrandom only fails if the OS has no entropy source at all; there is
    // nothing safe to fall back to, so that is a hard stop.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut out).expect("the operating system's random source failed");
    out
}

/// A 32-byte secret that is wiped from memory when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret32([u8; KEY_LEN]);

impl Secret32 {
    /// Wrap raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Secret32(bytes)
    }
    /// A fresh random secret.
    pub fn random() -> Self {
        Secret32(random_array())
    }
    /// The secret bytes (do not copy them into long-lived storage).
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(..)")
    }
}

pub use crate::format::keyfile::KdfParams;
use crate::format::keyfile::human_kib as mem;

/// Which Argon2id costs a key file must have for Cairn to try it.
///
/// Whoever writes a key file chooses its costs — on hostile storage, the
/// attacker. Below the floor, a planted key file turns opening into a cheap
/// passphrase-guessing oracle; above the ceiling, one open could take
/// hours of CPU and gigabytes of memory. Key files outside the limits are
/// skipped with a warning (FORMAT.md §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfLimits {
    /// Least memory, KiB.
    pub min_memory_kib: u32,
    /// Least work: memory (KiB) × passes.
    pub min_work: u64,
    /// Most memory, KiB.
    pub max_memory_kib: u32,
    /// Most passes.
    pub max_iterations: u32,
}

impl KdfLimits {
    /// The limits of every release build: no cheaper than the default cost
    /// (64 MiB, and 64 MiB × 3 passes of work, so RFC 9106's 2 GiB × 1 pass
    /// passes too), no dearer than 2 GiB or 20 passes.
    pub const STANDARD: KdfLimits = KdfLimits {
        min_memory_kib: KdfParams::DEFAULT.memory_kib,
        min_work: KdfParams::DEFAULT.memory_kib as u64 * KdfParams::DEFAULT.iterations as u64,
        max_memory_kib: 2 * 1024 * 1024,
        max_iterations: 20,
    };

    /// **Insecure**, test builds only (feature `insecure-test-kdf`): the
    /// floor drops to [`KdfParams::INSECURE_TEST`] (64 KiB, 1 pass).
    #[cfg(feature = "insecure-test-kdf")]
    pub const INSECURE_TEST: KdfLimits = KdfLimits {
        min_memory_kib: KdfParams::INSECURE_TEST.memory_kib,
        min_work: KdfParams::INSECURE_TEST.memory_kib as u64
            * KdfParams::INSECURE_TEST.iterations as u64,
        ..KdfLimits::STANDARD
    };

    /// The widest limits this build allows: [`KdfLimits::STANDARD`], or in
    /// a build with the test-only `insecure-test-kdf` feature,
    /// `KdfLimits::INSECURE_TEST`.
    pub fn widest() -> KdfLimits {
        #[cfg(feature = "insecure-test-kdf")]
        return KdfLimits::INSECURE_TEST;
        #[cfg(not(feature = "insecure-test-kdf"))]
        KdfLimits::STANDARD
    }

    /// `Err` with the reason if `p` is outside these limits.
    pub fn check(&self, p: &KdfParams) -> std::result::Result<(), String> {
        let work = u64::from(p.memory_kib) * u64::from(p.iterations);
        let floor = KdfParams {
            memory_kib: self.min_memory_kib,
            iterations: self
                .min_work
                .div_ceil(u64::from(self.min_memory_kib.max(1))) as u32,
            parallelism: 1,
        };
        if p.memory_kib < self.min_memory_kib || work < self.min_work {
            return Err(format!(
                "its cost ({p}) is below the minimum of {} MiB-passes with at least {} ({floor}), and a key this cheap makes guessing the passphrase cheap",
                self.min_work / 1024,
                mem(self.min_memory_kib)
            ));
        }
        if p.memory_kib > self.max_memory_kib || p.iterations > self.max_iterations {
            return Err(format!(
                "its cost ({p}) is above the maximum of {} and {} passes",
                mem(self.max_memory_kib),
                self.max_iterations
            ));
        }
        Ok(())
    }
}

/// The insecure test costs and the limits that admit them — only in builds
/// with the test-only `insecure-test-kdf` feature; `None` in every other
/// build, so no setting can give a release build cheap keys.
pub fn insecure_test_kdf() -> Option<(KdfParams, KdfLimits)> {
    #[cfg(feature = "insecure-test-kdf")]
    return Some((KdfParams::INSECURE_TEST, KdfLimits::INSECURE_TEST));
    #[cfg(not(feature = "insecure-test-kdf"))]
    None
}

impl Default for KdfLimits {
    /// [`KdfLimits::widest`].
    fn default() -> Self {
        KdfLimits::widest()
    }
}

/// Derive the key-wrapping key from a passphrase with Argon2id.
pub fn derive_wrapping_key(passphrase: &[u8], salt: &[u8], params: KdfParams) -> Result<Secret32> {
    params.validate()?;
    let p = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(KEY_LEN),
    )
    .map_err(|e| Error::malformed("key file", format!("Argon2id parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = [0u8; KEY_LEN];
    argon
        .hash_password_into(passphrase, salt, &mut out)
        .map_err(|e| Error::malformed("key file", format!("Argon2id: {e}")))?;
    let secret = Secret32(out);
    out.zeroize();
    Ok(secret)
}

/// An AEAD key: XChaCha20-Poly1305 with random 24-byte nonces.
///
/// A sealed box is `nonce (24) ‖ ciphertext ‖ tag (16)`; the associated data
/// binds the box to its kind and name so that boxes cannot be swapped.
#[derive(Clone)]
pub struct SealKey {
    cipher: XChaCha20Poly1305,
}

impl SealKey {
    /// A key from 32 secret bytes.
    pub fn new(key: &Secret32) -> Self {
        let mut k = Key::from(*key.expose());
        let cipher = XChaCha20Poly1305::new(&k);
        k.as_mut_slice().zeroize();
        // The cipher keeps its own copy and wipes it when dropped (the
        // crate's `zeroize` feature).
        SealKey { cipher }
    }

    /// Seal `plaintext`, appending the box to `out`.
    pub fn seal_into(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        // Nonces come from the thread-local CSPRNG (ChaCha12, seeded and
        // periodically reseeded from the OS): one system call per blob would
        // cost more than sealing a small blob.
        let mut nonce_bytes = [0u8; NONCE_LEN];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce_bytes);
        let start = out.len();
        out.reserve(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(plaintext);
        let nonce = XNonce::from(nonce_bytes);
        let body = &mut out[start + NONCE_LEN..];
        // Encryption only fails for messages longer than 256 GiB; every
        // sealed record is bounded far below that by the format's limits.
        #[allow(clippy::expect_used)]
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce, aad, body.into())
            .expect("XChaCha20-Poly1305 message length within limits");
        out.extend_from_slice(&tag);
    }

    /// Seal `plaintext` into a new buffer.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        self.seal_into(aad, plaintext, &mut out);
        out
    }

    /// Open a sealed box in place: on success `sealed` holds the plaintext.
    /// `what` names the object for the error message.
    pub fn open_in_place(&self, aad: &[u8], sealed: &mut Vec<u8>, what: &str) -> Result<()> {
        self.open_in_place_naming(aad, sealed, &|| what.to_string())
    }

    /// [`SealKey::open_in_place`], naming the box in an error by `what()`,
    /// called only then (a blob's name costs more to format than a small
    /// blob costs to open).
    pub fn open_in_place_naming(
        &self,
        aad: &[u8],
        sealed: &mut Vec<u8>,
        what: &dyn Fn() -> String,
    ) -> Result<()> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(Error::integrity(format!(
                "{}: sealed box too short ({} bytes)",
                what(),
                sealed.len()
            )));
        }
        let tag_start = sealed.len() - TAG_LEN;
        let mut nonce_bytes = [0u8; NONCE_LEN];
        nonce_bytes.copy_from_slice(&sealed[..NONCE_LEN]);
        let mut tag_bytes = [0u8; TAG_LEN];
        tag_bytes.copy_from_slice(&sealed[tag_start..]);
        let nonce = XNonce::from(nonce_bytes);
        let tag = Tag::from(tag_bytes);
        let body = &mut sealed[NONCE_LEN..tag_start];
        self.cipher
            .decrypt_inout_detached(&nonce, aad, body.into(), &tag)
            .map_err(|_| {
                Error::integrity(format!(
                    "{}: authentication failed (corrupt or tampered data, or a different key)",
                    what()
                ))
            })?;
        sealed.truncate(tag_start);
        sealed.drain(..NONCE_LEN);
        Ok(())
    }

    /// Open a sealed box into a new buffer.
    pub fn open(&self, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        let mut buf = sealed.to_vec();
        self.open_in_place(aad, &mut buf, what)?;
        Ok(buf)
    }
}

// Both wipe their key when dropped: the cipher through chacha20poly1305's
// `zeroize` feature, the ID key through `Secret32`.
impl ZeroizeOnDrop for SealKey {}
impl ZeroizeOnDrop for IdKey {}

/// The keyed hash that names blobs: BLAKE3 in keyed mode.
#[derive(Clone)]
pub struct IdKey(Secret32);

impl IdKey {
    /// A hasher from the repository's ID key.
    pub fn new(key: Secret32) -> Self {
        IdKey(key)
    }

    /// The ID of a blob's plaintext.
    pub fn blob_id(&self, data: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(self.0.expose(), data).as_bytes())
    }

    /// The ID of a large blob, hashed with BLAKE3's internal parallelism.
    pub fn blob_id_parallel(&self, data: &[u8]) -> BlobId {
        let mut h = blake3::Hasher::new_keyed(self.0.expose());
        h.update_rayon(data);
        BlobId(*h.finalize().as_bytes())
    }

    /// The raw key (for writing it into the config).
    pub fn secret(&self) -> &Secret32 {
        &self.0
    }
}

/// Derive a purpose-specific subkey from a master secret (BLAKE3 derive_key).
pub fn derive_subkey(context: &str, master: &Secret32) -> Secret32 {
    Secret32(blake3::derive_key(context, master.expose()))
}

/// Context string for the object and blob encryption key.
pub const CONTEXT_SEAL_KEY: &str = "cairn 2026-11 repository v1 seal key";
/// Context string for the key that seals a key file's information
/// (creation time, host, user) in key file version 2.
pub const CONTEXT_KEY_INFO: &str = "cairn 2026-12 key file v2 information key";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_at_boundary_lengths() {
        let key = SealKey::new(&Secret32::random());
        for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 4095, 4096, 4097] {
            let pt: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let sealed = key.seal(b"aad", &pt);
            assert_eq!(sealed.len(), len + SEAL_OVERHEAD);
            assert_eq!(key.open(b"aad", &sealed, "t").unwrap(), pt);
        }
    }

    #[test]
    fn open_rejects_wrong_aad_flipped_bits_and_short_input() {
        let key = SealKey::new(&Secret32::random());
        let sealed = key.seal(b"blob A", b"hello");
        assert!(key.open(b"blob B", &sealed, "t").is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            let err = key.open(b"blob A", &bad, "t").unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::Integrity);
        }
        for len in 0..SEAL_OVERHEAD {
            assert!(key.open(b"blob A", &sealed[..len], "t").is_err());
        }
        let other = SealKey::new(&Secret32::random());
        assert!(other.open(b"blob A", &sealed, "t").is_err());
    }

    #[test]
    fn nonces_are_fresh() {
        let key = SealKey::new(&Secret32::random());
        let a = key.seal(b"", b"same");
        let b = key.seal(b"", b"same");
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
    }

    #[test]
    fn kdf_rejects_hostile_parameters() {
        let bad = KdfParams {
            memory_kib: u32::MAX,
            iterations: 1,
            parallelism: 1,
        };
        assert!(derive_wrapping_key(b"pw", &[0; 16], bad).is_err());
        let zero = KdfParams {
            memory_kib: 64,
            iterations: 0,
            parallelism: 1,
        };
        assert!(derive_wrapping_key(b"pw", &[0; 16], zero).is_err());
    }

    #[test]
    fn kdf_is_deterministic_and_salted() {
        let p = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let a = derive_wrapping_key(b"pw", &[1; 16], p).unwrap();
        let b = derive_wrapping_key(b"pw", &[1; 16], p).unwrap();
        let c = derive_wrapping_key(b"pw", &[2; 16], p).unwrap();
        assert_eq!(a.expose(), b.expose());
        assert_ne!(a.expose(), c.expose());
    }

    /// Every type holding key material wipes it when dropped (checked by
    /// the type system: `ZeroizeOnDrop` is only implemented where the
    /// wiping is).
    #[test]
    fn secrets_are_wiped_on_drop() {
        fn wiped<T: ZeroizeOnDrop>() {}
        wiped::<Secret32>();
        wiped::<XChaCha20Poly1305>();
        wiped::<SealKey>();
        wiped::<IdKey>();
    }

    #[test]
    fn kdf_limits_floor_and_ceiling() {
        let s = KdfLimits::STANDARD;
        let p = |m: u32, t: u32| KdfParams {
            memory_kib: m,
            iterations: t,
            parallelism: 1,
        };
        assert!(s.check(&KdfParams::DEFAULT).is_ok());
        // RFC 9106's first recommended option: 2 GiB, 1 pass.
        assert!(s.check(&p(2 << 20, 1)).is_ok());
        assert!(s.check(&p(2 << 20, 20)).is_ok());
        for bad in [
            KdfParams::INSECURE_TEST,
            p(8, 1),
            p(65536, 2),
            p(65535, 3),
            p(32768, 1000),
            p(2 << 20 | 1, 1),
            p(65536, 21),
            p(4 << 20, 1000),
        ] {
            let e = s.check(&bad).unwrap_err();
            assert!(e.contains(&bad.to_string()), "{e}");
        }
        assert!(
            s.check(&KdfParams::INSECURE_TEST)
                .unwrap_err()
                .contains("below the minimum of 192 MiB-passes with at least 64 MiB (Argon2id 64 MiB, 3 passes, 1 lane)")
        );
        #[cfg(feature = "insecure-test-kdf")]
        {
            let t = KdfLimits::INSECURE_TEST;
            assert!(t.check(&KdfParams::INSECURE_TEST).is_ok());
            assert!(t.check(&p(8, 1)).is_err());
            assert!(t.check(&p(64, 21)).is_err());
            assert_eq!(KdfLimits::default(), t);
        }
    }

    #[test]
    fn blob_ids_depend_on_the_key() {
        let k1 = IdKey::new(Secret32::from_bytes([1; 32]));
        let k2 = IdKey::new(Secret32::from_bytes([2; 32]));
        assert_ne!(k1.blob_id(b"x"), k2.blob_id(b"x"));
        assert_eq!(k1.blob_id(b"x"), k1.blob_id_parallel(b"x"));
    }
}
