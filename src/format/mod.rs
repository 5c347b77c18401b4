//! Encode and decode every on-disk record: bytes in, bytes out.
//!
//! Owns: the byte layout described in `docs/FORMAT.md` (key file, config,
//! pack header, index file, tree node, snapshot, lock). Every decoder
//! rejects truncated, oversized or hostile input with an error and never
//! panics. Every encoder fails instead of truncating, and decodes its own
//! output before returning it, so Cairn never stores a record it cannot
//! read back. Never touches: I/O, backends, keys (sealing happens in `repo`).

pub mod chunklist;
pub mod config;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod pack;
pub mod snapshot;
pub mod suspect;
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

/// Largest stored size of each object kind a reader accepts, checked
/// against the object's size *before* it is read (FORMAT.md §3.1): a
/// hostile or damaged object cannot make Cairn allocate more than this
/// before authentication fails. Writers refuse to store larger objects.
pub mod caps {
    /// The config: 152 bytes in version 1.
    pub const CONFIG: u64 = 4096;
    /// A key file: at most 809 bytes in version 2.
    pub const KEY_FILE: u64 = super::keyfile::MAX_KEY_FILE_LEN as u64;
    /// A lock: 64 bytes plus the host and user names.
    pub const LOCK: u64 = 4096;
    /// An index file. Backups write one per 100 000 new blobs (≈ 4.6 MB),
    /// prune one per 1 000 000 blobs (≈ 46 MB) or 4096 packs.
    pub const INDEX_FILE: u64 = 1 << 30;
    /// A snapshot: a few hundred bytes plus its paths, tags and extensions.
    pub const SNAPSHOT: u64 = 64 << 20;
    /// A pack's sealed header: the 5-byte header, 42 bytes for each of at
    /// most 1 048 576 entries, and the seal (≈ 42 MiB).
    pub const PACK_HEADER: u64 = (5
        + super::pack::HEADER_ENTRY_LEN * super::pack::MAX_BLOBS_PER_PACK
        + super::SEAL_OVERHEAD) as u64;

    /// The cap of a named object sealed with an associated-data `prefix`
    /// (see [`super::aad`]).
    pub fn for_object(prefix: &[u8; 16]) -> u64 {
        match prefix {
            p if p == super::aad::LOCK => LOCK,
            p if p == super::aad::INDEX => INDEX_FILE,
            p if p == super::aad::SNAPSHOT => SNAPSHOT,
            p if p == super::aad::PACK_HEADER => PACK_HEADER,
            _ => SNAPSHOT,
        }
    }
}

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
