//! Golden vectors: a silent change to chunking, hashing or the repository
//! format fails here.
//!
//! - `tests/vectors/chunks.json`: cut points and blob IDs of seeded
//!   pseudo-random data under fixed chunker parameters and a fixed ID key.
//! - `tests/vectors/repo-v1/`: a small repository written by Cairn's format
//!   version 1, which the current code must open and restore exactly.
//! - `tests/vectors/chunklist.json`: chunk-list trees (FORMAT.md §5.8) of
//!   fixed data blob IDs under a fixed ID key: every ID-list blob's level,
//!   ID and (for the small case and the upper level) bytes, and the tree
//!   node holding the entry.
//! - `tests/vectors/key-v1`, `key-v2` (+ `key-v2.json`): key files of both
//!   layouts (FORMAT.md §5.1) wrapping known secrets; `key-v1` is the
//!   original key of `repo-v1` and is never regenerated.
//!
//! Regenerate (only for a deliberate format change, with a FORMAT.md
//! version log entry): `CAIRN_REGENERATE_VECTORS=1 cargo test --test vectors`.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use cairn::chunker::Chunker;
use cairn::crypto::{IdKey, KdfParams, Secret32};
use cairn::format::config::ChunkerParams;
use cairn::format::keyfile::KeyFile;
use cairn::repo::{key_file_info, make_key_file, unwrap_key_file};
use common::*;

const GOLDEN_PASSWORD: &str = "cairn-golden-vectors";

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn regenerate() -> bool {
    std::env::var_os("CAIRN_REGENERATE_VECTORS").is_some()
}

fn chunk_vectors() -> serde_json::Value {
    let key = IdKey::new(Secret32::from_bytes(*b"cairn golden vector id key 32 b!"));
    let mut cases = Vec::new();
    for (label, params, len, seed) in [
        (
            "default sizes",
            ChunkerParams::with_seed(0x0123_4567_89ab_cdef),
            24usize << 20,
            1u64,
        ),
        (
            "small sizes",
            ChunkerParams {
                min_len: 2048,
                avg_len: 8192,
                max_len: 65536,
                gear_seed: 0xfeed_f00d,
            },
            1 << 20,
            2,
        ),
    ] {
        let data = random_bytes(len, seed);
        let cuts: Vec<serde_json::Value> = Chunker::new(params)
            .cuts(&data)
            .map(|c| {
                serde_json::json!([
                    c.offset,
                    c.len,
                    key.blob_id(&data[c.offset..c.offset + c.len]).to_hex()
                ])
            })
            .collect();
        cases.push(serde_json::json!({
            "label": label,
            "data": format!("tests/common random_bytes(len = {len}, seed = {seed})"),
            "min_len": params.min_len, "avg_len": params.avg_len, "max_len": params.max_len,
            "gear_seed": params.gear_seed,
            "cuts (offset, length, blob id)": cuts,
        }));
    }
    serde_json::json!({
        "id_key": "ASCII \"cairn golden vector id key 32 b!\"",
        "cases": cases,
    })
}

#[test]
fn chunk_cut_points_and_ids_match_the_vectors() {
    let path = vectors().join("chunks.json");
    let now = chunk_vectors();
    if regenerate() {
        fs::write(&path, serde_json::to_string_pretty(&now).unwrap() + "\n").unwrap();
        return;
    }
    let golden: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        now, golden,
        "chunking or blob IDs changed; if deliberate, see tests/vectors/README.md"
    );
}

fn chunk_list_vectors() -> serde_json::Value {
    use cairn::format::chunklist;
    use cairn::format::tree::{FileContent, Node, NodeKind, Tree};
    let key = IdKey::new(Secret32::from_bytes(*b"cairn golden vector id key 32 b!"));
    let mut cases = Vec::new();
    for (label, n, full_bytes_below) in [("one level", 200u64, 0u8), ("two levels", 3000, 1)] {
        let ids: Vec<_> = (0..n).map(|i| key.blob_id(&i.to_le_bytes())).collect();
        let mut lists = Vec::new();
        let content = chunklist::build(ids, &mut |b| {
            let id = key.blob_id(b);
            let level = b[1];
            let mut v = serde_json::json!({ "level": level, "id": id.to_hex(), "len": b.len() });
            if level >= full_bytes_below {
                v["bytes"] = hex::encode(b).into();
            }
            lists.push(v);
            Ok(id)
        })
        .unwrap();
        let FileContent::Tree { height, top } = &content else {
            panic!("{label}: not a tree")
        };
        let (height, top) = (*height, top.iter().map(|i| i.to_hex()).collect::<Vec<_>>());
        let mut node = Node::new("db", NodeKind::File { content });
        node.mode = 0o600;
        node.size = n * 4096;
        node.mtime.sec = 1_790_000_000;
        node.ctime.sec = 1_790_000_000;
        let tree = Tree { nodes: vec![node] }.to_bytes().unwrap();
        cases.push(serde_json::json!({
            "label": label,
            "data blob ids": format!("keyed BLAKE3 of the u64 i, little-endian, for i in 0..{n}"),
            "id-list blobs (in the order written)": lists,
            "height": height,
            "top": top,
            "tree node holding the entry": hex::encode(&tree),
            "tree node id": key.blob_id(&tree).to_hex(),
        }));
    }
    serde_json::json!({
        "id_key": "ASCII \"cairn golden vector id key 32 b!\"",
        "rule": "FORMAT.md §5.8: inline up to 64 IDs; cut after an ID once a list holds 4 when u32le(id[0..4]) & 15 == 0, or at 256",
        "cases": cases,
    })
}

#[test]
fn chunk_list_trees_match_the_vectors() {
    let path = vectors().join("chunklist.json");
    let now = chunk_list_vectors();
    if regenerate() {
        fs::write(&path, serde_json::to_string_pretty(&now).unwrap() + "\n").unwrap();
        return;
    }
    let golden: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        now, golden,
        "chunk-list trees changed; if deliberate, see tests/vectors/README.md"
    );
    // The committed bytes decode to what they claim, and hash to their IDs.
    let key = IdKey::new(Secret32::from_bytes(*b"cairn golden vector id key 32 b!"));
    for case in golden["cases"].as_array().unwrap() {
        for l in case["id-list blobs (in the order written)"]
            .as_array()
            .unwrap()
        {
            if let Some(b) = l["bytes"].as_str() {
                let b = hex::decode(b).unwrap();
                assert_eq!(key.blob_id(&b).to_hex(), l["id"].as_str().unwrap());
                let list = cairn::format::chunklist::IdList::from_bytes(&b).unwrap();
                assert_eq!(u64::from(list.level), l["level"].as_u64().unwrap());
            }
        }
        let t = hex::decode(case["tree node holding the entry"].as_str().unwrap()).unwrap();
        cairn::format::tree::Tree::from_bytes(&t).unwrap();
    }
}

/// The deterministic tree stored in the golden repository.
fn golden_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/empty-dir")).unwrap();
    fs::write(root.join("hello.txt"), "hello from format version 1\n").unwrap();
    fs::write(root.join("sub/data.bin"), random_bytes(40_000, 42)).unwrap();
    fs::write(root.join("sub/text"), "compressible line\n".repeat(500)).unwrap();
    fs::write(root.join("sub/empty"), "").unwrap();
    symlink("hello.txt", root.join("link")).unwrap();
    fs::set_permissions(root.join("sub/data.bin"), fs::Permissions::from_mode(0o640)).unwrap();
    for (i, p) in walk(root).iter().rev().enumerate() {
        if fs::symlink_metadata(p).unwrap().file_type().is_symlink() {
            continue;
        }
        let t = std::time::SystemTime::UNIX_EPOCH
            + std::time::Duration::new(1_790_000_000 + i as u64, 5_000 + i as u32);
        fs::File::open(p)
            .unwrap()
            .set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
            .unwrap();
    }
}

#[test]
fn the_committed_v1_repository_still_opens_and_restores() {
    let golden_repo = vectors().join("repo-v1");
    let env = Env::uninit();
    let expected = env.path("golden-src");
    golden_tree(&expected);
    if regenerate() {
        let _ = fs::remove_dir_all(&golden_repo);
        let e = Env {
            dir: tempfile::tempdir().unwrap(),
            repo: golden_repo.clone(),
        };
        for args in [vec!["init"], vec!["backup", expected.to_str().unwrap()]] {
            let out = e
                .cmd()
                .env("CAIRN_PASSWORD", GOLDEN_PASSWORD)
                .args(&args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Empty fan-out directories are not tracked by git; readers must not need them.
        for d in walk(&golden_repo.join("data")) {
            if d.is_dir() && fs::read_dir(&d).unwrap().next().is_none() {
                fs::remove_dir(&d).unwrap();
            }
        }
        return;
    }
    // Work on a copy: the vectors stay read-only.
    let repo = env.path("repo");
    copy_dir(&golden_repo, &repo);
    let e = Env {
        dir: tempfile::tempdir().unwrap(),
        repo,
    };
    let run = |args: &[&str]| {
        let out = e
            .cmd()
            .env("CAIRN_PASSWORD", GOLDEN_PASSWORD)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cairn {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let snaps: serde_json::Value = serde_json::from_str(&run(&["snapshots", "--json"])).unwrap();
    let source = snaps[0]["paths"][0].as_str().unwrap().to_string();
    let target = env.path("restored");
    run(&[
        "restore",
        &format!("latest:{source}"),
        "--target",
        target.to_str().unwrap(),
    ]);
    // Content, modes, mtimes and link targets (owners differ by machine).
    for p in walk(&expected) {
        let rel = p.strip_prefix(&expected).unwrap();
        let q = target.join(rel);
        let (a, b) = (
            fs::symlink_metadata(&p).unwrap(),
            fs::symlink_metadata(&q).unwrap(),
        );
        assert_eq!(a.file_type(), b.file_type(), "{}", rel.display());
        if a.is_file() {
            assert_eq!(
                fs::read(&p).unwrap(),
                fs::read(&q).unwrap(),
                "{}",
                rel.display()
            );
        }
        if a.file_type().is_symlink() {
            assert_eq!(fs::read_link(&p).unwrap(), fs::read_link(&q).unwrap());
        } else {
            assert_eq!(a.mode() & 0o7777, b.mode() & 0o7777, "{}", rel.display());
            assert_eq!(
                (a.mtime(), a.mtime_nsec()),
                (b.mtime(), b.mtime_nsec()),
                "{}",
                rel.display()
            );
        }
    }
    assert_eq!(walk(&expected).len(), walk(&target).len());
    // Its key file (version 1 until regenerated) is listed with its maker.
    let keys: serde_json::Value = serde_json::from_str(&run(&["key", "list", "--json"])).unwrap();
    assert!(keys[0]["hostname"].is_string(), "{keys}");
    // The wrong passphrase is still refused with exit 12.
    let out = e
        .cmd()
        .env("CAIRN_PASSWORD", "wrong")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12));
}

/// The master secret wrapped in `key-v2`.
const GOLDEN_MASTER: &[u8; 32] = b"cairn golden vector master key!!";

#[test]
fn the_committed_key_files_of_both_versions_still_open() {
    let v2 = vectors().join("key-v2");
    let v2_info = vectors().join("key-v2.json");
    let master = Secret32::from_bytes(*GOLDEN_MASTER);
    if regenerate() {
        let kf = make_key_file(
            &master,
            GOLDEN_PASSWORD.as_bytes(),
            KdfParams::INSECURE_TEST,
        )
        .unwrap();
        let info = key_file_info(&kf, &master).unwrap();
        fs::write(&v2, kf.to_bytes().unwrap()).unwrap();
        let json = serde_json::json!({
            "master": "ASCII \"cairn golden vector master key!!\"",
            "created": info.created, "hostname": info.hostname, "username": info.username,
        });
        fs::write(
            &v2_info,
            serde_json::to_string_pretty(&json).unwrap() + "\n",
        )
        .unwrap();
        return;
    }
    let kf = KeyFile::from_bytes(&fs::read(&v2).unwrap()).unwrap();
    assert_eq!(kf.version(), 2);
    let m = unwrap_key_file(&kf, GOLDEN_PASSWORD.as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(m.expose(), GOLDEN_MASTER);
    assert!(unwrap_key_file(&kf, b"wrong").unwrap().is_none());
    let info = key_file_info(&kf, &m).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&v2_info).unwrap()).unwrap();
    assert_eq!(info.created, want["created"].as_i64().unwrap());
    assert_eq!(info.hostname, want["hostname"].as_str().unwrap());
    assert_eq!(info.username, want["username"].as_str().unwrap());
    // Another master secret cannot read the information.
    assert!(key_file_info(&kf, &Secret32::random()).is_err());

    // The original key of repo-v1: host and user in clear text.
    let kf = KeyFile::from_bytes(&fs::read(vectors().join("key-v1")).unwrap()).unwrap();
    assert_eq!(kf.version(), 1);
    let m = unwrap_key_file(&kf, GOLDEN_PASSWORD.as_bytes())
        .unwrap()
        .unwrap();
    let info = key_file_info(&kf, &m).unwrap();
    assert_eq!(
        (info.hostname.as_str(), info.username.as_str()),
        ("vm", "uid 0")
    );
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// FORMAT.md §4.4 states the gear table (MD5-derived, checked here by its
/// BLAKE3 digest; `tests/vectors/reader.py` derives it from MD5), how the
/// seed keys it — the shifted table is `(GEAR[b] ^ k) << 1`, so it is XORed
/// with `k << 1`, not `k` — the first keyed entries for one seed, and the
/// mask table and choice. The chunker must use exactly these.
#[test]
fn the_gear_table_its_keying_and_the_masks_are_what_format_md_states() {
    use fastcdc::v2020::{MASKS, Normalization, get_gear_with_seed, select_masks};
    let (gear, gear_ls) = get_gear_with_seed(0);
    let le: Vec<u8> = gear.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(
        blake3::hash(&le).to_hex().as_str(),
        "9af822d1e10df25d0157a43ccd0a73b56d1c1d0a5d77acb4e6e979522d0fe149"
    );
    assert_eq!(
        (gear[0], gear[1], gear[255]),
        (0x3b5d3c7d207e37dc, 0x784d68ba91123086, 0xaabd2b2a451504e1)
    );
    let seed = 0x0123_4567_89ab_cdef_u64;
    let (g, gs) = get_gear_with_seed(seed);
    for b in 0..256 {
        assert_eq!(gear_ls[b], gear[b] << 1, "unkeyed GS[{b}]");
        assert_eq!(g[b], gear[b] ^ seed, "G[{b}]");
        assert_eq!(gs[b], (gear[b] ^ seed) << 1, "GS[{b}]");
        assert_eq!(gs[b], gear_ls[b] ^ (seed << 1), "GS[{b}]");
    }
    assert_eq!(
        (g[0], gs[0], g[1], gs[1]),
        (
            0x3a7e791aa9d5fa33,
            0x74fcf23553abf466,
            0x796e2ddd18b9fd69,
            0xf2dc5bba3173fad2
        )
    );
    // The table in FORMAT.md, by round(log2(size)).
    let doc: [(usize, u64); 19] = [
        (6, 0x0000000001803110),
        (7, 0x0000000018035100),
        (8, 0x0000001800035300),
        (9, 0x0000019000353000),
        (10, 0x0000590003530000),
        (11, 0x0000d90003530000),
        (12, 0x0000d90103530000),
        (13, 0x0000d90303530000),
        (14, 0x0000d90313530000),
        (15, 0x0000d90f03530000),
        (16, 0x0000d90303537000),
        (17, 0x0000d90703537000),
        (18, 0x0000d90707537000),
        (19, 0x0000d91707537000),
        (20, 0x0000d91747537000),
        (21, 0x0000d91767537000),
        (22, 0x0000d93767537000),
        (23, 0x0000d93777537000),
        (24, 0x0000d93777577000),
    ];
    for (bits, mask) in doc {
        assert_eq!(MASKS[bits], mask, "MASK[{bits}]");
    }
    // Strict mask one step up, loose one step down (level 1), with
    // round(log2(avg)): 1 MiB → 20, 1.4 MiB → 20, 1.5 MiB → 21.
    for (avg, bits) in [
        (1usize << 20, 20),
        (1_468_006, 20),
        (1_572_864, 21),
        (256, 8),
    ] {
        assert_eq!(
            select_masks(avg, Normalization::Level1),
            (MASKS[bits + 1], MASKS[bits - 1]),
            "avg {avg}"
        );
    }
}

/// FORMAT.md §4.1: a password file's bytes lose their trailing CR and LF
/// bytes and nothing else, the environment variable is taken byte for
/// byte, and Argon2id (K and X empty, 32-byte tag) of the result is the
/// wrapping key itself. `kdf.json` was computed with the reference C
/// Argon2 (Python `argon2-cffi`), independently of the Rust crate.
#[test]
fn a_password_file_becomes_the_wrapping_key_format_md_states() {
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(vectors().join("kdf.json")).unwrap()).unwrap();
    let hex = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
    let num = |k: &str| u32::try_from(v[k].as_u64().unwrap()).unwrap();
    let file = hex("password_file_hex");
    assert!(file.ends_with(b"\r\n\n"), "the vector tests the trimming");
    let key = cairn::crypto::derive_wrapping_key(
        v["passphrase"].as_str().unwrap().as_bytes(),
        &hex("salt_hex"),
        KdfParams {
            memory_kib: num("memory_kib"),
            iterations: num("iterations"),
            parallelism: num("parallelism"),
        },
    )
    .unwrap();
    assert_eq!(key.expose().as_slice(), hex("wrapping_key_hex").as_slice());

    // The binary reads the same file as that passphrase: it opens the
    // golden repository (passphrase `cairn-golden-vectors`, as in kdf.json).
    assert_eq!(v["passphrase"], GOLDEN_PASSWORD);
    let env = Env::uninit();
    let repo = env.path("repo");
    copy_dir(&vectors().join("repo-v1"), &repo);
    let e = Env {
        dir: tempfile::tempdir().unwrap(),
        repo,
    };
    let pw = env.path("pass");
    let with_file = |bytes: &[u8]| {
        fs::write(&pw, bytes).unwrap();
        fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).unwrap();
        e.cmd()
            .env_remove("CAIRN_PASSWORD")
            .arg("--password-file")
            .arg(&pw)
            .arg("snapshots")
            .output()
            .unwrap()
    };
    let out = with_file(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for bad in [
        &b"cairn-golden-vectors \n"[..],
        b"cairn-golden-vectors\t",
        b"\xef\xbb\xbfcairn-golden-vectors\n",
    ] {
        assert_eq!(with_file(bad).status.code(), Some(12), "{bad:?}");
    }
    // CAIRN_PASSWORD is not trimmed.
    let out = e
        .cmd()
        .env("CAIRN_PASSWORD", "cairn-golden-vectors\n")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12));
}
