//! `cairn restore-test`: restore a snapshot into a temporary directory,
//! verify every file against the snapshot and every SQLite capture with
//! `integrity_check`, report, and clean up.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use cairn::ops::Progress;
use cairn::ops::restore::{RestoreOptions, RestoreRoot, restore};
use cairn::ops::verify::{temp_target, verify};

use super::progress::Reporter;
use super::{GlobalArgs, human_bytes};

/// Arguments of `cairn restore-test`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The snapshot to test (an ID, a prefix, or `latest`).
    #[arg(default_value = "latest")]
    snapshot: String,
    /// Create the temporary directory here (default: $TMPDIR or /tmp). It
    /// needs room for the whole snapshot.
    #[arg(long, value_name = "DIR")]
    tmp_dir: Option<PathBuf>,
    #[command(flatten)]
    filter: super::FilterArgs,
    #[command(flatten)]
    pub(super) job: super::JobArgs,
}

/// What a restore test found.
struct Outcome {
    /// The snapshot tested.
    snapshot: String,
    /// Files verified.
    files: u64,
    /// Bytes verified.
    bytes: u64,
    /// Databases and their `integrity_check` verdicts.
    databases: Vec<(String, String)>,
    /// Everything that is wrong, as (path, what).
    problems: Vec<(String, String)>,
    /// Seconds taken.
    seconds: f64,
}

/// Regular files below `dir` that start with the SQLite header, with their
/// snapshot paths.
fn sqlite_files(dir: &std::path::Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() && m.len() >= 512 {
                let mut head = [0u8; 16];
                let is_db = std::fs::File::open(&p)
                    .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
                    .is_ok()
                    && &head == cairn::source::sqlite::SQLITE_MAGIC;
                if is_db && let Ok(rel) = p.strip_prefix(dir) {
                    let rel = format!("/{}", rel.display());
                    out.push((p, rel));
                }
            }
        }
    }
    out
}

/// Run the test without printing.
fn test(
    g: &GlobalArgs,
    spec: &str,
    filter: &cairn::repo::SnapshotFilter,
    tmp: Option<&std::path::Path>,
) -> Result<Outcome> {
    let started = Instant::now();
    let mut repo = g.open()?;
    let mut lock = repo.lock_shared()?;
    let repo = lock.load_index()?;
    let (id, snap) = super::select_snapshot(g, &repo, spec, filter, None)?;
    let base = tmp.map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
    let dir = temp_target(&base)?;
    let _interrupts = super::Interrupts::install_exiting(repo.lock(), {
        let dir = dir.path().to_path_buf();
        move || {
            let _ = std::fs::remove_dir_all(dir);
        }
    })?;
    let reporter = Reporter::new(g, "restore-test");
    reporter.start(
        "restore",
        Some(snap.summary.files),
        Some(snap.summary.total_bytes),
    );
    let opts = RestoreOptions {
        target: dir.path().to_path_buf(),
        include: Vec::new(),
        owners: None,
        // A restore test is the thorough check: indexes too.
        verify_db: cairn::ops::restore::DbCheck::Full,
        ..RestoreOptions::default()
    };
    let root = RestoreRoot::Tree(snap.tree);
    let mut problems = Vec::new();
    let restored = restore(&repo, &root, b"/", &opts, &reporter);
    let databases = match restored {
        Ok(r) => {
            for (p, e) in r.errors {
                problems.push((
                    p.to_string_lossy().into_owned(),
                    format!("not restored: {e}"),
                ));
            }
            r.databases
                .into_iter()
                .map(|(p, v)| {
                    let rel = p
                        .strip_prefix(dir.path())
                        .map(|r| format!("/{}", r.display()))
                        .unwrap_or_else(|_| p.display().to_string());
                    if v != "ok" {
                        problems.push((rel.clone(), format!("integrity_check: {v}")));
                    }
                    (rel, v)
                })
                .collect()
        }
        Err(e) => {
            problems.push(("/".into(), format!("restore failed: {e}")));
            Vec::new()
        }
    };
    let v = verify(&repo, &snap.tree, b"/", dir.path(), &reporter);
    reporter.finish();
    let (files, bytes) = match v {
        Ok(v) => {
            problems.extend(v.problems);
            (v.files, v.bytes)
        }
        Err(e) => {
            problems.push(("/".into(), format!("cannot read the snapshot: {e}")));
            (0, 0)
        }
    };
    // Databases stored as plain files or streams (an rqlite or `sqlite3
    // .backup` dump through --stdin-from-command) are checked too, after
    // the byte comparison, as opening them may add companion files.
    let mut databases = databases;
    let known: std::collections::HashSet<String> =
        databases.iter().map(|(p, _)| p.clone()).collect();
    for (path, rel) in sqlite_files(dir.path()) {
        if known.contains(&rel) {
            continue;
        }
        let verdict = match cairn::source::sqlite::check_restored(&path) {
            Ok(v) => v,
            Err(e) => e.to_string(),
        };
        if verdict != "ok" {
            problems.push((rel.clone(), format!("integrity_check: {verdict}")));
        }
        databases.push((rel, verdict));
    }
    databases.sort();
    problems.sort();
    problems.dedup();
    let path = dir.path().to_path_buf();
    if let Err(e) = dir.close() {
        eprintln!(
            "warning: cannot remove the restore test's directory {}: {e}",
            path.display()
        );
    }
    Ok(Outcome {
        snapshot: id.to_hex(),
        files,
        bytes,
        databases,
        problems,
        seconds: started.elapsed().as_secs_f64(),
    })
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    execute(g, &a.snapshot, &a.filter.filter()?, a.tmp_dir.as_deref())
}

/// Test-restore the snapshot `spec` names (among those `filter` passes)
/// under `tmp` (default: the system's temporary directory) and print the
/// outcome; `cairn run` calls this too.
pub fn execute(
    g: &GlobalArgs,
    spec: &str,
    filter: &cairn::repo::SnapshotFilter,
    tmp: Option<&std::path::Path>,
) -> Result<i32> {
    let o = test(g, spec, filter, tmp)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "snapshot_id": o.snapshot,
                "ok": o.problems.is_empty(),
                "files": o.files,
                "bytes": o.bytes,
                "databases": o.databases.iter().map(|(p, v)| serde_json::json!({"path": p, "integrity_check": v})).collect::<Vec<_>>(),
                "problems": o.problems.iter().map(|(p, w)| serde_json::json!({"path": p, "problem": w})).collect::<Vec<_>>(),
                "duration_seconds": o.seconds,
            })
        );
    } else {
        for (p, w) in &o.problems {
            println!("damaged: {p}: {w}");
        }
        if !g.quiet || !o.problems.is_empty() {
            for (p, v) in &o.databases {
                println!("database {p}: integrity_check {v}");
            }
            if o.problems.is_empty() {
                println!(
                    "restore test of snapshot {}: {} ({}) restored and verified in {}, {} {} integrity_check: all sound",
                    &o.snapshot[..8],
                    super::count(o.files, "file"),
                    human_bytes(o.bytes),
                    super::human_duration(o.seconds),
                    super::count(o.databases.len(), "database"),
                    if o.databases.len() == 1 {
                        "passes"
                    } else {
                        "pass"
                    },
                );
            } else {
                println!(
                    "restore test of snapshot {}: FAILED: {} in {} ({}) and {}",
                    &o.snapshot[..8],
                    super::count(o.problems.len(), "problem"),
                    super::count(o.files, "file"),
                    human_bytes(o.bytes),
                    super::count(o.databases.len(), "database"),
                );
            }
        }
    }
    if o.problems.is_empty() {
        Ok(super::exit::OK)
    } else {
        if !g.json {
            eprintln!(
                "cairn: the restore test of snapshot {} failed: {} (run `cairn check --read-data` to find the damaged packs)",
                &o.snapshot[..8],
                super::count(o.problems.len(), "problem")
            );
        }
        Ok(super::exit::FATAL)
    }
}
