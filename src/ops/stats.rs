//! Stats: how much the repository stores, and how well it deduplicates
//! and compresses.
//!
//! A pure reader: no lock (it reads immutable objects and the listings),
//! the index loaded in place. Never touches: formatting the figures.

use std::collections::HashSet;

use crate::error::Result;
use crate::format::BlobType;
use crate::repo::Repository;

/// The repository's sizes.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    /// Readable snapshots.
    pub snapshots: u64,
    /// Distinct hosts among them.
    pub hosts: u64,
    /// Sum of every snapshot's file bytes.
    pub logical_bytes: u64,
    /// Plaintext bytes of the distinct data blobs.
    pub unique_data_bytes: u64,
    /// Sealed bytes of the distinct data blobs.
    pub stored_data_bytes: u64,
    /// Plaintext bytes of the distinct tree blobs.
    pub unique_tree_bytes: u64,
    /// Bytes of every object under `data/`.
    pub stored_pack_bytes: u64,
    /// Objects under `data/`.
    pub packs: u64,
    /// Bytes of every object under `index/`.
    pub stored_index_bytes: u64,
    /// Distinct data blobs.
    pub data_blobs: u64,
    /// Distinct tree blobs.
    pub tree_blobs: u64,
    /// Memory the loaded index takes.
    pub index_memory_bytes: u64,
}

impl Stats {
    /// Logical bytes per unique data byte (0 when there is no data).
    pub fn dedup_ratio(&self) -> f64 {
        ratio(self.logical_bytes, self.unique_data_bytes)
    }
    /// Plaintext per sealed byte of data blobs.
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.unique_data_bytes, self.stored_data_bytes)
    }
    /// Logical bytes per byte stored (packs and index files).
    pub fn total_ratio(&self) -> f64 {
        ratio(
            self.logical_bytes,
            self.stored_pack_bytes + self.stored_index_bytes,
        )
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Load the index and the snapshots, list the packs and index files, and
/// add up.
pub fn stats(repo: &mut Repository) -> Result<Stats> {
    repo.load_index()?;
    let snaps = repo.load_snapshots()?;
    let packs = repo.backend().list("data")?;
    let index_files = repo.backend().list("index")?;
    let idx = repo.index();
    let mut s = Stats {
        snapshots: snaps.len() as u64,
        hosts: snaps
            .iter()
            .map(|(_, s)| s.hostname.as_str())
            .collect::<HashSet<_>>()
            .len() as u64,
        logical_bytes: snaps.iter().map(|(_, s)| s.summary.total_bytes).sum(),
        stored_pack_bytes: packs.iter().map(|o| o.size).sum(),
        packs: packs.len() as u64,
        stored_index_bytes: index_files.iter().map(|o| o.size).sum(),
        data_blobs: idx.len(BlobType::Data) as u64,
        tree_blobs: idx.len(BlobType::Tree) as u64,
        index_memory_bytes: idx.memory_bytes() as u64,
        ..Stats::default()
    };
    for (_, l) in idx.iter(BlobType::Data) {
        s.unique_data_bytes += u64::from(l.raw_len);
        s.stored_data_bytes += u64::from(l.sealed_len);
    }
    s.unique_tree_bytes = idx
        .iter(BlobType::Tree)
        .map(|(_, l)| u64::from(l.raw_len))
        .sum();
    Ok(s)
}
