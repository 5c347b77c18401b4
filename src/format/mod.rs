//! Encode and decode every on-disk record: bytes in, bytes out.
//!
//! Owns: the byte layout described in `docs/FORMAT.md` (key file, config,
//! pack header, index file, tree node, snapshot, lock). Every decoder
//! rejects truncated, oversized or hostile input with an error and never
//! panics. Every encoder fails instead of truncating, and decodes its own
//! output before returning it, so Cairn never stores a record it cannot
//! read back. Never touches: I/O, backends, keys (sealing happens in `repo`).

pub mod config;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod pack;
pub mod snapshot;
pub mod tree;
pub mod wire;

/// An encoder's own output failed its decoder: the record holds a value the
/// format cannot carry, which is the caller's input error.
pub(crate) fn encode_error(record: &str, e: crate::error::Error) -> crate::error::Error {
    crate::error::Error::invalid(format!("cannot encode {record}: {e}"))
}

/// The repository format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Bytes a sealed box adds to its plaintext: a 24-byte XChaCha20 nonce and
/// a 16-byte Poly1305 tag (the format needs the number, not the cipher).
pub const SEAL_OVERHEAD: usize = 40;

/// Kind of a blob stored in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlobType {
    /// A chunk of file content.
    Data,
    /// A serialized directory node.
    Tree,
}

impl BlobType {
    /// The wire byte.
    pub fn to_byte(self) -> u8 {
        match self {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        }
    }
    /// Parse the wire byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(BlobType::Data),
            1 => Some(BlobType::Tree),
            _ => None,
        }
    }
    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        }
    }
}

/// How a blob's plaintext was transformed before sealing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Stored as is (it did not shrink).
    None,
    /// One zstd frame.
    Zstd,
}

impl Compression {
    /// The wire byte.
    pub fn to_byte(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
        }
    }
    /// Parse the wire byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Largest plaintext of one blob (data chunks are at most 16 MiB by the
/// chunker's limits; tree nodes of huge directories may be bigger).
pub const MAX_BLOB_LEN: u32 = 512 * 1024 * 1024;

/// Associated-data prefixes: each sealed box is bound to its kind and name.
pub mod aad {
    use super::{BlobType, Compression};
    use crate::id::BlobId;

    /// A blob: prefix ‖ type ‖ compression ‖ ID.
    pub fn blob(t: BlobType, c: Compression, id: &BlobId) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..14].copy_from_slice(b"cairn/blob/v1\0");
        out[14] = t.to_byte();
        out[15] = c.to_byte();
        out[16..].copy_from_slice(id.as_bytes());
        out
    }

    /// A named object (index, snapshot, lock, pack header): prefix ‖ name.
    pub fn object(prefix: &'static [u8; 16], name: &[u8; 32]) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..16].copy_from_slice(prefix);
        out[16..].copy_from_slice(name);
        out
    }

    /// Prefix for pack headers.
    pub const PACK_HEADER: &[u8; 16] = b"cairn/packhdr/1\0";
    /// Prefix for index files.
    pub const INDEX: &[u8; 16] = b"cairn/index/v1\0\0";
    /// Prefix for snapshots.
    pub const SNAPSHOT: &[u8; 16] = b"cairn/snapshot/1";
    /// Prefix for lock files.
    pub const LOCK: &[u8; 16] = b"cairn/lock/v1\0\0\0";
}
