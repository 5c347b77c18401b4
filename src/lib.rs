//! Cairn: an encrypted, deduplicating, content-addressed snapshot engine.
//!
//! Layering, bottom up (each layer only uses the ones before it; see
//! `docs/ARCHITECTURE.md`, enforced by `tests/layering.rs`):
//!
//! | module | owns |
//! |---|---|
//! | [`error`], [`id`] | the error type; 32-byte ID newtypes |
//! | [`cancel`], [`observer`] | stopping an operation; warnings and events for the caller |
//! | [`crypto`] | Argon2id, XChaCha20-Poly1305, keyed BLAKE3, zeroized secrets |
//! | [`format`] | byte layout of every record; no I/O, no keys |
//! | [`chunker`] | FastCDC cut points with a keyed gear table |
//! | [`backend`] | named objects on storage; never sees keys |
//! | [`index`] | compact blob → location map |
//! | [`repo`] | composes the above: keys, config, packs, index files, locks, typed states |
//! | [`source`] | filesystem metadata, excludes, reading content |
//! | [`ops`] | backup, restore, check, prune, forget, copy, repair, walking snapshots |
//!
//! The library prints nothing and reads no environment: the caller passes
//! options, an [`observer::Observer`] for warnings and an [`ops::Progress`]
//! for progress. The `cairn` binary (`src/main.rs`, `src/cli/`, behind the
//! default `cli` feature) is one such caller.
//!
//! The on-disk format is specified in `docs/FORMAT.md`.

#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![warn(missing_docs)]

pub mod backend;
pub mod cancel;
pub mod chunker;
pub mod crypto;
pub mod error;
pub mod failpoint;
pub mod format;
pub mod id;
pub mod index;
pub mod observer;
pub mod ops;
pub mod repo;
pub mod serve;
pub mod source;

pub use error::{Error, ErrorKind, Result};
