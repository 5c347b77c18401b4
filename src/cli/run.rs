//! `cairn run JOB…`: one nightly job from the configuration file, start to
//! end.
//!
//! The steps, in order: ping start; open and lock the job's repository
//! (a wrong passphrase or a missing repository fails the job before any
//! hook stops a service; no `before` or `after` hook runs then); `before`
//! hooks; backup under that lock; `after` hooks
//! (right after the backup by default, so the services stopped for it are
//! down no longer than needed; `after_hooks = "end"` moves them to the end);
//! a copy of the new snapshot to each `copy_to` repository; `forget` by the
//! job's policy on each repository; `prune` when `prune_every_days` have
//! passed; a structure check with a rotating `--read-data-subset` slice; a
//! restore test when `restore_test_every_days` have passed; then, if
//! anything failed, the `on_failure` hooks; the `finally` hooks; and the
//! success or failure ping carrying the reason.
//!
//! A step that fails stops the steps after it (hooks still run). A backup
//! that skipped unreadable entries wrote a snapshot: it counts as a failure
//! but the job goes on to copy and maintain it.
//!
//! Quiet on success unless `-v`; failures are plain lines on standard error
//! (for cron mail and the systemd journal).
//!
//! Each step calls the command's `execute` with typed options built from
//! the job's table (the engine's `BackupOptions`, `PruneOptions`, a
//! `SnapshotFilter`, …): the command-line grammar is not an internal API.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command as Proc, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use cairn::ops::backup::{BackupOptions, StreamSource};
use cairn::ops::check::ReadData;
use cairn::ops::forget::GroupBy;
use cairn::ops::prune::PruneOptions;
use cairn::repo::{Repository, SharedLock, SnapshotFilter};
use cairn::source::exclude::ExcludeMatcher;

use super::GlobalArgs;
use super::jobconfig::{self, JobConfig, Loaded, RepoConfig};
use super::progress::ProgressMode;

/// Arguments of `cairn run`.
#[derive(clap::Args, Debug)]
#[command(override_usage = "cairn run [OPTIONS] <JOB>...\n       cairn run [OPTIONS] --all")]
pub struct Args {
    /// Jobs to run, in order (`[job.NAME]` tables of the configuration file).
    #[arg(required_unless_present = "all", value_name = "JOB")]
    jobs: Vec<String>,
    /// Run every job of the configuration file.
    #[arg(long, conflicts_with = "jobs")]
    all: bool,
}

/// One step's outcome, for `--json`, the failure ping, and the job's state
/// (`cairn ui` shows the last run's steps).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Step {
    pub(super) step: String,
    pub(super) ok: bool,
    pub(super) seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
    /// Why the step did not run, when that is no failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) skipped: Option<String>,
}

/// One job's outcome.
#[derive(Debug, serde::Serialize)]
struct JobOutcome {
    job: String,
    ok: bool,
    snapshot_id: Option<String>,
    steps: Vec<Step>,
    errors: Vec<String>,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    // Options `cairn run` would not use are errors, not silence.
    if g.given.repo {
        bail!(
            "`cairn run` does not take -r/--repo: each job backs up to the repository its `repository` key names (to back up elsewhere once, use `cairn -r REPO backup`)"
        );
    }
    if g.given.progress {
        bail!("`cairn run` does not take --progress: it shows no progress (-v prints each step)");
    }
    let loaded = jobconfig::load(g.config.as_deref())?;
    let names: Vec<String> = if a.all {
        loaded.config.job.keys().cloned().collect()
    } else {
        for n in &a.jobs {
            loaded.job(n)?;
        }
        a.jobs.clone()
    };
    if names.is_empty() {
        bail!("{} defines no jobs", loaded.path.display());
    }
    let mut outcomes = Vec::new();
    for name in &names {
        let job = loaded.job(name)?;
        outcomes.push(Runner::new(g, &loaded, name, job).run());
        // Interrupted: that job stopped (its after hooks ran); the next
        // ones do not start.
        if super::interrupted().is_some() {
            break;
        }
    }
    let failed = outcomes.iter().filter(|o| !o.ok).count();
    if g.json {
        println!(
            "{}",
            serde_json::json!({"message_type": "summary", "jobs": outcomes})
        );
    }
    if failed > 0 {
        if !g.json {
            eprintln!(
                "cairn: {failed} of {} jobs failed: {}",
                outcomes.len(),
                outcomes
                    .iter()
                    .filter(|o| !o.ok)
                    .map(|o| o.job.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(super::interrupted().unwrap_or(super::exit::FATAL))
    } else {
        Ok(super::exit::OK)
    }
}

/// Where `cairn run` remembers when each job last pruned, checked and
/// tested: `CAIRN_STATE_DIR`; for root `/var/lib/cairn` (the same under
/// cron and systemd, which set different environments); else
/// `$XDG_STATE_HOME/cairn` or `~/.local/state/cairn`.
pub(super) fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CAIRN_STATE_DIR") {
        return PathBuf::from(d);
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/cairn");
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(d).join("cairn");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".local/state/cairn");
    }
    PathBuf::from("/var/lib/cairn")
}

/// A job's remembered state (`STATE_DIR/jobs/NAME.json`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct JobState {
    /// Completed runs (picks the check slice).
    pub(super) runs: u64,
    /// Unix seconds of the last successful prune.
    pub(super) last_prune: Option<i64>,
    /// Unix seconds of the last successful restore test.
    pub(super) last_restore_test: Option<i64>,
    /// Unix seconds of the last successful check.
    #[serde(default)]
    pub(super) last_check: Option<i64>,
    /// Checks run (picks the data slice).
    #[serde(default)]
    pub(super) checks: u64,
    /// What the metrics file says about the job.
    #[serde(default)]
    pub(super) metrics: Metrics,
    /// The steps of the last run, in order, with their outcomes.
    #[serde(default)]
    pub(super) last_steps: Vec<Step>,
}

/// A job's metrics, kept in its state so that a run of one job rewrites
/// the metrics file with every job's figures.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Metrics {
    /// Unix seconds when the last run ended.
    pub(super) last_run: Option<i64>,
    /// Unix seconds when the last run without errors ended.
    pub(super) last_success: Option<i64>,
    /// The last run had no errors.
    pub(super) ok: bool,
    /// Seconds the last run took.
    pub(super) duration_seconds: f64,
    /// Errors of the last run.
    pub(super) errors: u64,
    /// Of the last snapshot written: files, plaintext bytes new to the
    /// repository, and the repository's stored bytes afterwards.
    pub(super) files: Option<u64>,
    pub(super) bytes_added: Option<u64>,
    pub(super) repository_bytes: Option<u64>,
    /// Suspect database captures in the last snapshot written.
    pub(super) suspect_captures: Option<u64>,
}

/// The Prometheus text exposition of `jobs`' metrics (for
/// node_exporter's textfile collector, and `cairn ui`'s `/metrics`).
pub(super) fn render_metrics(jobs: &[(String, Metrics)]) -> String {
    fn label(v: &str) -> String {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    }
    type Get = fn(&Metrics) -> Option<f64>;
    let families: [(&str, &str, Get); 9] = [
        (
            "cairn_job_last_success_timestamp_seconds",
            "Unix time the job last ran without errors.",
            |m| m.last_success.map(|t| t as f64),
        ),
        (
            "cairn_job_last_run_timestamp_seconds",
            "Unix time the job last ran.",
            |m| m.last_run.map(|t| t as f64),
        ),
        (
            "cairn_job_last_run_success",
            "1 if the job's last run had no errors, else 0.",
            |m| m.last_run.map(|_| if m.ok { 1.0 } else { 0.0 }),
        ),
        (
            "cairn_job_duration_seconds",
            "Seconds the job's last run took.",
            |m| m.last_run.map(|_| m.duration_seconds),
        ),
        ("cairn_job_errors", "Errors in the job's last run.", |m| {
            m.last_run.map(|_| m.errors as f64)
        }),
        (
            "cairn_job_files",
            "Files in the job's last snapshot.",
            |m| m.files.map(|v| v as f64),
        ),
        (
            "cairn_job_bytes_added",
            "Plaintext bytes the job's last backup added to the repository.",
            |m| m.bytes_added.map(|v| v as f64),
        ),
        (
            "cairn_job_repository_bytes",
            "Stored bytes of the job's repository after its last backup.",
            |m| m.repository_bytes.map(|v| v as f64),
        ),
        (
            "cairn_job_suspect_captures",
            "Suspect database captures in the job's last snapshot.",
            |m| m.suspect_captures.map(|v| v as f64),
        ),
    ];
    let mut out = String::new();
    for (name, help, get) in families {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (job, m) in jobs {
            if let Some(v) = get(m) {
                out.push_str(&format!("{name}{{job=\"{}\"}} {v}\n", label(job)));
            }
        }
    }
    out
}

/// Write `text` to `path` whole or not at all (a temporary file renamed
/// over it: the collector never reads half a file).
fn write_atomically(path: &std::path::Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".cairn-metrics")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    // node_exporter runs as another user: the file is world-readable, as
    // a metrics file is meant to be.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

impl JobState {
    fn path(job: &str) -> PathBuf {
        state_dir().join("jobs").join(format!("{job}.json"))
    }

    pub(super) fn load(job: &str) -> JobState {
        std::fs::read(Self::path(job))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, job: &str) -> Result<()> {
        let p = Self::path(job);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))?;
        Ok(())
    }

    /// True when `days` have passed since `last` (an hour of slack, so a
    /// nightly job whose start time drifts still runs on its day).
    fn due(last: Option<i64>, days: u32, now: i64) -> bool {
        match last {
            None => true,
            Some(t) => now - t >= i64::from(days) * 86_400 - 3_600,
        }
    }
}

fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

struct Runner<'a> {
    g: &'a GlobalArgs,
    loaded: &'a Loaded,
    name: &'a str,
    job: &'a JobConfig,
    steps: Vec<Step>,
    errors: Vec<String>,
    /// A step failed in a way that stops the steps after it.
    stopped: bool,
    snapshot: Option<String>,
    /// Files, bytes added, repository bytes and suspect captures of the
    /// snapshot written.
    figures: Option<(u64, u64, u64, u64)>,
}

impl<'a> Runner<'a> {
    fn new(g: &'a GlobalArgs, loaded: &'a Loaded, name: &'a str, job: &'a JobConfig) -> Self {
        Runner {
            g,
            loaded,
            name,
            job,
            steps: Vec::new(),
            errors: Vec::new(),
            stopped: false,
            snapshot: None,
            figures: None,
        }
    }

    fn verbose(&self) -> bool {
        self.g.verbose && !self.g.json
    }

    /// A progress line (only with -v).
    fn say(&self, msg: &str) {
        if self.verbose() {
            eprintln!("job {}: {msg}", self.name);
        }
    }

    /// Record a step's outcome; an error is printed at once (always).
    fn record(&mut self, step: &str, started: Instant, r: Result<()>, stops: bool) {
        let seconds = started.elapsed().as_secs_f64();
        // Retention against an append-only server is skipped, not failed:
        // it runs on the server.
        if let Err(e) = &r
            && let Some(why) = e
                .chain()
                .filter_map(|c| c.downcast_ref::<cairn::error::Error>())
                .find(|c| c.kind() == cairn::error::ErrorKind::AppendOnly)
        {
            let why = why.to_string();
            if !self.g.json {
                eprintln!("job {}: {step} skipped: {why}", self.name);
            }
            self.steps.push(Step {
                step: step.to_string(),
                ok: true,
                seconds: (seconds * 1000.0).round() / 1000.0,
                error: None,
                skipped: Some(why),
            });
            return;
        }
        let error = r.err().map(|e| {
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            super::dedup_chain(&chain)
        });
        if let Some(e) = &error {
            if !self.g.json {
                eprintln!("job {}: {step} failed: {e}", self.name);
            }
            self.errors.push(format!("{step}: {e}"));
            if stops {
                self.stopped = true;
            }
        } else {
            self.say(&format!(
                "{step} done in {}",
                super::human_duration(seconds)
            ));
        }
        self.steps.push(Step {
            step: step.to_string(),
            ok: error.is_none(),
            seconds: (seconds * 1000.0).round() / 1000.0,
            error,
            skipped: None,
        });
    }

    /// Global options for a repository of the configuration file.
    fn globals_for(&self, repo: &str) -> Result<(GlobalArgs, &'a RepoConfig)> {
        let rc =
            self.loaded.config.repository.get(repo).ok_or_else(|| {
                anyhow!("no [repository.{repo}] in {}", self.loaded.path.display())
            })?;
        let mut g = jobconfig::use_repository(self.g.clone(), self.loaded, repo)?;
        g.json = false;
        g.quiet = !self.verbose();
        g.progress = ProgressMode::Off;
        // Another job's prune may hold the repository: wait for it.
        if g.retry_lock.is_none() {
            g.retry_lock = Some("1h".into());
        }
        Ok((g, rc))
    }

    /// Run a command on a repository of the configuration file, with its
    /// global options; a non-zero exit code is an error.
    fn command(
        &self,
        repo: &str,
        what: &str,
        f: impl FnOnce(&GlobalArgs) -> Result<i32>,
    ) -> Result<()> {
        let (g, _) = self.globals_for(repo)?;
        let code = f(&g)?;
        if code != super::exit::OK {
            bail!("`cairn {what}` on [repository.{repo}] exited with {code}");
        }
        Ok(())
    }

    /// The snapshots of this job (tag `job:NAME`, and its host if set).
    fn own_snapshots(&self) -> SnapshotFilter {
        SnapshotFilter {
            host: self.job.host.clone(),
            tags: vec![format!("job:{}", self.name)],
            ..SnapshotFilter::default()
        }
    }

    /// Run hooks in order; the first failure stops the rest of that list.
    fn hooks(&self, kind: &str, cmds: &[String], status: Option<&str>) -> Result<()> {
        for cmd in cmds {
            self.say(&format!("{kind} hook: {cmd}"));
            let mut p = Proc::new("sh");
            p.arg("-c").arg(cmd).env("CAIRN_JOB", self.name);
            if let Some(id) = &self.snapshot {
                p.env("CAIRN_SNAPSHOT_ID", id);
            }
            if let Some(s) = status {
                p.env("CAIRN_STATUS", s);
                p.env("CAIRN_ERROR", self.errors.join("; "));
            }
            let out = if self.verbose() {
                p.stdin(Stdio::null()).status().map(|s| (s, String::new()))
            } else {
                p.stdin(Stdio::null()).output().map(|o| {
                    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                    text.push_str(&String::from_utf8_lossy(&o.stderr));
                    (o.status, text)
                })
            }
            .with_context(|| format!("cannot run the {kind} hook {cmd:?}"))?;
            if !out.0.success() {
                let tail: Vec<&str> = out.1.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                if tail.is_empty() {
                    bail!("{kind} hook {cmd:?} failed ({})", out.0);
                }
                bail!(
                    "{kind} hook {cmd:?} failed ({}): {}",
                    out.0,
                    tail.join(" / ")
                );
            }
        }
        Ok(())
    }

    /// The engine's backup options for this job.
    fn backup_options(&self) -> Result<BackupOptions> {
        let j = self.job;
        let mut excludes = j.exclude.clone();
        for f in &j.exclude_file {
            excludes.extend(ExcludeMatcher::read_file(f)?);
        }
        Ok(BackupOptions {
            paths: j.paths.clone(),
            excludes,
            exclude_if_present: j.exclude_if_present.clone(),
            exclude_caches: j.exclude_caches,
            one_file_system: j.one_file_system,
            tags: self.tags(),
            host: j.host.clone(),
            sqlite_off: j.sqlite.as_deref() == Some("off"),
            sqlite_check_off: j.sqlite_check.as_deref() == Some("off"),
            sqlite_check_limit: j
                .sqlite_check_limit
                .as_deref()
                .map(|s| super::parse_size("sqlite_check_limit", s))
                .transpose()?,
            sqlite_timeout: Some(Duration::from_secs(j.sqlite_timeout.unwrap_or(60))),
            stream: (!j.stdin_command.is_empty()).then(|| StreamSource::Command {
                argv: j.stdin_command.clone(),
                filename: j.stdin_filename.clone().unwrap_or_else(|| "stdin".into()),
            }),
            ..BackupOptions::default()
        })
    }

    /// The job's tags: its own and `job:NAME`, which ties its snapshots to
    /// it for retention.
    fn tags(&self) -> Vec<String> {
        let mut t = vec![format!("job:{}", self.name)];
        t.extend(self.job.tags.iter().cloned());
        t
    }

    /// What the backup needs before any hook runs: its options (exclude
    /// files read, values checked) and its repository, opened (the
    /// passphrase checked).
    fn prepare_backup(&self) -> Result<(GlobalArgs, BackupOptions, Repository)> {
        let opts = self.backup_options()?;
        opts.validate()?;
        let (g, _) = self.globals_for(&self.job.repository)?;
        let repo = g.open()?;
        Ok((g, opts, repo))
    }

    fn backup(&mut self, g: &GlobalArgs, opts: &BackupOptions, lock: &mut SharedLock<'_>) {
        let started = Instant::now();
        self.say("backup");
        let r = (|| -> Result<()> {
            let done = super::backup::execute_locked(g, lock, opts, None)?;
            self.snapshot = Some(done.id.to_hex());
            self.figures = Some((
                done.files,
                done.bytes_added,
                done.repository_bytes,
                done.suspects.len() as u64,
            ));
            if done.code == super::exit::PARTIAL {
                let list = |items: &[(std::path::PathBuf, String)]| {
                    let mut list: Vec<String> = items
                        .iter()
                        .take(5)
                        .map(|(p, e)| format!("{}: {e}", p.display()))
                        .collect();
                    if items.len() > 5 {
                        list.push(format!("and {} more", items.len() - 5));
                    }
                    list.join("; ")
                };
                let mut why = Vec::new();
                if !done.errors.is_empty() {
                    why.push(format!(
                        "without {} that could not be read ({})",
                        super::count(done.errors.len(), "entry"),
                        list(&done.errors)
                    ));
                }
                if !done.changed.is_empty() {
                    why.push(format!(
                        "with {} that changed while being read ({})",
                        super::count(done.changed.len(), "file"),
                        list(&done.changed)
                    ));
                }
                if !done.suspects.is_empty() {
                    why.push(format!(
                        "with {} ({})",
                        super::count(done.suspects.len(), "suspect database capture"),
                        list(&done.suspects)
                    ));
                }
                bail!(
                    "snapshot {} was saved {}",
                    done.id.short(),
                    why.join(", and ")
                );
            }
            Ok(())
        })();
        // A partial snapshot exists: copy and maintain it anyway.
        let stops = self.snapshot.is_none();
        self.record("backup", started, r, stops);
    }

    /// Every repository the job writes to: its own, then its copies.
    fn repositories(&self) -> Vec<String> {
        std::iter::once(self.job.repository.clone())
            .chain(self.job.copy_to.iter().cloned())
            .collect()
    }

    /// Copy the job's snapshots that a `copy_to` repository lacks: the new
    /// one, and any that a failed night left behind.
    fn copy(&mut self) {
        if self.snapshot.is_none() {
            return;
        }
        for target in self.job.copy_to.clone() {
            if self.stopped {
                return;
            }
            let started = Instant::now();
            self.say(&format!("copy to {target}"));
            let r = (|| -> Result<()> {
                let (_, src) = self.globals_for(&self.job.repository)?;
                if src.password_file.is_none() && src.password_command.is_none() {
                    bail!(
                        "copy_to needs password_file or password_command in [repository.{}]",
                        self.job.repository
                    );
                }
                let from = super::copy::Source {
                    repo: src.url.clone(),
                    pass: super::copy::SourcePass {
                        from_password_file: src.password_file.clone(),
                        from_password_command: src.password_command.clone(),
                    },
                    env: src.env.clone(),
                };
                let (g, _) = self.globals_for(&target)?;
                let code = super::copy::execute(&g, &from, &[], &self.own_snapshots())?;
                if code != super::exit::OK {
                    bail!("copy exited with {code}");
                }
                Ok(())
            })();
            self.record(&format!("copy to {target}"), started, r, true);
        }
    }

    fn forget(&mut self) {
        if !self.job.has_policy() {
            return;
        }
        for repo in self.repositories() {
            if self.stopped {
                return;
            }
            let started = Instant::now();
            self.say(&format!("forget on {repo}"));
            let r = self.job.policy().and_then(|policy| {
                let request = super::forget::Request {
                    ids: Vec::new(),
                    policy,
                    group: GroupBy::default(),
                    filter: self.own_snapshots(),
                    dry_run: false,
                    forget_suspect: self.job.forget_suspect,
                    prune: None,
                };
                self.command(&repo, "forget", |g| super::forget::execute(g, &request))
            });
            self.record(&format!("forget on {repo}"), started, r, true);
        }
    }

    fn prune(&mut self, state: &mut JobState) {
        let days = self.job.prune_every_days.unwrap_or(7);
        if !self.job.has_policy() || !JobState::due(state.last_prune, days, now_unix()) {
            return;
        }
        for repo in self.repositories() {
            if self.stopped {
                return;
            }
            let started = Instant::now();
            self.say(&format!("prune on {repo}"));
            let opts = PruneOptions {
                max_unused: super::prune::DEFAULT_MAX_UNUSED,
                dry_run: false,
            };
            let r = self.command(&repo, "prune", |g| super::prune::execute(g, &opts));
            self.record(&format!("prune on {repo}"), started, r, true);
        }
        if !self.stopped {
            state.last_prune = Some(now_unix());
        }
    }

    fn check(&mut self, state: &mut JobState) {
        if self.stopped {
            return;
        }
        // A job run every few minutes checks at most every
        // `check_every_hours` (a minute of slack for a timer's drift).
        let hours = self.job.check_every_hours.unwrap_or(0);
        // A last check in the future (the clock was set back) is due.
        if let Some(t) = state.last_check
            && hours > 0
            && (0..i64::from(hours) * 3_600 - 60).contains(&(now_unix() - t))
        {
            return;
        }
        let slices = self.job.check_slices.unwrap_or(7);
        let (read_data, step) = if slices == 0 {
            (ReadData::None, "check".to_string())
        } else {
            let n = (state.checks % u64::from(slices)) as u32 + 1;
            (
                ReadData::Slice { n, of: slices },
                format!("check (data slice {n}/{slices})"),
            )
        };
        let started = Instant::now();
        self.say(&step);
        let r = self.command(&self.job.repository, "check", |g| {
            super::check::execute(g, read_data)
        });
        if r.is_ok() {
            state.last_check = Some(now_unix());
        }
        state.checks += 1;
        self.record(&step, started, r, true);
    }

    fn restore_test(&mut self, state: &mut JobState) {
        let Some(days) = self.job.restore_test_every_days else {
            return;
        };
        let Some(id) = self.snapshot.clone() else {
            return;
        };
        if self.stopped || !JobState::due(state.last_restore_test, days, now_unix()) {
            return;
        }
        let started = Instant::now();
        self.say("restore test");
        let r = self.command(&self.job.repository, "restore-test", |g| {
            super::restore_test::execute(
                g,
                &id,
                &SnapshotFilter::default(),
                self.job.restore_test_dir.as_deref(),
            )
        });
        if r.is_ok() {
            state.last_restore_test = Some(now_unix());
        }
        self.record("restore test", started, r, true);
    }

    fn run(mut self) -> JobOutcome {
        let job_started = Instant::now();
        let mut state = JobState::load(self.name);
        let after_at_end = self.job.after_hooks.as_deref() == Some("end");
        self.ping(Ping::Start);
        // The repository is opened and locked before the first before hook
        // stops anything: a wrong passphrase, a missing repository or a
        // lock that cannot be had leaves the services alone.
        let started = Instant::now();
        self.say("open and lock the repository");
        let (mut target, mut repo) = match self.prepare_backup() {
            Ok((g, opts, repo)) => (Some((g, opts)), Some(repo)),
            Err(e) => {
                self.record("backup", started, Err(e), true);
                (None, None)
            }
        };
        let mut lock = match repo.as_mut().map(Repository::lock_shared) {
            Some(Ok(lock)) => Some(lock),
            Some(Err(e)) => {
                self.record("backup", started, Err(e.into()), true);
                target = None;
                None
            }
            None => None,
        };
        let hooks_ran = lock.is_some();
        if let (Some((g, opts)), Some(lock)) = (&target, lock.as_mut()) {
            let started = Instant::now();
            let r = self.hooks("before", &self.job.before, None);
            if !self.job.before.is_empty() {
                self.record("before hooks", started, r, true);
            }
            if !self.stopped {
                self.backup(g, opts, lock);
            }
        }
        drop(lock);
        drop(repo);
        // With no before hook run, there is nothing for after to restart.
        if !after_at_end && hooks_ran {
            self.after_hooks();
        }
        self.copy();
        self.forget();
        self.prune(&mut state);
        self.check(&mut state);
        self.restore_test(&mut state);
        if after_at_end && hooks_ran {
            self.after_hooks();
        }
        if !self.errors.is_empty() && !self.job.on_failure.is_empty() {
            let started = Instant::now();
            let r = self.hooks("on_failure", &self.job.on_failure, Some("failure"));
            self.record("on_failure hooks", started, r, false);
        }
        if !self.job.finally.is_empty() {
            let started = Instant::now();
            let status = if self.errors.is_empty() {
                "success"
            } else {
                "failure"
            };
            let r = self.hooks("finally", &self.job.finally, Some(status));
            self.record("finally hooks", started, r, false);
        }
        state.runs += 1;
        let now = now_unix();
        let m = &mut state.metrics;
        m.last_run = Some(now);
        m.ok = self.errors.is_empty();
        if m.ok {
            m.last_success = Some(now);
        }
        m.duration_seconds = (job_started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        m.errors = self.errors.len() as u64;
        if let Some((files, added, repo, suspect)) = self.figures {
            (m.files, m.bytes_added, m.repository_bytes) = (Some(files), Some(added), Some(repo));
            m.suspect_captures = Some(suspect);
        }
        state.last_steps = self.steps.clone();
        if let Err(e) = state.save(self.name) {
            eprintln!("job {}: warning: {e:#}", self.name);
        }
        if let Err(e) = self.write_metrics(&state.metrics) {
            eprintln!("job {}: warning: metrics: {e:#}", self.name);
        }
        if self.errors.is_empty() {
            self.ping(Ping::Success);
        } else {
            self.ping(Ping::Failure);
        }
        JobOutcome {
            job: self.name.to_string(),
            ok: self.errors.is_empty(),
            snapshot_id: self.snapshot.clone(),
            steps: self.steps,
            errors: self.errors,
        }
    }

    /// Rewrite the job's metrics file (if it has one) with the figures of
    /// every job that writes there: this job's `mine`, the others' from
    /// their saved state.
    fn write_metrics(&self, mine: &Metrics) -> Result<()> {
        let config = &self.loaded.config;
        let file_of = |j: &JobConfig| {
            j.metrics_file
                .clone()
                .or_else(|| config.metrics_file.clone())
        };
        let Some(path) = file_of(self.job) else {
            return Ok(());
        };
        let jobs: Vec<(String, Metrics)> = config
            .job
            .iter()
            .filter(|(_, j)| file_of(j).as_ref() == Some(&path))
            .map(|(name, _)| {
                let m = if name == self.name {
                    mine.clone()
                } else {
                    JobState::load(name).metrics
                };
                (name.clone(), m)
            })
            .collect();
        write_atomically(&path, &render_metrics(&jobs))
    }

    /// The after hooks run whatever happened before them: they restart what
    /// the before hooks stopped.
    fn after_hooks(&mut self) {
        if self.job.after.is_empty() {
            return;
        }
        let started = Instant::now();
        let r = self.hooks("after", &self.job.after, None);
        self.record("after hooks", started, r, true);
    }

    fn ping(&self, kind: Ping) {
        let Some(base) = &self.job.healthcheck else {
            return;
        };
        let url = kind.url(base);
        let body = match kind {
            Ping::Failure => Some(self.failure_report()),
            _ => None,
        };
        if let Err(e) = send_ping(&url, body.as_deref()) {
            eprintln!(
                "job {}: warning: health-check ping {url} failed: {e}",
                self.name
            );
        }
    }

    /// The failure ping's body: what failed, then every step.
    fn failure_report(&self) -> String {
        let mut s = format!("cairn job {} failed:\n", self.name);
        for e in &self.errors {
            s.push_str(&format!("- {e}\n"));
        }
        s.push_str("\nsteps:\n");
        for st in &self.steps {
            s.push_str(&format!(
                "  {} {} ({})\n",
                if st.ok { "ok    " } else { "FAILED" },
                st.step,
                super::human_duration(st.seconds)
            ));
        }
        // Healthchecks.io keeps the first 100 kB of a ping body.
        if s.len() > 90_000 {
            let mut end = 90_000;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
        s
    }
}

#[derive(Clone, Copy)]
enum Ping {
    Start,
    Success,
    Failure,
}

impl Ping {
    /// Healthchecks.io's convention: URL/start, URL, URL/fail (before any
    /// query string).
    fn url(self, base: &str) -> String {
        let suffix = match self {
            Ping::Start => "/start",
            Ping::Success => "",
            Ping::Failure => "/fail",
        };
        let (path, query) = match base.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (base, None),
        };
        let mut u = format!("{}{suffix}", path.trim_end_matches('/'));
        if let Some(q) = query {
            u.push('?');
            u.push_str(q);
        }
        u
    }
}

/// GET (no body) or POST (a body) with a short timeout and three attempts:
/// a monitoring hiccup must not fail a backup, nor hold it up for long.
/// A 4xx answer is not a hiccup (a wrong or deleted check, a rate limit):
/// asking again would get the same answer, so it is reported at once; a
/// 5xx answer or a network error is tried again.
fn send_ping(url: &str, body: Option<&str>) -> Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1 << attempt));
        }
        let r = match body {
            Some(b) => agent
                .post(url)
                .content_type("text/plain; charset=utf-8")
                .send(b),
            None => agent.get(url).call(),
        };
        match r {
            Ok(mut resp) => {
                let mut sink = Vec::new();
                let _ = resp
                    .body_mut()
                    .as_reader()
                    .take(64 * 1024)
                    .read_to_end(&mut sink);
                return Ok(());
            }
            Err(ureq::Error::StatusCode(code)) if (400..500).contains(&code) => {
                bail!("the server answered HTTP {code}")
            }
            Err(e) => last = e.to_string(),
        }
    }
    bail!("{last}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_urls_follow_healthchecks() {
        let b = "https://hc-ping.com/abc";
        assert_eq!(Ping::Start.url(b), "https://hc-ping.com/abc/start");
        assert_eq!(Ping::Success.url(b), "https://hc-ping.com/abc");
        assert_eq!(Ping::Failure.url(b), "https://hc-ping.com/abc/fail");
        assert_eq!(
            Ping::Failure.url("http://h/p/?rid=1"),
            "http://h/p/fail?rid=1"
        );
    }

    #[test]
    fn cadence() {
        assert!(JobState::due(None, 7, 0));
        let day = 86_400;
        assert!(!JobState::due(Some(0), 7, 6 * day));
        // A run a little earlier than a week later still counts.
        assert!(JobState::due(Some(0), 7, 7 * day - 600));
        assert!(JobState::due(Some(0), 0, 0));
    }
}
