//! Deduplication: an unchanged tree adds no data, a small change adds only
//! its chunks and the trees above it; excludes leave entries out.

mod common;

use std::fs;

use common::*;

#[test]
fn second_backup_of_the_same_tree_adds_no_data() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("x/y")).unwrap();
    for i in 0..50 {
        fs::write(
            src.join(format!("x/y/f{i}")),
            random_bytes(10_000 + i * 100, i as u64),
        )
        .unwrap();
    }
    fs::write(src.join("big"), random_bytes(30 << 20, 77)).unwrap();
    let first = env.backup_json(&[&src], &[]);
    assert!(first["data_blobs_added"].as_u64().unwrap() >= 51);
    let data_before = env.data_bytes();
    let second = env.backup_json(&[&src], &[]);
    assert_eq!(second["data_blobs_added"], 0, "{second}");
    assert_eq!(second["bytes_added"], second["bytes_added"]);
    // Only tree blobs whose metadata changed may be added (none here: the
    // tree is untouched), so at most a small pack of trees is written.
    let grown = env.data_bytes() - data_before;
    assert!(grown < 64 * 1024, "data grew by {grown} bytes");
}

#[test]
fn a_one_byte_change_adds_only_its_chunk_and_the_trees_above_it() {
    let env = Env::new();
    let src = env.path("src");
    let deep = src.join("a/b/c");
    fs::create_dir_all(&deep).unwrap();
    fs::write(src.join("a/other"), random_bytes(5000, 1)).unwrap();
    let mut big = random_bytes(40 << 20, 2);
    fs::write(deep.join("big"), &big).unwrap();
    let first = env.backup_json(&[&src], &[]);
    assert!(first["data_blobs_added"].as_u64().unwrap() > 10, "{first}");

    big[20 << 20] ^= 0xff;
    fs::write(deep.join("big"), &big).unwrap();
    let second = env.backup_json(&[&src], &[]);
    let data = second["data_blobs_added"].as_u64().unwrap();
    assert!(
        (1..=2).contains(&data),
        "a one-byte change added {data} data blobs"
    );
    // Trees on the path from the root to big's directory change (their
    // entries' mtimes or subtree IDs did); nothing else. The source lives in
    // a temp dir under /tmp: root, tmp, tmpXXXX, src, a, b, c = 7 trees.
    let depth = src.components().count() + 3;
    let trees = second["tree_blobs_added"].as_u64().unwrap() as usize;
    assert_eq!(trees, depth, "trees added: {trees}, path depth {depth}");
    assert!(second["bytes_added"].as_u64().unwrap() < 9 << 20);
}

#[test]
fn excludes_leave_entries_out() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("keep")).unwrap();
    fs::create_dir_all(src.join("cache")).unwrap();
    fs::create_dir_all(src.join("marked")).unwrap();
    fs::create_dir_all(src.join("tagged")).unwrap();
    fs::write(src.join("keep/a.txt"), "a").unwrap();
    fs::write(src.join("keep/b.tmp"), "b").unwrap();
    fs::write(src.join("cache/c"), "c").unwrap();
    fs::write(src.join("marked/.nobackup"), "").unwrap();
    fs::write(src.join("marked/d"), "d").unwrap();
    fs::write(
        src.join("tagged/CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    fs::write(src.join("tagged/e"), "e").unwrap();
    let exclude_file = env.path("excludes");
    fs::write(&exclude_file, "# comment\ncache/\n").unwrap();
    env.backup_json(
        &[&src],
        &[
            "--exclude",
            "*.tmp",
            "--exclude-file",
            exclude_file.to_str().unwrap(),
            "--exclude-if-present",
            ".nobackup",
            "--exclude-caches",
        ],
    );
    let ls = env.ok(&["ls", "latest", src.to_str().unwrap()]);
    let names: Vec<&str> = ls.lines().map(|l| l.rsplit('/').next().unwrap()).collect();
    assert_eq!(names, vec!["keep", "a.txt"], "{ls}");
}
