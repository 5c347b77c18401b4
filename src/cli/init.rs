//! `cairn init`: create a repository.

use anyhow::Result;
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
    #[command(flatten)]
    pass: super::copy::SourcePass,
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
