//! Damage does not mean a new repository: replayed index files are
//! ignored, backups never deduplicate against packs that are gone, and
//! `repair index` + `repair snapshots` bring a repository that lost a pack
//! back to a clean `check`, with every file not in the lost pack restoring
//! byte for byte.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn::backend::local::LocalBackend;
use cairn::format::BlobType;
use cairn::format::tree::NodeKind;
use cairn::id::{BlobId, IndexId, PackId};
use cairn::repo::Repository;
use common::*;
use serde_json::Value;

/// The repository, opened in-process with its index loaded.
fn open(env: &Env) -> Repository {
    let backend = Arc::new(LocalBackend::new(&env.repo));
    let mut repo = Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    repo.load_index().unwrap();
    repo
}

fn write_files(dir: &Path, names: &[&str], seed: u64) {
    fs::create_dir_all(dir).unwrap();
    for (i, n) in names.iter().enumerate() {
        fs::write(dir.join(n), random_bytes(300_000, seed + i as u64)).unwrap();
    }
}

/// `cp -a src dst`: the expected state of a snapshot, metadata included.
fn keep_copy(src: &Path, dst: &Path) {
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {} {}", src.display(), dst.display());
}

fn backup(env: &Env, src: &Path) -> String {
    env.backup_json(&[src], &[])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn code_and_output(env: &Env, args: &[&str]) -> (i32, String) {
    let out = env.run(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn index_ids(env: &Env) -> BTreeSet<String> {
    fs::read_dir(env.repo.join("index"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.len() == 64)
        .collect()
}

fn snapshot_ids(env: &Env) -> BTreeSet<String> {
    fs::read_dir(env.repo.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// Restore snapshot `id` and compare the restored `src` with `expected`.
fn restores_as(env: &Env, id: &str, src: &Path, expected: &Path) {
    let target = env.path(&format!("restore-{id}"));
    env.ok(&["restore", id, "--target", target.to_str().unwrap()]);
    assert_same_tree(expected, &restored(&target, src));
    fs::remove_dir_all(&target).unwrap();
}

fn pack_path(env: &Env, id: &PackId) -> PathBuf {
    let h = id.to_hex();
    env.repo.join("data").join(&h[..2]).join(h)
}

/// The tree of the directory at `path` (absolute) in a snapshot.
fn tree_at(repo: &Repository, snap: &str, path: &Path) -> BlobId {
    let (_, s) = repo.find_snapshot(snap).unwrap();
    let mut tree = s.tree;
    for c in path.strip_prefix("/").unwrap().components() {
        let t = repo.load_tree(&tree).unwrap();
        let n = t.find(c.as_os_str().as_encoded_bytes()).unwrap();
        match &n.kind {
            NodeKind::Dir { subtree } => tree = *subtree,
            _ => panic!("{} is not a directory", path.display()),
        }
    }
    tree
}

/// Each file directly in `dir` of a snapshot, with the packs of its data.
fn file_packs(repo: &Repository, snap: &str, dir: &Path) -> BTreeMap<String, HashSet<PackId>> {
    let t = repo.load_tree(&tree_at(repo, snap, dir)).unwrap();
    let mut out = BTreeMap::new();
    for n in &t.nodes {
        if let NodeKind::File { content } = &n.kind {
            let packs = cairn::repo::chunklist::data_ids(repo, content, u64::MAX)
                .unwrap()
                .iter()
                .map(|b| repo.index().get(BlobType::Data, b).unwrap().pack)
                .collect();
            out.insert(String::from_utf8(n.name.clone()).unwrap(), packs);
        }
    }
    out
}

/// Packs holding tree blobs.
fn tree_packs(repo: &Repository) -> HashSet<PackId> {
    repo.index()
        .iter(BlobType::Tree)
        .map(|(_, l)| l.pack)
        .collect()
}

/// `repair snapshots --json ARGS`: its summary.
fn repair_snapshots(env: &Env, args: &[&str]) -> Value {
    let mut a = vec!["repair", "snapshots", "--json"];
    a.extend_from_slice(args);
    serde_json::from_str(env.ok(&a).trim()).unwrap()
}

/// What a repaired copy of `original` lost: path → reason.
fn lost_of(summary: &Value, original: &str) -> BTreeMap<String, String> {
    summary["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["original"] == original)
        .map(|r| {
            r["lost"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (
                        l["path"].as_str().unwrap().to_string(),
                        l["reason"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The repaired copy of `original`, from the summary.
fn copy_of(summary: &Value, original: &str) -> Option<String> {
    summary["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["original"] == original)
        .map(|r| r["id"].as_str().unwrap().to_string())
}

/// Remove `p` (a file, or a directory's whole content when `empty_dir`)
/// from an expected tree, keeping the parent's (or the directory's) mtime.
fn drop_from_expected(p: &Path, empty_dir: bool) {
    let keep_time = |d: &Path, f: &dyn Fn()| {
        let m = fs::metadata(d).unwrap().modified().unwrap();
        f();
        fs::File::open(d)
            .unwrap()
            .set_times(fs::FileTimes::new().set_modified(m))
            .unwrap();
    };
    if empty_dir {
        keep_time(p, &|| {
            for e in fs::read_dir(p).unwrap() {
                let e = e.unwrap().path();
                if e.is_dir() && !e.is_symlink() {
                    fs::remove_dir_all(&e).unwrap();
                } else {
                    fs::remove_file(&e).unwrap();
                }
            }
        });
    } else {
        keep_time(p.parent().unwrap(), &|| fs::remove_file(p).unwrap());
    }
}

/// Apply a repaired snapshot's losses to a copy of the expected source
/// tree `exp` of `src`: left-out files go, emptied directories lose their
/// content. Returns false if `src` itself is gone (an ancestor emptied).
fn expect_losses(exp: &Path, src: &Path, lost: &BTreeMap<String, String>) -> bool {
    for (path, reason) in lost {
        let p = Path::new(path);
        let empty_dir = reason.starts_with("directory emptied");
        if src.starts_with(p) && src != p {
            assert!(empty_dir, "{path}: {reason}");
            return false;
        }
        let rel = p.strip_prefix(src).unwrap();
        drop_from_expected(&exp.join(rel), empty_dir);
    }
    true
}

/// Issue 10, item 2: a prune supersedes old index files; copied back, they
/// are ignored (check warns and names them), so nothing deduplicates
/// against the packs the prune deleted.
#[test]
fn superseded_index_files_copied_back_are_ignored_and_the_next_backup_restores() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = env.path("src");
    write_files(&src.join("a"), &["a0", "a1", "a2", "a3", "a4", "a5"], 1);
    write_files(&src.join("b"), &["b0", "b1", "b2", "b3", "b4", "b5"], 100);
    let s1 = backup(&env, &src);
    let old_index = env.path("old-index");
    keep_copy(&env.repo.join("index"), &old_index);
    fs::remove_dir_all(src.join("a")).unwrap();
    let s2 = backup(&env, &src);
    keep_copy(&src, &env.path("exp2"));
    env.ok(&["forget", &s1]);
    age_past_prune_grace(&env.repo);
    env.ok(&["prune", "--max-unused", "0%"]);
    let after_prune = index_ids(&env);

    // The old index files come back.
    let mut replayed = Vec::new();
    for e in fs::read_dir(&old_index).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if !after_prune.contains(&name) {
            fs::copy(e.path(), env.repo.join("index").join(&name)).unwrap();
            replayed.push(name);
        }
    }
    assert!(!replayed.is_empty());
    let (code, out) = code_and_output(&env, &["check"]);
    assert_eq!(code, 0, "{out}");
    for id in &replayed {
        assert!(
            out.contains(&format!("warning: index file {id} is superseded")),
            "{out}"
        );
    }
    assert!(out.contains("`cairn repair index` deletes it"), "{out}");

    // The files of the forgotten snapshot come back and are backed up
    // again: they must be stored again, not deduplicated against the
    // deleted packs the replayed index files list.
    write_files(&src.join("a"), &["a0", "a1", "a2", "a3", "a4", "a5"], 1);
    let s3 = backup(&env, &src);
    keep_copy(&src, &env.path("exp3"));
    let (code, out) = code_and_output(&env, &["check", "--read-data"]);
    assert_eq!(code, 0, "{out}");
    restores_as(&env, &s2, &src, &env.path("exp2"));
    restores_as(&env, &s3, &src, &env.path("exp3"));

    // Repair index deletes the replayed files; check has nothing to say.
    env.ok(&["repair", "index"]);
    for id in &replayed {
        assert!(!env.repo.join("index").join(id).exists());
    }
    let (code, out) = code_and_output(&env, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 errors, 0 warnings"), "{out}");
}

/// Issue 10, item 2: an index file two prunes old is named by no index file
/// any more, so supersession cannot catch it. The backup lists the packs
/// and does not trust entries whose pack is gone: it stores those blobs
/// again, and after `repair index` every snapshot restores.
#[test]
fn an_index_file_two_prunes_old_copied_back_does_not_make_a_backup_reference_deleted_packs() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = env.path("src");
    let a_names = ["a0", "a1", "a2", "a3", "a4", "a5"];
    write_files(&src.join("a"), &a_names, 1);
    write_files(&src.join("b"), &["b0", "b1", "b2"], 100);
    let s1 = backup(&env, &src);
    let first_index = env.path("first-index");
    keep_copy(&env.repo.join("index"), &first_index);
    // Prune 1: the blobs of a/ go.
    fs::remove_dir_all(src.join("a")).unwrap();
    let s2 = backup(&env, &src);
    keep_copy(&src, &env.path("exp2"));
    env.ok(&["forget", &s1]);
    age_past_prune_grace(&env.repo);
    env.ok(&["prune", "--max-unused", "0%"]);
    // Prune 2 supersedes prune 1's index files, not the first ones.
    write_files(&src.join("c"), &["c0", "c1"], 200);
    let s3 = backup(&env, &src);
    fs::remove_dir_all(src.join("c")).unwrap();
    let s4 = backup(&env, &src);
    keep_copy(&src, &env.path("exp4"));
    env.ok(&["forget", &s3]);
    age_past_prune_grace(&env.repo);
    env.ok(&["prune", "--max-unused", "0%"]);

    let now = index_ids(&env);
    let mut replayed = Vec::new();
    for e in fs::read_dir(&first_index).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        assert!(!now.contains(&name));
        fs::copy(e.path(), env.repo.join("index").join(&name)).unwrap();
        replayed.push(IndexId::from_hex(&name).unwrap());
    }
    {
        // No index file names the replayed ones: they are loaded, and
        // list packs that are gone.
        let repo = open(&env);
        let files = repo.load_index_files().unwrap();
        assert!(files.superseded.is_empty(), "{:?}", files.superseded);
        let live: Vec<IndexId> = files.live.iter().map(|(id, _)| *id).collect();
        assert!(replayed.iter().all(|r| live.contains(r)));
    }

    write_files(&src.join("a"), &a_names, 1);
    let out = env.run(&["backup", "--json", src.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary: Value = serde_json::from_str(success(out).trim()).unwrap();
    assert!(
        stderr.contains("packs listed in the index are missing from the repository"),
        "{stderr}"
    );
    // Every file of a/ was stored again.
    assert!(
        summary["data_blobs_added"].as_u64().unwrap() >= a_names.len() as u64,
        "{summary}"
    );
    let s5 = summary["snapshot_id"].as_str().unwrap().to_string();
    keep_copy(&src, &env.path("exp5"));

    // The replayed files still list deleted packs: check says so, and
    // `repair index` rebuilds the index from the packs that are there.
    let (code, out) = code_and_output(&env, &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is missing"), "{out}");
    let out = env.ok(&["repair", "index"]);
    assert!(out.contains("is missing: its blobs are lost"), "{out}");
    let (code, out) = code_and_output(&env, &["check", "--read-data"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 errors, 0 warnings"), "{out}");
    restores_as(&env, &s2, &src, &env.path("exp2"));
    restores_as(&env, &s4, &src, &env.path("exp4"));
    restores_as(&env, &s5, &src, &env.path("exp5"));
}

/// Issue 10, item 9, a lost pack of file data: check fails; `repair
/// index`, `repair snapshots --forget` and check pass; every file not in
/// the lost pack restores byte for byte, and the lost ones are named.
#[test]
fn a_lost_data_pack_is_repaired_and_every_other_file_restores() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = env.path("src");
    let sub = src.join("sub");
    let names: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    write_files(&sub, &names, 1);
    let other = env.path("other");
    write_files(&other, &["o0", "o1"], 500);
    let s0 = backup(&env, &other);
    let s1 = backup(&env, &src);
    keep_copy(&src, &env.path("exp1"));
    write_files(&sub, &["g0", "g1", "g2"], 300);
    let s2 = backup(&env, &src);
    keep_copy(&src, &env.path("exp2"));
    write_files(&sub, &["f19"], 400);
    let s3 = backup(&env, &src);
    keep_copy(&src, &env.path("exp3"));

    // A pack of s1's file data that holds no trees.
    let (lost_pack, per_snapshot) = {
        let repo = open(&env);
        let trees = tree_packs(&repo);
        let s1_files = file_packs(&repo, &s1, &sub);
        let pack = s1_files
            .values()
            .flatten()
            .find(|p| !trees.contains(p))
            .copied()
            .expect("a pack with data only");
        let mut per: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for s in [&s1, &s2, &s3] {
            let lost = file_packs(&repo, s, &sub)
                .into_iter()
                .filter(|(_, packs)| packs.contains(&pack))
                .map(|(f, _)| sub.join(f).to_str().unwrap().to_string())
                .collect();
            per.insert(s.to_string(), lost);
        }
        (pack, per)
    };
    assert!(!per_snapshot[&s1].is_empty());
    fs::remove_file(pack_path(&env, &lost_pack)).unwrap();

    let (code, out) = code_and_output(&env, &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("pack {lost_pack} is missing")),
        "{out}"
    );

    let out = env.ok(&["repair", "index"]);
    assert!(
        out.contains(&format!("pack {lost_pack} is missing: its blobs are lost")),
        "{out}"
    );
    let (code, out) = code_and_output(&env, &["check"]);
    assert_eq!(code, 1, "the snapshots are still damaged: {out}");

    let summary = repair_snapshots(&env, &["--forget"]);
    assert_eq!(summary["snapshots"], 4, "{summary}");
    for (s, exp) in [(&s1, "exp1"), (&s2, "exp2"), (&s3, "exp3")] {
        let lost = lost_of(&summary, s);
        let named: BTreeSet<String> = lost.keys().cloned().collect();
        assert_eq!(named, per_snapshot[s.as_str()], "{summary}");
        for reason in lost.values() {
            assert!(
                reason.starts_with("file left out: 1 of its 1 data blobs"),
                "{reason}"
            );
        }
        let Some(copy) = copy_of(&summary, s) else {
            assert!(named.is_empty());
            continue;
        };
        assert!(
            !snapshot_ids(&env).contains(s.as_str()),
            "original forgotten"
        );
        let expected = env.path(&format!("{exp}-repaired"));
        keep_copy(&env.path(exp), &expected);
        assert!(expect_losses(&expected, &src, &lost));
        restores_as(&env, &copy, &src, &expected);
        // The copy says what it is.
        let snap: Value = serde_json::from_str(&env.ok(&["cat", "snapshot", &copy])).unwrap();
        assert!(
            snap["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "repaired"),
            "{snap}"
        );
        let orig_files = 20 + if s == &s1 { 0 } else { 3 };
        assert_eq!(
            snap["summary"]["files"].as_u64().unwrap(),
            orig_files - lost.len() as u64,
            "{snap}"
        );
        assert_eq!(snap["summary"]["errors"], lost.len() as u64, "{snap}");
    }
    // The snapshot of other/ did not need the lost pack: left alone (as
    // is any snapshot none of whose files were in it).
    let untouched = per_snapshot.values().filter(|l| l.is_empty()).count() as u64;
    assert_eq!(summary["intact"], 1 + untouched, "{summary}");
    assert!(snapshot_ids(&env).contains(&s0));
    let (code, out) = code_and_output(&env, &["check", "--read-data"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 errors, 0 warnings"), "{out}");

    // Nothing is left to repair, and a new backup stores the lost files
    // again (the repaired copy is its parent and lacks them).
    let again = repair_snapshots(&env, &[]);
    assert_eq!(again["repaired"].as_array().unwrap().len(), 0, "{again}");
    let s4 = backup(&env, &src);
    restores_as(&env, &s4, &src, &env.path("exp3"));
    let (code, out) = code_and_output(&env, &["check", "--read-data"]);
    assert_eq!(code, 0, "{out}");
}

/// Issue 10, item 9, a lost pack holding a directory's tree: the directory
/// comes back empty, with its metadata, in the repaired snapshot; files
/// outside it restore byte for byte.
#[test]
fn a_lost_tree_pack_empties_the_directory_and_keeps_the_rest() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = env.path("src");
    let sub = src.join("sub");
    write_files(&sub, &["f0", "f1", "f2", "f3", "f4", "f5"], 1);
    write_files(&src.join("keep"), &["k0", "k1", "k2"], 100);
    let s1 = backup(&env, &src);
    keep_copy(&src, &env.path("exp1"));
    // The second backup reuses sub/'s tree from the first one's packs.
    write_files(&src.join("new"), &["n0", "n1"], 200);
    let s2 = backup(&env, &src);
    keep_copy(&src, &env.path("exp2"));
    let lost_pack = {
        let repo = open(&env);
        let t = tree_at(&repo, &s2, &sub);
        assert_eq!(t, tree_at(&repo, &s1, &sub));
        repo.index().get(BlobType::Tree, &t).unwrap().pack
    };
    fs::remove_file(pack_path(&env, &lost_pack)).unwrap();
    let (code, out) = code_and_output(&env, &["check"]);
    assert_eq!(code, 1, "{out}");

    env.ok(&["repair", "index"]);
    let summary = repair_snapshots(&env, &["--forget"]);
    let lost2 = lost_of(&summary, &s2);
    let sub_s = sub.to_str().unwrap().to_string();
    assert!(
        lost2
            .get(&sub_s)
            .is_some_and(|r| r.starts_with("directory emptied: tree blob")),
        "{summary}"
    );
    for p in lost2.keys() {
        assert!(
            !p.contains("/new/"),
            "the second backup's files are intact: {p}"
        );
    }
    let (code, out) = code_and_output(&env, &["check", "--read-data"]);
    assert_eq!(code, 0, "{out}");

    let copy2 = copy_of(&summary, &s2).unwrap();
    let expected = env.path("exp2-repaired");
    keep_copy(&env.path("exp2"), &expected);
    assert!(expect_losses(&expected, &src, &lost2));
    assert!(expected.join("sub").is_dir());
    restores_as(&env, &copy2, &src, &expected);
    // The first snapshot: repaired too (its sub/ is gone as well); what is
    // left of it restores.
    let lost1 = lost_of(&summary, &s1);
    assert!(!lost1.is_empty());
    let copy1 = copy_of(&summary, &s1).unwrap();
    let expected = env.path("exp1-repaired");
    keep_copy(&env.path("exp1"), &expected);
    if expect_losses(&expected, &src, &lost1) {
        restores_as(&env, &copy1, &src, &expected);
    }
}

/// A repair of snapshots killed after it stored the repaired copies and
/// before it deleted the originals: run again, it deletes the originals
/// and writes no second copy.
#[test]
fn a_snapshot_repair_killed_before_forgetting_is_finished_by_running_it_again() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = env.path("src");
    let names: Vec<String> = (0..10).map(|i| format!("f{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    write_files(&src, &names, 1);
    let s1 = backup(&env, &src);
    let pack = {
        let repo = open(&env);
        let trees = tree_packs(&repo);
        let files = file_packs(&repo, &s1, &src);
        files
            .values()
            .flatten()
            .find(|p| !trees.contains(p))
            .copied()
            .unwrap()
    };
    fs::remove_file(pack_path(&env, &pack)).unwrap();
    env.ok(&["repair", "index"]);
    let out = env
        .cmd()
        .env("FAILPOINTS", "repair::before_forget=return(kill)")
        .args(["repair", "snapshots", "--forget"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "killed");
    let after_crash = snapshot_ids(&env);
    assert_eq!(after_crash.len(), 2, "original and copy");
    assert!(after_crash.contains(&s1));

    let summary = repair_snapshots(&env, &["--forget"]);
    let r = &summary["repaired"][0];
    assert_eq!(r["original"], s1.as_str(), "{summary}");
    assert_eq!(r["earlier"], true, "{summary}");
    let copy = r["id"].as_str().unwrap();
    assert_eq!(
        snapshot_ids(&env),
        BTreeSet::from([copy.to_string()]),
        "only the copy is left"
    );
    let (code, out) = code_and_output(&env, &["check"]);
    assert_eq!(code, 0, "{out}");
}

/// `repair index` killed after writing the new index files and before
/// deleting the old ones: the old ones are superseded, so readers ignore
/// them and check only warns; running it again tidies up.
#[test]
fn an_index_repair_killed_before_deleting_the_old_index_files_leaves_a_sound_repository() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = env.path("src");
    write_files(&src, &["f0", "f1", "f2", "f3", "f4"], 1);
    let s1 = backup(&env, &src);
    keep_copy(&src, &env.path("exp1"));
    // One index file of two is lost: its packs are indexed by no file.
    write_files(&src, &["g0", "g1", "g2"], 100);
    let s2 = backup(&env, &src);
    keep_copy(&src, &env.path("exp2"));
    let newest = fs::read_dir(env.repo.join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs::metadata(p).unwrap().modified().unwrap())
        .unwrap();
    fs::remove_file(&newest).unwrap();
    let (code, out) = code_and_output(&env, &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is in no index file"), "{out}");
    let old = index_ids(&env);

    let out = env
        .cmd()
        .env("FAILPOINTS", "repair::index_before_delete=return(kill)")
        .args(["repair", "index"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "killed");
    assert!(index_ids(&env).is_superset(&old));
    let (code, out) = code_and_output(&env, &["check", "--read-data"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is superseded by index file"), "{out}");
    restores_as(&env, &s1, &src, &env.path("exp1"));
    restores_as(&env, &s2, &src, &env.path("exp2"));

    let r: Value = serde_json::from_str(env.ok(&["repair", "index", "--json"]).trim()).unwrap();
    assert_eq!(r["unchanged"], false, "{r}");
    assert!(index_ids(&env).is_disjoint(&old));
    let (code, out) = code_and_output(&env, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 errors, 0 warnings"), "{out}");
    // A third run has nothing to do and writes nothing.
    let before = index_ids(&env);
    let r: Value = serde_json::from_str(env.ok(&["repair", "index", "--json"]).trim()).unwrap();
    assert_eq!(r["unchanged"], true, "{r}");
    assert_eq!(index_ids(&env), before);
}

/// A pack whose header is damaged (its trailer cut off) but whose blobs
/// are intact: `repair index` keeps its old entries instead of dropping
/// them, says so, and its files still restore.
#[test]
fn a_pack_with_a_damaged_header_keeps_its_entries_through_repair_index() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = env.path("src");
    let names: Vec<String> = (0..12).map(|i| format!("f{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    write_files(&src, &names, 1);
    let s1 = backup(&env, &src);
    keep_copy(&src, &env.path("exp1"));
    let pack = {
        let repo = open(&env);
        let trees = tree_packs(&repo);
        file_packs(&repo, &s1, &src)
            .values()
            .flatten()
            .find(|p| !trees.contains(p))
            .copied()
            .unwrap()
    };
    let f = fs::File::options()
        .write(true)
        .open(pack_path(&env, &pack))
        .unwrap();
    f.set_len(f.metadata().unwrap().len() - 10).unwrap();
    let r: Value = serde_json::from_str(env.ok(&["repair", "index", "--json"]).trim()).unwrap();
    let u = &r["packs_unreadable"][0];
    assert_eq!(u["pack"], pack.to_hex(), "{r}");
    assert_eq!(u["kept_old_entries"], true, "{r}");
    // Dry runs and repairs change no snapshot here: every blob is indexed.
    let summary = repair_snapshots(&env, &["--dry-run"]);
    assert_eq!(summary["intact"], 1, "{summary}");
    restores_as(&env, &s1, &src, &env.path("exp1"));
}

/// A snapshot object that cannot be decrypted cannot be forgotten by ID
/// (forget reads it); `repair snapshots --forget` removes it.
#[test]
fn a_snapshot_object_that_fails_authentication_is_removed_by_repair_snapshots_forget() {
    let env = Env::new();
    let src = env.path("src");
    write_files(&src, &["f0"], 1);
    let s1 = backup(&env, &src);
    let s2 = backup(&env, &src);
    let p = env.repo.join("snapshots").join(&s1);
    let mut b = fs::read(&p).unwrap();
    b[30] ^= 1;
    fs::write(&p, b).unwrap();
    let (code, out) = code_and_output(&env, &["check"]);
    assert_eq!(code, 1, "{out}");
    let dry = repair_snapshots(&env, &["--dry-run"]);
    assert_eq!(dry["unreadable"][0]["id"], s1.as_str(), "{dry}");
    assert!(snapshot_ids(&env).contains(&s1));
    let (code, out) = code_and_output(&env, &["repair", "snapshots", "--forget"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cannot be read"), "{out}");
    assert_eq!(snapshot_ids(&env), BTreeSet::from([s2.clone()]));
    let (code, out) = code_and_output(&env, &["check"]);
    assert_eq!(code, 0, "{out}");
}

/// Bad input to `repair snapshots` is a clear error, not a panic.
#[test]
fn repair_snapshots_names_an_unknown_snapshot() {
    let env = Env::new();
    let (code, out) = code_and_output(&env, &["repair", "snapshots", "abcd1234"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no snapshot matches \"abcd1234\""), "{out}");
    let (code, out) = code_and_output(&env, &["repair", "snapshots", "xy"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is not a snapshot ID"), "{out}");
}

/// Issue 10, item 2 (prune): after superseded index files are copied back,
/// prune used to read them as live, find the packs they list gone, and
/// stop ("indexed pack … is missing"). It ignores them as every reader
/// does, deletes them with the other old index files, and leaves a clean
/// repository.
#[test]
fn a_prune_after_replayed_index_files_ignores_and_deletes_them() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = env.path("src");
    write_files(&src.join("a"), &["a0", "a1", "a2", "a3"], 1);
    write_files(&src.join("b"), &["b0", "b1", "b2", "b3"], 100);
    let s1 = backup(&env, &src);
    let old_index = env.path("old-index");
    keep_copy(&env.repo.join("index"), &old_index);
    fs::remove_dir_all(src.join("a")).unwrap();
    let s2 = backup(&env, &src);
    keep_copy(&src, &env.path("exp2"));
    env.ok(&["forget", &s1]);
    age_past_prune_grace(&env.repo);
    env.ok(&["prune", "--max-unused", "0%"]);
    let after_prune = index_ids(&env);
    let mut replayed = Vec::new();
    for e in fs::read_dir(&old_index).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if !after_prune.contains(&name) {
            fs::copy(e.path(), env.repo.join("index").join(&name)).unwrap();
            replayed.push(name);
        }
    }
    assert!(!replayed.is_empty());

    age_past_prune_grace(&env.repo);
    let (code, out) = code_and_output(&env, &["prune", "--max-unused", "0%"]);
    assert_eq!(code, 0, "{out}");
    for id in &replayed {
        assert!(!env.repo.join("index").join(id).exists(), "{id} is left");
    }
    let (code, out) = code_and_output(&env, &["check", "--read-data"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 errors, 0 warnings"), "{out}");
    restores_as(&env, &s2, &src, &env.path("exp2"));
}
