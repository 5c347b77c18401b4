//! The mount's blob cache and read-ahead.
//!
//! Owns: plaintext data blobs kept in memory up to a byte bound (least
//! recently used first out), blobs on their way (a second reader of a blob
//! being fetched waits for it instead of fetching it again), and the queue
//! of blobs a sequential reader will want next. Every blob comes through
//! [`Repository::read_planned`]: read by pack in merged ranges,
//! authenticated, decompressed and re-hashed against its ID, as restore
//! reads them. Never touches: files, inodes, the kernel.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex};

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::repo::Repository;
use crate::repo::readplan::{Wanted, read_workers};

enum Slot {
    /// In memory, last used at this tick.
    Ready(Arc<Vec<u8>>, u64),
    /// Being fetched.
    Loading,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<BlobId, Slot>,
    /// Ready blobs by last use.
    by_use: BTreeMap<u64, BlobId>,
    tick: u64,
    bytes: u64,
}

impl Inner {
    fn touch(&mut self, id: &BlobId) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let tick = self.tick;
        match self.slots.get_mut(id) {
            Some(Slot::Ready(data, used)) => {
                self.by_use.remove(used);
                *used = tick;
                self.by_use.insert(tick, *id);
                Some(Arc::clone(data))
            }
            _ => None,
        }
    }

    fn insert(&mut self, id: BlobId, data: Arc<Vec<u8>>, max: u64) {
        self.tick += 1;
        self.bytes += data.len() as u64;
        if let Some(Slot::Ready(old, used)) = self.slots.insert(id, Slot::Ready(data, self.tick)) {
            self.by_use.remove(&used);
            self.bytes -= old.len() as u64;
        }
        self.by_use.insert(self.tick, id);
        while self.bytes > max {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some(Slot::Ready(d, _)) = self.slots.remove(&oldest) {
                self.bytes -= d.len() as u64;
            }
        }
    }
}

/// What one fetch got: the blobs it read, and the first error it met.
type Fetched = (HashMap<BlobId, Arc<Vec<u8>>>, Option<Error>);

/// Plaintext data blobs in memory, bounded in bytes.
pub struct BlobCache {
    max_bytes: u64,
    inner: Mutex<Inner>,
    arrived: Condvar,
}

impl BlobCache {
    /// A cache holding at most `max_bytes` of plaintext (at least the
    /// blobs one read needs, whatever the bound).
    pub fn new(max_bytes: u64) -> Self {
        BlobCache {
            max_bytes,
            inner: Mutex::new(Inner::default()),
            arrived: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Fetch those of `wanted` that are neither held nor on their way, by
    /// pack; each arrives in the cache as it is read. The ones this call
    /// fetched are returned too (indices into `wanted`), so a reader gets
    /// them even if the cache let them go meanwhile. A blob that could not
    /// be read leaves no trace (the next reader tries again).
    fn fetch(&self, repo: &Repository, wanted: &[Wanted]) -> Fetched {
        let mine: Vec<Wanted> = {
            let mut inner = self.lock();
            let mut mine = Vec::new();
            for w in wanted {
                if let std::collections::hash_map::Entry::Vacant(e) = inner.slots.entry(w.id) {
                    e.insert(Slot::Loading);
                    mine.push(*w);
                }
            }
            mine
        };
        let got: Mutex<Fetched> = Mutex::new((HashMap::new(), None));
        if !mine.is_empty() {
            repo.read_planned(&mine, read_workers(repo), &|i, r| {
                let id = mine[i].id;
                let mut inner = self.lock();
                match r {
                    Ok(data) => {
                        let data = Arc::new(data);
                        inner.insert(id, Arc::clone(&data), self.max_bytes);
                        drop(inner);
                        got.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                            .insert(id, data);
                    }
                    Err(e) => {
                        if matches!(inner.slots.get(&id), Some(Slot::Loading)) {
                            inner.slots.remove(&id);
                        }
                        drop(inner);
                        let mut g = got.lock().unwrap_or_else(|p| p.into_inner());
                        if g.1.is_none() {
                            g.1 = Some(e);
                        }
                    }
                }
                self.arrived.notify_all();
            });
        }
        got.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// The plaintext of every blob of `wanted`, in order: from memory,
    /// from a fetch already on its way, or fetched now.
    pub fn get(&self, repo: &Repository, wanted: &[Wanted]) -> Result<Vec<Arc<Vec<u8>>>> {
        let mut out: Vec<Option<Arc<Vec<u8>>>> = vec![None; wanted.len()];
        // A blob another reader fetches may fail or be let go before this
        // reader takes it: then this reader fetches it itself, once.
        for attempt in 0..2 {
            let (fetched, err) = self.fetch(repo, wanted);
            let mut inner = self.lock();
            loop {
                let mut waiting = false;
                for (k, w) in wanted.iter().enumerate() {
                    if out[k].is_some() {
                        continue;
                    }
                    if let Some(d) = fetched.get(&w.id) {
                        out[k] = Some(Arc::clone(d));
                    } else if let Some(d) = inner.touch(&w.id) {
                        out[k] = Some(d);
                    } else if matches!(inner.slots.get(&w.id), Some(Slot::Loading)) {
                        waiting = true;
                    }
                }
                if !waiting {
                    break;
                }
                inner = self.arrived.wait(inner).unwrap_or_else(|p| p.into_inner());
            }
            drop(inner);
            if out.iter().all(Option::is_some) {
                break;
            }
            if let Some(e) = err {
                return Err(e);
            }
            let _ = attempt;
        }
        out.into_iter()
            .zip(wanted)
            .map(|(d, w)| {
                d.ok_or_else(|| Error::integrity(format!("data blob {} was not read", w.id)))
            })
            .collect()
    }

    /// Fetch `wanted` into the cache ahead of its readers (errors are left
    /// for the reader that needs the blob to meet).
    pub fn prefetch(&self, repo: &Repository, wanted: &[Wanted]) {
        let _ = self.fetch(repo, wanted);
    }
}

/// The queue of read-ahead requests, served by a thread of the mount.
#[derive(Clone)]
pub struct ReadAhead {
    tx: crossbeam_channel::Sender<Vec<Wanted>>,
}

/// Requests queued at most; more are dropped (the reader fetches what it
/// needs itself).
const QUEUED_AT_MOST: usize = 64;

impl ReadAhead {
    /// A queue and its receiving end, for [`serve_read_ahead`].
    pub fn new() -> (ReadAhead, crossbeam_channel::Receiver<Vec<Wanted>>) {
        let (tx, rx) = crossbeam_channel::bounded(QUEUED_AT_MOST);
        (ReadAhead { tx }, rx)
    }

    /// Ask for `wanted` to be fetched ahead.
    pub fn request(&self, wanted: Vec<Wanted>) {
        if !wanted.is_empty() {
            let _ = self.tx.try_send(wanted);
        }
    }
}

/// Fetch every request of `rx` into `cache`, until `stop` is closed (or
/// every sender is gone).
pub fn serve_read_ahead(
    cache: &BlobCache,
    repo: &Repository,
    rx: &crossbeam_channel::Receiver<Vec<Wanted>>,
    stop: &crossbeam_channel::Receiver<()>,
) {
    loop {
        crossbeam_channel::select! {
            recv(rx) -> w => match w {
                Ok(w) => cache.prefetch(repo, &w),
                Err(_) => return,
            },
            recv(stop) -> _ => return,
        }
    }
}
