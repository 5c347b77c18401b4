//! `cairn snapshots`: list snapshots.

use anyhow::Result;

use super::{GlobalArgs, format_time, human_bytes, lossy};

/// Arguments of `cairn snapshots`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only snapshots of this host.
    #[arg(long)]
    host: Option<String>,
    /// Only snapshots with this tag.
    #[arg(long)]
    tag: Option<String>,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let repo = g.open()?;
    let snaps: Vec<_> = repo
        .load_snapshots()?
        .into_iter()
        .filter(|(_, s)| a.host.as_ref().is_none_or(|h| &s.hostname == h))
        .filter(|(_, s)| a.tag.as_ref().is_none_or(|t| s.tags.contains(t)))
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
    println!("{} snapshots", snaps.len());
    Ok(super::exit::OK)
}
