//! A blob's content always hashes to its ID: a file rewritten while it is
//! backed up never stores a blob under the ID of other bytes (the bytes
//! hashed are the bytes sealed), such a file is reported as changed, and a
//! blob whose stored content does not hash to its ID (written by a faulty
//! backup) makes restore and dump fail, naming the blob and the files.

mod common;

use std::fs;
use std::io::Write;
use std::sync::Arc;

use cairn::backend::local::LocalBackend;
use cairn::format::snapshot::{Snapshot, Summary};
use cairn::format::tree::{Node, NodeKind, Tree};
use cairn::format::{BlobType, Compression, aad};
use cairn::id::BlobId;
use cairn::repo::Repository;
use cairn::repo::packer::{Packer, PackerOptions, SealedBlob};
use common::*;

#[test]
fn a_file_rewritten_while_it_is_backed_up_stores_blobs_that_hash_to_their_ids() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let big = src.join("big.bin");
    // Larger than one read window (32 MiB), so part of it is read after
    // the rewrite.
    let original = random_bytes(40 << 20, 1);
    fs::write(&big, &original).unwrap();

    // Stop once the first new blob is hashed, before it is compressed and
    // sealed; rewrite the whole file in place (same size) meanwhile.
    let mut child = env.spawn(
        &["backup", "--json", src.to_str().unwrap()],
        &[("FAILPOINTS", "backup::blob_hashed=1*return(stop)")],
    );
    wait_stopped(&mut child);
    let mut f = fs::OpenOptions::new().write(true).open(&big).unwrap();
    f.write_all(&random_bytes(40 << 20, 2)).unwrap();
    f.sync_all().unwrap();
    drop(f);
    resume(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);

    // Every stored blob hashes to its ID.
    env.ok(&["check", "--read-data"]);
    // The file is reported, and the backup exits 3.
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let changed = summary["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{summary}");
    assert_eq!(changed[0]["path"], big.to_str().unwrap());
    assert!(
        changed[0]["warning"]
            .as_str()
            .unwrap()
            .starts_with("changed while backed up"),
        "{summary}"
    );
    assert_eq!(summary["errors"].as_array().unwrap().len(), 0);

    // It restores (every blob passes its hash check on the way out).
    let target = env.path("r1");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        fs::metadata(restored(&target, &big)).unwrap().len(),
        40 << 20
    );

    // A later file with the content that was hashed deduplicates against
    // what was stored, and gets exactly its own bytes back.
    let later = env.path("later");
    fs::create_dir_all(&later).unwrap();
    fs::write(later.join("copy.bin"), &original).unwrap();
    env.ok(&["backup", later.to_str().unwrap()]);
    let target = env.path("r2");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(
        fs::read(restored(&target, &later.join("copy.bin"))).unwrap() == original,
        "the later file was restored with other content"
    );
    env.ok(&["check", "--read-data"]);
}

#[test]
fn a_file_changed_while_it_is_read_is_named_in_the_text_summary() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let small = src.join("log.txt");
    fs::write(&small, b"first line\n").unwrap();
    // Stop before the first new blob is sealed: the file is read already.
    let mut child = env.spawn(
        &["backup", src.to_str().unwrap()],
        &[("FAILPOINTS", "backup::blob_hashed=1*return(stop)")],
    );
    wait_stopped(&mut child);
    fs::OpenOptions::new()
        .append(true)
        .open(&small)
        .unwrap()
        .write_all(b"second line\n")
        .unwrap();
    resume(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stderr} {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(&format!(
            "warning: {}: changed while backed up (size 11 → 23 bytes",
            small.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 file changed while it was backed up"),
        "{stderr}"
    );
    // What was read is what was stored, soundly.
    env.ok(&["check", "--read-data"]);
    let target = env.path("r");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        fs::read(restored(&target, &small)).unwrap(),
        b"first line\n"
    );
}

/// Seal `stored` as a data blob under the ID of `claimed`, as a faulty
/// backup did when a file changed between hashing and sealing.
fn store_mislabelled(repo: &Repository, claimed: &[u8], stored: &[u8]) -> BlobId {
    let id = repo.id_key().blob_id(claimed);
    store_blobs(repo, &[(BlobType::Data, id, stored.to_vec())]);
    id
}

fn store_blobs(repo: &Repository, blobs: &[(BlobType, BlobId, Vec<u8>)]) {
    let packer = Packer::new(
        repo.backend().clone(),
        repo.seal_key().clone(),
        PackerOptions::new(1 << 20),
    );
    for (t, id, data) in blobs {
        let sealed = repo
            .seal_key()
            .seal(&aad::blob(*t, Compression::None, id), data);
        packer
            .add(SealedBlob {
                blob_type: *t,
                id: *id,
                compression: Compression::None,
                raw_len: data.len() as u32,
                sealed,
            })
            .unwrap();
    }
    packer.finish(&**repo.backend()).unwrap();
}

fn store(repo: &Repository, t: BlobType, data: &[u8]) -> BlobId {
    let id = repo.id_key().blob_id(data);
    store_blobs(repo, &[(t, id, data.to_vec())]);
    id
}

fn file(name: &str, content: Vec<BlobId>, size: u64) -> Node {
    let mut n = Node::new(
        name,
        NodeKind::File {
            content: content.into(),
        },
    );
    n.mode = 0o644;
    n.size = size;
    n
}

#[test]
fn a_blob_whose_content_does_not_hash_to_its_id_fails_restore_and_dump_naming_it() {
    let env = Env::new();
    let backend = Arc::new(LocalBackend::new(&env.repo));
    let mut repo = Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    repo.load_index().unwrap();
    let claimed = b"what the file held when it was hashed";
    let bad = store_mislabelled(&repo, claimed, b"what it held when it was sealed");
    let good = store(&repo, BlobType::Data, b"intact content");
    let mut tree = Tree {
        nodes: vec![
            file("good", vec![good], 14),
            file("one", vec![bad], claimed.len() as u64),
            file("two", vec![good, bad], 14 + claimed.len() as u64),
        ],
    };
    tree.sort();
    let root = store(&repo, BlobType::Tree, &tree.to_bytes().unwrap());
    let snap = repo
        .save_snapshot(&Snapshot {
            time_ns: 1_800_000_000_000_000_000,
            utc_offset_s: 0,
            tree: root,
            parent: None,
            hostname: "h".into(),
            username: "u".into(),
            paths: vec![b"/".to_vec()],
            tags: vec![],
            program_version: "test".into(),
            summary: Summary::default(),
            extensions: vec![],
        })
        .unwrap()
        .to_hex();

    // Restore: both files that use the blob fail, each named with the blob;
    // the intact file is restored.
    let target = env.path("target");
    let out = env.run(&["restore", &snap, "--target", target.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let hex = bad.to_hex();
    for name in ["/one", "/two"] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("error: {name}: "))
                    && l.contains(&format!("data blob {hex}"))
                    && l.contains("does not hash to its ID")),
            "{name} is reported with the blob: {err}"
        );
    }
    assert!(!err.contains("/good"), "{err}");
    assert_eq!(fs::read(target.join("good")).unwrap(), b"intact content");
    assert!(err.contains("2 entries could not be restored"), "{err}");

    // Dump: fails, naming the file and the blob.
    let out = env.run(&["dump", &snap, "/one"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot dump /one") && err.contains(&format!("data blob {hex}")),
        "{err}"
    );
    // `check --read-data` finds it too, and names the files.
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("content does not hash to its ID")
            && report.contains("/one (damaged")
            && report.contains("/two (damaged"),
        "{report}"
    );
}
