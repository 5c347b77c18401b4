//! The file saver: change detection against the parent snapshot's entry,
//! and reading, chunking and storing a regular file's content through the
//! handle it was listed by.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::record::CaptureInfo;
use super::sqlite::{Captured, Now};
use super::{Ctx, add};
use crate::error::{Error, Result};
use crate::format::BlobType;
use crate::format::suspect::{Reason, Suspect};
use crate::format::tree::{EXT_SQLITE_CAPTURE, EXT_SQLITE_SUSPECT, Node, NodeKind, Xattr};
use crate::id::BlobId;
use crate::repo::save::STREAM_WINDOW;
use crate::source::fs::{self as sfs, Meta};
use crate::source::sqlite;

/// A file's tree entry as the file saver made it.
pub(super) struct SavedFile {
    /// The entry.
    pub(super) node: Node,
    /// The handle the file was read through, if it was (its extended
    /// attributes are read through it).
    pub(super) opened: Option<OwnedFd>,
    /// Extended attributes taken over from the parent snapshot's entry: a
    /// file reused with an unchanged ctime has unchanged xattrs too
    /// (setting or removing one moves the ctime).
    pub(super) old_xattrs: Option<Vec<Xattr>>,
}

/// A file's content as read and stored.
pub(super) struct FileRead {
    /// Its blobs, in order.
    pub(super) ids: Vec<BlobId>,
    /// Bytes read.
    pub(super) len: u64,
    /// Details of a SQLite capture.
    pub(super) capture: Option<CaptureInfo>,
    /// SQLite's verdict on the capture, if it was checked.
    pub(super) verdict: Option<sqlite::Verdict>,
    /// SQLite's message for a file that starts like a database but that
    /// SQLite cannot read (stored as a plain file).
    pub(super) unreadable: Option<String>,
    /// Bytes already reported to the progress sink.
    pub(super) streamed: u64,
    /// `fstat` when it was opened, before it was read: the metadata stored.
    pub(super) meta: Meta,
    /// The open file.
    pub(super) file: File,
    /// What changed while it was read, if anything did.
    pub(super) changed: Option<String>,
}

/// How a file is judged unchanged against its parent snapshot's entry.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChangeRules {
    pub(super) use_parent: bool,
    pub(super) ignore_inode: bool,
    pub(super) ignore_ctime: bool,
}

impl ChangeRules {
    /// What the read-ahead compares of `old` (see `prefetch`).
    pub(super) fn prior(&self, old: &Node) -> super::prefetch::Prior {
        super::prefetch::Prior {
            size: old
                .extension(EXT_SQLITE_CAPTURE)
                .and_then(CaptureInfo::from_bytes)
                .map_or(old.size, |c| c.file_size),
            mtime: old.mtime,
            ctime: old.ctime,
            inode: old.inode,
            device: old.device,
        }
    }

    /// True if `old` (from the parent snapshot) describes the same content
    /// as `meta`: same size and mtime (ns), and unless ignored the same
    /// ctime (ns), inode and device.
    pub(super) fn unchanged(&self, old: &Node, meta: &Meta) -> bool {
        // A capture's size is the captured state's; compare the file's.
        let size = old
            .extension(EXT_SQLITE_CAPTURE)
            .and_then(CaptureInfo::from_bytes)
            .map_or(old.size, |c| c.file_size);
        self.use_parent
            && size == meta.size()
            && old.mtime == meta.mtime()
            && (self.ignore_ctime || old.ctime == meta.ctime())
            && (self.ignore_inode || (old.inode == meta.ino() && old.device == meta.dev()))
    }
}

impl Ctx<'_> {
    /// Read, chunk and store the content of the regular file `name` in
    /// `dir`, listed as `listed`. The file is opened without following a
    /// symlink or blocking, and must be the object that was listed
    /// ([`sfs::open_file_at`]). Large files and captures report their bytes
    /// to the progress sink as they go (`Progress::advance`, counted in
    /// [`FileRead::streamed`]); the caller's `file_done` adds the rest.
    pub(super) fn save_file_content(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        path: &Path,
        listed: &Meta,
        whole_check: bool,
    ) -> Result<FileRead> {
        let (mut file, before) = sfs::open_file_at(dir, name, path, listed)?;
        let size = before.size();
        let mut unreadable = None;
        if self.sqlite && size >= 512 {
            let page =
                sqlite::sniff(&file).map_err(|e| Error::source_io("cannot read", path, e))?;
            if page.is_some()
                && before.nlink() > 1
                && sqlite::wal_mode(&file)
                && !sqlite::has_wal_at(dir, name)
            {
                // SQLite keeps a WAL database's log under the name the
                // application opened: through another hard link, the
                // committed transactions in that log are invisible, and
                // SQLite would start a log of its own under this name
                // (sharing one shared-memory index per file with any
                // capture through the other name in this process).
                return Err(Error::new(
                    crate::error::ErrorKind::Source,
                    format!(
                        "not capturing SQLite database {}: it is in WAL mode and has {} hard \
                         links, and its log is not next to this name; a capture through it \
                         could miss committed transactions (back up the name the application \
                         opens, and exclude this one)",
                        path.display(),
                        before.nlink()
                    ),
                ));
            }
            if page.is_some() {
                // The page size the read transaction sees is the one used.
                match self.save_capture(dir, name, path, &before, whole_check)? {
                    Captured::Stored {
                        ids,
                        total,
                        info,
                        verdict,
                    } => {
                        return Ok(FileRead {
                            ids,
                            len: total,
                            capture: Some(info),
                            verdict,
                            unreadable: None,
                            streamed: total,
                            meta: before,
                            file,
                            changed: None,
                        });
                    }
                    // Damaged beyond SQLite's reading: kept as it is.
                    Captured::Unreadable(why) => unreadable = Some(why),
                }
            }
        }
        let read_err = |e: std::io::Error| Error::source_io("cannot read", path, e);
        let window = STREAM_WINDOW as u64;
        let least = self.saver.serial_window() as u64;
        // Read whole and chunked in parallel if it fits in the content
        // budget beside the files other workers hold; read whole and
        // chunked on this thread if it is no larger than a serial window;
        // streamed otherwise.
        let held = (size < window)
            .then(|| self.saver.reserve(size as usize))
            .flatten();
        let (ids, len, streamed) = if size < window && (held.is_some() || size <= least) {
            let data = sfs::read_all(&mut file, size, path)?;
            let cuts: Vec<_> = self.repo.chunker().cuts(&data).collect();
            let ids = if held.is_some() {
                self.saver.save_chunks(&data, &cuts)?
            } else {
                self.saver.save_chunks_serial(&data, &cuts)?
            };
            drop(held);
            (ids, data.len() as u64, 0)
        } else {
            sfs::advise_sequential(&file);
            let (ids, len) =
                self.saver
                    .save_reader(&mut file, &|n| self.progress.advance(0, n), &read_err)?;
            (ids, len, len)
        };
        let after = Meta::of(file.as_fd()).map_err(|e| read_err(e.into()))?;
        Ok(FileRead {
            ids,
            len,
            capture: None,
            verdict: None,
            unreadable,
            streamed,
            meta: before,
            file,
            changed: sfs::changed_while_read(&before, &after),
        })
    }

    /// The file saver: the tree entry of the regular file `name` in `dir`
    /// (at `path`), `lstat`ed as `meta`; `None` if it cannot be read (the
    /// error is recorded). Its content is taken from the parent snapshot's
    /// entry `old` when the change rules say it is unchanged (and every blob
    /// is still indexed), from a hard link already read, or read, chunked
    /// and stored.
    pub(super) fn save_file(
        &self,
        dir: BorrowedFd<'_>,
        path: &Path,
        name: &[u8],
        meta: Meta,
        old: Option<&Node>,
    ) -> Result<Option<SavedFile>> {
        let os_name = OsStr::from_bytes(name);
        let mut opened: Option<OwnedFd> = None;
        let mut old_xattrs = None;
        let key = (meta.dev(), meta.ino());
        let cached = if meta.nlink() > 1 {
            self.hardlinks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned()
        } else {
            None
        };
        // A database path whose parent entry is no capture (the parent
        // run left it out, or captured nothing): judged against its newest
        // good capture in an earlier snapshot, and read again to be.
        let earlier = self.earlier_capture(path, old);
        // Unchanged since the parent snapshot: reuse its content list
        // without opening the file (if every blob is still indexed).
        let reused = old
            .filter(|_| earlier.is_none())
            .and_then(|o| match &o.kind {
                NodeKind::File { content }
                    if self.change.unchanged(o, &meta)
                        && self.capture_still_valid(o, dir, os_name)
                        && crate::repo::chunklist::content_indexed(self.repo, o, content) =>
                {
                    Some((
                        content.clone(),
                        o.size,
                        o.extension(EXT_SQLITE_CAPTURE).map(<[u8]>::to_vec),
                    ))
                }
                _ => None,
            });
        let was_reused = reused.is_some();
        let old_suspect = old
            .and_then(|o| o.extension(EXT_SQLITE_SUSPECT))
            .and_then(|b| Suspect::from_bytes(b).ok());
        let mut capture_ext: Option<Vec<u8>> = None;
        let mut suspect: Option<Suspect> = None;
        let found = match reused {
            Some((c, len, ext)) => {
                capture_ext = ext;
                // Unchanged since a suspect capture that was not a sound
                // database: still suspect, for the same reason.
                suspect = old_suspect
                    .clone()
                    .filter(|s| self.sqlite && s.reason.unsound())
                    .map(|s| match s.reason {
                        Reason::NotADatabase => Suspect {
                            reason: s.reason,
                            detail: super::sqlite::STILL_NOT.into(),
                        },
                        _ => s,
                    });
                Some((c, len))
            }
            // Another link to a file read by this backup: its content,
            // length and capture record.
            None => cached.map(|l| {
                capture_ext = l.capture;
                (l.content, l.len)
            }),
        };
        let mut streamed = 0;
        let mut stored_meta = meta;
        let (content, len) = match found {
            Some(found) => found,
            None => {
                crate::failpoint::hit("backup::before_open_file")?;
                self.progress.file_started(path);
                // A capture whose parent failed its check is checked
                // whole, not a slice: it stays suspect until all of it
                // passes.
                let whole = old_suspect
                    .as_ref()
                    .is_some_and(|s| s.reason == Reason::CheckFailed);
                match self.save_file_content(dir, os_name, path, &meta, whole) {
                    Ok(read) => {
                        streamed = read.streamed;
                        if self.sqlite {
                            let now = match (&read.unreadable, &read.capture) {
                                (Some(why), _) => Now::Unreadable(why),
                                (None, Some(c)) => Now::Capture {
                                    ids: &read.ids,
                                    page_size: c.page_size,
                                    verdict: read.verdict.as_ref(),
                                },
                                (None, None) => Now::Plain,
                            };
                            suspect = match &earlier {
                                Some((id, n)) => self.judge(Some(n), Some(id), now),
                                None => self.judge(old, None, now),
                            };
                        }
                        capture_ext = read.capture.map(CaptureInfo::to_bytes);
                        stored_meta = read.meta;
                        add(&self.counters.files_read, 1);
                        add(&self.counters.bytes_read, read.len);
                        // The chunk list becomes the entry's content:
                        // inline, or a tree of ID-list blobs stored here.
                        let content = crate::format::chunklist::build(read.ids, &mut |list| {
                            Ok(self.saver.save(BlobType::Tree, list)?.id)
                        })?;
                        if meta.nlink() > 1 {
                            self.hardlinks
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(
                                    key,
                                    super::Linked {
                                        content: content.clone(),
                                        len: read.len,
                                        capture: capture_ext.clone(),
                                    },
                                );
                        }
                        if let Some(what) = read.changed {
                            self.changed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((path.to_path_buf(), what));
                        }
                        opened = Some(read.file.into());
                        (content, read.len)
                    }
                    Err(e) if e.kind() == crate::error::ErrorKind::Source => {
                        self.record_error(path, e);
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        self.progress.file_done(path, len.saturating_sub(streamed));
        add(&self.counters.files, 1);
        add(&self.counters.total_bytes, len);
        // The one place where a file's chunk list becomes its tree entry's
        // content.
        let mut n =
            sfs::node_from_meta(name, &stored_meta, NodeKind::File { content }, &self.names);
        n.size = len;
        if let Some(ext) = capture_ext {
            n.extensions.push((EXT_SQLITE_CAPTURE, ext));
            if suspect.is_none() {
                self.captured
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(path.to_path_buf());
            }
        }
        if let Some(s) = suspect {
            n.extensions.push((EXT_SQLITE_SUSPECT, s.to_bytes()));
            self.suspects
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((path.to_path_buf(), s));
        }
        if was_reused && let Some(o) = old {
            if self.change.ignore_ctime {
                // The content was judged unchanged without the ctime:
                // keep the ctime it was read under, so a later backup
                // that does compare ctimes still notices a change this
                // one trusted away.
                n.ctime = o.ctime;
            } else {
                old_xattrs = Some(o.xattrs.clone());
            }
        }
        Ok(Some(SavedFile {
            node: n,
            opened,
            old_xattrs,
        }))
    }
}
