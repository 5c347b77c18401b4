//! `cairn copy`: copy snapshots from another repository into this one.

use anyhow::{Result, bail};
use cairn::ops::copy::copy;
use cairn::repo::Repository;

use super::{GlobalArgs, human_bytes};

/// Arguments of `cairn copy`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The repository to copy from.
    #[arg(
        long,
        env = "CAIRN_FROM_REPOSITORY",
        hide_env_values = true,
        value_name = "REPO"
    )]
    from_repo: String,
    #[command(flatten)]
    pass: SourcePass,
    /// Backend settings for the source (from a configuration file).
    #[arg(skip)]
    pub(super) from_env: std::collections::BTreeMap<String, String>,
    /// Snapshots to copy (default: all that pass the filters).
    snapshots: Vec<String>,
    #[command(flatten)]
    filter: super::FilterArgs,
}

/// Where the source repository's passphrase comes from (`copy`, and
/// `init --copy-chunker-params`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SourcePass {
    /// Read the source repository's passphrase from this file.
    #[arg(
        long,
        env = "CAIRN_FROM_PASSWORD_FILE",
        value_name = "FILE",
        hide_env_values = true
    )]
    pub from_password_file: Option<std::path::PathBuf>,
    /// Run this shell command and read the source repository's passphrase
    /// from its output.
    #[arg(
        long,
        env = "CAIRN_FROM_PASSWORD_COMMAND",
        value_name = "COMMAND",
        hide_env_values = true,
        conflicts_with = "from_password_file"
    )]
    pub from_password_command: Option<String>,
}

/// Open the source repository of `copy` or `init --copy-chunker-params`:
/// the passphrase from the file, the command, `CAIRN_FROM_PASSWORD`, or a
/// prompt on a terminal. A `repo` that names a `[repository.NAME]` of the
/// configuration file (as `-r NAME` does) is that table's url, env and
/// passphrase source.
pub fn open_source(
    g: &GlobalArgs,
    repo: &str,
    pass: &SourcePass,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<Repository> {
    let mut src = g.clone();
    src.repo = Some(repo.to_string());
    src.env = env.clone();
    src.password_file = pass.from_password_file.clone();
    src.password_command = pass.from_password_command.clone();
    if let Some((loaded, rc)) = super::jobconfig::named_repository(g.config.as_deref(), repo)? {
        if rc.password_file.is_some() || rc.password_command.is_some() {
            if src.password_file.is_some() || src.password_command.is_some() {
                bail!(
                    "--from-password-file/--from-password-command would not be used: [repository.{repo}] in {} has its own passphrase source; drop one of them",
                    loaded.path.display()
                );
            }
            src.password_file = rc.password_file.clone();
            src.password_command = rc.password_command.clone();
        }
        src.repo = Some(rc.url.clone());
        src.env = rc.env.clone();
        if let Some(c) = rc.connections {
            src.connections = c;
        }
    }
    if src.password_file.is_none() && src.password_command.is_none() {
        let pass = match super::secret_env("CAIRN_FROM_PASSWORD") {
            Some(p) => p,
            None => {
                use std::io::IsTerminal;
                if !std::io::stdin().is_terminal() {
                    bail!(
                        "no passphrase for the source repository: use --from-password-file, --from-password-command or CAIRN_FROM_PASSWORD"
                    );
                }
                zeroize::Zeroizing::new(
                    rpassword::prompt_password(format!("passphrase for {repo}: "))?.into_bytes(),
                )
            }
        };
        return super::open_repository(src.backend()?, &pass);
    }
    src.open()
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let from = Source {
        repo: a.from_repo.clone(),
        pass: a.pass.clone(),
        env: a.from_env.clone(),
    };
    execute(g, &from, &a.snapshots, &a.filter.filter()?)
}

/// The repository `copy` copies from.
pub struct Source {
    /// Its location.
    pub repo: String,
    /// Where its passphrase comes from.
    pub pass: SourcePass,
    /// Its backend settings (a configuration file's).
    pub env: std::collections::BTreeMap<String, String>,
}

/// Copy the snapshots `specs` name (all if none) among those `filter`
/// passes from `from` into the repository of `g`, and print the result;
/// `cairn run` calls this too.
pub fn execute(
    g: &GlobalArgs,
    from: &Source,
    specs: &[String],
    filter: &cairn::repo::SnapshotFilter,
) -> Result<i32> {
    let mut src = open_source(g, &from.repo, &from.pass, &from.env)?;
    let mut dst = g.open()?;
    let mut src_lock = src.lock_shared()?;
    let mut dst_lock = dst.lock_shared()?;
    let _interrupts = super::Interrupts::install(dst_lock.cancel_token())?;
    let src = src_lock.load_index()?;
    let snaps = if specs.is_empty() {
        src.load_snapshots()?
            .into_iter()
            .filter(|(_, s)| filter.matches(s))
            .collect()
    } else {
        specs
            .iter()
            .map(|spec| src.select_snapshot(spec, filter))
            .collect::<cairn::Result<Vec<_>>>()?
    };
    let reporter = super::progress::Reporter::new(g, "copy");
    let r = copy(&src, &mut dst_lock, &snaps, &reporter);
    reporter.finish();
    let r = r?;
    if g.json {
        super::print_summary(&r)?;
    } else if !g.quiet {
        println!(
            "copied {} ({} already there); sent {}, {}",
            super::count(r.copied, "snapshot"),
            r.skipped,
            super::count(r.blobs_sent, "blob"),
            human_bytes(r.bytes_sent)
        );
    }
    Ok(super::exit::OK)
}
