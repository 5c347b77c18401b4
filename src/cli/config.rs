//! `cairn config check`: validate a configuration file before the night it
//! is needed.

use std::path::PathBuf;

use anyhow::Result;

use super::GlobalArgs;
use super::jobconfig;

/// Arguments of `cairn config`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Parse and validate the file; name the file, line and key of any
    /// error, and warn about files and paths that do not exist here.
    Check {
        /// The file (default: --config, then the default places).
        file: Option<PathBuf>,
    },
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let Sub::Check { file } = &a.command;
    let loaded = jobconfig::load(file.as_deref().or(g.config.as_deref()))?;
    let warnings = loaded.warnings();
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "file": loaded.path.to_string_lossy(),
                "repositories": loaded.config.repository.keys().collect::<Vec<_>>(),
                "jobs": loaded.config.job.keys().collect::<Vec<_>>(),
                "warnings": warnings,
            })
        );
    } else {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        if !g.quiet {
            println!(
                "{}: valid; repositories: {}; jobs: {}",
                loaded.path.display(),
                names(loaded.config.repository.keys()),
                names(loaded.config.job.keys()),
            );
        }
    }
    Ok(super::exit::OK)
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
