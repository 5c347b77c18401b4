//! CI cannot go green without the coverage it is meant to give: under
//! `CI=true` a test server that does not start fails `scripts/test-servers.sh
//! start` (and so `scripts/test.sh`), and a test without its server or
//! tool fails instead of skipping (`skipped` in tests/common/mod.rs).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// `scripts/test-servers.sh start` in a fresh directory, with the installers
/// and key generator it needs replaced by programs that fail: neither
/// server can start, whatever is installed on this machine.
fn start_servers_that_cannot_start(ci: Option<&str>) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["apt-get", "python3", "ssh-keygen", "pip"] {
        let p = bin.join(tool);
        std::fs::write(
            &p,
            "#!/bin/sh\necho \"$0: refused for this test\" >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-servers.sh");
    let mut c = Command::new("bash");
    c.arg(script)
        .arg("start")
        .env("PATH", path)
        .env("CAIRN_TEST_SERVERS_DIR", dir.path().join("servers"))
        // Ports nothing listens on, so no server of another run is found.
        .env("CAIRN_TEST_SSH_PORT", "1")
        .env("CAIRN_TEST_S3_PORT", "2");
    match ci {
        Some(v) => c.env("CI", v),
        None => c.env_remove("CI"),
    };
    c.output().unwrap()
}

#[test]
fn a_test_server_that_does_not_start_fails_the_run_under_ci() {
    let out = start_servers_that_cannot_start(Some("true"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("did not start: SFTP S3") && err.contains("CI=true"),
        "{err}"
    );
    // Nothing for the tests to read: no URL is exported.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("export"));
}

#[test]
fn outside_ci_a_missing_test_server_is_reported_and_its_tests_skip() {
    let out = start_servers_that_cannot_start(None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("unavailable: SFTP S3"), "{err}");
}
