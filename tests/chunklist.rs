//! Chunk-list trees (FORMAT.md §5.8): long chunk lists are stored as trees
//! of ID-list blobs; every reader follows them; a database capture's
//! metadata grows with its changes, not with its size; hostile trees are
//! refused with a clear error.

mod common;

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use cairn::backend::local::LocalBackend;
use cairn::crypto::KdfParams;
use cairn::format::chunklist::{self, IdList};
use cairn::format::config::ChunkerParams;
use cairn::format::snapshot::{Snapshot, Summary};
use cairn::format::tree::{FileContent, Node, NodeKind, Tree};
use cairn::format::{BlobType, Compression, aad};
use cairn::id::{BlobId, SnapshotId};
use cairn::repo::packer::{Packer, PackerOptions, SealedBlob};
use cairn::repo::{InitOptions, Repository};
use common::*;
use rusqlite::Connection;

/// The repository, opened in-process with its index loaded.
fn open(env: &Env) -> Repository {
    let backend = Arc::new(LocalBackend::new(&env.repo));
    let mut repo = Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    repo.load_index().unwrap();
    repo
}

/// A repository with tiny chunks (64 / 256 / 1024 bytes), so a few MB make
/// thousands of data blobs and a two-level chunk-list tree.
fn env_small_chunks() -> Env {
    let env = Env::uninit();
    let opts = InitOptions {
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        chunker: Some(ChunkerParams {
            min_len: 64,
            avg_len: 256,
            max_len: 1024,
            gear_seed: 7,
        }),
        ..InitOptions::default()
    };
    Repository::init(
        Arc::new(LocalBackend::new(&env.repo)),
        PASSWORD.as_bytes(),
        &opts,
    )
    .unwrap();
    env
}

fn latest(env: &Env) -> (SnapshotId, Snapshot) {
    open(env).find_snapshot("latest").unwrap()
}

/// The entry of the file named `name` in the latest snapshot.
fn entry(env: &Env, name: &str) -> Node {
    let repo = open(env);
    let (_, s) = repo.find_snapshot("latest").unwrap();
    let mut found = None;
    cairn::ops::walk::walk(&repo, &s.tree, b"", &mut |_, n| {
        if n.name == name.as_bytes() {
            found = Some(n.clone());
        }
        Ok(())
    })
    .unwrap();
    found.unwrap_or_else(|| panic!("{name} not in the latest snapshot"))
}

/// Every ID-list blob of `content`, read through the repository.
fn list_blobs(repo: &Repository, content: &FileContent) -> HashSet<BlobId> {
    let mut out = HashSet::new();
    cairn::repo::chunklist::walk(repo, content, &mut |t, id| {
        Ok(t == BlobType::Tree && out.insert(*id))
    })
    .unwrap();
    out
}

/// Sum of the plaintext lengths of the tree blobs in the index (directory
/// nodes and ID-list blobs): a repository's metadata bytes.
fn tree_bytes(repo: &Repository) -> u64 {
    repo.index()
        .iter(BlobType::Tree)
        .map(|(_, loc)| u64::from(loc.raw_len))
        .sum()
}

fn check_clean(env: &Env) {
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check --read-data: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn restore_to(env: &Env, snap: &str, target: &Path) {
    env.ok(&["restore", snap, "--target", target.to_str().unwrap()]);
}

#[test]
fn a_big_file_round_trips_byte_for_byte_through_a_two_level_tree() {
    let env = env_small_chunks();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big"), random_bytes(3 << 20, 1)).unwrap();
    fs::write(src.join("small"), random_bytes(3000, 2)).unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    env.backup_json(&[&src], &[]);

    let big = entry(&env, "big");
    let NodeKind::File {
        content: FileContent::Tree { height, top },
    } = &big.kind
    else {
        panic!(
            "a 3 MiB file of 256-byte chunks must be a tree: {:?}",
            big.kind
        )
    };
    assert_eq!(
        *height, 2,
        "~10 000 chunks, ~500 leaves, ~30 lists above them"
    );
    assert!(top.len() <= chunklist::MAX_INLINE_IDS);
    // `cat list` shows an ID-list blob: the top list names level 1.
    let l: serde_json::Value =
        serde_json::from_str(&env.ok(&["cat", "list", &top[0].to_hex()])).unwrap();
    assert_eq!(l["level"], 1);
    assert!(!l["ids"].as_array().unwrap().is_empty());
    let NodeKind::File {
        content: FileContent::Inline(ids),
    } = &entry(&env, "small").kind
    else {
        panic!("a short list stays inline")
    };
    assert!(!ids.is_empty() && ids.len() <= chunklist::MAX_INLINE_IDS);

    let target = env.path("restored");
    restore_to(&env, "latest", &target);
    assert_same_tree(&src, &restored(&target, &src));
    check_clean(&env);

    // dump streams the same bytes; ls reports the entry's size.
    let out = env
        .cmd()
        .args(["dump", "latest", src.join("big").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, fs::read(src.join("big")).unwrap());

    // One byte changed in the middle: diff reports the file, restore and
    // check still hold, and the new snapshot rewrote few list blobs.
    let repo = open(&env);
    let before = list_blobs(
        &repo,
        match &big.kind {
            NodeKind::File { content } => content,
            _ => unreachable!(),
        },
    );
    let (first, _) = latest(&env);
    let mut data = fs::read(src.join("big")).unwrap();
    data[1 << 20] ^= 0xff;
    fs::write(src.join("big"), &data).unwrap();
    env.backup_json(&[&src], &[]);
    let repo = open(&env);
    let after = match &entry(&env, "big").kind {
        NodeKind::File { content } => list_blobs(&repo, content),
        _ => unreachable!(),
    };
    let new = after.difference(&before).count();
    assert!(
        (1..=4).contains(&new),
        "one changed chunk rewrites a leaf and its parent, not {new} of {} list blobs",
        after.len()
    );
    let diff = env.ok(&["diff", &first.to_hex(), "latest"]);
    assert!(diff.contains("big"), "{diff}");
    assert!(!diff.contains("small"), "{diff}");
    let target = env.path("restored2");
    restore_to(&env, "latest", &target);
    assert_same_tree(&src, &restored(&target, &src));
    check_clean(&env);
}

/// A WAL-mode database of `rows` rows of ~1 KiB in 4 KiB pages.
fn make_db(path: &Path, rows: u64) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE items(id INTEGER PRIMARY KEY, body BLOB);",
    )
    .unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..rows {
        tx.execute(
            "INSERT INTO items(body) VALUES (?1)",
            [random_bytes(1000, i)],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
}

/// Rewrite every `step`-th row (scattered page changes).
fn touch_rows(path: &Path, rows: u64, step: u64) {
    let c = Connection::open(path).unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in (1..=rows).step_by(step as usize) {
        tx.execute(
            "UPDATE items SET body = ?1 WHERE id = ?2",
            rusqlite::params![random_bytes(1000, 1_000_000 + i), i as i64],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
}

fn repo_bytes(env: &Env) -> u64 {
    ["data", "index", "snapshots"]
        .iter()
        .map(|d| dir_bytes(&env.repo.join(d)))
        .sum()
}

/// The structural property at small scale: a 20 MB database with
/// 1% of its pages changed stores far less metadata than its whole chunk
/// list, and an unchanged rerun adds only a few KB.
#[test]
fn a_database_capture_grows_with_its_changes_not_with_its_size() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir_all(&src).unwrap();
    let db = src.join("vault.sqlite3");
    let rows = 18_000;
    make_db(&db, rows);
    env.backup_json(&[&src], &[]);
    let node = entry(&env, "vault.sqlite3");
    let pages = node.size / 4096;
    assert!(pages > 4000, "{pages} pages");
    let NodeKind::File {
        content: content @ FileContent::Tree { .. },
    } = &node.kind
    else {
        panic!("a {pages}-page capture must be a tree")
    };
    let whole_list = 32 * pages;
    {
        let repo = open(&env);
        let n = cairn::repo::chunklist::data_ids(&repo, content, u64::MAX)
            .unwrap()
            .len() as u64;
        assert_eq!(n, pages, "one data blob per page");
    }

    // Unchanged: the database is not even opened; a few KB at most (the
    // snapshot and nothing else).
    let before = repo_bytes(&env);
    let s = env.backup_json(&[&src], &[]);
    let grown = repo_bytes(&env) - before;
    assert!(grown < 4096, "an unchanged rerun added {grown} bytes ({s})");

    // 1% of the pages: 4 rows a page, so every 400th row.
    touch_rows(&db, rows, 400);
    let repo = open(&env);
    let meta_before = tree_bytes(&repo);
    drop(repo);
    let before = repo_bytes(&env);
    env.backup_json(&[&src], &[]);
    let repo = open(&env);
    let new_meta = tree_bytes(&repo) - meta_before;
    let changed = {
        let before = cairn::repo::chunklist::data_ids(&repo, content, u64::MAX).unwrap();
        let node = entry(&env, "vault.sqlite3");
        let NodeKind::File { content: after } = &node.kind else {
            unreachable!()
        };
        let after = cairn::repo::chunklist::data_ids(&repo, after, u64::MAX).unwrap();
        before
            .iter()
            .zip(after.iter())
            .filter(|(a, b)| a != b)
            .count()
    };
    let grown = repo_bytes(&env) - before;
    eprintln!(
        "{pages} pages, list {whole_list} B: {changed} pages changed added {new_meta} B of \
         metadata, {grown} B in all"
    );
    // Each changed page rewrites the leaf list blob holding it (a random
    // page falls in a longer than average leaf: ~30 IDs, 1 KB) and shares
    // the level above (12 lists of ~19 IDs here) with the others.
    assert!((40..=60).contains(&changed), "{changed} pages changed");
    assert!(
        new_meta < 1300 * changed as u64 + 16_384 && new_meta * 2 < whole_list,
        "new metadata {new_meta} B for {changed} changed pages is not far below the whole \
         list's {whole_list} B"
    );
    let target = env.path("restored");
    restore_to(&env, "latest", &target);
    let c = Connection::open(restored(&target, &db)).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let body: Vec<u8> = c
        .query_row("SELECT body FROM items WHERE id = 401", [], |r| r.get(0))
        .unwrap();
    assert_eq!(body, random_bytes(1000, 1_000_000 + 401));
    check_clean(&env);
}

#[test]
fn prune_keeps_the_list_blobs_of_live_snapshots_and_removes_forgotten_ones() {
    let env = env_small_chunks();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big"), random_bytes(1 << 20, 10)).unwrap();
    env.backup_json(&[&src], &[]);
    let (old_id, _) = latest(&env);
    let old = match &entry(&env, "big").kind {
        NodeKind::File { content } => list_blobs(&open(&env), content),
        _ => unreachable!(),
    };
    fs::write(src.join("big"), random_bytes(1 << 20, 11)).unwrap();
    env.backup_json(&[&src], &[]);
    let live = match &entry(&env, "big").kind {
        NodeKind::File { content } => list_blobs(&open(&env), content),
        _ => unreachable!(),
    };
    assert!(!old.is_empty() && !live.is_empty());
    assert!(old.is_disjoint(&live));

    env.ok(&["forget", &old_id.to_hex()]);
    age_past_prune_grace(&env.repo);
    env.ok(&["prune"]);
    let repo = open(&env);
    for id in &live {
        assert!(
            repo.index().contains(BlobType::Tree, id),
            "live list blob {id:?} pruned"
        );
    }
    for id in &old {
        assert!(
            !repo.index().contains(BlobType::Tree, id),
            "forgotten list blob {id:?} kept"
        );
    }
    check_clean(&env);
    let target = env.path("restored");
    restore_to(&env, "latest", &target);
    assert_same_tree(&src, &restored(&target, &src));
}

#[test]
fn copy_rebuilds_the_tree_in_a_second_repository_which_restores() {
    let home = env_small_chunks();
    let src = home.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big"), random_bytes(2 << 20, 20)).unwrap();
    home.backup_json(&[&src], &[]);

    let offsite = Env::new();
    let out = offsite
        .cmd()
        .env("CAIRN_FROM_PASSWORD", PASSWORD)
        .args(["copy", "--from-repo", home.repo.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let NodeKind::File {
        content: content @ FileContent::Tree { .. },
    } = &entry(&offsite, "big").kind
    else {
        panic!("the copy keeps the tree form")
    };
    // Rebuilt under the destination's ID key: none of the source's list
    // blob IDs.
    let theirs = list_blobs(&open(&offsite), content);
    let ours = match &entry(&home, "big").kind {
        NodeKind::File { content } => list_blobs(&open(&home), content),
        _ => unreachable!(),
    };
    assert!(!theirs.is_empty() && theirs.is_disjoint(&ours));
    check_clean(&offsite);
    let target = offsite.path("restored");
    restore_to(&offsite, "latest", &target);
    assert_same_tree(&src, &restored(&target, &src));
}

/// Stores crafted blobs and snapshots (unvalidated) in a repository.
struct Crafter {
    repo: Repository,
}

impl Crafter {
    fn new(env: &Env) -> Crafter {
        Crafter { repo: open(env) }
    }

    /// Store `data` as a blob of type `t` under `id` (its hash unless given).
    fn put(&self, t: BlobType, data: &[u8], id: Option<BlobId>) -> BlobId {
        let id = id.unwrap_or_else(|| self.repo.id_key().blob_id(data));
        let packer = Packer::new(
            self.repo.backend().clone(),
            self.repo.seal_key().clone(),
            PackerOptions::new(1 << 20),
        );
        let sealed = self
            .repo
            .seal_key()
            .seal(&aad::blob(t, Compression::None, &id), data);
        packer
            .add(SealedBlob {
                blob_type: t,
                id,
                compression: Compression::None,
                raw_len: data.len() as u32,
                sealed,
            })
            .unwrap();
        packer.finish(&**self.repo.backend()).unwrap();
        id
    }

    fn list(&self, level: u8, ids: &[BlobId]) -> BlobId {
        let bytes = chunklist::list_to_bytes_unchecked(level, ids).unwrap();
        self.put(BlobType::Tree, &bytes, None)
    }

    /// A snapshot of `/f`, a file of `size` bytes with `content`.
    fn snapshot(&self, content: FileContent, size: u64) -> String {
        let mut n = Node::new("f", NodeKind::File { content });
        n.size = size;
        let root = Tree { nodes: vec![n] }.to_bytes_unchecked().unwrap();
        let root = self.put(BlobType::Tree, &root, None);
        let s = Snapshot {
            time_ns: 1_800_000_000_000_000_000,
            utc_offset_s: 0,
            tree: root,
            parent: None,
            hostname: "attacker".into(),
            username: "mallory".into(),
            paths: vec![b"/".to_vec()],
            tags: vec![],
            program_version: "crafted".into(),
            summary: Summary::default(),
            extensions: vec![],
        };
        self.repo.save_snapshot(&s).unwrap().to_hex()
    }
}

/// Restore and check both refuse `snap` with an error containing `needle`.
fn refused(env: &Env, snap: &str, needle: &str) {
    let target = env.path(&format!("t-{snap}"));
    let out = env.run(&["restore", snap, "--target", target.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "restore must fail");
    assert!(err.contains(needle), "restore should say {needle:?}: {err}");
    assert!(!target.join("f").exists() || fs::read(target.join("f")).unwrap().len() < 64);
    let out = env.run(&["check"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "check must fail: {text}");
    assert!(text.contains(needle), "check should say {needle:?}: {text}");
}

#[test]
fn hostile_chunk_list_trees_are_refused_with_a_clear_error() {
    // Each case in its own repository, so check sees one problem.
    let data = b"sixteen bytes!!!";

    // A list blob whose level is not one below its parent's: an entry of
    // height 2 whose top names a level-0 list (the same shape as a list
    // naming itself or an ancestor, which hashing alone makes impossible).
    let env = Env::new();
    let c = Crafter::new(&env);
    let d = c.put(BlobType::Data, data, None);
    let leaf = c.list(0, &[d]);
    let snap = c.snapshot(
        FileContent::Tree {
            height: 2,
            top: vec![leaf],
        },
        16,
    );
    refused(&env, &snap, "level 0 where its parent needs level 1");

    // A depth bomb: a tree that names one list 256 times per level claims
    // 256^3 data blobs for a 16-byte file; readers stop at the size.
    let env = Env::new();
    let c = Crafter::new(&env);
    let d = c.put(BlobType::Data, data, None);
    let mut id = c.list(0, &vec![d; 256]);
    for level in 1..3 {
        id = c.list(level, &vec![id; 256]);
    }
    let snap = c.snapshot(
        FileContent::Tree {
            height: 3,
            top: vec![id; 256],
        },
        16,
    );
    refused(&env, &snap, "more than its size allows");

    // A list blob stored under an ID that is not its hash.
    let env = Env::new();
    let c = Crafter::new(&env);
    let d = c.put(BlobType::Data, data, None);
    let bytes = chunklist::list_to_bytes(0, &[d]).unwrap();
    let wrong = BlobId([7; 32]);
    c.put(BlobType::Tree, &bytes, Some(wrong));
    let snap = c.snapshot(
        FileContent::Tree {
            height: 1,
            top: vec![wrong],
        },
        16,
    );
    refused(&env, &snap, "does not hash to its ID");

    // A directory node where a list blob belongs.
    let env = Env::new();
    let c = Crafter::new(&env);
    let dir = c.put(BlobType::Tree, &Tree::default().to_bytes().unwrap(), None);
    let snap = c.snapshot(
        FileContent::Tree {
            height: 1,
            top: vec![dir],
        },
        16,
    );
    refused(&env, &snap, "not an ID-list blob");
}

#[test]
fn an_entry_of_too_great_a_height_does_not_decode() {
    let mut n = Node::new(
        "f",
        NodeKind::File {
            content: FileContent::Tree {
                height: chunklist::MAX_HEIGHT + 1,
                top: vec![BlobId([1; 32])],
            },
        },
    );
    n.size = 1;
    let bytes = Tree {
        nodes: vec![n.clone()],
    }
    .to_bytes_unchecked()
    .unwrap();
    let e = Tree::from_bytes(&bytes).unwrap_err().to_string();
    assert!(e.contains("height 17"), "{e}");
    n.kind = NodeKind::File {
        content: FileContent::Tree {
            height: 1,
            top: vec![],
        },
    };
    let bytes = Tree { nodes: vec![n] }.to_bytes_unchecked().unwrap();
    assert!(Tree::from_bytes(&bytes).is_err());
    assert!(IdList::from_bytes(&[0xC1, 0, 0, 0]).is_err());
}

#[test]
fn an_old_form_entry_of_many_chunks_still_restores() {
    // Before chunk-list trees every list was inline (kind 1), however long.
    let env = Env::new();
    let c = Crafter::new(&env);
    let mut ids = Vec::new();
    let mut expected = Vec::new();
    for i in 0..100u64 {
        let chunk = random_bytes(100, 500 + i);
        ids.push(c.put(BlobType::Data, &chunk, None));
        expected.extend_from_slice(&chunk);
    }
    let snap = c.snapshot(FileContent::Inline(ids), expected.len() as u64);
    let target = env.path("restored");
    restore_to(&env, &snap, &target);
    assert_eq!(fs::read(target.join("f")).unwrap(), expected);
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
