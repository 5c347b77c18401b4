//! `cairn init`: create a repository.

use std::path::Path;

use anyhow::{Result, bail};
use cairn::repo::{InitOptions, Repository};

use super::GlobalArgs;

/// Arguments of `cairn init`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Target pack size in MiB.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pack_size: u32,
    /// Default zstd compression level for new data (0 = off).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(0..=22))]
    compression: i32,
    /// Use the chunker parameters and blob ID key of --from-repo, so that
    /// copies between the two send only what the other lacks.
    #[arg(long, requires = "from_repo")]
    copy_chunker_params: bool,
    /// The repository to take chunker parameters from.
    #[arg(
        long,
        env = "CAIRN_FROM_REPOSITORY",
        hide_env_values = true,
        value_name = "REPO"
    )]
    from_repo: Option<String>,
    /// Create the repository even in a directory that holds other files.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pass: super::copy::SourcePass,
}

/// Refuse a local location that is a directory holding anything: the
/// repository would mix with those files (and `prune` or a later `rm -r`
/// of the repository would take them along). A directory that already
/// holds a repository (`config`) is left to `Repository::init`, which
/// names it as such.
fn refuse_foreign_files(location: &str) -> Result<()> {
    if cairn::backend::remote::RemoteUrl::parse(location)?.is_some() {
        return Ok(());
    }
    let dir = Path::new(location);
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // Missing (created by init), or not a directory (init says so).
        Err(_) => return Ok(()),
    };
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    if names.is_empty() || names.iter().any(|n| n == "config") {
        return Ok(());
    }
    names.sort();
    let more = match names.len() - 1 {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    bail!(
        "refusing to create a repository in {}: the directory is not empty (it holds {}{more}); \
         give a new or empty directory, or --force to create it among those files",
        dir.display(),
        Path::new(&names[0]).display()
    )
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let mut opts = InitOptions {
        pack_size: a.pack_size * 1024 * 1024,
        compression_level: a.compression,
        kdf: super::kdf_policy().0,
        identity: Some(super::identity()),
        ..InitOptions::default()
    };
    if let (true, Some(from)) = (a.copy_chunker_params, &a.from_repo) {
        let src = super::copy::open_source(g, from, &a.pass, &Default::default())?;
        opts.chunker = Some(src.config().chunker);
        opts.id_key = Some(src.config().id_key);
    }
    let backend = g.backend()?;
    if !a.force {
        refuse_foreign_files(&backend.location())?;
    }
    let pass = g.passphrase(true)?;
    let repo = Repository::init(backend, &pass, &opts)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "initialized",
                "id": hex::encode(repo.config().repo_id),
                "repository": repo.backend().location(),
            })
        );
    } else if !g.quiet {
        println!(
            "created Cairn repository {} at {}",
            &hex::encode(repo.config().repo_id)[..10],
            repo.backend().location()
        );
        println!(
            "Keep the passphrase safe: without it the data in this repository cannot be read."
        );
    }
    Ok(super::exit::OK)
}
