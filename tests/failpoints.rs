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
