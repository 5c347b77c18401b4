//! Browsing snapshots as a read-only filesystem (`cairn mount`).
//!
//! Owns: the layout of the mounted tree and its inode numbers
//! ([`fs`]), the bounded blob cache and read-ahead ([`cache`]), and, in
//! builds with the `mount` feature, the FUSE session that serves them to
//! the kernel (`session`), unmounting when asked, when the kernel ends the
//! connection (`fusermount -u`), or when the repository lock is lost.
//!
//! The caller holds a shared lock and loads the index under it: the mount
//! takes an [`Indexed`], so no prune can delete a pack it reads from while
//! it is mounted, and the lock is refreshed, like any other, by its own
//! thread. Every blob is read through [`crate::repo::readplan`] and
//! checked as restore checks it (authenticated, decompressed, re-hashed
//! against its ID); a blob that fails is an I/O error for the reader and a
//! warning to the repository's observer, never wrong bytes.
//!
//! Never touches: signals, output (the command line wires them).

pub mod cache;
pub mod fs;
#[cfg(feature = "mount")]
mod session;

use std::path::Path;

use crate::error::{Error, ErrorKind, Result};
#[cfg(feature = "mount")]
pub use session::{Unmounter, mount};

/// Where the kernel's FUSE device is.
pub const FUSE_DEVICE: &str = "/dev/fuse";

/// How a mount reads and whom it serves.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Bytes of plaintext blobs kept in memory at most.
    pub cache_bytes: u64,
    /// Bytes a sequential reader is read ahead of (0: none).
    pub read_ahead: u64,
    /// Let other users than the one who mounted read it (FUSE's
    /// `allow_other`; permission bits still apply).
    pub allow_other: bool,
    /// Threads answering the kernel's requests.
    pub threads: usize,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            cache_bytes: 256 << 20,
            read_ahead: 32 << 20,
            allow_other: false,
            threads: 8,
        }
    }
}

/// Refuse what cannot be mounted on before anything is opened: the FUSE
/// device must exist and the mount point must be an empty directory.
pub fn check_mountpoint(mountpoint: &Path) -> Result<()> {
    if !Path::new(FUSE_DEVICE).exists() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "cannot mount: {FUSE_DEVICE} does not exist (load the kernel's fuse module, \
                 or give the container the device)"
            ),
        ));
    }
    let shown = mountpoint.display();
    let meta = std::fs::metadata(mountpoint).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::invalid(format!(
                "cannot mount on {shown}: it does not exist (create an empty directory)"
            ))
        } else {
            Error::io_path("cannot mount on", mountpoint, e)
        }
    })?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!(
            "cannot mount on {shown}: it is not a directory"
        )));
    }
    let mut entries = std::fs::read_dir(mountpoint)
        .map_err(|e| Error::io_path("cannot mount on", mountpoint, e))?;
    if entries.next().is_some() {
        return Err(Error::invalid(format!(
            "cannot mount on {shown}: the directory is not empty"
        )));
    }
    Ok(())
}
