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
    #[command(flatten)]
    pub(super) job: super::JobArgs,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let repo = g.open_with_index()?;
    let none = cairn::repo::SnapshotFilter::default();
    let (ida, sa) = super::select_snapshot(g, &repo, &a.older, &none, None)?;
    let (idb, sb) = super::select_snapshot(g, &repo, &a.newer, &none, None)?;
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
