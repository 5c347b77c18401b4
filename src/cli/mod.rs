//! Command-line interface: argument parsing, passphrases, output and exit
//! codes. One file per subcommand. Format details stay in the library.

mod backup;
mod cat;
mod check;
mod completions;
mod config;
mod copy;
mod diff;
mod dump;
mod find;
mod forget;
mod init;
mod jobconfig;
mod key;
mod ls;
mod mount;
mod progress;
mod prune;
mod repair;
mod restore;
mod restore_test;
mod rewrite;
mod run;
mod schedule;
mod serve;
mod snapshots;
mod sql;
mod stats;
mod tag;
mod ui;
mod unlock;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use cairn::backend::Backend;
use cairn::crypto::{KdfLimits, KdfParams};
use cairn::repo::{Identity, OpenOptions, Repository};
use cairn::{Error, ErrorKind};
use clap::{Parser, Subcommand};

/// Exit codes, as restic users know them.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Fatal error.
    pub const FATAL: i32 = 1;
    /// Snapshot written, but some source entries could not be read.
    pub const PARTIAL: i32 = 3;
    /// The repository does not exist.
    pub const NO_REPOSITORY: i32 = 10;
    /// The repository lock could not be taken, or was lost before the
    /// operation could commit.
    pub const LOCKED: i32 = 11;
    /// Wrong passphrase.
    pub const WRONG_PASSWORD: i32 = 12;
    /// Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: i32 = 130;
    /// Interrupted by SIGTERM (128 + SIGTERM).
    pub const TERMINATED: i32 = 143;
}

/// The signal that interrupted the command (0: none), for its exit code.
static INTERRUPTED_BY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The exit code of an interrupted command: 128 + the signal's number, as
/// shells report it (130 for Ctrl-C, 143 for SIGTERM).
fn interrupted_code() -> i32 {
    match INTERRUPTED_BY.load(std::sync::atomic::Ordering::SeqCst) {
        0 => exit::INTERRUPTED,
        sig => 128 + sig as i32,
    }
}

/// `Some(exit code)` once a signal has interrupted the command.
pub fn interrupted() -> Option<i32> {
    (INTERRUPTED_BY.load(std::sync::atomic::Ordering::SeqCst) != 0).then(interrupted_code)
}

/// While alive, SIGINT (Ctrl-C) and SIGTERM stop the command cleanly: the
/// first prints "interrupted, cleaning up" on standard error and asks the
/// operation to stop through its cancellation token (a backup indexes the
/// packs it stored, so the next run reuses them; every command removes its
/// lock), and the command exits with 128 + the signal's number. A second
/// signal ends the process at once, with that code. Afterwards the first
/// signal ends the process again, as by default.
pub struct Interrupts {
    ids: Vec<signal_hook::SigId>,
    /// Set by the first signal, in the handler itself.
    seen: Arc<std::sync::atomic::AtomicBool>,
    handle: signal_hook::iterator::Handle,
    /// The thread that says "interrupted" and acts.
    thread: Option<std::thread::JoinHandle<()>>,
    /// A message once the thread has said it.
    said: std::sync::mpsc::Receiver<()>,
}

const STOP_SIGNALS: [i32; 2] = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];

/// The message the first signal prints.
const INTERRUPTED_MESSAGE: &str = "interrupted, cleaning up";

/// Set while no [`Interrupts`] is alive, once one has been: a signal then
/// ends the process with 128 + its number, as the default action would
/// (signal-hook leaves its handler installed, and a signal with no action
/// registered would be ignored). Registered once, first, so that it is
/// asked before the actions of any later `Interrupts`.
fn unguarded() -> &'static Arc<std::sync::atomic::AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<std::sync::atomic::AtomicBool>> =
        std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for sig in STOP_SIGNALS {
            let _ =
                signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&flag));
        }
        flag
    })
}

impl Interrupts {
    /// Route SIGINT and SIGTERM to `token`, for an operation that polls it
    /// (backup, prune, forget, copy, repair): it stops at its next poll,
    /// and the lock guard's drop removes the lock.
    pub fn install(token: &cairn::ops::CancelToken) -> Result<Interrupts> {
        Self::install_with(token, None)
    }

    /// For a reader whose operation does not poll (check, restore,
    /// restore-test): the first signal removes the lock object `lock`
    /// holds and ends the process. Nothing it does needs finishing: it
    /// writes nothing to the repository.
    /// `cleanup` runs first (restore-test removes its directory).
    pub fn install_exiting(
        lock: &cairn::repo::SharedLock<'_>,
        cleanup: impl FnOnce() + Send + 'static,
    ) -> Result<Interrupts> {
        let name = cairn::repo::lock::lock_name(&lock.held().id());
        let backend = Arc::clone(lock.backend());
        Self::install_with(
            lock.cancel_token(),
            Some(Box::new(move || {
                cleanup();
                let _ = backend.delete(&name);
            })),
        )
    }

    /// `then`, if given, runs after the token is cancelled, and the process
    /// ends.
    fn install_with(
        token: &cairn::ops::CancelToken,
        then: Option<Box<dyn FnOnce() + Send>>,
    ) -> Result<Interrupts> {
        use signal_hook::flag;
        unguarded().store(false, std::sync::atomic::Ordering::SeqCst);
        let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut ids = Vec::new();
        for sig in STOP_SIGNALS {
            // Registered first: it sees the flag before this signal sets it,
            // so only a second signal ends the process.
            ids.push(flag::register_conditional_shutdown(
                sig,
                128 + sig,
                Arc::clone(&seen),
            )?);
            ids.push(flag::register(sig, Arc::clone(&seen))?);
            // In the handler too, not only in the thread below: an
            // operation resumed right after the signal sees it at once.
            ids.push(flag::register(sig, Arc::clone(token.flag()))?);
        }
        let mut signals = signal_hook::iterator::Signals::new(STOP_SIGNALS)?;
        let handle = signals.handle();
        let (tx, said) = std::sync::mpsc::channel();
        let token = token.clone();
        let thread = std::thread::Builder::new()
            .name("cairn-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    eprintln!("{INTERRUPTED_MESSAGE}");
                    INTERRUPTED_BY.store(sig as usize, std::sync::atomic::Ordering::SeqCst);
                    token.cancel();
                    let _ = tx.send(());
                    // Tests stop here to send a second signal while the
                    // command cleans up.
                    let _ = cairn::failpoint::hit("interrupts::after_message");
                    if let Some(then) = then {
                        then();
                        signal_hook::low_level::exit(128 + sig);
                    }
                }
            })?;
        Ok(Interrupts {
            ids,
            seen,
            handle,
            thread: Some(thread),
            said,
        })
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        // A signal came: its message is printed before the command's own
        // last words (the thread is on its way: the handler that set
        // `seen` also woke it).
        if self.seen.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = self.said.recv();
        }
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        // A signal now ends the process, as by default.
        unguarded().store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Cairn: encrypted, deduplicating snapshots of directory trees.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes. Listed under their own heading in every
/// command's help, apart from the command's options.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Repository location: a local directory, `sftp:user@host:/path`,
    /// `sftp://user@host:port/path` or `s3:https://host/bucket/prefix`.
    #[arg(
        short = 'r',
        long = "repo",
        env = "CAIRN_REPOSITORY",
        global = true,
        hide_env_values = true
    )]
    repo: Option<String>,
    /// Read the passphrase from this file.
    #[arg(
        long,
        env = "CAIRN_PASSWORD_FILE",
        global = true,
        hide_env_values = true
    )]
    password_file: Option<PathBuf>,
    /// Run this shell command and read the passphrase from its output.
    #[arg(
        long,
        env = "CAIRN_PASSWORD_COMMAND",
        global = true,
        hide_env_values = true
    )]
    password_command: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Print less.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print more (`cairn run`: every step, and hook output).
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Progress display: a bar on a terminal (auto), line-delimited JSON
    /// status events on standard output (json), or none (off).
    #[arg(long, global = true, value_enum, default_value = "auto")]
    progress: progress::ProgressMode,
    /// Configuration file: its jobs for `run` and `schedule`, its
    /// repositories for `-r NAME`, `--job NAME` and commands given no
    /// repository (default: $XDG_CONFIG_HOME/cairn/cairn.toml, else
    /// ~/.config/cairn/cairn.toml, then /etc/cairn/cairn.toml).
    #[arg(
        long,
        global = true,
        env = "CAIRN_CONFIG",
        hide_env_values = true,
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// Backend settings from a configuration file's repository table.
    #[arg(skip)]
    env: std::collections::BTreeMap<String, String>,
    /// Requests in flight at most, for network repositories.
    #[arg(long, global = true, default_value_t = 4, value_name = "N")]
    connections: usize,
    /// PEM certificate authorities to trust for rest:https:// repositories
    /// instead of the system's. Also CAIRN_REST_TLS_CA_FILE, or a
    /// configuration file's env table.
    #[arg(long, global = true, value_name = "FILE")]
    tls_ca_file: Option<String>,
    /// The rclone program that rclone: repositories start [default:
    /// rclone].
    /// Also CAIRN_RCLONE_PROGRAM, or a configuration file's env table.
    #[arg(long, global = true, value_name = "PATH")]
    rclone_program: Option<String>,
    /// rclone's arguments before the remote, for rclone: repositories
    /// [default: serve restic --stdio --b2-hard-delete].
    /// Also CAIRN_RCLONE_ARGS, or a configuration file's env table.
    #[arg(long, global = true, value_name = "ARGS", allow_hyphen_values = true)]
    rclone_args: Option<String>,
    /// Wait up to DURATION for a lock held by another process (e.g. "5m").
    #[arg(long, global = true, value_name = "DURATION")]
    retry_lock: Option<String>,
    /// Which options were given on the command line rather than by the
    /// environment or a default (see [`jobconfig::Given`]).
    #[arg(skip)]
    given: jobconfig::Given,
    /// True once `repo` holds a location (a configuration file's
    /// repository name replaced by its table), see
    /// [`GlobalArgs::resolve`].
    #[arg(skip)]
    resolved: bool,
    /// With `--job NAME`: the job whose snapshots the command considers.
    #[arg(skip)]
    job: Option<jobconfig::JobScope>,
    /// Never prompt for a passphrase (`config check`).
    #[arg(skip)]
    no_prompt: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new repository.
    Init(init::Args),
    /// Back up files and directories into a new snapshot.
    Backup(backup::Args),
    /// List snapshots.
    Snapshots(snapshots::Args),
    /// List the entries of a snapshot.
    Ls(ls::Args),
    /// Restore a snapshot (or part of it) into a directory.
    Restore(restore::Args),
    /// Write one file of a snapshot to standard output.
    Dump(dump::Args),
    /// Show what changed between two snapshots.
    ///
    /// One line per path that differs (`+` added, `-` removed, `M`
    /// modified, `U` metadata only, `T` type changed); for a SQLite
    /// database, how many pages changed. With --rows, the rows of the
    /// databases captured in both: per table, inserted, updated and deleted
    /// by primary key (--table T lists them), read from the repository
    /// without restoring anything.
    Diff(diff::Args),
    /// Run a read-only SQL query against a database as a snapshot holds
    /// it, without restoring it.
    ///
    /// Rows are printed as `sqlite3` prints them: values joined by `|`,
    /// one row a line, no header (--header, --csv, or --json for one object
    /// per row). Only the pages the query touches are read from the
    /// repository, each checked as restore checks it. A statement that
    /// would change the database is refused before it runs.
    Sql(sql::Args),
    /// Find files by name or path across snapshots, or one path's history.
    Find(find::Args),
    /// Browse the snapshots as a read-only filesystem (FUSE) until Ctrl-C,
    /// SIGTERM or `fusermount3 -u`.
    Mount(mount::Args),
    /// Verify the repository (structure; with --read-data, every byte).
    Check(check::Args),
    /// Copy snapshots from another repository into this one.
    Copy(copy::Args),
    /// Remove snapshots by a retention policy (or by ID).
    Forget(forget::Args),
    /// Give back the space of data no snapshot references.
    Prune(prune::Args),
    /// Write new snapshots without the entries matching exclude patterns
    /// (a secret or a huge file backed up by mistake).
    Rewrite(rewrite::Args),
    /// Add, remove or set the tags of snapshots (each changed snapshot is
    /// replaced by one with a new ID).
    Tag(tag::Args),
    /// Repair a damaged repository: rebuild the index from the packs,
    /// rewrite damaged snapshots.
    Repair(repair::Args),
    /// Remove stale locks.
    Unlock(unlock::Args),
    /// Manage the passphrases (keys) that open the repository.
    Key(key::Args),
    /// Show sizes, deduplication and compression.
    Stats(stats::Args),
    /// Print a repository object, decoded (for debugging).
    Cat(cat::Args),
    /// Run jobs from the configuration file: hooks, backup, offsite copies,
    /// retention, prune, a rotating data check, health pings.
    Run(run::Args),
    /// Check a configuration file.
    Config(config::Args),
    /// Print a systemd service and timer (and a crontab line) for a job.
    Schedule(schedule::Args),
    /// Restore a snapshot into a temporary directory and verify every file
    /// and database against it.
    RestoreTest(restore_test::Args),
    /// Serve the repositories below a directory over restic's REST
    /// protocol, to backup hosts that must not reach the storage itself
    /// (--append-only: they cannot delete what they wrote).
    Serve(serve::Args),
    /// Serve a web view of the repository: the snapshot timeline, a size
    /// chart, a snapshot browser with downloads, diffs, `cairn run`'s jobs
    /// and /metrics (on 127.0.0.1:8380 unless --listen says otherwise).
    Ui(ui::Args),
    /// Print a shell completion script.
    Completions(completions::Args),
    /// Print the manual page (roff).
    Man(completions::ManArgs),
}

/// Environment variables that hold passphrases. [`take_secret_env`] reads
/// them once and removes them from the process environment.
pub const SECRET_VARS: [&str; 3] = [
    "CAIRN_PASSWORD",
    "CAIRN_NEW_PASSWORD",
    "CAIRN_FROM_PASSWORD",
];

type SecretEnv = std::collections::BTreeMap<&'static str, zeroize::Zeroizing<Vec<u8>>>;
static SECRET_ENV: std::sync::OnceLock<SecretEnv> = std::sync::OnceLock::new();

/// Read the passphrase variables ([`SECRET_VARS`]) and remove them from
/// the environment, so that no hook, `--stdin-from-command`, password
/// command or helper Cairn starts (ssh for SFTP) inherits them. `main`
/// calls this first, while the process has one thread.
///
/// One of Cairn's three fenced `unsafe` places (the others are the SQLite
/// VFSs of `src/source/sqlite.rs` and `src/ops/sql/vfs.rs`): removing a
/// variable is unsafe only because
/// another thread could be reading the environment at the same time, and
/// no other thread exists yet.
pub fn take_secret_env() {
    use std::os::unix::ffi::OsStringExt;
    let mut taken = SecretEnv::new();
    for name in SECRET_VARS {
        if let Some(v) = std::env::var_os(name) {
            taken.insert(name, zeroize::Zeroizing::new(v.into_vec()));
            // SAFETY: called at the start of `main`, before any thread is
            // started; nothing else reads or writes the environment now.
            #[allow(unsafe_code)]
            unsafe {
                std::env::remove_var(name);
            }
        }
    }
    let _ = SECRET_ENV.set(taken);
}

/// A passphrase variable's value, as it was when Cairn started.
pub fn secret_env(name: &str) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    match SECRET_ENV.get() {
        Some(m) => m.get(name).cloned(),
        // Not taken (the CLI's unit tests): the environment still has it.
        None => {
            use std::os::unix::ffi::OsStringExt;
            std::env::var_os(name).map(|v| zeroize::Zeroizing::new(v.into_vec()))
        }
    }
}

/// Argon2id costs for new keys and the limits a key file must meet to be
/// tried: the defaults, unless this is a test build (feature
/// `insecure-test-kdf`) run with `CAIRN_INSECURE_TEST_KDF=1`, which lowers
/// both to 64 KiB and 1 pass. A release build ignores the variable, with a
/// warning.
pub fn kdf_policy() -> (KdfParams, KdfLimits) {
    if std::env::var_os("CAIRN_INSECURE_TEST_KDF").is_some_and(|v| v == "1") {
        match cairn::crypto::insecure_test_kdf() {
            Some(p) => return p,
            None => {
                static ONCE: std::sync::Once = std::sync::Once::new();
                ONCE.call_once(|| {
                    eprintln!(
                        "warning: CAIRN_INSECURE_TEST_KDF is ignored: only test builds of Cairn have insecure test keys"
                    );
                });
            }
        }
    }
    (KdfParams::DEFAULT, KdfLimits::STANDARD)
}

/// The command line's observer: warnings and events from the engine go to
/// standard error, as `warning: …` lines.
pub struct StderrObserver;

impl cairn::observer::Observer for StderrObserver {
    fn warning(&self, message: &str) {
        eprintln!("warning: {message}");
    }
    fn waiting_for_lock(&self, why: &Error) {
        eprintln!("waiting for the repository lock: {why}");
    }
}

/// Who this process works as: the kernel's host name, and `USER` (or
/// `LOGNAME`) for the user, as shells and ssh report it, else the user
/// database's name.
pub fn identity() -> Identity {
    let mut who = Identity::of_process();
    if let Some(u) = std::env::var_os("USER")
        .or_else(|| std::env::var_os("LOGNAME"))
        .filter(|u| !u.is_empty())
    {
        who.username = u.to_string_lossy().into_owned();
    }
    who
}

/// Root of the local cache of network repositories: `$CAIRN_CACHE_DIR`
/// (empty or `off`: no cache), else `$XDG_CACHE_HOME/cairn`, else
/// `~/.cache/cairn`.
pub fn cache_root() -> Option<PathBuf> {
    match std::env::var_os("CAIRN_CACHE_DIR") {
        Some(v) if v.is_empty() || v == "off" => None,
        Some(v) => Some(PathBuf::from(v)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(|d| PathBuf::from(d).join("cairn"))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cairn"))),
    }
}

/// Backend settings: the process environment's values of
/// [`cairn::backend::remote::SETTINGS`], then `overrides` (a configuration
/// file's `[repository.NAME.env]`), which win.
pub fn backend_settings(
    overrides: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for key in cairn::backend::remote::SETTINGS {
        if let Ok(v) = std::env::var(key) {
            out.insert(key.to_string(), v);
        }
    }
    out.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// Warn, as ssh does about private keys, when a file holding secrets can
/// be read or written by users other than its owner (once per file and
/// process: `cairn run` reads a password file for every step).
pub fn warn_if_exposed(what: &str, path: &std::path::Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    static WARNED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
        if warned.iter().any(|p| p == path) {
            return;
        }
        warned.push(path.to_path_buf());
        eprintln!(
            "warning: {what} {} is accessible by other users (mode {mode:04o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
}

/// Read a password file: its content without the trailing newline, with a
/// warning if other users can read it.
pub fn read_password_file(
    what: &str,
    path: &std::path::Path,
) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    if let Ok(m) = f.metadata() {
        warn_if_exposed(&format!("the {what}"), path, &m);
    }
    let mut b = zeroize::Zeroizing::new(Vec::new());
    f.read_to_end(&mut b)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    trim_newline(&mut b);
    Ok(b)
}

/// Backup and restore hold a directory handle per level of the tree they
/// walk: allow as many open files as the hard limit does (the soft limit
/// is often 1024).
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(max)) = (limit.current, limit.maximum)
        && current < max
    {
        limit.current = Some(max);
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// Parse arguments, run, and return the exit code.
pub fn run() -> i32 {
    raise_open_file_limit();
    use clap::FromArgMatches;
    let matches = parse_args();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.global.given = jobconfig::Given::from_matches(&matches);
    if cli.global.progress == progress::ProgressMode::Json
        && !cli.global.json
        && cli.command.reports_progress()
        && let Err(e) = progress::human_output_to_stderr()
    {
        return report(&anyhow!(e).context("cannot set up --progress json"));
    }
    let name = matches.subcommand_name().unwrap_or("");
    let outcome = refuse_unused_options(&cli.global, &cli.command, name)
        .and_then(|()| dispatch(&cli.global, &cli.command));
    match outcome {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

impl Command {
    /// True for the commands that report progress (docs/JSON.md, "Progress
    /// and error events").
    fn reports_progress(&self) -> bool {
        matches!(
            self,
            Command::Backup(_)
                | Command::Restore(_)
                | Command::Check(_)
                | Command::Copy(_)
                | Command::Forget(_)
                | Command::Prune(_)
                | Command::Rewrite(_)
                | Command::Repair(_)
                | Command::RestoreTest(_)
        )
    }
    /// True for the commands that work on a repository (the others read
    /// the configuration file, or nothing).
    fn uses_repository(&self) -> bool {
        !matches!(
            self,
            Command::Run(_)
                | Command::Config(_)
                | Command::Schedule(_)
                | Command::Serve(_)
                | Command::Completions(_)
                | Command::Man(_)
        )
    }

    /// True for the commands that print JSON with `--json` (`cat` always
    /// prints JSON and accepts the flag).
    fn prints_json(&self) -> bool {
        !matches!(
            self,
            Command::Dump(_)
                | Command::Mount(_)
                | Command::Serve(_)
                | Command::Ui(_)
                | Command::Completions(_)
                | Command::Man(_)
        )
    }

    /// True for the commands that take a lock, and so wait with
    /// `--retry-lock`.
    fn takes_lock(&self) -> bool {
        matches!(
            self,
            Command::Backup(_)
                | Command::Ls(_)
                | Command::Restore(_)
                | Command::Dump(_)
                | Command::Diff(_)
                | Command::Sql(_)
                | Command::Find(_)
                | Command::Mount(_)
                | Command::Check(_)
                | Command::Copy(_)
                | Command::Forget(_)
                | Command::Prune(_)
                | Command::Rewrite(_)
                | Command::Tag(_)
                | Command::Repair(_)
                | Command::Run(_)
                | Command::RestoreTest(_)
                | Command::Ui(_)
        )
    }

    /// The command's `--job NAME`, if it takes one and was given it.
    fn job(&self) -> Option<&str> {
        match self {
            Command::Snapshots(a) => a.job.name(),
            Command::Ls(a) => a.job.name(),
            Command::Restore(a) => a.job.name(),
            Command::Dump(a) => a.job.name(),
            Command::Diff(a) => a.job.name(),
            Command::Sql(a) => a.job.name(),
            Command::Find(a) => a.job.name(),
            Command::Rewrite(a) => a.select.job.name(),
            Command::Tag(a) => a.select.job.name(),
            Command::Forget(a) => a.job.name(),
            Command::RestoreTest(a) => a.job.name(),
            Command::Ui(a) => a.job.name(),
            _ => None,
        }
    }
}

/// Parse the command line, or exit with clap's message. A missing
/// argument's message shows the command's usage line as its help does:
/// clap's own lists every option that was given, counting those that came
/// from the environment (`cairn backup --repo <REPO> --password-file
/// <PASSWORD_FILE> <PATHS>...` with `CAIRN_REPOSITORY` and
/// `CAIRN_PASSWORD_FILE` set), as if they were required.
fn parse_args() -> clap::ArgMatches {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind as ClapKind};
    let e = match Cli::command().try_get_matches() {
        Ok(m) => return m,
        Err(e) => e,
    };
    if e.kind() != ClapKind::MissingRequiredArgument {
        e.exit();
    }
    let mut root = Cli::command();
    root.build();
    // The (sub)command the arguments name.
    let mut cmd = root;
    for arg in std::env::args_os().skip(1) {
        if let Some(sub) = arg.to_str().and_then(|n| cmd.find_subcommand(n)) {
            cmd = sub.clone();
        }
    }
    let usage = cmd.render_usage();
    let mut fixed = clap::Error::new(ClapKind::MissingRequiredArgument).with_cmd(&cmd);
    if let Some(missing) = e.get(ContextKind::InvalidArg) {
        fixed.insert(ContextKind::InvalidArg, missing.clone());
    }
    fixed.insert(ContextKind::Usage, ContextValue::StyledStr(usage));
    fixed.exit()
}

/// Global options given on the command line that `command` (called
/// `name`) would not use are errors, not silence: `cairn snapshots
/// --progress json` would otherwise print no events and say nothing.
/// (`--progress off` or `auto` asks for nothing such a command would
/// print, and is accepted.)
/// `cairn run`, `config check` and `schedule` name their own refusals of
/// `-r`.
fn refuse_unused_options(g: &GlobalArgs, command: &Command, name: &str) -> Result<()> {
    let unused = |flag: &str, why: &str| -> Result<()> {
        bail!("`cairn {name}` does not take {flag}: {why}")
    };
    if g.progress == progress::ProgressMode::Json
        && !command.reports_progress()
        && !matches!(command, Command::Run(_))
    {
        unused("--progress json", "it reports no progress")?;
    }
    if g.json && !command.prints_json() {
        unused("--json", "it prints no JSON")?;
    }
    if g.retry_lock.is_some() && !command.takes_lock() {
        unused("--retry-lock", "it takes no lock")?;
    }
    if matches!(
        command,
        Command::Completions(_) | Command::Man(_) | Command::Serve(_)
    ) {
        let given = &g.given;
        for (on, flag) in [
            (given.repo, "-r/--repo"),
            (given.password_file, "--password-file"),
            (given.password_command, "--password-command"),
            (given.connections, "--connections"),
        ] {
            if on {
                unused(flag, "it opens no repository")?;
            }
        }
    }
    Ok(())
}

/// Run one command.
fn dispatch(g: &GlobalArgs, command: &Command) -> Result<i32> {
    let resolved;
    let g = if command.uses_repository() {
        resolved = g.resolve(command.job())?;
        &resolved
    } else {
        g
    };
    match command {
        Command::Init(a) => init::run(g, a),
        Command::Backup(a) => backup::run(g, a),
        Command::Snapshots(a) => snapshots::run(g, a),
        Command::Ls(a) => ls::run(g, a),
        Command::Restore(a) => restore::run(g, a),
        Command::Dump(a) => dump::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Sql(a) => sql::run(g, a),
        Command::Find(a) => find::run(g, a),
        Command::Mount(a) => mount::run(g, a),
        Command::Check(a) => check::run(g, a),
        Command::Copy(a) => copy::run(g, a),
        Command::Forget(a) => forget::run(g, a),
        Command::Prune(a) => prune::run(g, a),
        Command::Rewrite(a) => rewrite::run(g, a),
        Command::Tag(a) => tag::run(g, a),
        Command::Repair(a) => repair::run(g, a),
        Command::Unlock(a) => unlock::run(g, a),
        Command::Key(a) => key::run(g, a),
        Command::Stats(a) => stats::run(g, a),
        Command::Cat(a) => cat::run(g, a),
        Command::Run(a) => run::run(g, a),
        Command::Config(a) => config::run(g, a),
        Command::Schedule(a) => schedule::run(g, a),
        Command::RestoreTest(a) => restore_test::run(g, a),
        Command::Serve(a) => serve::run(g, a),
        Command::Ui(a) => ui::run(g, a),
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => completions::man(a),
    }
}

/// Print an error chain on one line and pick the exit code.
fn report(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return exit::OK;
        }
    }
    let kind = e
        .chain()
        .find_map(|c| c.downcast_ref::<Error>())
        .map(Error::kind);
    let msg: Vec<String> = e.chain().map(ToString::to_string).collect();
    eprintln!("cairn: {}", dedup_chain(&msg));
    match kind {
        Some(ErrorKind::RepositoryNotFound) => exit::NO_REPOSITORY,
        Some(ErrorKind::Locked | ErrorKind::LockLost) => exit::LOCKED,
        Some(ErrorKind::WrongPassphrase) => exit::WRONG_PASSWORD,
        Some(ErrorKind::Interrupted) => interrupted_code(),
        _ => exit::FATAL,
    }
}

/// Join an error chain, dropping causes already quoted by their parent.
fn dedup_chain(msgs: &[String]) -> String {
    let mut out = String::new();
    for m in msgs {
        if out.contains(m.as_str()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(m);
    }
    out
}

impl GlobalArgs {
    fn backend(&self) -> Result<Arc<dyn Backend>> {
        let repo = self.repo.as_deref().ok_or_else(|| {
            anyhow!(
                "no repository given: use -r/--repo, set CAIRN_REPOSITORY, or name one in a configuration file"
            )
        })?;
        Ok(cairn::backend::remote::open(
            repo,
            cairn::backend::remote::RemoteOptions {
                connections: self.connections.max(1),
                env: self.backend_env(),
                cache_root: cache_root(),
                ..Default::default()
            },
        )?)
    }

    /// Backend settings ([`backend_settings`]), with the options that set
    /// them (`--tls-ca-file`, `--rclone-program`, `--rclone-args`).
    fn backend_env(&self) -> std::collections::BTreeMap<String, String> {
        let mut env = backend_settings(&self.env);
        if let Some(f) = &self.tls_ca_file {
            env.insert("CAIRN_REST_TLS_CA_FILE".into(), f.clone());
        }
        if let Some(p) = &self.rclone_program {
            env.insert("CAIRN_RCLONE_PROGRAM".into(), p.clone());
        }
        if let Some(a) = &self.rclone_args {
            env.insert("CAIRN_RCLONE_ARGS".into(), a.clone());
        }
        env
    }

    /// The passphrase, from the first source that is set: password file,
    /// password command, `CAIRN_PASSWORD`, or a prompt on a terminal.
    fn passphrase(&self, confirm: bool) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        if let Some(f) = &self.password_file {
            return read_password_file("password file", f);
        }
        if let Some(cmd) = &self.password_command {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("cannot run the password command {cmd:?}"))?;
            if !out.status.success() {
                bail!("the password command {cmd:?} failed ({})", out.status);
            }
            let mut b = zeroize::Zeroizing::new(out.stdout);
            trim_newline(&mut b);
            return Ok(b);
        }
        if let Some(p) = secret_env("CAIRN_PASSWORD") {
            return Ok(p);
        }
        if std::io::stdin().is_terminal() && !self.no_prompt {
            let p = rpassword::prompt_password("enter passphrase for repository: ")
                .context("cannot read the passphrase")?;
            if confirm {
                let q = zeroize::Zeroizing::new(
                    rpassword::prompt_password("enter the passphrase again: ")
                        .context("cannot read the passphrase")?,
                );
                if p != *q {
                    bail!("the passphrases do not match");
                }
            }
            return Ok(zeroize::Zeroizing::new(p.into_bytes()));
        }
        bail!(
            "no passphrase: set CAIRN_PASSWORD_FILE, CAIRN_PASSWORD_COMMAND or CAIRN_PASSWORD, or run on a terminal"
        )
    }

    /// Open the repository (index not loaded).
    fn open(&self) -> Result<Repository> {
        let backend = self.backend()?;
        // A missing repository is reported before asking for a passphrase.
        match backend.stat(cairn::repo::CONFIG_NAME) {
            Err(e) if e.is_not_found() => {
                return Err(Error::new(
                    ErrorKind::RepositoryNotFound,
                    format!(
                        "repository {} does not exist; create it with `cairn init`",
                        backend.location()
                    ),
                )
                .into());
            }
            _ => {}
        }
        let pass = self.passphrase(false)?;
        let mut repo = open_repository(backend, &pass)?;
        if let Some(w) = &self.retry_lock {
            let span: jiff::Span = w.parse().map_err(|e| anyhow!("--retry-lock {w:?}: {e}"))?;
            let secs = span
                .abs()
                .total(jiff::Unit::Second)
                .map_err(|e| anyhow!("--retry-lock {w:?}: {e}"))?;
            repo.set_lock_wait(std::time::Duration::from_secs_f64(secs.max(0.0)));
        }
        Ok(repo)
    }

    /// Open the repository and load its index without a lock (pure
    /// readers: `ls`, `dump`, `diff`, `cat`).
    fn open_with_index(&self) -> Result<Repository> {
        let mut repo = self.open()?;
        repo.load_index()?;
        Ok(repo)
    }
}

/// Open a repository with the limits of [`kdf_policy`], warnings to
/// standard error, and this process's [`identity`].
pub fn open_repository(backend: Arc<dyn Backend>, pass: &[u8]) -> Result<Repository> {
    let opts = OpenOptions {
        kdf_limits: kdf_policy().1,
        observer: Some(Arc::new(StderrObserver)),
        identity: Some(identity()),
    };
    Ok(Repository::open_with(backend, pass, &opts)?)
}

fn trim_newline(b: &mut Vec<u8>) {
    while b.last().is_some_and(|&c| c == b'\n' || c == b'\r') {
        b.pop();
    }
}

/// A count and its noun, agreeing: "1 snapshot", "2 snapshots", "1 entry",
/// "3 entries". The noun is given in the singular; in a phrase ("new data
/// blob") the last word takes the plural.
pub fn count(n: impl TryInto<u64>, noun: &str) -> String {
    let n: u64 = n.try_into().unwrap_or(u64::MAX);
    if n == 1 {
        return format!("1 {noun}");
    }
    let plural = if let Some(stem) = noun
        .strip_suffix('y')
        .filter(|s| !s.ends_with(['a', 'e', 'o', 'u']))
    {
        format!("{stem}ies")
    } else if noun.ends_with(['s', 'x']) || noun.ends_with("sh") || noun.ends_with("ch") {
        format!("{noun}es")
    } else {
        format!("{noun}s")
    };
    format!("{n} {plural}")
}

/// Human-readable byte count (binary units).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Human-readable duration: "0.42s", "12.3s", "4m05s", "1h02m".
pub fn human_duration(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 10.0 {
        format!("{secs:.2}s")
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let s = secs.round() as u64;
        if s < 3600 {
            format!("{}m{:02}s", s / 60, s % 60)
        } else {
            format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
        }
    }
}

/// A snapshot time in its recorded UTC offset, `YYYY-MM-DD HH:MM:SS`.
pub fn format_time(time_ns: i64, offset_s: i32) -> String {
    let ts = jiff::Timestamp::from_nanosecond(i128::from(time_ns)).unwrap_or_default();
    let off = jiff::tz::Offset::from_seconds(offset_s).unwrap_or(jiff::tz::Offset::UTC);
    ts.to_zoned(jiff::tz::TimeZone::fixed(off))
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// RFC 3339 time with offset, for JSON.
pub fn format_time_rfc3339(time_ns: i64, offset_s: i32) -> String {
    let ts = jiff::Timestamp::from_nanosecond(i128::from(time_ns)).unwrap_or_default();
    let off = jiff::tz::Offset::from_seconds(offset_s).unwrap_or(jiff::tz::Offset::UTC);
    ts.to_zoned(jiff::tz::TimeZone::fixed(off))
        .strftime("%Y-%m-%dT%H:%M:%S%.9f%:z")
        .to_string()
}

/// Bytes as a string for display; lossy for non-UTF-8.
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Print a command's final JSON object with `"message_type": "summary"`
/// (the last line of its output; `--progress json` status events come
/// before it).
pub fn print_summary<T: serde::Serialize>(r: &T) -> Result<()> {
    let mut v = serde_json::to_value(r)?;
    if let Some(o) = v.as_object_mut() {
        o.entry("message_type")
            .or_insert_with(|| serde_json::Value::String("summary".into()));
    }
    println!("{v}");
    Ok(())
}

/// Per-entry errors as JSON: `[{"path": …, "error": …}]`.
pub fn errors_json(errors: &[(PathBuf, String)]) -> serde_json::Value {
    errors
        .iter()
        .map(|(p, e)| serde_json::json!({"path": p.to_string_lossy(), "error": e}))
        .collect()
}

/// A snapshot as JSON, as `snapshots --json` and `cat snapshot` print it.
pub fn snapshot_json(
    id: &cairn::id::SnapshotId,
    s: &cairn::format::snapshot::Snapshot,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": format_time_rfc3339(s.time_ns, s.utc_offset_s),
        "tree": s.tree.to_hex(),
        "parent": s.parent.map(hex::encode),
        "hostname": s.hostname,
        "username": s.username,
        "paths": s.paths.iter().map(|p| lossy(p)).collect::<Vec<_>>(),
        "tags": s.tags,
        "program_version": s.program_version,
        "summary": s.summary,
    });
    // A record written by `rewrite` or `tag` names the snapshot it replaced.
    if let Some((_, o)) = s
        .extensions
        .iter()
        .find(|(t, _)| *t == cairn::format::snapshot::EXT_REWRITTEN_FROM)
    {
        v["original"] = serde_json::Value::String(hex::encode(o));
    }
    // The suspect database captures it holds (the guard against damage).
    let list = cairn::format::suspect::of_snapshot(s);
    if !list.is_empty() {
        v["suspect"] = list
            .iter()
            .map(|(p, s)| {
                serde_json::json!({"path": lossy(p), "reason": s.reason.name(), "detail": s.detail})
            })
            .collect();
    }
    v
}

/// How commands that take a snapshot narrow down `latest`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots of this host.
    #[arg(long = "host", value_name = "HOST")]
    host: Option<String>,
    /// Only snapshots with this tag (repeat to require several).
    #[arg(long = "tag", value_name = "TAG")]
    tag: Vec<String>,
    /// Only snapshots that backed up this path.
    #[arg(long = "path", id = "filter_path", value_name = "PATH")]
    path: Option<String>,
    /// The newest snapshot taken at or before TIME ("2026-11-20 03:00",
    /// "2026-11-20", "2 days ago", RFC 3339).
    #[arg(long = "as-of", value_name = "TIME")]
    as_of: Option<String>,
}

impl FilterArgs {
    /// The library filter these options describe.
    pub fn filter(&self) -> Result<cairn::repo::SnapshotFilter> {
        Ok(cairn::repo::SnapshotFilter {
            host: self.host.clone(),
            tags: self.tag.clone(),
            path: self
                .path
                .as_deref()
                .map(|p| p.trim_end_matches('/').as_bytes().to_vec())
                .map(|p| if p.is_empty() { b"/".to_vec() } else { p }),
            as_of_ns: self
                .as_of
                .as_deref()
                .map(|t| cairn::repo::parse_time(t, jiff::Zoned::now()))
                .transpose()?,
            holding: None,
        })
    }
}

/// `--job NAME`, on the commands that read a job's snapshots.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct JobArgs {
    /// Only this job's snapshots (tag `job:NAME`, and the job's `host`), in
    /// the job's repository unless -r names another (one of its `copy_to`).
    #[arg(long, value_name = "NAME")]
    job: Option<String>,
}

impl JobArgs {
    /// The job's name, if given.
    pub fn name(&self) -> Option<&str> {
        self.job.as_deref()
    }
}

impl GlobalArgs {
    /// `filter`, narrowed to the snapshots of the `--job` given, if any.
    pub fn scoped(&self, mut filter: cairn::repo::SnapshotFilter) -> cairn::repo::SnapshotFilter {
        if let Some(job) = &self.job {
            let tag = format!("job:{}", job.name);
            if !filter.tags.contains(&tag) {
                filter.tags.push(tag);
            }
            if filter.host.is_none() {
                filter.host.clone_from(&job.host);
            }
        }
        filter
    }
}

/// Resolve the snapshot `spec` names among those `filter` (and `--job`)
/// pass. Given the `path` the command will read, `latest` is the newest
/// snapshot holding it. When the choice was Cairn's (`latest`, `--as-of`),
/// say on standard error which snapshot it made (ID, time, paths), as
/// restic's restore does, unless `--quiet`.
pub fn select_snapshot(
    g: &GlobalArgs,
    repo: &Repository,
    spec: &str,
    filter: &cairn::repo::SnapshotFilter,
    path: Option<&str>,
) -> Result<(cairn::id::SnapshotId, cairn::format::snapshot::Snapshot)> {
    let mut filter = g.scoped(filter.clone());
    let latest = spec == "latest";
    if latest && let Some(p) = path {
        filter.holding = Some(p.as_bytes().to_vec());
    }
    let (id, snap) = repo.select_snapshot(spec, &filter)?;
    if (latest || filter.as_of_ns.is_some()) && !g.quiet {
        eprintln!("{}", describe_snapshot(&id, &snap));
    }
    Ok((id, snap))
}

/// `using snapshot 1a2b3c4d of /srv/a, /srv/b taken 2026-11-20 03:00:00`.
pub fn describe_snapshot(
    id: &cairn::id::SnapshotId,
    s: &cairn::format::snapshot::Snapshot,
) -> String {
    let paths: Vec<String> = s.paths.iter().map(|p| lossy(p)).collect();
    format!(
        "using snapshot {} of {} taken {}",
        id.short(),
        paths.join(", "),
        format_time(s.time_ns, s.utc_offset_s)
    )
}

/// Split `SNAPSHOT[:PATH]`.
pub fn split_snapshot_path(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((s, p)) => (s, Some(p)),
        None => (spec, None),
    }
}

/// Parse a size given as `what`: `500G`, `2T`, `256MiB`, `1048576` (binary
/// units K, M, G, T; an optional `B` or `iB`).
pub(crate) fn parse_size(what: &str, s: &str) -> Result<u64> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num
        .trim()
        .parse()
        .ok()
        .with_context(|| format!("{what} {s}: expected a size such as 500G"))?;
    n.checked_mul(1 << shift)
        .with_context(|| format!("{what} {s}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand's arguments are consistent (unique names, valid
    /// relations); clap checks this only when a command is first used.
    #[test]
    fn argument_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("--max-size", "1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("--max-size", "500G").unwrap(), 500 << 30);
        assert_eq!(parse_size("--max-size", "2TiB").unwrap(), 2 << 40);
        assert_eq!(parse_size("--max-size", "64kB").unwrap(), 64 << 10);
        assert!(parse_size("--max-size", "lots").is_err());
        assert!(parse_size("--max-size", "99999999999T").is_err());
    }

    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(count(1u64, "snapshot"), "1 snapshot");
        assert_eq!(count(0usize, "snapshot"), "0 snapshots");
        assert_eq!(count(2u64, "entry"), "2 entries");
        assert_eq!(count(1u64, "entry"), "1 entry");
        assert_eq!(count(3u64, "new data blob"), "3 new data blobs");
        assert_eq!(count(2u64, "day"), "2 days");
        assert_eq!(count(2u64, "index"), "2 indexes");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(5 << 30), "5.00 GiB");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(0.4213), "0.42s");
        assert_eq!(human_duration(12.34), "12.3s");
        assert_eq!(human_duration(245.0), "4m05s");
        assert_eq!(human_duration(3725.0), "1h02m");
    }
}
