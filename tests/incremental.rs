//! Nightly incrementals: a parent snapshot lets unchanged files be skipped
//! without opening them, and every change that matters is still read.

mod common;

use std::fs::{self, File, FileTimes};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use common::*;

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn tree(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    for i in 0..30 {
        fs::write(
            src.join(format!("a/b/f{i}")),
            random_bytes(3000 + i, i as u64),
        )
        .unwrap();
    }
    fs::write(src.join("a/big"), random_bytes(12 << 20, 99)).unwrap();
    src
}

#[test]
fn an_unchanged_tree_is_not_read_again_and_adds_only_the_snapshot() {
    let env = Env::new();
    let src = tree(&env);
    let first = env.backup_json(&[&src], &[]);
    assert_eq!(n(&first, "files_read"), 31);
    assert!(first["parent"].is_null());

    let second = env.backup_json(&[&src], &[]);
    assert_eq!(second["parent"], first["snapshot_id"], "{second}");
    assert_eq!(n(&second, "files_read"), 0, "{second}");
    assert_eq!(n(&second, "bytes_read"), 0);
    assert_eq!(n(&second, "data_blobs_added"), 0);
    assert_eq!(n(&second, "files"), 31);
    // The tree is identical, so no tree is new either (the directories
    // above the source live in /tmp and may change; allow those three).
    assert!(n(&second, "tree_blobs_added") <= 3, "{second}");

    // The snapshot restores exactly like the first.
    let target = env.path("restore");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
}

#[test]
fn changes_are_detected_by_size_mtime_ctime_and_inode() {
    let env = Env::new();
    let src = tree(&env);
    env.backup_json(&[&src], &[]);

    // New content (and so new mtime): read, one new blob.
    fs::write(src.join("a/b/f3"), b"changed").unwrap();
    let s = env.backup_json(&[&src], &[]);
    assert_eq!(n(&s, "files_read"), 1, "{s}");
    assert_eq!(n(&s, "data_blobs_added"), 1);

    // Same size, same mtime, different content: only the ctime tells.
    let f = src.join("a/b/f4");
    let old_mtime = fs::metadata(&f).unwrap().modified().unwrap();
    let mut data = fs::read(&f).unwrap();
    data[0] ^= 0xff;
    fs::write(&f, &data).unwrap();
    File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_times(FileTimes::new().set_modified(old_mtime))
        .unwrap();
    let s = env.backup_json(&[&src], &["--ignore-ctime"]);
    assert_eq!(
        n(&s, "files_read"),
        0,
        "--ignore-ctime trusts size and mtime: {s}"
    );
    let s = env.backup_json(&[&src], &[]);
    assert_eq!(n(&s, "files_read"), 1, "the ctime changed: {s}");
    let out = env
        .cmd()
        .args(["dump", "latest", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.stdout, data);

    // A metadata-only change (chmod) changes the ctime: re-read, no new data.
    fs::set_permissions(src.join("a/big"), fs::Permissions::from_mode(0o600)).unwrap();
    let s = env.backup_json(&[&src], &[]);
    assert_eq!(n(&s, "files_read"), 1, "{s}");
    assert_eq!(n(&s, "data_blobs_added"), 0, "{s}");

    // A file replaced by another one (new inode) with identical metadata.
    let g = src.join("a/b/f5");
    let meta = fs::metadata(&g).unwrap();
    let content = fs::read(&g).unwrap();
    // Written beside it and renamed over it, so the inode number differs
    // (a freed inode could be reused at once).
    let tmp = src.join("a/b/f5.new");
    fs::write(&tmp, &content).unwrap();
    fs::rename(&tmp, &g).unwrap();
    let t = meta.modified().unwrap();
    File::options()
        .write(true)
        .open(&g)
        .unwrap()
        .set_times(FileTimes::new().set_modified(t))
        .unwrap();
    let s = env.backup_json(&[&src], &["--ignore-ctime"]);
    assert_eq!(n(&s, "files_read"), 1, "new inode: {s}");
    let s = env.backup_json(&[&src], &["--ignore-ctime", "--ignore-inode", "--force"]);
    assert_eq!(n(&s, "files_read"), 31, "--force reads everything: {s}");
}

#[test]
fn the_parent_is_the_latest_snapshot_of_this_host_and_these_paths() {
    let env = Env::new();
    let src = tree(&env);
    let other = env.path("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("x"), "x").unwrap();

    let a = env.backup_json(&[&src], &[]);
    // Another host, or another set of paths, does not serve as parent.
    let h = env.backup_json(&[&src], &["--host", "elsewhere"]);
    assert!(h["parent"].is_null(), "{h}");
    assert_eq!(n(&h, "files_read"), 31);
    let p = env.backup_json(&[&src, &other], &[]);
    assert!(p["parent"].is_null(), "{p}");
    // The same host and paths again: the first snapshot is the parent,
    // not the newer ones of another host or path set.
    let b = env.backup_json(&[&src], &[]);
    assert_eq!(b["parent"], a["snapshot_id"]);
    assert_eq!(n(&b, "files_read"), 0);
    // An explicit parent wins.
    let c = env.backup_json(
        &[&src],
        &[
            "--host",
            "elsewhere",
            "--parent",
            a["snapshot_id"].as_str().unwrap(),
        ],
    );
    assert_eq!(c["parent"], a["snapshot_id"]);
    assert_eq!(n(&c, "files_read"), 0);
}

#[test]
fn file_times_older_than_the_epoch_compare_exactly() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let f = src.join("old");
    fs::write(&f, "from the past").unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::new(1, 500);
    File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_times(FileTimes::new().set_modified(t))
        .unwrap();
    env.backup_json(&[&src], &[]);
    let s = env.backup_json(&[&src], &[]);
    assert_eq!(n(&s, "files_read"), 0, "{s}");
}

#[test]
fn stdin_and_command_output_are_stored_and_a_failing_command_writes_nothing() {
    let env = Env::new();
    let data = random_bytes(40 << 20, 8);
    let out = env
        .cmd()
        .args([
            "backup",
            "--json",
            "--stdin",
            "--stdin-filename",
            "dump.sql",
        ])
        .write_stdin(data.clone())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dumped = env
        .cmd()
        .args(["dump", "latest", "/dump.sql"])
        .output()
        .unwrap();
    assert_eq!(dumped.stdout, data, "stdin round-trips byte for byte");

    // A failing command: exit 1, its stderr shown, no snapshot.
    let out = env
        .cmd()
        .args([
            "backup",
            "--stdin-from-command",
            "--",
            "sh",
            "-c",
            "echo partial; echo broken >&2; exit 2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken") && err.contains("no snapshot"),
        "{err}"
    );
    assert!(env.ok(&["snapshots"]).contains("1 snapshot\n"));

    // A command combined with paths in one snapshot.
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), "file").unwrap();
    let out = env
        .cmd()
        .args([
            "backup",
            src.to_str().unwrap(),
            "--stdin-from-command",
            "--stdin-filename",
            "pg.sql",
            "--",
            "sh",
            "-c",
            "echo 'CREATE TABLE t(x);'",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ls = env.ok(&["ls", "latest"]);
    assert!(ls.lines().any(|l| l == "/pg.sql"), "{ls}");
    assert!(ls.contains(&format!("{}/f", src.display())), "{ls}");
    let sql = env
        .cmd()
        .args(["dump", "latest", "/pg.sql"])
        .output()
        .unwrap();
    assert_eq!(sql.stdout, b"CREATE TABLE t(x);\n");
    let snaps: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    let paths = &snaps.as_array().unwrap()[1]["paths"];
    assert_eq!(paths.as_array().unwrap().len(), 2, "{paths}");
}

#[test]
fn xattrs_of_unchanged_files_are_kept_and_changed_ones_are_read_again() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let (a, b) = (src.join("a"), src.join("b"));
    fs::write(&a, b"a").unwrap();
    fs::write(&b, b"b").unwrap();
    let set = |p: &std::path::Path, v: &[u8]| {
        rustix::fs::setxattr(p, "user.k", v, rustix::fs::XattrFlags::empty())
    };
    if set(&a, b"1").is_err() {
        eprintln!("skipped: no user xattrs on this filesystem");
        return;
    }
    set(&b, b"1").unwrap();
    env.backup_json(&[&src], &[]);
    // Only b's xattr changes, and so its ctime: the second backup reads b
    // again, not a, whose xattrs come from the parent snapshot.
    set(&b, b"2").unwrap();
    let second = env.backup_json(&[&src], &[]);
    assert_eq!(n(&second, "files_read"), 1);
    let target = env.path("r");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let get = |p: &std::path::Path| xattrs(p).get(&b"user.k"[..]).cloned();
    assert_eq!(get(&restored(&target, &a)), Some(b"1".to_vec()));
    assert_eq!(get(&restored(&target, &b)), Some(b"2".to_vec()));
}
