//! The save path: the one way a blob gets into the repository.
//!
//! chunk → hash → dedup → compress → seal → pack. Backup (file content,
//! captures, streams, trees), copy (blobs re-hashed under the destination's
//! ID key), prune's repack (sealed blobs moved as they are) and repair (new
//! trees) all store through a [`BlobSaver`], so every writer keeps the same
//! properties:
//!
//! - the bytes hashed for a blob's ID are the bytes compressed and sealed
//!   (one private copy, never a memory map another process may write);
//! - a blob is stored at most once per saver: not when the loaded index
//!   has it, and not twice when parallel workers meet the same content
//!   (sharded claims);
//! - compression and sealing run on the calling (rayon) thread, one zstd
//!   context per thread, no copy of the plaintext beyond the sealed box;
//! - sealed blobs moved by repack are opened and re-hashed against their
//!   ID before they are stored again ([`Repository::check_blob_id`]);
//! - the packer asks the operation's lock before every index file it
//!   writes, and writes one every 100 000 blobs, 256 MiB or 3 minutes, and
//!   on [`BlobSaver::finish`] (which callers call on failure too, so an
//!   interrupted run keeps what it stored);
//! - a cancellation hook, when set, is asked before every blob.
//!
//! Never touches: the filesystem being backed up, snapshots, the CLI.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::Repository;
use super::lock::CommitGate;
use super::packer::{Packer, PackerOptions, PackerResult, SealedBlob};
use crate::chunker::Cut;
use crate::error::{Error, Result};
use crate::format::tree::Tree;
use crate::format::{BlobType, Compression, aad};
use crate::id::BlobId;

/// Bytes of a stream held at once by [`BlobSaver::save_reader`]: chunks are
/// cut in windows of this size (at least twice the largest chunk).
pub const STREAM_WINDOW: usize = 16 << 20;

/// File content one saver holds at once for chunking in parallel, over all
/// the files its workers read: [`BlobSaver::reserve`]. A file that does
/// not fit beside the others is chunked on its own thread instead, in one
/// window a quarter larger than the largest chunk
/// ([`BlobSaver::serial_window`]). Without the budget, a rayon worker
/// waiting for the chunks of one file picks up another file's work and
/// reads that file whole too, and so on: on a corpus of large binaries
/// (`/usr/lib`) a backup peaked at twice restic's memory. The budget
/// allows one streamed file's two windows; the number of workers does not
/// change it, so memory stays bounded as cores are added (each worker adds
/// at most one serial window).
pub const CONTENT_BUDGET: usize = 2 * STREAM_WINDOW;

/// How a [`BlobSaver`] compresses and packs.
#[derive(Debug, Clone, Copy)]
pub struct SaveOptions {
    /// zstd level (0: store uncompressed).
    pub compression_level: i32,
    /// Pack size, writer threads and index-file cadence.
    pub packer: PackerOptions,
}

impl SaveOptions {
    /// The repository's own settings: its compression level and pack size,
    /// one writer, the default index-file cadence.
    pub fn for_repo(repo: &Repository) -> Self {
        SaveOptions {
            compression_level: repo.config().compression_level,
            packer: PackerOptions::new(repo.config().pack_size as usize),
        }
    }
}

/// What a saver added (blobs it found already stored are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaveStats {
    /// Data blobs added.
    pub data_blobs: u64,
    /// Tree blobs added.
    pub tree_blobs: u64,
    /// Plaintext bytes of the blobs added.
    pub raw_bytes: u64,
    /// Sealed bytes of the blobs added (what goes into packs, headers
    /// aside).
    pub sealed_bytes: u64,
}

/// What [`BlobSaver::finish`] reports.
pub struct SaveResult {
    /// The blobs added.
    pub stats: SaveStats,
    /// Packs and index files written.
    pub packer: PackerResult,
}

/// One blob handed to [`BlobSaver::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// Its ID.
    pub id: BlobId,
    /// True if this call stored it; false if the index or this saver
    /// already had it.
    pub added: bool,
}

#[derive(Default)]
struct Counters {
    data_blobs: AtomicU64,
    tree_blobs: AtomicU64,
    raw_bytes: AtomicU64,
    sealed_bytes: AtomicU64,
}

/// IDs of blobs claimed by this saver (stored or being stored), sharded to
/// keep lock contention low.
struct Claims {
    shards: Vec<Mutex<HashSet<(BlobType, BlobId)>>>,
}

impl Claims {
    fn new() -> Self {
        Claims {
            shards: (0..64).map(|_| Mutex::new(HashSet::new())).collect(),
        }
    }
    /// True if the caller is the first to claim the blob.
    fn claim(&self, t: BlobType, id: BlobId) -> bool {
        let shard = &self.shards[usize::from(id.0[0]) % self.shards.len()];
        shard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((t, id))
    }
}

thread_local! {
    /// Per-thread zstd context and output buffer. The buffer grows to the
    /// bound of the largest chunk once and is reused, so compressing a
    /// blob allocates nothing.
    static ZSTD: RefCell<Option<(i32, zstd::bulk::Compressor<'static>, Vec<u8>)>> =
        const { RefCell::new(None) };
}

/// zstd-compress `data` with a per-thread context and pass the result to
/// `f`: `Some` with the compressed bytes, or `None` if they do not shrink
/// (or `level` is 0, or the input is under 64 bytes): the blob is then
/// stored uncompressed.
pub fn with_compressed<R>(level: i32, data: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
    if level == 0 || data.len() < 64 {
        return f(None);
    }
    ZSTD.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|(l, _, _)| *l) != Some(level) {
            *slot = zstd::bulk::Compressor::new(level)
                .ok()
                .map(|c| (level, c, Vec::new()));
        }
        let Some((_, c, buf)) = slot.as_mut() else {
            return f(None);
        };
        buf.clear();
        buf.reserve(zstd::zstd_safe::compress_bound(data.len()));
        match c.compress_to_buffer(data, buf) {
            Ok(n) if n < data.len() => f(Some(&buf[..n])),
            _ => f(None),
        }
    })
}

/// zstd-compress into a new buffer; `None` if it does not shrink (see
/// [`with_compressed`]).
pub fn compress(level: i32, data: &[u8]) -> Option<Vec<u8>> {
    with_compressed(level, data, |c| c.map(<[u8]>::to_vec))
}

/// Bytes of [`CONTENT_BUDGET`] held by one file, given back when dropped.
pub struct Reserved<'a>(&'a AtomicUsize, usize);

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::AcqRel);
    }
}

/// A cancellation hook: `Err` stops the saver before its next blob.
type CancelHook = Box<dyn Fn() -> Result<()> + Send + Sync>;

/// Stores blobs into one repository; see the module documentation. Share
/// it by reference between rayon workers; call [`BlobSaver::finish`] once,
/// on success and on failure alike, to index what was stored.
pub struct BlobSaver<'a> {
    repo: &'a Repository,
    packer: Packer,
    level: i32,
    claims: Claims,
    counters: Counters,
    cancel: Option<CancelHook>,
    /// Bytes of [`CONTENT_BUDGET`] reserved now.
    in_flight: AtomicUsize,
}

impl<'a> BlobSaver<'a> {
    /// A saver storing into `repo` (whose loaded index is what it
    /// deduplicates against) whose packer asks `gate` before each commit.
    pub fn new(repo: &'a Repository, gate: Arc<dyn CommitGate>, opts: SaveOptions) -> Self {
        BlobSaver {
            repo,
            packer: Packer::with_gate(
                repo.backend().clone(),
                repo.seal_key().clone(),
                opts.packer,
                gate,
            ),
            level: opts.compression_level,
            claims: Claims::new(),
            counters: Counters::default(),
            cancel: None,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Ask `check` before every blob: an error (an interrupt, a lost lock)
    /// stops the save with that error.
    pub fn with_cancel(mut self, check: impl Fn() -> Result<()> + Send + Sync + 'static) -> Self {
        self.cancel = Some(Box::new(check));
        self
    }

    /// The repository stored into.
    pub fn repo(&self) -> &'a Repository {
        self.repo
    }

    /// What was added so far.
    pub fn stats(&self) -> SaveStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.counters;
        SaveStats {
            data_blobs: get(&c.data_blobs),
            tree_blobs: get(&c.tree_blobs),
            raw_bytes: get(&c.raw_bytes),
            sealed_bytes: get(&c.sealed_bytes),
        }
    }

    fn count(&self, t: BlobType, raw: usize, sealed: usize) {
        let c = &self.counters;
        match t {
            BlobType::Data => &c.data_blobs,
            BlobType::Tree => &c.tree_blobs,
        }
        .fetch_add(1, Ordering::Relaxed);
        c.raw_bytes.fetch_add(raw as u64, Ordering::Relaxed);
        c.sealed_bytes.fetch_add(sealed as u64, Ordering::Relaxed);
    }

    /// Store a blob unless the repository's index or this saver already has
    /// it. `data` must be private to this process (never a memory map of a
    /// file another process may write): the bytes hashed for the ID are the
    /// bytes compressed and sealed.
    pub fn save(&self, t: BlobType, data: &[u8]) -> Result<Saved> {
        if let Some(check) = &self.cancel {
            check()?;
        }
        let id = self.repo.id_key().blob_id(data);
        if self.repo.index().contains(t, &id) || !self.claims.claim(t, id) {
            return Ok(Saved { id, added: false });
        }
        crate::failpoint::hit("backup::blob_hashed")?;
        let raw_len = u32::try_from(data.len())
            .map_err(|_| Error::invalid(format!("a blob of {} bytes is too large", data.len())))?;
        let (compression, sealed) = with_compressed(self.level, data, |z| {
            let (compression, plain) = match z {
                Some(z) => (Compression::Zstd, z),
                None => (Compression::None, data),
            };
            let sealed = self
                .repo
                .seal_key()
                .seal(&aad::blob(t, compression, &id), plain);
            (compression, sealed)
        });
        if t == BlobType::Tree {
            self.repo.cache_tree(&id, &sealed);
        }
        self.count(t, data.len(), sealed.len());
        self.packer.add(SealedBlob {
            blob_type: t,
            id,
            compression,
            raw_len,
            sealed,
        })?;
        Ok(Saved { id, added: true })
    }

    /// Encode a tree (the encoder decodes what it wrote before returning
    /// it) and store it.
    pub fn save_tree(&self, tree: &Tree) -> Result<Saved> {
        self.save(BlobType::Tree, &tree.to_bytes()?)
    }

    /// The window of a file chunked on its own thread: a quarter larger
    /// than the largest chunk. Any window larger than the largest chunk
    /// cuts as the whole input does: the chunker finds a chunk's end within
    /// the largest chunk's length of its start, so every cut that ends
    /// before the window's end is one the whole input has (only the last,
    /// which the window's end may have forced, is left for the next
    /// window). The extra quarter makes each window move on by at least
    /// that much. Files up to this size are read whole.
    pub fn serial_window(&self) -> usize {
        let max = self.repo.chunker().params().max_len as usize;
        max + max / 4
    }

    /// Take `n` bytes of [`CONTENT_BUDGET`] for a file about to be read
    /// and chunked in parallel, or `None` if they do not fit beside what
    /// other files hold (the caller then chunks it serially).
    pub fn reserve(&self, n: usize) -> Option<Reserved<'_>> {
        let mut cur = self.in_flight.load(Ordering::Relaxed);
        loop {
            if cur.saturating_add(n) > CONTENT_BUDGET {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                cur,
                cur + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Reserved(&self.in_flight, n)),
                Err(now) => cur = now,
            }
        }
    }

    /// Store the pieces `cuts` of `data` as data blobs on this thread
    /// alone, which therefore picks up no other file's work while it
    /// waits; their IDs in order.
    pub fn save_chunks_serial(&self, data: &[u8], cuts: &[Cut]) -> Result<Vec<BlobId>> {
        cuts.iter()
            .map(|c| {
                Ok(self
                    .save(BlobType::Data, &data[c.offset..c.offset + c.len])?
                    .id)
            })
            .collect()
    }

    /// Store the pieces `cuts` of `data` as data blobs, in parallel; their
    /// IDs in order.
    pub fn save_chunks(&self, data: &[u8], cuts: &[Cut]) -> Result<Vec<BlobId>> {
        if let [c] = cuts {
            // One piece, saved without the pool; it need not span `data`
            // (a window's last cut is left for the next window).
            return Ok(vec![
                self.save(BlobType::Data, &data[c.offset..c.offset + c.len])?
                    .id,
            ]);
        }
        cuts.par_iter()
            .map(|c| {
                Ok(self
                    .save(BlobType::Data, &data[c.offset..c.offset + c.len])?
                    .id)
            })
            .collect()
    }

    /// Cut `data` with the repository's chunker and store the chunks.
    pub fn save_chunked(&self, data: &[u8]) -> Result<Vec<BlobId>> {
        let cuts: Vec<Cut> = self.repo.chunker().cuts(data).collect();
        self.save_chunks(data, &cuts)
    }

    /// Chunk and store everything `input` yields, in windows of at least
    /// twice the largest chunk held in private buffers. If two windows fit
    /// in [`CONTENT_BUDGET`], the next window is read while the chunks of
    /// the current one are hashed, compressed and sealed in parallel;
    /// otherwise one [`BlobSaver::serial_window`] is chunked on this
    /// thread. Returns the blob list and the length. `consumed` hears of
    /// the bytes stored, window by window; `err` makes a read error.
    pub fn save_reader(
        &self,
        input: &mut (dyn Read + Send),
        consumed: &(dyn Fn(u64) + Sync),
        err: &(dyn Fn(std::io::Error) -> Error + Sync),
    ) -> Result<(Vec<BlobId>, u64)> {
        let least = 2 * self.repo.chunker().params().max_len as usize;
        let window = STREAM_WINDOW.max(least);
        match self.reserve(2 * window) {
            Some(_held) => self.save_reader_parallel(input, window, consumed, err),
            None => self.save_reader_serial(input, self.serial_window(), consumed, err),
        }
    }

    /// The chunks of a window of input, and the bytes they cover. Unless
    /// the input ended, the last cut is the window's, not the content's: it
    /// is left for the next window.
    fn window_cuts(&self, data: &[u8], eof: bool) -> (Vec<Cut>, usize) {
        let mut cuts: Vec<Cut> = self.repo.chunker().cuts(data).collect();
        if !eof && cuts.len() > 1 {
            cuts.pop();
        }
        let done = cuts.iter().map(|c| c.len).sum();
        (cuts, done)
    }

    /// [`BlobSaver::save_reader`] on this thread alone, in one window.
    pub fn save_reader_serial(
        &self,
        input: &mut (dyn Read + Send),
        window: usize,
        consumed: &(dyn Fn(u64) + Sync),
        err: &(dyn Fn(std::io::Error) -> Error + Sync),
    ) -> Result<(Vec<BlobId>, u64)> {
        let mut buf = vec![0u8; window];
        let (mut filled, mut eof) = fill(input, &mut buf, 0).map_err(err)?;
        let mut ids = Vec::new();
        let mut total = 0u64;
        while filled > 0 {
            let data = &buf[..filled];
            let (cuts, done) = self.window_cuts(data, eof);
            ids.extend(self.save_chunks_serial(data, &cuts)?);
            total += done as u64;
            consumed(done as u64);
            buf.copy_within(done..filled, 0);
            (filled, eof) = if eof {
                (filled - done, true)
            } else {
                fill(input, &mut buf, filled - done).map_err(err)?
            };
        }
        Ok((ids, total))
    }

    /// [`BlobSaver::save_reader`] with two windows of `window` bytes.
    fn save_reader_parallel(
        &self,
        input: &mut (dyn Read + Send),
        window: usize,
        consumed: &(dyn Fn(u64) + Sync),
        err: &(dyn Fn(std::io::Error) -> Error + Sync),
    ) -> Result<(Vec<BlobId>, u64)> {
        let mut cur = vec![0u8; window];
        let mut next = vec![0u8; window];
        let (mut filled, mut eof) = fill(input, &mut cur, 0).map_err(err)?;
        let mut ids = Vec::new();
        let mut total = 0u64;
        while filled > 0 {
            let data = &cur[..filled];
            let (cuts, done) = self.window_cuts(data, eof);
            let tail = &data[done..];
            let (saved, read) = rayon::join(
                || self.save_chunks(data, &cuts),
                || {
                    next[..tail.len()].copy_from_slice(tail);
                    if eof {
                        Ok((tail.len(), true))
                    } else {
                        fill(input, &mut next, tail.len())
                    }
                },
            );
            ids.extend(saved?);
            (filled, eof) = read.map_err(err)?;
            total += done as u64;
            consumed(done as u64);
            std::mem::swap(&mut cur, &mut next);
        }
        Ok((ids, total))
    }

    /// Move a sealed blob as it is (prune's repack: a sealed blob is bound
    /// to its type and ID, not to its pack). It is opened and re-hashed
    /// against its ID first, so a damaged or wrongly stored blob is never
    /// carried into a new pack. Returns false if this saver already stored
    /// it; the loaded index is not asked (it lists the blob's old pack).
    pub fn save_sealed(&self, blob: SealedBlob) -> Result<bool> {
        if let Some(check) = &self.cancel {
            check()?;
        }
        let mut plain = blob.sealed.clone();
        self.repo.open_blob(
            blob.blob_type,
            &blob.id,
            blob.compression,
            blob.raw_len,
            &mut plain,
        )?;
        self.repo.check_blob_id(blob.blob_type, &blob.id, &plain)?;
        drop(plain);
        if !self.claims.claim(blob.blob_type, blob.id) {
            return Ok(false);
        }
        self.count(blob.blob_type, blob.raw_len as usize, blob.sealed.len());
        self.packer.add(blob)?;
        Ok(true)
    }

    /// Store every open pack, wait for the writers, and write an index file
    /// for whatever is not indexed yet (after asking the lock). Call it on
    /// failure too: what was stored is then indexed for the next run.
    pub fn finish(self) -> Result<SaveResult> {
        let stats = self.stats();
        let packer = self.packer.finish(&**self.repo.backend())?;
        Ok(SaveResult { stats, packer })
    }
}

/// Read from `input` into `buf[start..]` until it is full or the input
/// ends. Returns the bytes now in `buf` and whether the input ended.
fn fill(input: &mut dyn Read, buf: &mut [u8], start: usize) -> std::io::Result<(usize, bool)> {
    let mut filled = start;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => return Ok((filled, true)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((filled, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::repo::lock::RepoLock;

    fn repo() -> Repository {
        crate::repo::test_repo()
    }

    /// Pseudo-random bytes (incompressible).
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// Store `blobs` through one saver under a lock, index them, and reload
    /// the index; returns what the saver reported.
    fn save_all(repo: &mut Repository, blobs: &[(BlobType, Vec<u8>)]) -> (Vec<Saved>, SaveStats) {
        let lock = RepoLock::acquire(repo, false).unwrap();
        let saver = BlobSaver::new(repo, lock.gate(), SaveOptions::for_repo(repo));
        let saved: Vec<Saved> = blobs
            .iter()
            .map(|(t, b)| saver.save(*t, b).unwrap())
            .collect();
        let done = saver.finish().unwrap();
        drop(lock);
        repo.load_index().unwrap();
        (saved, done.stats)
    }

    #[test]
    fn a_blob_is_stored_once_per_run_and_not_again_once_indexed() {
        let mut r = repo();
        let a = noise(10_000, 1);
        let b = b"the same bytes as a tree are another blob".repeat(10);
        let (saved, stats) = save_all(
            &mut r,
            &[
                (BlobType::Data, a.clone()),
                (BlobType::Data, a.clone()),
                (BlobType::Tree, a.clone()),
                (BlobType::Data, b.clone()),
            ],
        );
        assert!(saved[0].added && !saved[1].added && saved[2].added && saved[3].added);
        assert_eq!(saved[0].id, saved[1].id);
        assert_eq!(
            saved[0].id, saved[2].id,
            "the ID is the content's, whatever the type"
        );
        assert_eq!(
            stats,
            SaveStats {
                data_blobs: 2,
                tree_blobs: 1,
                raw_bytes: (2 * a.len() + b.len()) as u64,
                sealed_bytes: stats.sealed_bytes,
            }
        );
        // Compressible content is stored compressed, random content is not.
        let loc_b = r.locate(BlobType::Data, &saved[3].id).unwrap();
        assert_eq!(loc_b.compression, Compression::Zstd);
        assert!(u64::from(loc_b.sealed_len) < b.len() as u64);
        assert_eq!(
            r.locate(BlobType::Data, &saved[0].id).unwrap().compression,
            Compression::None
        );
        assert_eq!(r.read_blob(BlobType::Data, &saved[0].id).unwrap(), a);
        assert_eq!(r.read_blob(BlobType::Tree, &saved[2].id).unwrap(), a);
        assert_eq!(r.read_blob(BlobType::Data, &saved[3].id).unwrap(), b);

        // A second run finds them in the index and stores nothing.
        let packs_before = r.list_packs().unwrap().len();
        let (again, stats) = save_all(&mut r, &[(BlobType::Data, a.clone())]);
        assert!(!again[0].added);
        assert_eq!(stats, SaveStats::default());
        assert_eq!(r.list_packs().unwrap().len(), packs_before);
    }

    #[test]
    fn parallel_workers_meeting_the_same_content_store_it_once() {
        let r = repo();
        let lock = RepoLock::acquire(&r, false).unwrap();
        let saver = BlobSaver::new(&r, lock.gate(), SaveOptions::for_repo(&r));
        let chunk = noise(4096, 7);
        let data: Vec<u8> = chunk.repeat(64);
        let cuts: Vec<Cut> = (0..64)
            .map(|i| Cut {
                offset: i * 4096,
                len: 4096,
            })
            .collect();
        let ids = saver.save_chunks(&data, &cuts).unwrap();
        assert_eq!(ids.len(), 64);
        assert!(ids.iter().all(|id| *id == ids[0]));
        assert_eq!(saver.stats().data_blobs, 1);
        let done = saver.finish().unwrap();
        assert_eq!(done.packer.packs_written, 1);
        assert_eq!(done.packer.index_files.len(), 1);
    }

    /// Copy's path: plaintext read from one repository is stored in
    /// another under that one's ID key, and reads back and verifies there.
    #[test]
    fn a_copied_blob_reads_back_and_verifies_under_the_destination_key() {
        let mut src = repo();
        let mut dst = repo();
        let plain = b"copied content ".repeat(1000);
        let (saved, _) = save_all(&mut src, &[(BlobType::Data, plain.clone())]);
        let read = src.read_blob(BlobType::Data, &saved[0].id).unwrap();
        let (copied, stats) = save_all(&mut dst, &[(BlobType::Data, read)]);
        assert!(copied[0].added);
        assert_eq!(stats.data_blobs, 1);
        assert_ne!(
            copied[0].id, saved[0].id,
            "another repository, another ID key"
        );
        assert_eq!(copied[0].id, dst.id_key().blob_id(&plain));
        assert_eq!(dst.read_blob(BlobType::Data, &copied[0].id).unwrap(), plain);
    }

    /// Repack's path: a sealed blob moved as it is reads back from its new
    /// pack; a damaged one, or one whose content does not hash to its ID,
    /// is refused and nothing is stored.
    #[test]
    fn a_repacked_blob_reads_back_and_a_damaged_or_misnamed_one_is_refused() {
        let mut r = repo();
        let plain = noise(5000, 3);
        let (saved, _) = save_all(&mut r, &[(BlobType::Data, plain.clone())]);
        let id = saved[0].id;
        let old = r.locate(BlobType::Data, &id).unwrap();
        let sealed = r
            .backend()
            .get_range(
                &crate::repo::pack_name(&old.pack),
                u64::from(old.offset),
                u64::from(old.sealed_len),
            )
            .unwrap();
        let blob = |sealed: Vec<u8>, id: BlobId| SealedBlob {
            blob_type: BlobType::Data,
            id,
            compression: old.compression,
            raw_len: old.raw_len,
            sealed,
        };

        let lock = RepoLock::acquire(&r, false).unwrap();
        let saver = BlobSaver::new(&r, lock.gate(), SaveOptions::for_repo(&r));
        let mut damaged = sealed.clone();
        damaged[30] ^= 1;
        let e = saver.save_sealed(blob(damaged, id)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity);
        // Sealed as another blob's ID: does not even open (the ID is in the
        // associated data); sealed under its ID with other content: opens,
        // but does not hash to the ID.
        let other = BlobId([9; 32]);
        assert_eq!(
            saver
                .save_sealed(blob(sealed.clone(), other))
                .unwrap_err()
                .kind(),
            ErrorKind::Integrity
        );
        let wrong = r.seal_key().seal(
            &aad::blob(BlobType::Data, Compression::None, &other),
            &plain,
        );
        let e = saver
            .save_sealed(SealedBlob {
                compression: Compression::None,
                ..blob(wrong, other)
            })
            .unwrap_err();
        assert!(e.to_string().contains("does not hash to its ID"), "{e}");
        assert_eq!(saver.stats(), SaveStats::default());

        assert!(saver.save_sealed(blob(sealed.clone(), id)).unwrap());
        assert!(
            !saver.save_sealed(blob(sealed, id)).unwrap(),
            "claimed once"
        );
        let done = saver.finish().unwrap();
        assert_eq!(done.stats.data_blobs, 1);
        drop(lock);
        r.load_index().unwrap();
        let new_pack = r
            .list_packs()
            .unwrap()
            .into_keys()
            .find(|p| *p != old.pack)
            .unwrap();
        let header = r
            .load_pack_header(&new_pack, r.list_packs().unwrap()[&new_pack])
            .unwrap();
        assert_eq!(header.len(), 1);
        assert_eq!(header[0].id, id);
        let loc = crate::index::Location {
            pack: new_pack,
            offset: 0,
            ..old
        };
        assert_eq!(r.read_blob_at(BlobType::Data, &id, &loc).unwrap(), plain);
    }

    /// The windowed reader cuts where the chunker cuts the whole input,
    /// across window borders, and stores the same blobs.
    #[test]
    fn the_windowed_reader_cuts_as_the_whole_input_is_cut() {
        let r = repo();
        let lock = RepoLock::acquire(&r, false).unwrap();
        let saver = BlobSaver::new(&r, lock.gate(), SaveOptions::for_repo(&r));
        let window = STREAM_WINDOW.max(2 * r.chunker().params().max_len as usize);
        let data = noise(window + window / 2 + 12_345, 11);
        let whole: Vec<BlobId> = r
            .chunker()
            .cuts(&data)
            .map(|c| r.id_key().blob_id(&data[c.offset..c.offset + c.len]))
            .collect();
        let seen = AtomicU64::new(0);
        let (ids, len) = saver
            .save_reader(
                &mut std::io::Cursor::new(&data),
                &|n| {
                    seen.fetch_add(n, Ordering::Relaxed);
                },
                &|e| Error::io("read", e),
            )
            .unwrap();
        assert_eq!(len, data.len() as u64);
        assert_eq!(seen.into_inner(), data.len() as u64);
        assert_eq!(ids, whole);
        assert_eq!(saver.stats().raw_bytes, data.len() as u64);
        saver.finish().unwrap();
    }

    #[test]
    fn a_file_that_does_not_fit_the_content_budget_is_cut_serially_as_a_whole_input_is() {
        let r = repo();
        let lock = RepoLock::acquire(&r, false).unwrap();
        let saver = BlobSaver::new(&r, lock.gate(), SaveOptions::for_repo(&r));
        // Another worker holds most of the budget: a streamed file cannot
        // take two windows and is read serially, cutting the same chunks.
        let held = saver.reserve(CONTENT_BUDGET - 1).unwrap();
        assert!(saver.reserve(2).is_none(), "the budget is full");
        let least = 2 * r.chunker().params().max_len as usize;
        let data = noise(2 * least + least / 3 + 777, 12);
        let whole: Vec<BlobId> = r
            .chunker()
            .cuts(&data)
            .map(|c| r.id_key().blob_id(&data[c.offset..c.offset + c.len]))
            .collect();
        let (ids, len) = saver
            .save_reader(&mut std::io::Cursor::new(&data), &|_| {}, &|e| {
                Error::io("read", e)
            })
            .unwrap();
        assert_eq!(len, data.len() as u64);
        assert_eq!(ids, whole);
        assert_eq!(saver.in_flight.load(Ordering::Relaxed), CONTENT_BUDGET - 1);
        // Given back when dropped: the whole budget is free again.
        drop(held);
        let all = saver.reserve(CONTENT_BUDGET).unwrap();
        drop(all);
        assert_eq!(saver.in_flight.load(Ordering::Relaxed), 0);
        saver.finish().unwrap();
    }

    /// A serial window only a quarter larger than the largest chunk still
    /// cuts as the whole input does, across runs that force largest-size
    /// chunks and natural cuts on either side of window borders.
    #[test]
    fn the_serial_window_a_quarter_above_the_largest_chunk_cuts_as_the_whole_input_is() {
        let r = repo();
        let lock = RepoLock::acquire(&r, false).unwrap();
        let saver = BlobSaver::new(&r, lock.gate(), SaveOptions::for_repo(&r));
        let max = r.chunker().params().max_len as usize;
        assert!(saver.serial_window() > max && saver.serial_window() < 2 * max);
        let mut data = noise(3 * max / 2 + 4_321, 13);
        data.extend(std::iter::repeat_n(0u8, 2 * max + max / 3));
        data.extend(noise(max + 999, 14));
        data.extend(std::iter::repeat_n(0u8, max - 77));
        data.extend(noise(2 * max, 15));
        let whole: Vec<BlobId> = r
            .chunker()
            .cuts(&data)
            .map(|c| r.id_key().blob_id(&data[c.offset..c.offset + c.len]))
            .collect();
        let (ids, len) = saver
            .save_reader_serial(
                &mut std::io::Cursor::new(&data),
                saver.serial_window(),
                &|_| {},
                &|e| Error::io("read", e),
            )
            .unwrap();
        assert_eq!(len, data.len() as u64);
        assert_eq!(ids, whole);
        saver.finish().unwrap();
    }

    #[test]
    fn a_window_left_with_one_cut_stores_that_chunk_not_the_whole_window() {
        // Zeros cut at the largest chunk: a window of two of them keeps one
        // cut after the window's last is left for the next window. Both the
        // parallel and the serial reader must store just that chunk (the
        // parallel one once stored the whole window as one blob).
        let r = repo();
        let max = r.chunker().params().max_len as usize;
        let data = vec![0u8; 5 * max + 100];
        let whole: Vec<BlobId> = r
            .chunker()
            .cuts(&data)
            .map(|c| r.id_key().blob_id(&data[c.offset..c.offset + c.len]))
            .collect();
        for serial in [false, true] {
            let lock = RepoLock::acquire(&r, false).unwrap();
            let saver = BlobSaver::new(&r, lock.gate(), SaveOptions::for_repo(&r));
            let mut input = std::io::Cursor::new(&data);
            let read_err = |e| Error::io("read", e);
            let (ids, len) = if serial {
                saver.save_reader_serial(&mut input, 2 * max, &|_| {}, &read_err)
            } else {
                saver.save_reader_parallel(&mut input, 2 * max, &|_| {}, &read_err)
            }
            .unwrap();
            assert_eq!(len, data.len() as u64, "serial: {serial}");
            assert_eq!(ids, whole, "serial: {serial}");
            saver.finish().unwrap();
        }
    }

    #[test]
    fn a_crash_between_new_index_files_leaves_every_pack_listed_by_a_live_file() {
        use crate::format::index::{IndexBlob, IndexPack};
        use crate::id::PackId;
        use crate::repo::packer::{write_index_file, write_index_files};
        let r = repo();
        let pack = |n: u8| IndexPack {
            id: PackId([n; 32]),
            blobs: vec![IndexBlob {
                blob_type: BlobType::Data,
                compression: Compression::None,
                id: BlobId([n; 32]),
                offset: 0,
                sealed_len: 100,
                raw_len: 60,
            }],
        };
        let packs: Vec<IndexPack> = (1..=3).map(pack).collect();
        let (old, _) =
            write_index_file(&**r.backend(), r.seal_key(), packs.clone(), Vec::new()).unwrap();
        // Prune or `repair index` replaces it with one pack per file and
        // dies before the third file.
        let mut asked = 0;
        let died = write_index_files(
            &**r.backend(),
            r.seal_key(),
            &packs,
            1,
            vec![old],
            &mut || {
                asked += 1;
                if asked == 3 {
                    Err(Error::invalid("killed"))
                } else {
                    Ok(())
                }
            },
        );
        assert!(died.is_err());
        // Every pack is still listed by a live file (the old one is not yet
        // superseded: only the last new file names it).
        let files = r.load_index_files().unwrap();
        assert!(files.superseded.is_empty(), "{:?}", files.superseded);
        let live: std::collections::HashSet<PackId> = files
            .live
            .iter()
            .flat_map(|(_, f)| f.packs.iter().map(|p| p.id))
            .collect();
        for p in &packs {
            assert!(
                live.contains(&p.id),
                "pack {} is listed by no live file",
                p.id
            );
        }
        // A complete run supersedes the old file in its last file only.
        let (files_written, _) = write_index_files(
            &**r.backend(),
            r.seal_key(),
            &packs,
            1,
            vec![old],
            &mut || Ok(()),
        )
        .unwrap();
        assert_eq!(files_written, 3);
        let files = r.load_index_files().unwrap();
        assert_eq!(files.superseded.len(), 1);
        assert_eq!(files.superseded[0].0, old);
    }

    #[test]
    fn a_cancelled_saver_stores_nothing_more() {
        let r = repo();
        let lock = RepoLock::acquire(&r, false).unwrap();
        let token = crate::cancel::CancelToken::new();
        let saver = BlobSaver::new(&r, lock.gate(), SaveOptions::for_repo(&r)).with_cancel({
            let t = token.clone();
            move || t.check()
        });
        assert!(saver.save(BlobType::Data, b"before").unwrap().added);
        token.cancel();
        let e = saver.save(BlobType::Data, b"after").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Interrupted);
        assert_eq!(saver.stats().data_blobs, 1);
        // What was stored before is indexed.
        let done = saver.finish().unwrap();
        assert_eq!(done.packer.index_files.len(), 1);
    }
}
