//! Bad input gets a clear message and the exit code restic users know.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn wrong_passphrase_exits_12_with_one_line() {
    let env = Env::new();
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD", "not it")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("wrong passphrase"), "{err}");
}

#[test]
fn missing_repository_exits_10() {
    let env = Env::uninit();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"));
}

#[test]
fn passphrase_sources() {
    let env = Env::new();
    let file = env.path("pass");
    fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let out = env
        .cmd()
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_PASSWORD_FILE", &file)
        .arg("snapshots")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env
        .cmd()
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_PASSWORD_COMMAND", format!("echo '{PASSWORD}'"))
        .arg("snapshots")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env
        .cmd()
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_PASSWORD_COMMAND", "exit 7")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("password command"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn init_with_an_empty_passphrase_is_refused_and_creates_nothing() {
    let env = Env::uninit();
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD", "")
        .arg("init")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("empty passphrase"),
        "{}",
        stderr(&out)
    );
    assert!(!env.repo.join("config").exists());
    // A password file holding only a newline is an empty passphrase too.
    let file = env.path("pw");
    fs::write(&file, "\n").unwrap();
    let out = env
        .cmd()
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_PASSWORD_FILE", &file)
        .arg("init")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!env.repo.join("config").exists());
}

#[test]
fn init_twice_fails_and_keeps_the_repository() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), "data").unwrap();
    env.backup_json(&[&src], &[]);
    let config = fs::read(env.repo.join("config")).unwrap();
    let out = env.run(&["init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(fs::read(env.repo.join("config")).unwrap(), config);
    assert!(env.ok(&["snapshots"]).contains("1 snapshot\n"));
}

#[test]
fn newer_format_is_refused_before_the_passphrase() {
    let env = Env::new();
    let mut config = fs::read(env.repo.join("config")).unwrap();
    config[8..12].copy_from_slice(&2u32.to_le_bytes());
    fs::write(env.repo.join("config"), &config).unwrap();
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD", "wrong")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("upgrade Cairn"), "{}", stderr(&out));
}

#[test]
fn unreadable_files_give_exit_3_and_the_snapshot_is_kept() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("locked")).unwrap();
    fs::write(src.join("ok.txt"), "fine").unwrap();
    fs::write(src.join("locked/secret"), "hidden").unwrap();
    fs::write(src.join("no-read"), "hidden too").unwrap();
    fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(src.join("no-read"), fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"));
    cmd.env("CAIRN_REPOSITORY", &env.repo)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_INSECURE_TEST_KDF", "1")
        .args(["backup", src.to_str().unwrap()]);
    if is_root() {
        // Root reads everything: run the backup as an unprivileged user who
        // owns the repository and the source, so permissions apply.
        use std::os::unix::process::CommandExt;
        let status = std::process::Command::new("chown")
            .args(["-R", "65534:65534", env.dir.path().to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
        fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.output().unwrap();
    fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(src.join("locked").to_str().unwrap()), "{err}");
    assert!(err.contains(src.join("no-read").to_str().unwrap()), "{err}");
    assert!(env.ok(&["snapshots"]).contains("1 snapshot\n"));
    let ls = env.ok(&["ls", "latest", src.to_str().unwrap()]);
    assert!(ls.contains("ok.txt"), "{ls}");
    assert!(!ls.contains("no-read"), "{ls}");

    // A source path that does not exist is a fatal error, no snapshot.
    let out = env.run(&["backup", env.path("nope").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope"));
    assert!(env.ok(&["snapshots"]).contains("1 snapshot\n"));
}

#[test]
fn a_flipped_byte_in_a_pack_fails_that_file_only() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    // Incompressible files, one blob each, so each lands whole in a pack.
    for i in 0..20 {
        fs::write(src.join(format!("f{i:02}")), random_bytes(50_000, i)).unwrap();
    }
    env.backup_json(&[&src], &[]);
    // Find which pack holds f07's blob through `cat tree`, then damage it.
    let snap: serde_json::Value =
        serde_json::from_str(&env.ok(&["cat", "snapshot", "latest"])).unwrap();
    let mut tree = snap["tree"].as_str().unwrap().to_string();
    for comp in src.strip_prefix("/").unwrap().components() {
        let t: serde_json::Value = serde_json::from_str(&env.ok(&["cat", "tree", &tree])).unwrap();
        let want = comp.as_os_str().to_str().unwrap();
        let node = t["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == want)
            .unwrap();
        tree = node["subtree"].as_str().unwrap().to_string();
    }
    let t: serde_json::Value = serde_json::from_str(&env.ok(&["cat", "tree", &tree])).unwrap();
    let node = t["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "f07")
        .unwrap();
    let blob = node["content"][0].as_str().unwrap().to_string();
    let mut location = None;
    for idx in walk(&env.repo.join("index")) {
        let id = idx.file_name().unwrap().to_str().unwrap().to_string();
        let f: serde_json::Value = serde_json::from_str(&env.ok(&["cat", "index", &id])).unwrap();
        for p in f["packs"].as_array().unwrap() {
            for b in p["blobs"].as_array().unwrap() {
                if b["id"] == blob.as_str() {
                    location = Some((
                        p["id"].as_str().unwrap().to_string(),
                        b["offset"].as_u64().unwrap(),
                    ));
                }
            }
        }
    }
    let (pack, offset) = location.expect("blob is indexed");
    let pack_path = env.repo.join("data").join(&pack[..2]).join(&pack);
    let mut bytes = fs::read(&pack_path).unwrap();
    bytes[offset as usize + 100] ^= 0x01;
    fs::write(&pack_path, &bytes).unwrap();

    let target = env.path("restore");
    let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(err.contains(&pack), "error names the pack: {err}");
    assert!(err.contains("f07"), "error names the file: {err}");
    assert!(err.contains("authentication failed"), "{err}");
    let out_dir = restored(&target, &src);
    for i in (0..20).filter(|&i| i != 7) {
        assert_eq!(
            fs::read(out_dir.join(format!("f{i:02}"))).unwrap(),
            random_bytes(50_000, i),
            "f{i:02} restores intact"
        );
    }
    // dump of the damaged file fails too, with a non-zero exit.
    let out = env.run(&["dump", "latest", src.join("f07").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}
