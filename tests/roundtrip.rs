//! A tree with every kind of entry and awkward metadata survives backup and
//! restore byte for byte, with its metadata.

mod common;

use std::fs::{self, File, FileTimes};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;

fn set_mtime(p: &Path, secs: u64, nanos: u32) {
    let t = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: secs as i64,
            tv_nsec: i64::from(nanos),
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: secs as i64,
            tv_nsec: i64::from(nanos),
        },
    };
    if fs::symlink_metadata(p).unwrap().file_type().is_symlink() {
        rustix::fs::utimensat(
            rustix::fs::CWD,
            p,
            &ts,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    } else {
        let f = File::open(p).unwrap();
        f.set_times(FileTimes::new().set_modified(t).set_accessed(t))
            .unwrap();
    }
}

/// Build the awkward tree; returns whether xattrs are supported here.
fn build_tree(src: &Path) -> bool {
    fs::create_dir_all(src.join("sub/empty-dir")).unwrap();
    fs::write(src.join("naïve ☃ файл.txt"), "unicode name\n").unwrap();
    fs::write(src.join("日本語"), "more unicode\n").unwrap();
    fs::write(src.join(name(b"bad-\xff\xfe-utf8")), "non-UTF-8 name\n").unwrap();
    fs::write(src.join("name with spaces"), "spaces\n").unwrap();
    fs::write(src.join("line\nbreak"), "newline in the name\n").unwrap();
    fs::write(src.join("empty"), "").unwrap();
    fs::write(src.join("sub/empty too"), "").unwrap();

    // 200 MB: random half, text half, and a repeat of an earlier block.
    let mut big = random_bytes(100 << 20, 1);
    let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog 0123456789\n"
        .iter()
        .copied()
        .cycle()
        .take(96 << 20)
        .collect();
    big.extend_from_slice(&text);
    big.extend_from_slice(&random_bytes(4 << 20, 1));
    fs::write(src.join("sub/big.bin"), &big).unwrap();
    drop(big);

    // 100 levels of nesting.
    let mut deep = src.join("deep");
    for i in 0..100 {
        deep.push(format!("d{i:02}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("leaf.txt"), "at the bottom\n").unwrap();

    symlink("does/not/exist", src.join("dangling")).unwrap();
    symlink("sub", src.join("dirlink")).unwrap();
    symlink(name(b"/abs/\xff/target"), src.join("abs-link")).unwrap();

    fs::write(src.join("hl1"), "hard linked content\n").unwrap();
    fs::hard_link(src.join("hl1"), src.join("sub/hl2")).unwrap();
    fs::hard_link(src.join("hl1"), src.join("hl3")).unwrap();

    let sparse = File::create(src.join("sparse.img")).unwrap();
    sparse.set_len(64 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    sparse
        .write_all_at(&random_bytes(4096, 9), 32 << 20)
        .unwrap();
    drop(sparse);

    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();

    let xattrs_ok = rustix::fs::setxattr(
        src.join("hl1"),
        "user.cairn",
        b"extended attribute value",
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();

    // Odd modes.
    let modes: [(&str, u32); 5] = [
        ("setuid", 0o4755),
        ("private", 0o600),
        ("readonly", 0o444),
        ("nothing", 0o000),
        ("group-write", 0o664),
    ];
    for (n, m) in modes {
        if m == 0 && !is_root() {
            // Only root can back up a file nobody may read.
            continue;
        }
        fs::write(src.join(n), format!("mode {m:o}\n")).unwrap();
        fs::set_permissions(src.join(n), fs::Permissions::from_mode(m)).unwrap();
    }
    fs::create_dir(src.join("sticky")).unwrap();
    fs::write(src.join("sticky/in-sticky"), "x").unwrap();
    fs::set_permissions(src.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir(src.join("ro-dir")).unwrap();
    fs::write(src.join("ro-dir/inside"), "in a read-only dir\n").unwrap();

    // Nanosecond mtimes on everything, children before parents.
    let mut all = walk(src);
    all.reverse();
    for (i, p) in all.iter().enumerate() {
        if fs::symlink_metadata(p).unwrap().file_type().is_fifo() {
            continue;
        }
        set_mtime(p, 1_600_000_000 + i as u64 * 3_600, 123_456_789 + i as u32);
    }
    fs::set_permissions(src.join("ro-dir"), fs::Permissions::from_mode(0o555)).unwrap();
    set_mtime(&src.join("ro-dir"), 1_500_000_000, 1);
    xattrs_ok
}

use std::os::unix::fs::FileTypeExt;

#[test]
fn awkward_tree_round_trips_with_metadata() {
    let env = Env::new();
    let src = env.path("src");
    let xattrs_ok = build_tree(&src);
    if !xattrs_ok {
        eprintln!("note: this filesystem does not support user xattrs; not testing them");
    }
    let summary = env.backup_json(&[&src], &[]);
    assert_eq!(summary["errors"].as_array().unwrap().len(), 0, "{summary}");

    let target = env.path("restore");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let out = restored(&target, &src);
    assert_same_tree(&src, &out);

    // Hard links come back as one inode with three names.
    let ino = |p: &str| fs::metadata(out.join(p)).unwrap().ino();
    assert_eq!(ino("hl1"), ino("sub/hl2"));
    assert_eq!(ino("hl1"), ino("hl3"));
    assert_eq!(fs::metadata(out.join("hl1")).unwrap().nlink(), 3);

    // The sparse file is sparse again.
    let m = fs::metadata(out.join("sparse.img")).unwrap();
    assert_eq!(m.len(), 64 << 20);
    assert!(
        m.blocks() * 512 < 8 << 20,
        "restored sparse file uses {} blocks",
        m.blocks()
    );

    if xattrs_ok {
        assert_eq!(
            xattrs(&out.join("hl1"))
                .get(&b"user.cairn"[..])
                .map(Vec::as_slice),
            Some(&b"extended attribute value"[..])
        );
    }
}

#[test]
fn partial_restores_dump_and_listings() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    fs::write(src.join("a/b/one.txt"), "one\n").unwrap();
    fs::write(src.join("a/two.log"), "two\n").unwrap();
    fs::write(src.join(name(b"odd-\xff")), "odd\n").unwrap();
    let big = random_bytes(20 << 20, 3);
    fs::write(src.join("a/big"), &big).unwrap();
    env.backup_json(&[&src], &["--tag", "t1"]);
    let s = src.to_str().unwrap();

    // SNAPSHOT:PATH restores the content of PATH into the target.
    let t1 = env.path("t1");
    env.ok(&[
        "restore",
        &format!("latest:{s}/a"),
        "--target",
        t1.to_str().unwrap(),
    ]);
    assert_eq!(fs::read(t1.join("b/one.txt")).unwrap(), b"one\n");
    assert!(!t1.join("odd-\u{fffd}").exists());

    // --include keeps only matching entries (and the directories above them).
    let t2 = env.path("t2");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        t2.to_str().unwrap(),
        "--include",
        "*.txt",
    ]);
    let r2 = restored(&t2, &src);
    assert_eq!(fs::read(r2.join("a/b/one.txt")).unwrap(), b"one\n");
    assert!(!r2.join("a/two.log").exists());
    assert!(!r2.join("a/big").exists());

    // dump writes one file byte for byte.
    let out = env
        .cmd()
        .args(["dump", "latest", &format!("{s}/a/big")])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, big);

    // ls lists everything; --json lines parse and carry non-UTF-8 names.
    let ls = env.ok(&["ls", "latest", s]);
    assert!(ls.contains(&format!("{s}/a/b/one.txt")), "{ls}");
    let json = env.ok(&["ls", "--json", "latest", s]);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|v| v["path_hex"].as_str().is_some_and(|h| h.ends_with("ff")))
    );
    assert!(
        lines
            .iter()
            .any(|v| v["type"] == "file" && v["size"] == 20 << 20)
    );

    let snaps: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["tags"][0], "t1");
    assert_eq!(snaps[0]["paths"][0], s);
    assert_eq!(snaps[0]["summary"]["files"], 4);

    let config: serde_json::Value = serde_json::from_str(&env.ok(&["cat", "config"])).unwrap();
    assert_eq!(config["version"], 1);
    assert_eq!(config["chunker"]["avg_len"], 1 << 20);
}
