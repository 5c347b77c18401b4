//! Where a repository goes: `init` never mixes a repository with other
//! files, and a location that looks like a URL with an unknown scheme is an
//! error, never a local directory named after the scheme.

mod common;

use std::fs;
use std::process::Output;

use common::*;

fn outcome(o: &Output) -> (Option<i32>, String, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn init_into_a_directory_holding_other_files_refuses_unless_forced() {
    let env = Env::uninit();
    fs::create_dir_all(&env.repo).unwrap();
    fs::write(env.repo.join("notes.txt"), b"mine\n").unwrap();
    fs::write(env.repo.join("photo.jpg"), b"mine\n").unwrap();
    let out = env.run(&["init"]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!(
                "cairn: refusing to create a repository in {}: the directory is not empty \
                 (it holds notes.txt and 1 more); give a new or empty directory, or --force \
                 to create it among those files\n",
                env.repo.display()
            )
        )
    );
    assert!(!env.repo.join("config").exists());
    let out = env.run(&["init", "--force", "--quiet"]);
    assert_eq!(outcome(&out), (Some(0), String::new(), String::new()));
    assert!(env.repo.join("config").exists());
    assert_eq!(fs::read(env.repo.join("notes.txt")).unwrap(), b"mine\n");
    env.ok(&["snapshots"]);
}

#[test]
fn init_into_an_existing_empty_directory_works() {
    let env = Env::uninit();
    fs::create_dir_all(&env.repo).unwrap();
    let out = env.run(&["init", "--quiet"]);
    assert_eq!(outcome(&out), (Some(0), String::new(), String::new()));
    env.ok(&["snapshots"]);
}

#[test]
fn init_over_an_existing_repository_still_says_so() {
    let env = Env::new();
    let out = env.run(&["init", "--force"]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!(
                "cairn: a repository already exists at {}\n",
                env.repo.display()
            )
        )
    );
}

#[test]
fn an_unknown_scheme_is_an_error_naming_the_known_ones() {
    let env = Env::uninit();
    for (location, scheme) in [("rests:http://host/repo", "rests"), ("b2:bucket/x", "b2")] {
        let out = env
            .cmd()
            .current_dir(env.dir.path())
            .args(["-r", location, "init"])
            .output()
            .unwrap();
        assert_eq!(
            outcome(&out),
            (
                Some(1),
                String::new(),
                format!(
                    "cairn: {location}: unknown repository scheme `{scheme}:` (known: sftp:, \
                     s3:, rest:, rclone:); write a local path that holds a colon with ./ in front or as an \
                     absolute path\n"
                )
            )
        );
        assert!(!env.path(&format!("{scheme}:")).exists());
        assert!(!env.path(location).exists());
    }
    // Every command, not only init.
    let out = env
        .cmd()
        .args(["-r", "rests:http://host/repo", "snapshots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_local_path_with_a_colon_works_written_with_dot_slash_or_absolute() {
    let env = Env::uninit();
    let out = env
        .cmd()
        .current_dir(env.dir.path())
        .args(["-r", "./a:b", "init", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(outcome(&out), (Some(0), String::new(), String::new()));
    assert!(env.path("a:b/config").exists());
    let abs = env.path("c:d");
    let out = env
        .cmd()
        .args(["-r", abs.to_str().unwrap(), "init", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(outcome(&out), (Some(0), String::new(), String::new()));
    assert!(abs.join("config").exists());
}
