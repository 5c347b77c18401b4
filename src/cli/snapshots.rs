//! `cairn snapshots`: list snapshots.

use anyhow::Result;

use super::{GlobalArgs, format_time, human_bytes, lossy};

/// Arguments of `cairn snapshots`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    filter: super::FilterArgs,
    #[command(flatten)]
    pub(super) job: super::JobArgs,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let filter = g.scoped(a.filter.filter()?);
    let repo = g.open()?;
    let snaps: Vec<_> = repo
        .load_snapshots()?
        .into_iter()
        .filter(|(_, s)| filter.matches(s))
        .collect();
    if g.json {
        let v: Vec<_> = snaps
            .iter()
            .map(|(id, s)| super::snapshot_json(id, s))
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(super::exit::OK);
    }
    println!(
        "{:<8}  {:<19}  {:<12}  {:<14}  {:>10}  Paths",
        "ID", "Time", "Host", "Tags", "Size"
    );
    println!("{}", "-".repeat(80));
    for (id, s) in &snaps {
        let paths: Vec<String> = s.paths.iter().map(|p| lossy(p)).collect();
        println!(
            "{:<8}  {:<19}  {:<12}  {:<14}  {:>10}  {}",
            id.short(),
            format_time(s.time_ns, s.utc_offset_s),
            s.hostname,
            s.tags.join(","),
            human_bytes(s.summary.total_bytes),
            paths.join(", ")
        );
    }
    println!("{}", "-".repeat(80));
    println!("{}", super::count(snaps.len(), "snapshot"));
    Ok(super::exit::OK)
}
