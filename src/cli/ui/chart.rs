//! The timeline's chart, drawn as SVG on the server: the repository's
//! stored size as it grew (a line) and the bytes each snapshot added
//! (bars), over time. Colours come from the stylesheet (classes only, no
//! inline styles); every label goes through [`esc`].

use std::fmt::Write as _;

use cairn::format::snapshot::Snapshot;
use cairn::id::SnapshotId;

use super::super::{format_time, human_bytes};
use super::pages::esc;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 80.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 40.0;
/// Room between the axes and the first and last snapshot.
const INSET: f64 = 20.0;

/// The chart for `snaps` (oldest first). The size line is the running
/// sum of what each snapshot stored (compressed and encrypted) over the
/// snapshots still in the repository: data that a prune gave back with
/// the snapshots it belonged to is not in it.
pub fn size_chart(snaps: &[(SnapshotId, Snapshot)]) -> String {
    let n = snaps.len();
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let (t0, t1) = (
        snaps.first().map_or(0, |(_, s)| s.time_ns),
        snaps.last().map_or(0, |(_, s)| s.time_ns),
    );
    // Position by time (inset, so that the first and last bars clear the
    // axes' labels); by order when every snapshot has the same time.
    let (x0, span) = (LEFT + INSET, plot_w - 2.0 * INSET);
    let x = |i: usize, t: i64| -> f64 {
        if t1 > t0 {
            x0 + span * ((t - t0) as f64 / (t1 - t0) as f64)
        } else if n > 1 {
            x0 + span * (i as f64 / (n - 1) as f64)
        } else {
            x0 + span / 2.0
        }
    };
    let mut sizes = Vec::with_capacity(n);
    let mut total = 0u64;
    for (_, s) in snaps {
        total = total.saturating_add(s.summary.bytes_stored);
        sizes.push(total);
    }
    let max_size = total.max(1) as f64;
    let max_added = snaps
        .iter()
        .map(|(_, s)| s.summary.bytes_added)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let y_size = |v: u64| TOP + plot_h * (1.0 - v as f64 / max_size);
    let y_added = |v: u64| TOP + plot_h * (1.0 - v as f64 / max_added);
    let bar_w = (plot_w / n.max(1) as f64 * 0.6).clamp(2.0, 24.0);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg id="size-chart" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Repository size and bytes added per snapshot over time">"#
    );
    // Grid and axes.
    for k in 0..=4 {
        let y = TOP + plot_h * f64::from(k) / 4.0;
        let frac = 1.0 - f64::from(k) / 4.0;
        let _ = writeln!(
            svg,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="axis size" x="{:.1}" y="{:.1}" text-anchor="end">{}</text><text class="axis added" x="{:.1}" y="{:.1}" text-anchor="start">{}</text>"#,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            esc(&human_bytes((max_size * frac) as u64)),
            LEFT + plot_w + 6.0,
            y + 4.0,
            esc(&human_bytes((max_added * frac) as u64)),
        );
    }
    // Bars: bytes added by each snapshot.
    for (i, (id, s)) in snaps.iter().enumerate() {
        let cx = x(i, s.time_ns);
        let y = y_added(s.summary.bytes_added);
        let _ = writeln!(
            svg,
            r#"<rect class="added" x="{:.1}" y="{y:.1}" width="{bar_w:.1}" height="{:.1}"><title>{} {}: added {}</title></rect>"#,
            cx - bar_w / 2.0,
            (TOP + plot_h - y).max(0.0),
            esc(&id.short()),
            esc(&format_time(s.time_ns, s.utc_offset_s)),
            esc(&human_bytes(s.summary.bytes_added)),
        );
    }
    // The size line and its points.
    let points: Vec<String> = snaps
        .iter()
        .enumerate()
        .map(|(i, (_, s))| format!("{:.1},{:.1}", x(i, s.time_ns), y_size(sizes[i])))
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline class="size" fill="none" points="{}"/>"#,
        points.join(" ")
    );
    for (i, (id, s)) in snaps.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<circle class="size" cx="{:.1}" cy="{:.1}" r="3"><title>{} {}: repository {}</title></circle>"#,
            x(i, s.time_ns),
            y_size(sizes[i]),
            esc(&id.short()),
            esc(&format_time(s.time_ns, s.utc_offset_s)),
            esc(&human_bytes(sizes[i])),
        );
    }
    // Time labels: first, middle, last.
    let mut labels = vec![0];
    if n > 2 {
        labels.push(n / 2);
    }
    if n > 1 {
        labels.push(n - 1);
    }
    for i in labels {
        let s = &snaps[i].1;
        let anchor = if i == 0 && n > 1 {
            "start"
        } else if i == n - 1 && n > 1 {
            "end"
        } else {
            "middle"
        };
        let _ = writeln!(
            svg,
            r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
            x(i, s.time_ns),
            HEIGHT - BOTTOM + 18.0,
            esc(&format_time(s.time_ns, s.utc_offset_s)),
        );
    }
    // Legend.
    let _ = writeln!(
        svg,
        r#"<g class="legend"><line class="size" x1="{LEFT}" y1="14" x2="{:.1}" y2="14"/><text x="{:.1}" y="18">repository size (stored)</text><rect class="added" x="{:.1}" y="8" width="12" height="12"/><text x="{:.1}" y="18">added per snapshot</text></g>"#,
        LEFT + 24.0,
        LEFT + 30.0,
        LEFT + 230.0,
        LEFT + 248.0,
    );
    svg.push_str("</svg>\n");
    svg
}
