//! Every backend passes the same conformance suite, and the whole command
//! set works against real SFTP and S3 servers on loopback.
//!
//! The servers come from `scripts/test-servers.sh` (CI starts them); a test
//! whose server is not configured says so and passes without running.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn::backend::remote::{RemoteOptions, open};
use common::*;

/// Each configured remote URL, with a fresh prefix for this test.
fn remotes(test: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (var, kind) in [("CAIRN_TEST_SFTP_URL", "sftp"), ("CAIRN_TEST_S3_URL", "s3")] {
        match std::env::var(var) {
            Ok(base) => out.push((
                kind.to_string(),
                format!("{base}/{test}-{}", hex::encode(rand::random::<[u8; 6]>())),
            )),
            Err(_) => eprintln!(
                "SKIPPED {test} on {kind}: {var} is not set (run `eval \"$(scripts/test-servers.sh start)\"`)"
            ),
        }
    }
    out
}

#[test]
fn conformance_suite_on_every_backend() {
    for (kind, url) in remotes("conformance") {
        eprintln!("conformance on {kind}: {url}");
        let b = open(&url, RemoteOptions::default()).unwrap();
        cairn::backend::conformance::run_all(&*b);
    }
    let dir = tempfile::tempdir().unwrap();
    let local = open(
        dir.path().join("r").to_str().unwrap(),
        RemoteOptions::default(),
    )
    .unwrap();
    cairn::backend::conformance::run_all(&*local);
}

fn env_for(url: &str) -> Env {
    let env = Env::uninit();
    Env {
        dir: env.dir,
        repo: url.into(),
    }
}

#[test]
fn the_whole_command_set_on_sftp_and_s3() {
    for (kind, url) in remotes("commands") {
        eprintln!("commands on {kind}: {url}");
        let env = env_for(&url);
        env.ok(&["init", "--pack-size", "1"]);
        let src = env.path("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        for i in 0..8 {
            fs::write(src.join(format!("sub/f{i}")), random_bytes(400_000, i)).unwrap();
        }
        fs::write(src.join("text"), "a line\n".repeat(10_000)).unwrap();
        let first = env.backup_json(&[&src], &[]);
        assert_eq!(first["files"], 9);
        fs::write(src.join("sub/f0"), random_bytes(400_000, 99)).unwrap();
        let second = env.backup_json(&[&src], &[]);
        assert_eq!(second["files_read"], 1, "incremental over {kind}: {second}");
        let target = env.path("restore");
        env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
        assert_same_tree(&src, &restored(&target, &src));
        env.ok(&["check", "--read-data"]);
        env.ok(&["forget", "--keep-last", "1", "--prune"]);
        env.ok(&["check", "--read-data"]);
        let out = env.ok(&["snapshots", "--json"]);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&out)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let again = env.path("restore2");
        env.ok(&["restore", "latest", "--target", again.to_str().unwrap()]);
        assert_same_tree(&src, &restored(&again, &src));
    }
}

/// A TCP forwarder that can be cut off and restored, to play a server that
/// goes away in the middle of a backup.
struct Outage {
    port: u16,
}

impl Outage {
    /// Forward to `target`; go down by itself once `budget` bytes have been
    /// sent towards the server (negative: never).
    fn new(target: u16, budget: i64) -> Outage {
        let sent = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up2 = Arc::new(AtomicBool::new(true));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (upload, mut from, mut to) in [
                    (
                        true,
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                    ),
                    (false, server, client),
                ] {
                    let up3 = Arc::clone(&up2);
                    let sent = Arc::clone(&sent);
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if upload
                                        && budget >= 0
                                        && sent.fetch_add(n as i64, Ordering::SeqCst) > budget
                                    {
                                        up3.store(false, Ordering::SeqCst);
                                    }
                                    if !up3.load(Ordering::SeqCst)
                                        || to.write_all(&buf[..n]).is_err()
                                    {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Outage { port }
    }
}

#[test]
fn a_server_lost_mid_backup_is_a_clear_error_and_the_repository_survives() {
    let Ok(base) = std::env::var("CAIRN_TEST_S3_URL") else {
        eprintln!("SKIPPED server outage test: CAIRN_TEST_S3_URL is not set");
        return;
    };
    // s3:http://127.0.0.1:PORT/bucket -> through the forwarder.
    let rest = base.strip_prefix("s3:http://127.0.0.1:").unwrap();
    let (port, bucket) = rest.split_once('/').unwrap();
    let outage = Outage::new(port.parse().unwrap(), -1);
    let url = format!(
        "s3:http://127.0.0.1:{}/{bucket}/outage-{}",
        outage.port,
        hex::encode(rand::random::<[u8; 6]>())
    );
    let first_port = outage.port;
    let env = env_for(&url);
    env.ok(&["init", "--pack-size", "1"]);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..60 {
        fs::write(src.join(format!("f{i:02}")), random_bytes(500_000, i)).unwrap();
    }
    env.backup_json(&[&src.join("f00")], &[]);
    // The next connection budget: the server goes away after ~8 MB of the
    // ~30 MB backup has been uploaded.
    let outage = Outage::new(port.parse().unwrap(), 8_000_000);
    let url2 = url.replace(&format!(":{}/", first_port), &format!(":{}/", outage.port));
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"))
        .env("CAIRN_REPOSITORY", &url2)
        .env("CAIRN_PASSWORD", PASSWORD)
        .args(["backup", src.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{}", outage.port)) || err.contains("attempts"),
        "{err}"
    );
    // One error line (a warning that the lock could not be removed from the
    // unreachable server may precede it).
    assert_eq!(
        err.lines().filter(|l| l.starts_with("cairn:")).count(),
        1,
        "{err}"
    );
    assert!(err.contains("after 5 attempts"), "retried first: {err}");
    let snaps: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(
        snaps.as_array().unwrap().len(),
        1,
        "no snapshot from the failed run"
    );
    env.ok(&["check"]);
    env.backup_json(&[&src], &[]);
    env.ok(&["check", "--read-data"]);
}
