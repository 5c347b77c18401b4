//! The file saver: change detection against the parent snapshot's entry,
//! and reading, chunking and storing a regular file's content through the
//! handle it was listed by.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use super::Ctx;
use super::record::CaptureInfo;
use crate::error::{Error, Result};
use crate::format::tree::{EXT_SQLITE_CAPTURE, Node};
use crate::id::BlobId;
use crate::repo::save::STREAM_WINDOW;
use crate::source::fs::{self as sfs, Meta};
use crate::source::sqlite;

/// A file's content as read and stored.
pub(super) struct FileRead {
    /// Its blobs, in order.
    pub(super) ids: Vec<BlobId>,
    /// Bytes read.
    pub(super) len: u64,
    /// Details of a SQLite capture.
    pub(super) capture: Option<CaptureInfo>,
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
    ) -> Result<FileRead> {
        let (mut file, before) = sfs::open_file_at(dir, name, path, listed)?;
        let size = before.size();
        if self.sqlite && size >= 512 {
            let page =
                sqlite::sniff(&file).map_err(|e| Error::source_io("cannot read", path, e))?;
            if page.is_some() {
                // The page size the read transaction sees is the one used.
                let (ids, total, capture) = self.save_capture(dir, name, path, &before)?;
                return Ok(FileRead {
                    ids,
                    len: total,
                    capture: Some(capture),
                    streamed: total,
                    meta: before,
                    file,
                    changed: None,
                });
            }
        }
        let read_err = |e: std::io::Error| Error::source_io("cannot read", path, e);
        let window = STREAM_WINDOW as u64;
        let (ids, len, streamed) = if size < window {
            let data = sfs::read_all(&mut file, size, path)?;
            (self.saver.save_chunked(&data)?, data.len() as u64, 0)
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
            streamed,
            meta: before,
            file,
            changed: sfs::changed_while_read(&before, &after),
        })
    }
}
