//! The `rest:` backend and `cairn serve`: the conformance suite against
//! `cairn serve` and `rclone serve restic`, a whole backup and restore
//! through users and private repositories, restic itself as a client of
//! `cairn serve`, and append-only mode end to end.
//!
//! Servers are started on loopback ports by the tests and stopped when the
//! test ends; rclone and restic come from scripts/test.sh (a test that
//! finds one missing fails under `CI=true`, see `common::require`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use cairn::backend::remote::{RemoteOptions, open};
use common::*;

/// A `cairn serve` (or other server) process, killed when dropped.
struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    url: String,
    root: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `cairn serve --root DIR --listen 127.0.0.1:0 EXTRA…` and wait for
/// the line that names its port.
fn cairn_serve(env: &Env, root: &Path, extra: &[&str]) -> Server {
    let mut child = env
        .std_cmd()
        .args(["serve", "--root", root.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(err));
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .trim_end_matches('/')
        .to_string();
    // Keep draining the request log so the server never blocks on it.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Server {
        child,
        url,
        root: root.to_path_buf(),
    }
}

/// A free loopback port (for servers that cannot be told to pick one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts connections on `port`.
fn wait_listening(port: u16, child: &mut Child) {
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited with {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}

/// An htpasswd file with bcrypt entries (cost 4: fast in tests).
fn htpasswd(env: &Env, users: &[(&str, &str)]) -> PathBuf {
    let text: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap()))
        .collect();
    let path = env.path("htpasswd");
    std::fs::write(&path, text).unwrap();
    path
}

/// An environment whose repository is `url`.
fn env_at(url: &str) -> Env {
    let env = Env::uninit();
    Env {
        dir: env.dir,
        repo: url.into(),
    }
}

fn source(env: &Env) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..30u64 {
        std::fs::write(
            src.join(format!("sub/f{i}")),
            random_bytes(1000 + i as usize * 3001, i),
        )
        .unwrap();
    }
    std::fs::write(src.join("big"), random_bytes(5 << 20, 77)).unwrap();
    src
}

/// Every file below `dir`, relative, with its size.
fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut v: Vec<_> = files_below(dir)
        .into_iter()
        .map(|p| {
            let len = std::fs::metadata(&p).unwrap().len();
            (p.strip_prefix(dir).unwrap().to_path_buf(), len)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn the_conformance_suite_passes_against_cairn_serve() {
    let env = Env::uninit();
    let server = cairn_serve(&env, &env.path("root"), &[]);
    let b = open(
        &format!("rest:{}/conformance", server.url),
        RemoteOptions::default(),
    )
    .unwrap();
    cairn::backend::conformance::run_all(&*b);
    // Objects land where a local repository keeps them.
    assert!(server.root.join("conformance/data/ab/abcd").is_file());
    assert!(server.root.join("conformance/keys").is_dir());
}

#[test]
fn the_conformance_suite_passes_against_rclone_serve_restic() {
    if !require("rclone serve restic", &["rclone"], false) {
        return;
    }
    let env = Env::uninit();
    let port = free_port();
    std::fs::create_dir_all(env.path("rclone")).unwrap();
    let mut child = std::process::Command::new("rclone")
        .args(["serve", "restic", "--addr", &format!("127.0.0.1:{port}")])
        .arg(env.path("rclone"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port, &mut child);
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        root: env.path("rclone"),
    };
    let b = open(
        &format!("rest:{}/conformance", server.url),
        RemoteOptions::default(),
    )
    .unwrap();
    cairn::backend::conformance::run_all_without_times(&*b);
    assert!(server.root.join("conformance/data/ab/abcd").is_file());
}

#[test]
fn a_backup_through_cairn_serve_restores_byte_for_byte_and_users_stay_in_their_repositories() {
    let env = Env::uninit();
    let users = htpasswd(&env, &[("alice", "wonderland"), ("bob", "builder")]);
    let server = cairn_serve(
        &env,
        &env.path("root"),
        &[
            "--htpasswd-file",
            users.to_str().unwrap(),
            "--private-repos",
        ],
    );
    let host = server.url.trim_start_matches("http://");
    let alice = env_at(&format!("rest:http://alice:wonderland@{host}/alice/repo"));
    alice.ok(&["init"]);
    let src = source(&alice);
    alice.ok(&["backup", src.to_str().unwrap()]);
    let target = alice.path("restore");
    alice.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
    let out = alice.ok(&["check", "--read-data"]);
    assert!(out.contains("0 errors"), "{out}");
    // The server stored a local repository: Cairn opens it directly.
    let local = env_at(server.root.join("alice/repo").to_str().unwrap());
    let snaps = local.ok(&["snapshots", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&snaps)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Credentials from the settings instead of the URL.
    let mut c = env_at(&format!("rest:http://{host}/alice/repo")).cmd();
    c.env("CAIRN_REST_USERNAME", "alice")
        .env("CAIRN_REST_PASSWORD", "wonderland");
    let out = c.arg("snapshots").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A wrong password is refused with a line that says what to check,
    // and the password never appears in a message.
    let wrong = env_at(&format!("rest:http://alice:guess@{host}/alice/repo"));
    let out = wrong.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the server refused the credentials (401)"),
        "{err}"
    );
    assert!(!err.contains("guess"), "{err}");
    // Bob cannot reach Alice's repository, even with his own password.
    let bob = env_at(&format!("rest:http://bob:builder@{host}/alice/repo"));
    let out = bob.run(&["snapshots"]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the server forbids this (403)"), "{err}");
}

#[test]
fn restic_backs_up_to_and_checks_a_cairn_serve_repository() {
    if !require("restic against cairn serve", &["restic"], false) {
        return;
    }
    let env = Env::uninit();
    let server = cairn_serve(&env, &env.path("root"), &["--append-only"]);
    let src = source(&env);
    let restic = |args: &[&str]| {
        let out = std::process::Command::new("restic")
            .args(["-r", &format!("rest:{}/restic-repo", server.url)])
            .args(args)
            .env("RESTIC_PASSWORD", "restic's own passphrase")
            .env("RESTIC_CACHE_DIR", env.path("restic-cache"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restic {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    restic(&["init"]);
    restic(&["backup", src.to_str().unwrap()]);
    let out = restic(&["check", "--read-data"]);
    assert!(out.contains("no errors were found"), "{out}");
    let target = env.path("restic-restore");
    restic(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn an_append_only_server_keeps_backups_and_refuses_forget_prune_and_key_remove() {
    let env = Env::uninit();
    let server = cairn_serve(&env, &env.path("root"), &["--append-only"]);
    let client = env_at(&format!("rest:{}/repo", server.url));
    client.ok(&["init"]);
    let src = source(&client);
    client.ok(&["backup", src.to_str().unwrap()]);
    std::fs::write(src.join("sub/f0"), b"changed").unwrap();
    client.ok(&["backup", src.to_str().unwrap()]);
    let out = client.ok(&["check"]);
    assert!(out.contains("0 errors"), "{out}");
    // Copies into an append-only repository work.
    let other = Env::new();
    other.ok(&["backup", src.to_str().unwrap()]);
    let out = client
        .cmd()
        .env("CAIRN_FROM_PASSWORD", PASSWORD)
        .args(["copy", "--from-repo", other.repo.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snaps: serde_json::Value =
        serde_json::from_str(&client.ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 3);
    let pass2 = client.path("pass2");
    std::fs::write(&pass2, "a second passphrase\n").unwrap();
    client.ok(&["key", "add", "--new-password-file", pass2.to_str().unwrap()]);
    let keys: serde_json::Value =
        serde_json::from_str(&client.ok(&["key", "list", "--json"])).unwrap();
    let other = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] != true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let before = listing(&server.root);
    let line = "cairn: the repository server is append-only: run this on the server, \
                e.g. `cairn -r /srv/cairn/alice/repo prune`\n";
    for args in [
        vec!["forget", "--keep-last", "1"],
        vec!["prune"],
        vec!["key", "remove", &other],
    ] {
        let out = client.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), line, "{args:?}");
    }
    // Nothing was deleted, and no lock was left behind.
    assert_eq!(listing(&server.root), before);
    assert!(files_below(&server.root.join("repo/locks")).is_empty());
    // Retention runs on the server, on the directory.
    let local = env_at(server.root.join("repo").to_str().unwrap());
    local.ok(&["forget", "--keep-last", "1", "--prune"]);
    // (Three snapshots of one host and path: one is kept.)
    let snaps: serde_json::Value =
        serde_json::from_str(&client.ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1);
}

#[test]
fn a_job_on_an_append_only_server_reports_retention_as_skipped() {
    let env = Env::uninit();
    let server = cairn_serve(&env, &env.path("root"), &["--append-only"]);
    let client = env_at(&format!("rest:{}/repo", server.url));
    client.ok(&["init"]);
    let src = source(&client);
    let pass = env.path("pass");
    std::fs::write(&pass, format!("{PASSWORD}\n")).unwrap();
    let config = env.path("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "[repository.offsite]\nurl = \"rest:{}/repo\"\npassword_file = \"{}\"\n\n\
             [job.app]\nrepository = \"offsite\"\npaths = [\"{}\"]\nkeep_last = 1\n",
            server.url,
            pass.display(),
            src.display()
        ),
    )
    .unwrap();
    let out = client
        .cmd()
        .env_remove("CAIRN_REPOSITORY")
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_STATE_DIR", env.path("state"))
        .args(["--config", config.to_str().unwrap(), "--json", "run", "app"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let steps = v["jobs"][0]["steps"].as_array().unwrap();
    let forget = steps
        .iter()
        .find(|s| s["step"].as_str().unwrap().starts_with("forget"))
        .unwrap();
    assert_eq!(forget["ok"], true, "{forget}");
    assert!(
        forget["skipped"].as_str().unwrap().contains("append-only"),
        "{forget}"
    );
    assert!(forget.get("error").is_none(), "{forget}");
}

#[test]
fn a_full_quota_refuses_the_write_with_a_clear_error() {
    let env = Env::uninit();
    let server = cairn_serve(&env, &env.path("root"), &["--max-size", "1M"]);
    let client = env_at(&format!("rest:{}/repo", server.url));
    client.ok(&["init"]);
    let src = source(&client);
    let out = client.run(&["backup", src.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the repository server's quota is full"),
        "{err}"
    );
    assert!(dir_bytes(&server.root) <= 1 << 20);
}

#[test]
fn serve_refuses_repository_options() {
    let env = Env::uninit();
    let out = env.run(&[
        "-r",
        "/srv/repo",
        "serve",
        "--root",
        env.path("r").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cairn: `cairn serve` does not take -r/--repo: it opens no repository\n"
    );
}

#[test]
fn https_with_a_private_certificate_authority() {
    if !require("cairn serve over TLS", &["openssl"], false) {
        return;
    }
    let env = Env::uninit();
    let (ca, cert, key) = (
        env.path("ca.pem"),
        env.path("cert.pem"),
        env.path("key.pem"),
    );
    let ext = env.path("ext.cnf");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\n").unwrap();
    let d = env.dir.path().to_str().unwrap();
    for cmd in [
        // A certificate authority of one's own, then the server's
        // certificate signed by it.
        format!(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -days 2 -subj /CN=ca -keyout {d}/ca.key -out {d}/ca.pem"
        ),
        format!(
            "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -subj /CN=server -keyout {d}/key.pem -out {d}/req.csr"
        ),
        format!(
            "openssl x509 -req -in {d}/req.csr -CA {d}/ca.pem -CAkey {d}/ca.key \
             -CAcreateserial -days 2 -extfile {d}/ext.cnf -out {d}/cert.pem"
        ),
    ] {
        let out = std::process::Command::new("sh")
            .args(["-c", &cmd])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let server = cairn_serve(
        &env,
        &env.path("root"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let client = env_at(&format!("rest:{}/repo", server.url));
    // Not signed by a system authority: refused.
    let out = client.run(&["init"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(!server.root.join("repo/config").exists());
    // Trusted through CAIRN_REST_TLS_CA_FILE: works.
    let run = |args: &[&str]| {
        let out = client
            .cmd()
            .env("CAIRN_REST_TLS_CA_FILE", &ca)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["init"]);
    // The same through --tls-ca-file.
    client.ok(&["--tls-ca-file", ca.to_str().unwrap(), "snapshots"]);
    let src = source(&client);
    run(&["backup", src.to_str().unwrap()]);
    let target = client.path("restore");
    run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
}

#[test]
fn the_conformance_suite_passes_through_an_rclone_child_over_its_standard_io() {
    if !require("rclone: backend", &["rclone"], false) {
        return;
    }
    let env = Env::uninit();
    let dir = env.path("rclone-remote");
    let b = open(
        &format!("rclone:{}", dir.display()),
        RemoteOptions::default(),
    )
    .unwrap();
    cairn::backend::conformance::run_all_without_times(&*b);
    assert!(dir.join("data/ab/abcd").is_file());
}

#[test]
fn an_rclone_repository_backs_up_restores_and_checks_and_rclone_args_make_it_append_only() {
    if !require("rclone: backend", &["rclone"], false) {
        return;
    }
    let env = Env::uninit();
    let dir = env.path("rclone-remote");
    let client = env_at(&format!("rclone:{}", dir.display()));
    client.ok(&["init"]);
    let src = source(&client);
    client.ok(&["backup", src.to_str().unwrap()]);
    client.ok(&["backup", src.to_str().unwrap()]);
    let target = client.path("restore");
    client.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
    let out = client.ok(&["check", "--read-data"]);
    assert!(out.contains("0 errors"), "{out}");
    // The files rclone wrote are a local repository.
    let local = env_at(dir.to_str().unwrap());
    local.ok(&["check"]);

    // rclone's own append-only mode, through --rclone-args.
    let before = listing(&dir);
    // (An empty rclone configuration: rclone says nothing about a missing one.)
    let conf = client.path("rclone.conf");
    std::fs::write(&conf, "").unwrap();
    let out = client
        .cmd()
        .env("RCLONE_CONFIG", &conf)
        .args(["--rclone-args", "serve restic --stdio --append-only"])
        .args(["forget", "--keep-last", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cairn: the repository server is append-only: run this on the server, \
         e.g. `cairn -r /srv/cairn/alice/repo prune`\n"
    );
    assert_eq!(listing(&dir), before);
    client.ok(&[
        "--rclone-args",
        "serve restic --stdio --append-only",
        "backup",
        src.to_str().unwrap(),
    ]);
    client.ok(&["forget", "--keep-last", "1"]);

    // A program that is not there is named.
    let out = client.run(&["--rclone-program", "/nonexistent/rclone", "snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot start /nonexistent/rclone"), "{err}");
}

/// `cairn sql` and `cairn diff --rows` read a database page by page from a
/// remote (REST) repository, as from a local one.
#[test]
fn sql_and_diff_rows_read_a_database_through_cairn_serve() {
    let env = Env::uninit();
    let users = htpasswd(&env, &[("alice", "wonderland")]);
    let server = cairn_serve(
        &env,
        &env.path("root"),
        &["--htpasswd-file", users.to_str().unwrap()],
    );
    let host = server.url.trim_start_matches("http://");
    let alice = env_at(&format!("rest:http://alice:wonderland@{host}/repo"));
    alice.ok(&["init"]);
    let src = alice.path("app");
    std::fs::create_dir_all(&src).unwrap();
    let db = src.join("app.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
         INSERT INTO notes(body) VALUES ('first'), ('second'), ('third');",
    )
    .unwrap();
    let a = alice.backup_json(&[&src], &[])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    c.execute_batch("DELETE FROM notes WHERE id = 2; UPDATE notes SET body = 'one' WHERE id = 1;")
        .unwrap();
    let b = alice.backup_json(&[&src], &[])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    drop(c);
    let out = alice.ok(&[
        "sql",
        &format!("{}:{}", &a[..8], db.display()),
        "SELECT id, body FROM notes ORDER BY id",
    ]);
    assert_eq!(out, "1|first\n2|second\n3|third\n");
    let out = alice.ok(&["-q", "diff", &a[..8], &b[..8], "--rows", "--table", "notes"]);
    assert_eq!(
        out,
        format!(
            "{}\n  notes: 0 inserted, 1 updated, 1 deleted (by id)\n    M 1\n    - 2\n",
            db.display()
        )
    );
}
