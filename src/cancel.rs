//! Cancellation: a request to stop an operation early, shared between
//! whoever may ask (a signal handler, a server, the lock refresher) and
//! the operation, which polls it between files and chunks and at every
//! commit point.
//!
//! Never touches: what the operation does when asked; it decides.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorKind, Result};

/// A request to stop an operation early. A stopped backup indexes what it
/// stored and writes no snapshot; the next run reuses the stored data.
///
/// A token cancelled with [`CancelToken::cancel`] (Ctrl-C) reports
/// [`ErrorKind::Interrupted`]; one cancelled with
/// [`CancelToken::cancel_because`] (the lock guard, when its lock can no
/// longer be trusted) reports that error instead.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    flag: Arc<AtomicBool>,
    reason: Arc<Mutex<Option<(ErrorKind, String)>>>,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Ask the operation to stop.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }
    /// Ask the operation to stop, failing with this error (the first
    /// reason given stays).
    pub fn cancel_because(&self, kind: ErrorKind, message: String) {
        {
            let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
            if r.is_none() {
                *r = Some((kind, message));
            }
        }
        self.cancel();
    }
    /// True once the token was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
    /// The flag itself (for signal handlers that set it).
    pub fn flag(&self) -> &Arc<AtomicBool> {
        &self.flag
    }
    /// An error if cancelled: the reason given, or *interrupted*.
    pub fn check(&self) -> Result<()> {
        if !self.is_cancelled() {
            return Ok(());
        }
        if let Some((kind, msg)) = &*self.reason.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(Error::new(*kind, msg.clone()));
        }
        Err(Error::new(ErrorKind::Interrupted, "interrupted"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_given_is_the_error_reported() {
        let t = CancelToken::new();
        t.check().unwrap();
        let copy = t.clone();
        copy.cancel_because(ErrorKind::LockLost, "the lock was removed".into());
        let e = t.check().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LockLost);
        assert!(e.to_string().contains("was removed"), "{e}");
        let plain = CancelToken::new();
        plain.cancel();
        assert_eq!(plain.check().unwrap_err().kind(), ErrorKind::Interrupted);
    }
}
