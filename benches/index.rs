//! How the in-memory index grows: bytes per entry and lookups per second
//! for 10 million entries (about a 10 TB repository at 1 MiB chunks).
//!
//!     cargo bench --bench index              # 10 million entries
//!     CAIRN_INDEX_ENTRIES=1000000 cargo bench --bench index
//!
//! Prints one line per figure; the heap size is the index's own accounting
//! of its allocations (entries, radix table, pack table), checked against
//! the process's resident set growth.

use std::hint::black_box;
use std::time::Instant;

use cairn::format::index::IndexBlob;
use cairn::format::{BlobType, Compression};
use cairn::id::{BlobId, PackId};
use cairn::index::Index;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn id(i: u64) -> BlobId {
    let mut out = [0u8; 32];
    let h = blake3::hash(&i.to_le_bytes());
    out.copy_from_slice(h.as_bytes());
    BlobId(out)
}

fn main() {
    // `cargo test --all-targets` runs benches with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: u64 = std::env::var("CAIRN_INDEX_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 100_000 } else { 10_000_000 });
    let blobs_per_pack = 16u64; // 1 MiB chunks in 16 MiB packs
    let rss0 = rss_kib();
    let t = Instant::now();
    let mut index = Index::new();
    let mut batch = Vec::with_capacity(blobs_per_pack as usize);
    for i in 0..n {
        batch.push(IndexBlob {
            blob_type: BlobType::Data,
            compression: Compression::Zstd,
            id: id(i),
            offset: ((i % blobs_per_pack) * 1_000_000) as u32,
            sealed_len: 700_000,
            raw_len: 1_048_576,
        });
        if batch.len() as u64 == blobs_per_pack {
            index.add_pack(PackId::random(), &batch);
            batch.clear();
        }
        // Finalize in steps, as loading many index files does.
        if i % 1_000_000 == 999_999 {
            index.finalize();
        }
    }
    index.add_pack(PackId::random(), &batch);
    index.finalize();
    let build = t.elapsed();
    let rss1 = rss_kib();
    let heap = index.memory_bytes() as f64;
    println!("index entries:            {n}");
    println!("build time:               {:.2} s", build.as_secs_f64());
    println!("heap bytes per entry:     {:.2}", heap / n as f64);
    println!(
        "RSS growth per entry:     {:.2} (bytes; includes allocator slack)",
        (rss1.saturating_sub(rss0) * 1024) as f64 / n as f64
    );

    let lookups = if quick { 200_000 } else { 5_000_000 };
    let t = Instant::now();
    let mut found = 0u64;
    for i in 0..lookups {
        // Half hits, half misses.
        let k = if i % 2 == 0 { (i * 7919) % n } else { n + i };
        found += u64::from(index.contains(BlobType::Data, &id(k)));
    }
    let dt = t.elapsed().as_secs_f64();
    // Subtract the cost of computing the keys themselves.
    let t = Instant::now();
    for i in 0..lookups {
        black_box(id(i));
    }
    let key_cost = t.elapsed().as_secs_f64();
    println!(
        "lookups per second:       {:.2} million (one thread; {found} hits of {lookups})",
        lookups as f64 / (dt - key_cost).max(1e-9) / 1e6
    );
    assert_eq!(found, lookups / 2, "every present ID must be found");
}
