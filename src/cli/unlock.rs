//! `cairn unlock`: remove stale locks (or all of them).
//!
//! Ages are judged by the storage's clock, as every lock holder judges
//! them (`cairn::repo::lock`): a probe object is written to learn the
//! storage's present time. A lock that cannot be read may be anyone's, so
//! it is removed only with `--remove-all`.

use anyhow::Result;
use cairn::repo::lock::{Observer, list_locks, lock_name, stale_reason, storage_now};

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
    let me = Observer::this_process();
    let now = storage_now(&repo)?;
    let mut removed = 0;
    let mut json = Vec::new();
    for l in list_locks(&repo)? {
        let why = match &l.lock {
            Ok(lock) => stale_reason(lock, l.mtime, now, &me),
            Err(e) if a.remove_all => Some(format!("unreadable: {e}")),
            Err(e) => {
                eprintln!(
                    "kept unreadable lock {} ({e}); if no Cairn process uses the repository, remove it with --remove-all",
                    l.id.short()
                );
                None
            }
        };
        let Some(why) = why.or_else(|| a.remove_all.then(|| "--remove-all".to_string())) else {
            continue;
        };
        repo.backend().delete(&lock_name(&l.id))?;
        removed += 1;
        json.push(serde_json::json!({
            "id": l.id.to_hex(),
            "pid": l.lock.as_ref().ok().map(|l| l.pid),
            "hostname": l.lock.as_ref().ok().map(|l| l.hostname.clone()),
            "reason": why,
        }));
        if !g.quiet && !g.json {
            match &l.lock {
                Ok(lock) => println!(
                    "removed lock {} of PID {} on {} ({why})",
                    l.id.short(),
                    lock.pid,
                    lock.hostname
                ),
                Err(_) => println!("removed lock {} ({why})", l.id.short()),
            }
        }
    }
    if g.json {
        super::print_summary(&serde_json::json!({ "removed": json }))?;
    } else if !g.quiet {
        println!("{removed} locks removed");
    }
    Ok(super::exit::OK)
}
