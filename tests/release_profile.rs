//! The release binary is small (stripped, no debug info: under 30 MB, it
//! was 125 MB with line tables), and a `profiling` profile keeps the line
//! tables for `perf`. Checked on `Cargo.toml`'s text, without building a
//! release.

use std::collections::BTreeMap;

/// The `key = value` lines of the table `[name]` in Cargo.toml, values as
/// written.
fn profile(name: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let header = format!("[{name}]");
    let mut lines = text.lines().skip_while(|l| l.trim() != header);
    assert!(lines.next().is_some(), "Cargo.toml has no {header}");
    lines
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn the_release_build_is_stripped_and_has_no_debug_info() {
    let p = profile("profile.release");
    assert_eq!(
        p.get("strip").map(String::as_str),
        Some("\"symbols\""),
        "{p:?}"
    );
    assert_eq!(p.get("debug").map(String::as_str), Some("false"), "{p:?}");
}

#[test]
fn the_profiling_build_is_the_release_build_with_line_tables() {
    let p = profile("profile.profiling");
    assert_eq!(
        p.get("inherits").map(String::as_str),
        Some("\"release\""),
        "{p:?}"
    );
    assert_eq!(
        p.get("debug").map(String::as_str),
        Some("\"line-tables-only\""),
        "{p:?}"
    );
    assert_eq!(
        p.get("strip").map(String::as_str),
        Some("\"none\""),
        "{p:?}"
    );
}

/// Whoever profiles follows the benchmark notes: they say which build
/// keeps the symbols.
#[test]
fn the_benchmark_notes_profile_with_the_profiling_build() {
    let notes = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/BENCHMARKS.md"))
        .unwrap();
    assert!(
        notes.contains("cargo build --profile profiling"),
        "docs/BENCHMARKS.md does not say how to build for perf"
    );
}
