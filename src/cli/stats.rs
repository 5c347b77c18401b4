//! `cairn stats`: how much is stored, and how well it deduplicates.

use anyhow::Result;
use cairn::ops::stats::stats;

use super::{GlobalArgs, human_bytes};

/// Arguments of `cairn stats`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(g: &GlobalArgs, _a: &Args) -> Result<i32> {
    let mut repo = g.open()?;
    let s = stats(&mut repo)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "snapshots": s.snapshots,
                "hosts": s.hosts,
                "logical_bytes": s.logical_bytes,
                "unique_data_bytes": s.unique_data_bytes,
                "unique_tree_bytes": s.unique_tree_bytes,
                "stored_pack_bytes": s.stored_pack_bytes,
                "stored_index_bytes": s.stored_index_bytes,
                "dedup_ratio": s.dedup_ratio(),
                "compression_ratio": s.compression_ratio(),
                "total_ratio": s.total_ratio(),
                "data_blobs": s.data_blobs,
                "tree_blobs": s.tree_blobs,
                "packs": s.packs,
                "index_memory_bytes": s.index_memory_bytes,
            })
        );
    } else {
        println!(
            "snapshots:            {} (from {} hosts)",
            s.snapshots, s.hosts
        );
        println!(
            "logical size:         {} (sum of every snapshot's files)",
            human_bytes(s.logical_bytes)
        );
        println!(
            "unique data:          {} after deduplication ({:.2}x)",
            human_bytes(s.unique_data_bytes),
            s.dedup_ratio()
        );
        println!(
            "stored:               {} in {} packs, {} of index ({:.2}x compression)",
            human_bytes(s.stored_pack_bytes),
            s.packs,
            human_bytes(s.stored_index_bytes),
            s.compression_ratio()
        );
        println!(
            "blobs:                {} data, {} trees ({} of trees)",
            s.data_blobs,
            s.tree_blobs,
            human_bytes(s.unique_tree_bytes)
        );
        println!(
            "overall:              {:.2}x smaller than the data it holds",
            s.total_ratio()
        );
    }
    Ok(super::exit::OK)
}
