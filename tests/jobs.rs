//! Nightly jobs from a configuration file: `cairn run` with hooks, a
//! source tree, a live SQLite database, a stdin command, retention and
//! health pings received by a real HTTP server; configuration errors;
//! `restore-test` on healthy and damaged repositories.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;

/// A request the ping server received.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    body: String,
}

/// A small HTTP server on loopback recording every request.
struct PingServer {
    url: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl PingServer {
    fn start() -> PingServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ping/abc", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                log.lock().unwrap().push(Request {
                    method,
                    path,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
                );
            }
        });
        PingServer { url, seen }
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

/// A source tree with a live SQLite database (held open in WAL mode with
/// uncheckpointed writes while the job runs).
fn source(env: &Env) -> (std::path::PathBuf, rusqlite::Connection) {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("docs/deep")).unwrap();
    std::fs::create_dir_all(src.join("icon_cache")).unwrap();
    for i in 0..20 {
        std::fs::write(
            src.join(format!("docs/f{i}.bin")),
            random_bytes(1000 + i * 7919, i as u64),
        )
        .unwrap();
    }
    std::fs::write(src.join("docs/deep/big.bin"), random_bytes(3 << 20, 99)).unwrap();
    std::fs::write(src.join("icon_cache/x.png"), b"not worth keeping").unwrap();
    let db = rusqlite::Connection::open(src.join("app.sqlite3")).unwrap();
    db.pragma_update(None, "journal_mode", "WAL").unwrap();
    db.execute_batch("CREATE TABLE items(id INTEGER PRIMARY KEY, body BLOB);")
        .unwrap();
    for i in 0..500 {
        db.execute(
            "INSERT INTO items(body) VALUES (?1)",
            [random_bytes(300, i)],
        )
        .unwrap();
    }
    (src, db)
}

/// Write the job file; `stdin` is the stdin command's shell text.
fn job_file(env: &Env, src: &Path, ping: &str, stdin: &str) -> std::path::PathBuf {
    let d = env.dir.path().display();
    std::fs::write(env.path("pass"), format!("{PASSWORD}\n")).unwrap();
    let text = format!(
        r#"
[repository.main]
url = "{repo}"
password_file = "{d}/pass"

[job.app]
repository = "main"
paths = ["{src}"]
exclude = ["icon_cache/"]
stdin_command = ["sh", "-c", "{stdin}"]
stdin_filename = "dump.sql"
before = ["echo before >> {d}/hooks.log", "touch {d}/marker"]
after = ["echo after >> {d}/hooks.log"]
on_failure = ["echo \"on_failure $CAIRN_ERROR\" >> {d}/hooks.log"]
finally = ["echo finally $CAIRN_STATUS >> {d}/hooks.log"]
healthcheck = "{ping}"
keep_last = 2
prune_every_days = 0
"#,
        repo = env.repo.display(),
        src = src.display(),
    );
    let p = env.path("cairn.toml");
    std::fs::write(&p, text).unwrap();
    // Both hold secrets: readable by others, they would give warnings.
    for f in [&p, &env.path("pass")] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    p
}

fn run_job(env: &Env, config: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--config", config.to_str().unwrap(), "run", "app"];
    args.extend_from_slice(extra);
    env.cmd()
        .env_remove("CAIRN_REPOSITORY")
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_STATE_DIR", env.path("state"))
        .env("CAIRN_CACHE_DIR", "off")
        .args(&args)
        .output()
        .unwrap()
}

fn hooks_log(env: &Env) -> Vec<String> {
    std::fs::read_to_string(env.path("hooks.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn snapshot_count(env: &Env) -> usize {
    let out = env.ok(&["snapshots", "--json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn a_job_backs_up_applies_retention_runs_hooks_and_pings() {
    let env = Env::new();
    let (src, db) = source(&env);
    let server = PingServer::start();
    let config = job_file(&env, &src, &server.url, "echo dump of the night");

    for night in 0..3 {
        db.execute(
            "INSERT INTO items(body) VALUES (?1)",
            [random_bytes(300, 1000 + night)],
        )
        .unwrap();
        let out = run_job(&env, &config, &[]);
        assert!(
            out.status.success(),
            "night {night}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Quiet on success: cron mails nothing.
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(env.path("marker").exists(), "the before hook ran");
    assert_eq!(
        hooks_log(&env),
        ["before", "after", "finally success"].repeat(3),
        "hooks ran in order every night"
    );
    // Retention: keep_last = 2 of three nights.
    assert_eq!(snapshot_count(&env), 2);
    let pings: Vec<String> = server
        .requests()
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(pings, ["GET /ping/abc/start", "GET /ping/abc"].repeat(3));

    // The latest snapshot holds the tree (without the excluded cache), the
    // database with the last night's row, and the command's output.
    let target = env.path("restore");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let back = restored(&target, &src);
    assert!(!back.join("icon_cache").exists());
    std::fs::remove_dir_all(src.join("icon_cache")).unwrap();
    for f in ["docs/deep/big.bin", "docs/f3.bin", "docs/f19.bin"] {
        assert_eq!(
            std::fs::read(src.join(f)).unwrap(),
            std::fs::read(back.join(f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(target.join("dump.sql")).unwrap(),
        "dump of the night\n"
    );
    let copy = rusqlite::Connection::open(back.join("app.sqlite3")).unwrap();
    let n: i64 = copy
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 503);
    // The snapshots carry the job's tag.
    let snaps = env.ok(&["snapshots", "--tag", "job:app", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&snaps)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    drop(db);
}

#[test]
fn a_failing_source_command_pings_failure_and_still_runs_after_and_finally() {
    let env = Env::new();
    let (src, _db) = source(&env);
    let server = PingServer::start();
    let config = job_file(&env, &src, &server.url, "echo partial; exit 7");
    let out = run_job(&env, &config, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("job app: backup failed"), "{stderr}");
    assert!(
        stderr.contains("exit status: 7") || stderr.contains("exited"),
        "{stderr}"
    );

    let log = hooks_log(&env);
    assert_eq!(log[0], "before");
    assert_eq!(log[1], "after", "after hooks restart what before stopped");
    assert!(log[2].starts_with("on_failure backup:"), "{log:?}");
    assert_eq!(log[3], "finally failure");
    assert_eq!(log.len(), 4);

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("GET", "/ping/abc/start")
    );
    assert_eq!(
        (reqs[1].method.as_str(), reqs[1].path.as_str()),
        ("POST", "/ping/abc/fail")
    );
    assert!(reqs[1].body.contains("backup:"), "{}", reqs[1].body);
    assert!(reqs[1].body.contains("FAILED backup"), "{}", reqs[1].body);
    // No snapshot from a failed command.
    assert_eq!(snapshot_count(&env), 0);
}

#[test]
fn a_failing_before_hook_skips_the_backup_but_not_the_after_hooks() {
    let env = Env::new();
    let (src, _db) = source(&env);
    let server = PingServer::start();
    let config = job_file(&env, &src, &server.url, "echo x");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"touch ", "\"false && touch ");
    std::fs::write(&config, text).unwrap();
    let out = run_job(&env, &config, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = &v["jobs"][0];
    assert_eq!(job["ok"], false);
    assert_eq!(job["steps"][0]["step"], "before hooks");
    assert_eq!(job["steps"][0]["ok"], false);
    assert!(
        job["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["step"] != "backup"),
        "{job}"
    );
    assert_eq!(hooks_log(&env)[1], "after");
    assert_eq!(snapshot_count(&env), 0);
    assert_eq!(server.requests().last().unwrap().path, "/ping/abc/fail");
}

#[test]
fn configuration_errors_name_the_file_line_and_key() {
    let env = Env::uninit();
    let (src, _db) = {
        std::fs::create_dir_all(env.path("src")).unwrap();
        (env.path("src"), ())
    };
    let config = job_file(&env, &src, "http://127.0.0.1:9/x", "true");
    let good = std::fs::read_to_string(&config).unwrap();
    let line_of = |needle: &str| good.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let cases = [
        ("keep_last = 2", "keep_lsat = 2", "keep_lsat"),
        ("keep_last = 2", "keep_last = \"two\"", "keep_last"),
        (
            "repository = \"main\"",
            "repository = \"nas\"",
            "repository",
        ),
        (
            "prune_every_days = 0",
            "prune_every_days = -1",
            "prune_every_days",
        ),
    ];
    for (from, to, key) in cases {
        let line = line_of(from);
        std::fs::write(&config, good.replace(from, to)).unwrap();
        let out = env
            .cmd()
            .args(["config", "check", config.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{to}: {err}");
        assert!(
            err.contains(&format!("{}:{line}:", config.display())),
            "{to}: names file and line {line}: {err}"
        );
        assert!(
            err.contains(&format!("`{key}`")),
            "{to}: names the key: {err}"
        );
    }
    std::fs::write(&config, &good).unwrap();
    // The repository does not exist: check the file alone.
    let out = env
        .cmd()
        .args([
            "--config",
            config.to_str().unwrap(),
            "config",
            "check",
            "--no-open",
        ])
        .output()
        .unwrap();
    assert!(success(out).contains("jobs: app"));
}

#[test]
fn schedule_print_emits_a_service_a_timer_and_a_crontab_line() {
    let env = Env::uninit();
    std::fs::create_dir_all(env.path("src")).unwrap();
    let config = job_file(&env, &env.path("src"), "http://127.0.0.1:9/x", "true");
    let out = env
        .cmd()
        .args([
            "--config",
            config.to_str().unwrap(),
            "schedule",
            "print",
            "app",
            "--at",
            "02:30",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("[Service]\nType=oneshot\nExecStart="),
        "{text}"
    );
    assert!(
        text.contains(&format!("--config {} run app", config.display())),
        "{text}"
    );
    assert!(text.contains("OnCalendar=*-*-* 02:30:00"), "{text}");
    assert!(text.contains("Persistent=true"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("30 2 * * * ") && l.ends_with(" run app")),
        "{text}"
    );
    let out = env
        .cmd()
        .args([
            "--config",
            config.to_str().unwrap(),
            "schedule",
            "print",
            "nope",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// `--every 15m` prints a timer and a crontab line that fire every quarter
/// hour, and says what a job run that often should set and does not; once
/// set, the notes are gone.
#[test]
fn schedule_print_every_fifteen_minutes_advises_retention_and_check_cadence() {
    let env = Env::uninit();
    std::fs::create_dir_all(env.path("src")).unwrap();
    let config = job_file(&env, &env.path("src"), "http://127.0.0.1:9/x", "true");
    let print = |extra: &[&str]| {
        let mut args = vec![
            "--config",
            config.to_str().unwrap(),
            "schedule",
            "print",
            "app",
        ];
        args.extend_from_slice(extra);
        env.cmd().args(&args).output().unwrap()
    };
    let out = print(&["--every", "15m"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("OnCalendar=*-*-* *:00/15:00"), "{text}");
    assert!(text.contains("RandomizedDelaySec=90s"), "{text}");
    assert!(text.contains("every 15 minutes"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("*/15 * * * * ") && l.ends_with(" run app")),
        "{text}"
    );
    // The job keeps the last 2 snapshots and checks at every run.
    assert!(
        text.contains("# note: the job checks the repository"),
        "{text}"
    );
    assert!(text.contains("check_every_hours = 24"), "{text}");
    assert!(text.contains("# note: prune_every_days = 0"), "{text}");
    let out = print(&["--every", "7m"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("divide an hour"));
    // Both: a usage error.
    let out = print(&["--every", "15m", "--at", "03:00"]);
    assert_eq!(out.status.code(), Some(2));

    let text = std::fs::read_to_string(&config).unwrap().replace(
        "prune_every_days = 0\n",
        "check_every_hours = 24\nkeep_within = \"2d\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let out = print(&["--every", "15m", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["notes"], serde_json::json!([]), "{v}");
    assert!(
        v["crontab"].as_str().unwrap().starts_with("*/15 * * * * "),
        "{v}"
    );
}

/// With `check_every_hours`, a job run again soon after skips its check
/// (a run every few minutes stays cheap); without it, every run checks.
#[test]
fn check_every_hours_skips_the_check_of_a_run_soon_after_the_last() {
    let env = Env::new();
    let (src, _db) = source(&env);
    let config = job_file(&env, &src, "http://127.0.0.1:9/x", "echo dump");
    let checks = |out: &std::process::Output| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["jobs"][0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["step"].as_str())
            .filter(|s| s.starts_with("check"))
            .map(str::to_string)
            .collect()
    };
    let out = run_job(&env, &config, &["--json"]);
    assert_eq!(checks(&out), ["check (data slice 1/7)"]);
    let out = run_job(&env, &config, &["--json"]);
    assert_eq!(checks(&out), ["check (data slice 2/7)"]);
    let text = std::fs::read_to_string(&config).unwrap() + "check_every_hours = 24\n";
    std::fs::write(&config, text).unwrap();
    let out = run_job(&env, &config, &["--json"]);
    assert_eq!(checks(&out), Vec::<String>::new(), "checked an hour ago");
    // A last check in the future (the clock was set back) does not
    // silence the checks: the run checks.
    let state = env.path("state/jobs/app.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    v["last_check"] = serde_json::json!(4_000_000_000i64);
    std::fs::write(&state, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = run_job(&env, &config, &["--json"]);
    assert_eq!(checks(&out), ["check (data slice 3/7)"]);
}

#[test]
fn restore_test_passes_on_a_sound_repository_and_fails_on_a_damaged_pack() {
    let env = Env::new();
    let (src, db) = source(&env);
    env.ok(&["backup", src.to_str().unwrap()]);
    let out = env.ok(&["restore-test"]);
    assert!(out.contains("app.sqlite3: integrity_check ok"), "{out}");
    assert!(out.contains("all sound"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["restore-test", "latest", "--json"])).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["files"], 23);
    // The temporary directory is removed afterwards.
    let tmp = env.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    env.ok(&["restore-test", "--tmp-dir", tmp.to_str().unwrap()]);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "cleaned up");

    // Damage a data blob: a flipped byte in the middle of the biggest one,
    // found through the index. (Byte 100 of the biggest pack can land in a
    // tree blob, since trees and data may share a pack.)
    let mut biggest: Option<(String, u64, u64)> = None;
    for idx in walk(&env.repo.join("index")) {
        let id = idx.file_name().unwrap().to_str().unwrap().to_string();
        let f: serde_json::Value = serde_json::from_str(&env.ok(&["cat", "index", &id])).unwrap();
        for p in f["packs"].as_array().unwrap() {
            for b in p["blobs"].as_array().unwrap() {
                let len = b["length"].as_u64().unwrap();
                if b["type"] == "data" && biggest.as_ref().is_none_or(|x| len > x.2) {
                    let pack = p["id"].as_str().unwrap().to_string();
                    biggest = Some((pack, b["offset"].as_u64().unwrap(), len));
                }
            }
        }
    }
    let (pack, offset, len) = biggest.expect("a data blob is indexed");
    let victim = env.repo.join("data").join(&pack[..2]).join(&pack);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[(offset + len / 2) as usize] ^= 0x40;
    std::fs::write(&victim, bytes).unwrap();
    let out = env.run(&["restore-test", "--tmp-dir", tmp.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("damaged: {}/", src.display())),
        "names the damaged file: {stdout}"
    );
    assert!(stdout.contains("authentication failed"), "{stdout}");
    assert!(stderr.contains("restore test"), "{stderr}");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "cleaned up");
    drop(db);
}

/// The verification behind `restore-test` hashes the restored bytes itself:
/// a restored file changed on disk afterwards, a wrong mode or a missing
/// file is reported with its snapshot path.
#[test]
fn verify_finds_restored_files_that_differ_from_the_snapshot() {
    use cairn::ops::restore::{RestoreOptions, RestoreRoot, restore};
    use cairn::ops::verify::verify;
    use std::os::unix::fs::PermissionsExt;

    let env = Env::new();
    let (src, db) = source(&env);
    drop(db);
    env.ok(&["backup", src.to_str().unwrap()]);
    let backend = std::sync::Arc::new(cairn::backend::local::LocalBackend::new(&env.repo));
    let mut repo = cairn::repo::Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    let mut lock = repo.lock_shared().unwrap();
    let repo = lock.load_index().unwrap();
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    let target = env.path("restored");
    let opts = RestoreOptions {
        target: target.clone(),
        include: Vec::new(),
        owners: None,
        ..RestoreOptions::default()
    };
    let root = RestoreRoot::Tree(snap.tree);
    restore(&repo, &root, b"/", &opts, &cairn::ops::NoProgress).unwrap();
    let clean = verify(&repo, &snap.tree, b"/", &target, &cairn::ops::NoProgress).unwrap();
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    assert_eq!(clean.files, 23);

    let back = restored(&target, &src);
    // Same size, one byte different, times put back as they were.
    let big = back.join("docs/deep/big.bin");
    let times = std::fs::metadata(&big).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&big).unwrap();
    bytes[2_000_000] ^= 1;
    std::fs::write(&big, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&big)
        .unwrap()
        .set_modified(times)
        .unwrap();
    std::fs::set_permissions(
        back.join("docs/f1.bin"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::remove_file(back.join("docs/f2.bin")).unwrap();
    let r = verify(&repo, &snap.tree, b"/", &target, &cairn::ops::NoProgress).unwrap();
    let mut found: Vec<(String, String)> = r.problems.clone();
    found.sort();
    let name = |f: &str| format!("{}/{f}", src.display());
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found[0].0, name("docs/deep/big.bin"));
    assert!(found[0].1.starts_with("content differs"), "{found:?}");
    assert_eq!(found[1].0, name("docs/f1.bin"));
    assert!(found[1].1.starts_with("mode 600"), "{found:?}");
    assert_eq!(found[2].0, name("docs/f2.bin"));
    assert!(found[2].1.starts_with("missing"), "{found:?}");
}

#[test]
fn completions_and_manual_pages_come_from_the_commands() {
    let env = Env::uninit();
    for shell in ["bash", "zsh", "fish"] {
        let script = env.ok(&["completions", shell]);
        for word in ["restore-test", "schedule", "read-data-subset", "keep-daily"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    // The bash script is valid bash.
    let bash = env.path("cairn.bash");
    std::fs::write(&bash, env.ok(&["completions", "bash"])).unwrap();
    let st = std::process::Command::new("bash")
        .arg("-n")
        .arg(&bash)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(!env.run(&["completions", "tcsh"]).status.success());

    let page = env.ok(&["man"]);
    assert!(page.starts_with(".ie"), "roff");
    assert!(page.contains("restore\\-test"), "lists the subcommands");
    let dir = env.path("man");
    env.ok(&["man", "--dir", dir.to_str().unwrap()]);
    for f in [
        "cairn.1",
        "cairn-backup.1",
        "cairn-run.1",
        "cairn-config-check.1",
    ] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(text.contains(".TH"), "{f}");
    }
}

/// An offsite copy that fails one night (the offsite repository is not
/// there) fails the job but keeps the local snapshot; the next night copies
/// both snapshots, and retention applies on both repositories.
#[test]
fn a_missed_offsite_copy_is_caught_up_the_next_night() {
    let env = Env::new();
    let (src, db) = source(&env);
    drop(db);
    let server = PingServer::start();
    let config = job_file(&env, &src, &server.url, "echo dump");
    let offsite = env.path("offsite");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[job.app]\n",
        &format!(
            "[repository.offsite]\nurl = \"{}\"\npassword_file = \"{}\"\n\n[job.app]\ncopy_to = [\"offsite\"]\n",
            offsite.display(),
            env.path("pass").display()
        ),
    );
    std::fs::write(&config, text.replace("keep_last = 2", "keep_last = 3")).unwrap();
    let out = run_job(&env, &config, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("copy to offsite failed"), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert_eq!(snapshot_count(&env), 1, "the local snapshot stays");
    assert!(
        server
            .requests()
            .last()
            .unwrap()
            .body
            .contains("copy to offsite")
    );

    let off = Env {
        dir: tempfile::tempdir().unwrap(),
        repo: offsite.clone(),
    };
    off.ok(&["init"]);
    for night in 0..4 {
        let out = run_job(&env, &config, &[]);
        assert!(
            out.status.success(),
            "night {night}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if night == 0 {
            assert_eq!(snapshot_count(&off), 2, "caught up");
        }
    }
    assert_eq!(snapshot_count(&env), 3);
    assert_eq!(snapshot_count(&off), 3, "retention offsite too");
    let target = env.path("r");
    off.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(restored(&target, &src).join("docs/deep/big.bin")).unwrap(),
        std::fs::read(src.join("docs/deep/big.bin")).unwrap()
    );
}

/// A backup that had to leave out a database (busy past the timeout) wrote
/// a snapshot: the job fails and says so, but still applies retention and
/// runs its checks on that snapshot.
#[test]
fn a_partial_backup_fails_the_job_but_keeps_and_maintains_the_snapshot() {
    let env = Env::new();
    let (src, db) = source(&env);
    let server = PingServer::start();
    let config = job_file(&env, &src, &server.url, "echo dump");
    let text = std::fs::read_to_string(&config).unwrap() + "sqlite_timeout = 0\n";
    std::fs::write(&config, text).unwrap();
    db.pragma_update(None, "journal_mode", "DELETE").unwrap();
    db.execute_batch("BEGIN EXCLUSIVE; INSERT INTO items(body) VALUES (x'00');")
        .unwrap();
    let out = run_job(&env, &config, &["--json"]);
    db.execute_batch("COMMIT;").unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = &v["jobs"][0];
    assert!(job["snapshot_id"].is_string(), "{job}");
    let steps: Vec<(&str, bool)> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(steps[1], ("backup", false), "{steps:?}");
    assert!(steps.contains(&("forget on main", true)), "{steps:?}");
    assert!(
        steps.iter().any(|(s, ok)| s.starts_with("check") && *ok),
        "{steps:?}"
    );
    assert!(
        job["errors"][0]
            .as_str()
            .unwrap()
            .contains("without 1 entry that could not be read"),
        "{job}"
    );
    assert_eq!(snapshot_count(&env), 1);
    let fail = server.requests().pop().unwrap();
    assert_eq!(fail.path, "/ping/abc/fail");
    assert!(
        fail.body
            .contains(&format!("{}/app.sqlite3", src.display())),
        "the failure ping names the entry: {}",
        fail.body
    );
}

/// Databases that arrive as streams (an rqlite `/db/backup` through
/// `--stdin-from-command`) are not captures, but restore-test checks them
/// with integrity_check too.
#[test]
fn restore_test_checks_databases_stored_as_streams() {
    let env = Env::new();
    let file = env.path("dump.sqlite");
    {
        let db = rusqlite::Connection::open(&file).unwrap();
        db.execute_batch("CREATE TABLE t(x TEXT); CREATE INDEX tx ON t(x);")
            .unwrap();
        for i in 0..2000 {
            db.execute("INSERT INTO t VALUES (?1)", [format!("row {i:08}")])
                .unwrap();
        }
    }
    let f = file.to_str().unwrap();
    env.ok(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "rqlite.sqlite",
        "--",
        "cat",
        f,
    ]);
    let out = env.ok(&["restore-test"]);
    assert!(
        out.contains("database /rqlite.sqlite: integrity_check ok"),
        "{out}"
    );

    // The same database with a page of its index overwritten.
    let mut bytes = std::fs::read(&file).unwrap();
    let pages = bytes.len() / 4096;
    let last = (pages - 1) * 4096;
    for b in &mut bytes[last + 100..last + 400] {
        *b = 0x5a;
    }
    std::fs::write(&file, bytes).unwrap();
    env.ok(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "rqlite.sqlite",
        "--",
        "cat",
        f,
    ]);
    let out = env.run(&["restore-test"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("damaged: /rqlite.sqlite: integrity_check"),
        "{stdout}"
    );
}

/// The metrics file's samples, by metric and job.
fn samples(text: &str) -> std::collections::BTreeMap<(String, String), f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (name, rest) = l.split_once("{job=\"").unwrap();
            let (job, value) = rest.split_once("\"} ").unwrap();
            ((name.to_string(), job.to_string()), value.parse().unwrap())
        })
        .collect()
}

#[test]
fn run_writes_every_job_s_metrics_for_the_textfile_collector() {
    let env = Env::new();
    let (src, db) = source(&env);
    let d = env.dir.path().display();
    std::fs::write(env.path("pass"), format!("{PASSWORD}\n")).unwrap();
    let metrics = env.path("textfile/cairn.prom");
    std::fs::create_dir_all(metrics.parent().unwrap()).unwrap();
    let config = env.path("cairn.toml");
    std::fs::write(
        &config,
        format!(
            r#"
metrics_file = "{metrics}"

[repository.main]
url = "{repo}"
password_file = "{d}/pass"

[job.app]
repository = "main"
paths = ["{src}"]

[job.broken]
repository = "main"
paths = ["{src}"]
before = ["exit 3"]
"#,
            metrics = metrics.display(),
            repo = env.repo.display(),
            src = src.display(),
        ),
    )
    .unwrap();
    let before = jiff::Timestamp::now().as_second();
    let out = run_job(&env, &config, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("# TYPE cairn_job_last_success_timestamp_seconds gauge"),
        "{text}"
    );
    let m = samples(&text);
    let get = |m: &std::collections::BTreeMap<(String, String), f64>, name: &str, job: &str| {
        m.get(&(name.to_string(), job.to_string())).copied()
    };
    let success = get(&m, "cairn_job_last_success_timestamp_seconds", "app").unwrap();
    assert!(success >= before as f64, "{text}");
    assert_eq!(get(&m, "cairn_job_last_run_success", "app"), Some(1.0));
    assert_eq!(get(&m, "cairn_job_errors", "app"), Some(0.0));
    assert_eq!(get(&m, "cairn_job_suspect_captures", "app"), Some(0.0));
    // 20 docs files, big.bin, x.png and the database.
    assert_eq!(get(&m, "cairn_job_files", "app"), Some(23.0), "{text}");
    let added = get(&m, "cairn_job_bytes_added", "app").unwrap();
    assert!(added > (3 << 20) as f64, "{text}");
    let repo_bytes = get(&m, "cairn_job_repository_bytes", "app").unwrap();
    let on_disk = dir_bytes(&env.repo.join("data")) as f64;
    assert!(
        repo_bytes > 0.9 * on_disk && repo_bytes <= on_disk,
        "{repo_bytes} {on_disk}"
    );
    assert!(get(&m, "cairn_job_duration_seconds", "app").unwrap() > 0.0);
    // The other job has not run: it has no samples yet.
    assert_eq!(get(&m, "cairn_job_last_run_success", "broken"), None);

    // A failing job adds its samples and keeps the first job's.
    let out = env
        .cmd()
        .env_remove("CAIRN_REPOSITORY")
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_STATE_DIR", env.path("state"))
        .env("CAIRN_CACHE_DIR", "off")
        .args(["--config", config.to_str().unwrap(), "run", "broken"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let m2 = samples(&std::fs::read_to_string(&metrics).unwrap());
    assert_eq!(get(&m2, "cairn_job_last_run_success", "broken"), Some(0.0));
    assert_eq!(get(&m2, "cairn_job_errors", "broken"), Some(1.0));
    assert_eq!(
        get(&m2, "cairn_job_last_success_timestamp_seconds", "broken"),
        None
    );
    assert!(get(&m2, "cairn_job_last_run_timestamp_seconds", "broken").is_some());
    assert_eq!(
        get(&m2, "cairn_job_last_success_timestamp_seconds", "app"),
        Some(success)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&metrics).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    // Nothing but the file is left in the collector's directory.
    assert_eq!(
        std::fs::read_dir(metrics.parent().unwrap())
            .unwrap()
            .count(),
        1
    );
    drop(db);
}

/// A job whose database was encrypted over fails (its snapshot is kept),
/// pings failure with the reason, and its retention keeps the snapshot
/// with the last good capture beyond `keep_last`.
#[test]
fn a_suspect_capture_fails_the_job_pings_why_and_retention_keeps_the_last_good_one() {
    let env = Env::new();
    let (src, db) = source(&env);
    let server = PingServer::start();
    let config = job_file(&env, &src, &server.url, "echo dump");
    let metrics = env.path("cairn.prom");
    let text = format!(
        "metrics_file = \"{}\"\n{}",
        metrics.display(),
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, text).unwrap();
    drop(db);
    let out = run_job(&env, &config, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let database = src.join("app.sqlite3");
    let len = std::fs::metadata(&database).unwrap().len() as usize;
    std::fs::write(&database, random_bytes(len, 5)).unwrap();
    for night in 0..2 {
        let out = run_job(&env, &config, &["--json"]);
        assert_eq!(out.status.code(), Some(1), "night {night}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let job = &v["jobs"][0];
        assert!(job["snapshot_id"].is_string(), "{job}");
        assert!(
            job["errors"][0]
                .as_str()
                .unwrap()
                .contains("with 1 suspect database capture"),
            "{job}"
        );
        let steps: Vec<(&str, bool)> = job["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["step"].as_str().unwrap(), s["ok"].as_bool().unwrap()))
            .collect();
        assert!(steps.contains(&("forget on main", true)), "{steps:?}");
        let fail = server.requests().pop().unwrap();
        assert_eq!(fail.path, "/ping/abc/fail");
        let why = if night == 0 {
            "no longer a SQLite database"
        } else {
            "still not a SQLite database"
        };
        assert!(
            fail.body
                .contains(&format!("{}: {why}", database.display())),
            "the failure ping says why: {}",
            fail.body
        );
    }
    // keep_last = 2 keeps both suspect snapshots, and the good one too.
    assert_eq!(snapshot_count(&env), 3);
    let m = samples(&std::fs::read_to_string(&metrics).unwrap());
    assert_eq!(
        m.get(&("cairn_job_suspect_captures".to_string(), "app".to_string())),
        Some(&1.0)
    );
}
