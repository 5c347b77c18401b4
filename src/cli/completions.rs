//! `cairn completions` and `cairn man`: generated from the argument
//! definitions, so they never drift from the commands.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::{Cli, exit};

/// Arguments of `cairn completions`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

/// Arguments of `cairn man`.
#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write cairn.1 and one page per subcommand (cairn-backup.1, …) into
    /// this directory instead of printing cairn.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Print the completion script for a shell.
pub fn run(a: &Args) -> Result<i32> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "cairn", &mut script);
    // A closed pipe (`| head`) ends quietly, through the common error path.
    use std::io::Write;
    std::io::stdout()
        .write_all(&script)
        .context("cannot write the completion script")?;
    Ok(super::exit::OK)
}

/// Print the manual page, or write every page into a directory.
pub fn man(a: &ManArgs) -> Result<i32> {
    let cmd = Cli::command();
    let mut page = Vec::new();
    render_main_page(&cmd, &mut page).context("cannot render the manual page")?;
    match &a.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write manual pages into {}", dir.display()))?;
            // cairn.1 with the sections clap does not know about.
            let main = dir.join("cairn.1");
            std::fs::write(&main, &page)
                .with_context(|| format!("cannot write {}", main.display()))?;
        }
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(&page)
                .context("cannot write the manual page")?;
        }
    }
    Ok(super::exit::OK)
}

/// cairn(1): clap's sections, then EXIT STATUS, ENVIRONMENT, FILES and
/// CONFIGURATION, then the version.
fn render_main_page(cmd: &clap::Command, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;
    extra_sections().to_writer(w)?;
    man.render_version_section(w)
}

/// Exit codes and what they mean (`super::exit`).
pub const EXIT_STATUS: [(i32, &str); 8] = [
    (exit::OK, "Success."),
    (
        exit::FATAL,
        "A fatal error: the command stopped (cairn run: a job failed).",
    ),
    (
        exit::PARTIAL,
        "A snapshot was written, but some source entries could not be read (backup).",
    ),
    (exit::NO_REPOSITORY, "The repository does not exist."),
    (
        exit::LOCKED,
        "The repository lock could not be taken, or was lost before the command could commit.",
    ),
    (exit::WRONG_PASSWORD, "Wrong passphrase."),
    (
        exit::INTERRUPTED,
        "Interrupted by Ctrl-C (SIGINT). Cairn says \"interrupted, cleaning up\", indexes \
         what a backup stored (the next run reuses it) and removes its lock; a second signal \
         ends it at once.",
    ),
    (exit::TERMINATED, "Interrupted by SIGTERM, as for Ctrl-C."),
];

/// Environment variables Cairn reads.
pub const ENVIRONMENT: [(&str, &str); 18] = [
    ("CAIRN_REPOSITORY", "The repository, as --repo."),
    (
        "CAIRN_PASSWORD_FILE",
        "A file holding the passphrase, as --password-file.",
    ),
    (
        "CAIRN_PASSWORD_COMMAND",
        "A shell command printing the passphrase, as --password-command.",
    ),
    (
        "CAIRN_PASSWORD",
        "The passphrase itself (after the two above; removed from the environment of every \
         command Cairn starts).",
    ),
    (
        "CAIRN_NEW_PASSWORD",
        "The new passphrase for key add and key passwd.",
    ),
    (
        "CAIRN_FROM_REPOSITORY, CAIRN_FROM_PASSWORD_FILE, CAIRN_FROM_PASSWORD_COMMAND, CAIRN_FROM_PASSWORD",
        "The source repository of copy, and its passphrase.",
    ),
    ("CAIRN_CONFIG", "The configuration file, as --config."),
    (
        "CAIRN_CACHE_DIR",
        "Cache of network repositories' metadata (empty or \"off\": no cache).",
    ),
    (
        "CAIRN_STATE_DIR",
        "Where cairn run keeps its per-job state.",
    ),
    (
        "XDG_CONFIG_HOME, XDG_CACHE_HOME, XDG_STATE_HOME, HOME",
        "Base directories of the configuration file, the cache and the state.",
    ),
    (
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY",
        "S3 credentials.",
    ),
    ("AWS_DEFAULT_REGION, AWS_REGION", "S3 region."),
    ("CAIRN_SFTP_KEY", "SSH private key for SFTP repositories."),
    (
        "CAIRN_SFTP_KNOWN_HOSTS",
        "known_hosts file for SFTP repositories.",
    ),
    (
        "TMPDIR",
        "Where restore-test creates its temporary directory.",
    ),
    (
        "USER, LOGNAME",
        "The user name recorded in snapshots, locks and keys (else the user database's).",
    ),
    (
        "FAILPOINTS, CAIRN_INSECURE_TEST_KDF",
        "Test builds only; a release build ignores them.",
    ),
    (
        "CAIRN_JOB, CAIRN_SNAPSHOT_ID, CAIRN_STATUS, CAIRN_ERROR",
        "Set by cairn run for its hooks (not read by Cairn).",
    ),
];

/// Files Cairn reads or writes on its own.
pub const FILES: [(&str, &str); 5] = [
    (
        "$XDG_CONFIG_HOME/cairn/cairn.toml (~/.config/cairn/cairn.toml)",
        "The configuration file, unless --config or CAIRN_CONFIG names one.",
    ),
    (
        "/etc/cairn/cairn.toml",
        "The configuration file when the one above does not exist.",
    ),
    (
        "$XDG_CACHE_HOME/cairn (~/.cache/cairn)",
        "Cache of network repositories' index, snapshots and trees.",
    ),
    (
        "/var/lib/cairn (root), else $XDG_STATE_HOME/cairn (~/.local/state/cairn)",
        "cairn run's per-job state: last prune, last restore test, next check slice.",
    ),
    (
        "REPOSITORY/locks/",
        "One object per running command; removed when it ends or is interrupted (cairn \
         unlock removes those of crashed processes).",
    ),
];

/// Configuration file keys: `[repository.NAME]` tables, then `[job.NAME]`.
pub const CONFIG_KEYS: [(&str, &[(&str, &str)]); 2] = [
    (
        "[repository.NAME]",
        &[
            ("url", "Location, as --repo (required)."),
            ("password_file", "File holding the passphrase."),
            ("password_command", "Shell command printing the passphrase."),
            (
                "connections",
                "Requests in flight, for SFTP and S3 (default 4).",
            ),
            (
                "env",
                "Table of backend settings (AWS_*, CAIRN_SFTP_*), over the process environment.",
            ),
        ],
    ),
    (
        "[job.NAME]",
        &[
            (
                "repository",
                "Name of the [repository.NAME] to back up to (required).",
            ),
            ("paths", "Files and directories to back up."),
            ("exclude", "Exclude patterns, as --exclude."),
            ("exclude_file", "Files of exclude patterns."),
            (
                "exclude_if_present",
                "Skip a directory holding an entry of one of these names.",
            ),
            (
                "exclude_caches",
                "Skip directories tagged with CACHEDIR.TAG.",
            ),
            ("one_file_system", "Do not cross filesystem boundaries."),
            ("tags", "Extra tags (job:NAME is always added)."),
            ("host", "Host name to record."),
            (
                "sqlite",
                "\"on\" (consistent capture of live databases) or \"off\".",
            ),
            ("sqlite_timeout", "Seconds to wait for a busy database."),
            (
                "sqlite_check",
                "\"quick\" (check captured databases with quick_check) or \"off\".",
            ),
            (
                "sqlite_check_limit",
                "Larger databases are checked a slice of their tables at a time.",
            ),
            (
                "stdin_command",
                "Command whose output is stored as one file.",
            ),
            ("stdin_filename", "Name of that file."),
            ("before", "Shell commands run before the backup."),
            (
                "after",
                "Shell commands run after the backup, whatever happened.",
            ),
            ("after_hooks", "When after runs: \"backup\" or \"end\"."),
            ("on_failure", "Shell commands run when a step failed."),
            ("finally", "Shell commands run at the very end."),
            (
                "healthcheck",
                "URL pinged at start, on success and on failure.",
            ),
            ("copy_to", "Repositories to copy the job's snapshots to."),
            ("keep_last", "Keep the N newest snapshots."),
            (
                "keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly",
                "Keep the newest snapshot of each of the N most recent periods.",
            ),
            (
                "keep_within",
                "Keep every snapshot within this span of the newest.",
            ),
            ("keep_tags", "Always keep snapshots with these tags."),
            (
                "forget_suspect",
                "Let retention forget the last good capture of a suspect database.",
            ),
            (
                "prune_every_days",
                "Prune at most every this many days (default 7).",
            ),
            (
                "check_slices",
                "Read one slice of this many of the data each check (default 7).",
            ),
            (
                "check_every_hours",
                "Check at most every this many hours (default 0: every run).",
            ),
            (
                "restore_test_every_days",
                "Restore-test the new snapshot every this many days.",
            ),
            (
                "restore_test_dir",
                "Where restore tests create their directory.",
            ),
            (
                "metrics_file",
                "Prometheus text file for the job's metrics (also a top-level key, for every job).",
            ),
        ],
    ),
];

/// The sections after the generated ones, as roff.
fn extra_sections() -> clap_mangen::roff::Roff {
    use clap_mangen::roff::{Roff, bold, roman};
    let mut r = Roff::new();
    let item = |r: &mut Roff, term: &str, text: &str| {
        r.control("TP", []);
        r.text([bold(term)]);
        r.text([roman(text)]);
    };
    r.control("SH", ["EXIT STATUS"]);
    for (code, what) in EXIT_STATUS {
        item(&mut r, &code.to_string(), what);
    }
    r.control("SH", ["ENVIRONMENT"]);
    for (name, what) in ENVIRONMENT {
        item(&mut r, name, what);
    }
    r.control("SH", ["FILES"]);
    for (name, what) in FILES {
        item(&mut r, name, what);
    }
    r.control("SH", ["CONFIGURATION"]);
    r.text([roman(
        "The configuration file (TOML) holds repositories and jobs for cairn run, \
         cairn config check and cairn schedule. See the user guide for a complete example.",
    )]);
    for (table, keys) in CONFIG_KEYS {
        r.control("SS", [table]);
        for (key, what) in keys {
            item(&mut r, key, what);
        }
    }
    r
}
