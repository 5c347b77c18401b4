//! Locks against the attacks and accidents of issue 10 (Trust), item 1: a
//! prune must never delete what a running backup has stored, and a backup
//! that can no longer trust its lock must not commit.
//!
//! Each scenario stops a real `cairn backup` at a failpoint after its packs
//! are stored and before they are indexed (`packer::before_index`), runs a
//! prune as the scenario describes, lets the backup go on, and ends with
//! `check --read-data` clean and every listed snapshot restored byte for
//! byte: either the backup aborted, or prune kept its packs.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::Duration;

use common::*;

const BEFORE_INDEX: &str = "packer::before_index=return(stop)";

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

/// A repository with one finished snapshot of `keep`, and a backup of
/// `src` stopped with its packs stored but not indexed.
fn repository_with_a_stopped_backup(env: &Env, envs: &[(&str, &str)]) -> (PathBuf, Child) {
    env.ok(&["init", "--pack-size", "1"]);
    let keep = env.path("keep");
    make_tree(&keep, 4, 300_000, 1);
    env.backup_json(&[&keep], &[]);
    let src = env.path("src");
    make_tree(&src, 6, 500_000, 2);
    let mut all = vec![("FAILPOINTS", BEFORE_INDEX)];
    all.extend_from_slice(envs);
    let mut backup = env.spawn(&["backup", src.to_str().unwrap()], &all);
    wait_stopped(&mut backup);
    (src, backup)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `check --read-data` succeeds with no errors; warnings only if `warnings`
/// names what they may be about.
fn check_clean(env: &Env, warnings: Option<&str>) {
    let out = env.run(&["check", "--read-data"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "check failed:\n{stdout}{}",
        text(&out.stderr)
    );
    assert!(stdout.contains(" 0 errors"), "{stdout}");
    match warnings {
        None => assert!(stdout.contains("0 errors, 0 warnings"), "{stdout}"),
        Some(about) => {
            // `about` may list several phrases, separated by `|`.
            for line in stdout.lines().filter(|l| l.starts_with("warning")) {
                assert!(
                    about.split('|').any(|a| line.contains(a)),
                    "unexpected warning: {line}"
                );
            }
        }
    }
}

fn snapshot_count(env: &Env) -> usize {
    fs::read_dir(env.repo.join("snapshots")).unwrap().count()
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

/// The packs in `before` that are gone now.
fn deleted(before: &[PathBuf]) -> Vec<&PathBuf> {
    before.iter().filter(|p| !p.exists()).collect()
}

/// Two containers on one host (same host name, other PID namespace): the
/// prune cannot see the backup's process, which used to make its lock look
/// stale, and prune deleted the backup's packs; the backup then wrote a
/// snapshot over missing data.
#[test]
fn a_prune_in_another_pid_namespace_keeps_a_running_backups_packs() {
    let test = "a_prune_in_another_pid_namespace_keeps_a_running_backups_packs";
    if !require(test, &["unshare"], true) {
        return;
    }
    let env = Env::uninit();
    let (_src, backup) = repository_with_a_stopped_backup(&env, &[]);
    let packs = files_below(&env.repo.join("data"));
    let out = env
        .wrapped_cmd(&["unshare", "-p", "-f", "--mount-proc"])
        .arg("prune")
        .output()
        .unwrap();
    // The backup's lock is live: same host, but another PID namespace, so
    // its PID says nothing here.
    assert_eq!(out.status.code(), Some(11), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("locked"),
        "{}",
        text(&out.stderr)
    );
    assert!(deleted(&packs).is_empty(), "prune deleted packs");
    resume(&backup);
    success(finish(backup));
    env.ok(&["prune"]);
    check_clean(&env, None);
    assert_eq!(every_snapshot_restores(&env), 2);
}

/// A prune on a host whose clock runs two hours ahead used to see every
/// lock as older than 30 minutes, and deleted a running backup's packs.
/// Staleness by time is now judged by the storage's clock.
#[test]
fn a_prune_with_a_clock_two_hours_ahead_keeps_a_running_backups_packs() {
    let test = "a_prune_with_a_clock_two_hours_ahead_keeps_a_running_backups_packs";
    if !require(test, &["faketime"], false) {
        return;
    }
    let env = Env::uninit();
    let (_src, backup) = repository_with_a_stopped_backup(&env, &[]);
    let packs = files_below(&env.repo.join("data"));
    let out = env
        .wrapped_cmd(&["faketime", "-f", "+2h"])
        .arg("prune")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("locked"),
        "{}",
        text(&out.stderr)
    );
    assert!(deleted(&packs).is_empty(), "prune deleted packs");
    resume(&backup);
    success(finish(backup));
    // The fast clock's prune, once the backup is done, works as usual.
    let out = env
        .wrapped_cmd(&["faketime", "-f", "+2h"])
        .arg("prune")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    check_clean(&env, None);
    assert_eq!(every_snapshot_restores(&env), 2);
}

/// The libfaketime preload library, if installed.
fn libfaketime() -> Option<PathBuf> {
    let dirs = fs::read_dir("/usr/lib").ok()?;
    dirs.filter_map(|d| d.ok())
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")])
        .find(|p| p.exists())
}

/// A backup paused past the stale age (a suspended laptop, `SIGSTOP`): a
/// prune rightly takes its lock for stale. The prune must still keep the
/// backup's fresh packs (they are younger than the grace period by the
/// storage's clock), and the backup, when it wakes, must see that its lock
/// was not refreshed in time and abort: no index, no snapshot.
#[test]
fn a_backup_paused_past_the_stale_age_aborts_and_prune_keeps_its_packs() {
    let test = "a_backup_paused_past_the_stale_age_aborts_and_prune_keeps_its_packs";
    if !require(test, &["faketime"], false) {
        return;
    }
    let Some(lib) = libfaketime() else {
        skipped(&format!("{test}: libfaketime.so.1 not found"));
        return;
    };
    let env = Env::uninit();
    // The backup's wall clock is read from this file on every call, so the
    // test can move it forward while the backup is stopped.
    let clock = env.path("backup-clock");
    fs::write(&clock, "+0\n").unwrap();
    let (_src, backup) = repository_with_a_stopped_backup(
        &env,
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("FAKETIME_TIMESTAMP_FILE", clock.to_str().unwrap()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("NO_FAKE_STAT", "1"),
        ],
    );
    let packs = files_below(&env.repo.join("data"));
    let snapshots_before = snapshot_count(&env);
    // Thirty-one minutes pass for the storage: the backup's lock object
    // was last written that long ago.
    let locks = files_below(&env.repo.join("locks"));
    assert_eq!(locks.len(), 1);
    age_file(&locks[0], Duration::from_secs(31 * 60));
    let out = env.run(&["prune"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("ignoring stale lock"), "{err}");
    assert!(
        deleted(&packs).is_empty(),
        "prune deleted packs younger than its grace period"
    );
    // Forty minutes pass for the backup too; then it wakes up.
    fs::write(&clock, "+2400\n").unwrap();
    resume(&backup);
    let out = finish(backup);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(11), "{err}");
    assert!(
        err.contains("no snapshot was written") && err.contains("not refreshed"),
        "{err}"
    );
    assert_eq!(snapshot_count(&env), snapshots_before);
    check_clean(&env, Some("in no index file"));
    assert_eq!(every_snapshot_restores(&env), 1);
}

/// `cairn unlock --remove-all` run while a backup is working: the backup
/// finds its lock gone at its commit point and writes no snapshot.
#[test]
fn a_backup_whose_lock_was_removed_aborts_without_a_snapshot() {
    let env = Env::uninit();
    env.ok(&["init"]);
    let src = env.path("src");
    make_tree(&src, 3, 100_000, 3);
    let mut backup = env.spawn(
        &["backup", src.to_str().unwrap()],
        &[("FAILPOINTS", "backup::before_snapshot=return(stop)")],
    );
    wait_stopped(&mut backup);
    let out = env.ok(&["unlock", "--remove-all"]);
    assert!(out.contains("1 lock removed"), "{out}");
    resume(&backup);
    let out = finish(backup);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(11), "{err}");
    assert!(
        err.contains("no snapshot was written") && err.contains("removed"),
        "{err}"
    );
    assert_eq!(snapshot_count(&env), 0);
    check_clean(&env, None);
}

fn prune_json(env: &Env) -> serde_json::Value {
    serde_json::from_str(env.ok(&["prune", "--json", "--max-unused", "0%"]).trim()).unwrap()
}

/// Prune's grace period, by the storage's clock: unreferenced packs and
/// packs left by a crashed backup stay until they are six hours old (they
/// may be a running backup's), then go.
#[test]
fn prune_deletes_unreferenced_packs_only_once_they_are_older_than_the_grace_period() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let keep = env.path("keep");
    make_tree(&keep, 3, 300_000, 1);
    env.backup_json(&[&keep], &[]);
    let gone = env.path("gone");
    make_tree(&gone, 4, 400_000, 2);
    let first = env.backup_json(&[&gone], &[]);
    env.ok(&["forget", first["snapshot_id"].as_str().unwrap()]);
    // A backup killed with its packs stored, not indexed.
    let crashed = env.path("crashed");
    make_tree(&crashed, 2, 400_000, 3);
    let out = env
        .cmd()
        .env("FAILPOINTS", "packer::before_index=return(kill)")
        .args(["backup", crashed.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let packs = files_below(&env.repo.join("data"));
    let r = prune_json(&env);
    assert_eq!(r["packs_deleted"], 0, "{r}");
    assert_eq!(r["unindexed_packs_deleted"], 0, "{r}");
    assert!(r["recent_packs_kept"].as_u64().unwrap() >= 4, "{r}");
    assert!(deleted(&packs).is_empty());
    let human = env.ok(&["prune", "--dry-run"]);
    assert!(human.contains("younger than 6 hours"), "{human}");
    check_clean(&env, Some("in no index file"));
    // Six hours and more later, by the storage's clock.
    age_past_prune_grace(&env.repo);
    let r = prune_json(&env);
    assert!(r["packs_deleted"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["unindexed_packs_deleted"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["recent_packs_kept"], 0, "{r}");
    check_clean(&env, None);
    assert_eq!(every_snapshot_restores(&env), 1);
}

/// A lock file Cairn cannot read may be anyone's (another version's, a
/// damaged one): prune refuses to run past it, `unlock` keeps it, and only
/// `unlock --remove-all` removes it. Backups (shared) go on.
#[test]
fn an_unreadable_lock_stops_prune_and_only_unlock_remove_all_removes_it() {
    let env = Env::uninit();
    env.ok(&["init"]);
    let src = env.path("src");
    make_tree(&src, 2, 10_000, 4);
    let name = format!("{:064x}", 7);
    fs::write(env.repo.join("locks").join(&name), [0u8; 90]).unwrap();
    // However old.
    age_file(&env.repo.join("locks").join(&name), PAST_PRUNE_GRACE);
    let out = env.run(&["prune"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(11), "{err}");
    assert!(
        err.contains("cannot be read") && err.contains("unlock --remove-all"),
        "{err}"
    );
    env.backup_json(&[&src], &[]);
    let out = env.run(&["unlock"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("0 locks removed"), "{out:?}");
    assert!(
        text(&out.stderr).contains("kept unreadable lock"),
        "{out:?}"
    );
    assert!(env.repo.join("locks").join(&name).exists());
    let out = env.ok(&["unlock", "--remove-all"]);
    assert!(out.contains("1 lock removed"), "{out}");
    env.ok(&["prune"]);
}

/// The other commit points: a copy into a repository whose lock was
/// removed under it writes neither index nor snapshot there, and a forget
/// whose lock was removed deletes no snapshot.
#[test]
fn a_copy_or_forget_whose_lock_was_removed_commits_nothing() {
    let src_env = Env::uninit();
    src_env.ok(&["init"]);
    let src = src_env.path("src");
    make_tree(&src, 3, 200_000, 5);
    src_env.backup_json(&[&src], &[]);
    let dst = Env::uninit();
    dst.ok(&["init"]);
    let mut copy = dst.spawn(
        &["copy", "--from-repo", src_env.repo.to_str().unwrap()],
        &[
            ("FAILPOINTS", BEFORE_INDEX),
            ("CAIRN_FROM_PASSWORD", PASSWORD),
        ],
    );
    wait_stopped(&mut copy);
    dst.ok(&["unlock", "--remove-all"]);
    resume(&copy);
    let out = finish(copy);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(11), "{err}");
    assert!(err.contains("was removed"), "{err}");
    assert_eq!(snapshot_count(&dst), 0);
    assert!(files_below(&dst.repo.join("index")).is_empty());

    let mut forget = src_env.spawn(
        &["forget", "--keep-last", "0"],
        &[("FAILPOINTS", "forget::before_delete=return(stop)")],
    );
    wait_stopped(&mut forget);
    src_env.ok(&["unlock", "--remove-all"]);
    resume(&forget);
    let out = finish(forget);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(11), "{err}");
    assert!(err.contains("was removed"), "{err}");
    assert_eq!(snapshot_count(&src_env), 1);
    check_clean(&src_env, None);
    assert_eq!(every_snapshot_restores(&src_env), 1);
}

/// A prune whose lock was removed while it was stopped between its new
/// index files and its deletions deletes nothing; the repository stays
/// whole (the new index files duplicate the old ones).
#[test]
fn a_prune_whose_lock_was_removed_deletes_nothing() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let keep = env.path("keep");
    make_tree(&keep, 3, 300_000, 6);
    env.backup_json(&[&keep], &[]);
    let gone = env.path("gone");
    make_tree(&gone, 3, 300_000, 7);
    let g = env.backup_json(&[&gone], &[]);
    env.ok(&["forget", g["snapshot_id"].as_str().unwrap()]);
    age_past_prune_grace(&env.repo);
    let packs = files_below(&env.repo.join("data"));
    let index = files_below(&env.repo.join("index"));
    let mut prune = env.spawn(
        &["prune"],
        &[("FAILPOINTS", "prune::before_delete=return(stop)")],
    );
    wait_stopped(&mut prune);
    env.ok(&["unlock", "--remove-all"]);
    resume(&prune);
    let out = finish(prune);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(11), "{err}");
    assert!(
        err.contains("prune stopped before deleting anything more") && err.contains("was removed"),
        "{err}"
    );
    assert!(deleted(&packs).is_empty(), "{err}");
    assert!(
        deleted(&index).is_empty(),
        "{err}\n{:?}\n{:?}",
        deleted(&index),
        files_below(&env.repo.join("index"))
    );
    // Prune's new index files are stored and name the old ones as
    // superseded, so the old ones are ignored until a prune deletes them,
    // and the packs only they listed (prune was about to delete them) are
    // in no index file.
    check_clean(&env, Some("is superseded|is in no index file"));
    assert_eq!(every_snapshot_restores(&env), 1);
    // The next prune finishes the job.
    env.ok(&["prune"]);
    check_clean(&env, None);
    assert_eq!(every_snapshot_restores(&env), 1);
}
