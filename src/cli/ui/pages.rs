//! The pages of `cairn ui`, rendered on the server as plain HTML (no
//! script; one stylesheet, [`STYLE`]). Everything that came from the
//! repository or the request (file names, tags, host names, paths, error
//! messages) goes through [`esc`] on its way into a page, and through
//! [`percent_encode`] on its way into a URL.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use cairn::format::snapshot::Snapshot;
use cairn::format::tree::{Node, NodeKind};
use cairn::id::SnapshotId;
use cairn::ops::diff::ChangeKind;
use cairn::ops::walk::{self, Found};

use super::super::{format_time, human_bytes, human_duration};
use super::{Failure, Ui};

/// The stylesheet, served at `/style.css`.
pub const STYLE: &str = include_str!("style.css");

/// The icon, served at `/favicon.svg`: a cairn of three stones.
pub const ICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><ellipse cx="16" cy="26" rx="12" ry="5" fill="#6b7280"/><ellipse cx="16" cy="17" rx="9" ry="4.5" fill="#9ca3af"/><ellipse cx="16" cy="9" rx="6" ry="3.5" fill="#4b5563"/></svg>"##;

/// The most changes a diff page lists.
const MAX_DIFF_ROWS: usize = 5000;

/// `s` with the characters that mean something in HTML (text or a quoted
/// attribute) replaced by references.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Bytes (a file name, which may be anything but `/` and NUL) shown as
/// text: invalid UTF-8 as U+FFFD, escaped.
fn esc_bytes(b: &[u8]) -> String {
    esc(&String::from_utf8_lossy(b))
}

/// Percent-encode every byte but the unreserved ones (and `/` when
/// `keep_slash`): any name, of any bytes, fits in a URL path.
pub fn percent_encode(b: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && c == b'/')
        {
            out.push(c as char);
        } else {
            let _ = write!(out, "%{c:02X}");
        }
    }
    out
}

/// Undo [`percent_encode`]; `None` for a malformed escape.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// A whole page around `body`.
fn layout(ui: &Ui, title: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · cairn ui</title>
<link rel="stylesheet" href="/style.css">
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
</head>
<body>
<header><a class="brand" href="/">cairn</a> <span class="repo">{repo}</span>
<nav><a href="/">Timeline</a> <a href="/jobs">Jobs</a> <a href="/metrics">Metrics</a></nav></header>
<main>
{body}
</main>
</body>
</html>
"#,
        title = esc(title),
        repo = esc(ui.location()),
    )
}

/// The page for a request that failed.
pub fn failure(f: &Failure) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{status} · cairn ui</title><link rel="stylesheet" href="/style.css"><link rel="icon" href="/favicon.svg" type="image/svg+xml"></head>
<body><header><a class="brand" href="/">cairn</a></header>
<main><h1>{status}</h1><p class="error">{msg}</p></main></body></html>
"#,
        status = esc(&f.status.to_string()),
        msg = esc(&f.message),
    )
}

fn time(s: &Snapshot) -> String {
    format_time(s.time_ns, s.utc_offset_s)
}

fn unix_time(secs: Option<i64>) -> String {
    match secs {
        Some(t) => format_time(t.saturating_mul(1_000_000_000), local_offset()),
        None => "never".into(),
    }
}

fn local_offset() -> i32 {
    jiff::Zoned::now().offset().seconds()
}

/// `job:NAME` tags name the job; `suspect` marks a snapshot that needs a
/// look.
fn job_of(s: &Snapshot) -> Option<&str> {
    s.tags.iter().find_map(|t| t.strip_prefix("job:"))
}

fn is_suspect(s: &Snapshot) -> bool {
    s.tags.iter().any(|t| t == "suspect")
}

fn tags_html(s: &Snapshot) -> String {
    s.tags
        .iter()
        .map(|t| {
            let class = if t == "suspect" { "tag suspect" } else { "tag" };
            format!(r#"<span class="{class}">{}</span>"#, esc(t))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `/`: the snapshots per host and job, newest first, with the chart.
pub fn timeline(ui: &Ui) -> Result<String, Failure> {
    let list = ui.snapshots()?;
    let snaps = &list.snaps;
    let mut body = String::new();
    body.push_str("<h1>Timeline</h1>\n");
    let hosts: std::collections::BTreeSet<&str> =
        snaps.iter().map(|(_, s)| s.hostname.as_str()).collect();
    let suspects = snaps.iter().filter(|(_, s)| is_suspect(s)).count();
    let _ = writeln!(
        body,
        r#"<p class="summary"><span id="snapshot-count">{}</span> · {} · {} logical{}</p>"#,
        super::super::count(snaps.len(), "snapshot"),
        super::super::count(hosts.len(), "host"),
        human_bytes(snaps.last().map_or(0, |(_, s)| s.summary.total_bytes)),
        if suspects > 0 {
            format!(
                r#" · <span class="suspect">{}</span>"#,
                super::super::count(suspects, "suspect snapshot")
            )
        } else {
            String::new()
        }
    );
    for (id, why) in &list.damaged {
        let _ = writeln!(
            body,
            r#"<p class="error">snapshot {} cannot be read: {}</p>"#,
            esc(&id.short()),
            esc(why)
        );
    }
    if snaps.is_empty() {
        body.push_str("<p>No snapshots yet.</p>\n");
        return Ok(layout(ui, "Timeline", &body));
    }
    body.push_str("<h2>Size over time</h2>\n");
    body.push_str(&super::chart::size_chart(snaps));
    // Diff: any two snapshots, by a plain form (no script).
    body.push_str(
        r#"<form class="diff" method="get" action="/diff"><label>Compare <select name="from">"#,
    );
    let options = |selected: usize| {
        let mut o = String::new();
        for (i, (id, s)) in snaps.iter().enumerate().rev() {
            let _ = write!(
                o,
                r#"<option value="{}"{}>{} {} {}</option>"#,
                esc(&id.to_hex()),
                if i == selected { " selected" } else { "" },
                esc(&id.short()),
                esc(&time(s)),
                esc(&s.hostname)
            );
        }
        o
    };
    let n = snaps.len();
    body.push_str(&options(n.saturating_sub(2)));
    body.push_str(r#"</select></label> <label>with <select name="to">"#);
    body.push_str(&options(n - 1));
    body.push_str("</select></label> <button type=\"submit\">Show changes</button></form>\n");
    // Groups: host, then job; newest first within each.
    let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, (_, s)) in snaps.iter().enumerate() {
        groups
            .entry((s.hostname.as_str(), job_of(s).unwrap_or("")))
            .or_default()
            .push(i);
    }
    for ((host, job), idx) in &groups {
        let _ = writeln!(
            body,
            r#"<section class="group"><h2>{}{}</h2>"#,
            esc(host),
            if job.is_empty() {
                String::new()
            } else {
                format!(r#" <span class="job">job {}</span>"#, esc(job))
            }
        );
        body.push_str(
            r#"<table class="snapshots"><thead><tr><th>Time</th><th>ID</th><th class="num">Size</th><th class="num">Files</th><th class="num">Added</th><th>Tags</th><th>Paths</th><th></th></tr></thead><tbody>"#,
        );
        for (k, &i) in idx.iter().enumerate().rev() {
            let (id, s) = &snaps[i];
            let prev = k.checked_sub(1).map(|p| &snaps[idx[p]].0);
            let paths: Vec<String> = s.paths.iter().map(|p| esc_bytes(p)).collect();
            let _ = writeln!(
                body,
                r#"<tr class="snapshot{cls}"><td>{t}</td><td><a class="id" href="/snapshot/{hex}/">{short}</a></td><td class="num">{size}</td><td class="num">{files}</td><td class="num">{added}</td><td>{tags}{flag}</td><td class="paths">{paths}</td><td>{diff}</td></tr>"#,
                cls = if is_suspect(s) { " suspect" } else { "" },
                t = esc(&time(s)),
                hex = esc(&id.to_hex()),
                short = esc(&id.short()),
                size = human_bytes(s.summary.total_bytes),
                files = s.summary.files,
                added = human_bytes(s.summary.bytes_added),
                tags = tags_html(s),
                flag = if is_suspect(s) {
                    r#" <strong class="flag" title="tagged suspect">⚠ suspect</strong>"#
                } else {
                    ""
                },
                paths = paths.join("<br>"),
                diff = match prev {
                    Some(p) => format!(
                        r#"<a href="/diff?from={}&amp;to={}">changes</a>"#,
                        esc(&p.to_hex()),
                        esc(&id.to_hex())
                    ),
                    None => String::new(),
                },
            );
        }
        body.push_str("</tbody></table></section>\n");
    }
    Ok(layout(ui, "Timeline", &body))
}

/// Links to each directory above `path` in the snapshot `id`.
fn breadcrumbs(id: &SnapshotId, comps: &[&[u8]]) -> String {
    let hex = id.to_hex();
    let mut out = format!(
        r#"<nav class="crumbs"><a href="/snapshot/{}/">{}</a>:"#,
        esc(&hex),
        esc(&id.short())
    );
    let mut url = format!("/snapshot/{hex}/");
    for c in comps {
        url.push_str(&percent_encode(c, false));
        url.push('/');
        let _ = write!(out, r#" / <a href="{}">{}</a>"#, esc(&url), esc_bytes(c));
    }
    out.push_str(" /</nav>\n");
    out
}

fn kind_name(n: &Node) -> &'static str {
    n.kind.name()
}

fn mtime(n: &Node) -> String {
    format_time(
        n.mtime
            .sec
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(n.mtime.nsec)),
        local_offset(),
    )
}

/// Split `ID/PATH…` (still percent-encoded) into the snapshot spec and the
/// path's bytes. The path is looked up name by name in the snapshot's
/// trees, never on a filesystem; `..` is refused.
pub fn split_target(rest: &str) -> Result<(String, Vec<u8>), Failure> {
    let (id, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = percent_decode(path)
        .ok_or_else(|| Failure::bad_request("malformed %-escape in the path"))?;
    let mut p = b"/".to_vec();
    p.extend_from_slice(&path);
    walk::components(&p).map_err(|e| Failure::bad_request(e.to_string()))?;
    Ok((id.to_string(), p))
}

/// `/snapshot/ID/PATH`: a directory's entries, or one entry's details.
pub fn browse(ui: &Ui, rest: &str) -> Result<String, Failure> {
    let (spec, path) = split_target(rest)?;
    let (id, snap) = ui.snapshot(&spec)?;
    let comps: Vec<&[u8]> =
        walk::components(&path).map_err(|e| Failure::bad_request(e.to_string()))?;
    let repo = ui.indexed()?;
    let found = walk::find(&repo, &snap.tree, &path)?;
    let hex = id.to_hex();
    let here = {
        let mut u = String::new();
        for c in &comps {
            u.push_str(&percent_encode(c, false));
            u.push('/');
        }
        u
    };
    let mut body = String::new();
    let _ = writeln!(
        body,
        r#"<h1>Snapshot {} <small>{} · {}</small></h1>"#,
        esc(&id.short()),
        esc(&time(&snap)),
        esc(&snap.hostname)
    );
    let _ = writeln!(body, r#"<p class="tags">{}</p>"#, tags_html(&snap));
    body.push_str(&breadcrumbs(&id, &comps));
    match found {
        Found::Dir(tree_id, _) => {
            let tree = repo.load_tree(&tree_id)?;
            let name = comps
                .last()
                .map_or(format!("snapshot-{}", id.short()), |c| {
                    String::from_utf8_lossy(c).into_owned()
                });
            let _ = writeln!(
                body,
                r#"<p class="actions"><a class="button" href="/tar/{}/{}">Download {}.tar</a></p>"#,
                esc(&hex),
                esc(&here),
                esc(&name)
            );
            body.push_str(
                r#"<table class="entries"><thead><tr><th>Name</th><th>Mode</th><th class="num">Size</th><th>Modified</th><th>Owner</th><th></th></tr></thead><tbody>"#,
            );
            for n in &tree.nodes {
                let url = format!("{here}{}", percent_encode(&n.name, false));
                let (link, action) = match &n.kind {
                    NodeKind::Dir { .. } => (
                        format!(
                            r#"<a class="dir" href="/snapshot/{}/{}/">{}/</a>"#,
                            esc(&hex),
                            esc(&url),
                            esc_bytes(&n.name)
                        ),
                        format!(r#"<a href="/tar/{}/{}">.tar</a>"#, esc(&hex), esc(&url)),
                    ),
                    NodeKind::File { .. } => (
                        format!(
                            r#"<a class="file" href="/snapshot/{}/{}">{}</a>"#,
                            esc(&hex),
                            esc(&url),
                            esc_bytes(&n.name)
                        ),
                        format!(
                            r#"<a href="/file/{}/{}">download</a>"#,
                            esc(&hex),
                            esc(&url)
                        ),
                    ),
                    NodeKind::Symlink { target } => (
                        format!(
                            r#"<span class="link">{}</span> → <span class="target">{}</span>"#,
                            esc_bytes(&n.name),
                            esc_bytes(target)
                        ),
                        String::new(),
                    ),
                    _ => (
                        format!(
                            r#"<span class="other">{}</span> <small>({})</small>"#,
                            esc_bytes(&n.name),
                            kind_name(n)
                        ),
                        String::new(),
                    ),
                };
                let _ = writeln!(
                    body,
                    r#"<tr><td class="name">{link}</td><td class="mode">{}</td><td class="num">{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>"#,
                    esc(&super::super::ls::mode_string(n)),
                    if matches!(n.kind, NodeKind::File { .. }) {
                        human_bytes(n.size)
                    } else {
                        String::new()
                    },
                    esc(&mtime(n)),
                    esc(&owner(n)),
                );
            }
            body.push_str("</tbody></table>\n");
            if tree.nodes.is_empty() {
                body.push_str("<p>Empty directory.</p>\n");
            }
        }
        Found::Entry(n) => {
            body.push_str(r#"<table class="details"><tbody>"#);
            let mut row = |k: &str, v: String| {
                let _ = write!(body, "<tr><th>{}</th><td>{v}</td></tr>", esc(k));
            };
            row("Name", esc_bytes(&n.name));
            row("Type", esc(kind_name(&n)));
            row("Mode", esc(&super::super::ls::mode_string(&n)));
            row(
                "Size",
                format!("{} ({} bytes)", human_bytes(n.size), n.size),
            );
            row("Modified", esc(&mtime(&n)));
            row("Owner", esc(&owner(&n)));
            if let NodeKind::Symlink { target } = &n.kind {
                row("Target", esc_bytes(target));
            }
            body.push_str("</tbody></table>\n");
            if matches!(n.kind, NodeKind::File { .. }) {
                let _ = writeln!(
                    body,
                    r#"<p class="actions"><a class="button" href="/file/{}/{}">Download</a></p>"#,
                    esc(&hex),
                    esc(here.trim_end_matches('/'))
                );
            }
        }
    }
    let title = format!("{} {}", id.short(), String::from_utf8_lossy(&path));
    Ok(layout(ui, &title, &body))
}

fn owner(n: &Node) -> String {
    let user = if n.user.is_empty() {
        n.uid.to_string()
    } else {
        n.user.clone()
    };
    let group = if n.group.is_empty() {
        n.gid.to_string()
    } else {
        n.group.clone()
    };
    format!("{user}:{group}")
}

/// `/diff?from=A&to=B`: what changed from snapshot A to snapshot B.
pub fn diff(ui: &Ui, from: Option<&str>, to: Option<&str>) -> Result<String, Failure> {
    let (Some(from), Some(to)) = (from, to) else {
        return Err(Failure::bad_request(
            "name two snapshots: /diff?from=ID&to=ID",
        ));
    };
    let (ida, sa) = ui.snapshot(from)?;
    let (idb, sb) = ui.snapshot(to)?;
    let repo = ui.indexed()?;
    let mut rows = String::new();
    let mut counts = [0u64; 5];
    let mut shown = 0usize;
    cairn::ops::diff::diff(&repo, &sa.tree, &sb.tree, b"/", &mut |c| {
        counts[c.kind as usize] += 1;
        if shown >= MAX_DIFF_ROWS {
            return Ok(());
        }
        shown += 1;
        let (snap, node) = match c.kind {
            ChangeKind::Removed => (&ida, c.old.as_ref()),
            _ => (&idb, c.new.as_ref()),
        };
        let is_dir = node.is_some_and(|n| matches!(n.kind, NodeKind::Dir { .. }));
        let href = format!(
            "/snapshot/{}{}{}",
            snap.to_hex(),
            percent_encode(&c.path, true),
            if is_dir { "/" } else { "" }
        );
        let old = c.old.as_ref().map(|n| n.size).unwrap_or(0);
        let new = c.new.as_ref().map(|n| n.size).unwrap_or(0);
        let detail = match (c.kind, c.db_pages) {
            (ChangeKind::Modified, Some((changed, total))) => {
                format!("SQLite database: {changed} of {total} pages changed")
            }
            (ChangeKind::Modified, None) if old != new => {
                format!("{} → {}", human_bytes(old), human_bytes(new))
            }
            (ChangeKind::Added, _) if new > 0 => human_bytes(new),
            (ChangeKind::Removed, _) if old > 0 => human_bytes(old),
            (ChangeKind::TypeChanged, _) => format!(
                "{} → {}",
                c.old.as_ref().map_or("?", |n| n.kind.name()),
                c.new.as_ref().map_or("?", |n| n.kind.name())
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            rows,
            r#"<tr class="{cls}"><td class="marker">{m}</td><td><a href="{href}">{p}</a></td><td>{d}</td></tr>"#,
            cls = kind_class(c.kind),
            m = esc(&c.kind.marker().to_string()),
            href = esc(&href),
            p = esc_bytes(&c.path),
            d = esc(&detail),
        );
        Ok(())
    })?;
    let mut body = String::new();
    let _ = writeln!(
        body,
        r#"<h1>Changes from <a href="/snapshot/{}/">{}</a> to <a href="/snapshot/{}/">{}</a></h1>"#,
        esc(&ida.to_hex()),
        esc(&ida.short()),
        esc(&idb.to_hex()),
        esc(&idb.short())
    );
    let _ = writeln!(
        body,
        r#"<p class="summary">{} ({}) → {} ({}): <span class="added">{} added</span>, <span class="removed">{} removed</span>, <span class="modified">{} modified</span>, {} metadata only, {} changed type</p>"#,
        esc(&time(&sa)),
        esc(&sa.hostname),
        esc(&time(&sb)),
        esc(&sb.hostname),
        counts[ChangeKind::Added as usize],
        counts[ChangeKind::Removed as usize],
        counts[ChangeKind::Modified as usize],
        counts[ChangeKind::Metadata as usize],
        counts[ChangeKind::TypeChanged as usize],
    );
    let total: u64 = counts.iter().sum();
    if total == 0 {
        body.push_str("<p>No changes.</p>\n");
    } else {
        body.push_str(r#"<table class="diff"><tbody>"#);
        body.push_str(&rows);
        body.push_str("</tbody></table>\n");
        if total > shown as u64 {
            let _ = writeln!(
                body,
                "<p>… and {} more (the first {MAX_DIFF_ROWS} are shown; `cairn diff` lists them all).</p>",
                total - shown as u64
            );
        }
    }
    Ok(layout(
        ui,
        &format!("Changes {} → {}", ida.short(), idb.short()),
        &body,
    ))
}

fn kind_class(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Modified => "modified",
        ChangeKind::Metadata => "metadata",
        ChangeKind::TypeChanged => "typechanged",
    }
}

/// `/jobs`: each job's last run as `cairn run` recorded it in its state
/// file, the run's steps, and when it last checked, pruned and tested a
/// restore.
pub fn jobs(ui: &Ui) -> Result<String, Failure> {
    let list = ui.snapshots()?;
    let names = ui.job_names(&list.snaps);
    let mut body = String::from("<h1>Jobs</h1>\n");
    let _ = writeln!(
        body,
        r#"<p class="summary">What <code>cairn run</code> recorded in {} (its state directory).</p>"#,
        esc(&super::super::run::state_dir()
            .join("jobs")
            .display()
            .to_string())
    );
    if names.is_empty() {
        body.push_str(
            "<p>No jobs: no job of the configuration file backs up to this repository, and no snapshot carries a <code>job:NAME</code> tag.</p>\n",
        );
    }
    for name in &names {
        let st = super::super::run::JobState::load(name);
        let m = &st.metrics;
        let status = match (m.last_run, m.ok) {
            (None, _) => r#"<span class="status never">never run</span>"#.to_string(),
            (Some(_), true) => r#"<span class="status ok">ok</span>"#.to_string(),
            (Some(_), false) => format!(
                r#"<span class="status failed">failed ({})</span>"#,
                super::super::count(m.errors, "error")
            ),
        };
        let last_snap = list
            .snaps
            .iter()
            .rev()
            .find(|(_, s)| job_of(s) == Some(name.as_str()));
        let _ = writeln!(
            body,
            r#"<section class="job"><h2>{} {status}</h2><table class="details"><tbody>"#,
            esc(name)
        );
        let mut row = |k: &str, v: String| {
            let _ = write!(body, "<tr><th>{}</th><td>{v}</td></tr>", esc(k));
        };
        row("Last run", esc(&unix_time(m.last_run)));
        row("Last success", esc(&unix_time(m.last_success)));
        if m.last_run.is_some() {
            row("Duration", esc(&human_duration(m.duration_seconds)));
        }
        row("Runs", st.runs.to_string());
        if let Some(f) = m.files {
            row("Files", f.to_string());
        }
        if let Some(b) = m.bytes_added {
            row("Added", human_bytes(b));
        }
        if let Some(b) = m.repository_bytes {
            row("Repository", human_bytes(b));
        }
        if let Some((id, s)) = last_snap {
            row(
                "Last snapshot",
                format!(
                    r#"<a href="/snapshot/{}/">{}</a> {}"#,
                    esc(&id.to_hex()),
                    esc(&id.short()),
                    esc(&time(s))
                ),
            );
        }
        let check_step = st.last_steps.iter().find(|s| s.step.starts_with("check"));
        row(
            "Check",
            match check_step {
                Some(s) if s.ok => format!(
                    r#"<span class="status ok">ok</span> {} (last run)"#,
                    esc(&s.step)
                ),
                Some(s) => format!(
                    r#"<span class="status failed">failed</span> {}: {}"#,
                    esc(&s.step),
                    esc(s.error.as_deref().unwrap_or(""))
                ),
                None => "not in the last run".into(),
            },
        );
        row("Last good check", esc(&unix_time(st.last_check)));
        row("Last prune", esc(&unix_time(st.last_prune)));
        row("Last restore test", esc(&unix_time(st.last_restore_test)));
        body.push_str("</tbody></table>\n");
        if !st.last_steps.is_empty() {
            body.push_str(
                r#"<h3>Steps of the last run</h3><table class="steps"><thead><tr><th>Step</th><th>Result</th><th class="num">Took</th><th>Detail</th></tr></thead><tbody>"#,
            );
            for s in &st.last_steps {
                let (cls, what) = match (&s.skipped, s.ok) {
                    (Some(_), _) => ("skipped", "skipped"),
                    (None, true) => ("ok", "ok"),
                    (None, false) => ("failed", "failed"),
                };
                let _ = writeln!(
                    body,
                    r#"<tr><td>{}</td><td><span class="status {cls}">{what}</span></td><td class="num">{}</td><td>{}</td></tr>"#,
                    esc(&s.step),
                    esc(&human_duration(s.seconds)),
                    esc(s.error.as_deref().or(s.skipped.as_deref()).unwrap_or("")),
                );
            }
            body.push_str("</tbody></table>\n");
        }
        body.push_str("</section>\n");
    }
    Ok(layout(ui, "Jobs", &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn percent_encoding_round_trips_any_name() {
        let names: [&[u8]; 4] = [b"plain.txt", b"a b?c#d%e&f", b"\xff\xfe<x>", b"dir/sub"];
        for n in names {
            for keep in [false, true] {
                let e = percent_encode(n, keep);
                assert!(!e.contains(['?', '#', ' ', '<', '"', '&']), "{e}");
                assert_eq!(percent_decode(&e).unwrap(), n);
            }
        }
        assert_eq!(percent_encode(b"dir/sub", false), "dir%2Fsub");
        assert!(percent_decode("%zz").is_none());
        assert!(percent_decode("%4").is_none());
    }

    #[test]
    fn targets_never_leave_the_snapshot() {
        assert!(split_target("abcd/a/../b").is_err());
        assert!(split_target("abcd/%2E%2E/etc").is_err());
        let (id, p) = split_target("abcd/srv/a%20b/").unwrap();
        assert_eq!(
            (id.as_str(), p.as_slice()),
            ("abcd", b"/srv/a b/".as_slice())
        );
    }
}
