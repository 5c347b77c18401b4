//! Repository locks: shared for operations that only add or read, exclusive
//! for operations that delete; and the commit gate through which a lock
//! holder asks, before each commit, whether its lock still holds.
//!
//! A lock is a sealed object `locks/<id>` naming host, user, PID, boot ID,
//! PID namespace and time (FORMAT.md §5.7). The rules (FORMAT.md §7.9):
//!
//! - **Age is judged by the storage's clock.** A lock is stale by age when
//!   its object's modification time, as the backend lists it, is more than
//!   [`STALE_AFTER`] before the time of an object the observer itself just
//!   wrote (its own lock, or a probe). The time recorded inside a lock comes
//!   from its holder's clock, which may be hours off; it is only shown.
//! - **Stale by PID only where a PID means something**: the lock records
//!   the observer's host name, boot ID *and* PID namespace, and no such
//!   process exists. Another container or PID namespace on the same host,
//!   or a lock from before boot IDs were recorded, is never stale by PID.
//! - **Unreadable locks are live for exclusive operations** (they may be
//!   anyone's); shared operations pass them with a warning, and `unlock`
//!   removes them only with `--remove-all`.
//! - **A held lock is refreshed every [`REFRESH_EVERY`]**, and its holder
//!   trusts it for [`TRUST_FOR`] after the last successful refresh, measured
//!   on the wall clock as well as the monotonic one (so a suspend or a
//!   `SIGSTOP` counts). A refresh that fails, finds the lock object gone, or
//!   comes too late cancels the lock for good; every commit point asks
//!   [`RepoLock::verify`] (or the [`CommitGate`] the packer holds) first,
//!   which also confirms that the object is still on the storage.
//!
//! Never touches: what the operations commit; they ask the gate.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::Repository;
use crate::backend::Backend;
use crate::cancel::CancelToken;
use crate::crypto::SealKey;
use crate::error::{Error, ErrorKind, Result};
use crate::format::aad;
use crate::format::lock::{BOOT_ID_LEN, Lock};
use crate::id::LockId;
use crate::observer::Observer;

/// A lock whose object was last written longer ago than this, by the
/// storage's clock, is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is refreshed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// How long a holder trusts its lock after the last successful refresh:
/// the stale age less one and a half refresh periods, so that it stops
/// committing well before anyone else may take the lock for stale.
pub const TRUST_FOR: Duration = Duration::from_secs(30 * 60 - 3 * 5 * 60 / 2);

const NS_PER_MINUTE: i64 = 60_000_000_000;

fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The object name of a lock.
pub fn lock_name(id: &LockId) -> String {
    format!("locks/{}", id.to_hex())
}

/// Where the process looking at locks runs: what a recorded PID must share
/// with it before the PID can be tested here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vantage {
    /// Host name.
    pub hostname: String,
    /// Boot ID of the running kernel; zeros if unknown.
    pub boot_id: [u8; BOOT_ID_LEN],
    /// Inode of this process's PID namespace; 0 if unknown.
    pub pid_ns: u64,
}

impl Vantage {
    /// This process.
    pub fn this_process() -> Vantage {
        static IDS: OnceLock<([u8; BOOT_ID_LEN], u64)> = OnceLock::new();
        let (boot_id, pid_ns) = *IDS.get_or_init(|| (boot_id(), pid_namespace()));
        Vantage {
            hostname: super::hostname(),
            boot_id,
            pid_ns,
        }
    }

    /// True if `l`'s PID names a process this observer can test: same
    /// host, same boot, same PID namespace, all of them known.
    pub fn shares_pids_with(&self, l: &Lock) -> bool {
        l.hostname == self.hostname
            && l.boot_id != [0; BOOT_ID_LEN]
            && l.boot_id == self.boot_id
            && l.pid_ns != 0
            && l.pid_ns == self.pid_ns
    }
}

/// The kernel's boot ID (a UUID); zeros if it cannot be read.
fn boot_id() -> [u8; BOOT_ID_LEN] {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .and_then(|s| {
            let digits: String = s.chars().filter(char::is_ascii_hexdigit).collect();
            hex::decode(digits).ok()?.try_into().ok()
        })
        .unwrap_or([0; BOOT_ID_LEN])
}

/// The inode of this process's PID namespace; 0 if it cannot be read.
fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// Why a lock is stale, or `None` if it is live. `mtime` is the time of the
/// lock's object and `now` the storage's present time (the time of an
/// object the observer just wrote), both by the storage's clock; without
/// both, the lock is not stale by age.
pub fn stale_reason(
    l: &Lock,
    mtime: Option<i64>,
    now: Option<i64>,
    me: &Vantage,
) -> Option<String> {
    if let (Some(m), Some(n)) = (mtime, now) {
        let age = n.saturating_sub(m);
        if age > STALE_AFTER.as_nanos() as i64 {
            return Some(format!(
                "not refreshed for {} minutes by the storage's clock",
                age / NS_PER_MINUTE
            ));
        }
    }
    if me.shares_pids_with(l) && !process_alive(l.pid) {
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

/// One lock object as listed.
#[derive(Debug, Clone)]
pub struct ListedLock {
    /// The lock's ID.
    pub id: LockId,
    /// Its object's time by the storage's clock, if the backend gives one.
    pub mtime: Option<i64>,
    /// The record, or why it could not be read.
    pub lock: std::result::Result<Lock, String>,
}

/// Every lock in the repository, read. Objects under `locks/` that are not
/// named like locks (a clock probe) are left out, and so are locks removed
/// while this ran.
pub fn list_locks(repo: &Repository) -> Result<Vec<ListedLock>> {
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
            Ok(l) => Ok(l),
            Err(e) if e.is_not_found() => continue,
            Err(e) => Err(e.to_string()),
        };
        out.push(ListedLock {
            id,
            mtime: o.mtime,
            lock,
        });
    }
    Ok(out)
}

/// The storage's present time: the time of a probe object written now
/// (`locks/probe-<random>`, a name no reader takes for a lock) and removed
/// again; `None` if the backend gives no times. For judging locks without
/// holding one (`cairn unlock`).
pub fn storage_now(repo: &Repository) -> Result<Option<i64>> {
    let name = format!("locks/probe-{}", hex::encode(rand::random::<[u8; 8]>()));
    repo.backend().put(&name, b"")?;
    let listed = repo.backend().list("locks");
    let _ = repo.backend().delete(&name);
    Ok(listed?
        .into_iter()
        .find(|o| o.name == name)
        .and_then(|o| o.mtime))
}

/// A lock `unlock` removed, and why.
#[derive(Debug, Clone)]
pub struct RemovedLock {
    /// The lock's ID.
    pub id: LockId,
    /// Its record, if it could be read.
    pub lock: Option<Lock>,
    /// Why it was removed ("process 12 on this host is gone", "--remove-all").
    pub reason: String,
}

/// What [`unlock`] did.
#[derive(Debug, Clone, Default)]
pub struct UnlockResult {
    /// Locks removed, in listing order.
    pub removed: Vec<RemovedLock>,
    /// Unreadable locks kept (they may be anyone's), with why they cannot
    /// be read.
    pub kept_unreadable: Vec<(LockId, String)>,
}

/// Remove stale locks, judged as every lock holder judges them (by the
/// storage's clock, learned from a probe, and by PID where a PID means
/// something); with `remove_all`, every lock, also live and unreadable
/// ones. Holds no lock itself: it is what frees a repository whose locks
/// are stuck.
pub fn unlock(repo: &Repository, remove_all: bool) -> Result<UnlockResult> {
    let me = Vantage::this_process();
    let now = storage_now(repo)?;
    let mut r = UnlockResult::default();
    for l in list_locks(repo)? {
        let why = match &l.lock {
            Ok(lock) => stale_reason(lock, l.mtime, now, &me),
            Err(e) if remove_all => Some(format!("unreadable: {e}")),
            Err(e) => {
                r.kept_unreadable.push((l.id, e.clone()));
                None
            }
        };
        let Some(reason) = why.or_else(|| remove_all.then(|| "--remove-all".to_string())) else {
            continue;
        };
        repo.backend().delete(&lock_name(&l.id))?;
        r.removed.push(RemovedLock {
            id: l.id,
            lock: l.lock.ok(),
            reason,
        });
    }
    Ok(r)
}

/// What commit points ask before they commit (an index file, a snapshot,
/// a deletion): is the lock this operation runs under still trustworthy?
pub trait CommitGate: Send + Sync {
    /// Cheap, no I/O: fails once the lock has been lost (a refresh failed
    /// or came too late, or it is past its trust period).
    fn check(&self) -> Result<()>;
    /// [`CommitGate::check`], and confirm on the storage that the lock
    /// object is still there. Call right before each commit.
    fn verify(&self) -> Result<()>;
}

/// A storage time learned from an object just written, carried forward on
/// the monotonic clock. Underestimates (the `Instant` is taken after the
/// write returned), so it never makes a lock look older than it is.
#[derive(Debug, Clone, Copy)]
struct StorageClock {
    at_storage: i64,
    at: Instant,
}

impl StorageClock {
    fn now(&self) -> i64 {
        let elapsed = i64::try_from(self.at.elapsed().as_nanos()).unwrap_or(i64::MAX);
        self.at_storage.saturating_add(elapsed)
    }
}

/// Refresh period and trust period (shorter in unit tests).
#[derive(Debug, Clone, Copy)]
struct Timings {
    refresh_every: Duration,
    trust_for: Duration,
}

const DEFAULT_TIMINGS: Timings = Timings {
    refresh_every: REFRESH_EVERY,
    trust_for: TRUST_FOR,
};

/// What the holder, its refresher and its gates share.
struct LockState {
    /// Told when the refresher finds the lock lost.
    observer: Arc<dyn Observer>,
    /// Cancelled (with the reason) when the lock is found lost, so that
    /// the operation stops at its next poll, not only at its next commit.
    cancel: CancelToken,
    name: String,
    short: String,
    trust_for: Duration,
    /// Why the lock can no longer be trusted; once set, never cleared.
    lost: Mutex<Option<String>>,
    /// Wall and monotonic time taken just before the last successful write
    /// of the lock object.
    refreshed: Mutex<(SystemTime, Instant)>,
}

impl LockState {
    /// Time since the last successful refresh: the larger of the wall-clock
    /// and the monotonic measure (the wall clock sees a suspend or a stop
    /// that the monotonic one may not; the monotonic one a clock set back).
    fn since_refresh(&self) -> Duration {
        let (wall, mono) = *guard(&self.refreshed);
        let by_wall = SystemTime::now()
            .duration_since(wall)
            .unwrap_or(Duration::ZERO);
        by_wall.max(mono.elapsed())
    }

    fn error(&self, why: &str) -> Error {
        Error::new(
            ErrorKind::LockLost,
            format!("the repository lock {} {why}", self.short),
        )
    }

    /// Mark the lock lost (the first reason stays) and cancel the
    /// operation's token with it, telling the observer if `warn` (the
    /// refresher: nobody else would report it yet).
    fn cancel(&self, why: String, warn: bool) -> Error {
        let mut lost = guard(&self.lost);
        if lost.is_none() {
            if warn {
                self.observer.warning(&format!(
                    "the repository lock {} {why}; the operation stops before it commits anything more",
                    self.short
                ));
            }
            self.cancel
                .cancel_because(ErrorKind::LockLost, self.error(&why).to_string());
            *lost = Some(why);
        }
        self.error(lost.as_deref().unwrap_or_default())
    }

    fn too_late(&self, age: Duration) -> String {
        format!(
            "was not refreshed for {} minutes (was the process stopped, or the machine suspended?); \
             another process may have taken it for stale",
            age.as_secs() / 60
        )
    }

    fn check(&self) -> Result<()> {
        if let Some(why) = &*guard(&self.lost) {
            return Err(self.error(why));
        }
        let age = self.since_refresh();
        if age > self.trust_for {
            return Err(self.cancel(self.too_late(age), false));
        }
        Ok(())
    }

    fn verify(&self, backend: &dyn Backend) -> Result<()> {
        self.check()?;
        match backend.stat(&self.name) {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                return Err(self.cancel(
                    "was removed from the repository (by `cairn unlock`, or by another process that took it for stale)"
                        .into(),
                    false,
                ));
            }
            Err(e) => {
                return Err(e.context(format!(
                    "cannot confirm that the repository lock {} is still held",
                    self.short
                )));
            }
        }
        self.check()
    }
}

/// A [`CommitGate`] for a held lock, for threads that outlive a borrow.
struct LockGate {
    state: Arc<LockState>,
    backend: Arc<dyn Backend>,
}

impl CommitGate for LockGate {
    fn check(&self) -> Result<()> {
        self.state.check()
    }
    fn verify(&self) -> Result<()> {
        self.state.verify(&*self.backend)
    }
}

/// A held lock; released when dropped.
pub struct RepoLock {
    backend: Arc<dyn Backend>,
    id: LockId,
    exclusive: bool,
    storage_time: Option<i64>,
    state: Arc<LockState>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    refresher: Option<JoinHandle<()>>,
}

impl RepoLock {
    /// Take a shared or exclusive lock, waiting up to the repository's lock
    /// wait for conflicting holders, or fail with [`ErrorKind::Locked`].
    pub fn acquire(repo: &Repository, exclusive: bool) -> Result<RepoLock> {
        Self::acquire_with(repo, exclusive, DEFAULT_TIMINGS, CancelToken::new())
    }

    /// [`RepoLock::acquire`], cancelling `cancel` (with the reason) when
    /// the lock is found lost.
    pub fn acquire_cancelling(
        repo: &Repository,
        exclusive: bool,
        cancel: CancelToken,
    ) -> Result<RepoLock> {
        Self::acquire_with(repo, exclusive, DEFAULT_TIMINGS, cancel)
    }

    fn acquire_with(
        repo: &Repository,
        exclusive: bool,
        timings: Timings,
        cancel: CancelToken,
    ) -> Result<RepoLock> {
        let deadline = Instant::now() + repo.lock_wait();
        let mut warned = false;
        let mut clock = None;
        loop {
            match Self::try_acquire(repo, exclusive, !warned, &mut clock, timings, &cancel) {
                Err(e) if e.kind() == ErrorKind::Locked && Instant::now() < deadline => {
                    if !warned {
                        repo.observer().waiting_for_lock(&e);
                        warned = true;
                    }
                    // A little jitter, so two waiters do not keep meeting.
                    let ms = 400 + u64::from(rand::random::<u8>());
                    std::thread::sleep(Duration::from_millis(ms));
                }
                other => return other,
            }
        }
    }

    /// One attempt at taking the lock: write it, list every lock, and back
    /// off (removing ours) if another one conflicts. `clock` carries the
    /// storage's time from one attempt to the next, so that while waiting
    /// the locks are looked at before anything is written.
    fn try_acquire(
        repo: &Repository,
        exclusive: bool,
        warn: bool,
        clock: &mut Option<StorageClock>,
        timings: Timings,
        cancel: &CancelToken,
    ) -> Result<RepoLock> {
        let me = Vantage::this_process();
        if let Some(c) = clock {
            let locks = list_locks(repo)?;
            if let Some(e) = conflict(repo, &locks, None, exclusive, Some(c.now()), &me, false) {
                return Err(e);
            }
        }
        let id = LockId::random();
        let name = lock_name(&id);
        let lock = Lock {
            exclusive,
            time_ns: now_ns(),
            hostname: me.hostname.clone(),
            username: repo.identity().username.clone(),
            pid: std::process::id(),
            boot_id: me.boot_id,
            pid_ns: me.pid_ns,
        };
        let (wall, mono) = (SystemTime::now(), Instant::now());
        repo.save_object(aad::LOCK, &name, id.as_bytes(), &lock.to_bytes()?)?;
        let written = Instant::now();
        // Another process may have locked at the same time: look again,
        // with our own lock's time as the storage's present.
        let judged = list_locks(repo).and_then(|locks| {
            let Some(ours) = locks.iter().find(|l| l.id == id) else {
                return Err(Error::invalid(format!(
                    "{}: the lock {name} just written is not listed; locks cannot work on storage that does not list what it stores at once",
                    repo.backend().location()
                )));
            };
            let now = ours.mtime;
            match conflict(repo, &locks, Some(&id), exclusive, now, &me, warn) {
                Some(e) => Err(e),
                None => Ok(now),
            }
        });
        let storage_time = match judged {
            Ok(t) => t,
            Err(e) => {
                let _ = repo.backend().delete(&name);
                return Err(e);
            }
        };
        if let Some(t) = storage_time {
            *clock = Some(StorageClock {
                at_storage: t,
                at: written,
            });
        }
        let state = Arc::new(LockState {
            observer: Arc::clone(repo.observer()),
            cancel: cancel.clone(),
            short: id.short(),
            name,
            trust_for: timings.trust_for,
            lost: Mutex::new(None),
            refreshed: Mutex::new((wall, mono)),
        });
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let refresher = {
            let stop = Arc::clone(&stop);
            let backend = Arc::clone(repo.backend());
            let seal: SealKey = repo.seal_key().clone();
            let state = Arc::clone(&state);
            let every = timings.refresh_every;
            std::thread::spawn(move || {
                refresh_loop(&stop, &*backend, &seal, &state, id, lock, every)
            })
        };
        Ok(RepoLock {
            backend: Arc::clone(repo.backend()),
            id,
            exclusive,
            storage_time,
            state,
            stop,
            refresher: Some(refresher),
        })
    }

    /// The lock's ID (its object is `locks/<id>`).
    pub fn id(&self) -> LockId {
        self.id
    }

    /// The token this lock cancels when it is found lost.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.state.cancel
    }

    /// True if another process holds a lock that is live as far as this
    /// one can tell (readable and not stale, or unreadable: assumed live).
    pub fn others_present(&self, repo: &Repository) -> Result<bool> {
        let me = Vantage::this_process();
        Ok(list_locks(repo)?.iter().any(|l| {
            l.id != self.id
                && l.lock.as_ref().map_or(true, |lock| {
                    stale_reason(lock, l.mtime, self.storage_time, &me).is_none()
                })
        }))
    }

    /// True for an exclusive lock.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    /// The storage's time when the lock was taken (its object's time), the
    /// reference for judging other objects' ages by the storage's clock;
    /// `None` if the backend gives no times.
    pub fn storage_time(&self) -> Option<i64> {
        self.storage_time
    }

    /// Cheap, no I/O: fails once the lock has been lost, or the operation
    /// holding it was asked to stop through its [`CancelToken`] (Ctrl-C:
    /// [`ErrorKind::Interrupted`]). Operations that took the lock apart
    /// from its guard (prune, repair, copy) poll this.
    pub fn check(&self) -> Result<()> {
        self.state.check()?;
        self.state.cancel.check()
    }

    /// Before a commit: the lock is not lost, was refreshed recently enough
    /// by the wall clock, and its object is still on the storage (fails
    /// with [`ErrorKind::LockLost`] otherwise), and the operation was not
    /// asked to stop. The packer's [`RepoLock::gate`] asks the lock only:
    /// a cancelled backup still indexes what it stored.
    pub fn verify(&self) -> Result<()> {
        self.state.verify(&*self.backend)?;
        self.state.cancel.check()
    }

    /// A gate for commit points in other threads (the packer's writers).
    pub fn gate(&self) -> Arc<dyn CommitGate> {
        Arc::new(LockGate {
            state: Arc::clone(&self.state),
            backend: Arc::clone(&self.backend),
        })
    }
}

impl CommitGate for RepoLock {
    fn check(&self) -> Result<()> {
        RepoLock::check(self)
    }
    fn verify(&self) -> Result<()> {
        RepoLock::verify(self)
    }
}

/// The first lock in `locks` (other than `ours`) that conflicts with taking
/// a lock, as an error. Stale locks do not conflict; unreadable ones do for
/// an exclusive lock only. Says on standard error what it passes over, if
/// `warn`.
fn conflict(
    repo: &Repository,
    locks: &[ListedLock],
    ours: Option<&LockId>,
    exclusive: bool,
    now: Option<i64>,
    me: &Vantage,
    warn: bool,
) -> Option<Error> {
    let location = repo.backend().location();
    let mut first = None;
    for l in locks.iter().filter(|l| Some(&l.id) != ours) {
        let found = match &l.lock {
            Err(why) if exclusive => Error::new(
                ErrorKind::Locked,
                format!(
                    "repository {location} has a lock that cannot be read (lock {}: {why}); it may be held by another \
                     Cairn version, so nothing is deleted; if no other Cairn process uses the repository, \
                     remove it with `cairn unlock --remove-all`",
                    l.id.short()
                ),
            ),
            Err(why) => {
                if warn {
                    repo.observer().warning(&format!(
                        "passing over unreadable lock {} ({why})",
                        l.id.short()
                    ));
                }
                continue;
            }
            Ok(lock) => {
                if let Some(why) = stale_reason(lock, l.mtime, now, me) {
                    if warn {
                        repo.observer().warning(&format!(
                            "ignoring stale lock {} held by PID {} on {} ({why})",
                            l.id.short(),
                            lock.pid,
                            lock.hostname
                        ));
                    }
                    continue;
                }
                if !exclusive && !lock.exclusive {
                    continue;
                }
                let since = jiff::Timestamp::from_nanosecond(i128::from(lock.time_ns))
                    .map(|t| format!(" since {t}"))
                    .unwrap_or_default();
                Error::new(
                    ErrorKind::Locked,
                    format!(
                        "repository {location} is locked {}by PID {} on {} (user {}){since}; \
                         wait for it to finish, or run `cairn unlock` if it is gone",
                        if lock.exclusive { "exclusively " } else { "" },
                        lock.pid,
                        lock.hostname,
                        lock.username,
                    ),
                )
            }
        };
        first.get_or_insert(found);
    }
    first
}

fn refresh_loop(
    stop: &(Mutex<bool>, Condvar),
    backend: &dyn Backend,
    seal: &SealKey,
    state: &LockState,
    id: LockId,
    mut lock: Lock,
    every: Duration,
) {
    let (m, cv) = stop;
    let mut stopped = guard(m);
    loop {
        // Wait out one period (spurious wake-ups wait for the rest of it).
        // A stop requested before this thread first waited must not be lost.
        let due = Instant::now() + every;
        loop {
            if *stopped {
                return;
            }
            let left = due.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            stopped = cv
                .wait_timeout(stopped, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if guard(&state.lost).is_some() {
            return;
        }
        // Too late (suspended, stopped): others may already have taken the
        // lock for stale; writing it again would hide that.
        let age = state.since_refresh();
        if age > state.trust_for {
            state.cancel(state.too_late(age), true);
            return;
        }
        match backend.stat(&state.name) {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                state.cancel(
                    "was removed from the repository (by `cairn unlock`, or by another process that took it for stale)"
                        .into(),
                    true,
                );
                return;
            }
            Err(e) => {
                state.cancel(format!("could not be refreshed: {e}"), true);
                return;
            }
        }
        let (wall, mono) = (SystemTime::now(), Instant::now());
        lock.time_ns = now_ns();
        let stored = lock.to_bytes().and_then(|plain| {
            let sealed = seal.seal(&aad::object(aad::LOCK, id.as_bytes()), &plain);
            backend.put(&state.name, &sealed)
        });
        if let Err(e) = stored {
            state.cancel(format!("could not be refreshed: {e}"), true);
            return;
        }
        *guard(&state.refreshed) = (wall, mono);
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        {
            let (m, cv) = &*self.stop;
            *guard(m) = true;
            cv.notify_all();
        }
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        if let Err(e) = self.backend.delete(&self.state.name) {
            self.state
                .observer
                .warning(&format!("cannot remove lock {}: {e}", self.state.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mem::MemBackend;

    fn repo_on(backend: Arc<MemBackend>) -> Repository {
        crate::repo::test_repo_on(backend)
    }

    fn repo() -> Repository {
        repo_on(Arc::new(MemBackend::new()))
    }

    /// A lock record as another process would write it.
    fn foreign(exclusive: bool) -> Lock {
        Lock {
            exclusive,
            time_ns: now_ns(),
            hostname: "elsewhere".into(),
            username: "u".into(),
            pid: 1,
            boot_id: [1; BOOT_ID_LEN],
            pid_ns: 7,
        }
    }

    fn plant(r: &Repository, l: &Lock) -> LockId {
        let id = LockId::random();
        r.save_object(
            aad::LOCK,
            &lock_name(&id),
            id.as_bytes(),
            &l.to_bytes().unwrap(),
        )
        .unwrap();
        id
    }

    /// Wait (for a state, not a time) until `f` holds; fail after a minute.
    fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Regression: dropping a lock before its refresher thread first waited
    /// used to block the drop for a whole refresh period (5 minutes).
    #[test]
    fn a_lock_dropped_at_once_is_released_at_once() {
        let r = repo();
        let start = Instant::now();
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
        assert!(x.is_exclusive());
        assert!(x.storage_time().is_some());
        assert_eq!(
            RepoLock::acquire(&r, false).err().unwrap().kind(),
            ErrorKind::Locked
        );
        drop(x);
        drop(RepoLock::acquire(&r, false).unwrap());
    }

    #[test]
    fn staleness_by_age_uses_only_storage_times() {
        let me = Vantage::this_process();
        let l = foreign(true);
        let min = NS_PER_MINUTE;
        let now = 1_000 * min;
        assert!(stale_reason(&l, Some(now - 29 * min), Some(now), &me).is_none());
        let why = stale_reason(&l, Some(now - 31 * min), Some(now), &me).unwrap();
        assert!(why.contains("31 minutes"), "{why}");
        // The time inside the record does not count: hours old by the
        // holder's clock (or ours), fresh by the storage's.
        let old = Lock {
            time_ns: 0,
            ..foreign(true)
        };
        assert!(stale_reason(&old, Some(now), Some(now), &me).is_none());
        // Without storage times nothing is stale by age.
        assert!(stale_reason(&l, None, Some(now), &me).is_none());
        assert!(stale_reason(&l, Some(0), None, &me).is_none());
    }

    #[test]
    fn staleness_by_pid_needs_the_same_host_boot_and_pid_namespace() {
        let me = Vantage::this_process();
        let gone = Lock {
            hostname: me.hostname.clone(),
            boot_id: me.boot_id,
            pid_ns: me.pid_ns,
            pid: u32::MAX - 1, // no such process
            ..foreign(true)
        };
        if me.boot_id != [0; BOOT_ID_LEN] && me.pid_ns != 0 {
            assert!(stale_reason(&gone, None, None, &me).is_some());
        }
        let alive = Lock {
            pid: std::process::id(),
            ..gone.clone()
        };
        assert!(stale_reason(&alive, None, None, &me).is_none());
        for other in [
            Lock {
                pid_ns: me.pid_ns ^ 1,
                ..gone.clone()
            },
            Lock {
                boot_id: [9; BOOT_ID_LEN],
                ..gone.clone()
            },
            Lock {
                hostname: "elsewhere".into(),
                ..gone.clone()
            },
            // A version 1 record: boot and namespace unknown.
            Lock {
                boot_id: [0; BOOT_ID_LEN],
                pid_ns: 0,
                ..gone.clone()
            },
        ] {
            assert!(stale_reason(&other, None, None, &me).is_none(), "{other:?}");
        }
        // An observer that knows neither never judges by PID.
        let blind = Vantage {
            boot_id: [0; BOOT_ID_LEN],
            pid_ns: 0,
            ..me
        };
        let unknown = Lock {
            boot_id: [0; BOOT_ID_LEN],
            pid_ns: 0,
            ..gone
        };
        assert!(stale_reason(&unknown, None, None, &blind).is_none());
    }

    #[test]
    fn a_lock_whose_object_is_old_by_the_storage_clock_is_passed_over() {
        let b = Arc::new(MemBackend::new());
        let r = repo_on(b.clone());
        // Hours old by its own record, but just written: live.
        plant(
            &r,
            &Lock {
                time_ns: now_ns() - 2 * 60 * NS_PER_MINUTE,
                ..foreign(true)
            },
        );
        let err = RepoLock::acquire(&r, false).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
        // Its object not written for 31 minutes: stale.
        b.backdate("locks/", Duration::from_secs(31 * 60));
        let l = RepoLock::acquire(&r, true).unwrap();
        drop(l);
    }

    /// What a lock passes over goes to the repository's observer, not to
    /// standard error.
    #[test]
    fn locks_passed_over_are_reported_to_the_observer() {
        let b = Arc::new(MemBackend::new());
        let mut r = repo_on(b.clone());
        let seen = Arc::new(crate::observer::Collect::default());
        r.set_observer(seen.clone());
        plant(&r, &foreign(true));
        b.backdate("locks/", Duration::from_secs(31 * 60));
        let unreadable = LockId::random();
        b.set_raw(&lock_name(&unreadable), vec![0; 80]);
        drop(RepoLock::acquire(&r, false).unwrap());
        let w = seen.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w.iter().any(|m| m.starts_with("ignoring stale lock")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|m| m.starts_with("passing over unreadable lock")
                    && m.contains(&unreadable.short())),
            "{w:?}"
        );
    }

    #[test]
    fn an_unreadable_lock_blocks_exclusive_locks_but_not_shared_ones() {
        let b = Arc::new(MemBackend::new());
        let r = repo_on(b.clone());
        let id = LockId::random();
        b.set_raw(&lock_name(&id), vec![0; 80]);
        let err = RepoLock::acquire(&r, true).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Locked);
        let msg = err.to_string();
        assert!(
            msg.contains(&id.short()) && msg.contains("--remove-all"),
            "{msg}"
        );
        drop(RepoLock::acquire(&r, false).unwrap());
        // However old it is.
        b.backdate("locks/", Duration::from_secs(24 * 3600));
        assert!(RepoLock::acquire(&r, true).is_err());
        assert!(b.snapshot().contains_key(&lock_name(&id)));
    }

    #[test]
    fn a_failed_refresh_cancels_the_lock() {
        let b = Arc::new(MemBackend::new());
        let r = repo_on(b.clone());
        let timings = Timings {
            refresh_every: Duration::from_millis(10),
            trust_for: TRUST_FOR,
        };
        let l = RepoLock::acquire_with(&r, false, timings, CancelToken::new()).unwrap();
        l.verify().unwrap();
        b.fail_writes_after(0);
        until("the refresh fails", || l.check().is_err());
        let err = l.verify().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LockLost);
        assert!(err.to_string().contains("could not be refreshed"), "{err}");
        // Lost for good, also for gates handed out before.
        b.fail_writes_after(-1);
        assert!(l.gate().verify().is_err());
    }

    /// A suspend: the wall clock moves on while the monotonic clock (and
    /// the refresher's wait) does not.
    #[test]
    fn a_refresh_that_comes_too_late_by_the_wall_clock_cancels_the_lock() {
        let r = repo();
        // The refresher does not wake during this test.
        let l = RepoLock::acquire_with(&r, false, DEFAULT_TIMINGS, CancelToken::new()).unwrap();
        let gate = l.gate();
        // 25 minutes pass on the wall clock only.
        guard(&l.state.refreshed).0 -= Duration::from_secs(25 * 60);
        let err = gate.check().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LockLost);
        assert!(
            err.to_string().contains("not refreshed for 25 minutes"),
            "{err}"
        );
        assert!(l.verify().is_err());
    }

    /// The refresher wakes later than the trust period: it cancels instead
    /// of writing the lock again (which would hide that it was stale).
    #[test]
    fn a_late_refresh_is_noticed_by_the_refresher_itself() {
        let r = repo();
        let timings = Timings {
            refresh_every: Duration::from_millis(200),
            trust_for: Duration::from_millis(100),
        };
        let l = RepoLock::acquire_with(&r, false, timings, CancelToken::new()).unwrap();
        let before = r.backend().get(&l.state.name).unwrap();
        until("the refresher cancels", || guard(&l.state.lost).is_some());
        let why = guard(&l.state.lost).clone().unwrap();
        assert!(why.contains("not refreshed for"), "{why}");
        assert_eq!(r.backend().get(&l.state.name).unwrap(), before);
    }

    #[test]
    fn a_lock_removed_from_the_storage_fails_verification() {
        let r = repo();
        let l = RepoLock::acquire(&r, true).unwrap();
        l.check().unwrap();
        r.backend().delete(&l.state.name).unwrap();
        l.check().unwrap(); // no I/O: cannot know yet
        let err = l.verify().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LockLost);
        assert!(err.to_string().contains("removed"), "{err}");
        assert!(l.check().is_err(), "lost for good");
    }

    #[test]
    fn a_probe_gives_the_storage_time_and_leaves_nothing() {
        let r = repo();
        let t = storage_now(&r).unwrap().unwrap();
        assert!(t > 0);
        assert!(r.backend().list("locks").unwrap().is_empty());
    }
}
