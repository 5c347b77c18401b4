//! Read-ahead for a backup's reads, apart from the CPU workers. A pool of
//! reader threads (`read_concurrency` of them) runs ahead of the walk:
//!
//! - when the walk lists a directory, the readers `lstat` its entries
//!   (the inode is then cached) and ask the kernel to read the files the
//!   backup will read (new or changed against the parent snapshot) with
//!   `posix_fadvise(WILLNEED)` on their first [`HINT_BYTES`];
//! - the directories they meet there they open and list themselves, and
//!   go on below them depth first, as the walk will, so that the walk's
//!   own `getdents` and `lstat` calls find the metadata cached. Below a
//!   directory the parent snapshot did not have, every file is new and is
//!   hinted too; below one it had, only metadata is read ahead (which
//!   files changed is known when the walk reaches it with the parent's
//!   tree, and it hints those then).
//!
//! The device then has many requests in flight while the two (or N)
//! workers chunk, hash, compress and seal what is already in memory; a
//! cold first backup is bound by the disk's parallel throughput instead of
//! by one read per worker at a time.
//!
//! Bounds: the readers look at most [`AHEAD_ENTRIES`] entries and
//! [`AHEAD_BYTES`] of hinted data beyond what the walk has reached, so the
//! page cache holds what the workers are about to read and not a whole
//! tree that memory pressure would evict before it is used. They hold at
//! most [`FOUND`] listed directories (one descriptor each) and [`QUEUE`]
//! batches from the walk. A reader with nothing to do yields its core a
//! few times ([`SPIN`]), then sleeps until the walk sends a batch, another
//! reader finds a directory, or the walk moves [`WAKE_ENTRIES`] entries
//! on: sixteen readers do not poll every few milliseconds for the whole
//! backup, taking turns on the cores from the workers (and from whatever
//! else the machine runs). The exclude rules and `--one-file-system` apply
//! to them as to the walk. Hints never block the walk: a directory whose
//! batch finds the queue full is read without them. Nothing here decides
//! what is backed up: a hint that fails, or comes late, changes only how
//! soon the worker's own read is served.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rustix::fs::{Advice, Mode, OFlags};

use crate::format::tree::Timestamp;
use crate::source::exclude::ExcludeMatcher;
use crate::source::fs::Meta;

/// Bytes of each file hinted: small files whole, the start of large ones
/// (which the kernel's own read-ahead then streams).
pub(super) const HINT_BYTES: u64 = 8 << 20;
/// Names per queued batch.
const BATCH: usize = 16;
/// Batches from the walk queued at most.
const QUEUE: usize = 64;
/// Directories the readers listed and have not looked into yet, at most.
const FOUND: usize = 64;
/// Entries the readers look at beyond the walk, at most.
const AHEAD_ENTRIES: u64 = 4096;
/// Bytes the readers hint beyond the files the walk has reached, at most.
const AHEAD_BYTES: u64 = 256 << 20;
/// How long an idle reader sleeps at most before it looks for work again
/// unwoken (a safety net: the walk and the other readers wake it).
const IDLE: Duration = Duration::from_millis(50);
/// Times an idle reader yields its core, looking for work in between,
/// before it sleeps.
const SPIN: usize = 8;
/// The walk wakes an idle reader (which wakes the next if there is more
/// to do) each time it reaches this many more entries, or [`WAKE_BYTES`]
/// more bytes of files, than the last time.
const WAKE_ENTRIES: u64 = 256;
/// See [`WAKE_ENTRIES`].
const WAKE_BYTES: u64 = 16 << 20;

/// What the parent snapshot recorded of an entry: enough to tell whether
/// the backup will read it (see `ChangeRules::unchanged`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Prior {
    pub(super) size: u64,
    pub(super) mtime: Timestamp,
    pub(super) ctime: Timestamp,
    pub(super) inode: u64,
    pub(super) device: u64,
}

/// The comparison `ChangeRules::unchanged` makes, on a [`Prior`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Rules {
    pub(super) use_parent: bool,
    pub(super) ignore_inode: bool,
    pub(super) ignore_ctime: bool,
}

impl Rules {
    fn unchanged(&self, p: &Prior, meta: &Meta) -> bool {
        self.use_parent
            && p.size == meta.size()
            && p.mtime == meta.mtime()
            && (self.ignore_ctime || p.ctime == meta.ctime())
            && (self.ignore_inode || (p.inode == meta.ino() && p.device == meta.dev()))
    }
}

/// What the readers know of a batch's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Listed by the walk: each entry carries what the parent snapshot
    /// had of it.
    Walked,
    /// Found by the readers, absent from the parent snapshot: every file
    /// below it is read.
    New,
    /// Found by the readers, present in the parent snapshot: only its
    /// metadata is read ahead.
    Known,
}

struct Batch {
    dir: Arc<OwnedFd>,
    /// The directory's path, for the exclude rules.
    path: Arc<Path>,
    /// Its device, for `--one-file-system`, and inode.
    dev: u64,
    ino: u64,
    scope: Scope,
    entries: Vec<(OsString, Option<Prior>)>,
}

/// What the readers and the walk share.
struct Shared {
    rules: Rules,
    excludes: ExcludeMatcher,
    one_file_system: bool,
    /// Directories the readers listed, looked into last in, first out:
    /// depth first, as the walk goes.
    found: Mutex<Vec<Batch>>,
    /// Directories the readers listed (device, inode), so that none is
    /// listed twice; true once the readers hinted every file in it (a new
    /// directory), and the walk need not send its own batch.
    listed: Mutex<HashMap<(u64, u64), bool>>,
    /// Entries looked at in found directories.
    ahead: AtomicU64,
    /// Entries the walk has reached.
    walked: AtomicU64,
    /// Bytes hinted in found directories.
    hinted_bytes: AtomicU64,
    /// Bytes of the files the walk has reached.
    walked_bytes: AtomicU64,
    /// Bumped (under `sleepers`' lock) whenever there may be new work for
    /// an idle reader: a batch, a found directory, the walk moving on, the
    /// end. Idle readers sleep on `woken` until it changes, after a few
    /// yields ([`SPIN`]); they do not poll.
    wakes: AtomicU64,
    /// Readers asleep on `woken` (none: a wake costs no system call).
    sleepers: Mutex<usize>,
    woken: Condvar,
}

/// The reader threads; dropping this stops them.
pub(super) struct Prefetcher {
    tx: Option<crossbeam_channel::Sender<Batch>>,
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Prefetcher {
    /// Start `threads` reader threads (none: no read-ahead). They skip
    /// what `excludes` excludes and, with `one_file_system`, stay on the
    /// device of the directory the walk gave them.
    pub(super) fn start(
        threads: usize,
        rules: Rules,
        excludes: ExcludeMatcher,
        one_file_system: bool,
    ) -> Prefetcher {
        let shared = Arc::new(Shared::new(rules, excludes, one_file_system));
        if threads == 0 {
            return Prefetcher {
                tx: None,
                shared,
                threads: Vec::new(),
            };
        }
        let (tx, rx) = crossbeam_channel::bounded::<Batch>(QUEUE);
        let handles = (0..threads)
            .filter_map(|i| {
                let rx = rx.clone();
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("cairn-read-{i}"))
                    .spawn(move || shared.run(&rx))
                    .ok()
            })
            .collect();
        Prefetcher {
            tx: Some(tx),
            shared,
            threads: handles,
        }
    }

    /// True if reader threads run (`read_concurrency` above 0).
    pub(super) fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// The walk reached an entry (`meta`): the readers may go that much
    /// further.
    pub(super) fn walked(&self, meta: &Meta) {
        if self.enabled() {
            let entries = self.shared.walked.fetch_add(1, Ordering::Relaxed) + 1;
            let mut moved = entries % WAKE_ENTRIES == 0;
            if meta.is_file() {
                let hinted = meta.size().min(HINT_BYTES);
                let before = self
                    .shared
                    .walked_bytes
                    .fetch_add(hinted, Ordering::Relaxed);
                moved |= before / WAKE_BYTES != (before + hinted) / WAKE_BYTES;
            }
            if moved {
                // A reader held back by the bounds may go on (and wakes
                // the next if there is more, see `next_found`).
                self.shared.wake(1);
            }
        }
    }

    /// Hint the entries of the open directory `dir` (at `path`, on device
    /// `dev`), in order. Returns at once; entries that find the queue
    /// full get no hint.
    pub(super) fn directory(
        &self,
        dir: BorrowedFd<'_>,
        path: &Path,
        dev: u64,
        entries: Vec<(OsString, Option<Prior>)>,
    ) {
        let Some(tx) = &self.tx else {
            return;
        };
        if entries.is_empty() {
            return;
        }
        if let Ok(st) = rustix::fs::fstat(dir) {
            let key = (st.st_dev, st.st_ino);
            let listed = self.shared.listed.lock().unwrap_or_else(|p| p.into_inner());
            if listed.get(&key) == Some(&true) {
                // The readers hinted every file here already.
                return;
            }
        }
        let Ok(fd) = rustix::io::fcntl_dupfd_cloexec(dir, 0) else {
            return;
        };
        let dir = Arc::new(fd);
        let path: Arc<Path> = Arc::from(path);
        let mut entries = entries.into_iter();
        let mut sent = 0;
        loop {
            let batch: Vec<_> = entries.by_ref().take(BATCH).collect();
            if batch.is_empty() {
                break;
            }
            let job = Batch {
                dir: dir.clone(),
                path: path.clone(),
                dev,
                ino: 0,
                scope: Scope::Walked,
                entries: batch,
            };
            if tx.try_send(job).is_err() {
                break;
            }
            sent += 1;
        }
        self.shared.wake(sent);
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.tx = None;
        self.shared.wake(usize::MAX);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn new(rules: Rules, excludes: ExcludeMatcher, one_file_system: bool) -> Shared {
        Shared {
            rules,
            excludes,
            one_file_system,
            found: Mutex::new(Vec::new()),
            listed: Mutex::new(HashMap::new()),
            ahead: AtomicU64::new(0),
            walked: AtomicU64::new(0),
            hinted_bytes: AtomicU64::new(0),
            walked_bytes: AtomicU64::new(0),
            wakes: AtomicU64::new(0),
            sleepers: Mutex::new(0),
            woken: Condvar::new(),
        }
    }

    /// There may be new work for `readers` idle readers (`usize::MAX`:
    /// all of them, at the end).
    fn wake(&self, readers: usize) {
        if readers == 0 {
            return;
        }
        let sleepers = {
            let g = self.sleepers.lock().unwrap_or_else(|p| p.into_inner());
            self.wakes.fetch_add(1, Ordering::SeqCst);
            *g
        };
        if sleepers == 0 {
            // Nobody asleep: whoever looks for work next sees it.
        } else if readers >= sleepers {
            self.woken.notify_all();
        } else {
            (0..readers).for_each(|_| self.woken.notify_one());
        }
    }

    /// Sleep until a wake after `seen` (the wake count read before this
    /// reader last found no work), or `most` passes; true if woken.
    fn idle(&self, seen: u64, most: Duration) -> bool {
        for _ in 0..SPIN {
            std::thread::yield_now();
            if self.wakes.load(Ordering::SeqCst) != seen {
                return true;
            }
        }
        let mut g = self.sleepers.lock().unwrap_or_else(|p| p.into_inner());
        if self.wakes.load(Ordering::SeqCst) != seen {
            return true;
        }
        *g += 1;
        let (mut g, waited) = self
            .woken
            .wait_timeout_while(g, most, |_| self.wakes.load(Ordering::SeqCst) == seen)
            .unwrap_or_else(|p| p.into_inner());
        *g -= 1;
        !waited.timed_out()
    }

    /// A reader thread: the walk's batches first, then found directories
    /// while within the bounds, until the walk is over.
    fn run(&self, rx: &crossbeam_channel::Receiver<Batch>) {
        loop {
            // Read before looking for work: a wake after this is not lost.
            let seen = self.wakes.load(Ordering::SeqCst);
            let batch = match rx.try_recv() {
                Ok(b) => b,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return,
                Err(crossbeam_channel::TryRecvError::Empty) => match self.next_found() {
                    Some(b) => b,
                    None => {
                        self.idle(seen, IDLE);
                        continue;
                    }
                },
            };
            let mut found = Vec::new();
            for (name, prior) in &batch.entries {
                if let Some(dir) = self.visit(&batch, name, prior.as_ref()) {
                    found.push(dir);
                }
            }
            // Depth first in the walk's order: the first directory is
            // looked into first, so it goes on the stack last.
            let more = found.len();
            self.found
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(found.into_iter().rev());
            self.wake(more);
        }
    }

    /// The newest found directory, if the readers may go further ahead.
    fn next_found(&self) -> Option<Batch> {
        let ahead = self.ahead.load(Ordering::Relaxed);
        let walked = self.walked.load(Ordering::Relaxed);
        if ahead > walked + AHEAD_ENTRIES {
            return None;
        }
        let (b, more) = {
            let mut found = self.found.lock().unwrap_or_else(|p| p.into_inner());
            (found.pop()?, !found.is_empty())
        };
        if more {
            // Pass it on: another idle reader takes the next.
            self.wake(1);
        }
        self.ahead
            .fetch_add(b.entries.len() as u64, Ordering::Relaxed);
        if b.scope == Scope::New {
            self.listed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((b.dev, b.ino), true);
        }
        Some(b)
    }

    fn within_bytes(&self) -> bool {
        self.hinted_bytes.load(Ordering::Relaxed)
            <= self.walked_bytes.load(Ordering::Relaxed) + AHEAD_BYTES
    }

    /// `lstat` one entry of `batch`; if it is a regular file the backup
    /// will read, ask the kernel to read its start; if it is a directory,
    /// list it and return it for later. Errors are the walk's to report.
    fn visit(&self, batch: &Batch, name: &OsString, prior: Option<&Prior>) -> Option<Batch> {
        let dir = batch.dir.as_fd();
        let meta = crate::source::fs::stat_at(dir, name, Path::new("")).ok()?;
        let path = batch.path.join(name);
        if self.excludes.is_excluded(&path, meta.is_dir()) {
            return None;
        }
        if meta.is_dir() {
            let scope = match batch.scope {
                Scope::Walked if prior.is_some() && self.rules.use_parent => Scope::Known,
                Scope::Walked => Scope::New,
                s => s,
            };
            return self.list(batch, name, path, &meta, scope);
        }
        if meta.is_file() && meta.size() > 0 {
            self.hint(batch, name, prior, &meta);
        }
        None
    }

    /// Ask the kernel to read the start of the regular file `name` of
    /// `batch` if the backup will read it; true if it did.
    fn hint(&self, batch: &Batch, name: &OsString, prior: Option<&Prior>, meta: &Meta) -> bool {
        let read = match batch.scope {
            Scope::Walked => !prior.is_some_and(|p| self.rules.unchanged(p, meta)),
            Scope::New => self.within_bytes(),
            Scope::Known => false,
        };
        if !read {
            return false;
        }
        // Not blocking: a file replaced by a FIFO since the lstat opens at
        // once (and is not read).
        let Ok(fd) = rustix::fs::openat(
            batch.dir.as_fd(),
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return false;
        };
        let len = meta.size().min(HINT_BYTES);
        if batch.scope != Scope::Walked {
            self.hinted_bytes.fetch_add(len, Ordering::Relaxed);
        }
        rustix::fs::fadvise(&fd, 0, std::num::NonZeroU64::new(len), Advice::WillNeed).is_ok()
    }

    /// List the directory `name` of `batch` (at `path`) for the readers to
    /// look into later, unless it was listed already, is on another device
    /// under `--one-file-system`, a marker file excludes it, or the readers
    /// hold [`FOUND`] directories already.
    fn list(
        &self,
        batch: &Batch,
        name: &OsString,
        path: PathBuf,
        meta: &Meta,
        scope: Scope,
    ) -> Option<Batch> {
        if self.one_file_system && meta.dev() != batch.dev {
            return None;
        }
        if self.found.lock().unwrap_or_else(|p| p.into_inner()).len() >= FOUND {
            return None;
        }
        {
            let mut listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
            if listed.insert((meta.dev(), meta.ino()), false).is_some() {
                return None;
            }
        }
        let fd = crate::source::fs::open_dir_at(batch.dir.as_fd(), name, &path, meta).ok()?;
        let mut names = crate::source::fs::list_dir(fd.as_fd(), &path).ok()?;
        if names.is_empty() || self.excludes.excludes_dir(fd.as_fd(), &names) {
            return None;
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Some(Batch {
            dir: Arc::new(fd),
            path: Arc::from(path),
            dev: meta.dev(),
            ino: meta.ino(),
            scope,
            entries: names.into_iter().map(|n| (n, None)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        use_parent: true,
        ignore_inode: false,
        ignore_ctime: false,
    };

    fn walked_batch(dir: &std::fs::File, path: &Path) -> Batch {
        Batch {
            dir: Arc::new(rustix::io::fcntl_dupfd_cloexec(dir, 0).unwrap()),
            path: Arc::from(path),
            dev: 0,
            ino: 0,
            scope: Scope::Walked,
            entries: Vec::new(),
        }
    }

    fn names(b: &Batch) -> Vec<String> {
        b.entries
            .iter()
            .map(|(n, _)| n.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn idle_readers_sleep_until_woken_and_miss_no_wake() {
        let shared = Arc::new(Shared::new(RULES, ExcludeMatcher::default(), false));
        let seen = shared.wakes.load(Ordering::SeqCst);
        // Nothing new: the reader sleeps its whole time.
        assert!(!shared.idle(seen, Duration::from_millis(1)));
        // A wake before the reader sleeps is not lost.
        shared.wake(1);
        assert!(shared.idle(seen, Duration::from_secs(60)));
        // A sleeping reader wakes for new work, long before its time.
        let seen = shared.wakes.load(Ordering::SeqCst);
        let reader = {
            let shared = shared.clone();
            std::thread::spawn(move || shared.idle(seen, Duration::from_secs(600)))
        };
        shared.wake(1);
        assert!(reader.join().unwrap());
        // No wake for no work.
        let seen = shared.wakes.load(Ordering::SeqCst);
        shared.wake(0);
        assert_eq!(shared.wakes.load(Ordering::SeqCst), seen);
    }

    #[test]
    fn only_files_the_backup_will_read_are_read_ahead() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("new"), b"content").unwrap();
        std::fs::write(p.join("same"), b"as before").unwrap();
        std::fs::write(p.join("empty"), b"").unwrap();
        std::os::unix::fs::symlink("new", p.join("link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p.join("fifo"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let dir = std::fs::File::open(p).unwrap();
        let batch = walked_batch(&dir, p);
        let shared = Shared::new(RULES, ExcludeMatcher::default(), false);
        let seen = crate::source::fs::stat_at(dir.as_fd(), "same".as_ref(), p).unwrap();
        let same = Prior {
            size: seen.size(),
            mtime: seen.mtime(),
            ctime: seen.ctime(),
            inode: seen.ino(),
            device: seen.dev(),
        };
        let changed = Prior { size: 1, ..same };
        let h = |s: &Shared, b: &Batch, name: &str, prior: Option<&Prior>| {
            let meta = crate::source::fs::stat_at(dir.as_fd(), name.as_ref(), p).unwrap();
            s.hint(b, &name.into(), prior, &meta)
        };
        assert!(h(&shared, &batch, "new", None));
        assert!(!h(&shared, &batch, "same", Some(&same)));
        assert!(h(&shared, &batch, "same", Some(&changed)));
        let forced = Shared::new(
            Rules {
                use_parent: false,
                ..RULES
            },
            ExcludeMatcher::default(),
            false,
        );
        assert!(h(&forced, &batch, "same", Some(&same)));
        for name in ["empty", "link", "fifo", "missing"] {
            assert!(shared.visit(&batch, &name.into(), None).is_none(), "{name}");
        }
        // Below a directory the parent snapshot had, only metadata.
        let known = Batch {
            scope: Scope::Known,
            ..walked_batch(&dir, p)
        };
        assert!(!h(&shared, &known, "new", None));
        let new = Batch {
            scope: Scope::New,
            ..walked_batch(&dir, p)
        };
        assert!(h(&shared, &new, "new", None));
        // The pool takes a directory and stops when dropped.
        let pool = Prefetcher::start(4, RULES, ExcludeMatcher::default(), false);
        let names = ["new", "same", "fifo"];
        pool.directory(
            dir.as_fd(),
            p,
            0,
            names.iter().map(|n| (n.into(), None)).collect(),
        );
        drop(pool);
    }

    #[test]
    fn readers_list_directories_ahead_of_the_walk_but_not_excluded_ones() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for sub in ["a", "b", "c", "skip", "tagged", "empty"] {
            std::fs::create_dir(p.join(sub)).unwrap();
        }
        std::fs::write(p.join("a/one"), b"1").unwrap();
        std::fs::write(p.join("a/two"), b"2").unwrap();
        std::fs::write(p.join("b/x"), b"x").unwrap();
        std::fs::write(p.join("c/y"), b"y").unwrap();
        std::fs::write(p.join("skip/z"), b"z").unwrap();
        std::fs::write(p.join("tagged/.nobackup"), b"").unwrap();
        std::fs::write(p.join("tagged/w"), b"w").unwrap();
        let excludes =
            ExcludeMatcher::new(&["skip".to_string()], &[".nobackup".to_string()]).unwrap();
        let shared = Shared::new(RULES, excludes, false);
        let dir = std::fs::File::open(p).unwrap();
        let root = rustix::fs::fstat(&dir).unwrap();
        let mut batch = walked_batch(&dir, p);
        batch.dev = root.st_dev;
        let prior = Prior {
            size: 0,
            mtime: Timestamp::default(),
            ctime: Timestamp::default(),
            inode: 0,
            device: 0,
        };
        // `a` is new since the parent snapshot, `b` was in it.
        let a = shared.visit(&batch, &"a".into(), None).unwrap();
        assert_eq!(
            (a.scope, names(&a)),
            (Scope::New, vec!["one".to_string(), "two".to_string()])
        );
        let b = shared.visit(&batch, &"b".into(), Some(&prior)).unwrap();
        assert_eq!((b.scope, names(&b)), (Scope::Known, vec!["x".to_string()]));
        // Listed once; excluded by name or by a marker file; nothing to list.
        for name in ["a", "skip", "tagged", "empty"] {
            assert!(shared.visit(&batch, &name.into(), None).is_none(), "{name}");
        }
        // Another device under --one-file-system.
        let ofs = Shared::new(RULES, ExcludeMatcher::default(), true);
        let mut elsewhere = walked_batch(&dir, p);
        elsewhere.dev = root.st_dev + 1;
        assert!(ofs.visit(&elsewhere, &"c".into(), None).is_none());
        assert!(ofs.visit(&batch, &"c".into(), None).is_some());
        // Depth first, the walk's order: `a` comes off the stack first.
        shared.found.lock().unwrap().extend([b, a]);
        assert_eq!(names(&shared.next_found().unwrap()), ["one", "two"]);
        // A new directory's files were all hinted once the readers took
        // it: the walk sends no batch of its own for it.
        let a_meta = std::fs::metadata(p.join("a")).unwrap();
        assert_eq!(
            shared
                .listed
                .lock()
                .unwrap()
                .get(&(a_meta.dev(), a_meta.ino())),
            Some(&true)
        );
        // No further than AHEAD_ENTRIES beyond the walk.
        shared.ahead.store(AHEAD_ENTRIES + 2, Ordering::Relaxed);
        assert!(shared.next_found().is_none());
        shared.walked.store(2, Ordering::Relaxed);
        assert_eq!(names(&shared.next_found().unwrap()), ["x"]);
    }
}
