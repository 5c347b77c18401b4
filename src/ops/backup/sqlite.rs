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
use crate::format::suspect::{Reason, Suspect};
use crate::format::tree::{EXT_SQLITE_CAPTURE, EXT_SQLITE_SUSPECT, Node, NodeKind};
use crate::id::{BlobId, SnapshotId};
use crate::source::fs::Meta;
use crate::source::sqlite;

/// Pages per blob when a SQLite capture is cut on page boundaries (see
/// docs/BENCHMARKS.md for the measurement behind it).
pub const CAPTURE_CHUNK_PAGES: usize = 1;
/// Pages read per batch from a database before hashing them in parallel.
const CAPTURE_BATCH_BYTES: usize = 16 << 20;

/// A database as the capture found it.
pub(super) enum Captured {
    /// Captured: its page blobs, bytes, the capture record and the
    /// check's verdict (`None` with the check turned off).
    Stored {
        ids: Vec<BlobId>,
        total: u64,
        info: CaptureInfo,
        verdict: Option<sqlite::Verdict>,
    },
    /// It starts like a database but SQLite cannot read it (SQLite's
    /// message): it is stored as a plain file, and suspect.
    Unreadable(String),
}

/// What a database path's new entry holds, for the guard.
pub(super) enum Now<'a> {
    /// A capture: its page blobs and page size, and the check's verdict.
    Capture {
        ids: &'a [BlobId],
        page_size: u32,
        verdict: Option<&'a sqlite::Verdict>,
    },
    /// A file SQLite could not read, with SQLite's message.
    Unreadable(&'a str),
    /// A plain file (not a database).
    Plain,
}

/// Why a file at a database's path that was suspect in the parent snapshot
/// and is not a database now is suspect.
pub(super) const STILL_NOT: &str = "still not a SQLite database (suspect in the parent snapshot)";

/// Parent captures with fewer pages are not compared page by page: a
/// small database routinely rewrites most of its pages.
pub const REWRITE_MIN_PAGES: u64 = 256;

impl Ctx<'_> {
    /// Capture a consistent state of a live SQLite database (`name` in
    /// `dir`, opened and checked by the caller as `meta`) and store it cut
    /// on page boundaries, then check it (`quick_check`, unless turned off;
    /// `whole`: all of it, whatever its size).
    pub(super) fn save_capture(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        path: &Path,
        meta: &Meta,
        whole: bool,
    ) -> Result<Captured> {
        let (wal_size, wal_mtime) = sqlite::wal_state_at(dir, name);
        let reader = match sqlite::PageReader::open_at(dir, name, meta, path, self.sqlite_timeout)?
        {
            sqlite::Opened::Reader(r) => r,
            sqlite::Opened::Unreadable(why) => return Ok(Captured::Unreadable(why)),
        };
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
        let verdict = self
            .db_check
            .map(|limit| reader.quick_check(if whole { u64::MAX } else { limit }, self.check_turn));
        if let Some(v) = verdict.as_ref().filter(|v| !v.checked) {
            self.repo.observer().warning(&format!(
                "{}: not checked: {} (SQLite cannot run quick_check without the \
                 application's own definitions)",
                path.display(),
                v.text
            ));
        }
        reader.finish(path)?;
        Ok(Captured::Stored {
            ids,
            total,
            info: CaptureInfo {
                page_size: reader_page_size(ps),
                file_size: meta.size(),
                wal_size,
                wal_mtime,
            },
            verdict,
        })
    }

    /// The guard against silent damage: whether the new entry of a path
    /// is a suspect capture, judged against its earlier entry `old`: the
    /// parent snapshot's (`from` is `None`), or the newest good capture in
    /// snapshot `from` ([`Ctx::earlier_capture`]). Suspect: SQLite cannot
    /// read it; its check failed; it was a database (captured, or suspect)
    /// and is a plain file now; or more than half of the earlier capture's
    /// pages (of at least [`REWRITE_MIN_PAGES`]) are not at their place in
    /// this one.
    pub(super) fn judge(
        &self,
        old: Option<&Node>,
        from: Option<&SnapshotId>,
        now: Now<'_>,
    ) -> Option<Suspect> {
        let snapshot = match from {
            Some(id) => format!("snapshot {}", id.short()),
            None => "the parent snapshot".to_string(),
        };
        let old_capture = old
            .and_then(|o| o.extension(EXT_SQLITE_CAPTURE))
            .and_then(CaptureInfo::from_bytes);
        let old_suspect = old
            .and_then(|o| o.extension(EXT_SQLITE_SUSPECT))
            .and_then(|b| Suspect::from_bytes(b).ok());
        match now {
            Now::Unreadable(why) => Some(Suspect {
                reason: Reason::Unreadable,
                detail: format!("SQLite cannot read it: {why}"),
            }),
            Now::Plain => (old_capture.is_some() || old_suspect.is_some()).then(|| Suspect {
                reason: Reason::NotADatabase,
                detail: if old_capture.is_some() {
                    format!("no longer a SQLite database (captured as one in {snapshot})")
                } else {
                    STILL_NOT.into()
                },
            }),
            Now::Capture {
                verdict: Some(v), ..
            } if !v.ok() => Some(Suspect {
                reason: Reason::CheckFailed,
                detail: match v.sampled {
                    None => format!("quick_check: {}", v.text),
                    Some((n, of)) => {
                        format!("quick_check of {n} of its {of} tables: {}", v.text)
                    }
                },
            }),
            Now::Capture { ids, page_size, .. } => {
                let (old, capture) = (old?, old_capture?);
                let NodeKind::File { content } = &old.kind else {
                    return None;
                };
                let mut pages = 0u64;
                let mut rewritten = 0u64;
                let compared = crate::repo::chunklist::for_each_data_id(
                    self.repo,
                    content,
                    crate::repo::chunklist::chunk_limit(old),
                    &mut |id| {
                        let i = pages as usize;
                        pages += 1;
                        if capture.page_size != page_size || ids.get(i) != Some(id) {
                            rewritten += 1;
                        }
                        Ok(())
                    },
                );
                // A parent list that cannot be read is no evidence either
                // way (the backup does not depend on it).
                (compared.is_ok() && pages >= REWRITE_MIN_PAGES && rewritten * 2 > pages).then(
                    || Suspect {
                        reason: Reason::Rewritten,
                        detail: format!(
                            "{rewritten} of its {pages} pages rewritten since the capture \
                             in {snapshot}"
                        ),
                    },
                )
            }
        }
    }

    /// The newest good capture of `path` in an earlier snapshot, if its
    /// parent entry `old` is neither a capture nor marked suspect (the
    /// parent run left it out, was made with `--sqlite off`, or had other
    /// paths) and an earlier snapshot of this host lists it as captured.
    pub(super) fn earlier_capture(
        &self,
        path: &Path,
        old: Option<&Node>,
    ) -> Option<(SnapshotId, Node)> {
        if !self.sqlite
            || old.is_some_and(|o| {
                o.extension(EXT_SQLITE_CAPTURE).is_some()
                    || o.extension(EXT_SQLITE_SUSPECT).is_some()
            })
        {
            return None;
        }
        let (id, tree) = self.captured_before.get(path.as_os_str().as_bytes())?;
        // A snapshot that cannot be read here is no evidence either way.
        match crate::ops::walk::find(self.repo, tree, path.as_os_str().as_bytes()) {
            Ok(crate::ops::walk::Found::Entry(n))
                if n.extension(EXT_SQLITE_CAPTURE).is_some()
                    && n.extension(EXT_SQLITE_SUSPECT).is_none() =>
            {
                Some((*id, n))
            }
            _ => None,
        }
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
