//! `cairn diff`: what changed between two snapshots.

use std::io::Write;

use anyhow::Result;
use cairn::ops::diff::{ChangeKind, diff};

use super::{GlobalArgs, human_bytes, lossy};

/// Arguments of `cairn diff`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The older snapshot (ID prefix or `latest`).
    older: String,
    /// The newer snapshot (ID prefix or `latest`).
    newer: String,
    /// With --rows: only this database (its path in both snapshots).
    #[arg(requires = "rows")]
    path: Option<String>,
    /// Compare the rows of the SQLite databases captured in both snapshots
    /// (or only PATH's): per table, rows inserted, updated and deleted, by
    /// primary key. Nothing is restored.
    #[arg(long)]
    rows: bool,
    /// With --rows: list the changed rows of this table by key (with
    /// --json, their old and new values).
    #[arg(long, value_name = "TABLE", requires = "rows")]
    table: Option<String>,
    #[command(flatten)]
    pub(super) job: super::JobArgs,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let repo = g.open_with_index()?;
    let none = cairn::repo::SnapshotFilter::default();
    let (ida, sa) = super::select_snapshot(g, &repo, &a.older, &none, None)?;
    let (idb, sb) = super::select_snapshot(g, &repo, &a.newer, &none, None)?;
    if a.rows {
        return rows(g, a, &repo, (&ida, &sa), (&idb, &sb));
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut counts = [0u64; 5];
    let (mut added_bytes, mut removed_bytes) = (0u64, 0u64);
    diff(&repo, &sa.tree, &sb.tree, b"/", &mut |c| {
        counts[c.kind as usize] += 1;
        let old_size = c.old.as_ref().map_or(0, |n| n.size);
        let new_size = c.new.as_ref().map_or(0, |n| n.size);
        match c.kind {
            ChangeKind::Added => added_bytes += new_size,
            ChangeKind::Removed => removed_bytes += old_size,
            _ => {}
        }
        let line = if g.json {
            serde_json::json!({
                "message_type": "change",
                "change": c.kind,
                "path": lossy(&c.path),
                "type": c.new.as_ref().or(c.old.as_ref()).map(|n| n.kind.name()),
                "old_size": c.old.as_ref().map(|n| n.size),
                "new_size": c.new.as_ref().map(|n| n.size),
                "sqlite_pages_changed": c.db_pages.map(|p| p.0),
                "sqlite_pages": c.db_pages.map(|p| p.1),
            })
            .to_string()
        } else {
            let detail = match (c.kind, c.db_pages) {
                (ChangeKind::Modified, Some((changed, total))) => {
                    format!("  (SQLite database: {changed} of {total} pages changed)")
                }
                (ChangeKind::Modified, None) if old_size != new_size => {
                    format!("  ({} -> {})", human_bytes(old_size), human_bytes(new_size))
                }
                (ChangeKind::Added, _) if new_size > 0 => format!("  ({})", human_bytes(new_size)),
                (ChangeKind::TypeChanged, _) => format!(
                    "  ({} -> {})",
                    c.old.as_ref().map_or("?", |n| n.kind.name()),
                    c.new.as_ref().map_or("?", |n| n.kind.name())
                ),
                _ => String::new(),
            };
            format!("{}    {}{detail}", c.kind.marker(), lossy(&c.path))
        };
        writeln!(out, "{line}").map_err(|e| cairn::Error::io("cannot write the listing", e))
    })?;
    if g.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "from": ida.to_hex(),
                "to": idb.to_hex(),
                "added": counts[ChangeKind::Added as usize],
                "added_bytes": added_bytes,
                "removed": counts[ChangeKind::Removed as usize],
                "removed_bytes": removed_bytes,
                "modified": counts[ChangeKind::Modified as usize],
                "metadata_only": counts[ChangeKind::Metadata as usize],
                "type_changed": counts[ChangeKind::TypeChanged as usize],
            })
        )?;
    } else if !g.quiet {
        writeln!(
            out,
            "\n{} -> {}: {} added ({}), {} removed ({}), {} modified, {} metadata only, {} type changes",
            ida.short(),
            idb.short(),
            counts[ChangeKind::Added as usize],
            human_bytes(added_bytes),
            counts[ChangeKind::Removed as usize],
            human_bytes(removed_bytes),
            counts[ChangeKind::Modified as usize],
            counts[ChangeKind::Metadata as usize],
            counts[ChangeKind::TypeChanged as usize],
        )?;
    }
    out.flush()?;
    Ok(super::exit::OK)
}

/// A snapshot's ID and record.
type Snap<'a> = (
    &'a cairn::id::SnapshotId,
    &'a cairn::format::snapshot::Snapshot,
);

/// `cairn diff A B --rows [PATH] [--table T]`.
fn rows(
    g: &GlobalArgs,
    a: &Args,
    repo: &cairn::repo::Repository,
    (ida, sa): Snap<'_>,
    (idb, sb): Snap<'_>,
) -> Result<i32> {
    use cairn::ops::sql::SnapshotDb;
    use cairn::ops::sql::rows::{OLD, Outcome, diff_rows};
    use cairn::ops::walk::{self, Found};

    // The databases to compare: PATH's entries, or every capture both
    // snapshots hold whose pages differ (one whose pages are all the same
    // has the same rows).
    let mut pairs: Vec<(String, cairn::format::tree::Node, cairn::format::tree::Node)> = Vec::new();
    if let Some(p) = &a.path {
        let entry = |tree: &cairn::id::BlobId, id: &cairn::id::SnapshotId| -> Result<_> {
            match walk::find(repo, tree, p.as_bytes())? {
                Found::Entry(n) => Ok(n),
                Found::Dir(..) => anyhow::bail!(
                    "{p} is a directory in snapshot {}, not a database file",
                    id.short()
                ),
            }
        };
        pairs.push((p.clone(), entry(&sa.tree, ida)?, entry(&sb.tree, idb)?));
    } else {
        diff(repo, &sa.tree, &sb.tree, b"/", &mut |c| {
            if c.db_pages.is_some()
                && let (Some(o), Some(n)) = (c.old, c.new)
            {
                pairs.push((lossy(&c.path), o, n));
            }
            Ok(())
        })?;
    }

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut totals = [0u64; 3];
    for (path, old, new) in &pairs {
        let mut db = SnapshotDb::open(repo, new, path)?;
        db.attach(repo, old, path, OLD)?;
        if !g.json {
            writeln!(out, "{path}")?;
        }
        let mut lines: Vec<u8> = Vec::new();
        let tables = diff_rows(
            &db,
            a.table.as_deref(),
            a.table.is_some(),
            &mut |table, r| {
                if g.json {
                    let obj = |cols: &[String], cells: &[cairn::ops::sql::Cell]| {
                        let m: serde_json::Map<String, serde_json::Value> = cols
                            .iter()
                            .zip(cells)
                            .map(|(c, v)| (c.clone(), super::sql::json_value(v)))
                            .collect();
                        serde_json::Value::Object(m)
                    };
                    let line = serde_json::json!({
                        "message_type": "row",
                        "path": path,
                        "table": table,
                        "change": r.kind.name(),
                        "key": r.key.iter().map(super::sql::json_value).collect::<Vec<_>>(),
                        "old": r.old.as_ref().map(|v| obj(&r.columns, v)),
                        "new": r.new.as_ref().map(|v| obj(&r.columns, v)),
                    });
                    lines.extend_from_slice(line.to_string().as_bytes());
                } else {
                    let marker = match r.kind {
                        cairn::ops::sql::rows::RowChangeKind::Inserted => "+",
                        cairn::ops::sql::rows::RowChangeKind::Updated => "M",
                        cairn::ops::sql::rows::RowChangeKind::Deleted => "-",
                    };
                    lines.extend_from_slice(format!("    {marker} ").as_bytes());
                    for (i, k) in r.key.iter().enumerate() {
                        if i > 0 {
                            lines.push(b'|');
                        }
                        super::sql::shell_text(&db, k, &mut lines)?;
                    }
                }
                lines.push(b'\n');
                Ok(())
            },
        )?;
        if let Some(t) = &a.table
            && tables.is_empty()
        {
            anyhow::bail!("{path} has no table {t:?} in either snapshot");
        }
        for t in &tables {
            if let Outcome::Compared {
                inserted,
                updated,
                deleted,
            } = t.outcome
            {
                totals[0] += inserted;
                totals[1] += updated;
                totals[2] += deleted;
            }
            if a.table.is_none() && !t.outcome.differs() {
                continue;
            }
            if g.json {
                let (ins, upd, del, old_rows, new_rows) = match t.outcome {
                    Outcome::Compared {
                        inserted,
                        updated,
                        deleted,
                    } => (Some(inserted), Some(updated), Some(deleted), None, None),
                    Outcome::NoKey { old_rows, new_rows }
                    | Outcome::SchemaChanged { old_rows, new_rows } => {
                        (None, None, None, Some(old_rows), Some(new_rows))
                    }
                    Outcome::Added { rows } => (None, None, None, None, Some(rows)),
                    Outcome::Removed { rows } => (None, None, None, Some(rows), None),
                };
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({
                        "message_type": "table",
                        "path": path,
                        "table": t.table,
                        "status": t.outcome.name(),
                        "key": t.key,
                        "inserted": ins,
                        "updated": upd,
                        "deleted": del,
                        "old_rows": old_rows,
                        "new_rows": new_rows,
                    })
                )?;
            } else {
                let what = match t.outcome {
                    Outcome::Compared {
                        inserted,
                        updated,
                        deleted,
                    } => format!(
                        "{inserted} inserted, {updated} updated, {deleted} deleted (by {})",
                        t.key.join(", ")
                    ),
                    Outcome::NoKey { old_rows, new_rows } => {
                        format!("no primary key, rows not compared ({old_rows} rows -> {new_rows})")
                    }
                    Outcome::SchemaChanged { old_rows, new_rows } => format!(
                        "columns changed, rows not compared ({old_rows} rows -> {new_rows})"
                    ),
                    Outcome::Added { rows } => format!("table added ({rows} rows)"),
                    Outcome::Removed { rows } => format!("table removed ({rows} rows)"),
                };
                writeln!(out, "  {}: {what}", t.table)?;
            }
        }
        out.write_all(&lines)?;
    }
    if g.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "from": ida.to_hex(),
                "to": idb.to_hex(),
                "databases": pairs.len(),
                "inserted": totals[0],
                "updated": totals[1],
                "deleted": totals[2],
            })
        )?;
    } else if !g.quiet {
        writeln!(
            out,
            "\n{} -> {}: {} compared, {} rows inserted, {} updated, {} deleted",
            ida.short(),
            idb.short(),
            super::count(pairs.len(), "changed database"),
            totals[0],
            totals[1],
            totals[2],
        )?;
    }
    out.flush()?;
    Ok(super::exit::OK)
}
