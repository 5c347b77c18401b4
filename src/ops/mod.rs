//! Operations: one module per command-level operation.
//!
//! Each takes its `XxxOptions` and a progress sink, composes the repository
//! layer, and returns a result for the CLI to print. Never touches: argument
//! parsing, output formatting, bytes on the wire.

pub mod backup;
pub mod check;
pub mod copy;
pub mod diff;
pub mod find;
pub mod forget;
pub mod mount;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod rewrite;
pub mod sql;
pub mod stats;
pub mod verify;
pub mod walk;

use std::path::Path;
use std::sync::OnceLock;

use crate::error::Error;

/// Deepest directory nesting walked. A path of at most 4096 bytes (Linux's
/// `PATH_MAX`) has at most 2048 components, so no backup produces deeper
/// trees; a deeper tree is hostile and refused (recursion would otherwise
/// exhaust the stack).
pub const MAX_TREE_DEPTH: usize = 2048;

/// Stack of each worker thread: enough for `MAX_TREE_DEPTH` levels of
/// recursion (reserved address space; pages are committed as used).
const WORKER_STACK: usize = 64 * 1024 * 1024;

/// Run `f` on Cairn's worker pool: rayon threads (one per core, or
/// `RAYON_NUM_THREADS`) with stacks deep enough for the deepest tree.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .stack_size(WORKER_STACK)
            .thread_name(|i| format!("cairn-worker-{i}"))
            .build()
            .ok()
    });
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// Nesting depth of a `/`-separated relative path ("" is 0).
pub fn depth(rel: &[u8]) -> usize {
    rel.split(|&b| b == b'/').filter(|c| !c.is_empty()).count()
}

/// Receives progress events from long operations. Every method has a
/// no-op default; the CLI implements what it shows.
pub trait Progress: Sync {
    /// Work on a file begins (backup: it is about to be read).
    fn file_started(&self, _path: &Path) {}
    /// A file is done; `bytes` of its content were not already reported
    /// through `advance` (large files and databases report theirs as they
    /// are read or written).
    fn file_done(&self, _path: &Path, _bytes: u64) {}
    /// An entry could not be processed; the operation goes on without it.
    fn error(&self, _path: &Path, _error: &Error) {}
    /// A phase of the operation begins ("read data", "repack", "copy"),
    /// with its totals when they are known. Later `advance` calls count
    /// towards it.
    fn start(&self, _phase: &str, _items: Option<u64>, _bytes: Option<u64>) {}
    /// Items and bytes of the current phase are done.
    fn advance(&self, _items: u64, _bytes: u64) {}
}

pub use crate::cancel::CancelToken;

/// A progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}
