//! Repository locks: shared for operations that only add or read, exclusive
//! for operations that delete.
//!
//! A lock is a sealed object `locks/<id>` naming host, user, PID and time.
//! It is refreshed every five minutes while held; a lock not refreshed for
//! thirty minutes, or held by a dead process on this host, is stale and
//! ignored with a warning.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Repository;
use crate::backend::Backend;
use crate::crypto::SealKey;
use crate::error::{Error, ErrorKind, Result};
use crate::format::aad;
use crate::format::lock::Lock;
use crate::id::LockId;

/// A lock older than this is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is refreshed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// The object name of a lock.
pub fn lock_name(id: &LockId) -> String {
    format!("locks/{}", id.to_hex())
}

/// Why a lock is stale, or `None` if it is live.
pub fn stale_reason(l: &Lock, now: i64, this_host: &str) -> Option<String> {
    let age = now.saturating_sub(l.time_ns);
    if age > STALE_AFTER.as_nanos() as i64 {
        return Some(format!(
            "not refreshed for {} minutes",
            age / 60_000_000_000
        ));
    }
    if l.hostname == this_host && !process_alive(l.pid) {
        return Some(format!("process {} on this host is gone", l.pid));
    }
    None
}

fn process_alive(pid: u32) -> bool {
    // A PID that does not fit a positive i32 (a hostile or corrupt lock)
    // names no process.
    let Some(pid) = i32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e != rustix::io::Errno::SRCH,
    }
}

/// Every lock in the repository that is live, with its ID. Stale and
/// unreadable locks are skipped, with a warning if `warn`.
pub fn live_locks(repo: &Repository, warn: bool) -> Result<Vec<(LockId, Lock)>> {
    let host = super::hostname();
    let now = now_ns();
    let mut out = Vec::new();
    for o in repo.backend().list("locks")? {
        let Some(id) = o
            .name
            .strip_prefix("locks/")
            .and_then(|h| LockId::from_hex(h).ok())
        else {
            continue;
        };
        let lock = match repo
            .load_object(aad::LOCK, &o.name, id.as_bytes())
            .and_then(|b| Lock::from_bytes(&b))
        {
            Ok(l) => l,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                if warn {
                    eprintln!("warning: ignoring unreadable lock {}: {e}", o.name);
                }
                continue;
            }
        };
        if let Some(why) = stale_reason(&lock, now, &host) {
            if !warn {
                continue;
            }
            eprintln!(
                "warning: ignoring stale lock {} held by PID {} on {} ({why})",
                id.short(),
                lock.pid,
                lock.hostname
            );
            continue;
        }
        out.push((id, lock));
    }
    Ok(out)
}

/// A held lock; released when dropped.
pub struct RepoLock {
    backend: Arc<dyn Backend>,
    name: String,
    stop: Arc<(Mutex<bool>, Condvar)>,
    refresher: Option<JoinHandle<()>>,
}

impl RepoLock {
    /// Take a shared or exclusive lock, waiting up to the repository's lock
    /// wait for conflicting holders, or fail with [`ErrorKind::Locked`].
    pub fn acquire(repo: &Repository, exclusive: bool) -> Result<RepoLock> {
        let deadline = std::time::Instant::now() + repo.lock_wait();
        let mut warned = false;
        loop {
            match Self::try_acquire(repo, exclusive, !warned) {
                Err(e) if e.kind() == ErrorKind::Locked && std::time::Instant::now() < deadline => {
                    if !warned {
                        eprintln!("waiting for the repository lock: {e}");
                        warned = true;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// One attempt at taking the lock.
    fn try_acquire(repo: &Repository, exclusive: bool, warn: bool) -> Result<RepoLock> {
        let conflict = |locks: &[(LockId, Lock)], ours: Option<&LockId>| {
            locks
                .iter()
                .find(|(id, l)| Some(id) != ours && (exclusive || l.exclusive))
                .map(|(_, l)| {
                    Error::new(
                        ErrorKind::Locked,
                        format!(
                            "repository {} is locked {} by PID {} on {} (user {}) since {}; \
                             wait for it to finish, or run `cairn unlock` if it is gone",
                            repo.backend().location(),
                            if l.exclusive { "exclusively" } else { "" },
                            l.pid,
                            l.hostname,
                            l.username,
                            jiff::Timestamp::from_nanosecond(i128::from(l.time_ns))
                                .map(|t| t.to_string())
                                .unwrap_or_default()
                        )
                        .replace("locked  by", "locked by"),
                    )
                })
        };
        if let Some(e) = conflict(&live_locks(repo, warn)?, None) {
            return Err(e);
        }
        let id = LockId::random();
        let name = lock_name(&id);
        let lock = Lock {
            exclusive,
            time_ns: now_ns(),
            hostname: super::hostname(),
            username: super::username(),
            pid: std::process::id(),
        };
        repo.save_object(aad::LOCK, &name, id.as_bytes(), &lock.to_bytes()?)?;
        // Another process may have locked at the same time: look again.
        if let Some(e) = conflict(&live_locks(repo, false)?, Some(&id)) {
            let _ = repo.backend().delete(&name);
            return Err(e);
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let refresher = {
            let stop = Arc::clone(&stop);
            let backend = Arc::clone(repo.backend());
            let seal: SealKey = repo.seal_key().clone();
            let name = name.clone();
            std::thread::spawn(move || refresh_loop(&stop, &*backend, &seal, &name, id, lock))
        };
        Ok(RepoLock {
            backend: Arc::clone(repo.backend()),
            name,
            stop,
            refresher: Some(refresher),
        })
    }
}

fn refresh_loop(
    stop: &(Mutex<bool>, Condvar),
    backend: &dyn Backend,
    seal: &SealKey,
    name: &str,
    id: LockId,
    mut lock: Lock,
) {
    let (m, cv) = stop;
    let mut stopped = m.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        // Check before every wait: a stop requested before this thread first
        // waited must not be lost (it would hold the lock for a whole period).
        if *stopped {
            return;
        }
        let (g, timeout) = cv
            .wait_timeout(stopped, REFRESH_EVERY)
            .unwrap_or_else(|p| p.into_inner());
        stopped = g;
        if *stopped {
            return;
        }
        if timeout.timed_out() {
            lock.time_ns = now_ns();
            let stored = lock.to_bytes().and_then(|plain| {
                let sealed = seal.seal(&aad::object(aad::LOCK, id.as_bytes()), &plain);
                backend.put(name, &sealed)
            });
            if let Err(e) = stored {
                eprintln!("warning: cannot refresh lock {name}: {e}");
            }
        }
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        {
            let (m, cv) = &*self.stop;
            *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        if let Err(e) = self.backend.delete(&self.name) {
            eprintln!("warning: cannot remove lock {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mem::MemBackend;
    use crate::repo::InitOptions;

    fn repo() -> Repository {
        let opts = InitOptions {
            kdf: crate::crypto::KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            ..InitOptions::default()
        };
        Repository::init(Arc::new(MemBackend::new()), b"pw", &opts).unwrap()
    }

    /// Regression: dropping a lock before its refresher thread first waited
    /// used to block the drop for a whole refresh period (5 minutes).
    #[test]
    fn a_lock_dropped_at_once_is_released_at_once() {
        let r = repo();
        let start = std::time::Instant::now();
        for _ in 0..20 {
            drop(RepoLock::acquire(&r, false).unwrap());
        }
        assert!(start.elapsed() < Duration::from_secs(60), "lock drop hangs");
        assert!(r.backend().list("locks").unwrap().is_empty());
    }

    #[test]
    fn shared_locks_coexist_and_exclusive_conflicts() {
        let r = repo();
        let a = RepoLock::acquire(&r, false).unwrap();
        let b = RepoLock::acquire(&r, false).unwrap();
        let err = RepoLock::acquire(&r, true).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Locked);
        drop((a, b));
        let x = RepoLock::acquire(&r, true).unwrap();
        assert_eq!(
            RepoLock::acquire(&r, false).err().unwrap().kind(),
            ErrorKind::Locked
        );
        drop(x);
        drop(RepoLock::acquire(&r, false).unwrap());
    }

    #[test]
    fn stale_locks_are_recognised() {
        let now = now_ns();
        let mut l = Lock {
            exclusive: true,
            time_ns: now,
            hostname: "elsewhere".into(),
            username: "u".into(),
            pid: 1,
        };
        assert!(stale_reason(&l, now, "here").is_none());
        l.time_ns = now - 31 * 60 * 1_000_000_000;
        assert!(stale_reason(&l, now, "here").is_some());
        l.time_ns = now;
        l.hostname = "here".into();
        l.pid = u32::MAX - 1; // no such process
        assert!(stale_reason(&l, now, "here").is_some());
        l.pid = std::process::id();
        assert!(stale_reason(&l, now, "here").is_none());
    }
}
