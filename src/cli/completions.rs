//! `cairn completions` and `cairn man`: generated from the argument
//! definitions, so they never drift from the commands.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::Cli;

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
    match &a.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write manual pages into {}", dir.display()))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .context("cannot render the manual page")?;
            use std::io::Write;
            std::io::stdout()
                .write_all(&page)
                .context("cannot write the manual page")?;
        }
    }
    Ok(super::exit::OK)
}
