//! `cairn tag`: change the tags of snapshots (each changed snapshot gets a
//! new record sharing its tree; the original record is removed).

use anyhow::Result;
use cairn::ops::rewrite::{TagOptions, retag};

use super::GlobalArgs;

/// Arguments of `cairn tag`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Add TAG (repeatable).
    #[arg(long, value_name = "TAG")]
    add: Vec<String>,
    /// Remove TAG (repeatable).
    #[arg(long, value_name = "TAG")]
    remove: Vec<String>,
    /// Replace every tag with TAG (repeatable for several; `--set ''`
    /// removes every tag); cannot be combined with --add or --remove.
    #[arg(long, value_name = "TAG", conflicts_with_all = ["add", "remove"])]
    set: Vec<String>,
    /// Only say what would change; write nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    #[command(flatten)]
    pub(super) select: super::rewrite::Selection,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let opts = TagOptions {
        add: a.add.clone(),
        remove: a.remove.clone(),
        // `--set ''` stands for "no tags at all".
        set: (!a.set.is_empty()).then(|| a.set.iter().filter(|t| !t.is_empty()).cloned().collect()),
        dry_run: a.dry_run,
    };
    opts.validate()?;
    let mut repo = g.open()?;
    let mut lock = repo.lock_exclusive()?;
    let ids = a.select.resolve(g, &lock)?;
    let r = retag(&mut lock, &ids, &opts)?;
    drop(lock);
    if g.json {
        super::rewrite::print_json(&r)?;
        return Ok(super::exit::OK);
    }
    for x in &r.rewritten {
        let tags = if x.tags.is_empty() {
            "no tags".to_string()
        } else {
            format!("tags {}", x.tags.join(","))
        };
        match (x.id, x.earlier) {
            (Some(id), true) => println!(
                "snapshot {}: {tags}, already saved as snapshot {} by an earlier run",
                x.original.short(),
                id.short()
            ),
            (Some(id), false) => println!(
                "snapshot {}: {tags}, saved as snapshot {}",
                x.original.short(),
                id.short()
            ),
            (None, _) => println!("snapshot {}: would get {tags}", x.original.short()),
        }
    }
    if !g.quiet {
        println!(
            "{} {} of {}; {} unchanged{}",
            if r.dry_run { "would change" } else { "changed" },
            r.rewritten.len(),
            super::count(r.snapshots, "snapshot"),
            r.unchanged,
            if r.dry_run {
                " (dry run: nothing changed)"
            } else {
                ""
            }
        );
    }
    Ok(super::exit::OK)
}
