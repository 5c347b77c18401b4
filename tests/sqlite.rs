//! Live SQLite databases are captured consistently, stored without their
//! WAL companions, and restored as valid databases.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;
use rusqlite::Connection;

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// A WAL-mode database with `rows` rows of ~1 KiB, and a ledger table whose
/// single row always equals the number of rows (one transaction updates
/// both, so any torn copy breaks the equality).
fn make_db(path: &Path, rows: u64) -> Connection {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE items(id INTEGER PRIMARY KEY, body BLOB);
         CREATE TABLE ledger(n INTEGER);
         INSERT INTO ledger VALUES (0);",
    )
    .unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..rows {
        tx.execute(
            "INSERT INTO items(body) VALUES (?1)",
            [random_bytes(1000, i)],
        )
        .unwrap();
    }
    tx.execute("UPDATE ledger SET n = ?1", [rows as i64])
        .unwrap();
    tx.commit().unwrap();
    c
}

fn ledger_consistent(path: &Path) -> (i64, i64) {
    let c = Connection::open(path).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let rows: i64 = c
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap();
    let ledger: i64 = c
        .query_row("SELECT n FROM ledger", [], |r| r.get(0))
        .unwrap();
    (rows, ledger)
}

#[test]
fn a_database_under_a_live_writer_restores_to_one_committed_state() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("db.sqlite3");
    drop(make_db(&db, 20_000));

    let writer = LiveWriter::start(&db, Duration::ZERO, |tx, n| {
        for k in 0..20 {
            tx.execute(
                "INSERT INTO items(body) VALUES (?1)",
                [random_bytes(900, 1_000_000 + n * 20 + k)],
            )
            .unwrap();
        }
        tx.execute(
            "DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT 5)",
            [],
        )
        .unwrap();
        tx.execute("UPDATE ledger SET n = (SELECT count(*) FROM items)", [])
            .unwrap();
    });
    // Let the WAL fill up, then back up several times while it runs.
    writer.wait_for(50);
    for _ in 0..3 {
        let s = env.backup_json(&[&src], &[]);
        assert_eq!(s["errors"].as_array().unwrap().len(), 0, "{s}");
    }
    assert!(writer.stop() > 50);

    // The snapshot holds the database only: no -wal, no -shm.
    let ls = env.ok(&["ls", "latest", src.to_str().unwrap()]);
    assert!(ls.contains("db.sqlite3"), "{ls}");
    assert!(!ls.contains("-wal") && !ls.contains("-shm"), "{ls}");

    let target = env.path("restore");
    let out = env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(out.contains("quick_check ok"), "{out}");
    let restored_db = restored(&target, &db);
    let (rows, ledger) = ledger_consistent(&restored_db);
    assert_eq!(rows, ledger, "the capture is one committed state");
    assert!(rows >= 20_000);
    let dir = restored_db.parent().unwrap();
    let names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["db.sqlite3".to_string()],
        "no companions after restore"
    );
}

#[test]
fn unchanged_databases_are_reused_and_changes_cost_about_the_changed_pages() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("data.db");
    let c = make_db(&db, 5_000);
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    let first = env.backup_json(&[&src], &[]);
    assert_eq!(n(&first, "files_read"), 1);
    let pages = n(&first, "data_blobs_added");
    assert!(pages > 1000, "{first}");

    let again = env.backup_json(&[&src], &[]);
    assert_eq!(
        n(&again, "files_read"),
        0,
        "unchanged database reused: {again}"
    );

    // Change a few rows (they stay in the WAL): recaptured, few new pages.
    c.execute(
        "UPDATE items SET body = zeroblob(1000) WHERE id IN (7, 2500)",
        [],
    )
    .unwrap();
    let changed = env.backup_json(&[&src], &[]);
    assert_eq!(n(&changed, "files_read"), 1, "{changed}");
    let new_pages = n(&changed, "data_blobs_added");
    assert!(
        (1..=20).contains(&new_pages),
        "{new_pages} new pages of {pages}: {changed}"
    );
    drop(c);

    let out = env
        .cmd()
        .args(["dump", "latest", db.to_str().unwrap()])
        .output()
        .unwrap();
    let dumped = env.path("dumped.db");
    fs::write(&dumped, &out.stdout).unwrap();
    let conn = Connection::open(&dumped).unwrap();
    let zeros: i64 = conn
        .query_row(
            "SELECT count(*) FROM items WHERE body = zeroblob(1000)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(zeros, 2, "the capture holds the WAL's committed changes");
}

#[test]
fn corrupt_databases_are_reported_and_sqlite_off_stores_raw_files() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let mut bogus = b"SQLite format 3\0".to_vec();
    bogus.extend_from_slice(&[0x10, 0x00, 1, 1]);
    bogus.extend_from_slice(&random_bytes(8192, 3));
    fs::write(src.join("broken.db"), &bogus).unwrap();
    fs::write(src.join("fine.txt"), "fine").unwrap();
    let out = env.run(&["backup", src.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("broken.db") && err.contains("SQLite"), "{err}");
    // Stored as it is, as a suspect capture (tests/sqlite_guard.rs).
    let ls = env.ok(&["ls", "latest", src.to_str().unwrap()]);
    assert!(ls.contains("fine.txt") && ls.contains("broken.db"), "{ls}");

    // --sqlite off: stored byte for byte, companions too.
    let db = env.path("raw/x.db");
    fs::create_dir(db.parent().unwrap()).unwrap();
    let c = make_db(&db, 100);
    let s = env.backup_json(&[db.parent().unwrap()], &["--sqlite", "off"]);
    assert_eq!(s["errors"].as_array().unwrap().len(), 0);
    let ls = env.ok(&["ls", "latest", db.parent().unwrap().to_str().unwrap()]);
    assert!(ls.contains("x.db-wal"), "raw mode keeps the WAL: {ls}");
    drop(c);
}

#[test]
fn a_database_locked_past_the_timeout_is_reported_and_the_rest_kept() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("journal.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA journal_mode=DELETE; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    fs::write(src.join("other.txt"), "other").unwrap();
    // An exclusive transaction blocks every reader until it ends.
    c.execute_batch("BEGIN EXCLUSIVE; INSERT INTO t VALUES (2);")
        .unwrap();
    let out = env.run(&["backup", "--sqlite-timeout", "1", src.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("journal.db") && err.contains("busy"), "{err}");
    c.execute_batch("COMMIT").unwrap();
    let ls = env.ok(&["ls", "latest", src.to_str().unwrap()]);
    assert!(
        ls.contains("other.txt") && !ls.contains("journal.db"),
        "{ls}"
    );
    // Once free, it is captured.
    let s = env.backup_json(&[&src], &[]);
    assert_eq!(s["errors"].as_array().unwrap().len(), 0, "{s}");
}

#[test]
fn restore_replaces_stale_companions_in_the_target() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("d.db");
    drop(make_db(&db, 300));
    env.backup_json(&[&src], &[]);
    let target = env.path("t");
    let restored_db = restored(&target, &db);
    fs::create_dir_all(restored_db.parent().unwrap()).unwrap();
    // A stale WAL from some older state would be replayed over the file.
    fs::write(
        restored_db.with_file_name("d.db-wal"),
        random_bytes(10_000, 1),
    )
    .unwrap();
    fs::write(
        restored_db.with_file_name("d.db-shm"),
        random_bytes(32_768, 2),
    )
    .unwrap();
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(!restored_db.with_file_name("d.db-wal").exists());
    // The integrity check does not disturb the restored file's metadata.
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        fs::metadata(&db).unwrap(),
        fs::metadata(&restored_db).unwrap(),
    );
    assert_eq!((a.mtime(), a.mtime_nsec()), (b.mtime(), b.mtime_nsec()));
    assert_eq!(a.mode(), b.mode());
    let (rows, ledger) = ledger_consistent(&restored_db);
    assert_eq!((rows, ledger), (300, 300));
}

/// FORMAT.md §5.5: a capture is pages 1 … N as one read transaction sees
/// them (the WAL folded in, page size × page count bytes), with page 1's
/// header as stored — still in WAL mode; restore writes those bytes as they
/// are, and its integrity check leaves neither `-wal` nor `-shm` behind.
#[test]
fn a_capture_is_the_page_images_with_the_wal_folded_in_and_its_header_in_wal_mode() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("w.db");
    // Kept open: its committed rows stay in the WAL, not checkpointed.
    let c = make_db(&db, 300);
    let wal = fs::metadata(src.join("w.db-wal")).unwrap().len();
    assert!(wal > 0, "the rows are in the WAL");
    let (page_size, pages): (i64, i64) = c
        .query_row(
            "SELECT (SELECT page_size FROM pragma_page_size), (SELECT page_count FROM pragma_page_count)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    env.backup_json(&[&src], &[]);
    let out = env
        .cmd()
        .args(["dump", "latest"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success());
    let capture = out.stdout;
    assert_eq!(capture.len() as i64, page_size * pages);
    assert!(
        (fs::metadata(&db).unwrap().len() as usize) < capture.len(),
        "the committed pages still in the WAL are part of the capture"
    );
    assert_eq!(&capture[..16], b"SQLite format 3\0");
    assert_eq!(
        (capture[18], capture[19]),
        (2, 2),
        "header still in WAL mode"
    );

    let target = env.path("t");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let restored_db = restored(&target, &db);
    let dir: Vec<String> = fs::read_dir(restored_db.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dir, ["w.db"], "no -wal or -shm after the integrity check");
    assert_eq!(fs::read(&restored_db).unwrap(), capture);
    assert_eq!(ledger_consistent(&restored_db), (300, 300));
    drop(c);
}

/// Restore writes a database captured page by page through one handle
/// held from its first page to its last, its pages arriving from several
/// readers in the packs' shuffled order, and falls back to reopening the
/// file for every page beyond the files it holds at once: every byte
/// lands where it belongs either way.
#[test]
fn databases_of_many_pages_restore_byte_for_byte_through_held_handles() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    // Larger than one planned read (8 MiB): its pages come in several
    // ranges, on several readers.
    make_plain_db(&src.join("big.db"), 5000, 1);
    // More multi-page databases than files held at once (64).
    for k in 0..72 {
        make_plain_db(&src.join(format!("small{k}.db")), 40, 2 + k);
    }
    let s = env.backup_json(&[&src], &[]);
    assert_eq!(s["errors"].as_array().unwrap().len(), 0, "{s}");
    let target = env.path("restore");
    let out = env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(out.matches("quick_check ok").count(), 73, "{out}");
    for e in fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(
            fs::read(restored(&target, &p)).unwrap(),
            fs::read(&p).unwrap(),
            "{}",
            p.display()
        );
    }
}

/// `restore` checks each database with `PRAGMA quick_check` by default (a
/// damaged b-tree page is found, reported and the restore exits 1), with
/// `integrity_check` under `--verify-db full`, and not at all with `off`.
#[test]
fn a_restored_database_is_checked_with_quick_check_unless_told_otherwise() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("d.db");
    make_plain_db(&db, 60, 7);
    env.ok(&["backup", src.to_str().unwrap()]);
    let restore = |name: &str, extra: &[&str]| {
        let target = env.path(name);
        let mut args = vec!["restore", "latest", "--target", target.to_str().unwrap()];
        args.extend_from_slice(extra);
        (env.run(&args), restored(&target, &db))
    };
    let (out, _) = restore("quick", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("d.db: quick_check ok"), "{text}");
    let (out, _) = restore("full", &["--verify-db", "full"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("d.db: integrity_check ok"), "{text}");
    let out = env.ok(&[
        "--json",
        "restore",
        "latest",
        "--target",
        env.path("json").to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["databases"][0]["check"], "quick_check", "{v}");
    assert_eq!(v["databases"][0]["integrity_check"], "ok", "{v}");

    // A b-tree page with a bad page type: SQLite opens the file (the
    // schema is intact) and the capture stores the page as it is.
    let mut bytes = fs::read(&db).unwrap();
    let page = 4096 * 20;
    bytes[page] = 0x55;
    fs::write(&db, &bytes).unwrap();
    // Stored, and a suspect capture already (tests/sqlite_guard.rs).
    let out = env.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let (out, file) = restore("damaged", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("fails PRAGMA quick_check"), "{err}");
    assert_eq!(
        fs::read(&file).unwrap(),
        bytes,
        "the file stays, for inspection"
    );
    let (out, file) = restore("unchecked", &["--verify-db", "off"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("quick_check"), "{text}");
    assert_eq!(fs::read(&file).unwrap(), bytes);
}

/// A WAL database with two hard links: SQLite keeps the log under the name
/// the application opened, so a capture through the other name misses
/// committed transactions. It did: both entries held the bare file, and
/// the backup left a `-wal` and `-shm` of its own next to the other name.
/// Now every entry stored holds the capture through the name with the log
/// (another link takes it over), a link that would be captured without it
/// is refused with why, and nothing is created in the source directory.
#[test]
fn a_hard_linked_wal_database_is_never_captured_without_its_log() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("a.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(x BLOB);",
    )
    .unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..300 {
        tx.execute("INSERT INTO t VALUES (?1)", [random_bytes(500, i)])
            .unwrap();
    }
    tx.commit().unwrap();
    // The application keeps it open: the rows are in the log only.
    fs::hard_link(&db, src.join("b.db")).unwrap();
    let out = env.run(&["--json", "backup", src.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    for e in v["errors"].as_array().unwrap() {
        assert!(
            e["path"].as_str().unwrap().ends_with("/b.db")
                && e["error"].as_str().unwrap().contains("hard links"),
            "{v}"
        );
    }
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(3),
        "{err}"
    );
    let mut names: Vec<String> = fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a.db", "a.db-shm", "a.db-wal", "b.db"]);

    let target = env.path("restore");
    env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let rows = |p: &Path| -> i64 {
        Connection::open(p)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    };
    let a = restored(&target, &db);
    assert_eq!(rows(&a), 300, "the capture holds the log's transactions");
    let b = restored(&target, &src.join("b.db"));
    if b.exists() {
        assert_eq!(fs::read(&b).unwrap(), fs::read(&a).unwrap());
    }
    drop(c);
}
