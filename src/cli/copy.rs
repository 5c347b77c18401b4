//! `cairn copy`: copy snapshots from another repository into this one.

use anyhow::{Context, Result, bail};
use cairn::ops::copy::copy;
use cairn::repo::Repository;
use cairn::repo::lock::RepoLock;

use super::{GlobalArgs, human_bytes};

/// Arguments of `cairn copy`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The repository to copy from.
    #[arg(long, env = "CAIRN_FROM_REPOSITORY", value_name = "REPO")]
    from_repo: String,
    /// Read the source repository's passphrase from this file.
    #[arg(
        long,
        env = "CAIRN_FROM_PASSWORD_FILE",
        value_name = "FILE",
        hide_env_values = true
    )]
    from_password_file: Option<std::path::PathBuf>,
    /// Snapshots to copy (default: all that pass the filters).
    snapshots: Vec<String>,
    #[command(flatten)]
    filter: super::FilterArgs,
}

/// Open the source repository of `copy` or `init --copy-chunker-params`.
pub fn open_source(
    g: &GlobalArgs,
    repo: &str,
    file: Option<&std::path::Path>,
) -> Result<Repository> {
    let pass = match (file, std::env::var_os("CAIRN_FROM_PASSWORD")) {
        (Some(f), _) => {
            let mut b = std::fs::read(f)
                .with_context(|| format!("cannot read the password file {}", f.display()))?;
            while b.last().is_some_and(|&c| c == b'\n' || c == b'\r') {
                b.pop();
            }
            b
        }
        (None, Some(p)) => {
            use std::os::unix::ffi::OsStringExt;
            p.into_vec()
        }
        (None, None) => {
            use std::io::IsTerminal;
            if !std::io::stdin().is_terminal() {
                bail!(
                    "no passphrase for the source repository: use --from-password-file or CAIRN_FROM_PASSWORD"
                );
            }
            rpassword::prompt_password(format!("passphrase for {repo}: "))?.into_bytes()
        }
    };
    let pass = zeroize::Zeroizing::new(pass);
    let backend = cairn::backend::remote::open(
        repo,
        cairn::backend::remote::RemoteOptions {
            connections: g.connections.max(1),
            ..Default::default()
        },
    )?;
    Ok(Repository::open(backend, &pass)?)
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let mut src = open_source(g, &a.from_repo, a.from_password_file.as_deref())?;
    let mut dst = g.open()?;
    let _l1 = RepoLock::acquire(&src, false)?;
    let _l2 = RepoLock::acquire(&dst, false)?;
    src.load_index()?;
    dst.load_index()?;
    let filter = a.filter.filter()?;
    let snaps = if a.snapshots.is_empty() {
        src.load_snapshots()?
            .into_iter()
            .filter(|(_, s)| filter.matches(s))
            .collect()
    } else {
        a.snapshots
            .iter()
            .map(|spec| src.select_snapshot(spec, &filter))
            .collect::<cairn::Result<Vec<_>>>()?
    };
    let r = copy(&src, &mut dst, &snaps, &cairn::ops::NoProgress)?;
    if g.json {
        println!("{}", serde_json::to_string(&r)?);
    } else if !g.quiet {
        println!(
            "copied {} snapshots ({} already there); sent {} blobs, {}",
            r.copied,
            r.skipped,
            r.blobs_sent,
            human_bytes(r.bytes_sent)
        );
    }
    Ok(super::exit::OK)
}
