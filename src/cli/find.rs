//! `cairn find`: entries matching a glob across snapshots, and one path's
//! history (`--history PATH`).

use std::io::Write;

use anyhow::{Result, anyhow, bail};
use cairn::format::snapshot::Snapshot;
use cairn::id::SnapshotId;
use cairn::ops::find::{FindOptions, Hit, find, history};

use super::{GlobalArgs, count, format_time, lossy};

/// Arguments of `cairn find`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Glob patterns matched against each entry's name (`*.env`,
    /// `config.json`), or with --path against its whole absolute path
    /// (`/srv/*/secret.env`, `/opt/**/*.log`); `*` does not cross `/`,
    /// `**` does. An entry matching any of them is listed.
    #[arg(value_name = "PATTERN", required_unless_present = "history")]
    patterns: Vec<String>,
    /// Match the patterns against whole paths instead of names.
    #[arg(long = "path")]
    whole_path: bool,
    /// Instead of searching: one line per snapshot where PATH appeared,
    /// changed (type, content, size, mtime, mode or owner) or disappeared,
    /// among the snapshots that back it up.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["patterns", "whole_path"])]
    history: Option<String>,
    /// Search only this snapshot (ID prefix or `latest`; repeatable).
    #[arg(long = "snapshot", short = 's', value_name = "ID")]
    snapshots: Vec<String>,
    /// Only snapshots of this host.
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Only snapshots with this tag (repeat to require several).
    #[arg(long, value_name = "TAG")]
    tag: Vec<String>,
    /// Only snapshots taken at or before TIME ("2026-11-20 03:00",
    /// "2026-11-20" (its end), "2 days ago", RFC 3339).
    #[arg(long, value_name = "TIME")]
    newest: Option<String>,
    /// Only snapshots taken at or after TIME (a bare date means its start).
    #[arg(long, value_name = "TIME")]
    oldest: Option<String>,
    #[command(flatten)]
    pub(super) job: super::JobArgs,
}

/// `--oldest`: a bare date means its first moment (where `parse_time`,
/// made for "at or before", takes its last).
fn parse_oldest(t: &str) -> Result<i64> {
    let s = t.trim();
    let bare_date = s.len() == 10 && s.as_bytes().get(4) == Some(&b'-');
    let text = if bare_date {
        format!("{s} 00:00")
    } else {
        s.to_string()
    };
    cairn::repo::parse_time(&text, jiff::Zoned::now())
        .map_err(|_| anyhow!("--oldest: cannot read the time {t:?}: use e.g. \"2026-11-20 03:00\", \"2026-11-20\" or \"2 days ago\""))
}

/// The snapshots to search, oldest first.
fn selected(
    g: &GlobalArgs,
    a: &Args,
    repo: &cairn::repo::Repository,
) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let newest = a
        .newest
        .as_deref()
        .map(|t| {
            cairn::repo::parse_time(t, jiff::Zoned::now()).map_err(|e| anyhow!("--newest: {e}"))
        })
        .transpose()?;
    let oldest = a.oldest.as_deref().map(parse_oldest).transpose()?;
    let mut filter = g.scoped(cairn::repo::SnapshotFilter {
        host: a.host.clone(),
        tags: a.tag.clone(),
        as_of_ns: newest,
        ..Default::default()
    });
    if let Some(p) = &a.history {
        // Only snapshots that back the path up: a snapshot of other paths
        // does not mean it was deleted.
        filter.holding = Some(p.as_bytes().to_vec());
    }
    let after = |s: &Snapshot| oldest.is_none_or(|t| s.time_ns >= t);
    let out: Vec<(SnapshotId, Snapshot)> = if a.snapshots.is_empty() {
        repo.load_snapshots()?
            .into_iter()
            .filter(|(_, s)| filter.matches(s) && after(s))
            .collect()
    } else {
        let mut v = Vec::new();
        for spec in &a.snapshots {
            let (id, s) = repo.select_snapshot(spec, &filter)?;
            if !after(&s) {
                bail!(
                    "snapshot {} was taken before --oldest {:?}",
                    id.short(),
                    a.oldest.as_deref().unwrap_or_default()
                );
            }
            if !v.iter().any(|(x, _)| *x == id) {
                v.push((id, s));
            }
        }
        v.sort_by(|x: &(SnapshotId, Snapshot), y| {
            x.1.time_ns.cmp(&y.1.time_ns).then(x.0.cmp(&y.0))
        });
        v
    };
    Ok(out)
}

/// A node time, as `ls -l` and `--json` print it.
fn mtime_text(h: &Hit) -> String {
    format_time(h.mtime.sec.saturating_mul(1_000_000_000), 0)
}

fn mtime_json(h: &Hit) -> String {
    format!("{}.{:09}", h.mtime.sec, h.mtime.nsec)
}

/// One match as JSON: the snapshot's full ID and the entry's path, size,
/// mtime and type (docs/JSON.md, `find:match`).
fn hit_json(id: &SnapshotId, h: &Hit) -> serde_json::Value {
    let mut v = serde_json::json!({
        "message_type": "match",
        "snapshot": id.to_hex(),
        "path": lossy(&h.path),
        "size": h.size,
        "mtime": mtime_json(h),
        "type": h.kind,
    });
    if std::str::from_utf8(&h.path).is_err() {
        v["path_hex"] = serde_json::Value::String(hex::encode(&h.path));
    }
    v
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let repo = g.open_with_index()?;
    let snaps = selected(g, a, &repo)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let io = |e: std::io::Error| cairn::Error::io("cannot write the listing", e);
    if let Some(path) = &a.history {
        let stats = history(&repo, &snaps, path.as_bytes(), &mut |id, s, e| {
            if g.json {
                let mut v = serde_json::json!({
                    "message_type": "change",
                    "snapshot": id.to_hex(),
                    "snapshot_time": super::format_time_rfc3339(s.time_ns, s.utc_offset_s),
                    "change": e.change.name(),
                    "what": e.what,
                    "path": path,
                    "type": null,
                    "size": null,
                    "mtime": null,
                });
                if let Some(h) = &e.entry {
                    v["type"] = h.kind.into();
                    v["size"] = h.size.into();
                    v["mtime"] = mtime_json(h).into();
                }
                return writeln!(out, "{v}").map_err(io);
            }
            let mut line = format!(
                "{}  {}  {:<8}",
                id.short(),
                format_time(s.time_ns, s.utc_offset_s),
                e.change.name()
            );
            if let Some(h) = &e.entry {
                line.push_str(&format!(
                    "  {:<7} {:>12}  {}",
                    h.kind,
                    h.size,
                    mtime_text(h)
                ));
            }
            if !e.what.is_empty() {
                line.push_str(&format!("  ({})", e.what.join(", ")));
            }
            writeln!(out, "{}", line.trim_end()).map_err(io)
        })?;
        if g.json {
            writeln!(
                out,
                "{}",
                serde_json::json!({
                    "message_type": "summary",
                    "path": path,
                    "snapshots": stats.snapshots,
                    "present": stats.present,
                    "changes": stats.changes,
                    "trees_read": stats.trees_read,
                })
            )?;
        } else if !g.quiet {
            writeln!(
                out,
                "{path}: {} in {} (there in {})",
                count(stats.changes, "change"),
                count(stats.snapshots, "snapshot"),
                stats.present
            )?;
        }
        out.flush()?;
        return Ok(super::exit::OK);
    }
    let opts = FindOptions {
        patterns: a.patterns.clone(),
        whole_path: a.whole_path,
    };
    let stats = find(
        &repo,
        &snaps,
        &opts,
        &cairn::ops::NoProgress,
        &mut |id, s, hits| {
            for h in hits {
                let line = if g.json {
                    hit_json(id, h).to_string()
                } else {
                    format!(
                        "{}  {}  {:<7} {:>12}  {}  {}",
                        id.short(),
                        format_time(s.time_ns, s.utc_offset_s),
                        h.kind,
                        h.size,
                        mtime_text(h),
                        lossy(&h.path)
                    )
                };
                writeln!(out, "{line}").map_err(io)?;
            }
            Ok(())
        },
    )?;
    if g.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "snapshots": stats.snapshots,
                "snapshots_matched": stats.snapshots_matched,
                "matches": stats.matches,
                "trees_read": stats.trees_read,
            })
        )?;
    } else if !g.quiet {
        writeln!(
            out,
            "{} in {} of {}",
            count(stats.matches, "match"),
            stats.snapshots_matched,
            count(stats.snapshots, "snapshot")
        )?;
    }
    out.flush()?;
    Ok(super::exit::OK)
}
