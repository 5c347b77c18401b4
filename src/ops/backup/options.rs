//! What to back up and how: [`BackupOptions`], the stream sources, and
//! their validation against the format's limits before anything is read.
//! Never touches: the filesystem, the repository.

use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::walk::clean_absolute;
use crate::error::{Error, Result};
use crate::id::SnapshotId;

/// What to back up and how.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Source paths (files or directories).
    pub paths: Vec<PathBuf>,
    /// Exclude patterns (see [`ExcludeMatcher`](crate::source::exclude::ExcludeMatcher)).
    pub excludes: Vec<String>,
    /// Names whose presence excludes their directory.
    pub exclude_if_present: Vec<String>,
    /// Exclude directories tagged with a valid `CACHEDIR.TAG`.
    pub exclude_caches: bool,
    /// Do not descend into other filesystems.
    pub one_file_system: bool,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    pub host: Option<String>,
    /// zstd level (default: the repository's).
    pub compression_level: Option<i32>,
    /// Pack writer threads (default: as many as the backend takes at once,
    /// [`crate::backend::Backend::preferred_writers`]).
    pub writers: Option<usize>,
    /// Parent snapshot; `None` picks the latest one of this host with the
    /// same paths.
    pub parent: Option<SnapshotId>,
    /// Read every file, even when the parent says it is unchanged.
    pub force: bool,
    /// Do not compare inode and device numbers (filesystems where they are
    /// not stable, e.g. some network and FUSE filesystems).
    pub ignore_inode: bool,
    /// Do not compare ctimes.
    pub ignore_ctime: bool,
    /// Store SQLite databases raw instead of capturing a consistent state.
    pub sqlite_off: bool,
    /// Also store a stream (standard input, or a command's output) as one
    /// file at the top of the snapshot.
    pub stream: Option<StreamSource>,
    /// Record this time instead of now (ns since the epoch), e.g. when
    /// importing older backups.
    pub time_ns: Option<i64>,
    /// How long to wait for a busy database before giving up on it
    /// (default 60 s).
    pub sqlite_timeout: Option<std::time::Duration>,
    /// Do not run `PRAGMA quick_check` on captured databases (the guard's
    /// other tests still run).
    pub sqlite_check_off: bool,
    /// Databases larger than this many bytes get a sampled check: a slice
    /// of their tables each capture (default [`DEFAULT_CHECK_LIMIT`]).
    pub sqlite_check_limit: Option<u64>,
    /// Reader threads that read ahead of the workers (default
    /// [`DEFAULT_READ_CONCURRENCY`]; 0: none), see `prefetch`.
    pub read_concurrency: Option<usize>,
}

/// Reads in flight ahead of the workers unless told otherwise: enough to
/// keep a SATA SSD or a small RAID busy (see docs/BENCHMARKS.md, "Cold
/// page cache").
pub const DEFAULT_READ_CONCURRENCY: usize = 16;

/// Largest database checked whole at capture unless told otherwise; the
/// check costs about a second per 900 MB of cached pages, half of a
/// capture's own time (BENCHMARKS, "The check at capture").
pub const DEFAULT_CHECK_LIMIT: u64 = 256 << 20;

/// A stream stored as one file: `pg_dumpall | cairn backup --stdin`, or a
/// command whose output is stored and whose failure fails the backup.
#[derive(Debug, Clone)]
pub enum StreamSource {
    /// Standard input, stored under this file name.
    Stdin {
        /// Name of the file in the snapshot's root directory.
        filename: String,
    },
    /// A command's standard output, stored under this file name. A command
    /// that exits non-zero fails the backup: no snapshot is written.
    Command {
        /// Program and arguments (no shell).
        argv: Vec<String>,
        /// Name of the file in the snapshot's root directory.
        filename: String,
    },
}

impl BackupOptions {
    /// Check what the snapshot will record — tags, host name, paths, the
    /// stream's file name — against the format's limits, before anything is
    /// read or written (a tag the format cannot carry must fail here, not
    /// after an hour of backup, and never be stored cut short).
    pub fn validate(&self) -> Result<()> {
        let host = self.host.clone().unwrap_or_else(crate::repo::hostname);
        let mut paths = Vec::with_capacity(self.paths.len() + 1);
        for p in &self.paths {
            paths.push(clean_absolute(p)?.into_os_string().into_vec());
        }
        if let Some(s) = &self.stream {
            crate::format::tree::validate_name(s.filename().as_bytes()).map_err(|_| {
                Error::invalid(format!("invalid --stdin-filename {:?}", s.filename()))
            })?;
            paths.push(format!("/{}", s.filename()).into_bytes());
        }
        crate::format::snapshot::check_labels(&host, &self.tags, &paths)
    }
}

impl StreamSource {
    pub(super) fn filename(&self) -> &str {
        match self {
            StreamSource::Stdin { filename } | StreamSource::Command { filename, .. } => filename,
        }
    }
}
