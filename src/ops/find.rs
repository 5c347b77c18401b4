//! Searching snapshots: entries whose name (or whole path) matches a glob,
//! across many snapshots, and one path's history.
//!
//! Nightly snapshots share almost all of their trees, so the search is
//! memoised by tree ID: the matches below a tree are worked out once, as
//! paths relative to it, and every later snapshot that holds the same tree
//! gets them prefixed with its own path, without reading the tree again. A
//! search over a hundred snapshots of an unchanged tree reads each tree
//! blob once. With whole-path patterns ([`FindOptions::whole_path`]) what
//! matches below a tree depends on where the tree is, so the memo is keyed
//! by tree and path: a tree met under two different paths is read once per
//! path (snapshots of the same sources still share every walk).
//!
//! Only tree blobs are read: sizes, times and types come from the entries
//! themselves, never from file content or chunk lists (a history compares
//! two chunk lists only when one file changed between the inline and the
//! chunk-list form, FORMAT.md §5.8).
//!
//! Never touches: the CLI, output, locks (a pure reader of immutable
//! objects, like `ls` and `diff`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::Progress;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{FileContent, Node, NodeKind, Timestamp};
use crate::id::{BlobId, SnapshotId};
use crate::repo::{Repository, chunklist};

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct FindOptions {
    /// Glob patterns (`*`, `?`, `[…]`, `**`); an entry matches if any
    /// pattern does.
    pub patterns: Vec<String>,
    /// Match the patterns against the entry's whole absolute path (where
    /// `*` does not cross `/` and `**` does) instead of its name.
    pub whole_path: bool,
}

/// One entry found, as the entry describes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Absolute path in the snapshot.
    pub path: Vec<u8>,
    /// The entry's type name (`file`, `dir`, `symlink`, …).
    pub kind: &'static str,
    /// Size in bytes (content length of a file; 0 for directories).
    pub size: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Permission bits.
    pub mode: u32,
}

impl Hit {
    fn of(path: Vec<u8>, n: &Node) -> Hit {
        Hit {
            path,
            kind: n.kind.name(),
            size: n.size,
            mtime: n.mtime,
            mode: n.mode,
        }
    }
}

/// Counts of a search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FindStats {
    /// Snapshots searched.
    pub snapshots: u64,
    /// Snapshots with at least one match.
    pub snapshots_matched: u64,
    /// Matches, over all snapshots.
    pub matches: u64,
    /// Tree blobs read (each distinct tree once, see the module docs).
    pub trees_read: u64,
}

/// Compiled patterns.
struct Matcher {
    set: GlobSet,
    whole_path: bool,
}

impl Matcher {
    fn new(opts: &FindOptions) -> Result<Matcher> {
        if opts.patterns.is_empty() {
            return Err(Error::invalid("no pattern to look for"));
        }
        let mut b = GlobSetBuilder::new();
        for p in &opts.patterns {
            if p.is_empty() {
                return Err(Error::invalid("an empty pattern matches nothing"));
            }
            if !opts.whole_path && p.contains('/') {
                return Err(Error::invalid(format!(
                    "the pattern {p:?} holds a '/', but names have none: use --path to match whole paths"
                )));
            }
            let g = GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::invalid(format!("bad pattern {p:?}: {e}")))?;
            b.add(g);
        }
        let set = b
            .build()
            .map_err(|e| Error::invalid(format!("bad patterns: {e}")))?;
        Ok(Matcher {
            set,
            whole_path: opts.whole_path,
        })
    }

    fn matches(&self, name: &[u8], full: &[u8]) -> bool {
        let subject = if self.whole_path { full } else { name };
        self.set.is_match(Path::new(OsStr::from_bytes(subject)))
    }
}

/// A match below a tree, relative to it (`/name/…`).
type Relative = Arc<Vec<Hit>>;

struct Search<'a> {
    repo: &'a Repository,
    matcher: Matcher,
    /// Matches below a tree, by tree ID (and the tree's path, for
    /// whole-path patterns).
    memo: HashMap<(BlobId, Vec<u8>), Relative>,
    trees_read: u64,
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(prefix.len() + 1 + name.len());
    p.extend_from_slice(prefix);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

impl Search<'_> {
    /// The matches below tree `id` found at `path` (absolute; empty for the
    /// root), relative to it.
    fn below(&mut self, id: &BlobId, path: &[u8], depth: usize) -> Result<Relative> {
        let key = (
            *id,
            if self.matcher.whole_path {
                path.to_vec()
            } else {
                Vec::new()
            },
        );
        if let Some(m) = self.memo.get(&key) {
            return Ok(Arc::clone(m));
        }
        if depth > super::MAX_TREE_DEPTH {
            return Err(Error::integrity(format!(
                "{} is nested deeper than {} directories (hostile or corrupt tree)",
                String::from_utf8_lossy(path),
                super::MAX_TREE_DEPTH
            )));
        }
        let tree = self.repo.load_tree(id)?;
        self.trees_read += 1;
        let mut out = Vec::new();
        for n in &tree.nodes {
            let rel = join(b"", &n.name);
            let full = join(path, &n.name);
            if self.matcher.matches(&n.name, &full) {
                out.push(Hit::of(rel.clone(), n));
            }
            if let NodeKind::Dir { subtree } = &n.kind {
                let sub = self.below(subtree, &full, depth + 1)?;
                out.extend(sub.iter().map(|h| Hit {
                    path: [rel.as_slice(), h.path.as_slice()].concat(),
                    ..h.clone()
                }));
            }
        }
        let out = Arc::new(out);
        self.memo.insert(key, Arc::clone(&out));
        Ok(out)
    }
}

/// Receives a snapshot's matches.
pub type FoundFn<'a> = dyn FnMut(&SnapshotId, &Snapshot, &[Hit]) -> Result<()> + 'a;

/// Search `snapshots` (in the order given) for entries matching `opts`;
/// `f` gets each snapshot's matches, in depth-first name order, as soon as
/// that snapshot is searched. Needs the index loaded.
pub fn find(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    opts: &FindOptions,
    progress: &dyn Progress,
    f: &mut FoundFn<'_>,
) -> Result<FindStats> {
    let mut search = Search {
        repo,
        matcher: Matcher::new(opts)?,
        memo: HashMap::new(),
        trees_read: 0,
    };
    let mut stats = FindStats::default();
    progress.start("find", Some(snapshots.len() as u64), None);
    for (id, s) in snapshots {
        let hits = search
            .below(&s.tree, b"", 0)
            .map_err(|e| e.context(format!("snapshot {}", id.short())))?;
        stats.snapshots += 1;
        if !hits.is_empty() {
            stats.snapshots_matched += 1;
            stats.matches += hits.len() as u64;
        }
        f(id, s, &hits)?;
        progress.advance(1, 0);
    }
    stats.trees_read = search.trees_read;
    Ok(stats)
}

/// What happened to a path in one snapshot, compared with the snapshot
/// before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryChange {
    /// There now, not in the snapshot before (or the first one that has it).
    Added,
    /// There before and now, and something about it differs.
    Modified,
    /// There before, gone now.
    Removed,
}

impl HistoryChange {
    /// The word used in listings and JSON.
    pub fn name(self) -> &'static str {
        match self {
            HistoryChange::Added => "added",
            HistoryChange::Modified => "modified",
            HistoryChange::Removed => "removed",
        }
    }
}

/// One snapshot where the path changed.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// What happened.
    pub change: HistoryChange,
    /// The entry in this snapshot (`None` when removed).
    pub entry: Option<Hit>,
    /// What differs, for `Modified`: any of `type`, `content`, `size`,
    /// `mtime`, `metadata` (mode, owner, extended attributes).
    pub what: Vec<&'static str>,
}

/// Counts of a history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryStats {
    /// Snapshots looked at.
    pub snapshots: u64,
    /// Snapshots that hold the path.
    pub present: u64,
    /// Snapshots where it changed.
    pub changes: u64,
    /// Tree blobs read.
    pub trees_read: u64,
}

struct Lookup<'a> {
    repo: &'a Repository,
    comps: Vec<Vec<u8>>,
    /// The entry at `comps[i..]` below a tree, by (tree, i).
    memo: HashMap<(BlobId, usize), Option<Arc<Node>>>,
    trees_read: u64,
}

impl Lookup<'_> {
    fn entry(&mut self, tree: &BlobId, i: usize) -> Result<Option<Arc<Node>>> {
        if let Some(m) = self.memo.get(&(*tree, i)) {
            return Ok(m.clone());
        }
        let t = self.repo.load_tree(tree)?;
        self.trees_read += 1;
        let found = match t.find(&self.comps[i]) {
            None => None,
            Some(n) if i + 1 == self.comps.len() => Some(Arc::new(n.clone())),
            Some(n) => match &n.kind {
                NodeKind::Dir { subtree } => self.entry(subtree, i + 1)?,
                _ => None,
            },
        };
        self.memo.insert((*tree, i), found.clone());
        Ok(found)
    }
}

/// What differs between two entries at the same path.
fn differences(repo: &Repository, a: &Node, b: &Node) -> Result<Vec<&'static str>> {
    let mut what = Vec::new();
    let content_differs = match (&a.kind, &b.kind) {
        (x, y) if std::mem::discriminant(x) != std::mem::discriminant(y) => {
            what.push("type");
            false
        }
        (NodeKind::File { content: ca }, NodeKind::File { content: cb }) => {
            let same_form = matches!(
                (ca, cb),
                (FileContent::Inline(_), FileContent::Inline(_))
                    | (FileContent::Tree { .. }, FileContent::Tree { .. })
            );
            if ca == cb {
                false
            } else if same_form {
                true
            } else {
                // The same data may be listed inline in one entry and as a
                // chunk-list tree in the other.
                chunklist::data_ids(repo, ca, chunklist::chunk_limit(a))?
                    != chunklist::data_ids(repo, cb, chunklist::chunk_limit(b))?
            }
        }
        (x, y) => x != y,
    };
    if content_differs {
        what.push("content");
    }
    if a.size != b.size {
        what.push("size");
    }
    if a.mtime != b.mtime {
        what.push("mtime");
    }
    if a.mode != b.mode || a.uid != b.uid || a.gid != b.gid || a.xattrs != b.xattrs {
        what.push("metadata");
    }
    Ok(what)
}

/// The history of `path` (absolute) over `snapshots`, oldest first: `f`
/// gets each snapshot where the path appeared, changed or disappeared.
/// Each distinct tree on the way to it is read once. Needs the index
/// loaded.
pub fn history(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    path: &[u8],
    f: &mut dyn FnMut(&SnapshotId, &Snapshot, &HistoryEntry) -> Result<()>,
) -> Result<HistoryStats> {
    let comps: Vec<Vec<u8>> = super::walk::components(path)?
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    if comps.is_empty() {
        return Err(Error::invalid(
            "the history of `/` is every snapshot: give a path below it",
        ));
    }
    if comps.len() > super::MAX_TREE_DEPTH {
        return Err(Error::invalid("the path is nested too deep"));
    }
    let mut look = Lookup {
        repo,
        comps,
        memo: HashMap::new(),
        trees_read: 0,
    };
    let mut stats = HistoryStats::default();
    let mut before: Option<Arc<Node>> = None;
    for (id, s) in snapshots {
        let now = look
            .entry(&s.tree, 0)
            .map_err(|e| e.context(format!("snapshot {}", id.short())))?;
        stats.snapshots += 1;
        let hit = |n: &Node| Hit::of(path.to_vec(), n);
        let entry = match (&before, &now) {
            (None, None) => None,
            (None, Some(n)) => Some(HistoryEntry {
                change: HistoryChange::Added,
                entry: Some(hit(n)),
                what: Vec::new(),
            }),
            (Some(_), None) => Some(HistoryEntry {
                change: HistoryChange::Removed,
                entry: None,
                what: Vec::new(),
            }),
            (Some(a), Some(b)) => {
                let what = if Arc::ptr_eq(a, b) {
                    Vec::new()
                } else {
                    differences(repo, a, b)?
                };
                (!what.is_empty()).then(|| HistoryEntry {
                    change: HistoryChange::Modified,
                    entry: Some(hit(b)),
                    what,
                })
            }
        };
        if now.is_some() {
            stats.present += 1;
        }
        if let Some(e) = entry {
            stats.changes += 1;
            f(id, s, &e)?;
        }
        before = now;
    }
    stats.trees_read = look.trees_read;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(patterns: &[&str], whole_path: bool) -> Result<Matcher> {
        Matcher::new(&FindOptions {
            patterns: patterns.iter().map(|s| s.to_string()).collect(),
            whole_path,
        })
    }

    #[test]
    fn name_patterns_match_the_name_and_path_patterns_the_whole_path() {
        let names = m(&["*.env", "config.json"], false).unwrap();
        assert!(names.matches(b"secret.env", b"/srv/app/secret.env"));
        assert!(names.matches(b"config.json", b"/a/config.json"));
        assert!(!names.matches(b"env", b"/srv/x.env/env"));
        let paths = m(&["/srv/*/secret.env", "/opt/**/*.log"], true).unwrap();
        assert!(paths.matches(b"secret.env", b"/srv/app/secret.env"));
        assert!(!paths.matches(b"secret.env", b"/srv/app/sub/secret.env"));
        assert!(paths.matches(b"x.log", b"/opt/a/b/c/x.log"));
    }

    #[test]
    fn a_name_pattern_with_a_slash_is_refused_pointing_at_path() {
        let e = m(&["srv/*.env"], false).err().unwrap();
        assert!(e.to_string().contains("--path"), "{e}");
        assert!(m(&["a["], false).is_err());
        assert!(m(&[], false).is_err());
    }
}
