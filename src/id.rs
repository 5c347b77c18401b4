//! Identifiers: 32-byte IDs for blobs, packs, snapshots, index files and keys.
//!
//! Owns: the newtypes, their hex form and constant-time equality. A bare
//! `[u8; 32]` is never passed between modules.

use std::fmt;

use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// Length of every identifier, in bytes.
pub const ID_LEN: usize = 32;

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Eq, PartialOrd, Ord)]
        pub struct $name(pub [u8; ID_LEN]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }

            /// Lower-case hex, 64 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex characters, as shown to users.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }

            /// Parse 64 hex characters.
            pub fn from_hex(s: &str) -> Result<Self> {
                let mut out = [0u8; ID_LEN];
                hex::decode_to_slice(s, &mut out).map_err(|_| {
                    Error::invalid(format!("not a 64-character hex ID: {s:?}"))
                })?;
                Ok(Self(out))
            }

            /// A fresh random ID.
            pub fn random() -> Self {
                Self(crate::crypto::random_array())
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0).into()
            }
        }

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.0.hash(state)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

define_id!(
    /// A blob's ID: keyed BLAKE3 of its plaintext (data chunk or tree node).
    BlobId
);
define_id!(
    /// A pack file's ID (random).
    PackId
);
define_id!(
    /// A snapshot's ID (random).
    SnapshotId
);
define_id!(
    /// An index file's ID (random).
    IndexId
);
define_id!(
    /// A key file's ID (random).
    KeyId
);
define_id!(
    /// A lock file's ID (random).
    LockId
);
