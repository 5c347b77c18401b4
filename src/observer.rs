//! What the engine tells its caller while it works, other than results:
//! warnings (a key file skipped, a snapshot unreadable, a lock passed
//! over) and events (waiting for a lock).
//!
//! The library never prints. The caller passes an [`Observer`] when it
//! opens a repository ([`crate::repo::OpenOptions::observer`]); the opened
//! repository holds it, so code deep in the engine (the lock refresher
//! thread, the index loader) reaches it. The command line prints what it
//! receives on standard error; a server would log it or send it to its
//! client. Progress of long operations goes through
//! [`crate::ops::Progress`] instead, which each operation takes.
//!
//! Never touches: output, the environment.

use std::sync::Arc;

use crate::error::Error;

/// Receives warnings and events. Every method has a no-op default.
/// Called from any thread (the lock refresher runs in its own).
pub trait Observer: Send + Sync {
    /// Something is wrong, but the operation goes on without it. The
    /// message is one sentence, without a "warning:" prefix.
    fn warning(&self, _message: &str) {}
    /// Taking a lock waits for another holder (`why` names it); said once
    /// per wait.
    fn waiting_for_lock(&self, _why: &Error) {}
}

/// An observer that ignores everything (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// The default observer, shared.
pub fn none() -> Arc<dyn Observer> {
    Arc::new(NoObserver)
}

/// An observer that keeps every warning, for tests and for callers that
/// report warnings with their result.
#[derive(Debug, Default)]
pub struct Collect {
    warnings: std::sync::Mutex<Vec<String>>,
}

impl Collect {
    /// The warnings received so far.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Observer for Collect {
    fn warning(&self, message: &str) {
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message.to_string());
    }
}
