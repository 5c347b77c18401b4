//! Read-ahead for a backup's reads, apart from the CPU workers: when the
//! walk lists a directory, a pool of reader threads (`read_concurrency` of
//! them) looks at its entries ahead of the workers, `lstat`s each (the
//! inode is then cached), and asks the kernel to read the files the
//! backup will read (new or changed against the parent snapshot) with
//! `posix_fadvise(WILLNEED)` on their first [`HINT_BYTES`]. The device
//! then has many requests in flight while the two (or N) workers chunk,
//! hash, compress and seal what is already in memory; a cold first backup
//! is bound by the disk's parallel throughput instead of by one read per
//! worker at a time.
//!
//! Hints never block the walk: a directory whose hints find the queue full
//! is read without them. Memory is the page cache's, which the kernel may
//! reclaim; the queue holds at most [`QUEUE`] batches of [`BATCH`] names,
//! each batch with a duplicate of its directory's descriptor. Nothing here
//! decides what is backed up: a hint that fails, or comes late, changes
//! only how soon the worker's own read is served.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{Advice, Mode, OFlags};

use crate::source::fs::Meta;

use crate::format::tree::Timestamp;

/// Bytes of each file hinted: small files whole, the start of large ones
/// (which the kernel's own read-ahead then streams).
pub(super) const HINT_BYTES: u64 = 8 << 20;
/// Names per queued batch.
const BATCH: usize = 16;
/// Batches queued at most.
const QUEUE: usize = 64;

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

struct Batch {
    dir: Arc<OwnedFd>,
    entries: Vec<(OsString, Option<Prior>)>,
}

/// The reader threads; dropping this stops them.
pub(super) struct Prefetcher {
    tx: Option<crossbeam_channel::Sender<Batch>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Prefetcher {
    /// Start `threads` reader threads (none: no read-ahead).
    pub(super) fn start(threads: usize, rules: Rules) -> Prefetcher {
        if threads == 0 {
            return Prefetcher {
                tx: None,
                threads: Vec::new(),
            };
        }
        let (tx, rx) = crossbeam_channel::bounded::<Batch>(QUEUE);
        let handles = (0..threads)
            .filter_map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("cairn-read-{i}"))
                    .spawn(move || {
                        for batch in rx {
                            for (name, prior) in &batch.entries {
                                hint(batch.dir.as_fd(), name, prior.as_ref(), &rules);
                            }
                        }
                    })
                    .ok()
            })
            .collect();
        Prefetcher {
            tx: Some(tx),
            threads: handles,
        }
    }

    /// True if reader threads run (`read_concurrency` above 0).
    pub(super) fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Hint the entries of the open directory `dir`, in order. Returns at
    /// once; entries that find the queue full get no hint.
    pub(super) fn directory(&self, dir: BorrowedFd<'_>, entries: Vec<(OsString, Option<Prior>)>) {
        let Some(tx) = &self.tx else {
            return;
        };
        if entries.is_empty() {
            return;
        }
        let Ok(fd) = rustix::io::fcntl_dupfd_cloexec(dir, 0) else {
            return;
        };
        let dir = Arc::new(fd);
        let mut entries = entries.into_iter();
        loop {
            let batch: Vec<_> = entries.by_ref().take(BATCH).collect();
            if batch.is_empty() {
                break;
            }
            let job = Batch {
                dir: dir.clone(),
                entries: batch,
            };
            if tx.try_send(job).is_err() {
                break;
            }
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `lstat` one entry and, if it is a regular file the backup will read,
/// ask the kernel to read its start; true if it did. Errors are the
/// worker's to report.
fn hint(dir: BorrowedFd<'_>, name: &OsString, prior: Option<&Prior>, rules: &Rules) -> bool {
    let Ok(meta) = crate::source::fs::stat_at(dir, name, std::path::Path::new("")) else {
        return false;
    };
    if !meta.is_file() || meta.size() == 0 {
        return false;
    }
    if prior.is_some_and(|p| rules.unchanged(p, &meta)) {
        return false;
    }
    // Not blocking: a file replaced by a FIFO since the lstat opens at
    // once (and is not read).
    let Ok(fd) = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let len = meta.size().min(HINT_BYTES);
    rustix::fs::fadvise(&fd, 0, std::num::NonZeroU64::new(len), Advice::WillNeed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_the_backup_will_read_are_read_ahead() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("new"), b"content").unwrap();
        std::fs::write(p.join("same"), b"as before").unwrap();
        std::fs::write(p.join("empty"), b"").unwrap();
        std::fs::create_dir(p.join("dir")).unwrap();
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
        let rules = Rules {
            use_parent: true,
            ignore_inode: false,
            ignore_ctime: false,
        };
        let seen = crate::source::fs::stat_at(dir.as_fd(), "same".as_ref(), p).unwrap();
        let same = Prior {
            size: seen.size(),
            mtime: seen.mtime(),
            ctime: seen.ctime(),
            inode: seen.ino(),
            device: seen.dev(),
        };
        let changed = Prior { size: 1, ..same };
        let h = |name: &str, prior: Option<&Prior>| hint(dir.as_fd(), &name.into(), prior, &rules);
        assert!(h("new", None));
        assert!(!h("same", Some(&same)));
        assert!(h("same", Some(&changed)));
        let forced = Rules {
            use_parent: false,
            ..rules
        };
        assert!(hint(dir.as_fd(), &"same".into(), Some(&same), &forced));
        for name in ["empty", "dir", "link", "fifo", "missing"] {
            assert!(!h(name, None), "{name}");
        }
        // The pool takes a directory and stops when dropped.
        let pool = Prefetcher::start(4, rules);
        let names = ["new", "same", "fifo", "dir"];
        pool.directory(
            dir.as_fd(),
            names.iter().map(|n| (n.into(), None)).collect(),
        );
        drop(pool);
    }
}
