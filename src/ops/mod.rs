//! Operations: one module per command-level operation.
//!
//! Each takes its `XxxOptions` and a progress sink, composes the repository
//! layer, and returns a result for the CLI to print. Never touches: argument
//! parsing, output formatting, bytes on the wire.

pub mod backup;
pub mod restore;
pub mod walk;

use std::path::Path;

use crate::error::Error;

/// Receives progress events from long operations. Every method has a
/// no-op default; the CLI implements what it shows.
pub trait Progress: Sync {
    /// A file's content was processed (`bytes` of it).
    fn file_done(&self, _path: &Path, _bytes: u64) {}
    /// An entry could not be processed; the operation goes on without it.
    fn error(&self, _path: &Path, _error: &Error) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}
