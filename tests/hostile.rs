//! Restore never writes outside its target, whatever a (crafted, hostile)
//! snapshot holds.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;

use cairn::backend::local::LocalBackend;
use cairn::format::snapshot::{Snapshot, Summary};
use cairn::format::tree::{Node, NodeKind, Tree};
use cairn::format::{BlobType, Compression, aad};
use cairn::id::BlobId;
use cairn::repo::Repository;
use cairn::repo::packer::{Packer, PackerOptions, SealedBlob};
use common::*;

/// Store raw blobs (unvalidated) and a snapshot whose root is `root`.
struct Crafter {
    repo: Repository,
}

impl Crafter {
    fn new(env: &Env) -> Crafter {
        let backend = Arc::new(LocalBackend::new(&env.repo));
        let mut repo = Repository::open(backend, PASSWORD.as_bytes()).unwrap();
        repo.load_index().unwrap();
        Crafter { repo }
    }

    fn store(&self, blobs: &[(BlobType, Vec<u8>)]) -> Vec<BlobId> {
        let packer = Packer::new(
            self.repo.backend().clone(),
            self.repo.seal_key().clone(),
            PackerOptions::new(1 << 20),
        );
        let mut ids = Vec::new();
        for (t, data) in blobs {
            let id = self.repo.id_key().blob_id(data);
            let sealed = self
                .repo
                .seal_key()
                .seal(&aad::blob(*t, Compression::None, &id), data);
            packer
                .add(SealedBlob {
                    blob_type: *t,
                    id,
                    compression: Compression::None,
                    raw_len: data.len() as u32,
                    sealed,
                })
                .unwrap();
            ids.push(id);
        }
        packer.finish(&**self.repo.backend()).unwrap();
        ids
    }

    fn tree(&self, nodes: Vec<Node>) -> BlobId {
        // Deliberately not sorted or validated: the encoder writes what it is given.
        self.store(&[(BlobType::Tree, Tree { nodes }.to_bytes_unchecked().unwrap())])[0]
    }

    fn file(&self, name: &[u8], content: &[u8]) -> Node {
        let id = self.store(&[(BlobType::Data, content.to_vec())])[0];
        let mut n = Node::new(
            name,
            NodeKind::File {
                content: vec![id].into(),
            },
        );
        n.size = content.len() as u64;
        n
    }

    fn snapshot(&self, root: BlobId) -> String {
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

fn dir(name: &[u8], subtree: BlobId) -> Node {
    let mut n = Node::new(name, NodeKind::Dir { subtree });
    n.mode = 0o755;
    n
}

fn assert_empty(p: &Path) {
    let entries: Vec<_> = fs::read_dir(p).unwrap().collect();
    assert!(
        entries.is_empty(),
        "{} must stay empty: {entries:?}",
        p.display()
    );
}

fn restore_refused(env: &Env, snap: &str, target: &Path, needle: &str) {
    let out = env.run(&["restore", snap, "--target", target.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(0),
        "restore of a hostile snapshot must fail"
    );
    assert!(
        err.contains(needle),
        "error should mention {needle:?}: {err}"
    );
}

#[test]
fn dot_dot_and_slash_names_are_refused() {
    let env = Env::new();
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    let c = Crafter::new(&env);

    let evil = c.file(b"escaped", b"should never be written");
    let sub = c.tree(vec![evil]);
    let root = c.tree(vec![dir(b"..", sub)]);
    let target = env.path("t1/deeper");
    restore_refused(&env, &c.snapshot(root), &target, "\"..\" is not allowed");
    assert!(!env.path("t1/escaped").exists());
    assert!(!env.path("escaped").exists());

    let slash = c.file(b"../../outside/x", b"nope");
    let root = c.tree(vec![slash]);
    let target = env.path("t2/a/b");
    restore_refused(&env, &c.snapshot(root), &target, "contains '/'");
    assert_empty(&outside);

    let abs = c.file(outside.join("abs").as_os_str().as_encoded_bytes(), b"nope");
    let root = c.tree(vec![abs]);
    restore_refused(&env, &c.snapshot(root), &env.path("t3"), "contains '/'");
    assert_empty(&outside);

    let dot = c.file(b".", b"nope");
    let root = c.tree(vec![dot]);
    restore_refused(&env, &c.snapshot(root), &env.path("t4"), "is not allowed");
}

#[test]
fn a_symlink_followed_by_an_entry_beneath_it_is_refused() {
    let env = Env::new();
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    let c = Crafter::new(&env);
    let link = Node::new(
        "a",
        NodeKind::Symlink {
            target: outside.as_os_str().as_encoded_bytes().to_vec(),
        },
    );
    let payload = c.file(b"planted", b"written through the link");
    let sub = c.tree(vec![payload]);
    // Same name twice: the symlink, then a directory "through" it.
    let root = c.tree(vec![link, dir(b"a", sub)]);
    let target = env.path("target");
    restore_refused(
        &env,
        &c.snapshot(root),
        &target,
        "strictly increasing order",
    );
    assert_empty(&outside);
}

#[test]
fn existing_symlinks_in_the_target_are_not_followed() {
    let env = Env::new();
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    let c = Crafter::new(&env);
    let inner = c.file(b"f", b"inside the target");
    let sub = c.tree(vec![inner]);
    let top = c.file(b"g", b"also inside");
    let root = c.tree(vec![dir(b"a", sub), top]);
    let snap = c.snapshot(root);

    // The target already holds symlinks where the snapshot has a directory
    // and a file: restore must replace them, not write through them. They
    // differ from the snapshot's entries, so that takes --overwrite; without
    // it the restore refuses and writes nothing.
    let target = env.path("target");
    fs::create_dir(&target).unwrap();
    symlink(&outside, target.join("a")).unwrap();
    symlink(outside.join("g"), target.join("g")).unwrap();
    let t = target.to_str().unwrap();
    assert_eq!(
        env.run(&["restore", &snap, "--target", t]).status.code(),
        Some(1)
    );
    assert_empty(&outside);
    assert!(fs::symlink_metadata(target.join("a")).unwrap().is_symlink());
    env.ok(&["restore", &snap, "--target", t, "--overwrite", "always"]);
    assert_empty(&outside);
    assert!(fs::symlink_metadata(target.join("a")).unwrap().is_dir());
    assert_eq!(fs::read(target.join("a/f")).unwrap(), b"inside the target");
    assert_eq!(fs::read(target.join("g")).unwrap(), b"also inside");
}

/// A chain of `levels` directories named `d`, with a file at the bottom.
fn chain(c: &Crafter, levels: usize) -> BlobId {
    let leaf = c.file(b"leaf", b"bottom");
    let mut blobs = vec![(
        BlobType::Tree,
        Tree { nodes: vec![leaf] }.to_bytes().unwrap(),
    )];
    let mut id = c.repo.id_key().blob_id(&blobs[0].1);
    for _ in 0..levels {
        let t = Tree {
            nodes: vec![dir(b"d", id)],
        }
        .to_bytes()
        .unwrap();
        id = c.repo.id_key().blob_id(&t);
        blobs.push((BlobType::Tree, t));
    }
    c.store(&blobs);
    id
}

#[test]
fn deep_trees_restore_and_hostile_depths_are_refused() {
    let env = Env::new();
    let c = Crafter::new(&env);
    // 1500 levels: deeper than any path a backup can read (PATH_MAX), which
    // restore handles through directory handles without overflowing.
    let snap = c.snapshot(chain(&c, 1500));
    let target = env.path("deep");
    env.ok(&["restore", &snap, "--target", target.to_str().unwrap()]);
    let mut p = target.clone();
    let mut levels = 0;
    while p.join("d").is_dir() {
        // Walk down with relative opens: the absolute path is too long.
        std::env::set_current_dir(&p).unwrap();
        p = std::path::PathBuf::from("d");
        levels += 1;
    }
    assert_eq!(levels, 1500);
    assert_eq!(fs::read(p.join("leaf")).unwrap(), b"bottom");
    std::env::set_current_dir(env.dir.path()).unwrap();

    // 3000 levels can only come from a crafted repository: refused cleanly.
    let snap = c.snapshot(chain(&c, 3000));
    restore_refused(
        &env,
        &snap,
        &env.path("deeper"),
        "refusing to restore below",
    );
}
