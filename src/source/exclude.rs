//! Exclude rules, with restic's meaning: a pattern without `/` matches any
//! path component (a file or directory name anywhere); a pattern with `/`
//! matches the whole absolute path. `*` does not cross `/`, `**` does. A
//! trailing `/` restricts the pattern to directories.

use std::os::fd::BorrowedFd;
use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use rustix::fs::{FileType, Mode, OFlags};

use crate::error::{Error, Result};

/// Compiled exclude rules.
#[derive(Debug, Clone, Default)]
pub struct ExcludeMatcher {
    names: GlobSet,
    dir_names: GlobSet,
    paths: GlobSet,
    dir_paths: GlobSet,
    if_present: Vec<Vec<u8>>,
    exclude_caches: bool,
}

/// The name of a cache directory tag (<https://bford.info/cachedir/>).
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
/// The first bytes a valid cache directory tag starts with.
pub const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

fn glob(p: &str) -> Result<Glob> {
    GlobBuilder::new(p)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| Error::invalid(format!("bad exclude pattern {p:?}: {e}")))
}

impl ExcludeMatcher {
    /// Compile patterns and `--exclude-if-present` names.
    pub fn new(patterns: &[String], if_present: &[String]) -> Result<Self> {
        let mut names = GlobSetBuilder::new();
        let mut dir_names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        let mut dir_paths = GlobSetBuilder::new();
        for raw in patterns {
            let p = raw.trim();
            if p.is_empty() || p.starts_with('#') {
                continue;
            }
            let (p, dir_only) = match p.strip_suffix('/') {
                Some(s) if !s.is_empty() => (s, true),
                _ => (p, false),
            };
            let g = glob(p)?;
            match (p.contains('/'), dir_only) {
                (false, false) => names.add(g),
                (false, true) => dir_names.add(g),
                (true, false) => paths.add(g),
                (true, true) => dir_paths.add(g),
            };
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::invalid(format!("bad exclude patterns: {e}")))
        };
        Ok(ExcludeMatcher {
            names: build(names)?,
            dir_names: build(dir_names)?,
            paths: build(paths)?,
            dir_paths: build(dir_paths)?,
            if_present: if_present.iter().map(|s| s.as_bytes().to_vec()).collect(),
            exclude_caches: false,
        })
    }

    /// Also exclude directories tagged as caches with a valid `CACHEDIR.TAG`.
    pub fn with_exclude_caches(mut self, on: bool) -> Self {
        self.exclude_caches = on;
        self
    }

    /// True if the open directory `dir`, holding entries `names`, is
    /// excluded by `--exclude-if-present` or `--exclude-caches`. A tag is
    /// read through the handle, only if it is a regular file: a symlink or
    /// a FIFO named `CACHEDIR.TAG` is not a tag (and never blocks the walk).
    pub fn excludes_dir(&self, dir: BorrowedFd<'_>, names: &[std::ffi::OsString]) -> bool {
        use std::os::unix::ffi::OsStrExt;
        if names
            .iter()
            .any(|n| self.if_present.iter().any(|p| p == n.as_bytes()))
        {
            return true;
        }
        if self.exclude_caches && names.iter().any(|n| n == CACHEDIR_TAG) {
            let Ok(fd) = rustix::fs::openat(
                dir,
                CACHEDIR_TAG,
                OFlags::RDONLY
                    | OFlags::NOFOLLOW
                    | OFlags::NONBLOCK
                    | OFlags::NOCTTY
                    | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                return false;
            };
            if !rustix::fs::fstat(&fd)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
            {
                return false;
            }
            let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
            let ok = std::io::Read::read_exact(&mut std::fs::File::from(fd), &mut head).is_ok();
            return ok && head == CACHEDIR_SIGNATURE;
        }
        false
    }

    /// Read patterns from an exclude file: one per line, `#` comments.
    pub fn read_file(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io_path("cannot read exclude file", path, e))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect())
    }

    /// True if `path` (absolute) is excluded.
    pub fn is_excluded(&self, path: &Path, is_dir: bool) -> bool {
        let name = path.file_name().map(Path::new);
        if let Some(n) = name {
            if self.names.is_match(n) || (is_dir && self.dir_names.is_match(n)) {
                return true;
            }
        }
        self.paths.is_match(path) || (is_dir && self.dir_paths.is_match(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_semantics() {
        let m = ExcludeMatcher::new(
            &[
                "*.tmp".into(),
                "icon_cache/".into(),
                "/srv/data/cache/**".into(),
                "/opt/*/logs".into(),
            ],
            &[],
        )
        .unwrap();
        assert!(m.is_excluded(Path::new("/a/b/c.tmp"), false));
        assert!(!m.is_excluded(Path::new("/a/b.tmp/c"), false));
        assert!(m.is_excluded(Path::new("/x/icon_cache"), true));
        assert!(!m.is_excluded(Path::new("/x/icon_cache"), false));
        assert!(m.is_excluded(Path::new("/srv/data/cache/a/b"), false));
        assert!(m.is_excluded(Path::new("/opt/app/logs"), true));
        assert!(!m.is_excluded(Path::new("/opt/app/sub/logs"), true));
    }

    #[test]
    fn bad_patterns_are_reported() {
        assert!(ExcludeMatcher::new(&["a[".into()], &[]).is_err());
    }
}
