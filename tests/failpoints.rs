//! The failpoint machinery itself (src/failpoint.rs): a `cairn` process
//! stops at a named point, the test looks at the repository in that state,
//! and the process goes on when told.

mod common;

use common::*;

#[test]
fn a_backup_stops_at_its_failpoint_and_finishes_when_resumed() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), random_bytes(100_000, 1)).unwrap();
    let mut child = env.spawn(
        &["backup", src.to_str().unwrap()],
        &[("FAILPOINTS", "backup::before_snapshot=return(stop)")],
    );
    wait_stopped(&mut child);
    // Stopped before the commit point: the packs and index are stored, the
    // snapshot is not.
    assert_eq!(
        std::fs::read_dir(env.repo.join("snapshots"))
            .unwrap()
            .count(),
        0
    );
    assert!(std::fs::read_dir(env.repo.join("index")).unwrap().count() > 0);
    resume(&child);
    success(child.wait_with_output().unwrap());
    assert_eq!(
        std::fs::read_dir(env.repo.join("snapshots"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn an_error_action_fails_the_operation_there() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"content").unwrap();
    let out = env
        .cmd()
        .env("FAILPOINTS", "backup::before_snapshot=return(error)")
        .args(["backup", src.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failpoint backup::before_snapshot"));
    assert_eq!(
        std::fs::read_dir(env.repo.join("snapshots"))
            .unwrap()
            .count(),
        0
    );
}

/// A page write of a database (through its held handle) that fails leaves
/// the file unfinished: named as an error, not counted, not given its
/// metadata nor checked, and the pages that arrive after it are dropped.
#[test]
fn a_failed_page_write_leaves_the_database_unfinished_and_named() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let c = rusqlite::Connection::open(src.join("app.db")).unwrap();
    c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(3000000));")
        .unwrap();
    drop(c);
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(src.join("app.db"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let target = env.path("target");
    let out = env
        .cmd()
        .env("FAILPOINTS", "restore::after_held_write=1*return(error)")
        .args(["--json", "restore", "latest", "--target"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(v["files"], 0, "{v}");
    assert_eq!(v["databases"], serde_json::json!([]), "{v}");
    let errors = v["errors"].to_string();
    assert!(
        errors.contains("app.db") && errors.contains("after_held_write"),
        "{errors}"
    );
    let restored = restored(&target, &src).join("app.db");
    // Never finished: the snapshot's modification time was not applied.
    assert_ne!(
        std::fs::metadata(&restored).unwrap().modified().unwrap(),
        old
    );
}
