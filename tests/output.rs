//! Output details a user meets every day: `--progress json` keeps standard
//! output for JSON, `ls -l` reads like `ls -l`, counts agree with their
//! nouns, an unreadable entry is reported once, a health check that
//! answers 4xx is not asked again, and a backup leaves an idle WAL
//! database's directory as it found it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// docs/JSON.md: with `--progress json`, standard output holds JSON lines
/// only; the human summary goes to standard error.
#[test]
fn progress_json_writes_only_json_to_stdout_and_the_summary_to_stderr() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), b"alpha").unwrap();
    let out = env.run(&["backup", "--progress", "json", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} in\n{stdout}")))
        .collect();
    assert!(lines.len() >= 2, "{stdout}");
    assert!(
        lines.iter().all(|v| v["message_type"] == "status"),
        "{stdout}"
    );
    let err = text(&out.stderr);
    let err: Vec<&str> = err.lines().collect();
    assert_eq!(err.len(), 3, "{err:?}");
    assert!(
        err[0].starts_with("processed 1 file, 1 dir, 5 B in "),
        "{err:?}"
    );
    assert!(
        err[1].starts_with("added 1 new data blob and 4 new trees: "),
        "{err:?}"
    );
    assert!(
        err[2].starts_with("snapshot ") && err[2].ends_with(" saved"),
        "{err:?}"
    );

    // The same with a restore, and with --json the summary is JSON on
    // standard output, as before.
    let target = env.path("t");
    let out = env.run(&[
        "restore",
        "latest",
        "--progress",
        "json",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    for l in text(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["message_type"], "status", "{l}");
    }
    let err = text(&out.stderr);
    assert!(
        err.lines().any(|l| l.starts_with("restored snapshot ")),
        "{err}"
    );
    let out = env.run(&["check", "--progress", "json", "--json"]);
    let last = text(&out.stdout).lines().last().unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["message_type"], "summary", "{last}");
    assert_eq!(text(&out.stderr), "");
}

/// Set an entry's modification time to 2026-01-02 03:04:05 UTC.
fn set_mtime(p: &Path) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_323_045);
    let f = std::fs::File::open(p).unwrap();
    f.set_modified(t).unwrap();
}

#[test]
fn ls_long_shows_setuid_setgid_sticky_and_owner_names() {
    let env = Env::new();
    let src = env.path("src");
    let shared = src.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    for (name, mode) in [
        ("suid", 0o4755),
        ("sgid", 0o2750),
        ("plain", 0o644),
        ("odd", 0o4644),
    ] {
        let p = src.join(name);
        std::fs::write(&p, b"bits").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        set_mtime(&p);
    }
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    set_mtime(&shared);
    let nobody = is_root().then(|| {
        // An owner the user database does not know: its number is shown.
        let p = src.join("plain");
        rustix::fs::chown(
            &p,
            Some(rustix::fs::Uid::from_raw(54_321)),
            Some(rustix::fs::Gid::from_raw(54_322)),
        )
        .unwrap();
    });
    env.ok(&["backup", src.to_str().unwrap()]);
    let s = src.display();
    let out = env.run(&["ls", "-l", "latest", &format!("{s}/")]);
    assert_eq!(out.status.code(), Some(0));
    // Only `latest` saying which snapshot it is.
    assert_eq!(text(&out.stderr).lines().count(), 1, "{out:?}");
    let listing = text(&out.stdout);
    let line = |name: &str| -> String {
        listing
            .lines()
            .find(|l| l.ends_with(&format!("{s}/{name}")))
            .unwrap_or_else(|| panic!("no {name} in\n{listing}"))
            .to_string()
    };
    let (user, group) = if is_root() {
        ("root".to_string(), "root".to_string())
    } else {
        let me = rustix::process::getuid().as_raw();
        (
            uzers::get_user_by_uid(me)
                .unwrap()
                .name()
                .to_string_lossy()
                .into_owned(),
            uzers::get_group_by_gid(rustix::process::getgid().as_raw())
                .unwrap()
                .name()
                .to_string_lossy()
                .into_owned(),
        )
    };
    let at = "2026-01-02 03:04:05";
    assert_eq!(
        line("suid"),
        format!("-rwsr-xr-x {user:>8} {group:>8}            4 {at} {s}/suid")
    );
    assert_eq!(
        line("sgid"),
        format!("-rwxr-s--- {user:>8} {group:>8}            4 {at} {s}/sgid")
    );
    assert_eq!(
        line("odd"),
        format!("-rwSr--r-- {user:>8} {group:>8}            4 {at} {s}/odd")
    );
    assert_eq!(
        line("shared"),
        format!("drwxrwxrwt {user:>8} {group:>8}            0 {at} {s}/shared")
    );
    if nobody.is_some() {
        assert_eq!(
            line("plain"),
            format!("-rw-r--r--    54321    54322            4 {at} {s}/plain")
        );
    }
}

#[test]
fn counts_agree_with_their_nouns() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), b"alpha").unwrap();
    let out = env.ok(&["backup", src.to_str().unwrap()]);
    assert!(out.starts_with("processed 1 file, 1 dir, 5 B in "), "{out}");
    assert!(out.contains(" (1 file read, 0 unchanged)\n"), "{out}");
    let out = env.ok(&["snapshots"]);
    assert!(out.ends_with("\n1 snapshot\n"), "{out}");
    let out = env.ok(&["check"]);
    assert_eq!(out, "checked 1 snapshot, 4 trees: 0 errors, 0 warnings\n");
    let out = env.ok(&["forget", "--keep-last", "1", "--dry-run"]);
    assert!(
        out.ends_with("\nwould remove 0 snapshots (dry run: nothing changed)\n"),
        "{out}"
    );
    env.ok(&["backup", "--force", src.to_str().unwrap()]);
    let out = env.ok(&["forget", "--keep-last", "1"]);
    assert!(out.ends_with("\nremoved 1 snapshot\n"), "{out}");
    let out = env.ok(&["unlock"]);
    assert_eq!(out, "0 locks removed\n");
}

/// An entry that cannot be read was listed twice: as a `warning:` while
/// the backup ran, then as an `error:` at the end.
#[test]
fn each_unreadable_entry_is_reported_once() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"to be swapped").unwrap();
    let mut child = env.spawn(
        &["backup", src.to_str().unwrap()],
        &[("FAILPOINTS", "backup::before_open_file=return(stop)")],
    );
    wait_stopped(&mut child);
    // Swapped for a FIFO between the directory listing and the open.
    std::fs::remove_file(src.join("f")).unwrap();
    mkfifo(&src.join("f"));
    resume(&child);
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let f = src.join("f").display().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!("error: {f}: ")) && lines[0].contains("now a FIFO"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("warning: 1 entry could not be read and is missing from snapshot "),
        "{err}"
    );
    // Quiet: listed at the end instead (no progress reporter prints it),
    // still once.
    std::fs::remove_file(src.join("f")).unwrap();
    std::fs::write(src.join("f"), b"to be swapped").unwrap();
    let mut child = env.spawn(
        &["backup", "--quiet", src.to_str().unwrap()],
        &[("FAILPOINTS", "backup::before_open_file=return(stop)")],
    );
    wait_stopped(&mut child);
    std::fs::remove_file(src.join("f")).unwrap();
    mkfifo(&src.join("f"));
    resume(&child);
    let out = child.wait_with_output().unwrap();
    let quiet = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{quiet}");
    assert_eq!(quiet.lines().count(), 2, "{quiet}");
    let errors: Vec<&str> = quiet.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{quiet}");
    assert!(errors[0].starts_with(&format!("error: {f}: ")), "{quiet}");
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

/// A small HTTP server on loopback answering every request with `status`
/// and counting the requests per path.
struct Pings {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Pings {
    fn start(status: &'static str) -> Pings {
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
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                log.lock().unwrap().push(path);
                let _ = stream.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        Pings { url, seen }
    }

    fn paths(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn ping_job(env: &Env, url: &str) -> std::path::PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"alpha").unwrap();
    std::fs::write(env.path("pass"), format!("{PASSWORD}\n")).unwrap();
    let conf = env.path("cairn.toml");
    std::fs::write(
        &conf,
        format!(
            "[repository.main]\nurl = \"{}\"\npassword_file = \"{}\"\n\n\
             [job.app]\nrepository = \"main\"\npaths = [\"{}\"]\nhealthcheck = \"{url}\"\n\
             check_slices = 0\n",
            env.repo.display(),
            env.path("pass").display(),
            src.display()
        ),
    )
    .unwrap();
    for f in [&conf, &env.path("pass")] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    conf
}

/// A 4xx answer (a deleted check, a wrong URL) would be the same the next
/// time: one request per ping, and the job still succeeds.
#[test]
fn a_health_check_ping_answered_4xx_is_not_retried() {
    let env = Env::new();
    let pings = Pings::start("404 Not Found");
    let conf = ping_job(&env, &pings.url);
    let out = env.run(&["--config", conf.to_str().unwrap(), "run", "app"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(pings.paths(), ["/ping/abc/start", "/ping/abc"]);
    assert_eq!(
        err,
        format!(
            "job app: warning: health-check ping {u}/start failed: the server answered HTTP 404\n\
             job app: warning: health-check ping {u} failed: the server answered HTTP 404\n",
            u = pings.url
        )
    );
}

/// A 5xx answer may pass: each ping is tried three times.
#[test]
fn a_health_check_ping_answered_5xx_is_tried_three_times() {
    let env = Env::new();
    let pings = Pings::start("503 Service Unavailable");
    let conf = ping_job(&env, &pings.url);
    let out = env.run(&["--config", conf.to_str().unwrap(), "run", "app"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        pings.paths(),
        [
            "/ping/abc/start",
            "/ping/abc/start",
            "/ping/abc/start",
            "/ping/abc",
            "/ping/abc",
            "/ping/abc"
        ]
    );
}

/// An idle WAL database (its last connection closed, which removed the
/// `-wal` and `-shm` files) is captured without leaving new, empty `-wal`
/// and `-shm` files next to it, and without touching it.
#[test]
fn a_backup_leaves_an_idle_wal_database_s_directory_as_it_found_it() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    let db = src.join("app.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);")
            .unwrap();
    }
    let names = || {
        let mut v: Vec<String> = std::fs::read_dir(&src)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(), ["app.db"]);
    let before = std::fs::metadata(&db).unwrap();
    let bytes = std::fs::read(&db).unwrap();
    let out = env.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    assert_eq!(names(), ["app.db"]);
    let after = std::fs::metadata(&db).unwrap();
    assert_eq!(before.modified().unwrap(), after.modified().unwrap());
    assert_eq!(std::fs::read(&db).unwrap(), bytes);
    // The capture restores to the same rows.
    let target = env.path("t");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let c = rusqlite::Connection::open(restored(&target, &src).join("app.db")).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}
