//! Backends: named objects on some storage.
//!
//! Owns: get/put/list/delete of opaque objects by name ("config",
//! "keys/<id>", "data/<2 hex>/<id>", …). Never touches: encryption, the
//! record formats, keys. A backend only ever sees sealed bytes.

pub mod cache;
pub mod local;
pub mod mem;
pub mod rclone;
pub mod remote;
pub mod rest;

use crate::error::Result;

/// An object's name, size and modification time, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Name relative to the repository root, `/`-separated.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written, in nanoseconds since the Unix
    /// epoch **by the storage's clock** (file mtime, S3 `LastModified`),
    /// or `None` if the backend does not say. Only ever compared with the
    /// time of another object on the same storage, never with this
    /// machine's clock, which may be wrong (see `repo::lock`).
    pub mtime: Option<i64>,
}

/// Nanoseconds since the Unix epoch of a storage timestamp (negative before
/// it); `None` if it does not fit.
pub fn system_time_ns(t: std::time::SystemTime) -> Option<i64> {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).ok(),
        Err(e) => i64::try_from(e.duration().as_nanos()).ok().map(|n| -n),
    }
}

/// Storage for named objects. Implementations must make `put` atomic (a
/// reader never sees a partial object) and durable before it returns.
pub trait Backend: Send + Sync {
    /// Where this backend points, for messages.
    fn location(&self) -> String;
    /// Prepare an empty repository location (create directories).
    fn create(&self) -> Result<()>;
    /// Every object under `dir` (recursively), e.g. `"snapshots"`.
    fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>>;
    /// A whole object.
    fn get(&self, name: &str) -> Result<Vec<u8>>;
    /// `len` bytes of an object from `offset`.
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// `len` bytes of an object from `offset`, handed to `sink` in order,
    /// in pieces as they arrive, so the caller works on the first bytes
    /// while the rest is on its way and never holds the whole range. An
    /// error from `sink` stops the read and is returned. Fewer than `len`
    /// bytes (the object is shorter) is an error after the bytes there
    /// were handed over. A network backend that loses its connection
    /// part-way reads on from the next byte (objects never change under
    /// their name), so `sink` never sees a byte twice. The default reads
    /// the whole range, then hands it over at once.
    fn get_range_stream(
        &self,
        name: &str,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        sink(&self.get_range(name, offset, len)?)
    }
    /// A whole object of at most `max` bytes, for objects read before they
    /// can be authenticated. The size is checked before anything is read,
    /// so a hostile object cannot make the reader allocate more than `max`;
    /// a larger object is an integrity error that names it ([`check_cap`]).
    /// The default asks for the size, then reads exactly that range.
    fn get_capped(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        let size = self.stat(name)?;
        check_cap(name, size, max)?;
        self.get_range(name, 0, size)
    }
    /// Store an object atomically and durably. Replaces an existing one.
    fn put(&self, name: &str, data: &[u8]) -> Result<()>;
    /// Store an object given as consecutive parts (same guarantees as
    /// `put`); backends that can stream override this to avoid a copy.
    fn put_parts(&self, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.put(name, &parts.concat())
    }
    /// Store an object given as owned parts (same guarantees as `put`). A
    /// backend that writes the parts one by one overrides this to drop each
    /// once written, so the caller's memory is given back while the object
    /// is made durable (the packer hands over whole packs this way).
    fn put_owned(&self, name: &str, parts: Vec<Vec<u8>>) -> Result<()> {
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        self.put_parts(name, &refs)
    }
    /// Remove an object. Removing a missing object is not an error.
    fn delete(&self, name: &str) -> Result<()>;
    /// The size of an object, or a NotFound error.
    fn stat(&self, name: &str) -> Result<u64>;
    /// Drop any locally cached copy of an object (it failed authentication).
    fn evict(&self, _name: &str) {}
    /// A hint that `len` bytes at `offset` of `name` will be read soon.
    /// Local storage asks the kernel to read them ahead
    /// (`posix_fadvise(WILLNEED)`), so that a cold disk has the next reads
    /// in flight while the current ones are processed; other storage
    /// ignores it. Never fails: a hint that cannot be given changes only
    /// how soon the read is served.
    fn will_read(&self, _name: &str, _offset: u64, _len: u64) {}
    /// A local directory where the layers above may cache sealed data, if
    /// this backend is remote enough to deserve one.
    fn cache_dir(&self) -> Option<std::path::PathBuf> {
        None
    }
    /// How many uploads this backend takes at once with profit: 1 for a
    /// local disk, the connection limit for network storage. Writers
    /// (backup's packer) use this many threads unless told otherwise.
    fn preferred_writers(&self) -> usize {
        1
    }
    /// True if the storage refuses to delete or overwrite anything but
    /// lock files (an append-only REST server). Operations that delete
    /// (forget, prune, key remove) ask first and stop before they begin.
    fn append_only(&self) -> Result<bool> {
        Ok(false)
    }
}

impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
    fn location(&self) -> String {
        (**self).location()
    }
    fn create(&self) -> Result<()> {
        (**self).create()
    }
    fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        (**self).list(dir)
    }
    fn get(&self, name: &str) -> Result<Vec<u8>> {
        (**self).get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        (**self).get_range(name, offset, len)
    }
    fn get_range_stream(
        &self,
        name: &str,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        (**self).get_range_stream(name, offset, len, sink)
    }
    fn get_capped(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        (**self).get_capped(name, max)
    }
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        (**self).put(name, data)
    }
    fn put_parts(&self, name: &str, parts: &[&[u8]]) -> Result<()> {
        (**self).put_parts(name, parts)
    }
    fn put_owned(&self, name: &str, parts: Vec<Vec<u8>>) -> Result<()> {
        (**self).put_owned(name, parts)
    }
    fn delete(&self, name: &str) -> Result<()> {
        (**self).delete(name)
    }
    fn stat(&self, name: &str) -> Result<u64> {
        (**self).stat(name)
    }
    fn evict(&self, name: &str) {
        (**self).evict(name)
    }
    fn will_read(&self, name: &str, offset: u64, len: u64) {
        (**self).will_read(name, offset, len)
    }
    fn cache_dir(&self) -> Option<std::path::PathBuf> {
        (**self).cache_dir()
    }
    fn preferred_writers(&self) -> usize {
        (**self).preferred_writers()
    }
    fn append_only(&self) -> Result<bool> {
        (**self).append_only()
    }
}

/// The error for an object larger than its kind may be (see
/// [`Backend::get_capped`]).
pub fn check_cap(name: &str, size: u64, max: u64) -> Result<()> {
    if size > max {
        return Err(crate::error::Error::integrity(format!(
            "{name} is {size} bytes, more than the {max} an object of its kind may have, so it was not read (damaged, or planted by someone who can write to the storage: move it away)"
        )));
    }
    Ok(())
}

/// Check that an object name is relative, `/`-separated and free of `..`,
/// so no backend is ever asked for a path outside its root.
pub fn validate_object_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
    if ok {
        Ok(())
    } else {
        Err(crate::error::Error::invalid(format!(
            "invalid object name {name:?}"
        )))
    }
}

/// Conformance tests that every backend must pass unchanged (used by the
/// unit tests here and by `tests/backends.rs` against SFTP and S3).
#[doc(hidden)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod conformance {
    use super::*;

    /// Run every check against a fresh, empty backend.
    pub fn run_all(b: &dyn Backend) {
        run(b, true);
    }

    /// [`run_all`] for storage whose listings carry no modification times
    /// (`rclone serve restic`): Cairn works there, judging locks by their
    /// processes only and deleting no pack in prune.
    pub fn run_all_without_times(b: &dyn Backend) {
        run(b, false);
    }

    fn run(b: &dyn Backend, times: bool) {
        b.create().unwrap();
        put_get_round_trip(b);
        ranges(b);
        listing(b, times);
        overwrite_and_delete(b);
        missing_objects(b);
        capped_reads(b);
    }

    fn capped_reads(b: &dyn Backend) {
        let data = vec![7u8; 5000];
        b.put("snapshots/capped", &data).unwrap();
        assert_eq!(b.get_capped("snapshots/capped", 5000).unwrap(), data);
        let e = b.get_capped("snapshots/capped", 4999).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Integrity, "{e}");
        assert!(
            e.to_string().contains("snapshots/capped is 5000 bytes"),
            "{e}"
        );
        b.put("snapshots/empty", b"").unwrap();
        assert!(b.get_capped("snapshots/empty", 0).unwrap().is_empty());
        assert!(b.get_capped("keys/none", 10).unwrap_err().is_not_found());
        b.delete("snapshots/capped").unwrap();
        b.delete("snapshots/empty").unwrap();
    }

    fn put_get_round_trip(b: &dyn Backend) {
        for (i, len) in [0usize, 1, 4095, 4096, 4097, 1 << 20]
            .into_iter()
            .enumerate()
        {
            let data: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
            let name = format!("index/{i:064x}");
            b.put(&name, &data).unwrap();
            assert_eq!(b.get(&name).unwrap(), data, "object of {len} bytes");
            assert_eq!(b.stat(&name).unwrap(), len as u64);
        }
    }

    fn ranges(b: &dyn Backend) {
        let data: Vec<u8> = (0..10_000u32).map(|j| j as u8).collect();
        b.put("data/ab/abcd", &data).unwrap();
        assert_eq!(b.get_range("data/ab/abcd", 0, 10).unwrap(), &data[..10]);
        assert_eq!(
            b.get_range("data/ab/abcd", 9_990, 10).unwrap(),
            &data[9_990..]
        );
        assert_eq!(b.get_range("data/ab/abcd", 5, 0).unwrap(), Vec::<u8>::new());
        assert!(
            b.get_range("data/ab/abcd", 9_995, 10).is_err(),
            "range past the end"
        );
        // Streamed: the same bytes, in order, whatever the pieces.
        let streamed = |offset, len| {
            let mut got = Vec::new();
            b.get_range_stream("data/ab/abcd", offset, len, &mut |piece| {
                got.extend_from_slice(piece);
                Ok(())
            })
            .map(|()| got)
        };
        assert_eq!(streamed(0, 10_000).unwrap(), data);
        assert_eq!(streamed(123, 4567).unwrap(), &data[123..123 + 4567]);
        assert!(streamed(9_995, 10).is_err(), "streamed range past the end");
        // A sink's error stops the read and comes back as it was.
        let e = b
            .get_range_stream("data/ab/abcd", 0, 10_000, &mut |_| {
                Err(crate::error::Error::invalid("the sink stops here"))
            })
            .unwrap_err();
        assert!(e.to_string().contains("the sink stops here"), "{e}");
        assert!(
            b.get_range_stream("data/cd/none", 0, 10, &mut |_| Ok(()))
                .unwrap_err()
                .is_not_found()
        );
    }

    fn listing(b: &dyn Backend, times: bool) {
        b.put("snapshots/01", b"a").unwrap();
        b.put("snapshots/02", b"bc").unwrap();
        let mut l = b.list("snapshots").unwrap();
        l.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(
            l.iter()
                .map(|o| (o.name.as_str(), o.size))
                .collect::<Vec<_>>(),
            vec![("snapshots/01", 1), ("snapshots/02", 2)]
        );
        // Every backend gives modification times: locks and prune's grace
        // period judge ages by the storage's clock, and without times they
        // must assume everything is new (prune could then delete nothing).
        for o in l.iter().filter(|_| times) {
            assert!(o.mtime.is_some(), "{} listed without a time", o.name);
        }
        // A rewrite moves the time forward (or keeps it, at a coarse
        // granularity), never back.
        let first = l[0].mtime;
        b.put("snapshots/01", b"a2").unwrap();
        let again = b.list("snapshots").unwrap();
        let rewritten = again.iter().find(|o| o.name == "snapshots/01").unwrap();
        assert!(
            rewritten.mtime >= first,
            "{rewritten:?} older than {first:?}"
        );
        let data = b.list("data").unwrap();
        assert!(data.iter().any(|o| o.name == "data/ab/abcd"), "{data:?}");
        assert!(b.list("locks").unwrap().is_empty());
    }

    fn overwrite_and_delete(b: &dyn Backend) {
        b.put_parts("locks/parts", &[b"ab", b"", b"cde"]).unwrap();
        assert_eq!(b.get("locks/parts").unwrap(), b"abcde");
        assert_eq!(b.get_range("locks/parts", 1, 3).unwrap(), b"bcd");
        let owned = vec![b"fg".to_vec(), Vec::new(), b"hij".to_vec()];
        b.put_owned("locks/parts", owned).unwrap();
        assert_eq!(b.get("locks/parts").unwrap(), b"fghij");
        b.delete("locks/parts").unwrap();
        b.put("locks/x", b"one").unwrap();
        b.put("locks/x", b"two").unwrap();
        assert_eq!(b.get("locks/x").unwrap(), b"two");
        b.delete("locks/x").unwrap();
        assert!(b.get("locks/x").unwrap_err().is_not_found());
        b.delete("locks/x").unwrap();
    }

    fn missing_objects(b: &dyn Backend) {
        assert!(b.get("keys/none").unwrap_err().is_not_found());
        assert!(b.stat("keys/none").unwrap_err().is_not_found());
        assert!(b.get("../escape").is_err());
        assert!(b.put("/abs", b"x").is_err());
    }
}
