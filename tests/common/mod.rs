//! Shared helpers for the integration tests: a temporary repository, the
//! `cairn` binary with the insecure test KDF, deterministic data, and tree
//! comparison.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// Passphrase used by every test repository.
pub const PASSWORD: &str = "correct horse battery staple";

/// A temporary directory holding a repository and test data.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
}

impl Env {
    /// A fresh, initialised repository.
    pub fn new() -> Env {
        let env = Env::uninit();
        env.ok(&["init"]);
        env
    }

    /// A temporary directory; the repository path does not exist yet.
    pub fn uninit() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        Env { dir, repo }
    }

    /// A path inside the temporary directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `cairn` with the repository, passphrase and the insecure test KDF
    /// (`CAIRN_INSECURE_TEST_KDF=1`: keys of 64 KiB and 1 pass, made and
    /// accepted only by test builds).
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("cairn").unwrap();
        c.env("CAIRN_REPOSITORY", &self.repo)
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_INSECURE_TEST_KDF", "1")
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND");
        c
    }

    /// `cairn` as a plain process (for tests that stop, signal or race it),
    /// with the same environment as [`Env::cmd`].
    pub fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"));
        c.env("CAIRN_REPOSITORY", &self.repo)
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_INSECURE_TEST_KDF", "1")
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND");
        c
    }

    /// Start `cairn ARGS` with extra environment variables (e.g.
    /// `FAILPOINTS`), its output piped.
    pub fn spawn(&self, args: &[&str], envs: &[(&str, &str)]) -> std::process::Child {
        let mut c = self.std_cmd();
        c.args(args)
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    }

    /// Run `cairn ARGS`, returning the output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Run `cairn ARGS` and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "cairn {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `cairn backup --json PATH...` and its parsed summary.
    pub fn backup_json(&self, paths: &[&Path], extra: &[&str]) -> serde_json::Value {
        let mut args: Vec<&str> = vec!["backup", "--json"];
        args.extend_from_slice(extra);
        for p in paths {
            args.push(p.to_str().unwrap());
        }
        serde_json::from_str(self.ok(&args).trim()).unwrap()
    }

    /// Total size of every file under the repository's `data/`.
    pub fn data_bytes(&self) -> u64 {
        dir_bytes(&self.repo.join("data"))
    }
}

/// Require a finished command to have succeeded; returns its stdout.
pub fn success(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Total size of the regular files below `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for e in walk(dir) {
        let m = std::fs::symlink_metadata(&e).unwrap();
        if m.is_file() {
            n += m.len();
        }
    }
    n
}

/// Every path below `dir` (not `dir` itself), depth first, sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let is_dir = std::fs::symlink_metadata(&p).unwrap().is_dir();
        out.push(p.clone());
        if is_dir {
            out.extend(walk(&p));
        }
    }
    out
}

/// Deterministic pseudo-random bytes (xorshift64).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Where a backed-up absolute path lands under a restore target.
pub fn restored(target: &Path, source: &Path) -> PathBuf {
    target.join(source.strip_prefix("/").unwrap())
}

/// Extended attributes of a path (not following symlinks).
pub fn xattrs(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(p, &mut names) else {
        return out;
    };
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let mut v = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(p, name, &mut v) {
            v.truncate(len);
            out.insert(name.to_vec(), v);
        }
    }
    out
}

/// Assert that `b` is a faithful copy of `a`: same entries, types, content,
/// modes, owners, nanosecond mtimes (not for the roots), link targets, link
/// counts and xattrs.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let left: Vec<PathBuf> = walk(a)
        .into_iter()
        .map(|p| p.strip_prefix(a).unwrap().to_path_buf())
        .collect();
    let right: Vec<PathBuf> = walk(b)
        .into_iter()
        .map(|p| p.strip_prefix(b).unwrap().to_path_buf())
        .collect();
    assert_eq!(left, right, "entry lists differ");
    for rel in &left {
        let (pa, pb) = (a.join(rel), b.join(rel));
        let (ma, mb) = (
            std::fs::symlink_metadata(&pa).unwrap(),
            std::fs::symlink_metadata(&pb).unwrap(),
        );
        let what = rel.display();
        assert_eq!(ma.file_type(), mb.file_type(), "type of {what}");
        assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "mode of {what}");
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec()),
            (mb.mtime(), mb.mtime_nsec()),
            "mtime of {what}"
        );
        assert_eq!(
            (ma.uid(), ma.gid()),
            (mb.uid(), mb.gid()),
            "owner of {what}"
        );
        if ma.is_file() {
            assert_eq!(ma.len(), mb.len(), "size of {what}");
            assert_eq!(ma.nlink(), mb.nlink(), "link count of {what}");
            assert_eq!(file_hash(&pa), file_hash(&pb), "content of {what}");
        }
        if ma.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(&pa).unwrap(),
                std::fs::read_link(&pb).unwrap(),
                "target of {what}"
            );
        }
        if !ma.file_type().is_symlink() && !ma.file_type().is_fifo() {
            assert_eq!(xattrs(&pa), xattrs(&pb), "xattrs of {what}");
        }
    }
}

/// BLAKE3 of a file's content.
pub fn file_hash(p: &Path) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(p).unwrap()).unwrap();
    *h.finalize().as_bytes()
}

/// A file name from raw bytes.
pub fn name(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// True when the tests run as root (owner restore, chmod 000 still readable).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Wait until process `pid` has stopped itself at a failpoint configured
/// with `return(stop)` (see `src/failpoint.rs`): its state in
/// `/proc/PID/stat` is `T`. Panics if it exits instead, or after two
/// minutes. This waits for a state, not for time to pass: the interleaving
/// is fixed by the failpoint, whatever the machine's speed.
pub fn wait_stopped(child: &mut std::process::Child) {
    let pid = child.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            if let Some(state) = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                && state == "T"
            {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("process {pid} exited ({status}) instead of stopping at its failpoint");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} did not reach its failpoint"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Let a process stopped at a failpoint go on.
pub fn resume(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
}

/// True when the tests run in CI (`CI=true`, which `.ci/run` sets): there,
/// nothing may be skipped for want of a server or a tool.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Say that a test (or part of one) did not run, past the test harness's
/// output capture (which only catches the print macros), so a missing
/// server or tool is visible. Under `CI=true` this is a failure instead:
/// CI must not go green without the coverage it is meant to give.
pub fn skipped(what: &str) {
    use std::io::Write;
    assert!(
        !in_ci(),
        "{what}, and CI=true: CI must run this (see scripts/test.sh)"
    );
    let _ = std::io::stderr().write_all(format!("SKIPPED {what}\n").as_bytes());
}

/// True if `program` runs (`program --version` or `--help` exits at all).
pub fn have_program(program: &str) -> bool {
    ["--version", "--help"].iter().any(|arg| {
        std::process::Command::new(program)
            .arg(arg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok()
    })
}

/// Require tools a test needs (e.g. `faketime`, `unshare`) and root if
/// `root`; if any is missing, say so through [`skipped`] and return false.
pub fn require(test: &str, programs: &[&str], root: bool) -> bool {
    if root && !is_root() {
        skipped(&format!("{test}: needs root"));
        return false;
    }
    for p in programs {
        if !have_program(p) {
            skipped(&format!(
                "{test}: `{p}` is not installed (scripts/test.sh installs it)"
            ));
            return false;
        }
    }
    true
}

impl Env {
    /// `WRAPPER... cairn` (e.g. `unshare -p -f --mount-proc`, `faketime -f
    /// +2h`) with the environment of [`Env::std_cmd`], output piped.
    pub fn wrapped_cmd(&self, wrapper: &[&str]) -> std::process::Command {
        let plain = self.std_cmd();
        let mut c = std::process::Command::new(wrapper[0]);
        c.args(&wrapper[1..]).arg(plain.get_program());
        for (k, v) in plain.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    }
}

/// Set the modification time of every file below `dir` back by `by`, as if
/// it had been written that long ago (the local backend's storage clock is
/// the file mtime).
pub fn age_files(dir: &Path, by: std::time::Duration) {
    for p in walk(dir) {
        if std::fs::symlink_metadata(&p).unwrap().is_file() {
            age_file(&p, by);
        }
    }
}

/// Set one file's modification time back by `by`.
pub fn age_file(p: &Path, by: std::time::Duration) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    let m = f.metadata().unwrap().modified().unwrap();
    f.set_modified(m - by).unwrap();
}

/// The regular files below `dir`, sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).unwrap().is_file())
        .collect()
}

/// A child's standard error, read line by line as it comes, so a test can
/// wait for a state a process announces ("waiting for the repository
/// lock") instead of sleeping.
pub struct StderrWatch {
    rx: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// Start reading `child`'s (piped) standard error.
pub fn watch_stderr(child: &mut std::process::Child) -> StderrWatch {
    use std::io::BufRead;
    let err = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    StderrWatch {
        rx,
        seen: Vec::new(),
    }
}

impl StderrWatch {
    /// Wait until a line containing `needle` has been written. Panics if
    /// the process closes its standard error first, or after two minutes.
    pub fn wait_for(&mut self, needle: &str) {
        loop {
            match self.rx.recv_timeout(std::time::Duration::from_secs(120)) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(e) => panic!(
                    "no {needle:?} on standard error ({e}); it said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything written, once the process has closed its standard error.
    pub fn all(mut self) -> String {
        while let Ok(line) = self.rx.recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

/// Restore every listed snapshot and compare it, byte for byte, with the
/// source directory it was taken of (the first of its paths, which the
/// test must leave unchanged). Returns how many there were.
pub fn every_snapshot_restores(env: &Env) -> usize {
    let snaps: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    let snaps = snaps.as_array().unwrap();
    for (i, s) in snaps.iter().enumerate() {
        let src = PathBuf::from(s["paths"][0].as_str().unwrap());
        let target = env.path(&format!("every-snapshot-{i}"));
        env.ok(&[
            "restore",
            s["id"].as_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
        ]);
        assert_same_tree(&src, &restored(&target, &src));
        std::fs::remove_dir_all(&target).unwrap();
    }
    snaps.len()
}

/// How long prune leaves new packs alone (`cairn::ops::prune::PACK_GRACE`)
/// plus an hour: age a repository's packs and index files by this to make
/// them fair game for prune, as they are for a prune the next day.
pub const PAST_PRUNE_GRACE: std::time::Duration = std::time::Duration::from_secs(7 * 3600);

/// Make every pack and index file of `repo` look older than prune's grace
/// period, by the storage's clock (their mtimes).
pub fn age_past_prune_grace(repo: &Path) {
    age_files(&repo.join("data"), PAST_PRUNE_GRACE);
    age_files(&repo.join("index"), PAST_PRUNE_GRACE);
}

/// A rollback-journal database of about `pages` 4 KiB pages of random rows
/// (its file is then exactly what a capture stores).
pub fn make_plain_db(path: &Path, pages: u64, seed: u64) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA page_size=4096; PRAGMA journal_mode=DELETE;
         CREATE TABLE items(id INTEGER PRIMARY KEY, body BLOB);",
    )
    .unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..pages * 3 {
        tx.execute(
            "INSERT INTO items(body) VALUES (?1)",
            [random_bytes(1200, seed * 1_000_000 + i)],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// An application writing to a SQLite database on its own thread: one
/// transaction after another (`step` fills each, given the number of
/// transactions committed before it), `pace` apart, until stopped.
pub struct LiveWriter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Transactions committed, and whether the writer has ended (stopped,
    /// or failed: a test waiting for commits then fails instead of hanging).
    state: std::sync::Arc<(std::sync::Mutex<(u64, bool)>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LiveWriter {
    /// Start writing to `db` (which exists, with the tables `step` uses).
    pub fn start(
        db: &Path,
        pace: std::time::Duration,
        mut step: impl FnMut(&rusqlite::Transaction, u64) + Send + 'static,
    ) -> LiveWriter {
        type State = std::sync::Arc<(std::sync::Mutex<(u64, bool)>, std::sync::Condvar)>;
        /// Marks the writer ended when its thread ends, even by a panic.
        struct Ended(State);
        impl Drop for Ended {
            fn drop(&mut self) {
                let mut g = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
                g.1 = true;
                drop(g);
                self.0.1.notify_all();
            }
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let state: State =
            std::sync::Arc::new((std::sync::Mutex::new((0, false)), std::sync::Condvar::new()));
        let thread = {
            let (stop, state, db) = (stop.clone(), state.clone(), db.to_path_buf());
            std::thread::spawn(move || {
                let ended = Ended(state);
                let c = rusqlite::Connection::open(&db).unwrap();
                c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let tx = c.unchecked_transaction().unwrap();
                    step(&tx, n);
                    tx.commit().unwrap();
                    n += 1;
                    ended.0.0.lock().unwrap().0 = n;
                    ended.0.1.notify_all();
                    if !pace.is_zero() {
                        std::thread::sleep(pace);
                    }
                }
            })
        };
        LiveWriter {
            stop,
            state,
            thread: Some(thread),
        }
    }

    /// Transactions committed so far.
    pub fn commits(&self) -> u64 {
        self.state.0.lock().unwrap().0
    }

    /// Wait until at least `n` transactions are committed; panics if the
    /// writer ended first.
    pub fn wait_for(&self, n: u64) {
        let (lock, cv) = &*self.state;
        let g = cv
            .wait_while(lock.lock().unwrap(), |s| s.0 < n && !s.1)
            .unwrap();
        assert!(g.0 >= n, "the writer ended after {} of {n} commits", g.0);
    }

    /// Stop writing and wait for the writer: the transactions committed
    /// (and the writer's panic, if it failed).
    pub fn stop(mut self) -> u64 {
        if let Err(p) = self.halt() {
            std::panic::resume_unwind(p);
        }
        self.commits()
    }

    fn halt(&mut self) -> std::thread::Result<()> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().map_or(Ok(()), |t| t.join())
    }
}

impl Drop for LiveWriter {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}
