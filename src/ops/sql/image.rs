//! The bytes of a database file as a snapshot holds it, read on demand.
//!
//! An [`Image`] maps byte ranges of one file entry onto its data blobs and
//! reads only the blobs a range touches, each through
//! [`Repository::read_blob_at`] (authenticated, decompressed and re-hashed
//! against its ID, as restore reads it), keeping the most recently used
//! ones in a small cache.
//!
//! Two layouts (FORMAT.md §5.5):
//! - a **SQLite capture** (extension `EXT_SQLITE_CAPTURE`) is one page per
//!   blob, so page *n* is blob *n − 1* and a byte offset names its blob by
//!   division. For a chunk-list tree (§5.8) the levels above the leaves are
//!   read when the image is opened (about one list blob per 361 pages),
//!   while each level 0 list, whose ID count its index entry gives
//!   (`(raw_len − 4) / 32`), is read only when one of its pages is;
//! - any **other file** (a database stored raw, with capture off) is cut by
//!   content: its blob IDs are read in full and offsets are cumulative blob
//!   lengths, from the index.
//!
//! Never touches: SQLite (the VFS in `super::vfs` serves these bytes),
//! output.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::format::BlobType;
use crate::format::chunklist::MIN_LIST_LEN;
use crate::format::tree::{EXT_SQLITE_CAPTURE, FileContent, Node, NodeKind};
use crate::id::BlobId;
use crate::repo::Repository;
use crate::repo::chunklist::{chunk_limit, data_ids, load_list};

/// Plaintext bytes of blobs the cache keeps (SQLite keeps its own page
/// cache on top of this, per connection).
pub const CACHE_BYTES: usize = 8 << 20;
/// Most blobs the cache keeps, whatever their size.
pub const CACHE_BLOBS: usize = 2048;

/// The first 16 bytes of a SQLite database.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Where a run of consecutive blobs' IDs is: in a level 0 ID-list blob (read
/// when first needed) or already known.
struct Leaf {
    /// Index of the run's first blob in the file.
    first: u64,
    /// Number of blobs in the run.
    count: u64,
    /// The level 0 list blob that holds the IDs (`None`: `ids` is given).
    list: Option<BlobId>,
}

enum Layout {
    /// One page per blob.
    Pages { page_size: u64, leaves: Vec<Leaf> },
    /// Content-defined chunks: `starts[i]` is blob `i`'s offset.
    Chunks { ids: Vec<BlobId>, starts: Vec<u64> },
}

/// What reading changes: the cache and the leaves read so far.
#[derive(Default)]
struct State {
    /// Blob index → (plaintext, last use).
    cache: HashMap<u64, (Arc<Vec<u8>>, u64)>,
    /// Last use → blob index, for the cached blobs: the least recently
    /// used is the first (evicting it costs a lookup, not a scan of the
    /// cache, on every miss).
    by_use: std::collections::BTreeMap<u64, u64>,
    cached_bytes: usize,
    tick: u64,
    /// Leaf index → its IDs, once read.
    leaf_ids: HashMap<usize, Vec<BlobId>>,
    /// Blobs read from the repository (cache misses).
    blobs_read: u64,
    /// The first read failure, kept for the caller: SQLite sees only
    /// "disk I/O error".
    failure: Option<Error>,
}

/// One file entry of a snapshot, readable at any offset.
pub struct Image<'r> {
    repo: &'r Repository,
    /// The entry's path, for messages.
    shown: String,
    len: u64,
    layout: Layout,
    state: Mutex<State>,
}

impl<'r> Image<'r> {
    /// The content of the file entry `node` (at `shown`, for messages).
    /// Reads the chunk-list levels above the leaves (captures) or the
    /// whole ID list (other files); no data blob yet.
    pub fn open(repo: &'r Repository, node: &Node, shown: &str) -> Result<Image<'r>> {
        let NodeKind::File { content } = &node.kind else {
            return Err(Error::invalid(format!(
                "{shown} is a {} in the snapshot, not a database file",
                node.kind.name()
            )));
        };
        let limit = chunk_limit(node);
        let layout = match node.extension(EXT_SQLITE_CAPTURE) {
            Some(ext) => {
                let page_size = capture_page_size(ext).ok_or_else(|| {
                    Error::integrity(format!(
                        "{shown}: the SQLite capture record names no valid page size \
                         (a damaged or hostile tree)"
                    ))
                })?;
                if node.size % page_size != 0 {
                    return Err(Error::integrity(format!(
                        "{shown}: the capture is {} bytes, not a whole number of its \
                         {page_size}-byte pages (a damaged or hostile tree)",
                        node.size
                    )));
                }
                let leaves = page_leaves(repo, content, limit)?;
                let blobs = leaves.last().map_or(0, |l| l.first + l.count);
                if blobs != node.size / page_size {
                    return Err(Error::integrity(format!(
                        "{shown}: the capture lists {blobs} pages where its size says {} \
                         (a damaged or hostile tree)",
                        node.size / page_size
                    )));
                }
                Layout::Pages { page_size, leaves }
            }
            None => {
                let ids = data_ids(repo, content, limit)?.into_owned();
                let mut starts = Vec::with_capacity(ids.len());
                let mut at = 0u64;
                for id in &ids {
                    starts.push(at);
                    at += u64::from(repo.locate(BlobType::Data, id)?.raw_len);
                }
                if at != node.size {
                    return Err(Error::integrity(format!(
                        "{shown}: its blobs hold {at} bytes where its size says {} \
                         (a damaged or hostile tree)",
                        node.size
                    )));
                }
                Layout::Chunks { ids, starts }
            }
        };
        let mut state = State::default();
        if let (Layout::Pages { .. }, FileContent::Inline(ids)) = (&layout, content) {
            state.leaf_ids.insert(0, ids.clone());
        }
        Ok(Image {
            repo,
            shown: shown.to_string(),
            len: node.size,
            layout,
            state: Mutex::new(state),
        })
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Blobs read from the repository so far (not counting cache hits).
    pub fn blobs_read(&self) -> u64 {
        self.lock().blobs_read
    }

    /// The first read failure, if any (taken: a second call returns None).
    pub fn take_failure(&self) -> Option<Error> {
        self.lock().failure.take()
    }

    /// Keep `e` as the reason reads fail (the first one wins).
    pub fn fail(&self, e: Error) {
        let mut st = self.lock();
        if st.failure.is_none() {
            st.failure = Some(e);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fill `buf` from `offset`; returns the bytes that lay inside the file
    /// (fewer than `buf.len()` at its end).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            if at >= self.len {
                break;
            }
            let (blob, start) = self.blob_at(at);
            let data = self.blob(blob)?;
            let within = (at - start) as usize;
            let Some(avail) = data.get(within..) else {
                return Err(Error::integrity(format!(
                    "{}: blob {blob} is shorter than its place in the file",
                    self.shown
                )));
            };
            if avail.is_empty() {
                return Err(Error::integrity(format!(
                    "{}: blob {blob} is empty",
                    self.shown
                )));
            }
            let n = avail.len().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&avail[..n]);
            done += n;
        }
        Ok(done)
    }

    /// The blob holding byte `at` (< len) and that blob's offset.
    fn blob_at(&self, at: u64) -> (u64, u64) {
        match &self.layout {
            Layout::Pages { page_size, .. } => (at / page_size, at / page_size * page_size),
            Layout::Chunks { starts, .. } => {
                let i = starts.partition_point(|&s| s <= at).saturating_sub(1);
                (i as u64, starts.get(i).copied().unwrap_or(0))
            }
        }
    }

    /// Blob `i`'s plaintext, from the cache or the repository.
    fn blob(&self, i: u64) -> Result<Arc<Vec<u8>>> {
        let mut st = self.lock();
        st.tick += 1;
        let tick = st.tick;
        if let Some((data, used)) = st.cache.get_mut(&i) {
            let (data, was) = (Arc::clone(data), std::mem::replace(used, tick));
            st.by_use.remove(&was);
            st.by_use.insert(tick, i);
            return Ok(data);
        }
        let id = self.blob_id(&mut st, i)?;
        let loc = self.repo.locate(BlobType::Data, &id)?;
        let mut data = self
            .repo
            .read_blob_at(BlobType::Data, &id, &loc)
            .map_err(|e| match self.layout {
                Layout::Pages { .. } => e.context(format!("page {}", i + 1)),
                Layout::Chunks { .. } => e.context(format!("chunk {i}")),
            })?;
        st.blobs_read += 1;
        if let Layout::Pages { page_size, .. } = &self.layout
            && data.len() as u64 != *page_size
        {
            return Err(Error::integrity(format!(
                "{}: page {} is {} bytes, not the capture's page size {page_size} \
                 (a damaged or hostile tree)",
                self.shown,
                i + 1,
                data.len()
            )));
        }
        if i == 0 {
            present_without_wal(&mut data);
        }
        let data = Arc::new(data);
        st.cached_bytes += data.len();
        st.cache.insert(i, (Arc::clone(&data), tick));
        st.by_use.insert(tick, i);
        // The blob just read is the newest: never the one evicted.
        while st.cache.len() > 1 && (st.cached_bytes > CACHE_BYTES || st.cache.len() > CACHE_BLOBS)
        {
            let Some((_, oldest)) = st.by_use.pop_first() else {
                break;
            };
            if let Some((d, _)) = st.cache.remove(&oldest) {
                st.cached_bytes -= d.len();
            }
        }
        Ok(data)
    }

    /// Blob `i`'s ID, reading its level 0 list if needed.
    fn blob_id(&self, st: &mut State, i: u64) -> Result<BlobId> {
        match &self.layout {
            Layout::Chunks { ids, .. } => ids
                .get(i as usize)
                .copied()
                .ok_or_else(|| Error::integrity(format!("{}: no blob {i}", self.shown))),
            Layout::Pages { leaves, .. } => {
                let li = leaves.partition_point(|l| l.first <= i).saturating_sub(1);
                let leaf = leaves.get(li).ok_or_else(|| {
                    Error::integrity(format!("{}: no page {}", self.shown, i + 1))
                })?;
                if let std::collections::hash_map::Entry::Vacant(slot) = st.leaf_ids.entry(li) {
                    let Some(list) = &leaf.list else {
                        return Err(Error::integrity(format!(
                            "{}: no page {}",
                            self.shown,
                            i + 1
                        )));
                    };
                    let ids = load_list(self.repo, list, 0)?;
                    if ids.len() as u64 != leaf.count {
                        return Err(Error::integrity(format!(
                            "{}: chunk-list blob {list} holds {} IDs where the index says {} \
                             (a damaged or hostile tree)",
                            self.shown,
                            ids.len(),
                            leaf.count
                        )));
                    }
                    slot.insert(ids);
                }
                st.leaf_ids
                    .get(&li)
                    .and_then(|ids| ids.get((i - leaf.first) as usize))
                    .copied()
                    .ok_or_else(|| Error::integrity(format!("{}: no page {}", self.shown, i + 1)))
            }
        }
    }

    /// Every blob's ID, in file order (reads every level 0 list not read
    /// yet). For comparing two images page by page.
    pub fn blob_ids(&self) -> Result<Vec<BlobId>> {
        match &self.layout {
            Layout::Chunks { ids, .. } => Ok(ids.clone()),
            Layout::Pages { leaves, .. } => {
                let total = leaves.last().map_or(0, |l| l.first + l.count);
                let mut st = self.lock();
                (0..total).map(|i| self.blob_id(&mut st, i)).collect()
            }
        }
    }
}

/// The page size a capture record names (its first four bytes, LE), if it
/// is one SQLite allows.
fn capture_page_size(ext: &[u8]) -> Option<u64> {
    let b: [u8; 4] = ext.get(..4)?.try_into().ok()?;
    let p = u64::from(u32::from_le_bytes(b));
    (p.is_power_of_two() && (512..=65536).contains(&p)).then_some(p)
}

/// The runs of a capture's page blob IDs: the inline list as one known run,
/// or a chunk-list tree's level 0 lists, their sizes from the index.
fn page_leaves(repo: &Repository, content: &FileContent, limit: u64) -> Result<Vec<Leaf>> {
    let mut leaves = Vec::new();
    match content {
        FileContent::Inline(ids) => {
            if !ids.is_empty() {
                leaves.push(Leaf {
                    first: 0,
                    count: ids.len() as u64,
                    list: None,
                });
            }
        }
        FileContent::Tree { height, top } => {
            if *height == 0 {
                return Err(Error::integrity(
                    "a chunk-list tree of height 0 (a damaged or hostile tree)",
                ));
            }
            let mut next = 0u64;
            for id in top {
                collect_leaves(repo, id, height - 1, limit, &mut next, &mut leaves)?;
            }
        }
    }
    Ok(leaves)
}

fn collect_leaves(
    repo: &Repository,
    id: &BlobId,
    level: u8,
    limit: u64,
    next: &mut u64,
    out: &mut Vec<Leaf>,
) -> Result<()> {
    if level > 0 {
        for child in load_list(repo, id, level)? {
            collect_leaves(repo, &child, level - 1, limit, next, out)?;
        }
        return Ok(());
    }
    let raw = u64::from(repo.locate(BlobType::Tree, id)?.raw_len);
    let min = MIN_LIST_LEN as u64;
    if raw < min || (raw - 4) % 32 != 0 {
        return Err(Error::integrity(format!(
            "chunk-list blob {id}: {raw} bytes is not the size of an ID list \
             (a damaged or hostile tree)"
        )));
    }
    let count = (raw - 4) / 32;
    out.push(Leaf {
        first: *next,
        count,
        list: Some(*id),
    });
    *next += count;
    if *next > limit {
        return Err(Error::integrity(format!(
            "a file's chunk-list tree names more than {limit} data blobs, more than its \
             size allows (a damaged or hostile tree)"
        )));
    }
    Ok(())
}

/// Present a database whose header says WAL mode (bytes 18 and 19, the
/// file format write and read versions, equal to 2) as a rollback-journal
/// database (1 and 1). A capture keeps the header as SQLite stored it
/// (FORMAT.md §5.5), but its pages are already the committed state with
/// the WAL folded in: there is no `-wal` to read, and SQLite, seeing 2,
/// would look for one and need shared memory for its index. Nothing else
/// in the database depends on these two bytes, and this changes only the
/// image served, never what is stored.
fn present_without_wal(page1: &mut [u8]) {
    if page1.len() >= 20 && page1.starts_with(SQLITE_MAGIC) && page1[18] == 2 && page1[19] == 2 {
        page1[18] = 1;
        page1[19] = 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wal_header_is_presented_as_a_rollback_journal_header() {
        let mut p = vec![0u8; 100];
        p[..16].copy_from_slice(SQLITE_MAGIC);
        p[18] = 2;
        p[19] = 2;
        present_without_wal(&mut p);
        assert_eq!((p[18], p[19]), (1, 1));
        let mut q = p.clone();
        q[0] = b'X';
        q[18] = 2;
        q[19] = 2;
        present_without_wal(&mut q);
        assert_eq!((q[18], q[19]), (2, 2), "only a SQLite header is changed");
    }

    #[test]
    fn capture_page_sizes_are_sqlites() {
        assert_eq!(capture_page_size(&4096u32.to_le_bytes()), Some(4096));
        assert_eq!(capture_page_size(&65536u32.to_le_bytes()), Some(65536));
        assert_eq!(capture_page_size(&256u32.to_le_bytes()), None);
        assert_eq!(capture_page_size(&4095u32.to_le_bytes()), None);
        assert_eq!(capture_page_size(&[1, 2]), None);
    }
}
