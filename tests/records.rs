//! Every record Cairn writes can be read back, and one record that cannot
//! be read does not stop the repository from working.

mod common;

use std::fs;

use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every object name under the repository, with its size.
fn listing(env: &Env) -> Vec<(std::path::PathBuf, u64)> {
    walk(&env.repo)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let n = fs::metadata(&p).unwrap().len();
            (p, n)
        })
        .collect()
}

/// Regression: `backup --tag` with 40 000 `é` (80 000 bytes) cut the tag at
/// 65 535 bytes, mid-character, and saved the snapshot; from then on
/// `snapshots`, every `backup`, `check`, `prune` and `forget` failed until
/// the object was deleted by hand. Now the tag is refused before anything
/// is written: no lock, no pack, no index file, no snapshot.
#[test]
fn a_tag_of_forty_thousand_e_acute_is_refused_before_anything_is_written() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), random_bytes(50_000, 1)).unwrap();
    let before = listing(&env);
    let tag = "é".repeat(40_000);
    let out = env.run(&["backup", "--tag", &tag, src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("tag") && err.contains("80000 bytes long"),
        "{err}"
    );
    assert!(err.contains("at most 256"), "{err}");
    assert_eq!(listing(&env), before, "nothing may be written");
    // The same for a host name and an empty tag; the longest tag works.
    let long_host = "h".repeat(300);
    let out = env.run(&["backup", "--host", &long_host, src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("host name"), "{}", stderr(&out));
    let out = env.run(&["backup", "--tag", "", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(listing(&env), before, "nothing may be written");
    let longest = "é".repeat(128);
    env.ok(&["backup", "--tag", &longest, src.to_str().unwrap()]);
    let snaps: serde_json::Value =
        serde_json::from_str(env.ok(&["snapshots", "--json"]).trim()).unwrap();
    assert_eq!(snaps[0]["tags"][0], longest.as_str());
}

/// Regression: one object in `snapshots/` that does not decode (garbage,
/// bit rot, a half-uploaded file) made `snapshots`, `backup`, `forget` and
/// `check` fail outright. Now it is reported and skipped by the commands
/// that only need the others; `check` names it and fails; `prune`, which
/// must know every snapshot's references, refuses to delete anything.
#[test]
fn one_unreadable_snapshot_object_does_not_brick_the_repository() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), random_bytes(200_000, 1)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    fs::write(src.join("b"), random_bytes(200_000, 2)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    // A half-uploaded copy of a real snapshot, and plain garbage.
    let real = walk(&env.repo.join("snapshots"))[0].clone();
    let bytes = fs::read(&real).unwrap();
    let half = format!("{:064x}", 0xabcdu32);
    let junk = format!("{:064x}", 0xef01u32);
    fs::write(
        env.repo.join("snapshots").join(&half),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    fs::write(env.repo.join("snapshots").join(&junk), b"not a snapshot").unwrap();

    let out = env.run(&["snapshots"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches(src.to_str().unwrap()).count(), 2, "{text}");
    for planted in [&half, &junk] {
        assert!(
            stderr(&out).contains(&format!("unreadable snapshot {}", &planted[..8])),
            "{}",
            stderr(&out)
        );
    }

    // A backup finds its parent among the readable snapshots.
    fs::write(src.join("c"), random_bytes(1000, 3)).unwrap();
    let out = env.run(&["backup", src.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("using parent snapshot"));

    // forget applies its policy to the readable ones and leaves the others.
    let out = env.run(&["forget", "--keep-last", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.repo.join("snapshots").join(&half).exists());
    assert!(env.repo.join("snapshots").join(&junk).exists());

    // check names both and fails; prune refuses and deletes nothing.
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(all.contains(&half) && all.contains(&junk), "{all}");
    let before = env.data_bytes();
    let out = env.run(&["prune"]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("snapshot"), "{}", stderr(&out));
    assert_eq!(env.data_bytes(), before);

    // Restores go on working.
    let target = env.path("t");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
}
