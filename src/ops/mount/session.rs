//! The FUSE session: the kernel's requests handed to worker threads that
//! answer them from a [`SnapshotFs`].
//!
//! `fuser` wants a filesystem that lives as long as the process; the
//! snapshot filesystem borrows the locked repository instead. So the
//! filesystem `fuser` holds is a dispatcher that sends each request, with
//! its reply, to worker threads scoped inside [`mount`], which borrow the
//! repository; when the session ends the dispatcher is dropped, the
//! workers drain and stop, and only then is the lock given back.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyXattr, Request, SessionACL,
};

use super::MountOptions;
use super::cache::{ReadAhead, serve_read_ahead};
use super::fs::{Attr, CacheSizes, Fail, Kind, SnapshotFs};
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::Timestamp;
use crate::repo::{Indexed, Repository};

/// How long the kernel may keep what it was told: nothing in a mounted
/// repository changes while it is mounted.
const TTL: Duration = Duration::from_secs(3600);

/// How often the lock's token is looked at (a lost lock unmounts).
const LOCK_POLL: Duration = Duration::from_millis(500);

/// Largest read the kernel reads ahead by itself.
const KERNEL_READ_AHEAD: u32 = 1 << 20;

type Job = Box<dyn for<'x, 'y> FnOnce(&'x SnapshotFs<'y>) + Send>;

/// What `fuser` holds: a sender of requests to the workers.
struct Dispatch {
    tx: crossbeam_channel::Sender<Job>,
}

impl Dispatch {
    fn send(&self, job: Job) {
        // The workers stop only after this is dropped; a failed send drops
        // the reply, which answers EIO.
        let _ = self.tx.send(job);
    }
}

fn errno(f: Fail) -> Errno {
    match f {
        Fail::NotFound => Errno::ENOENT,
        Fail::NotDir => Errno::ENOTDIR,
        Fail::Invalid => Errno::EINVAL,
        Fail::NoAttr => Errno::ENODATA,
        Fail::Io => Errno::EIO,
    }
}

fn system_time(t: Timestamp) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(t.nsec));
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::from_secs(t.sec as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + nanos
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
        Kind::Socket => FileType::Socket,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: system_time(a.mtime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.mtime),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

fn xattr_reply(reply: ReplyXattr, data: &[u8], size: u32) {
    if size == 0 {
        reply.size(u32::try_from(data.len()).unwrap_or(u32::MAX));
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl Filesystem for Dispatch {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(nearest) = config.set_max_readahead(KERNEL_READ_AHEAD) {
            let _ = config.set_max_readahead(nearest);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.as_bytes().to_vec();
        self.send(Box::new(move |fs| match fs.lookup(parent.0, &name) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(f) => reply.error(errno(f)),
        }));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.send(Box::new(move |fs| match fs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(f) => reply.error(errno(f)),
        }));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.send(Box::new(move |fs| match fs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(f) => reply.error(errno(f)),
        }));
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.send(Box::new(move |fs| match fs.open(ino.0) {
            // The content never changes: the kernel may keep its pages
            // from one open to the next.
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(f) => reply.error(errno(f)),
        }));
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.send(Box::new(move |fs| match fs.read(fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(f) => reply.error(errno(f)),
        }));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.send(Box::new(move |fs| {
            fs.release(fh.0);
            reply.ok();
        }));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.send(Box::new(move |fs| {
            let entries = match fs.readdir(ino.0) {
                Ok(e) => e,
                Err(f) => return reply.error(errno(f)),
            };
            let dots = [
                (ino.0, Kind::Dir, b".".to_vec()),
                (fs.parent_of(ino.0), Kind::Dir, b"..".to_vec()),
            ];
            for (i, (child, kind, name)) in dots
                .into_iter()
                .chain(entries)
                .enumerate()
                .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            {
                if reply.add(
                    INodeNo(child),
                    i as u64 + 1,
                    file_type(kind),
                    OsStr::from_bytes(&name),
                ) {
                    break;
                }
            }
            reply.ok();
        }));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = name.as_bytes().to_vec();
        self.send(Box::new(move |fs| match fs.getxattr(ino.0, &name) {
            Ok(v) => xattr_reply(reply, &v, size),
            Err(f) => reply.error(errno(f)),
        }));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.send(Box::new(move |fs| match fs.listxattr(ino.0) {
            Ok(names) => {
                let mut list = Vec::new();
                for n in names {
                    list.extend_from_slice(&n);
                    list.push(0);
                }
                xattr_reply(reply, &list, size);
            }
            Err(f) => reply.error(errno(f)),
        }));
    }
}

/// Unmounts a mounted repository from another thread (a signal handler's):
/// the session then ends and [`mount`] returns.
#[derive(Clone)]
pub struct Unmounter {
    inner: Arc<Mutex<Option<fuser::SessionUnmounter>>>,
    path: PathBuf,
}

impl Unmounter {
    /// Unmount. A mount in use (a shell inside it, a file open) is
    /// detached instead: it leaves the directory tree at once, and the
    /// session ends when the last file in it is closed.
    pub fn unmount(&self) -> Result<()> {
        let taken = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut u) = taken
            && u.unmount().is_ok()
        {
            return Ok(());
        }
        match rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH) {
            // Already gone (unmounted before, or by someone else).
            Ok(()) | Err(rustix::io::Errno::INVAL) => Ok(()),
            Err(e) => Err(Error::io_path(
                "cannot unmount",
                &self.path,
                std::io::Error::from_raw_os_error(e.raw_os_error()),
            )),
        }
    }
}

/// Mount the snapshots of `index`'s repository read-only on `mountpoint`
/// (an empty directory) and serve them until the filesystem is unmounted:
/// by the [`Unmounter`] handed to `on_mounted` once the mount is in place,
/// by `fusermount -u` or `umount`, or when the lock is lost (then the
/// error is *lock lost*). Returns once every request is answered.
pub fn mount(
    index: &Indexed<'_>,
    mountpoint: &Path,
    opts: &MountOptions,
    on_mounted: &mut dyn FnMut(Unmounter),
) -> Result<()> {
    super::check_mountpoint(mountpoint)?;
    let repo: &Repository = index;
    let snaps = repo.load_snapshots()?;
    let owner = (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    let (ahead, ahead_rx) = ReadAhead::new();
    let sizes = CacheSizes {
        cache_bytes: opts.cache_bytes,
        read_ahead: opts.read_ahead,
    };
    let fs = SnapshotFs::new(repo, snaps, owner, sizes, Some(ahead));
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("cairn".into()),
        MountOption::Subtype("cairn".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
    ];
    if opts.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(1);
    let mut session = fuser::Session::new(Dispatch { tx }, mountpoint, &config).map_err(|e| {
        Error::io(
            format!("cannot mount the repository on {}", mountpoint.display()),
            e,
        )
    })?;
    let unmounter = Unmounter {
        inner: Arc::new(Mutex::new(Some(session.unmount_callable()))),
        path: mountpoint.to_path_buf(),
    };
    on_mounted(unmounter.clone());
    let token = index.lock().cancel_token().clone();
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
    let ended = std::thread::scope(|s| {
        let fs = &fs;
        for _ in 0..opts.threads.max(1) {
            let rx = rx.clone();
            s.spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(fs);
                }
            });
        }
        drop(rx);
        let (stop, watch) = (done_rx.clone(), done_rx);
        s.spawn(move || serve_read_ahead(fs.cache(), repo, &ahead_rx, &stop));
        let token = &token;
        s.spawn(move || {
            // A lost lock (or a cancelled token) unmounts.
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                watch.recv_timeout(LOCK_POLL)
            {
                if token.is_cancelled() {
                    let _ = unmounter.unmount();
                    return;
                }
            }
        });
        let ended = session.run();
        drop(done_tx);
        ended
    });
    ended.map_err(|e| Error::io("the mount's session failed", e))?;
    match token.check() {
        Err(e) if e.kind() != ErrorKind::Interrupted => Err(e),
        _ => Ok(()),
    }
}
