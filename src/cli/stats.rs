//! `cairn stats`: how much is stored, and how well it deduplicates.

use std::collections::HashSet;

use anyhow::Result;
use cairn::format::BlobType;

use super::{GlobalArgs, human_bytes};

/// Arguments of `cairn stats`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(g: &GlobalArgs, _a: &Args) -> Result<i32> {
    let repo = g.open_with_index()?;
    let snaps = repo.load_snapshots()?;
    let logical: u64 = snaps.iter().map(|(_, s)| s.summary.total_bytes).sum();
    let packs = repo.backend().list("data")?;
    let stored: u64 = packs.iter().map(|o| o.size).sum();
    let index_bytes: u64 = repo.backend().list("index")?.iter().map(|o| o.size).sum();
    let idx = repo.index();
    let mut data_raw = 0u64;
    let mut data_sealed = 0u64;
    for (_, l) in idx.iter(BlobType::Data) {
        data_raw += u64::from(l.raw_len);
        data_sealed += u64::from(l.sealed_len);
    }
    let tree_raw: u64 = idx
        .iter(BlobType::Tree)
        .map(|(_, l)| u64::from(l.raw_len))
        .sum();
    let hosts: HashSet<&str> = snaps.iter().map(|(_, s)| s.hostname.as_str()).collect();
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let dedup = ratio(logical, data_raw);
    let compression = ratio(data_raw, data_sealed);
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "snapshots": snaps.len(),
                "hosts": hosts.len(),
                "logical_bytes": logical,
                "unique_data_bytes": data_raw,
                "unique_tree_bytes": tree_raw,
                "stored_pack_bytes": stored,
                "stored_index_bytes": index_bytes,
                "dedup_ratio": dedup,
                "compression_ratio": compression,
                "total_ratio": ratio(logical, stored + index_bytes),
                "data_blobs": idx.len(BlobType::Data),
                "tree_blobs": idx.len(BlobType::Tree),
                "packs": packs.len(),
                "index_memory_bytes": idx.memory_bytes(),
            })
        );
    } else {
        println!(
            "snapshots:            {} (from {} hosts)",
            snaps.len(),
            hosts.len()
        );
        println!(
            "logical size:         {} (sum of every snapshot's files)",
            human_bytes(logical)
        );
        println!(
            "unique data:          {} after deduplication ({dedup:.2}x)",
            human_bytes(data_raw)
        );
        println!(
            "stored:               {} in {} packs, {} of index ({compression:.2}x compression)",
            human_bytes(stored),
            packs.len(),
            human_bytes(index_bytes)
        );
        println!(
            "blobs:                {} data, {} trees ({} of trees)",
            idx.len(BlobType::Data),
            idx.len(BlobType::Tree),
            human_bytes(tree_raw)
        );
        println!(
            "overall:              {:.2}x smaller than the data it holds",
            ratio(logical, stored + index_bytes)
        );
    }
    Ok(super::exit::OK)
}
