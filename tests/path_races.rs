//! Path races: another user who can write into a restore target, or into a
//! backed-up tree, swaps entries for symlinks, FIFOs or other files while
//! Cairn runs as root. Restore must never change anything outside its
//! target (or anything it did not create), and backup must never store
//! another file's content under an entry's name, nor hang. Each race is
//! made deterministic with a failpoint (`src/failpoint.rs`): the process
//! stops itself at the window, the test swaps, and lets it go on.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown, symlink};
use std::path::Path;
use std::process::{Child, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::backend::local::LocalBackend;
use cairn::format::BlobType;
use cairn::repo::Repository;
use common::*;

/// The user another user's files belong to in these tests.
const MALLORY: u32 = 1234;

fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    skipped(&format!("{test}: needs root (chown to another user)"));
    true
}

/// Start `cairn ARGS` stopped at `failpoint`, and wait until it is.
fn stopped_at(env: &Env, args: &[&str], failpoint: &str) -> Child {
    let mut child = env.spawn(args, &[("FAILPOINTS", failpoint)]);
    wait_stopped(&mut child);
    child
}

/// Let a stopped process go on and wait for it, failing the test if it
/// does not finish within a minute (a hang is the bug some tests catch).
fn finish(child: Child) -> Output {
    resume(&child);
    wait_bounded(child)
}

fn wait_bounded(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "cairn hung (killed after 60 s)\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mkfifo(p: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

/// Owner and permission bits.
fn owner_mode(p: &Path) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// A directory outside every target, owned by root with mode 0700, holding
/// a root-only file `secret`.
fn root_only_dir(p: &Path) {
    fs::create_dir_all(p).unwrap();
    fs::write(p.join("secret"), b"root's secret, never to be copied").unwrap();
    fs::set_permissions(p.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o700)).unwrap();
}

/// Replace the directory `p` with a symlink to `to` (keeping the original
/// next to it, as an attacker would move it away).
fn swap_for_symlink(p: &Path, to: &Path) {
    let moved = p.with_extension("moved");
    fs::rename(p, &moved).unwrap();
    symlink(to, p).unwrap();
}

#[test]
fn a_restored_directorys_parent_swapped_for_a_symlink_keeps_the_outside_directory_untouched() {
    if skip_unless_root("parent swap") {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    fs::write(src.join("a/b/f"), b"content").unwrap();
    chown(src.join("a/b"), Some(MALLORY), Some(MALLORY)).unwrap();
    fs::set_permissions(src.join("a/b"), fs::Permissions::from_mode(0o777)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);

    // Outside the target: a root-owned 0700 directory named like the
    // restored one.
    let outside = env.path("outside");
    root_only_dir(&outside.join("b"));
    let before = owner_mode(&outside.join("b"));
    assert_eq!(before, (0, 0, 0o700));

    let target = env.path("target");
    let child = stopped_at(
        &env,
        &["restore", "latest", "--target", target.to_str().unwrap()],
        "restore::before_finish=return(stop)",
    );
    // Between the entry pass and the metadata pass, `a` becomes a symlink
    // to the outside directory: `a/b` now names outside/b.
    swap_for_symlink(&restored(&target, &src.join("a")), &outside);
    let out = finish(child);

    assert_eq!(
        owner_mode(&outside.join("b")),
        before,
        "the directory outside the target was changed: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let b = format!("{}/a/b", src.display());
    assert!(
        err.contains(&format!("cannot apply the metadata of directory {b}"))
            && err.contains("changed during the restore"),
        "the error names the directory and why: {err}"
    );
    // The directory restore made (moved away by the attacker) kept the
    // owner and mode restore gave it while creating it.
    let made = restored(&target, &src.join("a")).with_extension("moved");
    assert_eq!(fs::read(made.join("b/f")).unwrap(), b"content");
}

#[test]
fn a_restored_directory_replaced_by_another_directory_is_left_alone() {
    if skip_unless_root("directory replaced") {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    chown(src.join("a/b"), Some(MALLORY), Some(MALLORY)).unwrap();
    fs::set_permissions(src.join("a/b"), fs::Permissions::from_mode(0o777)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);

    let target = env.path("target");
    let child = stopped_at(
        &env,
        &["restore", "latest", "--target", target.to_str().unwrap()],
        "restore::before_finish=return(stop)",
    );
    // No symlink at all: the restored `b` is moved away and another
    // directory (say, one that will be root's) takes its name.
    let b = restored(&target, &src.join("a/b"));
    fs::rename(&b, b.with_extension("moved")).unwrap();
    fs::create_dir(&b).unwrap();
    fs::set_permissions(&b, fs::Permissions::from_mode(0o700)).unwrap();
    let out = finish(child);

    assert_eq!(owner_mode(&b), (0, 0, 0o700), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not the one this restore made"),
        "{}",
        stderr(&out)
    );
}

/// Back up `src/x/one` and `src/y/two`, hard links of one file, and
/// restore them stopped before the links are made. Returns the stopped
/// restore, the restored path of the member that was created first, and
/// of the one still to be linked (which is first depends on scheduling).
fn hard_link_restore(env: &Env, target: &Path) -> (Child, std::path::PathBuf, std::path::PathBuf) {
    let src = env.path("src");
    fs::create_dir_all(src.join("x")).unwrap();
    fs::create_dir_all(src.join("y")).unwrap();
    fs::write(src.join("x/one"), b"linked content").unwrap();
    fs::hard_link(src.join("x/one"), src.join("y/two")).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let child = stopped_at(
        env,
        &["restore", "latest", "--target", target.to_str().unwrap()],
        "restore::before_finish=return(stop)",
    );
    let one = restored(target, &src.join("x/one"));
    let two = restored(target, &src.join("y/two"));
    match (one.exists(), two.exists()) {
        (true, false) => (child, one, two),
        (false, true) => (child, two, one),
        other => panic!("expected exactly one member restored before the links: {other:?}"),
    }
}

#[test]
fn a_hard_links_directory_swapped_for_a_symlink_gets_no_link_outside_the_target() {
    let env = Env::new();
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    let target = env.path("target");
    let (child, _first, pending) = hard_link_restore(&env, &target);
    // The directory the link is to be made in now leads outside.
    swap_for_symlink(pending.parent().unwrap(), &outside);
    let out = finish(child);

    let left: Vec<_> = fs::read_dir(&outside).unwrap().collect();
    assert!(
        left.is_empty(),
        "a link was made outside the target: {left:?}"
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot create hard link")
            && stderr(&out).contains("changed during the restore"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_hard_links_first_member_swapped_for_an_outside_file_is_not_linked_into_the_target() {
    let env = Env::new();
    let outside = env.path("outside");
    let target = env.path("target");
    let (child, first, pending) = hard_link_restore(&env, &target);
    // The first member's directory now leads to a directory holding a
    // root-only file under the first member's name.
    root_only_dir(&outside);
    fs::rename(
        outside.join("secret"),
        outside.join(first.file_name().unwrap()),
    )
    .unwrap();
    let secret_ino = fs::metadata(outside.join(first.file_name().unwrap()))
        .unwrap()
        .ino();
    swap_for_symlink(first.parent().unwrap(), &outside);
    let out = finish(child);

    if let Ok(m) = fs::symlink_metadata(&pending) {
        assert_ne!(
            m.ino(),
            secret_ino,
            "the outside file was linked into the target"
        );
    }
    assert_eq!(
        fs::metadata(outside.join(first.file_name().unwrap()))
            .unwrap()
            .nlink(),
        1,
        "the outside file gained a link"
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot create hard link"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_hard_links_first_member_replaced_by_another_file_is_not_linked() {
    let env = Env::new();
    let target = env.path("target");
    let (child, first, pending) = hard_link_restore(&env, &target);
    // Same directory, but the first member is now another file.
    fs::rename(&first, first.with_extension("moved")).unwrap();
    fs::write(&first, b"planted").unwrap();
    let out = finish(child);

    assert!(!pending.exists(), "linked to the planted file");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is no longer the file this restore wrote"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_restored_databases_directory_swapped_for_a_symlink_is_not_opened_outside_the_target() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("db")).unwrap();
    let conn = rusqlite::Connection::open(src.join("db/app.db")).unwrap();
    // Some fifty pages: restore writes them through one handle, opened
    // and checked at the first page, and checks the file again at the end.
    conn.execute_batch(
        "CREATE TABLE t(x, pad); INSERT INTO t VALUES ('restored', randomblob(200000));",
    )
    .unwrap();
    drop(conn);
    env.ok(&["backup", src.to_str().unwrap()]);

    // Outside: another database of the same name, with a log next to it
    // that the check would remove from the restored database's directory.
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    let other = rusqlite::Connection::open(outside.join("app.db")).unwrap();
    other
        .execute_batch("CREATE TABLE u(y); INSERT INTO u VALUES ('outside');")
        .unwrap();
    drop(other);
    fs::write(outside.join("app.db-wal"), b"someone else's log").unwrap();
    let before = file_hash(&outside.join("app.db"));

    let target = env.path("target");
    let child = stopped_at(
        &env,
        &["restore", "latest", "--target", target.to_str().unwrap()],
        "restore::before_database_check=return(stop)",
    );
    let dir = restored(&target, &src.join("db"));
    swap_for_symlink(&dir, &outside);
    let out = finish(child);

    assert_eq!(
        fs::read(outside.join("app.db-wal")).unwrap(),
        b"someone else's log",
        "the check removed a file outside the target: {}",
        stderr(&out)
    );
    assert_eq!(file_hash(&outside.join("app.db")), before);
    // The check ran on the database restore wrote, where it wrote it.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("quick_check ok"), "{text}");
    let moved = dir.with_extension("moved").join("app.db");
    let back = rusqlite::Connection::open(&moved).unwrap();
    let x: String = back.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
    assert_eq!(x, "restored");
    // The directory's metadata could not be applied through the symlink.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// A database written through one held handle whose directory is moved
/// away and replaced by a symlink between two of its pages: the rest of
/// its pages still go into the file restore created (wherever it is now),
/// but its completion checks the file again through the target's handle
/// and refuses, so it is neither given its metadata nor checked where it
/// went, and nothing outside the target is touched (before, the handle
/// checked at the first page also carried the metadata and the database
/// check).
#[test]
fn a_database_moved_away_between_its_page_writes_is_not_completed_through_the_old_handle() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("db")).unwrap();
    let conn = rusqlite::Connection::open(src.join("db/app.db")).unwrap();
    // About 3 MiB of pages.
    conn.execute_batch(
        "CREATE TABLE t(x, pad); INSERT INTO t VALUES ('restored', randomblob(3000000));",
    )
    .unwrap();
    drop(conn);
    env.ok(&["backup", src.to_str().unwrap()]);
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("app.db-wal"), b"someone else's log").unwrap();

    let target = env.path("target");
    let child = stopped_at(
        &env,
        &["restore", "latest", "--target", target.to_str().unwrap()],
        "restore::after_held_write=1*return(stop)",
    );
    let dir = restored(&target, &src.join("db"));
    swap_for_symlink(&dir, &outside);
    let out = finish(child);

    let text = String::from_utf8_lossy(&out.stdout);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("app.db") && err.contains("replaced"), "{err}");
    assert!(
        !text.contains("quick_check"),
        "checked where it was moved: {text}"
    );
    assert!(!outside.join("app.db").exists());
    assert_eq!(
        fs::read(outside.join("app.db-wal")).unwrap(),
        b"someone else's log"
    );
    // What was written before the move stays there, unfinished.
    let moved = dir.with_extension("moved").join("app.db");
    assert!(fs::metadata(&moved).unwrap().len() > 0);
}

#[test]
fn a_restored_fifo_swapped_for_a_symlink_does_not_pass_its_mode_to_the_outside_file() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    mkfifo(&src.join("pipe"));
    fs::set_permissions(src.join("pipe"), fs::Permissions::from_mode(0o666)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let outside = env.path("outside");
    root_only_dir(&outside);
    let secret = outside.join("secret");
    let before = owner_mode(&secret);

    let target = env.path("target");
    let child = stopped_at(
        &env,
        &["restore", "latest", "--target", target.to_str().unwrap()],
        "restore::before_special_meta=return(stop)",
    );
    // Between creating the FIFO and setting its mode and times.
    let pipe = restored(&target, &src.join("pipe"));
    fs::remove_file(&pipe).unwrap();
    symlink(&secret, &pipe).unwrap();
    let out = finish(child);

    assert_eq!(owner_mode(&secret), before, "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("was replaced by a symlink before its metadata was set"),
        "{}",
        stderr(&out)
    );
}

/// A source tree `src/f` owned by another user, and a root-only secret.
fn user_file_and_secret(env: &Env) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"the user's own data").unwrap();
    if is_root() {
        chown(src.join("f"), Some(MALLORY), Some(MALLORY)).unwrap();
    }
    let secrets = env.path("root-only");
    root_only_dir(&secrets);
    (src, secrets.join("secret"))
}

fn repo_has_content(env: &Env, content: &[u8]) -> bool {
    let backend = Arc::new(LocalBackend::new(&env.repo));
    let mut repo = Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    repo.load_index().unwrap();
    let id = repo.id_key().blob_id(content);
    repo.index().contains(BlobType::Data, &id)
}

#[test]
fn a_file_swapped_for_a_symlink_to_a_root_only_file_during_backup_is_not_stored() {
    let env = Env::new();
    let (src, secret) = user_file_and_secret(&env);
    let child = stopped_at(
        &env,
        &["backup", "--json", src.to_str().unwrap()],
        "backup::before_open_file=return(stop)",
    );
    // After the lstat (a regular file of the user's), before the open.
    fs::remove_file(src.join("f")).unwrap();
    symlink(&secret, src.join("f")).unwrap();
    let out = finish(child);

    assert!(
        !repo_has_content(&env, &fs::read(&secret).unwrap()),
        "the root-only file's content was stored under the user's name"
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let errors = summary["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{summary}");
    assert_eq!(errors[0]["path"], src.join("f").to_str().unwrap());
    let e = errors[0]["error"].as_str().unwrap();
    assert!(
        e.contains("was replaced") && e.contains("now a symlink"),
        "{e}"
    );
    // The snapshot holds no `f` at all.
    let target = env.path("r");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(fs::symlink_metadata(restored(&target, &src.join("f"))).is_err());
}

#[test]
fn a_file_swapped_for_a_fifo_during_backup_is_an_error_not_a_hang() {
    let env = Env::new();
    let (src, _) = user_file_and_secret(&env);
    let child = stopped_at(
        &env,
        &["backup", src.to_str().unwrap()],
        "backup::before_open_file=return(stop)",
    );
    fs::remove_file(src.join("f")).unwrap();
    mkfifo(&src.join("f"));
    let out = finish(child);

    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("error: {}", src.join("f").display())) && err.contains("now a FIFO"),
        "{err}"
    );
}

#[test]
fn a_file_swapped_for_another_file_during_backup_is_not_stored_under_its_name() {
    let env = Env::new();
    let (src, secret) = user_file_and_secret(&env);
    let child = stopped_at(
        &env,
        &["backup", src.to_str().unwrap()],
        "backup::before_open_file=return(stop)",
    );
    // A hard link to another file (root may make one anywhere; a user
    // could with any file it can reach): same name, another inode.
    fs::remove_file(src.join("f")).unwrap();
    fs::hard_link(&secret, src.join("f")).unwrap();
    let out = finish(child);

    assert!(!repo_has_content(&env, &fs::read(&secret).unwrap()));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("now another regular file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_directory_swapped_for_a_symlink_during_backup_is_not_followed() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/mine"), b"the user's own data").unwrap();
    let secrets = env.path("root-only");
    root_only_dir(&secrets);
    // The first directory opened is `src` itself, the second `src/d`.
    let child = stopped_at(
        &env,
        &["backup", src.to_str().unwrap()],
        "backup::before_open_dir=1*off->1*return(stop)",
    );
    swap_for_symlink(&src.join("d"), &secrets);
    let out = finish(child);

    assert!(!repo_has_content(
        &env,
        &fs::read(secrets.join("secret")).unwrap()
    ));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("now a symlink"), "{}", stderr(&out));
}

#[test]
fn a_fifo_named_cachedir_tag_does_not_hang_a_backup_with_exclude_caches() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("cache")).unwrap();
    fs::write(src.join("cache/x"), b"x").unwrap();
    mkfifo(&src.join("cache/CACHEDIR.TAG"));
    let child = env.spawn(&["backup", "--exclude-caches", src.to_str().unwrap()], &[]);
    let out = wait_bounded(child);
    // Not a tag: the directory is backed up, the FIFO as a FIFO.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let target = env.path("r");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        fs::read(restored(&target, &src.join("cache/x"))).unwrap(),
        b"x"
    );
}

#[test]
fn a_fifo_named_like_a_database_next_to_its_wal_does_not_hang_the_backup() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    mkfifo(&src.join("app.db"));
    fs::write(src.join("app.db-wal"), b"not a companion of a FIFO").unwrap();
    let child = env.spawn(&["backup", src.to_str().unwrap()], &[]);
    let out = wait_bounded(child);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The WAL-named file is no database's companion: it is kept.
    let target = env.path("r");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        fs::read(restored(&target, &src.join("app.db-wal"))).unwrap(),
        b"not a companion of a FIFO"
    );
}

#[test]
fn a_directory_chain_deeper_than_restore_accepts_is_cut_with_an_error_not_a_crash() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // 2100 levels below src: longer than PATH_MAX, made through handles.
    let mut dir = rustix::fs::open(
        &src,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    for _ in 0..2100 {
        rustix::fs::mkdirat(&dir, "d", rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        dir = rustix::fs::openat(
            &dir,
            "d",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
    }
    drop(dir);
    let out = wait_bounded(env.spawn(&["backup", src.to_str().unwrap()], &[]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is more than 2048 directories deep; not backed up"),
        "{}",
        stderr(&out)
    );
    // What was stored restores.
    let target = env.path("r");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    // Remove the chain through handles too (its paths are too long).
    let out = std::process::Command::new("rm")
        .args(["-rf", src.to_str().unwrap(), target.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
