//! A repository stays healthy for years: retention frees space, crashes at
//! any moment cost only the interrupted run, concurrent writers coexist,
//! and a full disk is a clean error.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use cairn::backend::Backend;
use cairn::backend::mem::MemBackend;
use cairn::crypto::KdfParams;
use cairn::ops::NoProgress;
use cairn::ops::backup::{BackupOptions, backup};
use cairn::ops::check::{CheckOptions, ReadData, check};
use cairn::repo::{InitOptions, Repository};
use common::*;

fn spawn(env: &Env, args: &[&str]) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("cairn"))
        .env("CAIRN_REPOSITORY", &env.repo)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_INSECURE_TEST_KDF", "1")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn check_ok(env: &Env, read_data: bool) {
    let mut args = vec!["check"];
    if read_data {
        args.push("--read-data");
    }
    let out = env.run(&args);
    assert!(
        out.status.success(),
        "check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_tree(dir: &Path, files: u64, size: usize, seed: u64) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..files {
        fs::write(
            dir.join(format!("f{i:03}")),
            random_bytes(size, seed * 1000 + i),
        )
        .unwrap();
    }
}

/// Restore every snapshot and compare each with `src`.
fn all_snapshots_restore(env: &Env, src: &Path) -> usize {
    let snaps: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    let snaps = snaps.as_array().unwrap();
    for (i, s) in snaps.iter().enumerate() {
        let target = env.path(&format!("restore-{i}"));
        env.ok(&[
            "restore",
            s["id"].as_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
        ]);
        assert_same_tree(src, &restored(&target, src));
        fs::remove_dir_all(&target).unwrap();
    }
    snaps.len()
}

#[test]
fn forget_keep_last_1_with_prune_shrinks_to_one_snapshot() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = env.path("src");
    for round in 0..3 {
        if src.exists() {
            fs::remove_dir_all(&src).unwrap();
        }
        make_tree(&src, 8, 700_000, round);
        env.backup_json(&[&src], &[]);
    }
    let before = env.data_bytes();
    age_past_prune_grace(&env.repo);
    let out = env.ok(&[
        "forget",
        "--keep-last",
        "1",
        "--prune",
        "--max-unused",
        "0%",
    ]);
    assert!(out.contains("removed 2 snapshots"), "{out}");
    let after = env.data_bytes();
    let one = 8 * 700_000u64;
    assert!(before > 3 * one - one / 10, "{before}");
    assert!(
        after >= one && after < one + one / 10,
        "after prune {after}, one snapshot {one}"
    );
    check_ok(&env, true);
    assert_eq!(all_snapshots_restore(&env, &src), 1);
    // Nothing left to prune.
    let out = env.ok(&["prune", "--dry-run"]);
    assert!(out.contains("0 packs deleted, 0 repacked"), "{out}");
}

/// `--max-unused` is a share of the whole repository, as restic's: a little
/// waste spread over packs is left alone (nothing is rewritten, not even
/// the index), and repacking starts with the most wasteful packs.
#[test]
fn prune_leaves_a_little_waste_alone_and_repacks_the_worst_packs_first() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = env.path("src");
    make_tree(&src, 60, 100_000, 1);
    env.backup_json(&[&src], &[]);
    // One file in sixty goes: under 2% of the data, about a tenth of its pack.
    fs::remove_file(src.join("f007")).unwrap();
    env.backup_json(&[&src], &[]);
    env.ok(&["forget", "--keep-last", "1"]);
    age_past_prune_grace(&env.repo);
    // The first prune may delete a pack holding only the old snapshot's
    // trees, but rewrites no pack.
    let prune = || -> serde_json::Value {
        serde_json::from_str(env.ok(&["prune", "--json"]).trim()).unwrap()
    };
    let r = prune();
    assert_eq!(r["packs_repacked"], 0, "{r}");
    // What is left is the file's blob: the next prune changes nothing at all.
    let index_before = walk(&env.repo.join("index"));
    let packs_before = walk(&env.repo.join("data"));
    let r = prune();
    assert_eq!(r["packs_repacked"], 0, "{r}");
    assert_eq!(r["packs_deleted"], 0, "{r}");
    assert_eq!(r["index_files_replaced"], 0, "{r}");
    assert!(r["unused_blobs"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(
        walk(&env.repo.join("index")),
        index_before,
        "index untouched"
    );
    assert_eq!(
        walk(&env.repo.join("data")),
        packs_before,
        "packs untouched"
    );
    check_ok(&env, true);
    // The waste is still seen (the file's blob and the old snapshot's
    // trees): a stricter limit repacks their packs, and nothing unused is
    // left.
    let r: serde_json::Value =
        serde_json::from_str(env.ok(&["prune", "--json", "--max-unused", "0%"]).trim()).unwrap();
    assert!(r["packs_repacked"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["unused_blobs"].as_u64().unwrap() >= 1, "{r}");
    let r: serde_json::Value =
        serde_json::from_str(env.ok(&["prune", "--json", "--dry-run"]).trim()).unwrap();
    assert_eq!(r["unused_blobs"], 0, "{r}");
    check_ok(&env, true);
    assert_eq!(all_snapshots_restore(&env, &src), 1);
}

#[test]
fn prune_repacks_partly_used_packs() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "4"]);
    let src = env.path("src");
    make_tree(&src, 40, 100_000, 1);
    env.backup_json(&[&src], &[]);
    // Half the files go; their blobs share packs with the other half.
    for i in (0..40).step_by(2) {
        fs::remove_file(src.join(format!("f{i:03}"))).unwrap();
    }
    env.backup_json(&[&src], &[]);
    env.ok(&["forget", "--keep-last", "1"]);
    age_past_prune_grace(&env.repo);
    let out = env.ok(&["prune", "--json"]);
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(r["packs_repacked"].as_u64().unwrap() >= 1, "{r}");
    assert!(
        r["bytes_after"].as_u64().unwrap() < r["bytes_before"].as_u64().unwrap() * 6 / 10,
        "{r}"
    );
    check_ok(&env, true);
    assert_eq!(all_snapshots_restore(&env, &src), 1);
}

/// SIGKILL `args` at `points` moments spread over its normal duration;
/// `prepare(i)` runs before attempt `i` (and before the timing run, with
/// `None`) and returns the arguments to use.
fn kill_at_many_points(
    env: &Env,
    points: u32,
    prepare: &mut dyn FnMut(Option<u32>) -> Vec<String>,
    after_each: &mut dyn FnMut(u32),
) {
    let args = prepare(None);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = Instant::now();
    let full = spawn(env, &args).wait_with_output().unwrap();
    assert!(
        full.status.success(),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    let duration = start.elapsed();
    for i in 0..points {
        let args = prepare(Some(i));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn(env, &args);
        std::thread::sleep(duration.mul_f64(f64::from(i) / f64::from(points)));
        let _ = child.kill();
        let _ = child.wait();
        after_each(i);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn backups_killed_at_twenty_moments_leave_a_healthy_repository() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    // Every attempt backs up a fresh tree, so every attempt writes packs
    // and index files when the kill arrives.
    let mut sources = Vec::new();
    kill_at_many_points(
        &env,
        24,
        &mut |i| {
            let src = env.path(&format!("src-{}", i.map_or(99, |i| i)));
            make_tree(&src, 12, 1_000_000, u64::from(i.unwrap_or(99)) * 7 + 1);
            make_tree(
                &src.join("small"),
                100,
                3_000,
                u64::from(i.unwrap_or(99)) * 7 + 2,
            );
            sources.push(src.clone());
            vec!["backup".into(), src.to_str().unwrap().into()]
        },
        &mut |i| {
            let out = env.run(&["check"]);
            assert!(
                out.status.success(),
                "check after kill {i}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        },
    );
    // The next backup succeeds; every snapshot that completed restores.
    let last = sources.last().unwrap().clone();
    env.backup_json(&[&last], &[]);
    check_ok(&env, true);
    let snaps: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    let snaps = snaps.as_array().unwrap();
    assert!(snaps.len() >= 2, "{} snapshots", snaps.len());
    eprintln!("{} of 26 backups completed", snaps.len());
    for (k, s) in snaps.iter().enumerate() {
        let src = Path::new(s["paths"][0].as_str().unwrap());
        let target = env.path(&format!("restore-{k}"));
        env.ok(&[
            "restore",
            s["id"].as_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
        ]);
        assert_same_tree(src, &restored(&target, src));
        fs::remove_dir_all(&target).unwrap();
    }
    // Prune tidies what the killed runs left, once it is older than the
    // grace period (before, it may be a running backup's).
    age_past_prune_grace(&env.repo);
    env.ok(&["prune"]);
    let out = env.run(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 errors, 0 warnings"), "{text}");
}

#[test]
fn prunes_killed_midway_leave_a_healthy_repository() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = env.path("src");
    for round in 0..4 {
        make_tree(&src.join(format!("r{round}")), 10, 400_000, round);
        env.backup_json(&[&src], &[]);
        fs::remove_file(src.join(format!("r{round}/f000"))).unwrap();
    }
    env.backup_json(&[&src], &[]);
    env.ok(&["forget", "--keep-last", "1"]);
    age_past_prune_grace(&env.repo);
    // Every attempt starts from the same unpruned repository.
    let pristine = env.path("pristine");
    copy_dir(&env.repo, &pristine);
    kill_at_many_points(
        &env,
        12,
        &mut |_| {
            fs::remove_dir_all(&env.repo).unwrap();
            copy_dir(&pristine, &env.repo);
            vec!["prune".into(), "--max-unused".into(), "0%".into()]
        },
        &mut |i| {
            let out = env.run(&["check", "--read-data"]);
            assert!(
                out.status.success(),
                "check after prune kill {i}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(all_snapshots_restore(&env, &src), 1);
        },
    );
    env.ok(&["prune", "--max-unused", "0%"]);
    check_ok(&env, true);
    assert_eq!(all_snapshots_restore(&env, &src), 1);
}

/// Forget the snapshot taken of `src`.
fn forget_snapshot_of(env: &Env, src: &Path) {
    let snaps: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    let id = snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["paths"][0].as_str() == src.to_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(&["forget", &id]);
}

/// Two backups at once; then a backup and a prune racing, in both orders,
/// each interleaving fixed by a failpoint and by waiting for the waiter to
/// say it waits (not by sleeping): a prune that comes while a backup is
/// stopped between its packs and its index waits for the backup; a backup
/// that comes while a prune is stopped between its new index files and its
/// deletions waits for the prune. Nothing is lost either way.
#[test]
fn concurrent_backups_and_a_racing_prune() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let s1 = env.path("s1");
    let s2 = env.path("s2");
    make_tree(&s1, 20, 1_000_000, 1);
    make_tree(&s2, 20, 1_000_000, 2);
    // Shared locks coexist.
    let c1 = spawn(&env, &["backup", s1.to_str().unwrap()]);
    let c2 = spawn(&env, &["backup", s2.to_str().unwrap()]);
    for c in [c1, c2] {
        success(c.wait_with_output().unwrap());
    }
    // The next source holds s1's files and more: its backup uses s1's blobs.
    let s3 = env.path("s3");
    copy_dir(&s1, &s3);
    make_tree(&s3.join("new"), 10, 1_000_000, 3);
    forget_snapshot_of(&env, &s2);
    age_past_prune_grace(&env.repo);

    // 1. A prune while a backup is stopped with its packs stored and not
    //    yet indexed: the prune waits, and deletes nothing meanwhile.
    let mut backup = env.spawn(
        &["backup", s3.to_str().unwrap()],
        &[("FAILPOINTS", "packer::before_index=return(stop)")],
    );
    wait_stopped(&mut backup);
    let packs = files_below(&env.repo.join("data"));
    let mut prune = env.spawn(&["prune", "--retry-lock", "2m", "--max-unused", "0%"], &[]);
    let mut prune_err = watch_stderr(&mut prune);
    prune_err.wait_for("waiting for the repository lock");
    assert!(packs.iter().all(|p| p.exists()), "prune deleted packs");
    resume(&backup);
    success(backup.wait_with_output().unwrap());
    assert!(prune.wait().unwrap().success(), "{}", prune_err.all());

    // 2. A backup while a prune is stopped with its new index files written
    //    and the old ones not yet deleted: the backup waits.
    let s4 = env.path("s4");
    copy_dir(&s3, &s4);
    make_tree(&s4.join("newer"), 5, 1_000_000, 4);
    forget_snapshot_of(&env, &s1);
    age_past_prune_grace(&env.repo);
    let mut prune = env.spawn(
        &["prune", "--max-unused", "0%"],
        &[("FAILPOINTS", "prune::before_delete=return(stop)")],
    );
    wait_stopped(&mut prune);
    let mut backup = env.spawn(&["backup", "--retry-lock", "2m", s4.to_str().unwrap()], &[]);
    let mut backup_err = watch_stderr(&mut backup);
    backup_err.wait_for("waiting for the repository lock");
    assert_eq!(fs::read_dir(env.repo.join("snapshots")).unwrap().count(), 1);
    resume(&prune);
    success(prune.wait_with_output().unwrap());
    assert!(backup.wait().unwrap().success(), "{}", backup_err.all());

    let out = env.ok(&["check", "--read-data"]);
    assert!(out.contains("0 errors, 0 warnings"), "{out}");
    assert_eq!(every_snapshot_restores(&env), 2);
}

#[test]
fn an_exclusive_lock_makes_other_commands_exit_11() {
    let env = Env::uninit();
    env.ok(&["init"]);
    let src = env.path("src");
    make_tree(&src, 5, 1000, 1);
    env.backup_json(&[&src], &[]);
    // Hold an exclusive lock from this process (a live PID).
    let backend = Arc::new(cairn::backend::local::LocalBackend::new(&env.repo));
    let repo = Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    let lock = cairn::repo::lock::RepoLock::acquire(&repo, true).unwrap();
    let out = env.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(11),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("locked"));
    drop(lock);
    env.ok(&["backup", src.to_str().unwrap()]);
}

#[test]
fn a_full_disk_during_backup_is_a_clean_error_and_the_repository_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    make_tree(&src, 20, 500_000, 4);
    let backend = Arc::new(MemBackend::new());
    let opts = InitOptions {
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        pack_size: 1 << 20,
        ..InitOptions::default()
    };
    let mut repo = Repository::init(backend.clone(), b"pw", &opts).unwrap();
    let bo = BackupOptions {
        paths: vec![src.clone()],
        ..BackupOptions::default()
    };
    backup(&mut repo.lock_shared().unwrap(), &bo, &NoProgress).unwrap();
    // The disk fills up 3 MB into the next backup.
    make_tree(&src.join("more"), 20, 500_000, 5);
    backend.fail_writes_after_bytes(3_000_000);
    let err = backup(&mut repo.lock_shared().unwrap(), &bo, &NoProgress).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("No space left on device"), "{msg}");
    assert_eq!(
        repo.list_snapshot_ids().unwrap().len(),
        1,
        "no snapshot from the failed run"
    );
    // Space comes back: the repository checks clean (bar leftovers) and
    // the next backup succeeds.
    backend.fail_writes_after_bytes(-1);
    let mut repo = Repository::open(backend.clone(), b"pw").unwrap();
    let r = check(
        &mut repo.lock_shared().unwrap(),
        &CheckOptions {
            read_data: ReadData::All,
        },
        &NoProgress,
    )
    .unwrap();
    assert_eq!(r.errors(), 0, "{:?}", r.problems);
    backup(&mut repo.lock_shared().unwrap(), &bo, &NoProgress).unwrap();
    let r = check(
        &mut repo.lock_shared().unwrap(),
        &CheckOptions {
            read_data: ReadData::All,
        },
        &NoProgress,
    )
    .unwrap();
    assert_eq!(r.errors(), 0, "{:?}", r.problems);
    assert_eq!(repo.list_snapshot_ids().unwrap().len(), 2);
    assert!(
        backend.list("locks").unwrap().is_empty(),
        "locks released after the failure"
    );
}

#[test]
fn keys_can_be_added_changed_and_removed_but_never_the_last() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 3, 10_000, 1);
    env.backup_json(&[&src], &[]);
    let as_user = |pass: &str, args: &[&str]| {
        env.cmd()
            .env("CAIRN_PASSWORD", pass)
            .args(args)
            .output()
            .unwrap()
    };

    // A second key opens the same repository.
    let out = env
        .cmd()
        .env("CAIRN_NEW_PASSWORD", "second")
        .args(["key", "add"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["key", "list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let out = as_user("second", &["snapshots", "--json"]);
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s.as_array().unwrap().len(), 1);

    // The key in use cannot be removed; another one can.
    let first = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = env.run(&["key", "remove", &first[..8]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("opened the repository with"));
    let out = as_user("second", &["key", "remove", &first[..8]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        env.run(&["snapshots"]).status.code(),
        Some(12),
        "the removed passphrase no longer opens it"
    );

    // The last key cannot go; passwd replaces it.
    let listed: serde_json::Value =
        serde_json::from_slice(&as_user("second", &["key", "list", "--json"]).stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD", "second")
        .env("CAIRN_NEW_PASSWORD", "third")
        .args(["key", "passwd"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(as_user("second", &["snapshots"]).status.code(), Some(12));
    let out = as_user(
        "third",
        &["dump", "latest", src.join("f000").to_str().unwrap()],
    );
    assert_eq!(out.stdout, random_bytes(10_000, 1000));
    let only = serde_json::from_slice::<serde_json::Value>(
        &as_user("third", &["key", "list", "--json"]).stdout,
    )
    .unwrap();
    let id = only[0]["id"].as_str().unwrap().to_string();
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD", "third")
        .env("CAIRN_NEW_PASSWORD", "fourth")
        .args(["key", "add"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = as_user("fourth", &["key", "remove", &id[..8]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = serde_json::from_slice::<serde_json::Value>(
        &as_user("fourth", &["key", "list", "--json"]).stdout,
    )
    .unwrap();
    let last_id = last[0]["id"].as_str().unwrap().to_string();
    let out = as_user("fourth", &["key", "remove", &last_id[..8]]);
    assert_eq!(out.status.code(), Some(1), "never the last key");
}

#[test]
fn stats_report_dedup_and_compression() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("text"),
        "compressible line of text\n".repeat(100_000),
    )
    .unwrap();
    fs::write(src.join("random"), random_bytes(1_000_000, 3)).unwrap();
    for _ in 0..3 {
        env.backup_json(&[&src], &["--force"]);
    }
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["stats", "--json"])).unwrap();
    assert_eq!(v["snapshots"], 3);
    let logical = v["logical_bytes"].as_u64().unwrap();
    assert_eq!(logical, 3 * (2_600_000 + 1_000_000));
    let dedup = v["dedup_ratio"].as_f64().unwrap();
    assert!((2.9..=3.1).contains(&dedup), "{v}");
    assert!(v["compression_ratio"].as_f64().unwrap() > 1.5, "{v}");
    assert!(v["stored_pack_bytes"].as_u64().unwrap() < logical / 3);
    let human = env.ok(&["stats"]);
    assert!(
        human.contains("snapshots:") && human.contains("compression"),
        "{human}"
    );
}

/// Regression: with an index file gone, packs whose blobs snapshots still
/// use looked unreferenced, and prune would have deleted them.
#[test]
fn prune_refuses_to_run_when_used_blobs_are_unindexed() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let a = env.path("a");
    make_tree(&a, 5, 500_000, 1);
    let first = env.backup_json(&[&a], &[]);
    let first_index: Vec<_> = walk(&env.repo.join("index"));
    // The second snapshot adds a file: its new trees and the new file are
    // in a second index file; the first five files' data only in the first.
    fs::write(a.join("new"), random_bytes(500_000, 9)).unwrap();
    env.backup_json(&[&a], &[]);
    env.ok(&["forget", first["snapshot_id"].as_str().unwrap()]);
    for f in first_index {
        fs::remove_file(f).unwrap();
    }
    let packs_before = walk(&env.repo.join("data"))
        .iter()
        .filter(|p| p.is_file())
        .count();
    let out = env.run(&["prune"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in no index file") && err.contains("nothing was deleted"),
        "{err}"
    );
    let packs_after = walk(&env.repo.join("data"))
        .iter()
        .filter(|p| p.is_file())
        .count();
    assert_eq!(packs_before, packs_after);
}
