//! The configuration file: repositories and nightly jobs (TOML).
//!
//! Looked for at `--config FILE`, else `$XDG_CONFIG_HOME/cairn/cairn.toml`
//! (or `~/.config/cairn/cairn.toml`), else `/etc/cairn/cairn.toml`. Unknown
//! keys and bad values are errors that name the file, the line and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;

use super::GlobalArgs;

/// A repository as the configuration describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// Location: a path, `sftp:…` or `s3:…`.
    pub url: String,
    /// File holding the passphrase.
    pub password_file: Option<PathBuf>,
    /// Command printing the passphrase.
    pub password_command: Option<String>,
    /// Requests in flight for SFTP/S3.
    pub connections: Option<usize>,
    /// Environment for this repository's backend (e.g. AWS keys).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// One nightly job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Name of the repository (a `[repository.NAME]` table).
    pub repository: String,
    /// Paths to back up.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Exclude patterns.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Files of exclude patterns.
    #[serde(default)]
    pub exclude_file: Vec<PathBuf>,
    /// Exclude directories holding an entry of this name.
    #[serde(default)]
    pub exclude_if_present: Vec<String>,
    /// Exclude directories tagged with CACHEDIR.TAG.
    #[serde(default)]
    pub exclude_caches: bool,
    /// Stay on one filesystem.
    #[serde(default)]
    pub one_file_system: bool,
    /// Tags for every snapshot of the job.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Host name to record.
    pub host: Option<String>,
    /// "on" (capture live SQLite databases) or "off".
    pub sqlite: Option<String>,
    /// Seconds to wait for a busy database.
    pub sqlite_timeout: Option<u64>,
    /// "quick" (check captured databases with `quick_check`, the default)
    /// or "off".
    pub sqlite_check: Option<String>,
    /// Databases larger than this size ("256M", "2G") are checked a slice
    /// of their tables per capture.
    pub sqlite_check_limit: Option<String>,
    /// A command whose output is stored as one file (non-zero exit fails
    /// the job).
    #[serde(default)]
    pub stdin_command: Vec<String>,
    /// Name of that file.
    pub stdin_filename: Option<String>,
    /// Shell commands before the backup.
    #[serde(default)]
    pub before: Vec<String>,
    /// Shell commands after the backup, whatever happened (they restart
    /// what `before` stopped).
    #[serde(default)]
    pub after: Vec<String>,
    /// When the `after` hooks run: "backup" (right after the backup, the
    /// default: services are down no longer than the backup) or "end" (after
    /// copies, retention and checks).
    pub after_hooks: Option<String>,
    /// Shell commands when any step failed.
    #[serde(default)]
    pub on_failure: Vec<String>,
    /// Shell commands at the very end, whatever happened.
    #[serde(default)]
    pub finally: Vec<String>,
    /// Health-check URL: GET URL/start, GET URL on success, POST URL/fail
    /// with the reason.
    pub healthcheck: Option<String>,
    /// Repositories (by name) to copy each new snapshot to.
    #[serde(default)]
    pub copy_to: Vec<String>,
    /// Retention.
    pub keep_last: Option<i64>,
    /// Retention.
    pub keep_hourly: Option<i64>,
    /// Retention.
    pub keep_daily: Option<i64>,
    /// Retention.
    pub keep_weekly: Option<i64>,
    /// Retention.
    pub keep_monthly: Option<i64>,
    /// Retention.
    pub keep_yearly: Option<i64>,
    /// Retention: a span such as "30d".
    pub keep_within: Option<String>,
    /// Retention.
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// Let retention forget a snapshot holding the last good capture of a
    /// database that is suspect in a newer snapshot (kept otherwise).
    #[serde(default)]
    pub forget_suspect: bool,
    /// Prune at most every this many days (0: every run; default 7).
    pub prune_every_days: Option<u32>,
    /// Read one slice of this many of the data each check (0: no data
    /// check; default 7, so a week of nightly runs reads everything once).
    pub check_slices: Option<u32>,
    /// Check at most every this many hours (0, the default: every run);
    /// for jobs run every few minutes.
    pub check_every_hours: Option<u32>,
    /// Restore the new snapshot into a temporary directory and verify it
    /// every this many days (default: never).
    pub restore_test_every_days: Option<u32>,
    /// Where restore tests create their temporary directory.
    pub restore_test_dir: Option<PathBuf>,
    /// Prometheus text file this job's metrics go to (default: the file's
    /// top-level `metrics_file`).
    pub metrics_file: Option<PathBuf>,
}

impl JobConfig {
    /// The job's retention policy (empty when it has none).
    pub fn policy(&self) -> Result<cairn::ops::forget::Policy> {
        Ok(cairn::ops::forget::Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self
                .keep_within
                .as_deref()
                .map(|w| {
                    w.parse::<jiff::Span>()
                        .map(|s| s.abs())
                        .map_err(|e| anyhow!("keep_within {w:?}: {e}"))
                })
                .transpose()?,
            tags: self.keep_tags.clone(),
        })
    }

    /// True if the job has a retention policy (or one that does not parse:
    /// the forget step then reports why).
    pub fn has_policy(&self) -> bool {
        self.policy().map_or(true, |p| !p.is_empty())
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Repositories by name.
    #[serde(default)]
    pub repository: BTreeMap<String, RepoConfig>,
    /// Jobs by name.
    #[serde(default)]
    pub job: BTreeMap<String, JobConfig>,
    /// Prometheus text file (node_exporter's textfile collector) that
    /// `cairn run` writes every job's metrics to.
    pub metrics_file: Option<PathBuf>,
}

/// A loaded configuration and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file.
    pub path: PathBuf,
    /// Its content.
    pub config: FileConfig,
}

/// Which global options were given on the command line, not by the
/// environment or a default: a repository table of the configuration file
/// gives way to none of them silently (see [`GlobalArgs::resolve`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Given {
    /// `-r/--repo`.
    pub repo: bool,
    /// `--password-file`.
    pub password_file: bool,
    /// `--password-command`.
    pub password_command: bool,
    /// `--connections`.
    pub connections: bool,
    /// `--progress`.
    pub progress: bool,
}

impl Given {
    /// Read the sources of the parsed global options.
    pub fn from_matches(m: &clap::ArgMatches) -> Given {
        let on_line = |id: &str| {
            // Global options given after the subcommand are in its matches.
            let mut m = Some(m);
            while let Some(here) = m {
                if here.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
                    return true;
                }
                m = here.subcommand().map(|(_, sub)| sub);
            }
            false
        };
        Given {
            repo: on_line("repo"),
            password_file: on_line("password_file"),
            password_command: on_line("password_command"),
            connections: on_line("connections"),
            progress: on_line("progress"),
        }
    }
}

/// What `--job NAME` narrows a command to: the job's snapshots.
#[derive(Debug, Clone)]
pub struct JobScope {
    /// The job's name (its snapshots carry the tag `job:NAME`).
    pub name: String,
    /// The job's `host`, if it sets one.
    pub host: Option<String>,
}

/// True if `repo` can only be a name of a `[repository.NAME]` table or a
/// relative directory: no `/`, no scheme.
fn is_bare_name(repo: &str) -> bool {
    !repo.is_empty() && !repo.contains('/') && !repo.contains(':') && repo != "." && repo != ".."
}

impl GlobalArgs {
    /// These options with the repository resolved:
    ///
    /// - `--job NAME`: the job's repository (unless `-r` on the command
    ///   line names another), and only its snapshots;
    /// - `-r NAME` (or `CAIRN_REPOSITORY=NAME`) where the configuration
    ///   file has a `[repository.NAME]`: that table's url, passphrase
    ///   source, connections and `env`;
    /// - any other `-r` value: a location, as given;
    /// - no `-r` and no `CAIRN_REPOSITORY`: the configuration file's only
    ///   repository (several are an error that lists them).
    ///
    /// The configuration file is `--config` (or `CAIRN_CONFIG`), else the
    /// first of [`default_paths`] that exists, and it is read only when
    /// needed: a location given as a path or URL works without it.
    pub fn resolve(&self, job: Option<&str>) -> Result<GlobalArgs> {
        let mut g = self.clone();
        if self.resolved {
            return Ok(g);
        }
        g.resolved = true;
        // CAIRN_REPOSITORY in the environment gives way to --job.
        let repo = self
            .repo
            .as_deref()
            .filter(|_| self.given.repo || job.is_none());
        let wants_config = job.is_some() || repo.is_none_or(is_bare_name);
        let loaded = if wants_config {
            load_if_any(self.config.as_deref())?
        } else {
            None
        };
        if let Some(name) = job {
            let Some(l) = &loaded else {
                bail!("--job {name}: {}", no_config_message());
            };
            let j = l.job(name)?;
            g.job = Some(JobScope {
                name: name.to_string(),
                host: j.host.clone(),
            });
            if repo.is_none() {
                return use_repository(g, l, &j.repository);
            }
        }
        match (repo, &loaded) {
            (Some(r), Some(l)) if is_bare_name(r) && l.config.repository.contains_key(r) => {
                use_repository(g, l, r)
            }
            (Some(_), _) => Ok(g),
            (None, None) => bail!(
                "no repository given: use -r/--repo, set CAIRN_REPOSITORY, or name one in a configuration file (--config FILE, or one of {})",
                default_places()
            ),
            (None, Some(l)) => {
                let names: Vec<&String> = l.config.repository.keys().collect();
                match names.as_slice() {
                    [only] => use_repository(g, l, only),
                    [] => bail!(
                        "no repository given: use -r/--repo or set CAIRN_REPOSITORY ({} names no repository)",
                        l.path.display()
                    ),
                    _ => bail!(
                        "no repository given, and {} names several: {}; choose one with -r NAME",
                        l.path.display(),
                        names
                            .iter()
                            .map(|n| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            }
        }
    }
}

/// The `[repository.NAME]` table `repo` names, if it is a bare name and the
/// configuration file (`explicit`, else the default places) has one.
pub fn named_repository(
    explicit: Option<&Path>,
    repo: &str,
) -> Result<Option<(Loaded, RepoConfig)>> {
    if !is_bare_name(repo) {
        return Ok(None);
    }
    Ok(load_if_any(explicit)?.and_then(|l| {
        let rc = l.config.repository.get(repo).cloned();
        rc.map(|rc| (l, rc))
    }))
}

/// `g` set to the repository `[repository.NAME]` of `l`: its url, its
/// passphrase source (a `--password-file` or `--password-command` on the
/// command line is then an error: it would not be used), its connections
/// (unless `--connections` is given) and its `env`.
pub fn use_repository(mut g: GlobalArgs, l: &Loaded, name: &str) -> Result<GlobalArgs> {
    let rc = l
        .config
        .repository
        .get(name)
        .ok_or_else(|| anyhow!("no [repository.{name}] in {}", l.path.display()))?;
    g.repo = Some(rc.url.clone());
    let own = match (&rc.password_file, &rc.password_command) {
        (Some(_), _) => Some("password_file"),
        (None, Some(_)) => Some("password_command"),
        (None, None) => None,
    };
    if let Some(own) = own {
        let flag = if g.given.password_file {
            Some("--password-file")
        } else if g.given.password_command {
            Some("--password-command")
        } else {
            None
        };
        if let Some(flag) = flag {
            bail!(
                "{flag} would not be used: [repository.{name}] in {} has its own {own}; drop one of them",
                l.path.display()
            );
        }
        g.password_file = rc.password_file.clone();
        g.password_command = rc.password_command.clone();
    }
    if let Some(c) = rc.connections
        && !g.given.connections
    {
        g.connections = c;
    }
    g.env = rc.env.clone();
    g.resolved = true;
    Ok(g)
}

/// The default places, in order.
pub fn default_paths() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME") {
        v.push(PathBuf::from(x).join("cairn/cairn.toml"));
    } else if let Some(h) = std::env::var_os("HOME") {
        v.push(PathBuf::from(h).join(".config/cairn/cairn.toml"));
    }
    v.push(PathBuf::from("/etc/cairn/cairn.toml"));
    v
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// The key a TOML error points at: the left side of the `key = value` line
/// holding the span (the span may cover the key or the value).
fn key_at(text: &str, span: &std::ops::Range<usize>) -> String {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = &text[line_start..line_end];
    match line.split_once('=') {
        Some((k, _)) if !k.trim_start().starts_with('[') => k.trim().trim_matches('"').to_string(),
        _ => text
            .get(span.clone())
            .unwrap_or("")
            .trim()
            .trim_matches(['[', ']', '"'])
            .to_string(),
    }
}

/// Parse configuration text; errors name `path`, the line and the key.
pub fn parse(text: &str, path: &Path) -> Result<FileConfig> {
    let config: FileConfig = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map_or((0, 0), |s| line_col(text, s.start));
        let key = e.span().map(|s| key_at(text, &s)).unwrap_or_default();
        let msg = e.message().trim().replace('\n', " ");
        let msg = did_you_mean(&msg).unwrap_or(msg);
        if key.is_empty() {
            anyhow!("{}:{line}:{col}: {msg}", path.display())
        } else {
            anyhow!("{}:{line}:{col}: key `{key}`: {msg}", path.display())
        }
    })?;
    validate(&config, text, path)?;
    Ok(config)
}

/// serde's "unknown field `keep_lats`, expected one of `repository`, …"
/// as "unknown key `keep_lats`; did you mean `keep_last`?" when one of the
/// expected keys is close (Jaro-Winkler similarity, as clap suggests
/// subcommands), else with the list of keys.
fn did_you_mean(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let best = expected
        .iter()
        .map(|k| (strsim::jaro_winkler(unknown, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    Some(match best {
        Some((_, k)) => format!("unknown key `{unknown}`; did you mean `{k}`?"),
        None if expected.is_empty() => format!("unknown key `{unknown}`"),
        None => format!(
            "unknown key `{unknown}` (keys here: {})",
            expected.join(", ")
        ),
    })
}

/// Where `[job.NAME]` (or a key in it) is, for messages about values.
fn locate(text: &str, table: &str, key: Option<&str>) -> usize {
    let header = format!("[{table}]");
    let Some(start) = text.find(&header) else {
        return 0;
    };
    let mut line = line_col(text, start).0;
    if let Some(k) = key {
        for (i, l) in text[start..].lines().enumerate().skip(1) {
            if l.trim_start().starts_with('[') {
                break;
            }
            if l.split_once('=')
                .is_some_and(|(key, _)| key.trim().trim_matches('"') == k)
            {
                line += i;
                break;
            }
        }
    }
    line
}

fn validate(c: &FileConfig, text: &str, path: &Path) -> Result<()> {
    let err = |table: &str, key: &str, msg: String| {
        anyhow!(
            "{}:{}: key `{key}` in [{table}]: {msg}",
            path.display(),
            locate(text, table, Some(key))
        )
    };
    for (name, r) in &c.repository {
        let table = format!("repository.{name}");
        if r.url.trim().is_empty() {
            return Err(err(&table, "url", "must not be empty".into()));
        }
        cairn::backend::remote::RemoteUrl::parse(&r.url)
            .map_err(|e| err(&table, "url", e.to_string()))?;
        if r.password_file.is_some() && r.password_command.is_some() {
            return Err(err(
                &table,
                "password_command",
                "give password_file or password_command, not both".into(),
            ));
        }
        if r.connections == Some(0) {
            return Err(err(&table, "connections", "must be at least 1".into()));
        }
    }
    for (name, j) in &c.job {
        let table = format!("job.{name}");
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(anyhow!(
                "{}:{}: [job.{name}]: job names may use letters, digits, `_`, `.` and `-` (they name state files and systemd units)",
                path.display(),
                locate(text, &table, None)
            ));
        }
        if let Some(w) = &j.after_hooks
            && w != "backup"
            && w != "end"
        {
            return Err(err(
                &table,
                "after_hooks",
                format!("{w:?}: use \"backup\" or \"end\""),
            ));
        }
        if !c.repository.contains_key(&j.repository) {
            return Err(err(
                &table,
                "repository",
                format!("no [repository.{}] in this file", j.repository),
            ));
        }
        for target in &j.copy_to {
            if !c.repository.contains_key(target) {
                return Err(err(
                    &table,
                    "copy_to",
                    format!("no [repository.{target}] in this file"),
                ));
            }
            if *target == j.repository {
                return Err(err(
                    &table,
                    "copy_to",
                    "a job cannot copy to its own repository".into(),
                ));
            }
        }
        if j.paths.is_empty() && j.stdin_command.is_empty() {
            return Err(err(
                &table,
                "paths",
                "give paths, stdin_command, or both".into(),
            ));
        }
        if let Some(s) = &j.sqlite
            && s != "on"
            && s != "off"
        {
            return Err(err(
                &table,
                "sqlite",
                format!("{s:?}: use \"on\" or \"off\""),
            ));
        }
        if let Some(s) = &j.sqlite_check
            && s != "quick"
            && s != "off"
        {
            return Err(err(
                &table,
                "sqlite_check",
                format!("{s:?}: use \"quick\" or \"off\""),
            ));
        }
        if let Some(s) = &j.sqlite_check_limit
            && let Err(e) = super::parse_size("sqlite_check_limit", s)
        {
            return Err(err(&table, "sqlite_check_limit", e.to_string()));
        }
        if j.stdin_filename.is_some() && j.stdin_command.is_empty() {
            return Err(err(&table, "stdin_filename", "needs stdin_command".into()));
        }
        if j.check_slices.is_some_and(|n| n > 256) {
            return Err(err(
                &table,
                "check_slices",
                "at most 256 (slices are chosen by a pack ID's first byte)".into(),
            ));
        }
        for (key, value) in [
            ("keep_last", j.keep_last),
            ("keep_hourly", j.keep_hourly),
            ("keep_daily", j.keep_daily),
            ("keep_weekly", j.keep_weekly),
            ("keep_monthly", j.keep_monthly),
            ("keep_yearly", j.keep_yearly),
        ] {
            if let Some(n) = value
                && n < -1
            {
                return Err(err(
                    &table,
                    key,
                    format!("{n}: give a count, or -1 to keep all"),
                ));
            }
        }
        if let Some(w) = &j.keep_within {
            w.parse::<jiff::Span>()
                .map_err(|e| err(&table, "keep_within", format!("{w:?}: {e}")))?;
        }
        if let Some(h) = &j.healthcheck
            && !(h.starts_with("http://") || h.starts_with("https://"))
        {
            return Err(err(
                &table,
                "healthcheck",
                format!("{h:?} is not an http(s) URL"),
            ));
        }
        cairn::source::exclude::ExcludeMatcher::new(&j.exclude, &[])
            .map_err(|e| err(&table, "exclude", e.to_string()))?;
    }
    Ok(())
}

/// The default places, for messages.
fn default_places() -> String {
    default_paths()
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn no_config_message() -> String {
    format!(
        "no configuration file: give --config FILE or create one of {}",
        default_places()
    )
}

/// Load the configuration from `explicit`, or the first default place that
/// exists.
pub fn load(explicit: Option<&Path>) -> Result<Loaded> {
    load_if_any(explicit)?.ok_or_else(|| anyhow!(no_config_message()))
}

/// Load the configuration from `explicit` (which must exist), or the first
/// default place that exists; `None` if there is none.
pub fn load_if_any(explicit: Option<&Path>) -> Result<Option<Loaded>> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match default_paths().into_iter().find(|p| p.exists()) {
            Some(p) => p,
            None => return Ok(None),
        },
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    // It may hold storage credentials and name password files.
    if let Ok(m) = std::fs::metadata(&path) {
        super::warn_if_exposed("the configuration file", &path, &m);
    }
    let config = parse(&text, &path)?;
    Ok(Some(Loaded { path, config }))
}

impl Loaded {
    /// Things that are valid but will likely fail on this machine: missing
    /// password files and source paths.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        for (name, r) in &self.config.repository {
            if let Some(f) = &r.password_file {
                use std::os::unix::fs::MetadataExt;
                match std::fs::metadata(f) {
                    Err(_) => w.push(format!(
                        "[repository.{name}] password_file {} cannot be read here",
                        f.display()
                    )),
                    Ok(m) if m.mode() & 0o077 != 0 => w.push(format!(
                        "[repository.{name}] password_file {} is accessible by other users (mode {:04o}); run `chmod 600 {}`",
                        f.display(),
                        m.mode() & 0o7777,
                        f.display()
                    )),
                    Ok(_) => {}
                }
            }
        }
        for (name, j) in &self.config.job {
            for p in j.paths.iter().chain(&j.exclude_file) {
                if std::fs::symlink_metadata(p).is_err() {
                    w.push(format!("[job.{name}] {} does not exist here", p.display()));
                }
            }
        }
        w
    }

    /// A job by name.
    pub fn job(&self, name: &str) -> Result<&JobConfig> {
        match self.config.job.get(name) {
            Some(j) => Ok(j),
            None => bail!(
                "no job {name:?} in {} (jobs: {})",
                self.path.display(),
                self.config
                    .job
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[repository.main]
url = "/srv/backup/cairn"            # or sftp:…, s3:…
password_file = "/etc/cairn/main.pass"

[job.vaultwarden]
repository = "main"
paths = ["/opt/vaultwarden/data"]
exclude = ["icon_cache/"]
stdin_command = ["sh", "-c", "pg_dumpall"]   # optional; non-zero exit fails the job
stdin_filename = "dump.sql"
before = ["docker compose -f /opt/vaultwarden/compose.yml stop"]
after = ["docker compose -f /opt/vaultwarden/compose.yml start"]
finally = []
on_failure = []
healthcheck = "https://hc-ping.com/UUID"     # GET URL/start, URL on success, URL/fail with the reason
keep_last = 7
keep_daily = 14
keep_weekly = 8
keep_monthly = 12
"#;

    #[test]
    fn the_documented_example_parses() {
        let c = parse(EXAMPLE, Path::new("cairn.toml")).unwrap();
        let j = &c.job["vaultwarden"];
        assert_eq!(j.keep_daily, Some(14));
        assert_eq!(j.stdin_filename.as_deref(), Some("dump.sql"));
        assert_eq!(c.repository["main"].url, "/srv/backup/cairn");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let bad = EXAMPLE.replace("keep_last = 7", "keep_lats = 7");
        let e = parse(&bad, Path::new("/etc/cairn/cairn.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/cairn/cairn.toml:17:"), "{e}");
        assert!(e.contains("keep_lats"), "{e}");

        let bad = EXAMPLE.replace("keep_daily = 14", "keep_daily = \"fourteen\"");
        let e = parse(&bad, Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.starts_with("c.toml:18:"), "{e}");
        assert!(e.contains("keep_daily"), "{e}");

        let bad = EXAMPLE.replace("repository = \"main\"", "repository = \"offsite\"");
        let e = parse(&bad, Path::new("c.toml")).unwrap_err().to_string();
        assert!(
            e.contains("c.toml:7: key `repository` in [job.vaultwarden]"),
            "{e}"
        );

        let bad = EXAMPLE.replace("https://hc-ping.com/UUID", "hc-ping.com/UUID");
        let e = parse(&bad, Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains(":16: key `healthcheck`"), "{e}");
    }
}
