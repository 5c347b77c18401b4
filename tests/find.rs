//! `cairn find`: matches across snapshots (names, whole paths, snapshot
//! selection), one path's history, and the cost: each distinct tree is read
//! once however many snapshots hold it.

mod common;

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use serde_json::Value;

/// 2026-01-02 03:04:05 UTC, as files' mtimes.
const MTIME: u64 = 1_767_323_045;
const MTIME_TEXT: &str = "2026-01-02 03:04:05";

fn write(p: &Path, content: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
    set_mtime(p);
}

fn set_mtime(p: &Path) {
    let f = std::fs::File::open(p).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(MTIME))
        .unwrap();
}

/// The snapshots, oldest first: (ID, short ID, time as text prints it).
fn snapshots(env: &Env) -> Vec<(String, String, String)> {
    let v: Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let time = s["time"].as_str().unwrap()[..19].replace('T', " ");
            (
                s["id"].as_str().unwrap().to_string(),
                s["short_id"].as_str().unwrap().to_string(),
                time,
            )
        })
        .collect()
}

fn find_line(snap: &(String, String, String), kind: &str, size: u64, path: &Path) -> String {
    format!(
        "{}  {}  {kind:<7} {size:>12}  {MTIME_TEXT}  {}\n",
        snap.1,
        snap.2,
        path.display()
    )
}

#[test]
fn find_lists_each_match_with_its_snapshot_time_path_size_mtime_and_type() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("app/secret.env"), b"TOKEN=1\n");
    write(&src.join("app/config.json"), b"{}\n");
    write(&src.join("other/prod.env"), b"TOKEN=22\n");
    let s = src.to_str().unwrap();
    env.ok(&["backup", s]);
    write(&src.join("app/secret.env"), b"TOKEN=333\n");
    std::fs::create_dir(src.join("x.env")).unwrap();
    set_mtime(&src.join("x.env"));
    env.ok(&["backup", s]);
    let snaps = snapshots(&env);

    let out = env.run(&["find", "*.env"]);
    let want = [
        find_line(&snaps[0], "file", 8, &src.join("app/secret.env")),
        find_line(&snaps[0], "file", 9, &src.join("other/prod.env")),
        find_line(&snaps[1], "file", 10, &src.join("app/secret.env")),
        find_line(&snaps[1], "file", 9, &src.join("other/prod.env")),
        find_line(&snaps[1], "dir", 0, &src.join("x.env")),
        "5 matches in 2 of 2 snapshots\n".to_string(),
    ]
    .concat();
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));

    // Several patterns: an entry matching any of them, once.
    let out = env.ok(&["find", "config.json", "secret.*", "--snapshot", &snaps[0].1]);
    assert_eq!(
        out,
        [
            find_line(&snaps[0], "file", 3, &src.join("app/config.json")),
            find_line(&snaps[0], "file", 8, &src.join("app/secret.env")),
            "2 matches in 1 of 1 snapshot\n".to_string(),
        ]
        .concat()
    );

    // No match is not an error.
    let out = env.run(&["find", "nothing-*"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0 matches in 0 of 2 snapshots\n"
    );
    assert_eq!(out.status.code(), Some(0));
    // --quiet keeps only the matches.
    let out = env.ok(&["find", "prod.env", "-q", "--snapshot", "latest"]);
    assert_eq!(
        out,
        find_line(&snaps[1], "file", 9, &src.join("other/prod.env"))
    );
}

#[test]
fn find_json_prints_one_object_per_match_then_a_summary() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a/secret.env"), b"TOKEN=1\n");
    env.ok(&["backup", src.to_str().unwrap()]);
    let snaps = snapshots(&env);
    let out = env.ok(&["find", "--json", "*.env"]);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        lines[0],
        serde_json::json!({
            "message_type": "match",
            "snapshot": snaps[0].0,
            "path": src.join("a/secret.env").to_str().unwrap(),
            "size": 8,
            "mtime": format!("{MTIME}.000000000"),
            "type": "file",
        })
    );
    assert_eq!(lines[1]["message_type"], "summary");
    assert_eq!(lines[1]["matches"], 1);
    assert_eq!(lines[1]["snapshots"], 1);
    assert_eq!(lines[1]["snapshots_matched"], 1);

    // A name that is not UTF-8 comes with its exact bytes.
    let odd = src.join(std::ffi::OsStr::from_bytes(b"caf\xe9.env"));
    write(&odd, b"x\n");
    env.ok(&["backup", src.to_str().unwrap()]);
    let out = env.ok(&["find", "--json", "-s", "latest", "caf*"]);
    let m: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(m["path"], format!("{}/caf\u{fffd}.env", src.display()));
    assert_eq!(
        m["path_hex"],
        hex_of(odd.as_os_str().as_bytes()),
        "the exact bytes"
    );
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn find_with_no_such_snapshot_fails_with_a_clear_error() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"x\n");
    env.ok(&["backup", src.to_str().unwrap()]);
    let out = env.run(&["find", "f", "--snapshot", "0000aaaa"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cairn: no snapshot matches \"0000aaaa\"\n"
    );
    assert_eq!(out.status.code(), Some(1));
    let out = env.run(&["find", "f", "--snapshot", "zz"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cairn: \"zz\" is not a snapshot ID: give `latest` or at least 4 hex characters\n"
    );
    assert_eq!(out.status.code(), Some(1));
    // An empty repository: nothing to search, not an error.
    let empty = Env::new();
    assert_eq!(empty.ok(&["find", "f"]), "0 matches in 0 of 0 snapshots\n");
}

#[test]
fn path_patterns_match_whole_paths_and_a_name_pattern_with_a_slash_is_refused() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a/secret.env"), b"1\n");
    write(&src.join("a/deep/secret.env"), b"22\n");
    env.ok(&["backup", src.to_str().unwrap()]);
    let snaps = snapshots(&env);
    let pattern = format!("{}/*/secret.env", src.display());
    let out = env.ok(&["find", "--path", &pattern]);
    assert_eq!(
        out,
        [
            find_line(&snaps[0], "file", 2, &src.join("a/secret.env")),
            "1 match in 1 of 1 snapshot\n".to_string(),
        ]
        .concat()
    );
    let pattern = format!("{}/**/secret.env", src.display());
    let out = env.ok(&["find", "--path", &pattern, "-q"]);
    assert_eq!(
        out,
        [
            find_line(&snaps[0], "file", 3, &src.join("a/deep/secret.env")),
            find_line(&snaps[0], "file", 2, &src.join("a/secret.env")),
        ]
        .concat()
    );

    let out = env.run(&["find", "a/*.env"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cairn: the pattern \"a/*.env\" holds a '/', but names have none: use --path to match whole paths\n"
    );
    assert_eq!(out.status.code(), Some(1));
    let out = env.run(&["find", "a["]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("cairn: bad pattern \"a[\": "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Neither a pattern nor --history: a usage error.
    let out = env.run(&["find"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn snapshot_selection_by_id_host_tag_and_time_bounds() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f.txt"), b"x\n");
    let s = src.to_str().unwrap();
    env.ok(&["backup", s, "--tag", "one"]);
    env.ok(&["backup", s, "--tag", "two", "--host", "elsewhere"]);
    env.ok(&["backup", s, "--tag", "two"]);
    let snaps = snapshots(&env);
    let f = src.join("f.txt");
    let only = |i: usize| find_line(&snaps[i], "file", 2, &f);
    let q = |args: &[&str]| {
        let mut a = vec!["find", "f.txt", "-q"];
        a.extend_from_slice(args);
        env.ok(&a)
    };
    assert_eq!(q(&["--tag", "two"]), only(1) + &only(2));
    assert_eq!(q(&["--host", "elsewhere"]), only(1));
    assert_eq!(
        q(&["--snapshot", &snaps[2].1, "--snapshot", &snaps[0].1]),
        only(0) + &only(2)
    );
    let time = |i: usize| -> String {
        let v: Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
        v[i]["time"].as_str().unwrap().to_string()
    };
    assert_eq!(q(&["--oldest", &time(1)]), only(1) + &only(2));
    assert_eq!(q(&["--newest", &time(1)]), only(0) + &only(1));
    assert_eq!(q(&["--oldest", &time(1), "--newest", &time(1)]), only(1));
    assert_eq!(q(&["--newest", "2000-01-01"]), "");
    let out = env.run(&["find", "f.txt", "--oldest", "someday"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cairn: --oldest: cannot read the time \"someday\": use e.g. \"2026-11-20 03:00\", \"2026-11-20\" or \"2 days ago\"\n"
    );
}

#[test]
fn a_tree_held_under_two_paths_yields_its_matches_under_each() {
    // Two directories holding the same hard-linked file have the same
    // tree blob (same names and metadata): the memoised matches of that
    // tree must come out under each directory's own path.
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a/secret.env"), b"TOKEN\n");
    std::fs::create_dir_all(src.join("b")).unwrap();
    std::fs::hard_link(src.join("a/secret.env"), src.join("b/secret.env")).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let snaps = snapshots(&env);
    let got = env.ok(&["find", "secret.env", "-q"]);
    assert_eq!(
        got,
        find_line(&snaps[0], "file", 6, &src.join("a/secret.env"))
            + &find_line(&snaps[0], "file", 6, &src.join("b/secret.env"))
    );
    // The two directories' tree is one blob, read once.
    let v: Value = serde_json::from_str(
        env.ok(&["find", "secret.env", "--json"])
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    let depth = src.components().count(); // "/" and each component of src
    assert_eq!(
        v["trees_read"],
        depth as u64 + 1,
        "the root, the trees on the way to src, src, and one tree for a and b"
    );
}

/// A backend that counts ranged reads (every blob read is one).
struct Counting {
    inner: cairn::backend::local::LocalBackend,
    ranged: AtomicU64,
}

impl cairn::backend::Backend for Counting {
    fn location(&self) -> String {
        "counting".into()
    }
    fn create(&self) -> cairn::Result<()> {
        self.inner.create()
    }
    fn list(&self, dir: &str) -> cairn::Result<Vec<cairn::backend::ObjectInfo>> {
        self.inner.list(dir)
    }
    fn get(&self, name: &str) -> cairn::Result<Vec<u8>> {
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> cairn::Result<Vec<u8>> {
        self.ranged.fetch_add(1, Ordering::SeqCst);
        self.inner.get_range(name, offset, len)
    }
    fn put(&self, name: &str, data: &[u8]) -> cairn::Result<()> {
        self.inner.put(name, data)
    }
    fn delete(&self, name: &str) -> cairn::Result<()> {
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> cairn::Result<u64> {
        self.inner.stat(name)
    }
}

/// Every (tree, path) pair below `tree` at `path`, the tree included.
fn trees_below(
    repo: &cairn::repo::Repository,
    tree: &cairn::id::BlobId,
    path: &[u8],
    out: &mut HashSet<(cairn::id::BlobId, Vec<u8>)>,
) {
    if !out.insert((*tree, path.to_vec())) {
        return;
    }
    for n in repo.load_tree(tree).unwrap().nodes {
        if let cairn::format::tree::NodeKind::Dir { subtree } = &n.kind {
            trees_below(repo, subtree, &[path, b"/", &n.name].concat(), out);
        }
    }
}

#[test]
fn find_reads_each_distinct_tree_once_over_twenty_snapshots_of_an_unchanged_tree() {
    let env = Env::new();
    let src = env.path("src");
    for d in 0..5 {
        for f in 0..4 {
            write(
                &src.join(format!("d{d}/sub/f{f}.txt")),
                format!("{d} {f}\n").as_bytes(),
            );
        }
    }
    for _ in 0..20 {
        env.ok(&["backup", "--force", src.to_str().unwrap()]);
    }
    let backend = Arc::new(Counting {
        inner: cairn::backend::local::LocalBackend::new(&env.repo),
        ranged: AtomicU64::new(0),
    });
    let mut repo = cairn::repo::Repository::open(backend.clone(), PASSWORD.as_bytes()).unwrap();
    repo.load_index().unwrap();
    let snaps = repo.load_snapshots().unwrap();
    assert_eq!(snaps.len(), 20);

    // What the searches must read, worked out on a repository opened
    // apart. The directories on the way to src carry their own metadata
    // (the temporary directory's parent changes as other programs use it),
    // so root trees may differ between snapshots; src and everything below
    // it is one set of trees shared by all twenty.
    let plain = {
        let backend = Arc::new(cairn::backend::local::LocalBackend::new(&env.repo));
        let mut r = cairn::repo::Repository::open(backend, PASSWORD.as_bytes()).unwrap();
        r.load_index().unwrap();
        r
    };
    let mut pairs = HashSet::new();
    for (_, s) in &snaps {
        trees_below(&plain, &s.tree, b"", &mut pairs);
    }
    let distinct: HashSet<_> = pairs.iter().map(|(id, _)| *id).collect();
    let src_bytes = src.to_str().unwrap().as_bytes();
    let below_src: HashSet<_> = pairs
        .iter()
        .filter(|(_, p)| p.starts_with(src_bytes))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        below_src.len(),
        11,
        "src, five d*, five d*/sub: shared by all"
    );
    // One snapshot alone: the root, the trees on the way to src, src and
    // its ten; the search over twenty must cost far less than twenty such.
    let per_snapshot = src.components().count() as u64 + 10;
    assert!((distinct.len() as u64) < 20 * per_snapshot / 2);

    let opts = cairn::ops::find::FindOptions {
        patterns: vec!["f3.txt".into()],
        whole_path: false,
    };
    let mut matches = 0;
    let before = backend.ranged.load(Ordering::SeqCst);
    let stats = cairn::ops::find::find(
        &repo,
        &snaps,
        &opts,
        &cairn::ops::NoProgress,
        &mut |_, _, hits| {
            matches += hits.len();
            Ok(())
        },
    )
    .unwrap();
    let reads = backend.ranged.load(Ordering::SeqCst) - before;
    assert_eq!(matches, 20 * 5);
    assert_eq!(stats.matches, 100);
    assert_eq!(stats.snapshots_matched, 20);
    assert_eq!(
        reads,
        distinct.len() as u64,
        "one read per distinct tree, not per snapshot"
    );
    assert_eq!(stats.trees_read, distinct.len() as u64);

    // Whole-path patterns: one read per distinct tree and path, which is
    // the same here, since every snapshot holds its trees at the same paths.
    assert_eq!(pairs.len(), distinct.len());
    let before = backend.ranged.load(Ordering::SeqCst);
    let opts = cairn::ops::find::FindOptions {
        patterns: vec!["/**/d1/**/f*.txt".into()],
        whole_path: true,
    };
    let stats = cairn::ops::find::find(
        &repo,
        &snaps,
        &opts,
        &cairn::ops::NoProgress,
        &mut |_, _, _| Ok(()),
    )
    .unwrap();
    assert_eq!(stats.matches, 20 * 4);
    assert_eq!(
        backend.ranged.load(Ordering::SeqCst) - before,
        pairs.len() as u64
    );

    // A history reads the distinct trees on the way to the path once.
    let path = src.join("d2/sub/f1.txt");
    let on_the_way: HashSet<_> = pairs
        .iter()
        .filter(|(_, p)| {
            let p = Path::new(std::ffi::OsStr::from_bytes(p));
            path.starts_with(p) || p.as_os_str().is_empty()
        })
        .map(|(id, _)| *id)
        .collect();
    let before = backend.ranged.load(Ordering::SeqCst);
    let mut lines = 0;
    let h = cairn::ops::find::history(
        &repo,
        &snaps,
        path.to_str().unwrap().as_bytes(),
        &mut |_, _, _| {
            lines += 1;
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(lines, 1, "added once, never changed");
    assert_eq!(h.present, 20);
    assert_eq!(
        backend.ranged.load(Ordering::SeqCst) - before,
        on_the_way.len() as u64
    );
    assert_eq!(h.trees_read, on_the_way.len() as u64);
}

#[test]
fn history_lists_the_snapshots_where_a_path_appeared_changed_and_disappeared() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("other.txt"), b"o\n");
    let s = src.to_str().unwrap();
    let f = src.join("notes.txt");
    env.ok(&["backup", s]); // 0: not there
    write(&f, b"one\n");
    env.ok(&["backup", s]); // 1: added
    env.ok(&["backup", s]); // 2: unchanged
    write(&f, b"two, longer\n");
    let later = std::time::UNIX_EPOCH + std::time::Duration::from_secs(MTIME + 60);
    std::fs::File::open(&f)
        .unwrap()
        .set_modified(later)
        .unwrap();
    env.ok(&["backup", s]); // 3: modified
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    env.ok(&["backup", s]); // 4: mode only
    std::fs::remove_file(&f).unwrap();
    env.ok(&["backup", s]); // 5: removed
    // A snapshot of another path does not count as the file's removal.
    write(&env.path("elsewhere/x"), b"x\n");
    env.ok(&["backup", env.path("elsewhere").to_str().unwrap()]);
    let snaps = snapshots(&env);
    let out = env.run(&["find", "--history", f.to_str().unwrap()]);
    let line = |i: usize, rest: &str| format!("{}  {}  {rest}\n", snaps[i].1, snaps[i].2);
    let want = [
        line(1, &format!("added     file               4  {MTIME_TEXT}")),
        line(
            3,
            "modified  file              12  2026-01-02 03:05:05  (content, size, mtime)",
        ),
        line(
            4,
            "modified  file              12  2026-01-02 03:05:05  (metadata)",
        ),
        line(5, "removed"),
        format!("{}: 4 changes in 6 snapshots (there in 4)\n", f.display()),
    ]
    .concat();
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));

    let out = env.ok(&["find", "--history", f.to_str().unwrap(), "--json"]);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["change"], "added");
    assert_eq!(lines[0]["snapshot"], snaps[1].0.as_str());
    assert_eq!(
        lines[1]["what"],
        serde_json::json!(["content", "size", "mtime"])
    );
    assert_eq!(lines[3]["change"], "removed");
    assert_eq!(lines[3]["type"], Value::Null);
    assert_eq!(lines[4]["message_type"], "summary");
    assert_eq!(lines[4]["changes"], 4);

    let out = env.run(&["find", "--history", "/"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cairn: the history of `/` is every snapshot: give a path below it\n"
    );
}
