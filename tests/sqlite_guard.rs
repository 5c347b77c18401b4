//! The guard against silent damage: a database that is no longer a
//! database, fails SQLite's check, or had most of its pages rewritten is
//! a suspect capture — stored, named, exit 3, the snapshot tagged — and
//! retention keeps the last good capture until told otherwise.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;
use rusqlite::Connection;

/// `cairn --json backup SRC EXTRA…`: exit code, summary, stderr.
fn backup(env: &Env, src: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec!["--json", "backup"];
    args.extend_from_slice(extra);
    args.push(src.to_str().unwrap());
    let out = env.run(&args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(
        text.lines()
            .last()
            .unwrap_or_else(|| panic!("no summary; stderr: {err}")),
    )
    .unwrap();
    (out.status.code().unwrap(), v, err)
}

fn suspects(v: &serde_json::Value) -> Vec<(String, String, String)> {
    v["suspect"]
        .as_array()
        .unwrap_or_else(|| panic!("no suspect list in {v}"))
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
                s["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn snapshots(env: &Env) -> Vec<serde_json::Value> {
    let out = env.ok(&["snapshots", "--json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn tags(s: &serde_json::Value) -> Vec<String> {
    s["tags"]
        .as_array()
        .map(|t| t.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The ransomware case: a database encrypted over in place. The backup
/// stores the file, names it, exits 3 and tags the snapshot; it stays
/// suspect while it is not a database; retention keeps the last snapshot
/// with the good capture ("last good") and refuses to forget it by ID
/// unless `--forget-suspect`; once the database is sound again backups
/// are clean, and retention lets the old good snapshot go.
#[test]
fn a_database_encrypted_over_is_suspect_until_sound_and_its_last_good_snapshot_is_kept() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("vault.db");
    make_plain_db(&db, 300, 1);
    let good = fs::read(&db).unwrap();
    let (code, v, err) = backup(&env, &src, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(suspects(&v).is_empty());
    let good_id = v["snapshot_id"].as_str().unwrap().to_string();

    // Encrypted over: same size, no longer a database.
    fs::write(&db, random_bytes(good.len(), 7)).unwrap();
    let (code, v, err) = backup(&env, &src, &[]);
    assert_eq!(code, 3, "{err}");
    let s = suspects(&v);
    assert_eq!(s.len(), 1, "{v}");
    assert_eq!(s[0].0, db.to_str().unwrap());
    assert_eq!(s[0].1, "not_a_database");
    assert!(s[0].2.contains("no longer a SQLite database"), "{s:?}");
    // Stored as it is.
    let first_bad = v["snapshot_id"].as_str().unwrap().to_string();
    let dumped = env
        .cmd()
        .args(["dump", &first_bad, db.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(dumped.stdout, fs::read(&db).unwrap());
    // Text output names it too.
    let out = env.run(&["backup", src.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!("suspect: {}", db.display())) && err.contains("tagged suspect"),
        "{err}"
    );
    let snaps = snapshots(&env);
    assert_eq!(snaps.len(), 3);
    assert_eq!(
        snaps[1]["suspect"][0]["reason"], "not_a_database",
        "{snaps:?}"
    );
    assert!(snaps[0].get("suspect").is_none());
    assert!(!tags(&snaps[0]).contains(&"suspect".to_string()));
    assert!(tags(&snaps[1]).contains(&"suspect".to_string()));
    assert!(
        tags(&snaps[2]).contains(&"suspect".to_string()),
        "an unchanged suspect file stays suspect"
    );

    // Restoring the damaged night says so, and where the good one is.
    let target = env.path("restore-latest");
    let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "warning: {} is a suspect capture in snapshot",
            db.display()
        )) && err.contains(&format!(
            "its last good capture is in snapshot {}",
            &good_id[..8]
        )),
        "{err}"
    );

    // Retention: the last good snapshot stays, whatever the policy says.
    let out = env.ok(&["--json", "forget", "--keep-last", "1"]);
    let plan: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let keep = &plan["groups"][0]["keep"];
    let reasons: Vec<(String, serde_json::Value)> = keep
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["id"].as_str().unwrap().to_string(), k["reasons"].clone()))
        .collect();
    assert!(
        reasons.contains(&(good_id.clone(), serde_json::json!(["last good"]))),
        "{plan}"
    );
    assert_eq!(plan["last_good"][0]["path"], db.to_str().unwrap(), "{plan}");
    let left: Vec<String> = snapshots(&env)
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&good_id) && !left.contains(&first_bad));
    // By ID: refused, and nothing is forgotten.
    let out = env.run(&["forget", &good_id[..8]]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("last good capture") && err.contains("--forget-suspect"),
        "{err}"
    );
    assert_eq!(snapshots(&env).len(), 2);

    // Put the good database back: sound again, nothing suspect.
    fs::write(&db, &good).unwrap();
    let (code, v, err) = backup(&env, &src, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(suspects(&v).is_empty());
    assert!(!tags(snapshots(&env).last().unwrap()).contains(&"suspect".to_string()));

    // While the suspect snapshot stays, so does the last good one; once
    // the policy lets the suspect one go, the good one goes with it.
    let out = env.ok(&["forget", "--keep-last", "2"]);
    assert!(out.contains("(last good)"), "{out}");
    assert_eq!(snapshots(&env).len(), 3);
    env.ok(&["forget", "--keep-last", "1"]);
    assert_eq!(snapshots(&env).len(), 1);
}

/// `--forget-suspect` lets retention and `forget ID` remove the last good
/// snapshot.
/// The guard judges a path against its newest good capture, not only the
/// parent snapshot's entry: a database encrypted over before a run made
/// with `--sqlite off` (which stored it raw and judged nothing) is suspect
/// at the next run that captures, though unchanged since that run; and a
/// database the parent run left out is judged the same way.
#[test]
fn a_database_encrypted_over_while_capture_was_off_is_judged_against_its_last_capture() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("vault.db");
    make_plain_db(&db, 300, 1);
    let good = fs::read(&db).unwrap();
    let (code, v, err) = backup(&env, &src, &[]);
    assert_eq!(code, 0, "{err}");
    let good_id = v["snapshot_id"].as_str().unwrap()[..8].to_string();

    fs::write(&db, random_bytes(good.len(), 7)).unwrap();
    let (code, v, err) = backup(&env, &src, &["--sqlite", "off"]);
    assert_eq!(code, 0, "{err}");
    assert!(suspects(&v).is_empty(), "{v}");

    let (code, v, err) = backup(&env, &src, &[]);
    assert_eq!(code, 3, "{err}");
    let s = suspects(&v);
    assert_eq!(s.len(), 1, "{v}");
    assert_eq!(
        (s[0].0.as_str(), s[0].1.as_str()),
        (db.to_str().unwrap(), "not_a_database")
    );
    assert!(
        s[0].2
            .contains(&format!("captured as one in snapshot {good_id}")),
        "{s:?}"
    );
    // Still suspect while unchanged.
    let (code, v, _) = backup(&env, &src, &[]);
    assert_eq!((code, suspects(&v).len()), (3, 1), "{v}");

    // Sound again: captured, not suspect.
    fs::write(&db, &good).unwrap();
    let (code, v, err) = backup(&env, &src, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(suspects(&v).is_empty(), "{v}");

    // Left out of one run (excluded here, as a database busy past the
    // timeout is), then encrypted over: judged against the capture before.
    let (code, _, err) = backup(&env, &src, &["--exclude", "vault.db"]);
    assert_eq!(code, 0, "{err}");
    fs::write(&db, random_bytes(good.len(), 8)).unwrap();
    let (code, v, err) = backup(&env, &src, &[]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(suspects(&v).len(), 1, "{v}");
}

#[test]
fn forget_suspect_removes_the_last_good_snapshot_when_asked() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("vault.db");
    make_plain_db(&db, 20, 2);
    let (code, v, _) = backup(&env, &src, &[]);
    assert_eq!(code, 0);
    let good_id = v["snapshot_id"].as_str().unwrap().to_string();
    fs::write(&db, b"gone").unwrap();
    let (code, _, err) = backup(&env, &src, &[]);
    assert_eq!(code, 3, "{err}");
    env.ok(&["forget", "--forget-suspect", &good_id[..8]]);
    assert_eq!(snapshots(&env).len(), 1);
}

/// A capture whose pages fail `PRAGMA quick_check` is suspect (its damage
/// is stored, byte for byte, for inspection); a database above the check's
/// size limit is checked a slice of its tables at a time; with the check
/// off the damage goes unnoticed.
#[test]
fn a_capture_that_fails_quick_check_is_suspect_and_the_check_can_be_turned_off() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("d.db");
    make_plain_db(&db, 60, 7);
    let (code, _, err) = backup(&env, &src, &[]);
    assert_eq!(code, 0, "{err}");
    // A b-tree page with a bad page type: the schema is intact, so SQLite
    // opens and captures it.
    let mut bytes = fs::read(&db).unwrap();
    bytes[4096 * 20] = 0x55;
    fs::write(&db, &bytes).unwrap();

    let (code, v, err) = backup(&env, &src, &[]);
    assert_eq!(code, 3, "{err}");
    let s = suspects(&v);
    assert_eq!(s.len(), 1, "{v}");
    assert_eq!(s[0].1, "check_failed");
    assert!(s[0].2.starts_with("quick_check: "), "{s:?}");
    let target = env.path("restore");
    env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(restored(&target, &db)).unwrap(), bytes);

    // Still damaged, above the limit: a capture whose parent failed its
    // check is checked whole, so it stays suspect.
    let (code, v, err) = backup(&env, &src, &["--force", "--sqlite-check-limit", "64K"]);
    assert_eq!(code, 3, "{err}");
    let s = suspects(&v);
    assert!(s[0].2.starts_with("quick_check: "), "{s:?}");

    let (code, v, err) = backup(&env, &src, &["--force", "--sqlite-check", "off"]);
    assert_eq!(code, 0, "{err}");
    assert!(suspects(&v).is_empty());
}

/// A database of four tables, each larger than the check's limit.
fn make_tables_db(path: &Path) {
    let c = Connection::open(path).unwrap();
    c.execute_batch("PRAGMA page_size=4096; PRAGMA journal_mode=DELETE;")
        .unwrap();
    for t in 0..4u64 {
        c.execute_batch(&format!(
            "CREATE TABLE t{t}(id INTEGER PRIMARY KEY, body BLOB);"
        ))
        .unwrap();
        for i in 0..100 {
            c.execute(
                &format!("INSERT INTO t{t}(body) VALUES (?1)"),
                [random_bytes(1200, t * 1000 + i)],
            )
            .unwrap();
        }
    }
}

/// Above `--sqlite-check-limit` a capture is checked a slice of its
/// tables: a sound database passes; damage in every table is found
/// whichever slice is drawn, and named with the slice's size.
#[test]
fn a_database_above_the_check_limit_is_checked_a_slice_of_its_tables() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("tables.db");
    make_tables_db(&db);
    for _ in 0..3 {
        let (code, v, err) = backup(&env, &src, &["--force", "--sqlite-check-limit", "64K"]);
        assert_eq!(code, 0, "{err}");
        assert!(suspects(&v).is_empty(), "{v}");
        assert!(!err.contains("not checked"), "{err}");
    }
    // Every table's root page gets a bad page type.
    let roots: Vec<i64> = {
        let c = Connection::open(&db).unwrap();
        let mut st = c
            .prepare("SELECT rootpage FROM sqlite_schema WHERE type = 'table'")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(roots.len(), 4);
    let mut bytes = fs::read(&db).unwrap();
    for r in roots {
        bytes[(r as usize - 1) * 4096] = 0x55;
    }
    fs::write(&db, &bytes).unwrap();
    let (code, v, err) = backup(&env, &src, &["--sqlite-check-limit", "64K"]);
    assert_eq!(code, 3, "{err}");
    let s = suspects(&v);
    assert!(
        s[0].2.starts_with("quick_check of 1 of its 4 tables: t"),
        "{s:?}"
    );
}

/// A check SQLite cannot compile without the application's own collation
/// (or whose CHECK constraints call the application's functions) is no
/// verdict: a warning, not a suspect capture.
#[test]
fn a_database_with_the_applications_own_collation_is_not_called_suspect() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("app.db");
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch(
            "CREATE TABLE t(x TEXT, y INTEGER);
             CREATE INDEX t_x ON t(x);",
        )
        .unwrap();
        for i in 0..50 {
            c.execute("INSERT INTO t VALUES (?1, ?2)", (format!("k{i}"), i))
                .unwrap();
        }
        // As the application declared them: a collation and a function
        // only it registers.
        c.execute_batch(
            "PRAGMA writable_schema = ON;
             UPDATE sqlite_schema
                SET sql = 'CREATE TABLE t(x TEXT COLLATE appcoll, y INTEGER CHECK (appfn(y)))'
              WHERE name = 't';
             PRAGMA writable_schema = OFF;",
        )
        .unwrap();
    }
    let (code, v, err) = backup(&env, &src, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(suspects(&v).is_empty(), "{v}");
    assert!(
        err.contains("app.db: not checked") && err.contains("appcoll"),
        "{err}"
    );
}

/// A database that starts like one but that SQLite cannot read is stored
/// as it is and suspect (it used to be left out of the snapshot).
#[test]
fn a_file_sqlite_cannot_read_is_stored_as_it_is_and_suspect() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let mut bogus = b"SQLite format 3\0".to_vec();
    bogus.extend_from_slice(&[0x10, 0x00, 1, 1]);
    bogus.extend_from_slice(&random_bytes(8192, 3));
    fs::write(src.join("broken.db"), &bogus).unwrap();
    let (code, v, err) = backup(&env, &src, &[]);
    assert_eq!(code, 3, "{err}");
    let s = suspects(&v);
    assert_eq!(s.len(), 1, "{v}");
    assert_eq!(s[0].1, "unreadable");
    assert!(s[0].2.contains("SQLite cannot read it"), "{s:?}");
    assert_eq!(v["errors"].as_array().unwrap().len(), 0, "{v}");
    let out = env
        .cmd()
        .args(["dump", "latest", src.join("broken.db").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.stdout, bogus);
}

/// More than half of a database's pages rewritten since the parent
/// capture is suspect once; the next capture is compared with that one,
/// so a database that keeps working is clean again. A small database
/// (under 256 pages) is not judged by its rewritten pages.
#[test]
fn a_database_with_most_pages_rewritten_is_suspect_once() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("big.db");
    let small = src.join("small.db");
    make_plain_db(&db, 400, 1);
    make_plain_db(&small, 40, 2);
    let (code, _, err) = backup(&env, &src, &[]);
    assert_eq!(code, 0, "{err}");
    for p in [&db, &small] {
        let c = Connection::open(p).unwrap();
        c.execute("UPDATE items SET body = randomblob(1200)", [])
            .unwrap();
    }
    let (code, v, err) = backup(&env, &src, &[]);
    assert_eq!(code, 3, "{err}");
    let s = suspects(&v);
    assert_eq!(s.len(), 1, "only the large one: {v}");
    assert_eq!(s[0].0, db.to_str().unwrap());
    assert_eq!(s[0].1, "rewritten");
    assert!(
        s[0].2
            .contains("pages rewritten since the capture in the parent snapshot"),
        "{s:?}"
    );
    let c = Connection::open(&db).unwrap();
    c.execute("INSERT INTO items(body) VALUES (x'01')", [])
        .unwrap();
    let (code, v, err) = backup(&env, &src, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(suspects(&v).is_empty());
}

/// A WAL database under a live writer is captured consistently every
/// time: no capture of it is ever suspect.
#[test]
fn captures_of_a_wal_database_under_a_live_writer_are_never_suspect() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("live.db");
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE items(id INTEGER PRIMARY KEY, k INTEGER, body BLOB);
             CREATE INDEX items_k ON items(k);",
        )
        .unwrap();
        let tx = c.unchecked_transaction().unwrap();
        for i in 0..3000u64 {
            tx.execute(
                "INSERT INTO items(k, body) VALUES (?1, ?2)",
                (i as i64 * 7919 % 3001, random_bytes(700, i)),
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    // An application's pace, not a benchmark's: a capture is compared
    // with the one before, and a writer unthrottled on a fast disk could
    // rewrite half the pages between.
    let writer = LiveWriter::start(&db, Duration::from_millis(2), |tx, n| {
        for k in 0..10 {
            let i = 1_000_000 + n * 10 + k;
            tx.execute(
                "INSERT INTO items(k, body) VALUES (?1, ?2)",
                (i as i64 % 3001, random_bytes(700, i)),
            )
            .unwrap();
        }
        tx.execute(
            "DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT 5)",
            [],
        )
        .unwrap();
    });
    writer.wait_for(20);
    let mut runs = Vec::new();
    for _ in 0..4 {
        let before = writer.commits();
        runs.push(backup(&env, &src, &[]));
        // Each capture sees a database the writer has moved on from.
        writer.wait_for(before + 5);
    }
    writer.stop();
    for (code, v, err) in runs {
        assert_eq!(code, 0, "{err}");
        assert!(suspects(&v).is_empty(), "{v}");
        assert_eq!(v["files_read"], 1, "the database was captured: {v}");
    }
}
