//! A local cache in front of a network backend.
//!
//! Caches what every operation reads again and that never changes under
//! its name: index files and snapshots (whole objects), and tree blobs
//! (their sealed bytes, kept by the repository layer through
//! [`BlobCache`]). Everything cached is still sealed and is authenticated
//! on every use, exactly as if it came from the backend: a damaged or
//! planted cache entry fails authentication, is dropped, and the object is
//! fetched again. With a warm cache, an incremental backup to S3 reads
//! little more than the config, the keys and the locks.
//!
//! Cache files are created `0600` and directories `0700`, as restic and
//! borg do: sealed as they are, they tell other local users which objects
//! this machine reads.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Backend, ObjectInfo};
use crate::error::Result;

/// The cache directory of one repository location under `base` (the
/// caller's cache root: the command line's `$CAIRN_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/cairn`, else `~/.cache/cairn`).
pub fn cache_dir(base: &Path, location: &str) -> PathBuf {
    let key = blake3::hash(location.as_bytes()).to_hex();
    base.join(&key.as_str()[..24])
}

/// Files under one directory, written atomically.
#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    /// A cache rooted at `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        DiskCache { dir }
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        super::validate_object_name(name).ok()?;
        Some(self.dir.join(name))
    }

    /// A cached entry, if present.
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        fs::read(self.path(name)?).ok()
    }

    /// A cached entry of at most `max` bytes, if present; a larger one is
    /// dropped unread.
    pub fn get_capped(&self, name: &str, max: u64) -> Option<Vec<u8>> {
        let p = self.path(name)?;
        let f = fs::File::open(&p).ok()?;
        let size = f.metadata().ok()?.len();
        if size > max {
            let _ = fs::remove_file(&p);
            return None;
        }
        let mut out = Vec::with_capacity(usize::try_from(size).ok()?);
        f.take(max).read_to_end(&mut out).ok()?;
        Some(out)
    }

    /// Store an entry; failures only cost the caching.
    pub fn put(&self, name: &str, data: &[u8]) {
        let Some(p) = self.path(name) else { return };
        let Some(parent) = p.parent() else { return };
        if !parent.is_dir()
            && fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .is_err()
        {
            return;
        }
        let tmp = parent.join(format!(".tmp-{}", hex::encode(rand::random::<[u8; 8]>())));
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(data));
        if written.is_ok() && fs::rename(&tmp, &p).is_ok() {
            return;
        }
        let _ = fs::remove_file(&tmp);
    }

    /// Drop an entry.
    pub fn remove(&self, name: &str) {
        if let Some(p) = self.path(name) {
            let _ = fs::remove_file(p);
        }
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Sealed tree blobs by ID, for the repository layer.
pub type BlobCache = DiskCache;

/// A backend whose immutable index files and snapshots are cached locally.
pub struct CachedBackend {
    inner: std::sync::Arc<dyn Backend>,
    cache: DiskCache,
}

impl CachedBackend {
    /// Cache `inner`'s objects under `dir`.
    pub fn new(inner: std::sync::Arc<dyn Backend>, dir: PathBuf) -> Self {
        CachedBackend {
            inner,
            cache: DiskCache::new(dir),
        }
    }

    fn cacheable(name: &str) -> bool {
        name.starts_with("index/") || name.starts_with("snapshots/")
    }
}

impl Backend for CachedBackend {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(dir)
    }
    fn get(&self, name: &str) -> Result<Vec<u8>> {
        if Self::cacheable(name)
            && let Some(b) = self.cache.get(name)
        {
            return Ok(b);
        }
        let b = self.inner.get(name)?;
        if Self::cacheable(name) {
            self.cache.put(name, &b);
        }
        Ok(b)
    }
    fn get_capped(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        if Self::cacheable(name)
            && let Some(b) = self.cache.get_capped(name, max)
        {
            return Ok(b);
        }
        let b = self.inner.get_capped(name, max)?;
        if Self::cacheable(name) {
            self.cache.put(name, &b);
        }
        Ok(b)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.get_range(name, offset, len)
    }
    fn get_range_stream(
        &self,
        name: &str,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        self.inner.get_range_stream(name, offset, len, sink)
    }
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        self.inner.put(name, data)?;
        if Self::cacheable(name) {
            self.cache.put(name, data);
        }
        Ok(())
    }
    fn put_parts(&self, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.inner.put_parts(name, parts)
    }
    fn put_owned(&self, name: &str, parts: Vec<Vec<u8>>) -> Result<()> {
        self.inner.put_owned(name, parts)
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.cache.remove(name);
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> Result<u64> {
        self.inner.stat(name)
    }
    fn evict(&self, name: &str) {
        self.cache.remove(name);
    }
    fn will_read(&self, name: &str, offset: u64, len: u64) {
        self.inner.will_read(name, offset, len)
    }
    fn cache_dir(&self) -> Option<PathBuf> {
        Some(self.cache.dir().to_path_buf())
    }
    fn preferred_writers(&self) -> usize {
        self.inner.preferred_writers()
    }
    fn append_only(&self) -> Result<bool> {
        self.inner.append_only()
    }
}
