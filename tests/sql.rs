//! `cairn sql`: read-only queries against databases as snapshots hold
//! them, read page by page from the repository without restoring them.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn::backend::mem::CountingBackend;
use common::*;
use rusqlite::Connection;

/// `cairn backup --json PATH` and the new snapshot's short ID.
fn backup(env: &Env, path: &Path, extra: &[&str]) -> String {
    let s = env.backup_json(&[path], extra);
    assert_eq!(s["errors"].as_array().map_or(0, Vec::len), 0, "{s}");
    s["snapshot_id"].as_str().unwrap()[..8].to_string()
}

/// `cairn sql ARGS...`: (stdout, stderr, exit code).
fn sql(env: &Env, args: &[&str]) -> (String, String, i32) {
    let mut all = vec!["sql"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// A table of every kind of value `sqlite3` prints differently.
fn values_db(path: &Path) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, r REAL, s TEXT, b BLOB);
         INSERT INTO t VALUES (1, 1.5, 'x|y', NULL);
         INSERT INTO t VALUES (2, 1.0, NULL, x'41420043');
         INSERT INTO t VALUES (3, 1e20, 'he said \"hi\", ok', x'');
         INSERT INTO t VALUES (4, 0.1, 'line\ntwo', NULL);
         INSERT INTO t VALUES (5, NULL, '', NULL);
         INSERT INTO t VALUES (6, -2.25, ' lead', NULL);",
    )
    .unwrap();
}

#[test]
fn sql_prints_rows_as_sqlite3_does_in_each_output_mode() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("v.db");
    values_db(&db);
    let id = backup(&env, &src, &[]);
    let target = format!("{id}:{}", db.display());
    let q = "SELECT * FROM t ORDER BY id";

    let (out, err, code) = sql(&env, &[&target, q]);
    assert_eq!((err.as_str(), code), ("", 0));
    assert_eq!(
        out,
        "1|1.5|x|y|\n\
         2|1.0||AB\n\
         3|1.0e+20|he said \"hi\", ok|\n\
         4|0.1|line\ntwo|\n\
         5|||\n\
         6|-2.25| lead|\n"
    );
    // The same bytes as the sqlite3 shell prints from the source, if it is
    // installed.
    if have_program("sqlite3") {
        let shell = std::process::Command::new("sqlite3")
            .arg(&db)
            .arg(q)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&shell.stdout), out);
    }

    let (out, _, code) = sql(
        &env,
        &[
            &target,
            "--header",
            "SELECT id, s AS 'a|b' FROM t WHERE id < 3",
        ],
    );
    assert_eq!((out.as_str(), code), ("id|a|b\n1|x|y\n2|\n", 0));

    let (out, _, code) = sql(&env, &[&target, "--csv", "--header", q]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "id,r,s,b\n\
         1,1.5,x|y,\n\
         2,1.0,,AB\n\
         3,1.0e+20,\"he said \"\"hi\"\", ok\",\"\"\n\
         4,0.1,\"line\ntwo\",\n\
         5,,\"\",\n\
         6,-2.25,\" lead\",\n"
    );

    let (out, _, code) = sql(&env, &[&target, "--json", q]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "{\"id\":1,\"r\":1.5,\"s\":\"x|y\",\"b\":null}\n\
         {\"id\":2,\"r\":1.0,\"s\":null,\"b\":{\"hex\":\"41420043\"}}\n\
         {\"id\":3,\"r\":1e+20,\"s\":\"he said \\\"hi\\\", ok\",\"b\":{\"hex\":\"\"}}\n\
         {\"id\":4,\"r\":0.1,\"s\":\"line\\ntwo\",\"b\":null}\n\
         {\"id\":5,\"r\":null,\"s\":\"\",\"b\":null}\n\
         {\"id\":6,\"r\":-2.25,\"s\":\" lead\",\"b\":null}\n"
    );

    // No rows: nothing at all, not even a header (as sqlite3).
    let (out, err, code) = sql(
        &env,
        &[&target, "--header", "SELECT * FROM t WHERE id > 99"],
    );
    assert_eq!((out.as_str(), err.as_str(), code), ("", "", 0));

    // `latest` says which snapshot it chose on stderr, as restore does.
    let (out, err, code) = sql(
        &env,
        &[
            &format!("latest:{}", db.display()),
            "SELECT count(*) FROM t",
        ],
    );
    assert_eq!((out.as_str(), code), ("6\n", 0));
    assert!(
        err.starts_with(&format!("using snapshot {id} of ")),
        "{err}"
    );
    // --as-of picks the newest snapshot at or before the time.
    let (out, err, code) = sql(
        &env,
        &[
            &format!("latest:{}", db.display()),
            "--as-of",
            "2100-01-01",
            "SELECT 2",
        ],
    );
    assert_eq!((out.as_str(), code), ("2\n", 0));
    assert!(
        err.starts_with(&format!("using snapshot {id} of ")),
        "{err}"
    );
    let (out, err, code) = sql(
        &env,
        &[
            &format!("latest:{}", db.display()),
            "--as-of",
            "2000-01-01",
            "SELECT 1",
        ],
    );
    assert_eq!((out.as_str(), code), ("", 1), "no snapshot that old: {err}");

    // Options that exclude each other.
    let (_, err, code) = sql(&env, &[&target, "--csv", "--json", q]);
    assert_eq!(
        (err.as_str(), code),
        ("cairn: --csv and --json exclude each other: give one\n", 1)
    );
    let (_, err, code) = sql(&env, &[&id, q]);
    assert_eq!(
        (err.as_str(), code),
        (
            format!(
                "cairn: \"{id}\" names no database: give SNAPSHOT:PATH (e.g. \
                 latest:/srv/app/db.sqlite3)\n"
            )
            .as_str(),
            1
        )
    );
}

#[test]
fn a_statement_that_would_write_is_refused_and_nothing_is_written() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("v.db");
    values_db(&db);
    let id = backup(&env, &src, &[]);
    let target = format!("{id}:{}", db.display());
    let before = env.data_bytes();
    let refusal = format!(
        "cairn: `cairn sql` only reads: this statement would change {}; nothing was run \
         (restore the database to change it)\n",
        db.display()
    );
    for q in [
        "DELETE FROM t",
        "UPDATE t SET s = 'x'",
        "INSERT INTO t(id) VALUES (9)",
        "DROP TABLE t",
        "CREATE TABLE u(a)",
        "CREATE TEMP TABLE u(a)",
        "PRAGMA user_version = 7",
    ] {
        let (out, err, code) = sql(&env, &[&target, q]);
        assert_eq!(
            (out.as_str(), err.as_str(), code),
            ("", refusal.as_str(), 1),
            "{q}"
        );
    }
    // Nothing reaches the local filesystem either.
    let copy = env.path("copy.db");
    let (_, err, code) = sql(
        &env,
        &[&target, &format!("VACUUM INTO '{}'", copy.display())],
    );
    assert_eq!((err.as_str(), code), (refusal.as_str(), 1));
    let (_, err, code) = sql(
        &env,
        &[&target, &format!("ATTACH '{}' AS x", copy.display())],
    );
    assert_eq!(
        (err.as_str(), code),
        (
            format!(
                "cairn: {}: too many attached databases - max 0\n",
                db.display()
            )
            .as_str(),
            1
        )
    );
    assert!(!copy.exists());
    let (_, err, code) = sql(&env, &[&target, "SELECT 1; DELETE FROM t"]);
    assert_eq!(
        (err.as_str(), code),
        (
            format!(
                "cairn: {}: give one statement (the query holds more than one)\n",
                db.display()
            )
            .as_str(),
            1
        )
    );
    assert_eq!(env.data_bytes(), before);
    let (out, _, code) = sql(&env, &[&target, "SELECT count(*) FROM t"]);
    assert_eq!((out.as_str(), code), ("6\n", 0));
}

#[test]
fn a_snapshot_path_that_is_not_a_database_is_a_clear_error() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(
        src.join("notes.txt"),
        b"not a database, just text\n".repeat(40),
    )
    .unwrap();
    // A file that claims the SQLite magic but is too short to be one.
    fs::write(src.join("short.db"), b"SQLite format 3\0").unwrap();
    // Random bytes the length of a few pages.
    fs::write(src.join("noise.db"), random_bytes(8192, 3)).unwrap();
    let id = backup(&env, &src, &[]);
    let at = |p: &str| format!("{id}:{}", src.join(p).display());
    for name in ["notes.txt", "short.db", "noise.db"] {
        let (out, err, code) = sql(&env, &[&at(name), "SELECT 1"]);
        assert_eq!(
            (out.as_str(), err, code),
            (
                "",
                format!(
                    "cairn: {} is not a SQLite database (it does not start with a SQLite \
                     header)\n",
                    src.join(name).display()
                ),
                1
            )
        );
    }
    let (_, err, code) = sql(&env, &[&at("sub"), "SELECT 1"]);
    assert_eq!(
        (err, code),
        (
            format!(
                "cairn: {} is a directory in the snapshot, not a database file\n",
                src.join("sub").display()
            ),
            1
        )
    );
    let (_, err, code) = sql(&env, &[&at("missing.db"), "SELECT 1"]);
    assert_eq!(
        (err, code),
        (
            format!(
                "cairn: {} is not in the snapshot\n",
                src.join("missing.db").display()
            ),
            1
        )
    );
}

/// `PATH/gen_db.py`, the benchmark database generator, if present.
fn generator() -> Option<PathBuf> {
    let dir = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench"));
    let p = dir.join("gen_db.py");
    p.exists().then_some(p)
}

/// The Vaultwarden-like benchmark database at `scale`, in `dir`.
fn bench_db(dir: &Path, scale: &str) -> Option<PathBuf> {
    let Some(generator) = generator() else {
        skipped("the benchmark generator gen_db.py is not found (set BENCH_DIR)");
        return None;
    };
    if !require("bench_db", &["python3"], false) {
        return None;
    }
    fs::create_dir_all(dir).unwrap();
    let db = dir.join("vault.sqlite3");
    let st = std::process::Command::new("python3")
        .arg(generator)
        .arg(&db)
        .args(["--scale", scale, "--seed", "7"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    Some(db)
}

/// The rows of `q` on the source database, as `cairn sql` prints them for
/// text and integer columns.
fn source_rows(db: &Path, q: &str) -> String {
    let c = Connection::open(db).unwrap();
    let mut s = c.prepare(q).unwrap();
    let n = s.column_count();
    let mut out = String::new();
    let mut rows = s.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        let cells: Vec<String> = (0..n)
            .map(|i| match r.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Null => String::new(),
                rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        out.push_str(&cells.join("|"));
        out.push('\n');
    }
    out
}

/// A point query on a database of thousands of pages reads a handful of
/// page blobs (and the level 0 chunk lists they are in), not the database:
/// counted on the backend, each pack read a request.
#[test]
fn a_point_query_reads_only_the_pages_it_touches() {
    let env = Env::new();
    let Some(db) = bench_db(&env.path("bench"), "0.01") else {
        return;
    };
    let id = backup(&env, db.parent().unwrap(), &[]);
    let pages: i64 = Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let pages = pages as u64;
    assert!(pages > 2000, "{pages} pages");
    let uuid: String = Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT uuid FROM ciphers ORDER BY uuid LIMIT 1 OFFSET 400",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let q = format!("SELECT uuid, atype, created_at FROM ciphers WHERE uuid = '{uuid}'");

    let local = Arc::new(cairn::backend::local::LocalBackend::new(&env.repo));
    let counting = Arc::new(CountingBackend::new(local, 1));
    let mut repo = cairn::repo::Repository::open(counting.clone(), PASSWORD.as_bytes()).unwrap();
    repo.load_index().unwrap();
    let (_, snap) = repo.find_snapshot(&id).unwrap();
    counting.take_pack_reads();
    let db_path = db.to_str().unwrap();
    let sdb = cairn::ops::sql::open_path(&repo, &snap.tree, db_path).unwrap();
    let mut got = String::new();
    let rows = sdb
        .query(&q, &mut |_, row| {
            let cells: Vec<String> = row
                .iter()
                .map(|c| match c {
                    cairn::ops::sql::Cell::Integer(i) => i.to_string(),
                    cairn::ops::sql::Cell::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    other => format!("{other:?}"),
                })
                .collect();
            got.push_str(&cells.join("|"));
            got.push('\n');
            Ok(())
        })
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(got, source_rows(&db, &q));
    let blobs = sdb.image().blobs_read();
    let requests = counting.take_pack_reads();
    // Page 1 (header and schema), the index's and the table's B-tree
    // paths: a handful of pages.
    assert!(blobs <= 10, "{blobs} page blobs read for a point query");
    // Each page one ranged read, plus at most one level 0 list (a tree
    // blob) per page and the list levels above them, read at open (about
    // one list per 361 pages; their cuts depend on the repository's ID
    // key).
    assert!(
        requests <= 2 * blobs + pages / 100,
        "{requests} pack reads for {blobs} pages of {pages}"
    );
    assert!(requests * 20 < pages, "{requests} reads of {pages} pages");

    // The same answer from the command line.
    let (out, err, code) = sql(&env, &[&format!("{id}:{db_path}"), &q]);
    assert_eq!((out, err, code), (source_rows(&db, &q), String::new(), 0));
    // And whole-table answers agree with SQLite on the source.
    for q in [
        "SELECT count(*), sum(atype), min(created_at) FROM ciphers",
        "SELECT user_uuid, count(*) FROM ciphers GROUP BY user_uuid ORDER BY 2 DESC, 1 LIMIT 5",
        "SELECT event_type, count(*) FROM event GROUP BY 1 ORDER BY 1",
        "PRAGMA integrity_check",
    ] {
        let (out, _, code) = sql(&env, &[&format!("{id}:{db_path}"), q]);
        assert_eq!((out, code), (source_rows(&db, q), 0), "{q}");
    }
}

/// A database stored as a plain file (capture off) is read through its
/// content-defined chunks, by cumulative offsets.
#[test]
fn a_database_stored_as_a_plain_file_is_read_through_its_chunks() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("plain.db");
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE items(id INTEGER PRIMARY KEY, body BLOB)")
            .unwrap();
        let tx = c.unchecked_transaction().unwrap();
        for i in 0..3000u64 {
            tx.execute(
                "INSERT INTO items(body) VALUES (?1)",
                [random_bytes(700, i)],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let id = backup(&env, &src, &["--sqlite", "off"]);
    let target = format!("{id}:{}", db.display());
    let q =
        "SELECT count(*), sum(length(body)), hex(substr(body, 1, 4)) FROM items WHERE id = 1777";
    let (out, err, code) = sql(&env, &[&target, q]);
    let expect = {
        let c = Connection::open(&db).unwrap();
        let (n, s, h): (i64, i64, String) = c
            .query_row(q, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        format!("{n}|{s}|{h}\n")
    };
    assert_eq!((out, err, code), (expect, String::new(), 0));
    let (out, _, code) = sql(&env, &[&target, "PRAGMA integrity_check"]);
    assert_eq!((out.as_str(), code), ("ok\n", 0));
}

/// A WAL database under a live writer is captured with its header still
/// in WAL mode and its committed frames folded in; `cairn sql` serves it
/// as the one committed state the capture holds, with no `-wal` to read.
#[test]
fn a_wal_database_under_a_live_writer_is_queried_as_one_committed_state() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("live.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE items(id INTEGER PRIMARY KEY, body BLOB);
         CREATE TABLE ledger(n INTEGER);
         INSERT INTO ledger VALUES (0);",
    )
    .unwrap();
    let writer = LiveWriter::start(&db, Duration::ZERO, |tx, n| {
        for k in 0..20 {
            tx.execute(
                "INSERT INTO items(body) VALUES (?1)",
                [random_bytes(500, n * 20 + k)],
            )
            .unwrap();
        }
        tx.execute(
            "DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT 3)",
            [],
        )
        .unwrap();
        tx.execute("UPDATE ledger SET n = (SELECT count(*) FROM items)", [])
            .unwrap();
    });
    // Wait for commits to be in the WAL (the writer holds it open, so it
    // is not checkpointed away), then back up while the writer goes on.
    writer.wait_for(30);
    let id = backup(&env, &src, &[]);
    writer.stop();
    drop(c);
    let target = format!("{id}:{}", db.display());

    // The stored capture's header still says WAL.
    let dump = env.cmd().args(["dump", &id]).arg(&db).output().unwrap();
    assert!(dump.status.success());
    assert_eq!((dump.stdout[18], dump.stdout[19]), (2, 2));

    let (out, err, code) = sql(
        &env,
        &[
            &target,
            "SELECT (SELECT count(*) FROM items) = (SELECT n FROM ledger), \
             (SELECT count(*) FROM items) >= 30 * 17",
        ],
    );
    assert_eq!((out.as_str(), err.as_str(), code), ("1|1\n", "", 0));
    let (out, _, code) = sql(&env, &[&target, "PRAGMA integrity_check"]);
    assert_eq!((out.as_str(), code), ("ok\n", 0));
    // Nothing was written next to the source or anywhere in the repository
    // directory by the queries.
    let names: Vec<String> = fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.starts_with("live.db")), "{names:?}");
}

/// A damaged page blob is reported as the repository's integrity error
/// naming the blob, not as SQLite's "disk I/O error".
#[test]
fn a_damaged_page_is_an_integrity_error_not_a_disk_io_error() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("v.db");
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)")
            .unwrap();
        for i in 0..60u64 {
            c.execute("INSERT INTO t(body) VALUES (?1)", [random_bytes(1000, i)])
                .unwrap();
        }
    }
    let id = backup(&env, &src, &[]);
    // Flip a byte in the middle of each data pack (the pages, random
    // bytes, do not compress; the tree packs that lead to them are small).
    let mut damaged = 0;
    for p in files_below(&env.repo.join("data")) {
        let mut bytes = fs::read(&p).unwrap();
        if bytes.len() > 32 << 10 {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x55;
            fs::write(&p, &bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    let (out, err, code) = sql(
        &env,
        &[&format!("{id}:{}", db.display()), "SELECT count(*) FROM t"],
    );
    assert_eq!((out.as_str(), code), ("", 1));
    assert!(!err.contains("disk I/O error"), "{err}");
    assert!(
        err.starts_with(&format!(
            "cairn: cannot read {} from the snapshot: page ",
            db.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("data blob") && err.contains("authentication failed"),
        "{err}"
    );
}

/// Two captures of one database with known changes: 3 rows inserted, 2
/// updated, 2 deleted in `items` (INTEGER PRIMARY KEY), one updated in
/// `tags` (WITHOUT ROWID, a two-column key), a keyless `log`, a table
/// added and one dropped.
fn two_captures(env: &Env) -> (PathBuf, String, String) {
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("app.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, n REAL, b BLOB);
         CREATE TABLE tags(owner TEXT, tag TEXT, note TEXT, PRIMARY KEY (owner, tag)) WITHOUT ROWID;
         CREATE TABLE log(line TEXT);
         CREATE TABLE gone(id INTEGER PRIMARY KEY);
         INSERT INTO gone VALUES (1), (2);",
    )
    .unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 1..=2000i64 {
        tx.execute(
            "INSERT INTO items VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                i,
                format!("item {i}"),
                i as f64 / 4.0,
                random_bytes(200, i as u64)
            ],
        )
        .unwrap();
    }
    tx.execute_batch(
        "INSERT INTO tags VALUES ('a', 'x', 'one'), ('a', 'y', 'two'), ('b', 'x', NULL);
         INSERT INTO log VALUES ('start');",
    )
    .unwrap();
    tx.commit().unwrap();
    let a = backup(env, &src, &[]);
    c.execute_batch(
        "INSERT INTO items VALUES (2001, 'new one', 1.5, NULL), (2002, 'new two', NULL, x'00'), (2003, NULL, NULL, NULL);
         UPDATE items SET name = 'renamed' WHERE id = 17;
         UPDATE items SET b = x'0102' WHERE id = 1500;
         UPDATE items SET name = name WHERE id = 3;
         DELETE FROM items WHERE id IN (5, 1999);
         UPDATE tags SET note = NULL WHERE owner = 'a' AND tag = 'y';
         INSERT INTO log VALUES ('again');
         DROP TABLE gone;
         CREATE TABLE fresh(k TEXT PRIMARY KEY);
         INSERT INTO fresh VALUES ('z');",
    )
    .unwrap();
    let b = backup(env, &src, &[]);
    drop(c);
    (db, a, b)
}

#[test]
fn diff_rows_counts_inserted_updated_and_deleted_rows_by_primary_key() {
    let env = Env::new();
    let (db, a, b) = two_captures(&env);
    let out = env.ok(&["diff", &a, &b, "--rows"]);
    assert_eq!(
        out,
        format!(
            "{}\n  \
             fresh: table added (1 rows)\n  \
             gone: table removed (2 rows)\n  \
             items: 3 inserted, 2 updated, 2 deleted (by id)\n  \
             log: no primary key, rows not compared (1 rows -> 2)\n  \
             tags: 0 inserted, 1 updated, 0 deleted (by owner, tag)\n\
             \n{a} -> {b}: 1 changed database compared, 3 rows inserted, 3 updated, 2 deleted\n",
            db.display()
        )
    );
    // The same for the path named.
    let named = env.ok(&["diff", &a, &b, "--rows", db.to_str().unwrap()]);
    assert_eq!(named, out);

    // --table lists the changed rows' keys, inserted, updated, deleted.
    let out = env.ok(&["diff", &a, &b, "--rows", "--table", "items", "-q"]);
    assert_eq!(
        out,
        format!(
            "{}\n  items: 3 inserted, 2 updated, 2 deleted (by id)\n    \
             + 2001\n    + 2002\n    + 2003\n    M 17\n    M 1500\n    - 5\n    - 1999\n",
            db.display()
        )
    );
    let out = env.ok(&["diff", &a, &b, "--rows", "--table", "tags", "-q"]);
    assert_eq!(
        out,
        format!(
            "{}\n  tags: 0 inserted, 1 updated, 0 deleted (by owner, tag)\n    M a|y\n",
            db.display()
        )
    );

    // With --json, old and new values.
    let out = env.ok(&["diff", &a, &b, "--rows", "--table", "items", "--json"]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1 + 7 + 1, "{out}");
    assert_eq!(lines[0]["message_type"], "table");
    assert_eq!(lines[0]["status"], "compared");
    assert_eq!(lines[0]["key"], serde_json::json!(["id"]));
    assert_eq!(
        (lines[0]["inserted"].clone(), lines[0]["updated"].clone()),
        (3.into(), 2.into())
    );
    let r = &lines[4];
    assert_eq!(r["change"], "updated");
    assert_eq!(r["key"], serde_json::json!([17]));
    assert_eq!(r["old"]["name"], "item 17");
    assert_eq!(r["new"]["name"], "renamed");
    assert_eq!(r["new"]["n"], 4.25);
    let del = &lines[6];
    assert_eq!(
        (del["change"].as_str(), del["new"].is_null()),
        (Some("deleted"), true)
    );
    assert_eq!(del["old"]["id"], 5);
    let ins = &lines[2];
    assert_eq!(ins["new"]["b"], serde_json::json!({"hex": "00"}));
    assert_eq!(lines[8]["message_type"], "summary");

    // A table in neither capture is an error.
    let out = env.run(&["diff", &a, &b, "--rows", "--table", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "cairn: {} has no table \"nope\" in either snapshot\n",
            db.display()
        )
    );
    // A named path that is not a database in the snapshots.
    let notes = db.with_file_name("notes.txt");
    fs::write(&notes, b"plain text, not a database\n".repeat(30)).unwrap();
    let c3 = backup(&env, db.parent().unwrap(), &[]);
    let out = env.run(&["diff", &c3, &c3, "--rows", notes.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "cairn: {} is not a SQLite database (it does not start with a SQLite header)\n",
            notes.display()
        )
    );
    // --table without --rows is a usage error.
    let out = env.run(&["diff", &a, &b, "--table", "items"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Below the statement check: a connection whose `query_only` is turned
/// off still cannot write, since it was opened read-only over a VFS whose
/// writes fail; the repository is unchanged.
#[test]
fn the_connection_cannot_write_even_without_query_only() {
    let env = Env::new();
    let src = env.path("app");
    fs::create_dir(&src).unwrap();
    let db = src.join("v.db");
    values_db(&db);
    let id = backup(&env, &src, &[]);
    let before = env.data_bytes();
    let local = Arc::new(cairn::backend::local::LocalBackend::new(&env.repo));
    let mut repo = cairn::repo::Repository::open(local, PASSWORD.as_bytes()).unwrap();
    repo.load_index().unwrap();
    let (_, snap) = repo.find_snapshot(&id).unwrap();
    let sdb = cairn::ops::sql::open_path(&repo, &snap.tree, db.to_str().unwrap()).unwrap();
    let conn = sdb.connection();
    conn.execute_batch("PRAGMA query_only = 0").unwrap();
    let e = conn
        .execute("INSERT INTO t(id) VALUES (99)", [])
        .unwrap_err();
    assert!(e.to_string().contains("readonly"), "{e}");
    let e = conn.execute_batch("CREATE TEMP TABLE x(a)");
    // Temporary tables live in memory, apart from the database: allowed
    // once query_only is off, and nothing reaches the image.
    assert!(e.is_ok(), "{e:?}");
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 6);
    drop(sdb);
    assert_eq!(env.data_bytes(), before);
}
