//! Typed repository states: what an operation needs is in its signature.
//!
//! ```text
//! Repository ──lock_shared()────► SharedLock<'r> ──load_index()──► Indexed<'l>
//!  (opened:    lock_exclusive()─► ExclusiveLock<'r> (derefs to a SharedLock)
//!   keys,
//!   config)
//! ```
//!
//! - A [`SharedLock`] holds a shared repository lock for as long as it
//!   lives, and the [`CancelToken`] that stops the operation: cancelled by
//!   the caller (Ctrl-C) or by the lock itself when it can no longer be
//!   trusted (a refresh failed or came too late, the lock object was
//!   removed). Operations that add data or only read take one: backup,
//!   check, copy, restore.
//! - An [`ExclusiveLock`] is a shared lock that also excludes every other
//!   holder; it derefs to a [`SharedLock`], so it serves wherever one does.
//!   Operations that delete take one: prune, forget, `repair index`.
//! - An [`Indexed`] is a view of a locked repository whose index was
//!   loaded under that lock; operations that read blobs take one
//!   (restore, the source of a copy). Operations that load the index in
//!   their own way (backup and copy trust only packs that are present;
//!   check and prune read every index file) take the lock instead.
//!
//! Misuse does not compile. `ops::prune` needs an exclusive lock:
//!
//! ```compile_fail,E0308
//! # fn f(repo: &mut cairn::repo::Repository) -> cairn::Result<()> {
//! use cairn::ops::prune::{PruneOptions, prune};
//! let mut lock = repo.lock_shared()?;
//! let opts = PruneOptions { max_unused: 0.05, dry_run: false };
//! prune(&mut lock, &opts, &cairn::ops::NoProgress)?; // a SharedLock is not enough
//! # Ok(()) }
//! ```
//!
//! ```no_run
//! # fn f(repo: &mut cairn::repo::Repository) -> cairn::Result<()> {
//! use cairn::ops::prune::{PruneOptions, prune};
//! let mut lock = repo.lock_exclusive()?;
//! let opts = PruneOptions { max_unused: 0.05, dry_run: false };
//! prune(&mut lock, &opts, &cairn::ops::NoProgress)?;
//! # Ok(()) }
//! ```
//!
//! `ops::restore` needs the index, loaded under a lock:
//!
//! ```compile_fail,E0308
//! # fn f(repo: &mut cairn::repo::Repository, opts: &cairn::ops::restore::RestoreOptions,
//! #      root: &cairn::ops::restore::RestoreRoot) -> cairn::Result<()> {
//! let lock = repo.lock_shared()?;
//! cairn::ops::restore::restore(&lock, root, b"/", opts, &cairn::ops::NoProgress)?; // no index
//! # Ok(()) }
//! ```
//!
//! ```compile_fail,E0308
//! # fn f(repo: &mut cairn::repo::Repository, opts: &cairn::ops::restore::RestoreOptions,
//! #      root: &cairn::ops::restore::RestoreRoot) -> cairn::Result<()> {
//! repo.load_index()?; // loaded, but under no lock
//! cairn::ops::restore::restore(repo, root, b"/", opts, &cairn::ops::NoProgress)?;
//! # Ok(()) }
//! ```
//!
//! ```no_run
//! # fn f(repo: &mut cairn::repo::Repository, opts: &cairn::ops::restore::RestoreOptions,
//! #      root: &cairn::ops::restore::RestoreRoot) -> cairn::Result<()> {
//! let mut lock = repo.lock_shared()?;
//! let index = lock.load_index()?;
//! cairn::ops::restore::restore(&index, root, b"/", opts, &cairn::ops::NoProgress)?;
//! # Ok(()) }
//! ```
//!
//! Engine code below the entry points keeps taking `&Repository` (every
//! state derefs to it). Never touches: what operations do under the lock.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use super::Repository;
use super::lock::{CommitGate, RepoLock};
use crate::cancel::CancelToken;
use crate::error::Result;

impl Repository {
    /// Take a shared lock (waiting up to [`Repository::lock_wait`] for an
    /// exclusive holder), with a new cancellation token.
    pub fn lock_shared(&mut self) -> Result<SharedLock<'_>> {
        self.lock_shared_with(CancelToken::new())
    }

    /// Take a shared lock that cancels `cancel` when it is lost, and stops
    /// when `cancel` is cancelled.
    pub fn lock_shared_with(&mut self, cancel: CancelToken) -> Result<SharedLock<'_>> {
        let held = RepoLock::acquire_cancelling(self, false, cancel)?;
        Ok(SharedLock { repo: self, held })
    }

    /// Take an exclusive lock (waiting up to [`Repository::lock_wait`] for
    /// other holders), with a new cancellation token.
    pub fn lock_exclusive(&mut self) -> Result<ExclusiveLock<'_>> {
        self.lock_exclusive_with(CancelToken::new())
    }

    /// Take an exclusive lock that cancels `cancel` when it is lost.
    pub fn lock_exclusive_with(&mut self, cancel: CancelToken) -> Result<ExclusiveLock<'_>> {
        // Everything that needs the exclusive lock deletes something.
        self.require_deletes()?;
        let held = RepoLock::acquire_cancelling(self, true, cancel)?;
        Ok(ExclusiveLock {
            inner: SharedLock { repo: self, held },
        })
    }
}

/// A repository with a lock held on it (shared, or exclusive when inside
/// an [`ExclusiveLock`]); the lock is released when this is dropped.
pub struct SharedLock<'r> {
    repo: &'r mut Repository,
    held: RepoLock,
}

impl<'r> SharedLock<'r> {
    /// Load every index file into the repository's index, under this lock
    /// (no prune can delete a pack it lists while the lock is held).
    pub fn load_index(&mut self) -> Result<Indexed<'_>> {
        self.repo.load_index()?;
        Ok(Indexed { lock: self })
    }

    /// The lock itself (its ID, its storage time).
    pub fn held(&self) -> &RepoLock {
        &self.held
    }

    /// The token that stops the operation; hand it to whatever may ask it
    /// to stop (a signal handler). The lock cancels it when it is lost.
    pub fn cancel_token(&self) -> &CancelToken {
        self.held.cancel_token()
    }

    /// True for an exclusive lock.
    pub fn is_exclusive(&self) -> bool {
        self.held.is_exclusive()
    }

    /// Cheap, no I/O: fails once the lock is lost
    /// ([`crate::ErrorKind::LockLost`]) or the operation was cancelled
    /// ([`crate::ErrorKind::Interrupted`]). Poll it between units of work.
    pub fn check(&self) -> Result<()> {
        self.held.check()?;
        self.cancel_token().check()
    }

    /// Before a commit: [`SharedLock::check`], and the lock object is still
    /// on the storage.
    pub fn verify(&self) -> Result<()> {
        self.check()?;
        self.held.verify()
    }

    /// The lock's gate, for commit points in other threads (the packer's
    /// writers). It asks the lock only, not the cancellation: a cancelled
    /// backup still indexes what it stored.
    pub fn gate(&self) -> Arc<dyn CommitGate> {
        self.held.gate()
    }

    /// The repository and the lock, apart: for engine code that mutates
    /// the repository (reloads its index) while asking the lock.
    pub(crate) fn parts(&mut self) -> (&mut Repository, &RepoLock) {
        (self.repo, &self.held)
    }
}

impl Deref for SharedLock<'_> {
    type Target = Repository;
    fn deref(&self) -> &Repository {
        self.repo
    }
}

/// A repository with an exclusive lock held on it. Derefs to the
/// [`SharedLock`] it is: whatever a shared lock allows, this allows too.
pub struct ExclusiveLock<'r> {
    inner: SharedLock<'r>,
}

impl<'r> Deref for ExclusiveLock<'r> {
    type Target = SharedLock<'r>;
    fn deref(&self) -> &SharedLock<'r> {
        &self.inner
    }
}

impl<'r> DerefMut for ExclusiveLock<'r> {
    fn deref_mut(&mut self) -> &mut SharedLock<'r> {
        &mut self.inner
    }
}

/// A locked repository whose index was loaded under the lock: what
/// operations that read blobs need. Copy it freely; it borrows the lock.
#[derive(Clone, Copy)]
pub struct Indexed<'l> {
    lock: &'l SharedLock<'l>,
}

impl<'l> Indexed<'l> {
    /// The lock the index was loaded under.
    pub fn lock(&self) -> &'l SharedLock<'l> {
        self.lock
    }
}

impl Deref for Indexed<'_> {
    type Target = Repository;
    fn deref(&self) -> &Repository {
        self.lock.repo
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn repo() -> Repository {
        crate::repo::test_repo()
    }

    #[test]
    fn guards_hold_their_lock_until_dropped() {
        let mut r = repo();
        let backend = Arc::clone(r.backend());
        {
            let x = r.lock_exclusive().unwrap();
            assert!(x.is_exclusive());
            assert_eq!(backend.list("locks").unwrap().len(), 1);
            x.verify().unwrap();
        }
        assert!(backend.list("locks").unwrap().is_empty());
        let mut s = r.lock_shared().unwrap();
        assert!(!s.is_exclusive());
        let index = s.load_index().unwrap();
        assert_eq!(index.index().packs().len(), 0);
    }

    /// A lock found lost cancels the guard's token: the operation stops at
    /// its next poll with *lock lost*, not only at its next commit.
    #[test]
    fn a_lost_lock_cancels_the_operation_with_its_reason() {
        let mut r = repo();
        let backend = Arc::clone(r.backend());
        let cancel = CancelToken::new();
        let s = r.lock_shared_with(cancel.clone()).unwrap();
        s.check().unwrap();
        let name = super::super::lock::lock_name(&s.held().id());
        backend.delete(&name).unwrap();
        assert_eq!(s.verify().unwrap_err().kind(), ErrorKind::LockLost);
        let e = cancel.check().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LockLost, "{e}");
        assert!(e.to_string().contains("was removed"), "{e}");
        assert_eq!(s.check().unwrap_err().kind(), ErrorKind::LockLost);
    }

    /// Cancelled by the caller: *interrupted*, while the lock still holds
    /// (the gate lets a cancelled backup index what it stored).
    #[test]
    fn a_cancelled_operation_is_interrupted_and_its_gate_still_opens() {
        let mut r = repo();
        let s = r.lock_shared().unwrap();
        s.cancel_token().cancel();
        assert_eq!(s.check().unwrap_err().kind(), ErrorKind::Interrupted);
        s.gate().verify().unwrap();
    }
}
