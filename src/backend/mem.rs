//! An in-memory backend for tests and benchmarks, with optional fault
//! injection: fail every write after a countdown, as a crashed or
//! disconnected store would.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use super::{Backend, ObjectInfo, validate_object_name};
use crate::error::{Error, Result};

/// Objects in a map.
#[derive(Default)]
pub struct MemBackend {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
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
        self.lock().clone()
    }

    /// Replace an object's bytes directly, bypassing fault injection.
    pub fn set_raw(&self, name: &str, data: Vec<u8>) {
        self.lock().insert(name.to_string(), data);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
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
            .map(|(k, v)| ObjectInfo {
                name: k.clone(),
                size: v.len() as u64,
            })
            .collect())
    }
    fn get(&self, name: &str) -> Result<Vec<u8>> {
        validate_object_name(name)?;
        self.lock()
            .get(name)
            .cloned()
            .ok_or_else(|| Self::not_found(name))
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        validate_object_name(name)?;
        let objects = self.lock();
        let obj = objects.get(name).ok_or_else(|| Self::not_found(name))?;
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
        let obj = objects.get(name).ok_or_else(|| Self::not_found(name))?;
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
        self.lock().insert(name.to_string(), data.to_vec());
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
            .map(|v| v.len() as u64)
            .ok_or_else(|| Self::not_found(name))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::conformance::run_all(&super::MemBackend::new());
    }
}
