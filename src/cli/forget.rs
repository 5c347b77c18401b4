//! `cairn forget`: remove snapshots by a retention policy or by ID.

use anyhow::{Result, bail};
use cairn::ops::forget::{GroupBy, Policy, plan};
use cairn::repo::lock::RepoLock;

use super::{GlobalArgs, format_time, lossy};

/// Arguments of `cairn forget`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to forget by ID (instead of a policy).
    ids: Vec<String>,
    /// Keep the N newest snapshots (-1: all).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_last: Option<i64>,
    /// Keep the newest snapshot of each of the N most recent hours.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_hourly: Option<i64>,
    /// ... days.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_daily: Option<i64>,
    /// ... ISO weeks.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_weekly: Option<i64>,
    /// ... months.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_monthly: Option<i64>,
    /// ... years.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_yearly: Option<i64>,
    /// Keep every snapshot taken within DURATION of the newest (e.g. "7d",
    /// "2 weeks", "1y6m").
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
    /// Keep every snapshot with this tag (repeatable).
    #[arg(long, value_name = "TAG")]
    keep_tag: Vec<String>,
    /// Group snapshots by these fields before applying the policy.
    #[arg(long, default_value = "host,paths", value_name = "FIELDS")]
    group_by: String,
    /// Only say what would be forgotten.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Prune afterwards, to give the space back.
    #[arg(long)]
    prune: bool,
    /// With --prune: unused data to tolerate, as a share of the repository
    /// (see `cairn prune --help`).
    #[arg(long, default_value = "5%", value_name = "PERCENT")]
    max_unused: String,
    #[command(flatten)]
    filter: super::FilterArgs,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let policy = Policy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        within: a
            .keep_within
            .as_deref()
            .map(|w| {
                w.parse::<jiff::Span>()
                    .map(|s| s.abs())
                    .map_err(|e| anyhow::anyhow!("--keep-within {w:?}: {e}"))
            })
            .transpose()?,
        tags: a.keep_tag.clone(),
    };
    if a.ids.is_empty() && policy.is_empty() {
        bail!("no policy given: name snapshots to forget, or give at least one --keep-* option");
    }
    if !a.ids.is_empty() && !policy.is_empty() {
        bail!("give either snapshot IDs or a --keep-* policy, not both");
    }
    let group = GroupBy::parse(&a.group_by)?;
    let max_unused = super::prune::parse_percent(&a.max_unused)?;
    let mut repo = g.open()?;
    let lock = RepoLock::acquire(&repo, true)?;
    let filter = a.filter.filter()?;
    let mut doomed = Vec::new();
    if !a.ids.is_empty() {
        for spec in &a.ids {
            let (id, s) = repo.find_snapshot(spec)?;
            doomed.push((id, s));
        }
    } else {
        let snaps: Vec<_> = repo
            .load_snapshots()?
            .into_iter()
            .filter(|(_, s)| filter.matches(s))
            .collect();
        let plans = plan(snaps, &policy, group);
        let mut json_groups = Vec::new();
        for p in &plans {
            if g.json {
                json_groups.push(serde_json::json!({
                    "host": p.key.host,
                    "paths": p.key.paths.as_ref().map(|ps| ps.iter().map(|x| lossy(x)).collect::<Vec<_>>()),
                    "tags": p.key.tags,
                    "keep": p.decisions.iter().filter(|d| !d.reasons.is_empty()).map(|d| serde_json::json!({"id": d.id.to_hex(), "reasons": d.reasons})).collect::<Vec<_>>(),
                    "remove": p.decisions.iter().filter(|d| d.reasons.is_empty()).map(|d| d.id.to_hex()).collect::<Vec<_>>(),
                }));
            } else if !g.quiet {
                let mut what = Vec::new();
                if let Some(h) = &p.key.host {
                    what.push(format!("host {h}"));
                }
                if let Some(ps) = &p.key.paths {
                    what.push(format!(
                        "paths [{}]",
                        ps.iter().map(|x| lossy(x)).collect::<Vec<_>>().join(", ")
                    ));
                }
                if let Some(t) = &p.key.tags {
                    what.push(format!("tags [{}]", t.join(", ")));
                }
                println!(
                    "snapshots of {}:",
                    if what.is_empty() {
                        "all".into()
                    } else {
                        what.join(", ")
                    }
                );
                for d in &p.decisions {
                    let when = format_time(d.snapshot.time_ns, d.snapshot.utc_offset_s);
                    if d.reasons.is_empty() {
                        println!("  remove {}  {when}", d.id.short());
                    } else {
                        println!(
                            "  keep   {}  {when}  ({})",
                            d.id.short(),
                            d.reasons.join(", ")
                        );
                    }
                }
            }
            for d in &p.decisions {
                if d.reasons.is_empty() {
                    doomed.push((d.id, d.snapshot.clone()));
                }
            }
        }
        if g.json {
            println!(
                "{}",
                serde_json::json!({"message_type": "plan", "groups": json_groups, "dry_run": a.dry_run})
            );
        }
    }
    let ids: Vec<String> = doomed.iter().map(|(id, _)| id.to_hex()).collect();
    if a.dry_run {
        if g.json {
            super::print_summary(&serde_json::json!({
                "dry_run": true, "removed": [], "would_remove": ids, "prune": null,
            }))?;
        } else if !g.quiet {
            println!(
                "would remove {} snapshots (dry run: nothing changed)",
                doomed.len()
            );
        }
        return Ok(super::exit::OK);
    }
    if !doomed.is_empty() {
        cairn::failpoint::hit("forget::before_delete")?;
        lock.verify()
            .map_err(|e| e.context("forget stopped, no snapshot was removed"))?;
    }
    for (n, (id, _)) in doomed.iter().enumerate() {
        lock.check().map_err(|e| {
            e.context(format!(
                "forget stopped after removing {n} of {} snapshots",
                doomed.len()
            ))
        })?;
        repo.backend().delete(&cairn::repo::snapshot_name(id))?;
    }
    if !g.json && !g.quiet {
        println!("removed {} snapshots", doomed.len());
    }
    let mut pruned = None;
    if a.prune {
        let reporter = super::progress::Reporter::new(g, "prune");
        let r = cairn::ops::prune::prune(
            &mut repo,
            &lock,
            &cairn::ops::prune::PruneOptions {
                max_unused,
                dry_run: false,
            },
            &reporter,
        );
        reporter.finish();
        let r = r?;
        if !g.json {
            super::prune::report(g, &r);
        }
        pruned = Some(r);
    }
    if g.json {
        super::print_summary(&serde_json::json!({
            "dry_run": false, "removed": ids, "would_remove": [], "prune": pruned,
        }))?;
    }
    drop(lock);
    Ok(super::exit::OK)
}
