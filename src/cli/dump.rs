//! `cairn dump`: write one file of a snapshot to standard output.

use std::io::Write;

use anyhow::{Context, Result, bail};
use cairn::ops::walk::{self, Found};

use super::GlobalArgs;

/// Arguments of `cairn dump`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot ID (or a unique prefix, or `latest`).
    snapshot: String,
    /// Path of the file in the snapshot.
    path: String,
    #[command(flatten)]
    filter: super::FilterArgs,
    #[command(flatten)]
    pub(super) job: super::JobArgs,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let repo = g.open_with_index()?;
    // The snapshot and the file are found before the first byte is
    // written: a command that fails leaves its output empty.
    let (_, snap) =
        super::select_snapshot(g, &repo, &a.snapshot, &a.filter.filter()?, Some(&a.path))?;
    let node = match walk::find(&repo, &snap.tree, a.path.as_bytes())? {
        Found::Entry(n) => n,
        Found::Dir(..) => bail!("{} is a directory; `cairn dump` writes one file", a.path),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    walk::dump_file(&repo, &node, &mut out).with_context(|| format!("cannot dump {}", a.path))?;
    out.flush()?;
    Ok(super::exit::OK)
}
