//! Throughput of each stage of the backup pipeline, and of the whole
//! pipeline on an in-memory repository, in bytes per second.
//!
//!     cargo bench --bench pipeline
//!
//! Inputs are deterministic: a pseudo-random stream (incompressible) and a
//! text-like stream built from words (compresses about 3:1 with zstd-3,
//! like source code).

use std::hint::black_box;
use std::sync::Arc;

use cairn::backend::mem::MemBackend;
use cairn::chunker::Chunker;
use cairn::crypto::{IdKey, KdfParams, SealKey, Secret32};
use cairn::format::config::ChunkerParams;
use cairn::ops::NoProgress;
use cairn::ops::backup::{BackupOptions, backup, compress};
use cairn::repo::{InitOptions, Repository};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;

const MIB: usize = 1024 * 1024;

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
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

fn text_bytes(len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "static ",
        "int ",
        "return ",
        "struct ",
        "(void)",
        "if (",
        "err",
        " = ",
        ";\n",
        "\t",
        "buffer",
        "->next",
        "0x",
        "spin_lock",
        "{\n",
        "}\n",
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % 16) as usize].as_bytes());
        if x % 7 == 0 {
            out.extend_from_slice(format!("{}", x % 1000).as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn bench_chunker(c: &mut Criterion) {
    let data = random_bytes(64 * MIB, 1);
    let mut g = c.benchmark_group("chunker");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    let chunker = Chunker::new(ChunkerParams::with_seed(0x1234_5678_9abc_def0));
    g.bench_function("fastcdc_keyed_1MiB_avg", |b| {
        b.iter(|| black_box(chunker.cuts(&data).count()))
    });
    g.finish();
}

fn bench_hash(c: &mut Criterion) {
    let data = random_bytes(64 * MIB, 2);
    let key = IdKey::new(Secret32::from_bytes([7; 32]));
    let mut g = c.benchmark_group("hash");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("keyed_blake3_1MiB_chunks_one_thread", |b| {
        b.iter(|| {
            for ch in data.chunks(MIB) {
                black_box(key.blob_id(ch));
            }
        })
    });
    g.bench_function("keyed_blake3_1MiB_chunks_rayon", |b| {
        b.iter(|| {
            data.par_chunks(MIB).for_each(|ch| {
                black_box(key.blob_id(ch));
            })
        })
    });
    g.finish();
}

fn bench_seal(c: &mut Criterion) {
    let data = random_bytes(MIB, 3);
    let key = SealKey::new(&Secret32::from_bytes([9; 32]));
    let sealed = key.seal(b"aad", &data);
    let mut g = c.benchmark_group("seal");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("xchacha20poly1305_seal_1MiB", |b| {
        b.iter(|| black_box(key.seal(b"aad", &data)))
    });
    g.bench_function("xchacha20poly1305_open_1MiB", |b| {
        b.iter(|| black_box(key.open(b"aad", &sealed, "bench").map(|v| v.len())))
    });
    g.finish();
}

fn bench_zstd(c: &mut Criterion) {
    let data = text_bytes(4 * MIB);
    let mut g = c.benchmark_group("zstd");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    for level in [1, 3, 6] {
        g.bench_with_input(BenchmarkId::new("compress_text", level), &level, |b, &l| {
            b.iter(|| {
                for ch in data.chunks(MIB) {
                    black_box(compress(l, ch));
                }
            })
        });
    }
    let packed: Vec<(Vec<u8>, usize)> = data
        .chunks(MIB)
        .filter_map(|ch| compress(3, ch).map(|z| (z, ch.len())))
        .collect();
    g.bench_function("decompress_text_level3", |b| {
        b.iter(|| {
            for (z, n) in &packed {
                let _ = black_box(cairn::repo::decompress(z, *n).map(|v| v.len()));
            }
        })
    });
    g.finish();
}

/// The whole pipeline (walk, read, chunk, hash, dedup, compress, seal,
/// pack) on files in the page cache, into an in-memory repository.
fn bench_end_to_end(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    let mut total = 0u64;
    // 400 small text files (like a source tree) and two large files.
    for i in 0..400 {
        let d = text_bytes(16 * 1024 + i * 97);
        let sub = src.join(format!("d{}", i % 20));
        std::fs::create_dir_all(&sub).expect("mkdir");
        std::fs::write(sub.join(format!("f{i}.c")), &d).expect("write");
        total += d.len() as u64;
    }
    for (i, d) in [text_bytes(48 * MIB), random_bytes(16 * MIB, 5)]
        .iter()
        .enumerate()
    {
        std::fs::write(src.join(format!("big{i}")), d).expect("write");
        total += d.len() as u64;
    }
    let mut g = c.benchmark_group("end_to_end");
    g.throughput(Throughput::Bytes(total));
    g.sample_size(10);
    let opts = InitOptions {
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..InitOptions::default()
    };
    g.bench_function("backup_initial_in_memory_repo", |b| {
        b.iter(|| {
            let backend = Arc::new(MemBackend::new());
            let mut repo = Repository::init(backend, b"bench", &opts).expect("init");
            let o = BackupOptions {
                paths: vec![src.clone()],
                ..BackupOptions::default()
            };
            black_box(
                backup(&mut repo.lock_shared().expect("lock"), &o, &NoProgress).expect("backup"),
            );
        })
    });
    g.finish();
}

criterion_group!(
    stages,
    bench_chunker,
    bench_hash,
    bench_seal,
    bench_zstd,
    bench_end_to_end
);
criterion_main!(stages);
