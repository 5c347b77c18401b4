//! Every backend passes the same conformance suite, and the whole command
//! set works against real SFTP and S3 servers on loopback.
//!
//! The servers come from `scripts/test-servers.sh` (CI starts them); a test
//! whose server is not configured says so and passes without running, or
//! fails under `CI=true` (`common::skipped`).

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
            Err(_) => skipped(&format!(
                "{test} on {kind}: {var} is not set (run `eval \"$(scripts/test-servers.sh start)\"`)"
            )),
        }
    }
    out
}

/// Options carrying the test servers' settings (the SFTP key, the S3
/// credentials) from this process's environment: the library reads none
/// itself, the command line passes them the same way.
fn remote_options() -> RemoteOptions {
    let mut o = RemoteOptions::default();
    for key in cairn::backend::remote::SETTINGS {
        if let Ok(v) = std::env::var(key) {
            o.env.insert(key.to_string(), v);
        }
    }
    o
}

#[test]
fn conformance_suite_on_every_backend() {
    for (kind, url) in remotes("conformance") {
        eprintln!("conformance on {kind}: {url}");
        let b = open(&url, remote_options()).unwrap();
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
        skipped("server outage test: CAIRN_TEST_S3_URL is not set");
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
        .env("CAIRN_INSECURE_TEST_KDF", "1")
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

/// A backend that counts the bytes read through it.
struct Counting {
    inner: Arc<cairn::backend::mem::MemBackend>,
    read: std::sync::atomic::AtomicU64,
}

impl cairn::backend::Backend for Counting {
    fn location(&self) -> String {
        "counting".into()
    }
    fn create(&self) -> cairn::Result<()> {
        self.inner.create()
    }
    fn list(&self, dir: &str) -> cairn::Result<Vec<cairn::backend::ObjectInfo>> {
        self.inner.list(dir)
    }
    fn get(&self, name: &str) -> cairn::Result<Vec<u8>> {
        let b = self.inner.get(name)?;
        self.read.fetch_add(b.len() as u64, Ordering::SeqCst);
        Ok(b)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> cairn::Result<Vec<u8>> {
        self.read.fetch_add(len, Ordering::SeqCst);
        self.inner.get_range(name, offset, len)
    }
    fn put(&self, name: &str, data: &[u8]) -> cairn::Result<()> {
        self.inner.put(name, data)
    }
    fn delete(&self, name: &str) -> cairn::Result<()> {
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> cairn::Result<u64> {
        self.inner.stat(name)
    }
}

#[test]
fn with_a_warm_cache_an_incremental_backup_downloads_almost_nothing() {
    use cairn::backend::cache::CachedBackend;
    use cairn::ops::backup::{BackupOptions, backup};
    use cairn::repo::{InitOptions, Repository};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for d in 0..20 {
        fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
        for f in 0..20 {
            fs::write(
                src.join(format!("d{d}/f{f}")),
                random_bytes(20_000, d * 100 + f),
            )
            .unwrap();
        }
    }
    let counting = Arc::new(Counting {
        inner: Arc::new(cairn::backend::mem::MemBackend::new()),
        read: Default::default(),
    });
    let cached: Arc<dyn cairn::backend::Backend> = Arc::new(CachedBackend::new(
        counting.clone(),
        dir.path().join("cache"),
    ));
    let opts = InitOptions {
        kdf: cairn::crypto::KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..InitOptions::default()
    };
    Repository::init(cached.clone(), b"pw", &opts).unwrap();
    let bo = BackupOptions {
        paths: vec![src.clone()],
        ..BackupOptions::default()
    };
    let mut repo = Repository::open(cached.clone(), b"pw").unwrap();
    backup(
        &mut repo.lock_shared().unwrap(),
        &bo,
        &cairn::ops::NoProgress,
    )
    .unwrap();
    let stored = counting
        .inner
        .snapshot()
        .values()
        .map(|v| v.len() as u64)
        .sum::<u64>();

    // A new process: open, incremental backup of the unchanged tree.
    counting.read.store(0, Ordering::SeqCst);
    let mut repo = Repository::open(cached.clone(), b"pw").unwrap();
    let r = backup(
        &mut repo.lock_shared().unwrap(),
        &bo,
        &cairn::ops::NoProgress,
    )
    .unwrap();
    assert_eq!(r.snapshot.summary.files_read, 0);
    let read = counting.read.load(Ordering::SeqCst);
    assert!(read < 4096, "read {read} bytes of {stored} stored");

    // Without the cache the same backup reads every tree and index file.
    counting.read.store(0, Ordering::SeqCst);
    let mut repo = Repository::open(counting.clone(), b"pw").unwrap();
    backup(
        &mut repo.lock_shared().unwrap(),
        &bo,
        &cairn::ops::NoProgress,
    )
    .unwrap();
    let uncached = counting.read.load(Ordering::SeqCst);
    assert!(
        uncached > 10 * read.max(1),
        "uncached {uncached}, cached {read}"
    );

    // A damaged cache entry is not trusted: it fails authentication, is
    // dropped and fetched again.
    for e in walk(&dir.path().join("cache")) {
        if e.is_file() {
            let mut b = fs::read(&e).unwrap();
            let n = b.len();
            b[n / 2] ^= 1;
            fs::write(&e, b).unwrap();
        }
    }
    let mut repo = Repository::open(cached.clone(), b"pw").unwrap();
    let r = backup(
        &mut repo.lock_shared().unwrap(),
        &bo,
        &cairn::ops::NoProgress,
    )
    .unwrap();
    assert_eq!(r.snapshot.summary.files_read, 0);
    let mut repo = Repository::open(cached, b"pw").unwrap();
    let c = cairn::ops::check::check(
        &mut repo.lock_shared().unwrap(),
        &cairn::ops::check::CheckOptions {
            read_data: cairn::ops::check::ReadData::All,
        },
        &cairn::ops::NoProgress,
    )
    .unwrap();
    assert_eq!(c.errors(), 0, "{:?}", c.problems);
}

/// A job copying offsite to SFTP and S3 repositories whose credentials come
/// only from the configuration file's `env` tables (the process has none).
#[test]
fn a_job_copies_offsite_with_credentials_from_the_configuration_file() {
    let targets = remotes("job-offsite");
    if targets.is_empty() {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), random_bytes(300_000, 7)).unwrap();
    std::fs::write(env.path("pass"), PASSWORD).unwrap();
    let mut text = format!(
        "[repository.main]\nurl = \"{}\"\npassword_file = \"{}\"\n",
        env.repo.display(),
        env.path("pass").display()
    );
    let mut names = Vec::new();
    for (kind, url) in &targets {
        let vars: &[&str] = if kind == "s3" {
            &[
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_DEFAULT_REGION",
            ]
        } else {
            &["CAIRN_SFTP_KEY", "CAIRN_SFTP_KNOWN_HOSTS"]
        };
        // The remote repository exists already (made with the process env).
        env_for(url).ok(&["init"]);
        text.push_str(&format!(
            "\n[repository.{kind}]\nurl = \"{url}\"\npassword_file = \"{}\"\n[repository.{kind}.env]\n",
            env.path("pass").display()
        ));
        for v in vars {
            if let Ok(val) = std::env::var(v) {
                text.push_str(&format!("{v} = \"{val}\"\n"));
            }
        }
        names.push(format!("\"{kind}\""));
    }
    text.push_str(&format!(
        "\n[job.offsite]\nrepository = \"main\"\npaths = [\"{}\"]\ncopy_to = [{}]\nkeep_last = 1\n",
        src.display(),
        names.join(", ")
    ));
    let config = env.path("cairn.toml");
    std::fs::write(&config, text).unwrap();
    let mut cmd = env.cmd();
    for v in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "CAIRN_SFTP_KEY",
        "CAIRN_SFTP_KNOWN_HOSTS",
    ] {
        cmd.env_remove(v);
    }
    let out = cmd
        .env("CAIRN_STATE_DIR", env.path("state"))
        .args(["--config", config.to_str().unwrap(), "run", "offsite"])
        .output()
        .unwrap();
    success(out);
    for (kind, url) in &targets {
        let remote = env_for(url);
        let target = env.path(&format!("restore-{kind}"));
        remote.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
        assert_eq!(
            std::fs::read(restored(&target, &src).join("a")).unwrap(),
            std::fs::read(src.join("a")).unwrap(),
            "{kind}"
        );
    }
}
