//! Retention: which snapshots a policy keeps, with restic's semantics.
//!
//! Snapshots are grouped (by host and paths unless told otherwise) and
//! each group is walked from the newest snapshot back. `--keep-last N`
//! keeps the N newest; `--keep-hourly/daily/weekly/monthly/yearly N` keep
//! the newest snapshot of each of the N most recent hours/days/ISO
//! weeks/months/years that have one (buckets count from the newest
//! snapshot, in the snapshot's own local time); `--keep-within D` keeps
//! everything taken within D before the group's newest snapshot;
//! `--keep-tag T` keeps every snapshot tagged T. A snapshot kept by several
//! rules is kept once, and lists every rule that kept it. A count of -1
//! means "no limit".
//!
//! The guard against silent damage adds one rule of its own
//! ([`last_good`]): a snapshot that holds the last good capture of a
//! database that is suspect in a newer snapshot is kept, with the reason
//! `last good`, whatever the policy says (unless the caller forgets
//! suspect captures on purpose).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::format::suspect::of_snapshot;
use crate::format::tree::{EXT_SQLITE_CAPTURE, EXT_SQLITE_SUSPECT};
use crate::id::{BlobId, SnapshotId};
use crate::repo::{ExclusiveLock, Repository, SharedLock, snapshot_name};

/// Remove these snapshots, under an exclusive lock: verified on the
/// storage right before the first deletion (the commit point), and asked
/// again before each one. Returns how many were removed. The data they
/// alone referenced stays until a prune.
pub fn forget(guard: &mut ExclusiveLock<'_>, ids: &[SnapshotId]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    crate::failpoint::hit("forget::before_delete")?;
    guard
        .verify()
        .map_err(|e| e.context("forget stopped, no snapshot was removed"))?;
    for (n, id) in ids.iter().enumerate() {
        guard.check().map_err(|e| {
            e.context(format!(
                "forget stopped after removing {n} of {} snapshots",
                ids.len()
            ))
        })?;
        guard.backend().delete(&snapshot_name(id))?;
    }
    Ok(ids.len() as u64)
}

/// The reason retention gives a snapshot kept by [`last_good`].
pub const LAST_GOOD: &str = "last good";

/// A snapshot kept because it holds the newest good capture of a database
/// that a newer snapshot holds as suspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastGood {
    /// The snapshot kept.
    pub id: SnapshotId,
    /// The database's path in both snapshots.
    pub path: Vec<u8>,
    /// The newer snapshot where it is suspect.
    pub suspect_in: SnapshotId,
}

/// The suspect paths a snapshot lists.
fn suspect_paths(s: &Snapshot) -> Vec<Vec<u8>> {
    of_snapshot(s).into_iter().map(|(p, _)| p).collect()
}

/// True if any of `snaps` lists suspect captures (then [`last_good`] needs
/// the index to look inside older snapshots).
pub fn any_suspect(snaps: &[(SnapshotId, Snapshot)]) -> bool {
    snaps.iter().any(|(_, s)| !suspect_paths(s).is_empty())
}

/// The snapshots retention keeps as [`LAST_GOOD`]: for every snapshot
/// that stays (not in `doomed`) and lists a suspect capture of a path, the
/// newest older snapshot of the same host and paths (what a backup takes
/// as its parent) whose entry at that path is a good capture — a capture
/// not marked suspect. A snapshot kept this way stays too, so what it
/// lists as suspect is followed in turn. `snaps` is every snapshot in the
/// repository, whatever the policy looks at; trees are read through
/// `lock`'s loaded index.
pub fn last_good(
    lock: &SharedLock<'_>,
    snaps: &[(SnapshotId, Snapshot)],
    doomed: &HashSet<SnapshotId>,
) -> Result<Vec<LastGood>> {
    let history = History::new(snaps);
    let mut good = HashMap::new();
    let mut out: Vec<LastGood> = Vec::new();
    // Newest first, so that a snapshot kept for a newer one's sake is
    // itself followed before anything older is decided.
    let mut stays: Vec<bool> = history
        .order
        .iter()
        .map(|(id, _)| !doomed.contains(id))
        .collect();
    for i in (0..history.order.len()).rev() {
        if !stays[i] {
            continue;
        }
        for path in &history.suspects[i] {
            lock.check()?;
            if let Some(j) = history.newest_good_before(lock, i, path, &mut good)? {
                stays[j] = true;
                let cid = history.order[j].0;
                if !out.iter().any(|l| l.id == cid && l.path == *path) {
                    out.push(LastGood {
                        id: cid,
                        path: path.clone(),
                        suspect_in: history.order[i].0,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Where the last good capture of `path`, suspect in the snapshot
/// `suspect`, is: the newest older snapshot of the same host and paths
/// whose entry at `path` is a capture not marked suspect ([`last_good`]'s
/// rule), if any. `snaps` is every snapshot; trees are read through
/// `repo`'s loaded index.
pub fn last_good_of(
    repo: &Repository,
    snaps: &[(SnapshotId, Snapshot)],
    suspect: &SnapshotId,
    path: &[u8],
) -> Result<Option<SnapshotId>> {
    let history = History::new(snaps);
    let Some(i) = history.order.iter().position(|(id, _)| id == suspect) else {
        return Ok(None);
    };
    Ok(history
        .newest_good_before(repo, i, path, &mut HashMap::new())?
        .map(|j| history.order[j].0))
}

/// Snapshots oldest first (by time, ties by ID), with the suspect paths
/// each lists.
struct History<'s> {
    order: Vec<&'s (SnapshotId, Snapshot)>,
    suspects: Vec<Vec<Vec<u8>>>,
}

impl<'s> History<'s> {
    fn new(snaps: &'s [(SnapshotId, Snapshot)]) -> Self {
        let mut order: Vec<&(SnapshotId, Snapshot)> = snaps.iter().collect();
        order.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        let suspects = order.iter().map(|(_, s)| suspect_paths(s)).collect();
        History { order, suspects }
    }

    /// The index of the newest snapshot before the `i`th with its host
    /// and paths, not listing `path` as suspect, whose tree entry at
    /// `path` is a good capture. `good` caches answers by root tree.
    fn newest_good_before(
        &self,
        repo: &Repository,
        i: usize,
        path: &[u8],
        good: &mut HashMap<(BlobId, Vec<u8>), bool>,
    ) -> Result<Option<usize>> {
        let s = &self.order[i].1;
        for j in (0..i).rev() {
            let (cid, c) = self.order[j];
            if c.hostname != s.hostname
                || c.paths != s.paths
                || self.suspects[j].iter().any(|p| p == path)
            {
                continue;
            }
            let key = (c.tree, path.to_vec());
            let is_good = match good.get(&key) {
                Some(g) => *g,
                None => {
                    let g = match super::walk::find(repo, &c.tree, path) {
                        Ok(super::walk::Found::Entry(n)) => {
                            n.extension(EXT_SQLITE_CAPTURE).is_some()
                                && n.extension(EXT_SQLITE_SUSPECT).is_none()
                        }
                        Ok(super::walk::Found::Dir(..)) => false,
                        Err(e) if e.kind() == ErrorKind::NotFound => false,
                        Err(e) => {
                            return Err(e.context(format!(
                                "cannot tell whether snapshot {} holds the last good \
                                 capture of {}",
                                cid.short(),
                                String::from_utf8_lossy(path)
                            )));
                        }
                    };
                    good.insert(key, g);
                    g
                }
            };
            if is_good {
                return Ok(Some(j));
            }
        }
        Ok(None)
    }
}

/// Keep the snapshots `keep` names in `plans`, with the reason
/// [`LAST_GOOD`].
pub fn keep_last_good(plans: &mut [GroupPlan], keep: &[LastGood]) {
    for p in plans {
        for d in &mut p.decisions {
            if keep.iter().any(|l| l.id == d.id) && !d.reasons.iter().any(|r| r == LAST_GOOD) {
                d.reasons.push(LAST_GOOD.to_string());
            }
        }
    }
}

/// A retention policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Keep the N newest.
    pub last: Option<i64>,
    /// Keep the newest of each of the N most recent hours.
    pub hourly: Option<i64>,
    /// ... days.
    pub daily: Option<i64>,
    /// ... ISO weeks.
    pub weekly: Option<i64>,
    /// ... months.
    pub monthly: Option<i64>,
    /// ... years.
    pub yearly: Option<i64>,
    /// Keep everything within this span of the newest snapshot.
    pub within: Option<jiff::Span>,
    /// Keep everything with any of these tags.
    pub tags: Vec<String>,
}

impl Policy {
    /// True if no rule is set (forgetting by policy would remove everything).
    pub fn is_empty(&self) -> bool {
        self.last.is_none()
            && self.hourly.is_none()
            && self.daily.is_none()
            && self.weekly.is_none()
            && self.monthly.is_none()
            && self.yearly.is_none()
            && self.within.is_none()
            && self.tags.is_empty()
    }
}

/// How snapshots are grouped before the policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    /// Separate hosts.
    pub host: bool,
    /// Separate sets of paths.
    pub paths: bool,
    /// Separate sets of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl GroupBy {
    /// Parse `host,paths,tags` (any subset, or empty for one group).
    pub fn parse(s: &str) -> Result<GroupBy> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" | "path" => g.paths = true,
                "tags" | "tag" => g.tags = true,
                other => {
                    return Err(Error::invalid(format!(
                        "--group-by {other:?}: use host, paths and tags"
                    )));
                }
            }
        }
        Ok(g)
    }
}

/// The group key of a snapshot, for display.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    /// Host, if grouped by host.
    pub host: Option<String>,
    /// Paths, if grouped by paths.
    pub paths: Option<Vec<Vec<u8>>>,
    /// Tags, if grouped by tags.
    pub tags: Option<Vec<String>>,
}

/// The verdict for one snapshot.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The snapshot.
    pub id: SnapshotId,
    /// Its record.
    pub snapshot: Snapshot,
    /// The rules that keep it (empty: it is forgotten).
    pub reasons: Vec<String>,
}

/// One group's verdicts, newest first.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    /// What the group shares.
    pub key: GroupKey,
    /// Every snapshot of the group, newest first.
    pub decisions: Vec<Decision>,
}

fn local(s: &Snapshot) -> jiff::civil::DateTime {
    let ts = jiff::Timestamp::from_nanosecond(i128::from(s.time_ns)).unwrap_or_default();
    let off = jiff::tz::Offset::from_seconds(s.utc_offset_s).unwrap_or(jiff::tz::Offset::UTC);
    off.to_datetime(ts)
}

/// Apply `policy` to `snaps`, grouped by `group`.
pub fn plan(snaps: Vec<(SnapshotId, Snapshot)>, policy: &Policy, group: GroupBy) -> Vec<GroupPlan> {
    let mut groups: BTreeMap<GroupKey, Vec<(SnapshotId, Snapshot)>> = BTreeMap::new();
    for (id, s) in snaps {
        let key = GroupKey {
            host: group.host.then(|| s.hostname.clone()),
            paths: group.paths.then(|| s.paths.clone()),
            tags: group.tags.then(|| s.tags.clone()),
        };
        groups.entry(key).or_default().push((id, s));
    }
    groups
        .into_iter()
        .map(|(key, mut list)| {
            list.sort_by(|a, b| b.1.time_ns.cmp(&a.1.time_ns).then(b.0.cmp(&a.0)));
            GroupPlan {
                key,
                decisions: apply(list, policy),
            }
        })
        .collect()
}

/// The policy on one group, newest first.
fn apply(list: Vec<(SnapshotId, Snapshot)>, policy: &Policy) -> Vec<Decision> {
    type Bucket = fn(jiff::civil::DateTime) -> (i32, i32, i32, i32);
    let rules: [(&str, Option<i64>, Bucket); 5] = [
        ("hourly", policy.hourly, |d| {
            (
                i32::from(d.year()),
                i32::from(d.month()),
                i32::from(d.day()),
                i32::from(d.hour()),
            )
        }),
        ("daily", policy.daily, |d| {
            (
                i32::from(d.year()),
                i32::from(d.month()),
                i32::from(d.day()),
                0,
            )
        }),
        ("weekly", policy.weekly, |d| {
            let w = d.date().iso_week_date();
            (i32::from(w.year()), i32::from(w.week()), 0, 0)
        }),
        ("monthly", policy.monthly, |d| {
            (i32::from(d.year()), i32::from(d.month()), 0, 0)
        }),
        ("yearly", policy.yearly, |d| (i32::from(d.year()), 0, 0, 0)),
    ];
    let newest = list.first().map(|(_, s)| s.time_ns);
    let within_from = match (newest, policy.within) {
        (Some(t), Some(span)) => jiff::Timestamp::from_nanosecond(i128::from(t))
            .ok()
            .and_then(|ts| ts.to_zoned(jiff::tz::TimeZone::UTC).checked_sub(span).ok())
            .map(|z| z.timestamp().as_nanosecond() as i64),
        _ => None,
    };
    let mut counts = [0i64; 5];
    let mut last_bucket: [Option<(i32, i32, i32, i32)>; 5] = [None; 5];
    let mut kept_last = 0i64;
    list.into_iter()
        .map(|(id, s)| {
            let mut reasons = Vec::new();
            if let Some(n) = policy.last
                && (n < 0 || kept_last < n)
            {
                kept_last += 1;
                reasons.push("last".to_string());
            }
            let d = local(&s);
            for (i, (name, limit, bucket)) in rules.iter().enumerate() {
                let Some(n) = limit else { continue };
                let b = bucket(d);
                if last_bucket[i] != Some(b) && (*n < 0 || counts[i] < *n) {
                    last_bucket[i] = Some(b);
                    counts[i] += 1;
                    reasons.push((*name).to_string());
                }
            }
            if let Some(from) = within_from
                && s.time_ns >= from
            {
                reasons.push("within".to_string());
            }
            for t in &policy.tags {
                if s.tags.contains(t) {
                    reasons.push(format!("tag {t}"));
                }
            }
            Decision {
                id,
                snapshot: s,
                reasons,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobId;

    fn snap(i: u8, when: &str, tags: &[&str]) -> (SnapshotId, Snapshot) {
        let ts: jiff::Timestamp = when.parse().unwrap();
        (
            SnapshotId([i; 32]),
            Snapshot {
                time_ns: ts.as_nanosecond() as i64,
                utc_offset_s: 0,
                tree: BlobId([0; 32]),
                parent: None,
                hostname: "h".into(),
                username: "u".into(),
                paths: vec![b"/data".to_vec()],
                tags: tags.iter().map(|t| t.to_string()).collect(),
                program_version: String::new(),
                summary: Default::default(),
                extensions: vec![],
            },
        )
    }

    /// A calendar: nightly at 03:00 from 2025-12-20 to 2026-11-24, plus a
    /// few extra snapshots within some days, and tags on some.
    fn calendar() -> Vec<(SnapshotId, Snapshot)> {
        let mut out = Vec::new();
        let mut d: jiff::civil::Date = "2025-12-20".parse().unwrap();
        let end: jiff::civil::Date = "2026-11-24".parse().unwrap();
        let mut i = 0u8;
        while d <= end {
            let when = format!("{d}T03:00:00Z");
            let tags: &[&str] = if d.day() == 1 { &["monthly-run"] } else { &[] };
            out.push(snap(i, &when, tags));
            i = i.wrapping_add(1);
            d = d.tomorrow().unwrap();
        }
        // Two extra snapshots on the last day, at 09:00 and 09:30.
        out.push(snap(240, "2026-11-24T09:00:00Z", &["manual"]));
        out.push(snap(241, "2026-11-24T09:30:00Z", &[]));
        out
    }

    fn kept(policy: &Policy) -> Vec<(String, Vec<String>)> {
        let plans = plan(calendar(), policy, GroupBy::default());
        assert_eq!(plans.len(), 1);
        plans[0]
            .decisions
            .iter()
            .filter(|d| !d.reasons.is_empty())
            .map(|d| {
                let t = jiff::Timestamp::from_nanosecond(i128::from(d.snapshot.time_ns)).unwrap();
                (t.strftime("%Y-%m-%d %H:%M").to_string(), d.reasons.clone())
            })
            .collect()
    }

    fn times(policy: &Policy) -> Vec<String> {
        kept(policy).into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn keep_last() {
        let p = Policy {
            last: Some(3),
            ..Default::default()
        };
        assert_eq!(
            times(&p),
            ["2026-11-24 09:30", "2026-11-24 09:00", "2026-11-24 03:00"]
        );
        let all = Policy {
            last: Some(-1),
            ..Default::default()
        };
        assert_eq!(times(&all).len(), calendar().len());
    }

    #[test]
    fn keep_hourly_takes_the_newest_of_each_hour() {
        let p = Policy {
            hourly: Some(3),
            ..Default::default()
        };
        // 09:30 is the newest of hour 09; 09:00 shares its hour.
        assert_eq!(
            times(&p),
            ["2026-11-24 09:30", "2026-11-24 03:00", "2026-11-23 03:00"]
        );
    }

    #[test]
    fn keep_daily() {
        let p = Policy {
            daily: Some(4),
            ..Default::default()
        };
        assert_eq!(
            times(&p),
            [
                "2026-11-24 09:30",
                "2026-11-23 03:00",
                "2026-11-22 03:00",
                "2026-11-21 03:00"
            ]
        );
    }

    #[test]
    fn keep_weekly_uses_iso_weeks() {
        let p = Policy {
            weekly: Some(3),
            ..Default::default()
        };
        // 2026-11-24 is a Tuesday (week 48); weeks end on Sundays.
        assert_eq!(
            times(&p),
            ["2026-11-24 09:30", "2026-11-22 03:00", "2026-11-15 03:00"]
        );
    }

    #[test]
    fn keep_monthly_and_yearly() {
        let p = Policy {
            monthly: Some(3),
            ..Default::default()
        };
        assert_eq!(
            times(&p),
            ["2026-11-24 09:30", "2026-10-31 03:00", "2026-09-30 03:00"]
        );
        let p = Policy {
            yearly: Some(5),
            ..Default::default()
        };
        assert_eq!(times(&p), ["2026-11-24 09:30", "2025-12-31 03:00"]);
    }

    #[test]
    fn keep_within_counts_from_the_newest_snapshot() {
        let p = Policy {
            within: Some(jiff::Span::new().days(2)),
            ..Default::default()
        };
        assert_eq!(
            times(&p),
            [
                "2026-11-24 09:30",
                "2026-11-24 09:00",
                "2026-11-24 03:00",
                "2026-11-23 03:00"
            ]
        );
    }

    #[test]
    fn keep_tag() {
        let p = Policy {
            tags: vec!["manual".into()],
            ..Default::default()
        };
        assert_eq!(times(&p), ["2026-11-24 09:00"]);
        let p = Policy {
            tags: vec!["monthly-run".into()],
            ..Default::default()
        };
        assert_eq!(
            times(&p).len(),
            11,
            "the first of every month from 2026-01 to 2026-11"
        );
    }

    #[test]
    fn combined_rules_keep_each_snapshot_once_with_all_reasons() {
        let p = Policy {
            last: Some(2),
            daily: Some(3),
            weekly: Some(2),
            monthly: Some(2),
            tags: vec!["manual".into()],
            ..Default::default()
        };
        let k = kept(&p);
        let expect: Vec<(&str, Vec<&str>)> = vec![
            (
                "2026-11-24 09:30",
                vec!["last", "daily", "weekly", "monthly"],
            ),
            ("2026-11-24 09:00", vec!["last", "tag manual"]),
            ("2026-11-23 03:00", vec!["daily"]),
            ("2026-11-22 03:00", vec!["daily", "weekly"]),
            ("2026-10-31 03:00", vec!["monthly"]),
        ];
        assert_eq!(k.len(), expect.len(), "{k:?}");
        for ((t, r), (et, er)) in k.iter().zip(expect) {
            assert_eq!(t, et);
            assert_eq!(
                r,
                &er.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{t}"
            );
        }
    }

    #[test]
    fn groups_are_separate_and_an_empty_policy_is_detected() {
        let mut snaps = calendar();
        let (id, mut s) = snap(250, "2026-01-01T00:00:00Z", &[]);
        s.hostname = "other".into();
        snaps.push((id, s));
        let plans = plan(
            snaps,
            &Policy {
                last: Some(1),
                ..Default::default()
            },
            GroupBy::default(),
        );
        assert_eq!(plans.len(), 2);
        for p in &plans {
            assert_eq!(
                p.decisions.iter().filter(|d| !d.reasons.is_empty()).count(),
                1
            );
        }
        assert!(Policy::default().is_empty());
        assert!(GroupBy::parse("host,bogus").is_err());
        assert_eq!(
            GroupBy::parse("").unwrap(),
            GroupBy {
                host: false,
                paths: false,
                tags: false
            }
        );
    }
}
