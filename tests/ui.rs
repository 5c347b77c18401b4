//! `cairn ui`: a real server on a free port against a real repository,
//! read by headless Chromium (Debian's `chromium`: pages load without a
//! console error, the timeline and the chart render) and by plain HTTP
//! requests (downloads byte for byte, a directory's `.tar`, the access
//! rules, escaping of hostile names, `/metrics` against the file `cairn
//! run` writes).
//!
//! `CAIRN_UI_SCREENSHOT=docs/ui-timeline.png cargo test --test ui` also
//! takes the screenshot of the timeline that docs/GUIDE.md shows.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;

/// A hostile file name: markup that would run if it reached a page as is.
const HOSTILE: &str = "<img src=x onerror=alert(1)>&\"'.txt";

/// A running `cairn ui`, stopped when dropped.
struct Server {
    child: std::process::Child,
    port: u16,
    /// The token printed at start, if the server made one.
    token: Option<String>,
    /// The line it printed.
    banner: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Start `cairn ui ARGS` (with `--listen` in `args`, port 0) and read the
/// address and token it prints.
fn start(env: &Env, args: &[&str], envs: &[(&str, &str)]) -> Server {
    let mut all = vec!["ui"];
    all.extend_from_slice(args);
    let mut child = env.spawn(&all, envs);
    let err = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(err));
    let banner = loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("cairn ui: ") => break l,
            Some(Ok(_)) => continue,
            _ => panic!("cairn ui printed no address: {:?}", child.wait()),
        }
    };
    // Keep draining standard error so that the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    let after = banner.split(" at http://").nth(1).expect(&banner);
    let hostport = after.split('/').next().unwrap();
    let port: u16 = hostport.rsplit(':').next().unwrap().parse().unwrap();
    let token = banner
        .split("?token=")
        .nth(1)
        .map(|t| t.split_whitespace().next().unwrap().to_string());
    Server {
        child,
        port,
        token,
        banner,
    }
}

/// A response: status, headers (names lowercased), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` over HTTP/1.0 (the body ends when the connection does: no
/// chunked encoding to undo), with `headers` (a `Host` of 127.0.0.1 unless
/// one is given).
fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!("GET {path} HTTP/1.0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete header");
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

/// Headless Chromium's DOM of `url` after the page loaded, and the console
/// messages it logged (errors, CSP violations, failed scripts).
fn browse(url: &str, extra: &[&str]) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=5000",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed on {url}");
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// Snapshot IDs, oldest first.
fn snapshot_ids(env: &Env) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// A source tree with a file of every size class, a hostile name, a
/// symlink and a nested directory; three snapshots of it from two hosts,
/// the last one tagged `suspect`.
fn history(env: &Env) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("docs/deep")).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::write(src.join("small.txt"), b"hello\n").unwrap();
    std::fs::write(src.join("docs/big.bin"), random_bytes(3 << 20, 7)).unwrap();
    std::fs::write(src.join("docs/deep/notes.md"), b"# notes\n").unwrap();
    std::fs::write(src.join(HOSTILE), b"hostile\n").unwrap();
    std::fs::set_permissions(
        src.join("small.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("small.txt", src.join("link")).unwrap();
    let s = src.to_str().unwrap();
    env.ok(&[
        "backup",
        "--host",
        "web1",
        "--tag",
        "job:site",
        "--time",
        "2026-11-01 03:00",
        s,
    ]);
    std::fs::write(src.join("docs/added.bin"), random_bytes(1 << 20, 8)).unwrap();
    env.ok(&[
        "backup",
        "--host",
        "web1",
        "--tag",
        "job:site",
        "--time",
        "2026-11-02 03:00",
        s,
    ]);
    env.ok(&[
        "backup",
        "--host",
        "db1",
        "--tag",
        "suspect",
        "--time",
        "2026-11-03 03:00",
        s,
    ]);
    src
}

fn src_path_in_url(src: &Path) -> String {
    // Temporary directories have plain names.
    src.to_str().unwrap().to_string()
}

#[test]
fn pages_render_in_a_browser_without_console_errors() {
    if !require("cairn ui in a browser", &["chromium"], false) {
        return;
    }
    let env = Env::new();
    let src = history(&env);
    let ids = snapshot_ids(&env);
    let server = start(&env, &["--listen", "127.0.0.1:0"], &[]);
    let root = src_path_in_url(&src);
    let pages = [
        "/".to_string(),
        "/jobs".to_string(),
        format!("/snapshot/{}/", ids[2]),
        format!("/snapshot/{}{root}/", ids[2]),
        format!("/snapshot/{}{root}/docs/big.bin", ids[2]),
        format!("/diff?from={}&to={}", ids[0], ids[1]),
    ];
    let mut doms = Vec::new();
    for p in &pages {
        let (dom, console) = browse(&server.url(p), &[]);
        assert!(console.is_empty(), "{p}: console said {console:?}");
        assert!(dom.contains("<header>"), "{p}: {dom}");
        doms.push(dom);
    }
    // What a page refers to is served (no missing stylesheet or icon).
    for asset in ["/style.css", "/favicon.svg"] {
        assert_eq!(get(server.port, asset, &[]).status, 200, "{asset}");
    }
    // The timeline: every snapshot, grouped by host and job, the suspect
    // flagged, and the chart with a bar and a point per snapshot.
    let timeline = &doms[0];
    assert!(
        timeline.contains(r#"<span id="snapshot-count">3 snapshots</span>"#),
        "{timeline}"
    );
    for id in &ids {
        assert!(
            timeline.contains(&format!(r#"href="/snapshot/{id}/">{}</a>"#, &id[..8])),
            "{id}"
        );
    }
    assert!(timeline.contains(r#"web1 <span class="job">job site</span>"#));
    assert!(timeline.contains("<h2>db1</h2>"));
    assert_eq!(
        timeline.matches(r#"<tr class="snapshot suspect">"#).count(),
        1
    );
    assert!(timeline.contains("⚠ suspect"));
    assert!(timeline.contains(r#"<svg id="size-chart""#));
    // (one bar and one point per snapshot, each with its tooltip; the
    // legend's swatch has none)
    assert_eq!(timeline.matches("</title></rect>").count(), 3);
    assert_eq!(timeline.matches("</title></circle>").count(), 3);
    assert!(timeline.contains("<polyline class=\"size\""));
    // The browser: entries with their sizes, modes and download links.
    let dir = &doms[3];
    assert!(dir.contains(">docs/</a>"), "{dir}");
    assert!(dir.contains("-rw-------"), "{dir}");
    assert!(dir.contains(&format!(r#"href="/file/{}{root}/small.txt""#, ids[2])));
    assert!(dir.contains(&format!(r#"href="/tar/{}{root}/docs""#, ids[2])));
    assert!(dir.contains(r#"<span class="target">small.txt</span>"#));
    assert!(doms[4].contains("3.00 MiB (3145728 bytes)"), "{}", doms[4]);
    // The diff: the one file added between the first two snapshots.
    let diff = &doms[5];
    assert!(
        diff.contains(r#"<span class="added">1 added</span>"#),
        "{diff}"
    );
    assert!(
        diff.contains(&format!("{root}/docs/added.bin</a>")),
        "{diff}"
    );

    if let Ok(shot) = std::env::var("CAIRN_UI_SCREENSHOT") {
        let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join(shot);
        let profile = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--screenshot={}", shot.display()))
            .arg(server.url("/"))
            .output()
            .unwrap()
            .status;
        assert!(status.success());
    }
}

#[test]
fn files_download_byte_for_byte_and_directories_as_tar() {
    let env = Env::new();
    let src = history(&env);
    let ids = snapshot_ids(&env);
    let server = start(&env, &["--listen", "127.0.0.1:0"], &[]);
    let root = src_path_in_url(&src);
    for file in ["docs/big.bin", "small.txt", "empty", "docs/added.bin"] {
        let r = get(server.port, &format!("/file/{}{root}/{file}", ids[2]), &[]);
        assert_eq!(r.status, 200, "{file}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        let want = std::fs::read(src.join(file)).unwrap();
        assert_eq!(
            r.header("content-length"),
            Some(want.len().to_string().as_str())
        );
        assert!(r.body == want, "{file}: the download differs");
    }
    // A directory, as a tar archive that unpacks to the same tree.
    let r = get(server.port, &format!("/tar/{}{root}", ids[2]), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-tar"));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename*=UTF-8''src.tar")
    );
    let archive = env.path("src.tar");
    std::fs::write(&archive, &r.body).unwrap();
    let out = env.path("unpacked");
    std::fs::create_dir_all(&out).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xpf")
        .arg(&archive)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    same_tree_to_the_second(&src, &out.join("src"));
    // The snapshot's root as one archive, below snapshot-ID/.
    let r = get(server.port, &format!("/tar/{}/", ids[0]), &[]);
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-disposition")
            .unwrap()
            .ends_with(&format!("snapshot-{}.tar", &ids[0][..8]))
    );
}

/// The entries, types, modes, sizes, contents, link targets and mtimes
/// (whole seconds: what a tar header holds) of two trees agree.
fn same_tree_to_the_second(a: &Path, b: &Path) {
    let rel = |root: &Path| -> Vec<PathBuf> {
        walk(root)
            .into_iter()
            .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
            .collect()
    };
    assert_eq!(rel(a), rel(b));
    for r in rel(a) {
        let (pa, pb) = (a.join(&r), b.join(&r));
        let (ma, mb) = (
            std::fs::symlink_metadata(&pa).unwrap(),
            std::fs::symlink_metadata(&pb).unwrap(),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", r.display());
        assert_eq!(ma.mode(), mb.mode(), "{}", r.display());
        if !ma.file_type().is_symlink() {
            assert_eq!(ma.mtime(), mb.mtime(), "{}", r.display());
        }
        if ma.is_file() {
            assert_eq!(file_hash(&pa), file_hash(&pb), "{}", r.display());
        }
        if ma.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(&pa).unwrap(),
                std::fs::read_link(&pb).unwrap()
            );
        }
    }
}

#[test]
fn hostile_file_names_are_escaped() {
    let env = Env::new();
    let src = history(&env);
    let ids = snapshot_ids(&env);
    let server = start(&env, &["--listen", "127.0.0.1:0"], &[]);
    let root = src_path_in_url(&src);
    let page = get(server.port, &format!("/snapshot/{}{root}/", ids[2]), &[]);
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;&amp;&quot;&#39;.txt</a>"),
        "{html}"
    );
    // Its link is percent-encoded, and downloads the file.
    let encoded = "%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E%26%22%27.txt";
    assert!(html.contains(&format!("/file/{}{root}/{encoded}\"", ids[2])));
    let r = get(
        server.port,
        &format!("/file/{}{root}/{encoded}", ids[2]),
        &[],
    );
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, b"hostile\n".as_slice())
    );
    // An error page echoes the request escaped too.
    let r = get(server.port, "/%3Cscript%3Ex", &[]);
    assert_eq!(r.status, 404);
    assert!(!r.text().contains("<script"), "{}", r.text());
    // Nothing outside the snapshot's tree: `..` is refused, whichever way
    // it is spelt.
    for path in [
        format!("/snapshot/{}{root}/../../etc/", ids[2]),
        format!("/file/{}{root}/%2E%2E/%2E%2E/etc/passwd", ids[2]),
        format!("/tar/{}/..", ids[2]),
    ] {
        let r = get(server.port, &path, &[]);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    // Every page forbids scripts and anything from elsewhere.
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");
}

#[test]
fn loopback_answers_only_to_loopback_names() {
    let env = Env::new();
    let server = start(&env, &["--listen", "127.0.0.1:0"], &[]);
    assert!(server.token.is_none(), "{}", server.banner);
    assert_eq!(get(server.port, "/", &[]).status, 200);
    assert_eq!(
        get(
            server.port,
            "/",
            &[("Host", &format!("localhost:{}", server.port))]
        )
        .status,
        200
    );
    // A page of another site whose name resolves to 127.0.0.1.
    let r = get(server.port, "/", &[("Host", "attacker.example:8380")]);
    assert_eq!(r.status, 403, "{}", r.text());
    // Nothing but reading.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.write_all(b"POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(
        raw.starts_with("HTTP/1.0 405") || raw.starts_with("HTTP/1.1 405"),
        "{raw}"
    );
}

#[test]
fn elsewhere_needs_the_printed_token() {
    let env = Env::new();
    history(&env);
    let server = start(&env, &["--listen", "0.0.0.0:0"], &[]);
    let token = server.token.clone().expect("a token in the banner");
    assert_eq!(token.len(), 48, "{}", server.banner);
    // Refused without it, or with a wrong one.
    for (path, headers) in [
        ("/".to_string(), vec![]),
        ("/metrics".to_string(), vec![]),
        (format!("/?token={}", "0".repeat(48)), vec![]),
        ("/".to_string(), vec![("Cookie", "cairn_ui_token=nope")]),
        ("/".to_string(), vec![("Authorization", "Bearer nope")]),
    ] {
        let r = get(server.port, &path, &headers);
        assert_eq!(r.status, 401, "{path} {headers:?}");
        assert!(!r.text().contains("snapshot-count"));
    }
    // The token in the URL sets the cookie and sends the browser on
    // without it.
    let r = get(server.port, &format!("/jobs?token={token}"), &[]);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/jobs"));
    let cookie = r.header("set-cookie").unwrap();
    assert_eq!(
        cookie,
        format!("cairn_ui_token={token}; Path=/; HttpOnly; SameSite=Strict")
    );
    let r = get(
        server.port,
        "/",
        &[("Cookie", &format!("cairn_ui_token={token}"))],
    );
    assert_eq!(r.status, 200);
    assert!(r.text().contains("3 snapshots"));
    // A scraper sends it as a bearer token.
    let r = get(
        server.port,
        "/metrics",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(r.status, 200);
    // A browser opening the printed URL ends on the timeline.
    if require("cairn ui token in a browser", &["chromium"], false) {
        let (dom, console) = browse(&server.url(&format!("/?token={token}")), &[]);
        assert!(console.is_empty(), "{console:?}");
        assert!(dom.contains("3 snapshots"), "{dom}");
    }
}

#[test]
fn elsewhere_with_htpasswd_needs_a_login() {
    let env = Env::new();
    history(&env);
    let users = env.path("htpasswd");
    std::fs::write(
        &users,
        format!("alice:{}\n", bcrypt::hash("wonderland", 4).unwrap()),
    )
    .unwrap();
    let server = start(
        &env,
        &[
            "--listen",
            "0.0.0.0:0",
            "--htpasswd-file",
            users.to_str().unwrap(),
        ],
        &[],
    );
    assert!(server.token.is_none(), "{}", server.banner);
    use base64::Engine;
    let basic = |cred: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(cred)
        )
    };
    let r = get(server.port, "/", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"cairn ui\"")
    );
    for wrong in ["alice:queen", "bob:wonderland", "alice"] {
        let r = get(server.port, "/", &[("Authorization", &basic(wrong))]);
        assert_eq!(r.status, 401, "{wrong}");
    }
    let r = get(
        server.port,
        "/",
        &[("Authorization", &basic("alice:wonderland"))],
    );
    assert_eq!(r.status, 200);
    assert!(r.text().contains("3 snapshots"));
}

#[test]
fn an_unusable_listen_address_or_htpasswd_file_is_an_error() {
    let env = Env::new();
    let out = env.run(&["ui", "--listen", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--listen nowhere"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.run(&[
        "ui",
        "--listen",
        "0.0.0.0:0",
        "--htpasswd-file",
        env.path("missing").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("htpasswd"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_and_jobs_show_what_cairn_run_recorded() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), random_bytes(100_000, 1)).unwrap();
    std::fs::write(env.path("pass"), format!("{PASSWORD}\n")).unwrap();
    let metrics = env.path("cairn.prom");
    let config = env.path("cairn.toml");
    std::fs::write(
        &config,
        format!(
            r#"
metrics_file = "{metrics}"

[repository.main]
url = "{repo}"
password_file = "{pass}"

[job.app]
repository = "main"
paths = ["{src}"]
check_slices = 3

[job.idle]
repository = "main"
paths = ["{src}"]
"#,
            metrics = metrics.display(),
            repo = env.repo.display(),
            pass = env.path("pass").display(),
            src = src.display(),
        ),
    )
    .unwrap();
    let state = env.path("state");
    let state_s = state.to_str().unwrap();
    let config_s = config.to_str().unwrap();
    let out = env
        .cmd()
        .env_remove("CAIRN_REPOSITORY")
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_STATE_DIR", state_s)
        .env("CAIRN_CACHE_DIR", "off")
        .args(["--config", config_s, "run", "app"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = start(
        &env,
        &["--config", config_s, "--listen", "127.0.0.1:0"],
        &[("CAIRN_STATE_DIR", state_s)],
    );
    // The same text, byte for byte, as the file `cairn run` wrote.
    let r = get(server.port, "/metrics", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(r.text(), std::fs::read_to_string(&metrics).unwrap());
    assert!(
        r.text()
            .contains("cairn_job_last_run_success{job=\"app\"} 1\n")
    );
    // Jobs: both jobs of this repository, the last run's steps and check.
    let jobs = get(server.port, "/jobs", &[]).text();
    assert!(
        jobs.contains(r#"<h2>app <span class="status ok">ok</span></h2>"#),
        "{jobs}"
    );
    assert!(jobs.contains(r#"<h2>idle <span class="status never">never run</span></h2>"#));
    assert!(jobs.contains("<tr><th>Runs</th><td>1</td></tr>"), "{jobs}");
    assert!(
        jobs.contains(r#"<span class="status ok">ok</span> check (data slice 1/3) (last run)"#),
        "{jobs}"
    );
    assert!(jobs.contains("<td>backup</td>"), "{jobs}");
    if require("cairn ui jobs in a browser", &["chromium"], false) {
        let (dom, console) = browse(&server.url("/jobs"), &[]);
        assert!(console.is_empty(), "{console:?}");
        assert!(dom.contains("Steps of the last run"), "{dom}");
    }
}

#[test]
fn a_backup_taken_while_it_serves_is_browsable_and_no_lock_stays() {
    let env = Env::new();
    let src = history(&env);
    let server = start(&env, &["--listen", "127.0.0.1:0"], &[]);
    let root = src_path_in_url(&src);
    let locks = || std::fs::read_dir(env.repo.join("locks")).unwrap().count();
    // Reading files loads the index (under a shared lock, released).
    let ids = snapshot_ids(&env);
    let r = get(
        server.port,
        &format!("/file/{}{root}/small.txt", ids[0]),
        &[],
    );
    assert_eq!(r.body, b"hello\n");
    assert_eq!(locks(), 0, "a lock stayed after the page");
    // A backup while it runs (it takes its own lock: none of cairn ui's is
    // in its way) stores new data; its snapshot shows at once, and its
    // new file reads through the reloaded index.
    std::fs::write(src.join("late.bin"), random_bytes(200_000, 9)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let ids = snapshot_ids(&env);
    assert_eq!(ids.len(), 4);
    assert!(get(server.port, "/", &[]).text().contains("4 snapshots"));
    let r = get(
        server.port,
        &format!("/file/{}{root}/late.bin", ids[3]),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body == random_bytes(200_000, 9));
    assert_eq!(locks(), 0, "a lock stayed after the reload");
}
