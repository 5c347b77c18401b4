//! Check: is the repository whole, and is every byte of it authentic?
//!
//! Structure (always): every index file decodes; every indexed pack exists
//! and its authenticated header agrees with the index; every snapshot
//! decodes and every tree and data blob it reaches is indexed and every
//! tree decodes. With `--read-data` (or a subset of packs), every blob is
//! read, authenticated, decompressed and re-hashed against its ID.
//! Damage is reported with the snapshots and paths that depend on it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rayon::prelude::*;

use super::Progress;
use crate::error::{Error, ErrorKind, Result};
use crate::format::BlobType;
use crate::format::pack::{self, PackEntry};
use crate::format::tree::NodeKind;
use crate::id::{BlobId, PackId, SnapshotId};
use crate::repo::inventory::Inventory;
use crate::repo::{Repository, SharedLock, chunklist, pack_name};

/// Packs `--read-data` asks the storage for ahead of the ones being
/// checked (a local disk reads them while these are opened).
const PACKS_AHEAD: usize = 8;

/// Which packs `--read-data` reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    /// None: structure only.
    None,
    /// Every pack.
    All,
    /// Packs whose ID's first byte modulo `of` is `n - 1` (1-based), so
    /// `1/5` … `5/5` on five nights cover everything once.
    Slice {
        /// Which slice, 1-based.
        n: u32,
        /// Out of how many.
        of: u32,
    },
    /// A random share of the packs, in percent.
    Percent(f64),
}

impl ReadData {
    /// Parse `--read-data-subset`: `N/T` or `P%`.
    pub fn parse_subset(s: &str) -> Result<ReadData> {
        let bad = || {
            Error::invalid(format!(
                "--read-data-subset {s:?}: use N/T (e.g. 1/5) or P% (e.g. 10%)"
            ))
        };
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(bad());
            }
            return Ok(ReadData::Percent(v));
        }
        let (n, of) = s.split_once('/').ok_or_else(bad)?;
        let (n, of): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            of.trim().parse().map_err(|_| bad())?,
        );
        if of == 0 || n == 0 || n > of || of > 256 {
            return Err(bad());
        }
        Ok(ReadData::Slice { n, of })
    }

    fn selects(&self, pack: &PackId) -> bool {
        match *self {
            ReadData::None => false,
            ReadData::All => true,
            ReadData::Slice { n, of } => u32::from(pack.0[0]) % of == n - 1,
            ReadData::Percent(p) => rand::random::<f64>() * 100.0 < p,
        }
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Data is missing or damaged: some snapshot cannot be fully restored.
    Error,
    /// Harmless leftovers (unreferenced packs, duplicates): prune tidies them.
    Warning,
}

/// One finding.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, naming the objects.
    pub message: String,
}

/// What `check` found.
#[derive(Debug, Default, serde::Serialize)]
pub struct CheckResult {
    /// Findings, errors first.
    pub problems: Vec<Problem>,
    /// Snapshot paths that cannot be restored intact, as
    /// "snapshot ID: path (reason)".
    pub affected: Vec<String>,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Distinct trees checked.
    pub trees: u64,
    /// Packs whose data was read.
    pub packs_read: u64,
    /// Blobs whose data was read and verified.
    pub blobs_read: u64,
    /// Bytes read from packs.
    pub bytes_read: u64,
}

impl CheckResult {
    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }
}

/// Options for [`check`].
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Which packs to read in full.
    pub read_data: ReadData,
}

struct Findings {
    problems: Vec<Problem>,
    /// Blobs known damaged or missing, with the reason.
    damaged: HashMap<(BlobType, BlobId), String>,
}

impl Findings {
    fn error(&mut self, m: String) {
        self.problems.push(Problem {
            severity: Severity::Error,
            message: m,
        });
    }
    fn warn(&mut self, m: String) {
        self.problems.push(Problem {
            severity: Severity::Warning,
            message: m,
        });
    }
}

/// A pack read in full: its header entries, the blobs that failed
/// verification (with why), and its size.
struct PackRead {
    entries: Vec<PackEntry>,
    bad: Vec<(PackEntry, String)>,
    bytes: u64,
}

/// Verify one whole pack, read in one request: its header (judged as a
/// header read from the pack's tail is), and every blob against its ID.
fn read_pack(repo: &Repository, id: &PackId) -> Result<PackRead> {
    let bytes = repo.backend().get(&pack_name(id))?;
    let (entries, region_len) = repo.pack_header_in(id, &bytes)?;
    let region = &bytes[..region_len as usize];
    let offsets = pack::entry_offsets(&entries, region_len)?;
    let bad: Vec<(PackEntry, String)> = entries
        .par_iter()
        .zip(offsets.par_iter())
        .filter_map(|(e, &off)| {
            let start = off as usize;
            let mut buf = region[start..start + e.sealed_len as usize].to_vec();
            let r = repo
                .open_blob(e.blob_type, &e.id, e.compression, e.raw_len, &mut buf)
                .and_then(|()| {
                    if repo.id_key().blob_id(&buf) == e.id {
                        Ok(())
                    } else {
                        Err(Error::integrity("content does not hash to its ID"))
                    }
                });
            r.err().map(|err| (*e, err.to_string()))
        })
        .collect();
    Ok(PackRead {
        entries,
        bad,
        bytes: bytes.len() as u64,
    })
}

/// Check the repository under a shared lock. The index is loaded by the
/// check itself (every index file is read and judged).
pub fn check(
    guard: &mut SharedLock<'_>,
    opts: &CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckResult> {
    let (repo, _lock) = guard.parts();
    super::in_pool(|| check_inner(repo, opts, progress))
}

fn check_inner(
    repo: &mut Repository,
    opts: &CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckResult> {
    let mut f = Findings {
        problems: Vec::new(),
        damaged: HashMap::new(),
    };
    let mut result = CheckResult::default();

    // 1. Index files. Superseded ones are not part of the index (FORMAT.md
    //    §5.4): a reader ignores them, so check does too, and says so.
    let inv = Inventory::load(repo)?;
    for (id, e) in &inv.unreadable {
        f.error(format!("index file {id} cannot be read: {e}"));
    }
    for (id, by) in &inv.superseded {
        f.warn(format!(
            "index file {id} is superseded by index file {} and ignored (left by an interrupted prune or repair, or copied back); `cairn repair index` deletes it",
            by.short()
        ));
    }
    let dups = inv.duplicate_blobs();
    if dups > 0 {
        f.warn(format!(
            "{dups} blobs are indexed more than once (concurrent or interrupted writers; prune removes the extra copies)"
        ));
    }
    repo.load_index()?;

    // 2. Packs on storage against the index.
    for name in &inv.strays {
        f.warn(format!("unexpected object {name} in data/"));
    }
    let on_disk = inv.stored_sizes();
    let indexed = inv.indexed_packs();
    // The packs `--read-data` reads are fetched once, whole, up to the
    // backend's connections at a time; their headers come from that read.
    // The other packs' headers come in one tail read each.
    let chosen: Vec<PackId> = indexed
        .iter()
        .filter(|id| on_disk.contains_key(id) && opts.read_data.selects(id))
        .copied()
        .collect();
    if opts.read_data != ReadData::None {
        let total: u64 = chosen.iter().map(|id| on_disk[id]).sum();
        progress.start("read data", Some(chosen.len() as u64), Some(total));
    }
    let reads: Vec<std::sync::Mutex<Option<Result<PackRead>>>> =
        chosen.iter().map(|_| Default::default()).collect();
    // A cold local disk reads the next packs while these are checked.
    let ahead = |i: usize| {
        repo.backend()
            .will_read(&pack_name(&chosen[i]), 0, on_disk[&chosen[i]]);
    };
    crate::repo::readplan::in_flight_reading_ahead(
        chosen.len(),
        crate::repo::readplan::read_workers(repo),
        PACKS_AHEAD,
        &ahead,
        &|i| {
            let r = read_pack(repo, &chosen[i]);
            progress.advance(1, on_disk[&chosen[i]]);
            *reads[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        },
    );
    let mut reads: HashMap<PackId, Result<PackRead>> = chosen
        .iter()
        .zip(reads)
        .filter_map(|(id, r)| Some((*id, r.into_inner().unwrap_or_else(|p| p.into_inner())?)))
        .collect();
    let headers: Vec<(PackId, Result<Vec<PackEntry>>)> = indexed
        .par_iter()
        .filter_map(|id| {
            if let Some(r) = reads.get(id) {
                return Some((
                    *id,
                    r.as_ref()
                        .map(|r| r.entries.clone())
                        .map_err(|e| Error::new(e.kind(), e.to_string())),
                ));
            }
            on_disk
                .get(id)
                .map(|&size| (*id, repo.load_pack_header(id, size)))
        })
        .collect();
    let header_ok: HashMap<PackId, Result<Vec<PackEntry>>> = headers.into_iter().collect();
    for id in &indexed {
        let blobs = &inv.indexed[id].blobs;
        let mark = |f: &mut Findings, why: &str| {
            for b in blobs {
                f.damaged
                    .insert((b.blob_type, b.id), format!("{why} (pack {})", id.short()));
            }
        };
        match header_ok.get(id) {
            None => {
                f.error(format!(
                    "pack {id} is missing: {} indexed blobs are lost",
                    blobs.len()
                ));
                mark(&mut f, "its pack is missing");
            }
            Some(Err(e)) => {
                f.error(format!("damaged {e}"));
                mark(&mut f, "its pack is damaged");
            }
            Some(Ok(entries)) => {
                let mut offsets = HashMap::new();
                let mut off = 0u64;
                for e in entries {
                    offsets.insert(
                        (e.blob_type, e.id),
                        (off, e.sealed_len, e.raw_len, e.compression),
                    );
                    off += u64::from(e.sealed_len);
                }
                for b in blobs {
                    let want = (u64::from(b.offset), b.sealed_len, b.raw_len, b.compression);
                    if offsets.get(&(b.blob_type, b.id)) != Some(&want) {
                        f.error(format!(
                            "pack {id}: {} blob {} is indexed where the pack header does not put it",
                            b.blob_type.name(),
                            b.id
                        ));
                        f.damaged.insert(
                            (b.blob_type, b.id),
                            format!("index and pack {} disagree", id.short()),
                        );
                    }
                }
            }
        }
    }
    for id in inv.unindexed() {
        f.warn(format!(
            "pack {id} is in no index file (left by an interrupted backup or prune, or a backup still running; prune removes it once it is {} hours old)",
            crate::ops::prune::PACK_GRACE.as_secs() / 3600
        ));
    }

    // 3. Read data: what the packs read whole held (a pack that could not
    // be read, or whose header is damaged, was reported above).
    if opts.read_data != ReadData::None {
        for id in &chosen {
            // A pack that could not be read was reported with the headers.
            let Some(Ok(PackRead {
                entries,
                bad,
                bytes,
            })) = reads.remove(id)
            else {
                continue;
            };
            result.packs_read += 1;
            result.blobs_read += entries.len() as u64;
            result.bytes_read += bytes;
            for (e, why) in bad {
                f.error(format!("pack {id}: {why}"));
                f.damaged.insert(
                    (e.blob_type, e.id),
                    format!("damaged in pack {}", id.short()),
                );
            }
        }
    }

    // 4. Snapshots and everything they reach.
    let mut snaps: Vec<(SnapshotId, crate::format::snapshot::Snapshot)> = Vec::new();
    for id in repo.list_snapshot_ids()? {
        match repo.load_snapshot(&id) {
            Ok(s) => snaps.push((id, s)),
            Err(e) => f.error(format!("snapshot {id} cannot be read: {e}")),
        }
    }
    snaps.sort_by_key(|(_, s)| s.time_ns);
    result.snapshots = snaps.len() as u64;
    let mut memo: HashMap<BlobId, DamagedPaths> = HashMap::new();
    let mut tree_errors: HashSet<BlobId> = HashSet::new();
    let mut lists = chunklist::ScanMemo::new();
    for (id, s) in &snaps {
        let found = scan_tree(
            repo,
            &s.tree,
            &f.damaged,
            &mut memo,
            &mut lists,
            &mut tree_errors,
            0,
        );
        for (path, why) in found.iter() {
            let p = if path.is_empty() {
                b"/".to_vec()
            } else {
                path.clone()
            };
            result.affected.push(format!(
                "snapshot {}: {} ({why})",
                id.short(),
                String::from_utf8_lossy(&p)
            ));
        }
    }
    result.trees = memo.len() as u64;
    for t in tree_errors {
        f.error(format!("tree {t} is missing or cannot be decoded"));
    }
    if !result.affected.is_empty() && !f.problems.iter().any(|p| p.severity == Severity::Error) {
        f.error("snapshots reference blobs that are not in the index".into());
    }
    let mut problems = f.problems;
    problems.sort_by_key(|p| p.severity != Severity::Error);
    result.problems = problems;
    Ok(result)
}

/// Paths below a tree that cannot be restored intact, with the reason.
type DamagedPaths = Arc<Vec<(Vec<u8>, String)>>;

/// Damaged paths below `tree` (relative, starting with `/`), memoised per
/// tree so shared subtrees are scanned once.
fn scan_tree(
    repo: &Repository,
    tree: &BlobId,
    damaged: &HashMap<(BlobType, BlobId), String>,
    memo: &mut HashMap<BlobId, DamagedPaths>,
    lists: &mut chunklist::ScanMemo,
    tree_errors: &mut HashSet<BlobId>,
    depth: usize,
) -> DamagedPaths {
    if let Some(m) = memo.get(tree) {
        return Arc::clone(m);
    }
    let mut out: Vec<(Vec<u8>, String)> = Vec::new();
    let loaded = if depth > super::MAX_TREE_DEPTH {
        Err(Error::integrity("nested too deep"))
    } else if let Some(why) = damaged.get(&(BlobType::Tree, *tree)) {
        Err(Error::integrity(why.clone()))
    } else {
        repo.load_tree(tree)
    };
    match loaded {
        Err(e) => {
            if e.kind() != ErrorKind::Io || !damaged.contains_key(&(BlobType::Tree, *tree)) {
                tree_errors.insert(*tree);
            }
            out.push((Vec::new(), format!("directory unreadable: {e}")));
        }
        Ok(t) => {
            for n in &t.nodes {
                let mut p = b"/".to_vec();
                p.extend_from_slice(&n.name);
                match &n.kind {
                    NodeKind::Dir { subtree } => {
                        let below =
                            scan_tree(repo, subtree, damaged, memo, lists, tree_errors, depth + 1);
                        for (q, why) in below.iter() {
                            let mut full = p.clone();
                            full.extend_from_slice(q);
                            out.push((full, why.clone()));
                        }
                    }
                    NodeKind::File { content } => {
                        // Every data blob, and every ID-list blob of a
                        // chunk-list tree (read, re-hashed, level-checked).
                        let problem = |t: BlobType, b: &BlobId| {
                            damaged.get(&(t, *b)).cloned().or_else(|| {
                                (!repo.index().contains(t, b)).then(|| {
                                    format!("{} blob {} is not in the index", t.name(), b.short())
                                })
                            })
                        };
                        let limit = chunklist::chunk_limit(n);
                        match chunklist::scan(repo, content, limit, lists, &problem) {
                            Ok(Ok(_)) => {}
                            Ok(Err(why)) => out.push((p, why)),
                            Err(e) => out.push((p, format!("chunk list unreadable: {e}"))),
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let out = Arc::new(out);
    memo.insert(*tree, Arc::clone(&out));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mem::{CountingBackend, MemBackend};
    use std::sync::Arc;

    /// A repository on a counted memory backend (four connections) whose
    /// data and tree blobs lie in packs written by `runs` savers.
    fn repo_with_packs(runs: usize) -> (Repository, Arc<CountingBackend>) {
        let counting = Arc::new(CountingBackend::new(Arc::new(MemBackend::new()), 4));
        let mut repo = crate::repo::test_repo_on(counting.clone());
        for run in 0..runs {
            let lock = crate::repo::lock::RepoLock::acquire(&repo, false).unwrap();
            let saver = crate::repo::save::BlobSaver::new(
                &repo,
                lock.gate(),
                crate::repo::save::SaveOptions::for_repo(&repo),
            );
            for i in 0..50 {
                let t = if i % 5 == 0 {
                    BlobType::Tree
                } else {
                    BlobType::Data
                };
                saver
                    .save(t, format!("run {run} blob {i}").as_bytes())
                    .unwrap();
            }
            saver.finish().unwrap();
        }
        repo.load_index().unwrap();
        (repo, counting)
    }

    #[test]
    fn check_read_data_reads_each_pack_in_exactly_one_request() {
        let (mut repo, counting) = repo_with_packs(3);
        let packs = repo.list_packs().unwrap().len() as u64;
        assert!(packs >= 6, "{packs} packs");
        let mut lock = repo.lock_shared().unwrap();
        for (read_data, packs_read) in [(ReadData::None, 0), (ReadData::All, packs)] {
            counting.take_pack_reads();
            let r = check(
                &mut lock,
                &CheckOptions { read_data },
                &crate::ops::NoProgress,
            )
            .unwrap();
            assert_eq!(r.errors(), 0, "{:?}", r.problems);
            assert_eq!(r.packs_read, packs_read, "{read_data:?}");
            // Structure only: each pack's header and trailer in one tail
            // read. With --read-data: each pack once, whole, its header
            // taken from that read (not a tail read and then the pack).
            assert_eq!(counting.take_pack_reads(), packs, "{read_data:?}");
        }
    }

    #[test]
    fn check_read_data_asks_the_storage_to_read_ahead_each_pack_it_reads() {
        let (mut repo, counting) = repo_with_packs(3);
        let packs: HashSet<String> = repo.list_packs().unwrap().keys().map(pack_name).collect();
        let mut lock = repo.lock_shared().unwrap();
        counting.take_hints();
        let opts = CheckOptions {
            read_data: ReadData::None,
        };
        check(&mut lock, &opts, &crate::ops::NoProgress).unwrap();
        assert_eq!(
            counting.take_hints(),
            Vec::<String>::new(),
            "structure only"
        );
        let opts = CheckOptions {
            read_data: ReadData::All,
        };
        let r = check(&mut lock, &opts, &crate::ops::NoProgress).unwrap();
        assert_eq!(r.errors(), 0, "{:?}", r.problems);
        // Each pack announced once, before it is read: a cold local disk
        // reads the next packs while these are checked.
        let hints = counting.take_hints();
        assert_eq!(hints.len(), packs.len(), "{hints:?}");
        assert_eq!(hints.into_iter().collect::<HashSet<_>>(), packs);
    }
}
