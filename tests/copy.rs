//! `cairn copy`: local repository plus an offsite copy, and back; copying
//! again sends nothing; `init --copy-chunker-params` makes IDs shared.

mod common;

use std::fs;

use common::*;

fn env_at(repo: String) -> Env {
    let env = Env::uninit();
    Env {
        dir: env.dir,
        repo: repo.into(),
    }
}

fn copy_from(dst: &Env, src: &Env, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["copy", "--json", "--from-repo", src.repo.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = dst
        .cmd()
        .env("CAIRN_FROM_PASSWORD", PASSWORD)
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn trees(env: &Env) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["tree"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn copy_to_an_offsite_repository_and_back() {
    let mut offsites = vec![("local".to_string(), None)];
    match std::env::var("CAIRN_TEST_S3_URL") {
        Ok(u) => offsites.push((
            "s3".into(),
            Some(format!(
                "{u}/copy-{}",
                hex::encode(rand::random::<[u8; 6]>())
            )),
        )),
        Err(_) => skipped("copy to S3: CAIRN_TEST_S3_URL is not set"),
    }
    match std::env::var("CAIRN_TEST_SFTP_URL") {
        Ok(u) => offsites.push((
            "sftp".into(),
            Some(format!(
                "{u}/copy-{}",
                hex::encode(rand::random::<[u8; 6]>())
            )),
        )),
        Err(_) => skipped("copy to SFTP: CAIRN_TEST_SFTP_URL is not set"),
    }
    for (kind, url) in offsites {
        eprintln!("copy via {kind}");
        let home = Env::new();
        let src = home.path("src");
        fs::create_dir_all(src.join("d")).unwrap();
        for i in 0..6 {
            fs::write(src.join(format!("d/f{i}")), random_bytes(300_000, i)).unwrap();
        }
        home.backup_json(&[&src], &["--tag", "first"]);
        fs::write(src.join("d/f0"), random_bytes(300_000, 50)).unwrap();
        home.backup_json(&[&src], &[]);

        let offsite = match &url {
            Some(u) => env_at(u.clone()),
            None => Env::uninit(),
        };
        offsite.ok(&["init"]);
        let r = copy_from(&offsite, &home, &[]);
        assert_eq!(r["copied"], 2, "{r}");
        assert!(r["blobs_sent"].as_u64().unwrap() >= 7, "{r}");
        let again = copy_from(&offsite, &home, &[]);
        assert_eq!(
            (again["copied"].as_u64(), again["blobs_sent"].as_u64()),
            (Some(0), Some(0)),
            "{again}"
        );
        offsite.ok(&["check", "--read-data"]);
        let t = offsite.path("t");
        offsite.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
        assert_same_tree(&src, &restored(&t, &src));
        let tagged = offsite.ok(&["snapshots", "--tag", "first"]);
        assert!(tagged.contains("1 snapshot\n"), "{tagged}");

        // And back into a fresh local repository.
        let back = Env::new();
        let r = copy_from(&back, &offsite, &[]);
        assert_eq!(r["copied"], 2, "{r}");
        let t = back.path("t");
        back.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
        assert_same_tree(&src, &restored(&t, &src));
    }
}

#[test]
fn shared_chunker_params_make_copies_share_ids() {
    let a = Env::new();
    let src = a.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("big"), random_bytes(3_000_000, 1)).unwrap();
    a.backup_json(&[&src], &[]);

    let b = Env::uninit();
    let out = b
        .cmd()
        .env("CAIRN_FROM_PASSWORD", PASSWORD)
        .args([
            "init",
            "--copy-chunker-params",
            "--from-repo",
            a.repo.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    copy_from(&b, &a, &[]);
    assert_eq!(trees(&a), trees(&b), "same IDs in both repositories");
    // A backup into B of the same data adds nothing: it deduplicates with
    // what the copy brought.
    let s = b.backup_json(&[&src], &["--force"]);
    assert_eq!(s["files_read"], 1, "{s}");
    assert_eq!(s["data_blobs_added"], 0, "{s}");

    // Without shared parameters the IDs differ (keyed), and still the copy
    // restores.
    let c = Env::new();
    copy_from(&c, &a, &[]);
    assert_ne!(trees(&a), trees(&c));
    let t = c.path("t");
    c.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&t, &src));
}
