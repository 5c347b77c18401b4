//! Live SQLite databases: a database found in the tree is captured
//! through the online backup API (`source::sqlite`) and stored cut on page
//! boundaries; its `-wal`, `-shm` and `-journal` companions are left out.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::Ctx;
use super::record::CaptureInfo;
use crate::chunker::Cut;
use crate::error::Result;
use crate::format::tree::{EXT_SQLITE_CAPTURE, Node};
use crate::id::BlobId;
use crate::source::fs::Meta;
use crate::source::sqlite;

/// Pages per blob when a SQLite capture is cut on page boundaries (see
/// docs/BENCHMARKS.md for the measurement behind it).
pub const CAPTURE_CHUNK_PAGES: usize = 1;
/// Pages read per batch from a database before hashing them in parallel.
const CAPTURE_BATCH_BYTES: usize = 16 << 20;

impl Ctx<'_> {
    /// Capture a consistent state of a live SQLite database (`name` in
    /// `dir`, opened and checked by the caller as `meta`) and store it cut
    /// on page boundaries.
    pub(super) fn save_capture(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        path: &Path,
        meta: &Meta,
    ) -> Result<(Vec<BlobId>, u64, CaptureInfo)> {
        let (wal_size, wal_mtime) = sqlite::wal_state_at(dir, name);
        let reader = sqlite::PageReader::open_at(dir, name, meta, path, self.sqlite_timeout)?;
        let ps = reader.page_size as usize;
        let chunk = ps * CAPTURE_CHUNK_PAGES;
        let mut ids = Vec::with_capacity(reader.page_count as usize / CAPTURE_CHUNK_PAGES + 1);
        let total = reader.for_each_batch(path, (CAPTURE_BATCH_BYTES / ps).max(1), &mut |buf| {
            let cuts: Vec<Cut> = (0..buf.len())
                .step_by(chunk)
                .map(|offset| Cut {
                    offset,
                    len: chunk.min(buf.len() - offset),
                })
                .collect();
            ids.extend(self.saver.save_chunks(buf, &cuts)?);
            self.progress.advance(0, buf.len() as u64);
            Ok(())
        })?;
        reader.finish(path)?;
        Ok((
            ids,
            total,
            CaptureInfo {
                page_size: reader_page_size(ps),
                file_size: meta.size(),
                wal_size,
                wal_mtime,
            },
        ))
    }

    /// A parent entry may be reused: a plain file when capture is off or it
    /// was stored raw; a capture when capture is on and its WAL is as it was.
    pub(super) fn capture_still_valid(
        &self,
        old: &Node,
        dir: BorrowedFd<'_>,
        name: &OsStr,
    ) -> bool {
        match old
            .extension(EXT_SQLITE_CAPTURE)
            .map(CaptureInfo::from_bytes)
        {
            None => true,
            Some(None) => false,
            Some(Some(c)) => {
                self.sqlite && {
                    let (size, mtime) = sqlite::wal_state_at(dir, name);
                    size == c.wal_size && mtime == c.wal_mtime
                }
            }
        }
    }
}

/// Remove `-wal`, `-shm` and `-journal` files from `names` when the
/// database they belong to is in `names` too (it is captured with its WAL
/// folded in; a raw log would be replayed over it on restore). `dir` is
/// the open directory holding them.
pub(super) fn drop_companions(dir: BorrowedFd<'_>, names: &mut Vec<std::ffi::OsString>) {
    let set: HashSet<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
    let mut drop: HashSet<Vec<u8>> = HashSet::new();
    for n in names.iter() {
        let b = n.as_bytes();
        for suffix in sqlite::COMPANIONS {
            if let Some(stem) = b.strip_suffix(suffix.as_bytes())
                && set.contains(stem)
                && sqlite::is_database_at(dir, OsStr::from_bytes(stem))
            {
                drop.insert(b.to_vec());
            }
        }
    }
    if !drop.is_empty() {
        names.retain(|n| !drop.contains(n.as_bytes()));
    }
}

fn reader_page_size(ps: usize) -> u32 {
    u32::try_from(ps).unwrap_or(0)
}
