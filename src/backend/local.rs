//! The local-directory backend: the embedded default.
//!
//! Writes are atomic and durable: a temporary file in the target directory,
//! fsync, rename over the final name, fsync of the directory.
//!
//! Files are created `0600` and directories `0700`: a key file readable by
//! other local users could be attacked offline. A repository given to a
//! group on purpose keeps working: when its `config` is group-readable,
//! new files are `0640` and directories `0750` (restic's rule).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::{Backend, ObjectInfo, validate_object_name};
use crate::error::{Error, Result};

/// A repository in a local directory.
pub struct LocalBackend {
    root: PathBuf,
    /// Recently read objects, kept open for ranged reads (restore reads
    /// many small ranges of the same packs).
    open_files: Mutex<Vec<(String, Arc<File>)>>,
    /// Modes for new files and directories, once the config exists.
    modes: OnceLock<Modes>,
}

/// Permission bits for what the local backend creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    /// New files.
    pub file: u32,
    /// New directories.
    pub dir: u32,
}

impl Modes {
    /// Only the owner: the default.
    pub const PRIVATE: Modes = Modes {
        file: 0o600,
        dir: 0o700,
    };
    /// The owner, and the group reads: for a repository whose `config` is
    /// group-readable.
    pub const GROUP: Modes = Modes {
        file: 0o640,
        dir: 0o750,
    };
    fn is_group(self) -> bool {
        self == Modes::GROUP
    }
}

/// How many objects stay open for ranged reads.
const OPEN_FILES: usize = 16;

/// Top-level directories of a repository.
pub const DIRS: [&str; 5] = ["keys", "data", "index", "snapshots", "locks"];

impl LocalBackend {
    /// The open file behind `name` (kept among the last [`OPEN_FILES`]
    /// opened), and its path.
    fn open_cached(&self, name: &str) -> Result<(Arc<File>, PathBuf)> {
        let p = self.path(name)?;
        let cached = {
            let files = self.open_files.lock().unwrap_or_else(|e| e.into_inner());
            files
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, f)| Arc::clone(f))
        };
        if let Some(f) = cached {
            return Ok((f, p));
        }
        let f = Arc::new(File::open(&p).map_err(|e| Error::io_path("cannot open", &p, e))?);
        let mut files = self.open_files.lock().unwrap_or_else(|e| e.into_inner());
        if files.len() >= OPEN_FILES {
            files.remove(0);
        }
        files.push((name.to_string(), Arc::clone(&f)));
        Ok((f, p))
    }

    /// A backend rooted at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend {
            root: root.into(),
            open_files: Mutex::new(Vec::new()),
            modes: OnceLock::new(),
        }
    }

    /// The modes for new files and directories: [`Modes::GROUP`] if the
    /// repository's `config` is group-readable, else [`Modes::PRIVATE`].
    /// Decided once the config exists (before that, during `init`, private).
    pub fn modes(&self) -> Modes {
        if let Some(m) = self.modes.get() {
            return *m;
        }
        match fs::metadata(self.root.join("config")) {
            Ok(m) => *self.modes.get_or_init(|| {
                if m.mode() & 0o040 != 0 {
                    Modes::GROUP
                } else {
                    Modes::PRIVATE
                }
            }),
            Err(_) => Modes::PRIVATE,
        }
    }

    /// Create `dir` and any missing parents with the directory mode. In a
    /// group repository the mode is set explicitly, whatever the umask.
    fn create_dirs(&self, dir: &Path, modes: Modes) -> Result<()> {
        let mut missing = Vec::new();
        let mut d = dir;
        while !d.is_dir() {
            missing.push(d);
            match d.parent() {
                Some(p) if !p.as_os_str().is_empty() => d = p,
                _ => break,
            }
        }
        for d in missing.into_iter().rev() {
            match fs::DirBuilder::new().mode(modes.dir).create(d) {
                Ok(()) if modes.is_group() => {
                    fs::set_permissions(d, fs::Permissions::from_mode(modes.dir))
                        .map_err(|e| Error::io_path("cannot set the mode of", d, e))?;
                }
                Ok(()) => {}
                // Another writer made it meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(e) => return Err(Error::io_path("cannot create", d, e)),
            }
        }
        Ok(())
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        validate_object_name(name)?;
        Ok(self.root.join(name))
    }

    fn list_into(&self, dir: &Path, prefix: &str, out: &mut Vec<ObjectInfo>) -> Result<()> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io_path("cannot list", dir, e)),
        };
        for entry in rd {
            let entry = entry.map_err(|e| Error::io_path("cannot list", dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.contains(".tmp-") {
                continue;
            }
            let ft = entry
                .file_type()
                .map_err(|e| Error::io_path("cannot stat", entry.path(), e))?;
            let full = format!("{prefix}/{name}");
            if ft.is_dir() {
                self.list_into(&entry.path(), &full, out)?;
            } else if ft.is_file() {
                let meta = entry
                    .metadata()
                    .map_err(|e| Error::io_path("cannot stat", entry.path(), e))?;
                out.push(ObjectInfo {
                    name: full,
                    size: meta.len(),
                    mtime: meta.modified().ok().and_then(super::system_time_ns),
                });
            }
        }
        Ok(())
    }
}

impl LocalBackend {
    fn forget_open(&self, name: &str) {
        self.open_files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(n, _)| n != name);
    }

    /// Write an object through `fill` into a new temporary file beside
    /// it, sync it, rename it into place and sync the directory.
    fn put_with(
        &self,
        name: &str,
        fill: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
    ) -> Result<()> {
        self.forget_open(name);
        let p = self.path(name)?;
        let dir = p
            .parent()
            .ok_or_else(|| Error::invalid(format!("object name {name:?} has no directory")))?;
        let modes = self.modes();
        self.create_dirs(dir, modes)?;
        let file_name = p
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::invalid(format!("object name {name:?}")))?;
        let tmp = dir.join(format!(
            "{file_name}.tmp-{}",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(modes.file)
                .open(&tmp)?;
            if modes.is_group() {
                // The umask may have taken the group's read bit.
                f.set_permissions(fs::Permissions::from_mode(modes.file))?;
            }
            fill(&mut f)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io_path("cannot write", &p, e));
        }
        if let Err(e) = fs::rename(&tmp, &p) {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io_path("cannot rename into place", &p, e));
        }
        sync_dir(dir)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io_path("cannot sync directory", dir, e))
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<()> {
        let modes = self.modes();
        self.create_dirs(&self.root, modes)
            .map_err(|e| e.context("cannot create the repository directory"))?;
        for d in DIRS {
            self.create_dirs(&self.root.join(d), modes)?;
        }
        for i in 0..=255u8 {
            self.create_dirs(&self.root.join("data").join(hex::encode([i])), modes)?;
        }
        sync_dir(&self.root)
    }

    fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        let p = self.path(dir)?;
        let mut out = Vec::new();
        self.list_into(&p, dir, &mut out)?;
        Ok(out)
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        let p = self.path(name)?;
        let mut f = File::open(&p).map_err(|e| Error::io_path("cannot open", &p, e))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out)
            .map_err(|e| Error::io_path("cannot read", &p, e))?;
        Ok(out)
    }

    fn get_capped(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        let p = self.path(name)?;
        let f = File::open(&p).map_err(|e| Error::io_path("cannot open", &p, e))?;
        let size = f
            .metadata()
            .map_err(|e| Error::io_path("cannot stat", &p, e))?
            .len();
        super::check_cap(name, size, max)?;
        // The size was checked on the open file; `take` still bounds a file
        // that grows meanwhile (its bytes then fail authentication).
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        f.take(max)
            .read_to_end(&mut out)
            .map_err(|e| Error::io_path("cannot read", &p, e))?;
        Ok(out)
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let (f, p) = self.open_cached(name)?;
        let len = usize::try_from(len).map_err(|_| Error::invalid("range too long"))?;
        let mut out = vec![0u8; len];
        f.read_exact_at(&mut out, offset)
            .map_err(|e| read_error(len, offset, &p, e))?;
        Ok(out)
    }

    /// Read in pieces of [`PIECE`] bytes into a buffer each thread keeps:
    /// a restore's ranged reads (up to 8 MiB each, hundreds of them) then
    /// allocate nothing, instead of mapping and faulting in a fresh buffer
    /// for every range.
    fn get_range_stream(
        &self,
        name: &str,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let (f, p) = self.open_cached(name)?;
        BUF.with(|cell| {
            // A sink that reads again on this thread gets its own buffer.
            let mut taken = std::mem::take(&mut *cell.borrow_mut());
            taken.resize(PIECE, 0);
            let mut done = 0u64;
            let r = (|| {
                while done < len {
                    let n = (len - done).min(PIECE as u64) as usize;
                    f.read_exact_at(&mut taken[..n], offset + done)
                        .map_err(|e| read_error(n, offset + done, &p, e))?;
                    sink(&taken[..n])?;
                    done += n as u64;
                }
                Ok(())
            })();
            *cell.borrow_mut() = taken;
            r
        })
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        self.put_parts(name, &[data])
    }

    fn put_parts(&self, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.put_with(name, |f| parts.iter().try_for_each(|p| f.write_all(p)))
    }

    fn put_owned(&self, name: &str, parts: Vec<Vec<u8>>) -> Result<()> {
        // Each part is dropped once it is in the page cache, before the
        // file is synced.
        self.put_with(name, |f| {
            parts.into_iter().try_for_each(|p| f.write_all(&p))
        })
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.forget_open(name);
        let p = self.path(name)?;
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io_path("cannot delete", &p, e)),
        }
    }

    fn will_read(&self, name: &str, offset: u64, len: u64) {
        let Ok(p) = self.path(name) else {
            return;
        };
        if let Ok(f) = File::open(&p) {
            let _ = rustix::fs::fadvise(
                &f,
                offset,
                std::num::NonZeroU64::new(len),
                rustix::fs::Advice::WillNeed,
            );
        }
    }

    fn stat(&self, name: &str) -> Result<u64> {
        let p = self.path(name)?;
        fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|e| Error::io_path("cannot stat", &p, e))
    }
}

/// Bytes read at a time by [`LocalBackend::get_range_stream`].
const PIECE: usize = 1 << 20;

fn read_error(len: usize, offset: u64, p: &Path, e: std::io::Error) -> Error {
    Error::io_path(
        &format!("cannot read {len} bytes at offset {offset} of"),
        p,
        e,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        super::super::conformance::run_all(&b);
    }

    #[test]
    fn a_streamed_read_longer_than_its_buffer_comes_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create().unwrap();
        let data: Vec<u8> = (0..3 * PIECE + 5).map(|i| (i * 7 % 251) as u8).collect();
        b.put("data/ab/abcd", &data).unwrap();
        let mut got = Vec::new();
        let mut pieces = 0;
        b.get_range_stream("data/ab/abcd", 3, data.len() as u64 - 3, &mut |p| {
            pieces += 1;
            // A sink that reads again on the same thread.
            assert_eq!(b.get_range("data/ab/abcd", 0, 2).unwrap(), &data[..2]);
            got.extend_from_slice(p);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, &data[3..]);
        assert_eq!(pieces, 4);
    }
}
