//! Point in time: `--as-of`, host/tag/path filters, and `diff`.

mod common;

use std::fs;

use common::*;

fn snap_id(v: &serde_json::Value) -> String {
    v["snapshot_id"].as_str().unwrap()[..8].to_string()
}

#[test]
fn as_of_picks_the_newest_snapshot_at_or_before_a_time_across_hosts_and_tags() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let f = src.join("state.txt");
    let mut ids = Vec::new();
    for (day, host, tag) in [
        ("2026-11-18 03:00", "vault", "nightly"),
        ("2026-11-19 03:00", "vault", "nightly"),
        ("2026-11-19 12:00", "other", "nightly"),
        ("2026-11-20 03:00", "vault", "manual"),
        ("2026-11-21 03:00", "vault", "nightly"),
    ] {
        fs::write(&f, format!("state of {day} on {host}")).unwrap();
        let v = env.backup_json(&[&src], &["--time", day, "--host", host, "--tag", tag]);
        ids.push(snap_id(&v));
    }
    let which = |extra: &[&str]| -> String {
        let mut args = vec!["dump", "latest", f.to_str().unwrap()];
        args.extend_from_slice(extra);
        env.ok(&args)
    };
    assert_eq!(which(&[]), "state of 2026-11-21 03:00 on vault");
    assert_eq!(
        which(&["--as-of", "2026-11-20 04:00"]),
        "state of 2026-11-20 03:00 on vault"
    );
    assert_eq!(
        which(&["--as-of", "2026-11-20 02:59"]),
        "state of 2026-11-19 12:00 on other"
    );
    assert_eq!(
        which(&["--as-of", "2026-11-20 02:59", "--host", "vault"]),
        "state of 2026-11-19 03:00 on vault"
    );
    assert_eq!(
        which(&[
            "--as-of",
            "2026-11-20",
            "--tag",
            "nightly",
            "--host",
            "vault"
        ]),
        "state of 2026-11-19 03:00 on vault"
    );
    assert_eq!(
        which(&["--tag", "manual"]),
        "state of 2026-11-20 03:00 on vault"
    );
    assert_eq!(
        which(&["--path", src.to_str().unwrap(), "--host", "other"]),
        "state of 2026-11-19 12:00 on other"
    );
    let out = env.run(&[
        "dump",
        "latest",
        f.to_str().unwrap(),
        "--as-of",
        "2020-01-01",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no snapshot matches"));
    let out = env.run(&["ls", "latest", "--as-of", "the day before yesterday"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the time"));

    // Relative times: everything above is years from "now" in either
    // direction only if the clock is wrong; "1 second ago" sees them all.
    assert!(!which(&["--as-of", "1 second ago"]).is_empty());

    // snapshots filters list the same selection.
    let listed: serde_json::Value = serde_json::from_str(&env.ok(&[
        "snapshots",
        "--json",
        "--host",
        "vault",
        "--tag",
        "nightly",
        "--as-of",
        "2026-11-20",
    ]))
    .unwrap();
    let short: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["short_id"].as_str().unwrap())
        .collect();
    assert_eq!(short, vec![ids[0].as_str(), ids[1].as_str()]);

    // restore honours the filter too.
    let t = env.path("t");
    env.ok(&[
        "restore",
        &format!("latest:{}", src.display()),
        "--target",
        t.to_str().unwrap(),
        "--as-of",
        "2026-11-18 23:00",
    ]);
    assert_eq!(
        fs::read_to_string(t.join("state.txt")).unwrap(),
        "state of 2026-11-18 03:00 on vault"
    );
}

#[test]
fn diff_lists_added_removed_modified_and_database_pages() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("keep/deep")).unwrap();
    fs::write(src.join("keep/deep/same"), "same").unwrap();
    fs::write(src.join("gone.txt"), "bye").unwrap();
    fs::write(src.join("grows.txt"), "small").unwrap();
    fs::write(src.join("meta.txt"), "meta").unwrap();
    let db = src.join("app.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE t(x BLOB);").unwrap();
    for i in 0..300 {
        c.execute("INSERT INTO t VALUES (?1)", [random_bytes(1000, i)])
            .unwrap();
    }
    let a = snap_id(&env.backup_json(&[&src], &[]));

    fs::remove_file(src.join("gone.txt")).unwrap();
    fs::write(src.join("grows.txt"), "much larger content").unwrap();
    fs::write(src.join("new.txt"), "hello").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(src.join("meta.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    c.execute("UPDATE t SET x = zeroblob(1000) WHERE rowid = 5", [])
        .unwrap();
    drop(c);
    let b = snap_id(&env.backup_json(&[&src], &[]));

    let out = env.ok(&["diff", &a, &b]);
    let s = src.display();
    assert!(out.contains(&format!("-    {s}/gone.txt")), "{out}");
    assert!(out.contains(&format!("+    {s}/new.txt")), "{out}");
    assert!(out.contains(&format!("M    {s}/grows.txt")), "{out}");
    assert!(out.contains(&format!("U    {s}/meta.txt")), "{out}");
    assert!(
        out.contains(&format!("M    {s}/app.db  (SQLite database: ")),
        "{out}"
    );
    assert!(
        !out.contains("same"),
        "unchanged entries are not listed: {out}"
    );

    let json = env.ok(&["diff", "--json", &a, &b]);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &serde_json::Value| l["message_type"] == "change")
        .collect();
    let db_line = lines
        .iter()
        .find(|l| l["path"].as_str().unwrap().ends_with("app.db"))
        .unwrap();
    let changed = db_line["sqlite_pages_changed"].as_u64().unwrap();
    assert!((1..=3).contains(&changed), "{db_line}");
    // Identical snapshots have no differences.
    let same = env.ok(&["diff", "--json", &b, &b]);
    let same: Vec<serde_json::Value> = same
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(same.len(), 1, "{same:?}");
    assert_eq!(same[0]["message_type"], "summary");
    assert_eq!(same[0]["added"], 0);
    assert_eq!(same[0]["modified"], 0);
}
