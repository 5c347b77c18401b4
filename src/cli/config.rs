//! `cairn config check`: validate a configuration file before the night it
//! is needed, and open every repository it names.

use std::path::PathBuf;

use anyhow::{Result, bail};

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
    /// Parse and validate the file (naming the file, line and key of any
    /// error), warn about files and paths that do not exist here, and open
    /// every repository with its passphrase source.
    Check {
        /// The file (default: --config, then the default places).
        file: Option<PathBuf>,
        /// Only check the file: do not open the repositories.
        #[arg(long)]
        no_open: bool,
    },
}

/// Whether one repository of the file opened.
#[derive(Debug, serde::Serialize)]
struct Opened {
    repository: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let Sub::Check { file, no_open } = &a.command;
    if g.given.repo {
        bail!(
            "`cairn config check` does not take -r/--repo: it opens every repository of the file"
        );
    }
    let loaded = jobconfig::load(file.as_deref().or(g.config.as_deref()))?;
    let warnings = loaded.warnings();
    if !g.json {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
    }
    let opened: Vec<Opened> = if *no_open {
        Vec::new()
    } else {
        loaded
            .config
            .repository
            .keys()
            .map(|name| {
                let r = try_open(g, &loaded, name);
                Opened {
                    repository: name.clone(),
                    ok: r.is_ok(),
                    error: r.err().map(|e| {
                        let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
                        super::dedup_chain(&chain)
                    }),
                }
            })
            .collect()
    };
    let failed: Vec<&Opened> = opened.iter().filter(|o| !o.ok).collect();
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "file": loaded.path.to_string_lossy(),
                "repositories": loaded.config.repository.keys().collect::<Vec<_>>(),
                "jobs": loaded.config.job.keys().collect::<Vec<_>>(),
                "warnings": warnings,
                "opened": opened,
            })
        );
    } else {
        for o in &failed {
            eprintln!(
                "error: [repository.{}] cannot be opened: {}",
                o.repository,
                o.error.as_deref().unwrap_or("")
            );
        }
        if !g.quiet && failed.is_empty() {
            println!(
                "{}: valid; repositories: {}{}; jobs: {}",
                loaded.path.display(),
                names(loaded.config.repository.keys()),
                if opened.is_empty() { "" } else { " (opened)" },
                names(loaded.config.job.keys()),
            );
        }
    }
    if failed.is_empty() {
        Ok(super::exit::OK)
    } else {
        if !g.json {
            eprintln!(
                "cairn: {}: {} of {} repositories cannot be opened: {}",
                loaded.path.display(),
                failed.len(),
                opened.len(),
                failed
                    .iter()
                    .map(|o| o.repository.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(super::exit::FATAL)
    }
}

/// Open `[repository.NAME]` as `cairn run` would (its url, passphrase
/// source and env), without prompting for a passphrase.
fn try_open(g: &GlobalArgs, loaded: &jobconfig::Loaded, name: &str) -> Result<()> {
    let mut g = jobconfig::use_repository(g.clone(), loaded, name)?;
    g.quiet = true;
    g.no_prompt = true;
    g.open()?;
    Ok(())
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
