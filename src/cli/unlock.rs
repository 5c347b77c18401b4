//! `cairn unlock`: remove stale locks (or all of them).
//!
//! Ages are judged by the storage's clock, as every lock holder judges
//! them (`cairn::repo::lock`): a probe object is written to learn the
//! storage's present time. A lock that cannot be read may be anyone's, so
//! it is removed only with `--remove-all`.

use anyhow::Result;
use cairn::repo::lock::unlock;

use super::GlobalArgs;

/// Arguments of `cairn unlock`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove every lock, also live and unreadable ones (only when you know
    /// no other Cairn process uses the repository).
    #[arg(long)]
    remove_all: bool,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let repo = g.open()?;
    let r = unlock(&repo, a.remove_all)?;
    for (id, e) in &r.kept_unreadable {
        eprintln!(
            "kept unreadable lock {} ({e}); if no Cairn process uses the repository, remove it with --remove-all",
            id.short()
        );
    }
    if g.json {
        let removed: Vec<_> = r
            .removed
            .iter()
            .map(|l| {
                serde_json::json!({
                    "id": l.id.to_hex(),
                    "pid": l.lock.as_ref().map(|l| l.pid),
                    "hostname": l.lock.as_ref().map(|l| l.hostname.clone()),
                    "reason": l.reason,
                })
            })
            .collect();
        super::print_summary(&serde_json::json!({ "removed": removed }))?;
    } else if !g.quiet {
        for l in &r.removed {
            match &l.lock {
                Some(lock) => println!(
                    "removed lock {} of PID {} on {} ({})",
                    l.id.short(),
                    lock.pid,
                    lock.hostname,
                    l.reason
                ),
                None => println!("removed lock {} ({})", l.id.short(), l.reason),
            }
        }
        println!("{} removed", super::count(r.removed.len(), "lock"));
    }
    Ok(super::exit::OK)
}
