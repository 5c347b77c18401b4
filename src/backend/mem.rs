//! An in-memory backend for tests and benchmarks, with optional fault
//! injection: fail every write after a countdown, as a crashed or
//! disconnected store would.
//!
//! Its storage clock: an object's time is this process's wall clock when it
//! was written, made strictly increasing, and tests can move objects into
//! the past ([`MemBackend::backdate`]) to simulate age.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use super::{Backend, ObjectInfo, validate_object_name};
use crate::error::{Error, Result};

/// Objects in a map.
#[derive(Default)]
pub struct MemBackend {
    /// Each object's bytes and its modification time (ns, storage clock).
    objects: Mutex<BTreeMap<String, (Vec<u8>, i64)>>,
    /// The last time handed out, so times strictly increase.
    clock: AtomicI64,
    /// Writes allowed before every further write fails; negative: no limit.
    writes_left: AtomicI64,
    /// Bytes that may still be written (a full disk); negative: no limit.
    bytes_left: AtomicI64,
}

impl MemBackend {
    /// An empty store with no faults.
    pub fn new() -> Self {
        MemBackend {
            objects: Mutex::new(BTreeMap::new()),
            clock: AtomicI64::new(0),
            writes_left: AtomicI64::new(-1),
            bytes_left: AtomicI64::new(-1),
        }
    }

    /// Let `n` more writes succeed, then fail every write.
    pub fn fail_writes_after(&self, n: i64) {
        self.writes_left.store(n, Ordering::SeqCst);
    }

    /// Accept `n` more bytes of writes, then fail every write that does not
    /// fit, as a full disk does ("no space left on device").
    pub fn fail_writes_after_bytes(&self, n: i64) {
        self.bytes_left.store(n, Ordering::SeqCst);
    }

    /// A copy of every object (to inspect or to corrupt in tests).
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.lock()
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    /// Replace an object's bytes directly, bypassing fault injection.
    pub fn set_raw(&self, name: &str, data: Vec<u8>) {
        let t = self.tick();
        self.lock().insert(name.to_string(), (data, t));
    }

    /// Move the time of every object whose name starts with `prefix` back
    /// by `by`, as if it had been written that long ago.
    pub fn backdate(&self, prefix: &str, by: std::time::Duration) {
        let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        for (k, (_, t)) in self.lock().iter_mut() {
            if k.starts_with(prefix) {
                *t = t.saturating_sub(by);
            }
        }
    }

    /// The storage clock: now, but after every time handed out before.
    fn tick(&self) -> i64 {
        let now = super::system_time_ns(std::time::SystemTime::now()).unwrap_or(0);
        let mut prev = self.clock.load(Ordering::SeqCst);
        loop {
            let t = now.max(prev.saturating_add(1));
            match self
                .clock
                .compare_exchange(prev, t, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return t,
                Err(p) => prev = p,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Vec<u8>, i64)>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn not_found(name: &str) -> Error {
        Error::io(
            format!("object {name}"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    }
}

impl Backend for MemBackend {
    fn location(&self) -> String {
        "memory".into()
    }
    fn create(&self) -> Result<()> {
        Ok(())
    }
    fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        validate_object_name(dir)?;
        let prefix = format!("{dir}/");
        Ok(self
            .lock()
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, (v, t))| ObjectInfo {
                name: k.clone(),
                size: v.len() as u64,
                mtime: Some(*t),
            })
            .collect())
    }
    fn get(&self, name: &str) -> Result<Vec<u8>> {
        validate_object_name(name)?;
        self.lock()
            .get(name)
            .map(|(v, _)| v.clone())
            .ok_or_else(|| Self::not_found(name))
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        validate_object_name(name)?;
        let objects = self.lock();
        let (obj, _) = objects.get(name).ok_or_else(|| Self::not_found(name))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        obj.get(start..end).map(<[u8]>::to_vec).ok_or_else(|| {
            Error::io(
                format!("range {offset}+{len} of {name}"),
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            )
        })
    }
    fn get_capped(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        validate_object_name(name)?;
        let objects = self.lock();
        let (obj, _) = objects.get(name).ok_or_else(|| Self::not_found(name))?;
        super::check_cap(name, obj.len() as u64, max)?;
        Ok(obj.clone())
    }
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        validate_object_name(name)?;
        let left = self.writes_left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(Error::io(
                format!("write {name}"),
                std::io::Error::other("injected write failure"),
            ));
        }
        if left > 0 {
            self.writes_left.fetch_sub(1, Ordering::SeqCst);
        }
        let budget = self.bytes_left.load(Ordering::SeqCst);
        if budget >= 0 {
            if (data.len() as i64) > budget {
                return Err(Error::io(
                    format!("write {name}"),
                    std::io::Error::from_raw_os_error(28), // ENOSPC
                ));
            }
            self.bytes_left
                .fetch_sub(data.len() as i64, Ordering::SeqCst);
        }
        let t = self.tick();
        self.lock().insert(name.to_string(), (data.to_vec(), t));
        Ok(())
    }
    fn delete(&self, name: &str) -> Result<()> {
        validate_object_name(name)?;
        self.lock().remove(name);
        Ok(())
    }
    fn stat(&self, name: &str) -> Result<u64> {
        validate_object_name(name)?;
        self.lock()
            .get(name)
            .map(|(v, _)| v.len() as u64)
            .ok_or_else(|| Self::not_found(name))
    }
}

/// A backend that counts the reads it passes on to another (tests and
/// benchmarks: how many requests an operation makes, and how many bytes).
pub struct CountingBackend {
    inner: std::sync::Arc<dyn Backend>,
    /// What [`Backend::preferred_writers`] says (a network store's
    /// connection count, say).
    writers: usize,
    /// The local cache directory it reports, as a network store's would.
    cache_dir: Option<std::path::PathBuf>,
    /// Streamed reads come in pieces of at most this many bytes.
    piece: usize,
    reads: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
    /// Reads of packs (objects under `data/`).
    pack_reads: std::sync::atomic::AtomicU64,
    /// Objects named in [`Backend::will_read`] hints, in order.
    hints: std::sync::Mutex<Vec<String>>,
}

impl CountingBackend {
    /// Count the reads of `inner`, claiming to take `writers` requests at
    /// once.
    pub fn new(inner: std::sync::Arc<dyn Backend>, writers: usize) -> Self {
        CountingBackend {
            inner,
            writers,
            cache_dir: None,
            piece: usize::MAX,
            reads: Default::default(),
            bytes: Default::default(),
            pack_reads: Default::default(),
            hints: Default::default(),
        }
    }

    /// The objects named in read-ahead hints ([`Backend::will_read`])
    /// since the last call, in the order they came.
    pub fn take_hints(&self) -> Vec<String> {
        std::mem::take(&mut *self.hints.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Hand streamed reads ([`Backend::get_range_stream`]) over in pieces
    /// of at most `n` bytes, as a network read arrives.
    pub fn with_pieces(mut self, n: usize) -> Self {
        self.piece = n.max(1);
        self
    }

    /// Report `dir` as the local cache directory (where a repository
    /// keeps the tree blobs it read), as a network backend does.
    pub fn with_cache_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.cache_dir = Some(dir);
        self
    }

    /// Reads (`get`, `get_range`, `get_capped`, `get_range_stream`) and
    /// bytes read since the last call; the counters start again from zero.
    pub fn take_counts(&self) -> (u64, u64) {
        (
            self.reads.swap(0, Ordering::SeqCst),
            self.bytes.swap(0, Ordering::SeqCst),
        )
    }

    /// Reads of packs since the last call (the counter starts again from
    /// zero).
    pub fn take_pack_reads(&self) -> u64 {
        self.pack_reads.swap(0, Ordering::SeqCst)
    }

    fn count_read(&self, name: &str) {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if name.starts_with("data/") {
            self.pack_reads.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn count(&self, name: &str, r: Result<Vec<u8>>) -> Result<Vec<u8>> {
        self.count_read(name);
        if let Ok(b) = &r {
            self.bytes.fetch_add(b.len() as u64, Ordering::SeqCst);
        }
        r
    }
}

impl Backend for CountingBackend {
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
        self.count(name, self.inner.get(name))
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.count(name, self.inner.get_range(name, offset, len))
    }
    fn get_range_stream(
        &self,
        name: &str,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        self.count_read(name);
        self.inner
            .get_range_stream(name, offset, len, &mut |bytes| {
                self.bytes.fetch_add(bytes.len() as u64, Ordering::SeqCst);
                bytes.chunks(self.piece).try_for_each(&mut *sink)
            })
    }
    fn will_read(&self, name: &str, offset: u64, len: u64) {
        self.hints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.to_string());
        self.inner.will_read(name, offset, len)
    }
    fn get_capped(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        self.count(name, self.inner.get_capped(name, max))
    }
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        self.inner.put(name, data)
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> Result<u64> {
        self.inner.stat(name)
    }
    fn cache_dir(&self) -> Option<std::path::PathBuf> {
        self.cache_dir.clone()
    }
    fn preferred_writers(&self) -> usize {
        self.writers
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::conformance::run_all(&super::MemBackend::new());
    }
}
