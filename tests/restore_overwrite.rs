//! Restoring into a target that already holds files: nothing is clobbered
//! silently. A restore that would replace a file with different content is
//! refused before anything is written unless `--overwrite` says what to do;
//! identical files are left alone; `--dry-run` lists, `--delete` removes
//! what the snapshot lacks, never following a symlink out of the target.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use common::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Exit code, stdout and stderr of a finished command; stderr without the
/// line naming the snapshot `latest` resolved to (pinned in
/// tests/everyday.rs).
fn outcome(o: &Output) -> (Option<i32>, String, String) {
    let err = text(&o.stderr);
    let err = match err.strip_prefix("using snapshot ") {
        Some(rest) => rest.split_once('\n').map_or("", |(_, r)| r).to_string(),
        None => err,
    };
    (o.status.code(), text(&o.stdout), err)
}

/// A repository with one snapshot of `src/` (`a.txt`, `config.json`,
/// `sub/b.txt`), and the snapshot's short ID.
fn backed_up() -> (Env, PathBuf, String) {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    fs::write(src.join("config.json"), b"{\"port\": 8080}\n").unwrap();
    fs::write(src.join("sub/b.txt"), b"bravo\n").unwrap();
    let v = env.backup_json(&[&src], &[]);
    let id = v["snapshot_id"].as_str().unwrap()[..8].to_string();
    (env, src, id)
}

/// `cairn restore latest:SRC --target T EXTRA...`.
fn restore(env: &Env, src: &Path, t: &Path, extra: &[&str]) -> Output {
    let spec = format!("latest:{}", src.display());
    let mut args = vec!["restore", &spec, "--target", t.to_str().unwrap()];
    args.extend_from_slice(extra);
    env.run(&args)
}

/// A target that holds the snapshot's files, restored by Cairn.
fn restored(env: &Env, src: &Path) -> PathBuf {
    let t = env.path("t");
    success(restore(env, src, &t, &[]));
    t
}

fn set_mtime(p: &Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn refusal(t: &Path, first: &Path, more: &str) -> String {
    format!(
        "cairn: refusing to restore into {}: {} already exists and differs from the \
         snapshot{more}; nothing was written. Say what to do with such entries with \
         --overwrite always|if-changed|if-newer|never, or list them with --dry-run\n",
        t.display(),
        first.display()
    )
}

#[test]
fn restore_into_a_changed_file_refuses_before_writing_anything_naming_it() {
    let (env, src, _) = backed_up();
    let t = restored(&env, &src);
    fs::write(t.join("config.json"), b"{\"port\": 9090}\n").unwrap();
    fs::write(t.join("sub/b.txt"), b"local edit\n").unwrap();
    fs::remove_file(t.join("a.txt")).unwrap();
    let out = restore(&env, &src, &t, &[]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            refusal(&t, &t.join("config.json"), " (and 1 other entry)")
        )
    );
    // Nothing written: the missing file is still missing, the edits stay.
    assert!(!t.join("a.txt").exists());
    assert_eq!(
        fs::read(t.join("config.json")).unwrap(),
        b"{\"port\": 9090}\n"
    );
    assert_eq!(fs::read(t.join("sub/b.txt")).unwrap(), b"local edit\n");
}

#[test]
fn identical_files_are_left_alone_and_counted_unchanged() {
    let (env, src, id) = backed_up();
    let t = restored(&env, &src);
    let before = fs::metadata(t.join("config.json")).unwrap();
    fs::remove_file(t.join("a.txt")).unwrap();
    let out = restore(&env, &src, &t, &[]);
    assert_eq!(
        outcome(&out),
        (
            Some(0),
            format!(
                "restored snapshot {id} to {}: 1 file written, 2 unchanged, 0 skipped, \
                 1 dir, 0 others, 6 B\n",
                t.display()
            ),
            String::new()
        )
    );
    let after = fs::metadata(t.join("config.json")).unwrap();
    assert_eq!(after.ino(), before.ino(), "not rewritten");
    assert_eq!(fs::read(t.join("a.txt")).unwrap(), b"alpha\n");
}

#[test]
fn overwrite_always_replaces_changed_files_and_counts_them_written() {
    let (env, src, id) = backed_up();
    let t = restored(&env, &src);
    fs::write(t.join("config.json"), b"{\"port\": 9090}\n").unwrap();
    let out = restore(&env, &src, &t, &["--overwrite", "always"]);
    assert_eq!(
        outcome(&out),
        (
            Some(0),
            format!(
                "restored snapshot {id} to {}: 1 file written, 2 unchanged, 0 skipped, \
                 1 dir, 0 others, 15 B\n",
                t.display()
            ),
            String::new()
        )
    );
    assert_eq!(
        fs::read(t.join("config.json")).unwrap(),
        b"{\"port\": 8080}\n"
    );
}

#[test]
fn overwrite_if_changed_takes_a_file_of_the_same_size_and_mtime_as_unchanged() {
    let (env, src, id) = backed_up();
    let t = restored(&env, &src);
    let p = t.join("config.json");
    let mtime = fs::metadata(&p).unwrap().modified().unwrap();
    // Same length, same modification time, other bytes.
    fs::write(&p, b"{\"port\": 9090}\n").unwrap();
    set_mtime(&p, mtime);
    let out = restore(&env, &src, &t, &["--overwrite", "if-changed"]);
    assert_eq!(
        outcome(&out).1,
        format!(
            "restored snapshot {id} to {}: 0 files written, 3 unchanged, 0 skipped, \
             1 dir, 0 others, 0 B\n",
            t.display()
        )
    );
    assert_eq!(fs::read(&p).unwrap(), b"{\"port\": 9090}\n");
    // `always` reads it and finds the difference.
    let out = restore(&env, &src, &t, &["--overwrite", "always"]);
    assert_eq!(
        outcome(&out).1,
        format!(
            "restored snapshot {id} to {}: 1 file written, 2 unchanged, 0 skipped, \
             1 dir, 0 others, 15 B\n",
            t.display()
        )
    );
    assert_eq!(fs::read(&p).unwrap(), b"{\"port\": 8080}\n");
}

#[test]
fn overwrite_if_newer_replaces_only_files_older_than_the_snapshots() {
    let (env, src, id) = backed_up();
    let t = restored(&env, &src);
    let future = SystemTime::now() + Duration::from_secs(3600);
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    fs::write(t.join("config.json"), b"newer local\n").unwrap();
    set_mtime(&t.join("config.json"), future);
    fs::write(t.join("a.txt"), b"older local\n").unwrap();
    set_mtime(&t.join("a.txt"), past);
    let out = restore(&env, &src, &t, &["--overwrite", "if-newer"]);
    assert_eq!(
        outcome(&out),
        (
            Some(0),
            format!(
                "restored snapshot {id} to {}: 1 file written, 1 unchanged, 1 skipped, \
                 1 dir, 0 others, 6 B\n",
                t.display()
            ),
            String::new()
        )
    );
    assert_eq!(fs::read(t.join("config.json")).unwrap(), b"newer local\n");
    assert_eq!(fs::read(t.join("a.txt")).unwrap(), b"alpha\n");
}

#[test]
fn overwrite_never_keeps_changed_files_and_counts_them_skipped() {
    let (env, src, id) = backed_up();
    let t = restored(&env, &src);
    fs::write(t.join("config.json"), b"local\n").unwrap();
    fs::remove_file(t.join("sub/b.txt")).unwrap();
    let out = restore(&env, &src, &t, &["--overwrite", "never"]);
    assert_eq!(
        outcome(&out),
        (
            Some(0),
            format!(
                "restored snapshot {id} to {}: 1 file written, 1 unchanged, 1 skipped, \
                 1 dir, 0 others, 6 B\n",
                t.display()
            ),
            String::new()
        )
    );
    assert_eq!(fs::read(t.join("config.json")).unwrap(), b"local\n");
    assert_eq!(fs::read(t.join("sub/b.txt")).unwrap(), b"bravo\n");
}

#[test]
fn dry_run_lists_what_would_change_and_writes_nothing() {
    let (env, src, id) = backed_up();
    let t = restored(&env, &src);
    fs::write(t.join("config.json"), b"local\n").unwrap();
    fs::remove_file(t.join("sub/b.txt")).unwrap();
    fs::write(t.join("extra.txt"), b"not in the snapshot\n").unwrap();
    fs::create_dir_all(t.join("old/deeper")).unwrap();
    let out = restore(
        &env,
        &src,
        &t,
        &["--dry-run", "--overwrite", "always", "--delete"],
    );
    let d = t.display();
    assert_eq!(
        outcome(&out),
        (
            Some(0),
            format!(
                "replace  {d}/config.json\n\
                 delete   {d}/extra.txt\n\
                 delete   {d}/old/\n\
                 new      {d}/sub/b.txt\n\
                 dry run: restoring snapshot {id} to {d} would write 2 files, 1 unchanged, \
                 0 skipped, 0 dirs, 0 others, 21 B, 2 deleted\n"
            ),
            String::new()
        )
    );
    assert_eq!(fs::read(t.join("config.json")).unwrap(), b"local\n");
    assert!(!t.join("sub/b.txt").exists());
    assert!(t.join("extra.txt").exists() && t.join("old/deeper").is_dir());

    // Without --overwrite: the differing file is listed, and the dry run
    // says the restore would be refused.
    let out = restore(&env, &src, &t, &["--dry-run"]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            format!(
                "differs  {d}/config.json\n\
                 new      {d}/sub/b.txt\n\
                 dry run: restoring snapshot {id} to {d} would write 1 file, 1 unchanged, \
                 0 skipped, 0 dirs, 0 others, 6 B\n"
            ),
            refusal(&t, &t.join("config.json"), "")
        )
    );

    // Into a new directory: everything is new, and the directory is not
    // created.
    let fresh = env.path("fresh");
    let out = restore(&env, &src, &fresh, &["-n"]);
    let f = fresh.display();
    assert_eq!(
        outcome(&out).1,
        format!(
            "new      {f}/a.txt\n\
             new      {f}/config.json\n\
             new      {f}/sub/\n\
             new      {f}/sub/b.txt\n\
             dry run: restoring snapshot {id} to {f} would write 3 files, 0 unchanged, \
             0 skipped, 1 dir, 0 others, 27 B\n"
        )
    );
    assert!(!fresh.exists());
}

#[test]
fn delete_removes_what_the_snapshot_lacks_without_following_symlinks_out() {
    let (env, src, id) = backed_up();
    let t = restored(&env, &src);
    let outside = env.path("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("precious"), b"keep me\n").unwrap();
    fs::write(t.join("extra.txt"), b"x").unwrap();
    fs::create_dir_all(t.join("sub/old/deeper")).unwrap();
    fs::write(t.join("sub/old/deeper/f"), b"x").unwrap();
    std::os::unix::fs::symlink(&outside, t.join("sub/old/link")).unwrap();
    std::os::unix::fs::symlink(&outside, t.join("link")).unwrap();
    let out = restore(&env, &src, &t, &["--delete"]);
    assert_eq!(
        outcome(&out),
        (
            Some(0),
            format!(
                "restored snapshot {id} to {}: 0 files written, 3 unchanged, 0 skipped, \
                 1 dir, 0 others, 0 B, 3 deleted\n",
                t.display()
            ),
            String::new()
        )
    );
    let mut left: Vec<_> = walk(&t)
        .iter()
        .map(|p| p.strip_prefix(&t).unwrap().to_path_buf())
        .collect();
    left.sort();
    let want: Vec<PathBuf> = ["a.txt", "config.json", "sub", "sub/b.txt"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(left, want);
    assert_eq!(fs::read(outside.join("precious")).unwrap(), b"keep me\n");
}

#[test]
fn delete_with_include_removes_only_matching_entries() {
    let (env, src, _) = backed_up();
    let t = restored(&env, &src);
    fs::write(t.join("extra.txt"), b"x").unwrap();
    fs::write(t.join("extra.json"), b"x").unwrap();
    success(restore(&env, &src, &t, &["--include", "*.txt", "--delete"]));
    assert!(!t.join("extra.txt").exists());
    assert!(t.join("extra.json").exists());
}

#[test]
fn a_symlink_where_the_snapshot_has_a_directory_differs_and_is_replaced_not_followed() {
    let (env, src, _) = backed_up();
    let t = restored(&env, &src);
    let outside = env.path("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::remove_dir_all(t.join("sub")).unwrap();
    std::os::unix::fs::symlink(&outside, t.join("sub")).unwrap();
    let out = restore(&env, &src, &t, &[]);
    assert_eq!(
        outcome(&out),
        (Some(1), String::new(), refusal(&t, &t.join("sub"), ""))
    );
    success(restore(&env, &src, &t, &["--overwrite", "always"]));
    assert!(fs::symlink_metadata(t.join("sub")).unwrap().is_dir());
    assert_eq!(fs::read(t.join("sub/b.txt")).unwrap(), b"bravo\n");
    assert!(fs::read_dir(&outside).unwrap().next().is_none());
}

#[test]
fn a_restore_target_that_is_a_file_is_an_error() {
    let (env, src, _) = backed_up();
    let f = env.path("file");
    fs::write(&f, b"mine\n").unwrap();
    let out = restore(&env, &src, &f, &[]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!(
                "cairn: the restore target {} is a file, not a directory; give a directory \
                 (it is created if missing)\n",
                f.display()
            )
        )
    );
    assert_eq!(fs::read(&f).unwrap(), b"mine\n");
}

#[test]
fn an_include_that_matches_nothing_is_an_error_and_creates_nothing() {
    let (env, src, _) = backed_up();
    let t = env.path("t");
    let out = restore(&env, &src, &t, &["--include", "*.nothing"]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!(
                "cairn: --include *.nothing matched nothing in {}; nothing was restored\n",
                src.display()
            )
        )
    );
    assert!(!t.exists());
}

#[test]
fn restoring_a_database_over_a_different_database_refuses() {
    let env = Env::new();
    let src = env.path("db");
    fs::create_dir_all(&src).unwrap();
    let db = rusqlite::Connection::open(src.join("app.db")).unwrap();
    db.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    env.backup_json(&[&src], &[]);
    drop(db);
    let t = restored(&env, &src);
    // The same bytes, but a WAL beside it holds later transactions: another
    // database.
    let live = rusqlite::Connection::open(t.join("app.db")).unwrap();
    live.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; INSERT INTO t VALUES (2);",
    )
    .unwrap();
    assert!(t.join("app.db-wal").exists());
    let out = restore(&env, &src, &t, &[]);
    assert_eq!(
        outcome(&out),
        (Some(1), String::new(), refusal(&t, &t.join("app.db"), ""))
    );
    drop(live);
    // Checkpointed into the file: different bytes.
    let other = env.path("other.db");
    let o = rusqlite::Connection::open(&other).unwrap();
    o.execute_batch("CREATE TABLE u(y); INSERT INTO u VALUES ('other');")
        .unwrap();
    drop(o);
    for c in ["-wal", "-shm"] {
        let _ = fs::remove_file(t.join(format!("app.db{c}")));
    }
    fs::copy(&other, t.join("app.db")).unwrap();
    let out = restore(&env, &src, &t, &[]);
    assert_eq!(
        outcome(&out),
        (Some(1), String::new(), refusal(&t, &t.join("app.db"), ""))
    );
    success(restore(&env, &src, &t, &["--overwrite", "always"]));
    let back = rusqlite::Connection::open(t.join("app.db")).unwrap();
    let n: i64 = back
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn a_file_where_the_snapshot_has_a_directory_nothing_is_restored_into_is_left_alone() {
    let (env, src, _) = backed_up();
    let t = env.path("t");
    fs::create_dir_all(&t).unwrap();
    // `sub` is a directory in the snapshot, but --include takes nothing
    // below it: the file of that name is not in the restore's way.
    fs::write(t.join("sub"), b"my file\n").unwrap();
    success(restore(&env, &src, &t, &["--include", "*.json"]));
    assert_eq!(fs::read(t.join("sub")).unwrap(), b"my file\n");
    assert_eq!(
        fs::read(t.join("config.json")).unwrap(),
        b"{\"port\": 8080}\n"
    );
    assert!(!t.join("a.txt").exists());
    // Once the restore does put something there, the file differs.
    let out = restore(&env, &src, &t, &[]);
    assert_eq!(
        outcome(&out),
        (Some(1), String::new(), refusal(&t, &t.join("sub"), ""))
    );
}
