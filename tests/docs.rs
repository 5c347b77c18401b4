//! The user guide's examples run as written. `docs/GUIDE.md` marks the
//! shell blocks this test runs with a `<!-- docs-test -->` line before
//! them; they run in order, against the configuration file of the guide's
//! "A complete example" (section 2), with `sh -e`.
//!
//! What differs from a real machine, and only that: absolute paths of the
//! examples (`/etc/cairn`, `/srv`, `/opt`, `/tmp`, `/var/tmp`) live under
//! a temporary directory; `CAIRN_CONFIG` points at the file the guide puts
//! in `/etc/cairn/cairn.toml` (the last default place); the offsite
//! repository's S3 URL is a local directory; keys use the insecure test
//! KDF. Between the blocks that create the repositories and those that
//! restore, the test makes the backup a night's `cairn run` would make.

mod common;

use std::path::Path;

use common::*;

/// The `sh` blocks marked `<!-- docs-test -->`, in order.
fn marked_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim() != "<!-- docs-test -->" {
            continue;
        }
        assert_eq!(
            lines.next().map(str::trim),
            Some("```sh"),
            "a docs-test mark is followed by a sh block"
        );
        let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        out.push(block.join("\n"));
    }
    out
}

/// The first `toml` block after `heading`.
fn toml_after(text: &str, heading: &str) -> String {
    let at = text.find(heading).expect("the heading is in the guide");
    let rest = &text[at..];
    let start = rest.find("```toml\n").expect("a toml block follows") + 8;
    let end = rest[start..].find("```").unwrap();
    rest[start..start + end].to_string()
}

/// Move the absolute paths of the examples below `root`.
fn rooted(text: &str, root: &str) -> String {
    let mut t = text.to_string();
    for p in ["/etc/cairn/", "/srv/", "/opt/", "/var/tmp", "/tmp/"] {
        // A marker first, so that `root` (itself below /tmp) is not moved.
        t = t.replace(p, &format!("\u{1}{p}"));
    }
    t.replace('\u{1}', root)
}

#[test]
fn the_guides_configuration_examples_run_as_written() {
    let guide =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/GUIDE.md"))
            .unwrap();
    let blocks = marked_blocks(&guide);
    assert!(blocks.len() >= 10, "found the marked blocks: {blocks:?}");

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    let config = toml_after(&guide, "### A complete example").replace(
        "s3:https://s3.us-west-004.backblazeb2.com/my-bucket/cairn",
        "/srv/offsite",
    );
    let config = rooted(&config, &root);
    let at = |rel: &str| dir.path().join(rel);
    for d in ["etc/cairn", "srv/backup", "var/tmp", "tmp", "cwd", "xdg"] {
        std::fs::create_dir_all(at(d)).unwrap();
    }
    let data = at("opt/vaultwarden/data");
    std::fs::create_dir_all(data.join("attachments")).unwrap();
    std::fs::create_dir_all(data.join("icon_cache")).unwrap();
    std::fs::write(data.join("config.json"), "{\"domain\": \"vault\"}\n").unwrap();
    std::fs::write(data.join("attachments/a.bin"), random_bytes(5000, 1)).unwrap();
    std::fs::write(data.join("icon_cache/i.png"), "cache").unwrap();
    // Vaultwarden's database, for section 5's `cairn sql` examples.
    {
        let c = rusqlite::Connection::open(data.join("db.sqlite3")).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE users (uuid TEXT NOT NULL PRIMARY KEY, email TEXT NOT NULL UNIQUE,
                                 created_at DATETIME NOT NULL);
             CREATE TABLE ciphers (uuid TEXT NOT NULL PRIMARY KEY, created_at DATETIME NOT NULL,
                                   updated_at DATETIME NOT NULL, user_uuid TEXT, atype INTEGER NOT NULL,
                                   name TEXT NOT NULL, data TEXT NOT NULL, deleted_at DATETIME);
             INSERT INTO users VALUES ('u1', 'alice@example.com', '2026-01-02 10:00:00');
             INSERT INTO ciphers VALUES ('c1', '2026-02-01', '2026-02-01', 'u1', 1, '2.x|y|z', '{}', NULL);",
        )
        .unwrap();
    }
    // The secret that section 10 removes from the snapshots.
    std::fs::write(data.join(".env"), "ADMIN_TOKEN=backed-up-by-mistake\n").unwrap();
    for (f, text) in [
        ("etc/cairn/cairn.toml", config.as_str()),
        ("etc/cairn/main.pass", "main passphrase\n"),
        ("etc/cairn/offsite.pass", "offsite passphrase\n"),
    ] {
        std::fs::write(at(f), text).unwrap();
        std::fs::set_permissions(at(f), std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
    let bin = assert_cmd::cargo::cargo_bin("cairn");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sh = |script: &str| {
        let out = std::process::Command::new("sh")
            .arg("-ec")
            .arg(script)
            .current_dir(at("cwd"))
            .env("PATH", &path)
            .env("CAIRN_CONFIG", at("etc/cairn/cairn.toml"))
            .env("XDG_CONFIG_HOME", at("xdg"))
            .env("CAIRN_INSECURE_TEST_KDF", "1")
            .env("CAIRN_CACHE_DIR", "off")
            .env("TZ", "UTC")
            .env_remove("CAIRN_REPOSITORY")
            .env_remove("CAIRN_PASSWORD")
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success() && !stderr.contains("cairn: ") && !stderr.contains("warning"),
            "{script}\nexit {:?}\nstdout: {}\nstderr: {stderr}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (i, block) in blocks.iter().enumerate() {
        // After `init` and `config check`: the night's backup.
        if i == 2 {
            sh(&format!(
                "cairn -r local backup {} --exclude icon_cache/ --tag job:vaultwarden --time '2026-11-19 03:00'",
                data.display()
            ));
        }
        sh(&rooted(block, &root));
    }
    // What the examples were meant to do, they did.
    let back = restored(&at("tmp/restore"), &data);
    assert_eq!(
        std::fs::read(back.join("config.json")).unwrap(),
        std::fs::read(data.join("config.json")).unwrap()
    );
    assert!(!back.join("icon_cache").exists());
    assert!(at("tmp/vw/attachments/a.bin").exists());
    assert_eq!(
        std::fs::read(at("cwd/config.json")).unwrap(),
        std::fs::read(data.join("config.json")).unwrap()
    );
    assert!(
        restored(&at("tmp/then"), &data)
            .join("config.json")
            .exists()
    );
    // Section 10's rewrite left the secret in no snapshot, and its tag
    // is on the latest one.
    let found =
        sh("cairn -r local find -q .env; cairn -r local snapshots --json --tag keep-forever");
    assert!(found.starts_with("[{"), "only the snapshot list: {found}");
    assert!(found.contains("\"rewritten\""), "{found}");
    assert!(
        at("srv/offsite/snapshots")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
}
