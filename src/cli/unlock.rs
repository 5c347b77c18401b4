//! `cairn unlock`: remove stale locks (or all of them).

use anyhow::Result;
use cairn::format::aad;
use cairn::format::lock::Lock;
use cairn::id::LockId;
use cairn::repo::lock::{lock_name, stale_reason};

use super::GlobalArgs;

/// Arguments of `cairn unlock`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove every lock, also live ones (only when you know no other
    /// Cairn process uses the repository).
    #[arg(long)]
    remove_all: bool,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let repo = g.open()?;
    let host = cairn::repo::hostname();
    let now = jiff::Timestamp::now().as_nanosecond() as i64;
    let mut removed = 0;
    let mut json = Vec::new();
    for o in repo.backend().list("locks")? {
        let Some(id) = o
            .name
            .strip_prefix("locks/")
            .and_then(|h| LockId::from_hex(h).ok())
        else {
            continue;
        };
        let lock = repo
            .load_object(aad::LOCK, &lock_name(&id), id.as_bytes())
            .and_then(|b| Lock::from_bytes(&b));
        let why = match &lock {
            Ok(l) => stale_reason(l, now, &host),
            Err(e) => Some(format!("unreadable: {e}")),
        };
        if let Some(why) = why.or_else(|| a.remove_all.then(|| "--remove-all".to_string())) {
            repo.backend().delete(&lock_name(&id))?;
            removed += 1;
            json.push(serde_json::json!({
                "id": id.to_hex(),
                "pid": lock.as_ref().ok().map(|l| l.pid),
                "hostname": lock.as_ref().ok().map(|l| l.hostname.clone()),
                "reason": why,
            }));
            if !g.quiet && !g.json {
                match &lock {
                    Ok(l) => println!(
                        "removed lock {} of PID {} on {} ({why})",
                        id.short(),
                        l.pid,
                        l.hostname
                    ),
                    Err(_) => println!("removed lock {} ({why})", id.short()),
                }
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
