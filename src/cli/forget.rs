//! `cairn forget`: remove snapshots by a retention policy or by ID.

use std::collections::HashSet;

use anyhow::{Result, bail};
use cairn::ops::forget::{
    GroupBy, LastGood, Policy, any_suspect, forget, keep_last_good, last_good, plan,
};

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
    /// Also forget a snapshot that holds the last good capture of a
    /// database that is suspect in a newer snapshot (kept otherwise, with
    /// the reason "last good").
    #[arg(long)]
    forget_suspect: bool,
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
    #[command(flatten)]
    pub(super) job: super::JobArgs,
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
    let request = Request {
        ids: a.ids.clone(),
        policy,
        group: GroupBy::parse(&a.group_by)?,
        filter: g.scoped(a.filter.filter()?),
        dry_run: a.dry_run,
        forget_suspect: a.forget_suspect,
        prune: {
            let max_unused = super::prune::parse_percent(&a.max_unused)?;
            a.prune.then_some(max_unused)
        },
    };
    execute(g, &request)
}

/// What to forget, typed: snapshot IDs, or a policy over the snapshots
/// `filter` passes.
pub struct Request {
    /// Snapshots by ID prefix (instead of a policy).
    pub ids: Vec<String>,
    /// Retention policy.
    pub policy: Policy,
    /// Grouping for the policy.
    pub group: GroupBy,
    /// Which snapshots the policy looks at.
    pub filter: cairn::repo::SnapshotFilter,
    /// Only say what would be forgotten.
    pub dry_run: bool,
    /// Forget last good captures too (see [`cairn::ops::forget::last_good`]).
    pub forget_suspect: bool,
    /// Prune afterwards, tolerating this share of unused data.
    pub prune: Option<f64>,
}

/// Forget what `r` says and print the plan and the result; `cairn run`
/// calls this too.
pub fn execute(g: &GlobalArgs, r: &Request) -> Result<i32> {
    let (policy, group, filter) = (&r.policy, r.group, &r.filter);
    if r.ids.is_empty() && policy.is_empty() {
        bail!("no policy given: name snapshots to forget, or give at least one --keep-* option");
    }
    if !r.ids.is_empty() && !policy.is_empty() {
        bail!("give either snapshot IDs or a --keep-* policy, not both");
    }
    let mut repo = g.open()?;
    let mut lock = repo.lock_exclusive()?;
    let _interrupts = super::Interrupts::install(lock.cancel_token())?;
    let all = lock.load_snapshots()?;
    let shown = |l: &LastGood| {
        format!(
            "{} holds the last good capture of {} (suspect in snapshot {})",
            l.id.short(),
            lossy(&l.path),
            l.suspect_in.short()
        )
    };
    // Snapshots holding the last good capture of a database suspect in a
    // snapshot that stays: kept unless told otherwise.
    let guard = !r.forget_suspect && any_suspect(&all);
    let mut doomed = Vec::new();
    if !r.ids.is_empty() {
        for spec in &r.ids {
            let (id, s) = lock.select_snapshot(spec, filter)?;
            doomed.push((id, s));
        }
        if guard {
            let ids: HashSet<_> = doomed.iter().map(|(id, _)| *id).collect();
            let kept_good = last_good(lock.load_index()?.lock(), &all, &ids)?;
            if let Some(l) = kept_good.iter().find(|l| ids.contains(&l.id)) {
                bail!(
                    "not forgetting anything: snapshot {}; give --forget-suspect to forget it anyway",
                    shown(l)
                );
            }
        }
    } else {
        let snaps: Vec<_> = all
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .cloned()
            .collect();
        let mut plans = plan(snaps, policy, group);
        let kept_good = if guard {
            let ids: HashSet<_> = plans
                .iter()
                .flat_map(|p| p.decisions.iter())
                .filter(|d| d.reasons.is_empty())
                .map(|d| d.id)
                .collect();
            last_good(lock.load_index()?.lock(), &all, &ids)?
        } else {
            Vec::new()
        };
        keep_last_good(&mut plans, &kept_good);
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
                for l in kept_good
                    .iter()
                    .filter(|l| p.decisions.iter().any(|d| d.id == l.id))
                {
                    println!("  note: snapshot {}", shown(l));
                }
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
                serde_json::json!({
                    "message_type": "plan",
                    "groups": json_groups,
                    "dry_run": r.dry_run,
                    "last_good": kept_good.iter().map(|l| serde_json::json!({
                        "id": l.id.to_hex(),
                        "path": lossy(&l.path),
                        "suspect_in": l.suspect_in.to_hex(),
                    })).collect::<Vec<_>>(),
                })
            );
        }
    }
    let ids: Vec<String> = doomed.iter().map(|(id, _)| id.to_hex()).collect();
    if r.dry_run {
        if g.json {
            super::print_summary(&serde_json::json!({
                "dry_run": true, "removed": [], "would_remove": ids, "prune": null,
            }))?;
        } else if !g.quiet {
            println!(
                "would remove {} (dry run: nothing changed)",
                super::count(doomed.len(), "snapshot")
            );
        }
        return Ok(super::exit::OK);
    }
    let doomed_ids: Vec<_> = doomed.iter().map(|(id, _)| *id).collect();
    let removed = forget(&mut lock, &doomed_ids)?;
    if !g.json && !g.quiet {
        println!("removed {}", super::count(removed, "snapshot"));
    }
    let mut pruned = None;
    if let Some(max_unused) = r.prune {
        let reporter = super::progress::Reporter::new(g, "prune");
        let r = cairn::ops::prune::prune(
            &mut lock,
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
