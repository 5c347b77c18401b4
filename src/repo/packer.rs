//! The packer: gathers sealed blobs into packs and stores them.
//!
//! Data blobs are spread at random over a few open packs, and each pack's
//! blobs are shuffled before it is written, so a pack's layout does not
//! reveal the order (and so the size sequence) of one file's chunks. Tree
//! blobs (directories and chunk lists) fill a pack of their own, as
//! restic's do: a walk of a snapshot then reads a few tree packs whole
//! rather than ranges scattered across the data (a remote restore fetches
//! its trees before its data, see `repo::readplan`). Full packs go to
//! writer threads through a rendezvous channel, handed over while the slot
//! that filled them stays locked: when writers fall behind, producers wait
//! (for the writer, or for a slot), so memory stays bounded by
//! `(open packs + 1 + writers) × pack size` (the one: the tree pack).
//!
//! Index files are commit points: a packer made [`Packer::with_gate`] asks
//! its operation's lock ([`CommitGate::verify`]) before writing each one,
//! and stops storing packs once the lock is lost.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use rand::seq::SliceRandom;

use super::lock::CommitGate;
use super::{index_name, pack_name};
use crate::backend::Backend;
use crate::crypto::SealKey;
use crate::error::{Error, Result};
use crate::format::index::{IndexBlob, IndexFile, IndexPack};
use crate::format::pack::{PackEntry, header_to_bytes};
use crate::format::{BlobType, Compression, aad};
use crate::id::{BlobId, IndexId, PackId};

/// A sealed blob waiting for a pack.
pub struct SealedBlob {
    /// Data or tree.
    pub blob_type: BlobType,
    /// The blob ID.
    pub id: BlobId,
    /// How the plaintext was compressed.
    pub compression: Compression,
    /// Plaintext length.
    pub raw_len: u32,
    /// The sealed box.
    pub sealed: Vec<u8>,
}

#[derive(Default)]
struct OpenPack {
    blobs: Vec<SealedBlob>,
    bytes: usize,
}

/// A pack ready to store: its sealed blobs in file order, then the sealed
/// header and its length (kept as parts, so no pack-sized copy is made).
struct FinishedPack {
    id: PackId,
    blobs: Vec<Vec<u8>>,
    trailer: Vec<u8>,
    index: IndexPack,
}

impl FinishedPack {
    fn len(&self) -> u64 {
        self.blobs.iter().map(|b| b.len() as u64).sum::<u64>() + self.trailer.len() as u64
    }
}

/// Packer tuning.
#[derive(Debug, Clone, Copy)]
pub struct PackerOptions {
    /// Target pack size in bytes.
    pub pack_size: usize,
    /// Packs filled at the same time (blobs are spread over them at random).
    pub open_packs: usize,
    /// Threads storing finished packs.
    pub writers: usize,
    /// Write an index file whenever this many blobs are stored but not yet
    /// indexed (so a long backup that is interrupted keeps most of its work).
    pub index_every_blobs: usize,
    /// … or this many bytes of packs.
    pub index_every_bytes: u64,
    /// … or when the oldest stored pack not yet indexed is this old.
    pub index_every: std::time::Duration,
}

/// Stored but unindexed data that triggers an index file: a killed backup
/// loses at most this much work (plus the packs being filled) even when
/// the next run cannot adopt its packs.
pub const INDEX_EVERY_BYTES: u64 = 256 << 20;
/// Age of the oldest unindexed pack that triggers an index file.
pub const INDEX_EVERY: std::time::Duration = std::time::Duration::from_secs(3 * 60);

impl PackerOptions {
    /// Defaults for a pack size.
    pub fn new(pack_size: usize) -> Self {
        PackerOptions {
            pack_size,
            open_packs: 2,
            writers: 1,
            index_every_blobs: 100_000,
            index_every_bytes: INDEX_EVERY_BYTES,
            index_every: INDEX_EVERY,
        }
    }
}

#[derive(Default)]
struct Shared {
    /// Stored packs not yet in an index file.
    unindexed: Vec<IndexPack>,
    unindexed_blobs: usize,
    unindexed_bytes: u64,
    /// When the oldest unindexed pack was stored.
    unindexed_since: Option<std::time::Instant>,
    /// Index files written so far.
    index_files: Vec<IndexId>,
    /// Packs stored.
    packs_written: u64,
    /// Bytes written to the backend.
    bytes_written: u64,
    /// First failure of a writer.
    error: Option<Error>,
}

/// What the packer stored.
pub struct PackerResult {
    /// Number of packs stored.
    pub packs_written: u64,
    /// Index files written.
    pub index_files: Vec<IndexId>,
    /// Bytes written to packs and index files.
    pub bytes_written: u64,
}

/// Gathers blobs into packs; see the module documentation.
pub struct Packer {
    /// Open data packs.
    slots: Vec<Mutex<OpenPack>>,
    /// The open tree pack.
    trees: Mutex<OpenPack>,
    opts: PackerOptions,
    seal: SealKey,
    tx: Option<Sender<FinishedPack>>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Mutex<Shared>>,
    gate: Option<Arc<dyn CommitGate>>,
    held: Arc<Held>,
}

/// Sealed bytes the packer holds (open packs, packs handed to a writer and
/// packs being written), and the most it ever held.
#[derive(Default)]
struct Held {
    now: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

impl Held {
    fn add(&self, n: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.now.fetch_add(n, Relaxed) + n;
        self.peak.fetch_max(now, Relaxed);
    }
    fn sub(&self, n: usize) {
        self.now.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Store `packs` in new index files of at most `per_file` packs and
/// `1 000 000` blobs each (at least one file, even for no packs), replacing
/// the index files `supersedes`. Only the **last** file written names them
/// (FORMAT.md §5.4): until it is stored, readers still trust the old files,
/// so a crash between two new files leaves every pack listed by a live
/// file; once it is stored, all the new ones are. `before_each` is asked
/// before each file (the caller's lock check). Returns the number of files
/// and bytes written.
pub fn write_index_files(
    backend: &dyn Backend,
    seal: &SealKey,
    packs: &[IndexPack],
    per_file: usize,
    supersedes: Vec<IndexId>,
    before_each: &mut dyn FnMut() -> Result<()>,
) -> Result<(usize, u64)> {
    let mut groups: Vec<&[IndexPack]> = Vec::new();
    let mut start = 0;
    while start < packs.len() {
        let (mut end, mut blobs) = (start, 0usize);
        while end < packs.len()
            && end - start < per_file.max(1)
            && (end == start || blobs + packs[end].blobs.len() <= 1_000_000)
        {
            blobs += packs[end].blobs.len();
            end += 1;
        }
        groups.push(&packs[start..end]);
        start = end;
    }
    if groups.is_empty() {
        groups.push(&[]);
    }
    let last = groups.len() - 1;
    let mut supersedes = Some(supersedes);
    let mut bytes = 0;
    for (i, group) in groups.iter().enumerate() {
        before_each()?;
        let names = if i == last {
            supersedes.take().unwrap_or_default()
        } else {
            Vec::new()
        };
        crate::failpoint::hit("index::before_superseding_file")?;
        let (_, n) = write_index_file(backend, seal, group.to_vec(), names)?;
        bytes += n;
    }
    Ok((groups.len(), bytes))
}

/// Seal and store an index file listing `packs`.
pub fn write_index_file(
    backend: &dyn Backend,
    seal: &SealKey,
    packs: Vec<IndexPack>,
    supersedes: Vec<IndexId>,
) -> Result<(IndexId, u64)> {
    let file = IndexFile { packs, supersedes };
    let id = IndexId::random();
    let sealed = seal.seal(&aad::object(aad::INDEX, id.as_bytes()), &file.to_bytes()?);
    super::check_cap_before_write(
        &index_name(&id),
        sealed.len(),
        crate::format::caps::INDEX_FILE,
    )?;
    backend.put(&index_name(&id), &sealed)?;
    Ok((id, sealed.len() as u64))
}

impl Packer {
    /// A packer storing into `backend` that commits without asking a lock:
    /// for tests and tools. Operations that run under a repository lock use
    /// [`Packer::with_gate`].
    pub fn new(backend: Arc<dyn Backend>, seal: SealKey, opts: PackerOptions) -> Self {
        Self::build(backend, seal, opts, None)
    }

    /// A packer that asks `gate` before each index file it writes (and
    /// before each pack, cheaply), so nothing is committed once the lock
    /// it runs under is lost.
    pub fn with_gate(
        backend: Arc<dyn Backend>,
        seal: SealKey,
        opts: PackerOptions,
        gate: Arc<dyn CommitGate>,
    ) -> Self {
        Self::build(backend, seal, opts, Some(gate))
    }

    fn build(
        backend: Arc<dyn Backend>,
        seal: SealKey,
        opts: PackerOptions,
        gate: Option<Arc<dyn CommitGate>>,
    ) -> Self {
        // A rendezvous: a full pack waits in its producer until a writer
        // takes it, so no pack sits in a queue besides.
        let (tx, rx) = bounded::<FinishedPack>(0);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let held = Arc::new(Held::default());
        let workers = (0..opts.writers.max(1))
            .map(|_| {
                let rx: Receiver<FinishedPack> = rx.clone();
                let backend = Arc::clone(&backend);
                let shared = Arc::clone(&shared);
                let seal = seal.clone();
                let gate = gate.clone();
                let held = Arc::clone(&held);
                std::thread::spawn(move || {
                    let w = Writer {
                        backend: &*backend,
                        seal: &seal,
                        shared: &shared,
                        opts,
                        gate: gate.as_deref(),
                        held: &held,
                    };
                    w.run(&rx)
                })
            })
            .collect();
        Packer {
            slots: (0..opts.open_packs.max(1))
                .map(|_| Mutex::new(OpenPack::default()))
                .collect(),
            trees: Mutex::new(OpenPack::default()),
            opts,
            seal,
            tx: Some(tx),
            workers,
            shared,
            gate,
            held,
        }
    }

    /// The most sealed bytes this packer held at once.
    pub fn peak_held_bytes(&self) -> usize {
        self.held.peak.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fail fast if a writer has failed.
    pub fn check(&self) -> Result<()> {
        match &lock(&self.shared).error {
            Some(e) => Err(Error::new(e.kind(), e.to_string())),
            None => Ok(()),
        }
    }

    /// Add a sealed blob. Blocks while writers are behind.
    pub fn add(&self, blob: SealedBlob) -> Result<()> {
        self.check()?;
        let mut guard = if blob.blob_type == BlobType::Tree {
            lock(&self.trees)
        } else {
            let n = self.slots.len();
            let start = (rand::random::<u32>() as usize) % n;
            // Prefer an idle slot; otherwise wait for the random one.
            (0..n)
                .find_map(|i| self.slots[(start + i) % n].try_lock().ok())
                .unwrap_or_else(|| lock(&self.slots[start]))
        };
        guard.bytes += blob.sealed.len();
        self.held.add(blob.sealed.len());
        guard.blobs.push(blob);
        if guard.bytes >= self.opts.pack_size {
            // The slot stays locked until a writer takes its pack: a full
            // pack waiting for a writer is one of the open packs, not one
            // more, so packs in memory never exceed open packs + writers.
            let pack = std::mem::take(&mut *guard);
            self.send(pack)?;
        }
        Ok(())
    }

    fn send(&self, pack: OpenPack) -> Result<()> {
        let finished = finish_pack(pack, &self.seal)?;
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::invalid("packer already finished"))?;
        if tx.send(finished).is_err() {
            self.check()?;
            return Err(Error::invalid("pack writers stopped"));
        }
        Ok(())
    }

    /// Store every open pack, wait for the writers, write an index file for
    /// whatever is not indexed yet, and report.
    pub fn finish(mut self, backend: &dyn Backend) -> Result<PackerResult> {
        let mut result = Ok(());
        for slot in self.slots.iter().chain([&self.trees]) {
            let pack = std::mem::take(&mut *lock(slot));
            if !pack.blobs.is_empty()
                && let Err(e) = self.send(pack)
            {
                result = Err(e);
                break;
            }
        }
        drop(self.tx.take());
        for w in self.workers.drain(..) {
            if w.join().is_err() {
                result = result.and(Err(Error::invalid("a pack writer panicked")));
            }
        }
        result?;
        self.check()?;
        // Every pack is stored; none is indexed yet.
        crate::failpoint::hit("packer::before_index")?;
        let mut shared = lock(&self.shared);
        if !shared.unindexed.is_empty() {
            if let Some(gate) = &self.gate {
                gate.verify()?;
            }
            shared.unindexed_blobs = 0;
            shared.unindexed_bytes = 0;
            shared.unindexed_since = None;
            let packs = std::mem::take(&mut shared.unindexed);
            let (id, n) = write_index_file(backend, &self.seal, packs, Vec::new())?;
            shared.index_files.push(id);
            shared.bytes_written += n;
        }
        Ok(PackerResult {
            packs_written: shared.packs_written,
            index_files: std::mem::take(&mut shared.index_files),
            bytes_written: shared.bytes_written,
        })
    }
}

impl Drop for Packer {
    fn drop(&mut self) {
        drop(self.tx.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn finish_pack(mut pack: OpenPack, seal: &SealKey) -> Result<FinishedPack> {
    pack.blobs.shuffle(&mut rand::rng());
    let id = PackId::random();
    let mut entries = Vec::with_capacity(pack.blobs.len());
    let mut index = Vec::with_capacity(pack.blobs.len());
    let mut parts = Vec::with_capacity(pack.blobs.len());
    let mut offset = 0u32;
    for b in pack.blobs {
        let sealed_len = b.sealed.len() as u32;
        entries.push(PackEntry {
            blob_type: b.blob_type,
            compression: b.compression,
            id: b.id,
            sealed_len,
            raw_len: b.raw_len,
        });
        index.push(IndexBlob {
            blob_type: b.blob_type,
            compression: b.compression,
            id: b.id,
            offset,
            sealed_len,
            raw_len: b.raw_len,
        });
        offset += sealed_len;
        parts.push(b.sealed);
    }
    let mut trailer = Vec::with_capacity(entries.len() * 42 + 64);
    seal.seal_into(
        &aad::object(aad::PACK_HEADER, id.as_bytes()),
        &header_to_bytes(&entries)?,
        &mut trailer,
    );
    let header_len = trailer.len() as u32;
    trailer.extend_from_slice(&header_len.to_le_bytes());
    Ok(FinishedPack {
        id,
        blobs: parts,
        trailer,
        index: IndexPack { id, blobs: index },
    })
}

/// One pack-writing thread's view of the packer.
struct Writer<'a> {
    backend: &'a dyn Backend,
    seal: &'a SealKey,
    shared: &'a Mutex<Shared>,
    opts: PackerOptions,
    gate: Option<&'a dyn CommitGate>,
    held: &'a Held,
}

impl Writer<'_> {
    fn run(&self, rx: &Receiver<FinishedPack>) {
        for pack in rx.iter() {
            let len = pack.blobs.iter().map(Vec::len).sum::<usize>();
            self.store(pack);
            self.held.sub(len);
        }
    }

    fn store(&self, pack: FinishedPack) {
        let (backend, seal, shared, opts, gate) =
            (self.backend, self.seal, self.shared, self.opts, self.gate);
        if lock(shared).error.is_some() {
            return;
        }
        // A lost lock: storing more packs is wasted work.
        if let Some(Err(e)) = gate.map(CommitGate::check) {
            lock(shared).error.get_or_insert(e);
            return;
        }
        let stored_len = pack.len();
        let FinishedPack {
            id,
            blobs: mut parts,
            trailer,
            index,
        } = pack;
        parts.push(trailer);
        if let Err(e) = backend
            .put_owned(&pack_name(&id), parts)
            .and_then(|()| crate::failpoint::hit("packer::pack_stored"))
        {
            let mut s = lock(shared);
            s.error.get_or_insert(e);
            return;
        }
        let to_index = {
            let mut s = lock(shared);
            s.bytes_written += stored_len;
            s.unindexed_blobs += index.blobs.len();
            s.unindexed_bytes += stored_len;
            s.unindexed_since
                .get_or_insert_with(std::time::Instant::now);
            s.packs_written += 1;
            s.unindexed.push(index);
            let due = s.unindexed_blobs >= opts.index_every_blobs
                || s.unindexed_bytes >= opts.index_every_bytes
                || s.unindexed_since
                    .is_some_and(|t| t.elapsed() >= opts.index_every);
            if due {
                s.unindexed_blobs = 0;
                s.unindexed_bytes = 0;
                s.unindexed_since = None;
                Some(std::mem::take(&mut s.unindexed))
            } else {
                None
            }
        };
        if let Some(packs) = to_index {
            let r = crate::failpoint::hit("packer::before_index")
                .and_then(|()| gate.map_or(Ok(()), CommitGate::verify))
                .and_then(|()| write_index_file(backend, seal, packs, Vec::new()));
            let mut s = lock(shared);
            match r {
                Ok((id, n)) => {
                    s.index_files.push(id);
                    s.bytes_written += n;
                }
                Err(e) => {
                    s.error.get_or_insert(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mem::MemBackend;

    /// A backend whose writes take a while, so producers outrun the writer.
    struct SlowWrites(MemBackend);

    impl Backend for SlowWrites {
        fn location(&self) -> String {
            self.0.location()
        }
        fn create(&self) -> Result<()> {
            self.0.create()
        }
        fn list(&self, dir: &str) -> Result<Vec<crate::backend::ObjectInfo>> {
            self.0.list(dir)
        }
        fn get(&self, name: &str) -> Result<Vec<u8>> {
            self.0.get(name)
        }
        fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
            self.0.get_range(name, offset, len)
        }
        fn put(&self, name: &str, data: &[u8]) -> Result<()> {
            std::thread::sleep(std::time::Duration::from_millis(5));
            self.0.put(name, data)
        }
        fn delete(&self, name: &str) -> Result<()> {
            self.0.delete(name)
        }
        fn stat(&self, name: &str) -> Result<u64> {
            self.0.stat(name)
        }
    }

    /// Directory trees and chunk lists lie in packs without file content,
    /// so a walk of a snapshot reads tree packs only.
    #[test]
    fn tree_blobs_fill_packs_of_their_own() {
        let mut repo = crate::repo::test_repo();
        {
            let lock = crate::repo::lock::RepoLock::acquire(&repo, false).unwrap();
            let saver = crate::repo::save::BlobSaver::new(
                &repo,
                lock.gate(),
                crate::repo::save::SaveOptions::for_repo(&repo),
            );
            for i in 0..500 {
                let t = if i % 3 == 0 {
                    BlobType::Tree
                } else {
                    BlobType::Data
                };
                saver.save(t, format!("blob {i}").as_bytes()).unwrap();
            }
            saver.finish().unwrap();
        }
        repo.load_index().unwrap();
        let packs = |t| {
            repo.index()
                .iter(t)
                .map(|(_, l)| l.pack)
                .collect::<std::collections::HashSet<_>>()
        };
        let (trees, data) = (packs(BlobType::Tree), packs(BlobType::Data));
        assert_eq!(repo.index().len(BlobType::Tree), 167);
        assert!(!trees.is_empty() && !data.is_empty());
        assert!(trees.is_disjoint(&data), "{trees:?} {data:?}");
    }

    /// Producers that outrun the pack writer wait with their full pack in
    /// its slot instead of each holding one more: the packer never holds
    /// more than (open packs + writers) packs, however many threads add.
    #[test]
    fn producers_outrunning_the_writer_hold_no_pack_beyond_the_open_ones() {
        const PACK: usize = 64 << 10;
        const BLOB: usize = 8 << 10;
        let repo = crate::repo::test_repo();
        let backend: Arc<dyn Backend> = Arc::new(SlowWrites(MemBackend::new()));
        let opts = PackerOptions {
            open_packs: 2,
            writers: 1,
            ..PackerOptions::new(PACK)
        };
        let packer = Packer::new(Arc::clone(&backend), repo.seal_key().clone(), opts);
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    for _ in 0..48 {
                        let blob = SealedBlob {
                            blob_type: BlobType::Data,
                            id: BlobId::random(),
                            compression: Compression::None,
                            raw_len: (BLOB - crate::crypto::SEAL_OVERHEAD) as u32,
                            sealed: vec![7; BLOB],
                        };
                        packer.add(blob).expect("add");
                    }
                });
            }
        });
        let peak = packer.peak_held_bytes();
        let result = packer.finish(&*backend).expect("finish");
        // Full packs, and at most one partial pack per open slot at the end.
        let full = 6 * 48 * BLOB as u64 / PACK as u64;
        assert!((full..=full + 2).contains(&result.packs_written));
        // A pack closes at the blob that reaches the target size.
        let bound = (opts.open_packs + opts.writers) * PACK;
        assert!(peak <= bound, "held {peak} bytes at once, bound {bound}");
    }
}
