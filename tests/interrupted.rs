//! An interrupted backup does not start over: what it stored is reused by
//! the next run, whether it was stopped with Ctrl-C / SIGTERM (it indexes
//! its packs before exiting) or killed outright (the next run adopts the
//! packs no index file lists).

mod common;

use std::fs;

use common::*;

/// 40 files of 1 MiB of incompressible data.
fn make_source(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    for i in 0..40u64 {
        fs::write(src.join(format!("f{i:02}")), random_bytes(1 << 20, i + 1)).unwrap();
    }
    src
}

/// Bytes a clean backup of `src` takes in a fresh repository with 1 MiB
/// packs.
fn clean_size(src: &std::path::Path) -> u64 {
    let clean = Env::uninit();
    clean.ok(&["init", "--pack-size", "1"]);
    clean.ok(&["backup", src.to_str().unwrap()]);
    clean.data_bytes()
}

/// The failpoint that stops or kills a backup after its 24th pack (of
/// about 41) is stored: 60 % of the way.
fn at_sixty_percent(action: &str) -> String {
    format!("packer::pack_stored=24*off->1*return({action})")
}

fn finish_and_compare(env: &Env, src: &std::path::Path, clean: u64) {
    let rerun = env.backup_json(&[src], &[]);
    assert!(
        rerun["packs_adopted"].as_u64().unwrap() + 1 >= 24
            || rerun["data_blobs_added"].as_u64().unwrap() <= 20,
        "the rerun stored again what was stored: {rerun}"
    );
    let size = env.data_bytes();
    assert!(
        size as f64 <= 1.2 * clean as f64,
        "repository after the interrupted run and the rerun: {size} bytes, a clean backup: {clean}"
    );
    let out = env.run(&["check", "--read-data"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("in no index file"), "{all}");
    let target = env.path("t");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(src, &restored(&target, src));
}

/// Regression: the index was written only every 100 000 blobs, so a first
/// backup killed at 60 % kept nothing usable; the rerun stored everything
/// again (1.4–1.5 times a clean backup, every byte sent twice).
#[test]
fn a_backup_killed_at_sixty_percent_is_resumed_without_storing_twice() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = make_source(&env);
    let clean = clean_size(&src);
    let child = env.spawn(
        &["backup", src.to_str().unwrap()],
        &[("FAILPOINTS", &at_sixty_percent("kill"))],
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), None, "killed by SIGKILL");
    assert!(env.data_bytes() as f64 > 0.5 * clean as f64);
    assert_eq!(fs::read_dir(env.repo.join("snapshots")).unwrap().count(), 0);
    // The killed run left its lock behind; it is stale (its process is gone).
    finish_and_compare(&env, &src, clean);
}

/// What an interrupted command prints on standard error: the signal
/// thread's line, then the error it ends with.
const INTERRUPTED_BACKUP: &str = "interrupted, cleaning up\n\
    cairn: interrupted; what was stored so far is indexed, and the next run reuses it\n";

fn signal(child: &std::process::Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

/// SIGTERM (or Ctrl-C) stops a backup cleanly: it indexes what it stored,
/// writes no snapshot, exits 143 (128 + SIGTERM), and the next run reuses
/// everything.
#[test]
fn a_backup_stopped_by_sigterm_indexes_what_it_stored() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = make_source(&env);
    let clean = clean_size(&src);
    let mut child = env.spawn(
        &["backup", src.to_str().unwrap()],
        &[("FAILPOINTS", &at_sixty_percent("stop"))],
    );
    wait_stopped(&mut child);
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    resume(&child);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert_eq!(err, INTERRUPTED_BACKUP);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(fs::read_dir(env.repo.join("snapshots")).unwrap().count(), 0);
    assert!(fs::read_dir(env.repo.join("index")).unwrap().count() > 0);
    assert_eq!(fs::read_dir(env.repo.join("locks")).unwrap().count(), 0);
    // Every stored pack is indexed already: check finds nothing to report.
    let out = env.run(&["check"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !all.contains("in no index file"),
        "{all}"
    );
    finish_and_compare(&env, &src, clean);
}

/// Ctrl-C during a backup says so at once, removes the lock (no later
/// command warns about a stale one), exits 130, and the next backup stores
/// only what the interrupted one had not: the packs already stored are
/// indexed and reused, not uploaded again.
#[test]
fn ctrl_c_during_a_backup_says_so_removes_the_lock_and_the_next_run_uploads_only_the_rest() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = make_source(&env);
    let clean = clean_size(&src);
    let mut child = env.spawn(
        &["backup", src.to_str().unwrap()],
        &[("FAILPOINTS", &at_sixty_percent("stop"))],
    );
    wait_stopped(&mut child);
    signal(&child, rustix::process::Signal::INT);
    resume(&child);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert_eq!(err, INTERRUPTED_BACKUP);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(fs::read_dir(env.repo.join("locks")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(env.repo.join("snapshots")).unwrap().count(), 0);
    let stored = env.data_bytes();
    assert!(stored as f64 > 0.5 * clean as f64, "{stored} of {clean}");
    // The next backup neither warns about a lock nor adopts anything: the
    // stored packs are indexed, so their blobs are simply known.
    let out = env.run(&["backup", "--json", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let rerun: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rerun["packs_adopted"], 0, "{rerun}");
    let total = env.data_bytes();
    assert!(
        (total - stored) as f64 <= clean.saturating_sub(stored) as f64 * 1.1 + 65536.0,
        "the rerun stored {} bytes; what the interrupted run had not stored is {}",
        total - stored,
        clean.saturating_sub(stored)
    );
    let target = env.path("t");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
}

/// A second signal ends the process at once, even while it is cleaning
/// up after the first, with 128 + the second signal's number. (The
/// process is stopped right after the first signal's message: the backup
/// cannot end before that, as it waits for the message.)
#[test]
fn a_second_signal_ends_a_backup_that_is_cleaning_up_at_once() {
    let env = Env::uninit();
    env.ok(&["init", "--pack-size", "1"]);
    let src = make_source(&env);
    let mut child = env.spawn(
        &["backup", src.to_str().unwrap()],
        &[(
            "FAILPOINTS",
            &format!(
                "{};interrupts::after_message=return(stop)",
                at_sixty_percent("stop")
            ),
        )],
    );
    let mut stderr = watch_stderr(&mut child);
    wait_stopped(&mut child);
    signal(&child, rustix::process::Signal::TERM);
    resume(&child);
    stderr.wait_for("interrupted, cleaning up");
    // Stopped again, cleaning up.
    wait_stopped(&mut child);
    signal(&child, rustix::process::Signal::INT);
    resume(&child);
    let status = child.wait().unwrap();
    let err = stderr.all();
    assert_eq!(status.code(), Some(130), "{err}");
    assert_eq!(err, "interrupted, cleaning up");
    assert_eq!(fs::read_dir(env.repo.join("snapshots")).unwrap().count(), 0);
    // Ended before removing its lock.
    assert_eq!(fs::read_dir(env.repo.join("locks")).unwrap().count(), 1);
}

/// Commands that only read (restore, check, restore-test) stop at once on
/// the first signal, and remove their lock too.
#[test]
fn ctrl_c_during_a_restore_removes_the_lock_and_exits_130() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), b"alpha").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let target = env.path("t");
    let mut child = env.spawn(
        &["restore", "latest", "--target", target.to_str().unwrap()],
        &[("FAILPOINTS", "restore::before_finish=return(stop)")],
    );
    wait_stopped(&mut child);
    assert_eq!(fs::read_dir(env.repo.join("locks")).unwrap().count(), 1);
    signal(&child, rustix::process::Signal::INT);
    resume(&child);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    // `latest` says which snapshot it is first.
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("using snapshot "), "{err}");
    assert_eq!(lines[1], "interrupted, cleaning up");
    assert_eq!(fs::read_dir(env.repo.join("locks")).unwrap().count(), 0);
    // No stale lock to warn about.
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// `cairn run` interrupted during its backup: the steps after it (here
/// retention and prune) are skipped, the after hooks still run (they
/// restart what the before hooks stopped), the lock is removed, and the
/// run exits 143 for SIGTERM.
#[test]
fn sigterm_during_cairn_run_skips_the_rest_runs_the_after_hooks_and_exits_143() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), b"alpha").unwrap();
    fs::write(env.path("pass"), format!("{PASSWORD}\n")).unwrap();
    let log = env.path("hooks.log");
    let conf = env.path("cairn.toml");
    fs::write(
        &conf,
        format!(
            "[repository.main]\nurl = \"{}\"\npassword_file = \"{}\"\n\n\
             [job.app]\nrepository = \"main\"\npaths = [\"{}\"]\n\
             before = [\"echo before >> {l}\"]\nafter = [\"echo after >> {l}\"]\n\
             keep_last = 1\nprune_every_days = 0\ncheck_slices = 0\n",
            env.repo.display(),
            env.path("pass").display(),
            src.display(),
            l = log.display(),
        ),
    )
    .unwrap();
    for f in [&conf, &env.path("pass")] {
        fs::set_permissions(f, fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut child = env.spawn(
        &["--config", conf.to_str().unwrap(), "run", "app"],
        &[("FAILPOINTS", "backup::before_open_file=return(stop)")],
    );
    wait_stopped(&mut child);
    signal(&child, rustix::process::Signal::TERM);
    resume(&child);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert_eq!(
        err,
        "interrupted, cleaning up\n\
         job app: backup failed: interrupted; what was stored so far is indexed, and the next run reuses it\n\
         cairn: 1 of 1 jobs failed: app\n"
    );
    assert_eq!(fs::read_to_string(&log).unwrap(), "before\nafter\n");
    assert_eq!(fs::read_dir(env.repo.join("locks")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(env.repo.join("snapshots")).unwrap().count(), 0);
}

/// A signal that comes during a later step of `cairn run` (here its prune,
/// after the backup's own handling of signals has ended) is handled the
/// same way, not by the default action: the lock is removed and the run
/// exits 130.
#[test]
fn ctrl_c_during_the_prune_of_cairn_run_removes_the_lock_and_exits_130() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), random_bytes(100_000, 1)).unwrap();
    fs::write(env.path("pass"), format!("{PASSWORD}\n")).unwrap();
    let conf = env.path("cairn.toml");
    fs::write(
        &conf,
        format!(
            "[repository.main]\nurl = \"{}\"\npassword_file = \"{}\"\n\n\
             [job.app]\nrepository = \"main\"\npaths = [\"{}\"]\n\
             keep_last = 1\nprune_every_days = 0\ncheck_slices = 0\n",
            env.repo.display(),
            env.path("pass").display(),
            src.display(),
        ),
    )
    .unwrap();
    for f in [&conf, &env.path("pass")] {
        fs::set_permissions(f, fs::Permissions::from_mode(0o600)).unwrap();
    }
    env.ok(&["--config", conf.to_str().unwrap(), "run", "app"]);
    // The first night's data is old enough to prune once it is unused.
    fs::write(src.join("a"), random_bytes(100_000, 2)).unwrap();
    age_past_prune_grace(&env.repo);
    let mut child = env.spawn(
        &["--config", conf.to_str().unwrap(), "run", "app"],
        &[("FAILPOINTS", "prune::before_delete=return(stop)")],
    );
    wait_stopped(&mut child);
    assert_eq!(fs::read_dir(env.repo.join("locks")).unwrap().count(), 1);
    signal(&child, rustix::process::Signal::INT);
    resume(&child);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert_eq!(
        err,
        "interrupted, cleaning up\n\
         job app: prune on main failed: prune stopped before deleting anything more: interrupted\n\
         cairn: 1 of 1 jobs failed: app\n"
    );
    assert_eq!(fs::read_dir(env.repo.join("locks")).unwrap().count(), 0);
}
