//! The walk: the virtual tree of source paths, the directories below
//! them (fork-join on rayon, entries reached through their parent
//! directory's handle), and what each entry becomes.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;

use super::sqlite::drop_companions;
use super::{Ctx, add};
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::BlobId;
use crate::source::fs::{self as sfs, Meta};

/// A source path tree: leaves are backed up whole; inner nodes are the
/// directories on the way to them.
#[derive(Debug, Default)]
pub(super) struct Virtual {
    children: BTreeMap<Vec<u8>, VirtualChild>,
}

#[derive(Debug)]
pub(super) enum VirtualChild {
    Source,
    Inner(Virtual),
}

/// Make `p` absolute and lexically clean (no `.`, `..` resolved
/// textually), without following symlinks.
pub fn clean_absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io_path("cannot resolve", p, e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

pub(super) fn build_virtual(paths: &[PathBuf]) -> Virtual {
    let mut root = Virtual::default();
    'paths: for p in paths {
        let comps: Vec<Vec<u8>> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.as_bytes().to_vec()),
                _ => None,
            })
            .collect();
        let mut cur = &mut root;
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let entry = cur
                .children
                .entry(c.clone())
                .or_insert_with(|| VirtualChild::Inner(Virtual::default()));
            if last {
                *entry = VirtualChild::Source;
                continue 'paths;
            }
            match entry {
                VirtualChild::Source => continue 'paths, // an ancestor is backed up whole
                VirtualChild::Inner(v) => cur = v,
            }
        }
    }
    root
}

impl Ctx<'_> {
    /// Back up the entry `name` of the open directory `dir` (`path` is its
    /// full path, for messages and exclude rules); `None` if excluded or
    /// unreadable (unreadable entries are recorded as errors). Nothing is
    /// reached by path: the entry is `lstat`ed through `dir`, and opened
    /// through it, without following symlinks, only if it is still the
    /// object that was `lstat`ed.
    pub(super) fn save_entry(
        &self,
        dir: BorrowedFd<'_>,
        path: &Path,
        name: &[u8],
        parent_dev: Option<u64>,
        old: Option<&Node>,
    ) -> Result<Option<Node>> {
        self.cancel.check()?;
        let os_name = OsStr::from_bytes(name);
        let meta = match sfs::stat_at(dir, os_name, path) {
            Ok(m) => m,
            Err(e) => {
                self.record_error(path, e);
                return Ok(None);
            }
        };
        self.prefetch.walked(&meta);
        if self.excludes.is_excluded(path, meta.is_dir()) {
            return Ok(None);
        }
        // The handle the entry was opened through, if it was: its xattrs
        // are read through it.
        let mut opened: Option<OwnedFd> = None;
        // A file reused from the parent snapshot with an unchanged ctime has
        // unchanged xattrs too (setting or removing one moves the ctime):
        // they are taken from there, without a system call.
        let mut old_xattrs = None;
        let mut node = if meta.is_file() {
            let Some(saved) = self.save_file(dir, path, name, meta, old)? else {
                return Ok(None);
            };
            opened = saved.opened;
            old_xattrs = saved.old_xattrs;
            saved.node
        } else if meta.is_dir() {
            if crate::ops::depth(path.as_os_str().as_bytes()) > crate::ops::MAX_TREE_DEPTH {
                // Handles reach any depth, but restore refuses deeper trees
                // (and recursion needs a bound).
                self.record_error(
                    path,
                    Error::new(
                        crate::error::ErrorKind::Source,
                        format!(
                            "{} is more than {} directories deep; not backed up (restore \
                             refuses deeper trees)",
                            path.display(),
                            crate::ops::MAX_TREE_DEPTH
                        ),
                    ),
                );
                return Ok(None);
            }
            crate::failpoint::hit("backup::before_open_dir")?;
            let sub = match sfs::open_dir_at(dir, os_name, path, &meta) {
                Ok(fd) => fd,
                Err(e) if e.kind() == crate::error::ErrorKind::Source => {
                    self.record_error(path, e);
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            let crosses = self.one_file_system && parent_dev.is_some_and(|d| d != meta.dev());
            let subtree = if crosses {
                self.save_tree(&Tree::default())?
            } else {
                let old_subtree = old.and_then(|o| match o.kind {
                    NodeKind::Dir { subtree } => Some(subtree),
                    _ => None,
                });
                match self.save_dir(sub.as_fd(), path, meta.dev(), old_subtree) {
                    Ok(Some(id)) => id,
                    Ok(None) => return Ok(None),
                    Err(e) if e.kind() == crate::error::ErrorKind::Source => {
                        self.record_error(path, e);
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
            };
            opened = Some(sub);
            add(&self.counters.dirs, 1);
            sfs::node_from_meta(name, &meta, NodeKind::Dir { subtree }, &self.names)
        } else if meta.is_symlink() {
            let target = match sfs::read_link_at(dir, os_name, path) {
                Ok(t) => t,
                Err(e) => {
                    self.record_error(path, e);
                    return Ok(None);
                }
            };
            add(&self.counters.others, 1);
            sfs::node_from_meta(name, &meta, NodeKind::Symlink { target }, &self.names)
        } else if let Some(kind) = sfs::special_kind(&meta) {
            add(&self.counters.others, 1);
            sfs::node_from_meta(name, &meta, kind, &self.names)
        } else {
            return Ok(None);
        };
        let xattrs = match (&opened, old_xattrs) {
            (_, Some(x)) => Ok(x),
            (Some(fd), None) => sfs::read_xattrs_fd(fd.as_fd(), path),
            (None, None) => sfs::read_xattrs_at(dir, os_name, path),
        };
        match xattrs {
            Ok(x) => node.xattrs = x,
            Err(e) => self.record_error(path, e),
        }
        Ok(Some(node))
    }

    /// Back up the entries of the open directory `dir` (at `path`); `None`
    /// if a marker file excludes it. `old` is the directory's tree in the
    /// parent snapshot.
    pub(super) fn save_dir(
        &self,
        dir: BorrowedFd<'_>,
        path: &Path,
        dev: u64,
        old: Option<BlobId>,
    ) -> Result<Option<BlobId>> {
        let mut names = sfs::list_dir(dir, path)?;
        if self.excludes.excludes_dir(dir, &names) {
            return Ok(None);
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        if self.sqlite {
            drop_companions(dir, &mut names);
        }
        let old = self.old_tree(path, old);
        if self.prefetch.enabled() {
            self.prefetch.directory(
                dir,
                path,
                dev,
                names
                    .iter()
                    .map(|n| {
                        let prev = old.as_ref().and_then(|t| t.find(n.as_bytes()));
                        (n.clone(), prev.map(|p| self.change.prior(p)))
                    })
                    .collect(),
            );
        }
        let nodes: Vec<Option<Node>> = names
            .par_iter()
            .map(|n| {
                let prev = old.as_ref().and_then(|t| t.find(n.as_bytes()));
                self.save_entry(dir, &path.join(n), n.as_bytes(), Some(dev), prev)
            })
            .collect::<Result<_>>()?;
        self.save_nodes(nodes, None).map(Some)
    }

    /// Back up the source paths below the open directory `dir` (at `path`).
    /// Directories on the way to a source path are opened as the paths
    /// name them (a symlink there is followed, as the administrator wrote
    /// the path), once; from a source path down, nothing is followed.
    pub(super) fn save_virtual(
        &self,
        dir: BorrowedFd<'_>,
        path: &Path,
        v: &Virtual,
        old: Option<BlobId>,
        extra: Option<Node>,
    ) -> Result<BlobId> {
        let old = self.old_tree(path, old);
        let nodes: Vec<Option<Node>> = v
            .children
            .par_iter()
            .map(|(name, child)| {
                let p = path.join(OsStr::from_bytes(name));
                let prev = old.as_ref().and_then(|t| t.find(name));
                match child {
                    VirtualChild::Source => self.save_entry(dir, &p, name, None, prev),
                    VirtualChild::Inner(inner) => {
                        let io =
                            |e: rustix::io::Errno| Error::io_path("cannot back up", &p, e.into());
                        let sub = rustix::fs::openat(
                            dir,
                            OsStr::from_bytes(name),
                            rustix::fs::OFlags::RDONLY
                                | rustix::fs::OFlags::DIRECTORY
                                | rustix::fs::OFlags::CLOEXEC,
                            rustix::fs::Mode::empty(),
                        )
                        .map_err(io)?;
                        let meta = Meta::of(sub.as_fd()).map_err(io)?;
                        let prev_subtree = prev.and_then(|o| match o.kind {
                            NodeKind::Dir { subtree } => Some(subtree),
                            _ => None,
                        });
                        let subtree =
                            self.save_virtual(sub.as_fd(), &p, inner, prev_subtree, None)?;
                        Ok(Some(sfs::node_from_meta(
                            name,
                            &meta,
                            NodeKind::Dir { subtree },
                            &self.names,
                        )))
                    }
                }
            })
            .collect::<Result<_>>()?;
        self.save_nodes(nodes, extra)
    }
}
