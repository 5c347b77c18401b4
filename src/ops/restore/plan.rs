//! Restore's plan: what the restore does to a target that already holds
//! entries, decided before anything is written.
//!
//! The snapshot's trees are walked together with the target's directories
//! (each opened relative to its parent's handle with `O_NOFOLLOW`, never
//! following a symlink). Each entry the restore would write is `New` (not in
//! the target), the same as the snapshot's (regular files: every chunk of
//! the existing file hashes to the snapshot's blob ID, read locally, nothing
//! downloaded; symlinks: the same target; special files: the same type and
//! device), or different. What happens to a different one is the caller's
//! [`Overwrite`] choice; by default the whole restore is refused, naming the
//! first one. With `delete`, entries of restored directories that the
//! snapshot lacks are listed for removal.
//!
//! Owns: the comparison and the decisions. Writing is `restore.rs`'s; this
//! module only reads the target (and, for `delete`, removes entries through
//! directory handles, never following a symlink nor crossing a mount).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::ObjId;
use crate::error::{Error, ErrorKind};
use crate::format::BlobType;
use crate::format::tree::{EXT_SQLITE_CAPTURE, FileContent, Node, NodeKind, Timestamp};
use crate::id::BlobId;
use crate::repo::Repository;
use crate::source::exclude::ExcludeMatcher;
use crate::source::fs::Meta;

/// What a restore does with an entry that the target already holds and
/// that differs from the snapshot's (restic's `--overwrite` words). An
/// entry identical to the snapshot's is left alone whatever the choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Refuse the whole restore, before writing anything, naming the first
    /// such entry (the default: nothing in the target is lost silently).
    #[default]
    Refuse,
    /// Replace it (each existing file is read and compared first).
    Always,
    /// Replace it; a file whose size and modification time match the
    /// snapshot's is taken as unchanged without being read.
    IfChanged,
    /// Replace it only if the snapshot's entry is newer (modification
    /// time); keep it otherwise.
    IfNewer,
    /// Keep it.
    Never,
}

/// What a restore does (or, in a dry run, would do) to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not in the target: created.
    New,
    /// In the target with other content or of another type: replaced.
    Replace,
    /// In the target and different, kept ([`Overwrite::Never`], or
    /// [`Overwrite::IfNewer`] with a snapshot entry that is not newer).
    Skip,
    /// In the target and different: the restore refuses
    /// ([`Overwrite::Refuse`]).
    Differs,
    /// In the target, not in the snapshot: removed (`delete`).
    Delete,
}

impl Overwrite {
    /// For an existing entry that differs: `Some(true)` to replace it,
    /// `Some(false)` to keep it, `None` to refuse the restore. `newer`: the
    /// snapshot's entry is newer than the existing one.
    pub fn replaces(self, newer: bool) -> Option<bool> {
        match self {
            Overwrite::Refuse => None,
            Overwrite::Always | Overwrite::IfChanged => Some(true),
            Overwrite::IfNewer => Some(newer),
            Overwrite::Never => Some(false),
        }
    }
}

impl Action {
    /// The word for it in listings and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Action::New => "new",
            Action::Replace => "replace",
            Action::Skip => "skip",
            Action::Differs => "differs",
            Action::Delete => "delete",
        }
    }
}

/// One entry of a dry run's listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The entry in the target: the target as given, joined with the
    /// entry's path below it.
    pub path: PathBuf,
    /// What happens to it.
    pub action: Action,
    /// It is (or would be) a directory.
    pub is_dir: bool,
}

/// The error of a restore refused because the target holds entries that
/// differ from the snapshot's: `first` is the first of them, `count` how
/// many there are.
pub fn refusal(target: &Path, first: &Path, count: usize) -> Error {
    let more = match count {
        0 | 1 => String::new(),
        2 => " (and 1 other entry)".to_string(),
        n => format!(" (and {} other entries)", n - 1),
    };
    Error::new(
        ErrorKind::InvalidInput,
        format!(
            "refusing to restore into {}: {} already exists and differs from the \
             snapshot{more}; nothing was written. Say what to do with such entries with \
             --overwrite always|if-changed|if-newer|never, or list them with --dry-run",
            target.display(),
            first.display()
        ),
    )
}

/// What the restore does with an entry that is in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Write the snapshot's entry in its place.
    Replace,
    /// The same as the snapshot's: left alone. The file's identity, for
    /// hard links to it.
    Unchanged(Option<ObjId>),
    /// Different, or in the way of a directory nothing is restored into:
    /// left alone.
    Skip,
}

/// The kind of entry the snapshot has, for a dry run's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    File(u64),
    Dir,
    Other,
}

/// What the walk found for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// Not in the target.
    New(Class),
    /// In the target, the same as the snapshot's.
    Same(Option<ObjId>),
    /// In the target, different; `newer`: the snapshot's entry is newer.
    Differs { class: Class, newer: bool },
    /// A non-directory in the way of a directory the restore puts nothing
    /// into: left alone.
    InTheWay,
    /// In a restored directory, not in the snapshot.
    Extra { is_dir: bool },
}

struct Seen {
    rel: Vec<u8>,
    found: Found,
}

/// The plan of a restore into a target that holds entries.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// By path below the target: what to do with entries that exist.
    pub decisions: HashMap<Vec<u8>, Decision>,
    /// Paths below the target to remove (`delete`), in walk order, and
    /// whether each was a directory.
    pub deletes: Vec<(Vec<u8>, bool)>,
    /// Every change, in walk order (`New` ones only when listing).
    pub changes: Vec<Change>,
    /// Entries the restore takes (restores, keeps or finds unchanged).
    pub taken: u64,
    /// A tree could not be read: `taken` may be short.
    pub incomplete: bool,
    pub unchanged: u64,
    pub skipped: u64,
    /// Dry-run counts of what would be written.
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub bytes: u64,
}

/// Walks the snapshot and the target together.
pub(super) struct Planner<'a> {
    pub repo: &'a Repository,
    pub include: Option<&'a ExcludeMatcher>,
    pub overwrite: Overwrite,
    pub delete: bool,
    /// Walk into directories the target lacks (to list or count what is
    /// new there).
    pub list_new: bool,
    seen: Mutex<Vec<Seen>>,
    incomplete: AtomicBool,
}

fn display(snapshot_path: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(snapshot_path))
}

fn join(base: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = base.to_vec();
    if !p.is_empty() && !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn class_of(n: &Node) -> Class {
    match &n.kind {
        NodeKind::File { .. } => Class::File(n.size),
        NodeKind::Dir { .. } => Class::Dir,
        _ => Class::Other,
    }
}

fn mtime_of(m: &Meta) -> Timestamp {
    m.mtime()
}

impl<'a> Planner<'a> {
    pub fn new(
        repo: &'a Repository,
        include: Option<&'a ExcludeMatcher>,
        overwrite: Overwrite,
        delete: bool,
        list_new: bool,
    ) -> Self {
        Planner {
            repo,
            include,
            overwrite,
            delete,
            list_new,
            seen: Mutex::new(Vec::new()),
            incomplete: AtomicBool::new(false),
        }
    }

    fn included(&self, path: &[u8], is_dir: bool) -> bool {
        match self.include {
            None => true,
            Some(m) => m.is_excluded(&display(path), is_dir),
        }
    }

    fn see(&self, rel: &[u8], found: Found) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Seen {
                rel: rel.to_vec(),
                found,
            });
    }

    /// Plan the content of `tree` (snapshot path `path`) restored into the
    /// target's directory `rel`, open as `dir` (`None`: it does not exist).
    /// Returns how many entries the restore takes there.
    pub fn tree(
        &self,
        dir: Option<&OwnedFd>,
        tree: &BlobId,
        path: &[u8],
        rel: &[u8],
        all: bool,
    ) -> u64 {
        if super::super::depth(rel) > super::super::MAX_TREE_DEPTH {
            self.incomplete.store(true, Ordering::Relaxed);
            return 0;
        }
        let t = match self.repo.load_tree(tree) {
            Ok(t) => t,
            Err(_) => {
                // The restore reports it for this directory.
                self.incomplete.store(true, Ordering::Relaxed);
                return 0;
            }
        };
        if self.delete
            && let Some(d) = dir
        {
            self.extras(d, &t.nodes, path, rel, all);
        }
        let (dirs, others): (Vec<&Node>, Vec<&Node>) = t
            .nodes
            .iter()
            .partition(|n| matches!(n.kind, NodeKind::Dir { .. }));
        let one = |n: &Node| -> u64 {
            let p = join(if path.is_empty() { b"/" } else { path }, &n.name);
            let r = join(rel, &n.name);
            let is_dir = matches!(n.kind, NodeKind::Dir { .. });
            let take = all || self.included(&p, is_dir);
            self.node(dir, n, &p, &r, take)
        };
        let (a, b) = rayon::join(
            || dirs.par_iter().map(|n| one(n)).sum::<u64>(),
            || others.par_iter().map(|n| one(n)).sum::<u64>(),
        );
        a + b
    }

    /// Plan one entry; returns how many entries the restore takes (it and,
    /// for a directory, below it).
    pub fn node(
        &self,
        dir: Option<&OwnedFd>,
        n: &Node,
        path: &[u8],
        rel: &[u8],
        take: bool,
    ) -> u64 {
        let name = OsStr::from_bytes(&n.name);
        let existing = dir.and_then(|d| {
            rustix::fs::statat(d, name, AtFlags::SYMLINK_NOFOLLOW)
                .ok()
                .map(Meta::new)
        });
        let newer = |m: &Meta| n.mtime > mtime_of(m);
        if let NodeKind::Dir { subtree } = &n.kind {
            let sub = match (&existing, dir) {
                (Some(m), Some(d)) if m.is_dir() => rustix::fs::openat(
                    d,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok(),
                _ => None,
            };
            let inner = if sub.is_some() || self.list_new || self.include.is_some() {
                self.tree(sub.as_ref(), subtree, path, rel, take)
            } else {
                0
            };
            let used = take || inner > 0;
            match &existing {
                None if used => self.see(rel, Found::New(Class::Dir)),
                Some(m) if !m.is_dir() => self.see(
                    rel,
                    if used {
                        Found::Differs {
                            class: Class::Dir,
                            newer: newer(m),
                        }
                    } else {
                        Found::InTheWay
                    },
                ),
                _ => {}
            }
            return inner + u64::from(used);
        }
        if !take || matches!(n.kind, NodeKind::Socket) {
            return 0;
        }
        let found = match (&existing, dir) {
            (Some(m), Some(d)) => {
                if self.same(d.as_fd(), name, n, m) {
                    Found::Same(m.is_file().then(|| (m.dev(), m.ino())))
                } else {
                    Found::Differs {
                        class: class_of(n),
                        newer: newer(m),
                    }
                }
            }
            _ => Found::New(class_of(n)),
        };
        self.see(rel, found);
        1
    }

    /// List the entries of the existing directory `dir` that the snapshot's
    /// `nodes` lack, for removal.
    fn extras(&self, dir: &OwnedFd, nodes: &[Node], path: &[u8], rel: &[u8], all: bool) {
        let Ok(names) = crate::source::fs::list_dir(dir.as_fd(), &display(path)) else {
            self.incomplete.store(true, Ordering::Relaxed);
            return;
        };
        let known: std::collections::HashSet<&[u8]> =
            nodes.iter().map(|n| n.name.as_slice()).collect();
        for name in names {
            let name = name.as_bytes();
            if known.contains(name) {
                continue;
            }
            let is_dir =
                rustix::fs::statat(dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
            let p = join(if path.is_empty() { b"/" } else { path }, name);
            if all || self.included(&p, is_dir) {
                self.see(&join(rel, name), Found::Extra { is_dir });
            }
        }
    }

    /// True if the existing entry `name` in `dir` (lstat `m`) is the same as
    /// the snapshot's `n`. Anything that cannot be read counts as different.
    fn same(&self, dir: BorrowedFd<'_>, name: &OsStr, n: &Node, m: &Meta) -> bool {
        match &n.kind {
            NodeKind::File { content } => {
                if !m.is_file() || m.size() != n.size {
                    return false;
                }
                // A database with a journal or WAL beside it is another
                // database than its file alone (SQLite replays them).
                if n.extension(EXT_SQLITE_CAPTURE).is_some()
                    && crate::source::sqlite::COMPANIONS.iter().any(|c| {
                        let mut companion = name.to_os_string();
                        companion.push(c);
                        rustix::fs::statat(dir, &companion, AtFlags::SYMLINK_NOFOLLOW).is_ok()
                    })
                {
                    return false;
                }
                if self.overwrite == Overwrite::IfChanged && m.mtime() == n.mtime {
                    return true;
                }
                self.same_content(dir, name, n, content, m).unwrap_or(false)
            }
            NodeKind::Symlink { target } => {
                m.is_symlink()
                    && rustix::fs::readlinkat(dir, name, Vec::new())
                        .is_ok_and(|t| t.as_bytes() == target.as_slice())
            }
            NodeKind::Fifo => m.file_type() == FileType::Fifo,
            NodeKind::CharDevice { rdev } => {
                m.file_type() == FileType::CharacterDevice && m.rdev() == *rdev
            }
            NodeKind::BlockDevice { rdev } => {
                m.file_type() == FileType::BlockDevice && m.rdev() == *rdev
            }
            NodeKind::Socket | NodeKind::Dir { .. } => false,
        }
    }

    /// Read the existing regular file chunk by chunk (the snapshot's chunk
    /// boundaries, from the index) and hash each piece against the
    /// snapshot's blob ID. `None` if it cannot be read.
    fn same_content(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        n: &Node,
        content: &FileContent,
        m: &Meta,
    ) -> Option<bool> {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let now = Meta::of(fd.as_fd()).ok()?;
        if !now.same_object(m) || !now.is_file() {
            return Some(false);
        }
        let file = File::from(fd);
        let ids = crate::repo::chunklist::data_ids(
            self.repo,
            content,
            crate::repo::chunklist::chunk_limit(n),
        )
        .ok()?;
        let mut at = 0u64;
        let mut buf = Vec::new();
        for id in ids.iter() {
            let len = self.repo.locate(BlobType::Data, id).ok()?.raw_len as usize;
            buf.resize(len, 0);
            match file.read_exact_at(&mut buf, at) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Some(false),
                Err(_) => return None,
            }
            if self.repo.id_key().blob_id(&buf) != *id {
                return Some(false);
            }
            at += len as u64;
        }
        Some(at == n.size)
    }

    /// The walk's findings, in walk order (depth first, names sorted),
    /// decided by the overwrite choice. `target` is the target as given
    /// (for the listed paths).
    pub fn finish(self, target: &Path) -> Plan {
        let mut seen = self.seen.into_inner().unwrap_or_else(|p| p.into_inner());
        seen.sort_by(|a, b| a.rel.split(|&c| c == b'/').cmp(b.rel.split(|&c| c == b'/')));
        let mut plan = Plan {
            incomplete: self.incomplete.into_inner(),
            ..Plan::default()
        };
        let shown = |rel: &[u8]| target.join(display(rel));
        let list_new = self.list_new;
        for s in seen {
            let mut change = |action: Action, is_dir: bool| {
                plan.changes.push(Change {
                    path: shown(&s.rel),
                    action,
                    is_dir,
                });
            };
            let (class, newer) = match s.found {
                Found::New(class) => {
                    if list_new {
                        change(Action::New, class == Class::Dir);
                    }
                    plan.taken += 1;
                    plan.count(class);
                    continue;
                }
                Found::Same(id) => {
                    plan.taken += 1;
                    plan.unchanged += 1;
                    plan.decisions.insert(s.rel, Decision::Unchanged(id));
                    continue;
                }
                Found::InTheWay => {
                    plan.decisions.insert(s.rel, Decision::Skip);
                    continue;
                }
                Found::Extra { is_dir } => {
                    change(Action::Delete, is_dir);
                    plan.deletes.push((s.rel, is_dir));
                    continue;
                }
                Found::Differs { class, newer } => (class, newer),
            };
            plan.taken += 1;
            let is_dir = class == Class::Dir;
            let Some(replace) = self.overwrite.replaces(newer) else {
                change(Action::Differs, is_dir);
                continue;
            };
            if replace {
                change(Action::Replace, is_dir);
                plan.count(class);
                plan.decisions.insert(s.rel, Decision::Replace);
            } else {
                change(Action::Skip, is_dir);
                plan.skipped += 1;
                plan.decisions.insert(s.rel, Decision::Skip);
            }
        }
        plan
    }
}

impl Plan {
    fn count(&mut self, class: Class) {
        match class {
            Class::File(size) => {
                self.files += 1;
                self.bytes += size;
            }
            Class::Dir => self.dirs += 1,
            Class::Other => self.others += 1,
        }
    }

    /// The entries that differ and make a [`Overwrite::Refuse`] restore
    /// refuse: the first one's path and how many.
    pub fn differing(&self) -> Option<(&Path, usize)> {
        let mut it = self.changes.iter().filter(|c| c.action == Action::Differs);
        let first = it.next()?;
        Some((&first.path, 1 + it.count()))
    }
}

/// Remove `name` from `dir`: a directory with everything in it, deepest
/// first, each level opened relative to its parent with `O_NOFOLLOW`
/// (a symlink is removed, never followed) and never crossing into another
/// filesystem (`dev`: the target's device).
pub(super) fn remove_entry(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    dev: u64,
    depth: usize,
) -> std::result::Result<(), Errno> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty());
    }
    if depth > super::super::MAX_TREE_DEPTH {
        return Err(Errno::NAMETOOLONG);
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if Meta::of(sub.as_fd())?.dev() != dev {
        // A mount point: what is mounted there is not the target's.
        return Err(Errno::XDEV);
    }
    let names = crate::source::fs::list_dir(sub.as_fd(), Path::new("")).map_err(|_| Errno::IO)?;
    for n in names {
        remove_entry(sub.as_fd(), &n, dev, depth + 1)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_overwrite_choice_decides_a_differing_entry_as_restic_does() {
        for newer in [false, true] {
            assert_eq!(Overwrite::Refuse.replaces(newer), None);
            assert_eq!(Overwrite::Always.replaces(newer), Some(true));
            assert_eq!(Overwrite::IfChanged.replaces(newer), Some(true));
            assert_eq!(Overwrite::IfNewer.replaces(newer), Some(newer));
            assert_eq!(Overwrite::Never.replaces(newer), Some(false));
        }
        assert_eq!(Overwrite::default(), Overwrite::Refuse);
    }

    #[test]
    fn the_refusal_names_the_first_entry_the_count_and_the_option() {
        let t = Path::new("/r/t");
        let one = refusal(t, Path::new("/r/t/config.json"), 1).to_string();
        assert_eq!(
            one,
            "refusing to restore into /r/t: /r/t/config.json already exists and differs from \
             the snapshot; nothing was written. Say what to do with such entries with \
             --overwrite always|if-changed|if-newer|never, or list them with --dry-run"
        );
        let three = refusal(t, Path::new("/r/t/a"), 3).to_string();
        assert!(
            three.contains(
                "/r/t/a already exists and differs from the snapshot (and 2 other entries);"
            ),
            "{three}"
        );
        let two = refusal(t, Path::new("/r/t/a"), 2).to_string();
        assert!(two.contains("(and 1 other entry);"), "{two}");
    }

    #[test]
    fn removing_an_entry_removes_links_never_what_they_point_to() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(t.join("old/deep/er")).unwrap();
        std::fs::write(t.join("old/deep/er/f"), b"x").unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"keep").unwrap();
        std::os::unix::fs::symlink(&outside, t.join("old/link")).unwrap();
        std::os::unix::fs::symlink(&outside, t.join("toplink")).unwrap();
        let root = rustix::fs::open(&t, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let dev = Meta::of(root.as_fd()).unwrap().dev();
        remove_entry(root.as_fd(), OsStr::new("toplink"), dev, 1).unwrap();
        remove_entry(root.as_fd(), OsStr::new("old"), dev, 1).unwrap();
        assert!(std::fs::read_dir(&t).unwrap().next().is_none());
        assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"keep");
        assert_eq!(
            remove_entry(root.as_fd(), OsStr::new("gone"), dev, 1),
            Err(Errno::NOENT)
        );
    }

    #[test]
    fn removing_a_directory_never_crosses_into_another_filesystem() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), b"x").unwrap();
        let root =
            rustix::fs::open(d.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let other_dev = Meta::of(root.as_fd()).unwrap().dev() + 1;
        assert_eq!(
            remove_entry(root.as_fd(), OsStr::new("sub"), other_dev, 1),
            Err(Errno::XDEV)
        );
        assert!(d.path().join("sub/f").exists());
    }
}
