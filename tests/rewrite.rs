//! `cairn rewrite` (snapshots without the entries matching exclude
//! patterns, the originals removed with `--forget`, their data gone after
//! `prune`) and `cairn tag` (tags added, removed or set), on real
//! repositories through the command line.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn write(p: &Path, content: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// `cairn snapshots --json`, oldest first.
fn snapshots(env: &Env) -> Vec<Value> {
    let v: Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    v.as_array().unwrap().clone()
}

fn by_id<'a>(snaps: &'a [Value], id: &str) -> &'a Value {
    snaps
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no snapshot {id} in {snaps:?}"))
}

fn ids(snaps: &[Value]) -> BTreeSet<String> {
    snaps
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every file of the repository with its bytes.
fn repo_files(env: &Env) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(&env.repo)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// The entries of a restored tree, relative to it.
fn entries(dir: &Path) -> BTreeSet<PathBuf> {
    walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_path_buf())
        .filter(|p| !p.as_os_str().is_empty())
        .collect()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn rewrite_leaves_out_the_matching_entries_and_keeps_time_host_paths_and_tags() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("app/secret.env"), b"TOKEN=hunter2\n");
    write(&src.join("app/main.rs"), b"fn main() {}\n");
    write(&src.join("cache/a.bin"), &random_bytes(1000, 1));
    write(&src.join("cache/b.bin"), &random_bytes(2000, 2));
    write(&src.join("notes.txt"), b"keep\n");
    let s = src.to_str().unwrap();
    env.ok(&[
        "backup", s, "--tag", "nightly", "--tag", "job:web", "--host", "web1",
    ]);
    let orig = snapshots(&env)[0].clone();
    let orig_id = orig["id"].as_str().unwrap();
    assert!(orig.get("original").is_none(), "{orig}");

    let out = env.run(&["rewrite", "--exclude", "secret.env", "-e", "cache/"]);
    let snaps = snapshots(&env);
    assert_eq!(snaps.len(), 2, "the original is kept without --forget");
    let new = snaps.iter().find(|x| x["id"] != orig_id).unwrap().clone();
    assert_eq!(
        stdout(&out),
        format!(
            "snapshot {}: 2 entries removed\n  {s}/app/secret.env (file, 14 B)\n  {s}/cache (dir with 2 files, 2.93 KiB)\n  saved as snapshot {} (tag \"rewritten\")\nrewrote 1 of 1 snapshot; 0 had nothing to exclude\nthe originals are kept, and so is their data: `cairn rewrite --forget` removes them (then `cairn prune`)\n",
            orig["short_id"].as_str().unwrap(),
            new["short_id"].as_str().unwrap()
        )
    );
    assert_eq!(stderr(&out), "");
    assert_eq!(out.status.code(), Some(0));

    // Same time, host, user, paths and parent; the tags plus `rewritten`;
    // a reference to the original.
    for k in ["time", "hostname", "username", "paths", "parent"] {
        assert_eq!(new[k], orig[k], "{k}");
    }
    assert_eq!(new["hostname"], "web1");
    assert_eq!(
        new["tags"],
        serde_json::json!(["job:web", "nightly", "rewritten"])
    );
    assert_eq!(new["original"], orig_id);
    assert_ne!(new["tree"], orig["tree"]);
    // The summary's counts lose what was left out: two files and a
    // directory with two files (3014 bytes in all).
    let (ns, os) = (&new["summary"], &orig["summary"]);
    assert_eq!(ns["files"], os["files"].as_u64().unwrap() - 3);
    assert_eq!(ns["dirs"], os["dirs"].as_u64().unwrap() - 1);
    assert_eq!(
        ns["total_bytes"],
        os["total_bytes"].as_u64().unwrap() - 3014
    );
    for k in ["others", "bytes_added", "data_blobs_added", "duration_ns"] {
        assert_eq!(ns[k], os[k], "{k}");
    }

    // The new snapshot restores without the excluded entries, everything
    // else byte for byte.
    let new_id = new["id"].as_str().unwrap();
    let target = env.path("restored");
    env.ok(&["restore", new_id, "--target", target.to_str().unwrap()]);
    let got = restored(&target, &src);
    let gone: BTreeSet<PathBuf> = ["app/secret.env", "cache", "cache/a.bin", "cache/b.bin"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let want: BTreeSet<PathBuf> = entries(&src).difference(&gone).cloned().collect();
    assert_eq!(entries(&got), want);
    for rel in &want {
        if src.join(rel).is_file() {
            assert_eq!(
                std::fs::read(got.join(rel)).unwrap(),
                std::fs::read(src.join(rel)).unwrap(),
                "{}",
                rel.display()
            );
        }
    }
    // The original still holds the secret; the new snapshot does not.
    let found = env.ok(&["find", "secret.env", "-q"]);
    assert_eq!(found.lines().count(), 1, "{found}");
    assert!(found.starts_with(orig["short_id"].as_str().unwrap()));
    env.ok(&["check"]);
}

#[test]
fn a_rewrite_dry_run_writes_nothing() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("secret.env"), b"TOKEN=1\n");
    write(&src.join("keep.txt"), b"keep\n");
    let s = src.to_str().unwrap();
    env.ok(&["backup", s]);
    let short = snapshots(&env)[0]["short_id"].as_str().unwrap().to_string();
    let before = repo_files(&env);
    for extra in [&[][..], &["--forget"][..]] {
        let mut args = vec!["rewrite", "--dry-run", "--exclude", "*.env"];
        args.extend_from_slice(extra);
        let out = env.run(&args);
        assert_eq!(
            stdout(&out),
            format!(
                "snapshot {short}: 1 entry would be removed\n  {s}/secret.env (file, 8 B)\n  would be saved as a new snapshot (tag \"rewritten\")\nwould rewrite 1 of 1 snapshot; 0 had nothing to exclude (dry run: nothing changed)\n"
            )
        );
        assert_eq!(stderr(&out), "");
        assert_eq!(out.status.code(), Some(0));
        assert!(
            repo_files(&env) == before,
            "{extra:?}: the repository changed"
        );
    }
    let v: Value =
        serde_json::from_str(&env.ok(&["rewrite", "-n", "-e", "*.env", "--json"])).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["rewritten"][0]["id"], Value::Null);
    assert_eq!(
        v["rewritten"][0]["removed"][0]["path"],
        format!("{s}/secret.env")
    );
    assert_eq!(v["removed"], serde_json::json!([]));
    assert!(repo_files(&env) == before, "--json: the repository changed");
}

/// The data blob IDs of the file at `path` in snapshot `id`.
fn data_blobs(env: &Env, id: &str, path: &Path) -> Vec<String> {
    let backend = std::sync::Arc::new(cairn::backend::local::LocalBackend::new(&env.repo));
    let mut repo = cairn::repo::Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    repo.load_index().unwrap();
    let (_, snap) = repo
        .select_snapshot(id, &cairn::repo::SnapshotFilter::default())
        .unwrap();
    let found =
        cairn::ops::walk::find(&repo, &snap.tree, path.to_str().unwrap().as_bytes()).unwrap();
    let cairn::ops::walk::Found::Entry(node) = found else {
        panic!("{} is a directory", path.display())
    };
    let cairn::format::tree::NodeKind::File { content } = &node.kind else {
        panic!("{} is not a file", path.display())
    };
    cairn::repo::chunklist::data_ids(&repo, content, cairn::repo::chunklist::chunk_limit(&node))
        .unwrap()
        .iter()
        .map(|b| b.to_hex())
        .collect()
}

/// Blob ID → the packs that the index files list it in.
fn indexed_blobs(env: &Env) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for idx in walk(&env.repo.join("index")) {
        if !idx.is_file() {
            continue;
        }
        let id = idx.file_name().unwrap().to_str().unwrap().to_string();
        let f: Value = serde_json::from_str(&env.ok(&["cat", "index", &id])).unwrap();
        for p in f["packs"].as_array().unwrap() {
            for b in p["blobs"].as_array().unwrap() {
                out.entry(b["id"].as_str().unwrap().to_string())
                    .or_default()
                    .insert(p["id"].as_str().unwrap().to_string());
            }
        }
    }
    out
}

/// The pack files on storage, by name.
fn pack_files(env: &Env) -> BTreeSet<String> {
    walk(&env.repo.join("data"))
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect()
}

#[test]
fn rewrite_forget_then_prune_leaves_no_trace_of_the_excluded_data() {
    let env = Env::new();
    let src = env.path("src");
    let secret = random_bytes(300_000, 11);
    let keep = random_bytes(200_000, 12);
    write(&src.join("secret.bin"), &secret);
    write(&src.join("keep.bin"), &keep);
    let s = src.to_str().unwrap();
    env.ok(&["backup", s]);
    write(&src.join("later.txt"), b"later\n");
    env.ok(&["backup", s]);
    let originals = snapshots(&env);
    let first = originals[0]["id"].as_str().unwrap().to_string();
    let blobs = data_blobs(&env, &first, &src.join("secret.bin"));
    assert!(!blobs.is_empty());
    // The secret is in the repository, blob by blob.
    let read: Vec<u8> = blobs
        .iter()
        .flat_map(|b| {
            let out = env.cmd().args(["cat", "blob", b]).output().unwrap();
            assert_eq!(out.status.code(), Some(0));
            out.stdout
        })
        .collect();
    assert!(read == secret, "cat blob gives the secret back");
    let index = indexed_blobs(&env);
    let secret_packs: BTreeSet<String> = blobs
        .iter()
        .flat_map(|b| index[b].iter().cloned())
        .collect();
    assert!(secret_packs.is_subset(&pack_files(&env)));

    let out = env.run(&["rewrite", "--forget", "--exclude", "secret.bin"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.ends_with(
            "removed 2 original snapshots\nrewrote 2 of 2 snapshots; 0 had nothing to exclude\nrun `cairn prune` to delete the data only the originals used\n"
        ),
        "{text}"
    );
    let snaps = snapshots(&env);
    assert_eq!(snaps.len(), 2);
    assert!(
        ids(&snaps).is_disjoint(&ids(&originals)),
        "originals removed"
    );
    for (new, old) in snaps.iter().zip(&originals) {
        assert_eq!(new["original"], old["id"]);
        assert_eq!(new["time"], old["time"]);
        assert_eq!(new["tags"], serde_json::json!(["rewritten"]));
    }
    // Until a prune the data is still there.
    let out = env.cmd().args(["cat", "blob", &blobs[0]]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));

    age_past_prune_grace(&env.repo);
    let before = env.data_bytes();
    env.ok(&["prune"]);
    let after = env.data_bytes();
    assert!(
        before - after >= secret.len() as u64,
        "prune gave back {} bytes, the secret is {}",
        before - after,
        secret.len()
    );
    // No index lists the secret's blobs, no pack that held them is left,
    // and reading them fails.
    let index = indexed_blobs(&env);
    for b in &blobs {
        assert!(!index.contains_key(b), "blob {b} still indexed");
        let out = env.cmd().args(["cat", "blob", b]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stdout(&out), "");
        assert!(stderr(&out).starts_with("cairn: "), "{}", stderr(&out));
    }
    assert!(
        secret_packs.is_disjoint(&pack_files(&env)),
        "a pack that held the secret is still stored"
    );
    // What remains is whole and restores.
    env.ok(&["check", "--read-data"]);
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let got = restored(&target, &src);
    assert!(std::fs::read(got.join("keep.bin")).unwrap() == keep);
    assert_eq!(std::fs::read(got.join("later.txt")).unwrap(), b"later\n");
    assert!(!got.join("secret.bin").exists());
}

#[test]
fn a_rewrite_that_matches_nothing_or_selects_nothing_fails_and_writes_nothing() {
    let empty = Env::new();
    let out = empty.run(&["rewrite", "-e", "x"]);
    assert_eq!(stderr(&out), "cairn: the repository has no snapshots\n");
    assert_eq!(out.status.code(), Some(1));

    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"a\n");
    env.ok(&["backup", src.to_str().unwrap()]);
    let before = repo_files(&env);
    let cases: [(&[&str], &str); 6] = [
        (
            &["rewrite", "-e", "nothing-like-this"],
            "cairn: no entry in the 1 selected snapshot matches the exclude patterns: nothing to rewrite\n",
        ),
        (
            &[
                "rewrite",
                "-e",
                "nothing-like-this",
                "--forget",
                "--dry-run",
            ],
            "cairn: no entry in the 1 selected snapshot matches the exclude patterns: nothing to rewrite\n",
        ),
        (
            &["rewrite", "-e", "a.txt", "0000aaaa"],
            "cairn: no snapshot matches \"0000aaaa\"\n",
        ),
        (
            &["rewrite", "-e", "a.txt", "--host", "nosuch"],
            "cairn: no snapshot matches host \"nosuch\"\n",
        ),
        (
            &["rewrite", "a.txt"],
            "cairn: nothing to exclude: give --exclude PATTERN or --exclude-file FILE\n",
        ),
        (
            &["rewrite", "-e", ""],
            "cairn: nothing to exclude: give --exclude PATTERN or --exclude-file FILE\n",
        ),
    ];
    for (args, err) in cases {
        let out = env.run(args);
        assert_eq!(stdout(&out), "", "{args:?}");
        assert_eq!(stderr(&out), err, "{args:?}");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            repo_files(&env) == before,
            "{args:?}: the repository changed"
        );
    }
}

#[test]
fn a_snapshot_rewritten_twice_names_the_first_original() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.log"), b"a\n");
    write(&src.join("b.tmp"), b"b\n");
    write(&src.join("c.txt"), b"c\n");
    env.ok(&["backup", src.to_str().unwrap(), "--tag", "t"]);
    let first = snapshots(&env)[0]["id"].as_str().unwrap().to_string();
    env.ok(&["rewrite", "--forget", "-e", "*.log"]);
    let second = snapshots(&env)[0]["id"].as_str().unwrap().to_string();
    env.ok(&["rewrite", "--forget", "-e", "*.tmp", &second]);
    let snaps = snapshots(&env);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["original"], first.as_str());
    assert_eq!(snaps[0]["tags"], serde_json::json!(["rewritten", "t"]));
    let left = env.ok(&["find", "?.*", "-q"]);
    assert_eq!(left.lines().count(), 1, "{left}");
    assert!(
        left.ends_with(&format!("{}/c.txt\n", src.display())),
        "{left}"
    );
}

#[test]
fn a_rewrite_stopped_before_removing_the_originals_finishes_when_run_again() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("secret.env"), b"TOKEN\n");
    write(&src.join("keep.txt"), b"keep\n");
    env.ok(&["backup", src.to_str().unwrap()]);
    let orig = snapshots(&env)[0].clone();
    let out = env
        .std_cmd()
        .args(["rewrite", "--forget", "-e", "secret.env"])
        .env("FAILPOINTS", "rewrite::before_forget=return(error)")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // The new record is stored, the original not yet removed.
    let snaps = snapshots(&env);
    assert_eq!(snaps.len(), 2);
    let new = snaps
        .iter()
        .find(|s| s["id"] != orig["id"])
        .unwrap()
        .clone();
    assert_eq!(new["original"], orig["id"]);

    let out = env.run(&["rewrite", "--forget", "-e", "secret.env"]);
    assert_eq!(
        stdout(&out),
        format!(
            "snapshot {}: 1 entry removed\n  {}/secret.env (file, 6 B)\n  already rewritten as snapshot {} by an earlier run\nremoved 1 original snapshot\nrewrote 1 of 2 snapshots; 1 had nothing to exclude\nrun `cairn prune` to delete the data only the originals used\n",
            orig["short_id"].as_str().unwrap(),
            src.display(),
            new["short_id"].as_str().unwrap()
        )
    );
    assert_eq!(out.status.code(), Some(0));
    let snaps = snapshots(&env);
    assert_eq!(
        ids(&snaps),
        BTreeSet::from([new["id"].as_str().unwrap().to_string()])
    );
}

/// Tags by snapshot ID, and the IDs.
fn tags_of(env: &Env) -> Vec<(String, Vec<String>)> {
    snapshots(env)
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn tag_adds_removes_and_sets_tags_keeping_everything_else() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"f\n");
    let s = src.to_str().unwrap();
    env.ok(&["backup", s, "--tag", "a"]);
    env.ok(&["backup", s, "--tag", "a", "--tag", "b"]);
    let orig = snapshots(&env);
    let short = |v: &Value| v["short_id"].as_str().unwrap().to_string();

    // --add on every snapshot.
    let out = env.run(&["tag", "--add", "x"]);
    let snaps = snapshots(&env);
    assert_eq!(
        stdout(&out),
        format!(
            "snapshot {}: tags a,x, saved as snapshot {}\nsnapshot {}: tags a,b,x, saved as snapshot {}\nchanged 2 of 2 snapshots; 0 unchanged\n",
            short(&orig[0]),
            short(&snaps[0]),
            short(&orig[1]),
            short(&snaps[1])
        )
    );
    assert_eq!(stderr(&out), "");
    assert_eq!(out.status.code(), Some(0));
    assert!(ids(&snaps).is_disjoint(&ids(&orig)), "originals replaced");
    for (new, old) in snaps.iter().zip(&orig) {
        assert_eq!(new["original"], old["id"]);
        for k in [
            "time", "tree", "hostname", "username", "paths", "parent", "summary",
        ] {
            assert_eq!(new[k], old[k], "{k}");
        }
    }
    let t = tags_of(&env);
    assert_eq!(t[0].1, ["a", "x"]);
    assert_eq!(t[1].1, ["a", "b", "x"]);

    // --remove on one snapshot (by ID prefix).
    let out = env.ok(&["tag", "--remove", "a", &t[1].0[..8]]);
    assert!(
        out.ends_with("changed 1 of 1 snapshot; 0 unchanged\n"),
        "{out}"
    );
    let t2 = tags_of(&env);
    assert_eq!(t2[0], t[0], "the other snapshot is left alone");
    assert_eq!(t2[1].1, ["b", "x"]);
    assert_eq!(by_id(&snapshots(&env), &t2[1].0)["original"], orig[1]["id"]);

    // --set replaces all; `--set ''` clears.
    env.ok(&["tag", "--set", "z", "--set", "y", &t2[0].0]);
    assert_eq!(tags_of(&env)[0].1, ["y", "z"]);
    env.ok(&["tag", "--set", "", "latest"]);
    assert_eq!(tags_of(&env)[1].1, Vec::<String>::new());

    // Nothing to change: no new record.
    let before = repo_files(&env);
    let out = env.ok(&["tag", "--add", "y", &tags_of(&env)[0].0]);
    assert_eq!(out, "changed 0 of 1 snapshot; 1 unchanged\n");
    assert!(repo_files(&env) == before);

    // --dry-run says what would change and writes nothing.
    let first = tags_of(&env)[0].0.clone();
    let out = env.ok(&["tag", "--dry-run", "--add", "w", &first]);
    assert_eq!(
        out,
        format!(
            "snapshot {}: would get tags w,y,z\nwould change 1 of 1 snapshot; 0 unchanged (dry run: nothing changed)\n",
            &first[..8]
        )
    );
    assert!(repo_files(&env) == before);

    // Select by tag.
    env.ok(&["tag", "--add", "picked", "--tag", "y"]);
    let t3 = tags_of(&env);
    assert_eq!(t3[0].1, ["picked", "y", "z"]);
    assert_eq!(t3[1].1, Vec::<String>::new());
    env.ok(&["check"]);
}

#[test]
fn tag_refuses_conflicting_or_empty_changes_and_unknown_snapshots() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"f\n");
    env.ok(&["backup", src.to_str().unwrap(), "--tag", "a"]);
    let before = repo_files(&env);

    let out = env.run(&["tag", "--set", "x", "--add", "y"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert_eq!(
        stderr(&out).lines().next(),
        Some("error: the argument '--set <TAG>' cannot be used with '--add <TAG>'")
    );
    let cases: [(&[&str], &str); 5] = [
        (
            &["tag"],
            "cairn: nothing to do: give --add TAG, --remove TAG or --set TAG\n",
        ),
        (
            &["tag", "--add", "x", "0000aaaa"],
            "cairn: no snapshot matches \"0000aaaa\"\n",
        ),
        (
            &["tag", "--add", "x", "--host", "nosuch"],
            "cairn: no snapshot matches host \"nosuch\"\n",
        ),
        (
            &["tag", "--add", "a\nb"],
            "cairn: the tag \"a\\nb\" contains a control character\n",
        ),
        (
            &["tag", "--add", ""],
            "cairn: an empty tag is not allowed\n",
        ),
    ];
    for (args, err) in cases {
        let out = env.run(args);
        assert_eq!(stdout(&out), "", "{args:?}");
        assert_eq!(stderr(&out), err, "{args:?}");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
    assert!(repo_files(&env) == before, "the repository changed");
}
