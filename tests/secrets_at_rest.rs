//! Secrets at rest (issue 10, item 7): what Cairn leaves on disk and in
//! the environment of the programs it starts.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use cairn::backend::Backend;
use cairn::backend::cache::{CachedBackend, DiskCache};
use cairn::backend::mem::MemBackend;
use common::*;

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// Every file and directory below `root` (and `root`) has `file` / `dir`.
fn assert_modes(root: &Path, file: u32, dir: u32) {
    assert_eq!(mode(root), dir, "{}", root.display());
    let all = walk(root);
    assert!(
        all.iter().any(|p| p.is_file()),
        "no files under {}",
        root.display()
    );
    for p in all {
        let want = if p.is_dir() { dir } else { file };
        assert_eq!(
            mode(&p),
            want,
            "mode of {} is {:04o}",
            p.display(),
            mode(&p)
        );
    }
}

fn source(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a"), random_bytes(200_000, 1)).unwrap();
    fs::write(src.join("sub/b"), random_bytes(3_000, 2)).unwrap();
    src
}

/// `cairn ARGS` (with [`Env::cmd`]'s environment) after the shell
/// commands `prefix`, as `WRAPPER... sh -c 'PREFIX && exec cairn ARGS'`.
fn wrapped(env: &Env, wrapper: &[&str], prefix: &str, args: &[&str]) -> std::process::Command {
    let c = env.std_cmd();
    let mut w = std::process::Command::new(wrapper.first().copied().unwrap_or("sh"));
    w.args(wrapper.iter().skip(1));
    if !wrapper.is_empty() {
        w.arg("sh");
    }
    w.arg("-c")
        .arg(format!("{prefix} && exec \"$@\""))
        .arg("sh")
        .arg(c.get_program())
        .args(args);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    w
}

/// Run `cairn ARGS` under `umask 077` (the umask must not decide what a
/// group repository's members can read).
fn run_with_umask_077(env: &Env, args: &[&str]) -> String {
    success(wrapped(env, &[], "umask 077", args).output().unwrap())
}

/// A local repository's files are 0600 and its directories 0700: another
/// local user cannot copy a key file and attack the passphrase offline.
#[test]
fn a_new_local_repository_is_readable_only_by_its_owner() {
    let env = Env::new();
    let src = source(&env);
    env.ok(&["backup", src.to_str().unwrap()]);
    env.cmd()
        .env("CAIRN_NEW_PASSWORD", "second")
        .args(["key", "add"])
        .assert()
        .success();
    assert_modes(&env.repo, 0o600, 0o700);
}

/// A repository given to a group on purpose (its `config` made
/// group-readable, restic's rule) stays readable by the group: new files
/// are 0640 and new directories 0750, even under `umask 077`.
#[test]
fn a_repository_given_to_a_group_on_purpose_stays_group_readable() {
    let env = Env::new();
    let src = source(&env);
    // The owner shares the repository: `chmod -R g+rX`; empty fan-out
    // directories are removed so the backup has to create some again.
    for p in walk(&env.repo).into_iter().rev() {
        if p.is_dir() {
            if fs::read_dir(&p).unwrap().next().is_none() {
                fs::remove_dir(&p).unwrap();
                continue;
            }
            fs::set_permissions(&p, fs::Permissions::from_mode(0o750)).unwrap();
        } else {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        }
    }
    fs::set_permissions(&env.repo, fs::Permissions::from_mode(0o750)).unwrap();
    run_with_umask_077(&env, &["backup", src.to_str().unwrap()]);
    assert!(
        walk(&env.repo.join("data"))
            .iter()
            .any(|p| p.is_dir() && p.file_name().unwrap().len() == 2),
        "the backup created fan-out directories"
    );
    assert_modes(&env.repo, 0o640, 0o750);
    run_with_umask_077(&env, &["check", "--read-data"]);
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
}

/// The local cache (index files, snapshots, tree blobs of remote
/// repositories) is 0600 files in 0700 directories.
#[test]
fn the_cache_is_readable_only_by_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cairn");
    let cached = CachedBackend::new(Arc::new(MemBackend::new()), root.join("repo1"));
    cached.create().unwrap();
    cached
        .put(&format!("index/{}", "1".repeat(64)), b"sealed index")
        .unwrap();
    cached
        .put(&format!("snapshots/{}", "2".repeat(64)), b"sealed snapshot")
        .unwrap();
    let trees = DiskCache::new(cached.cache_dir().unwrap().join("trees"));
    trees.put(&format!("ab/{}", "a".repeat(64)), b"sealed tree");
    assert_eq!(
        cached
            .get_capped(&format!("index/{}", "1".repeat(64)), 100)
            .unwrap(),
        b"sealed index"
    );
    assert_modes(&root, 0o600, 0o700);
}

/// Key files carry the host and user that made them only sealed: the
/// bytes on disk do not contain them, and `key list` still shows them.
#[test]
fn key_files_carry_no_clear_text_host_or_user() {
    let env = Env::uninit();
    // Long, known names, so that finding them by chance is impossible: the
    // host name is set in a UTS namespace of its own (root only).
    const HOST: &str = "cairn-keys-test-host";
    const USER: &str = "cairn-keys-test-user";
    let mut init = if is_root() {
        wrapped(
            &env,
            &["unshare", "-u"],
            &format!("hostname {HOST}"),
            &["init"],
        )
    } else {
        let mut c = env.std_cmd();
        c.arg("init");
        c
    };
    success(init.env("USER", USER).output().unwrap());
    let keys: serde_json::Value =
        serde_json::from_str(&env.ok(&["key", "list", "--json"])).unwrap();
    let key = &keys[0];
    assert_eq!(key["version"], 2);
    let host = key["hostname"].as_str().unwrap();
    let user = key["username"].as_str().unwrap();
    if is_root() {
        assert_eq!(host, HOST);
    }
    assert_eq!(user, USER);
    let bytes = fs::read(env.repo.join("keys").join(key["id"].as_str().unwrap())).unwrap();
    for secret in [host, user].into_iter().filter(|s| s.len() >= 8) {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret:?} is in the key file in clear text"
        );
    }
    assert!(key["created"].as_i64().unwrap() > 1_700_000_000);
}

/// A password file or configuration file that other users can read gets a
/// warning naming it and the fix, as ssh does for private keys.
#[test]
fn password_and_configuration_files_readable_by_others_give_a_warning() {
    let env = Env::new();
    let pass = env.path("pass");
    fs::write(&pass, format!("{PASSWORD}\n")).unwrap();
    fs::set_permissions(&pass, fs::Permissions::from_mode(0o644)).unwrap();
    let run = || {
        env.cmd()
            .env_remove("CAIRN_PASSWORD")
            .env("CAIRN_PASSWORD_FILE", &pass)
            .arg("snapshots")
            .output()
            .unwrap()
    };
    let out = run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let p = pass.display();
    assert_eq!(
        err,
        format!(
            "warning: the password file {p} is accessible by other users (mode 0644); run `chmod 600 {p}`\n"
        )
    );
    fs::set_permissions(&pass, fs::Permissions::from_mode(0o600)).unwrap();
    let out = run();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");

    fs::set_permissions(&pass, fs::Permissions::from_mode(0o640)).unwrap();
    let cfg = env.path("cairn.toml");
    fs::write(
        &cfg,
        format!(
            "[repository.main]\nurl = \"{}\"\npassword_file = \"{p}\"\n",
            env.repo.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o644)).unwrap();
    let check = || {
        env.cmd()
            .args(["--config", cfg.to_str().unwrap(), "config", "check"])
            .output()
            .unwrap()
    };
    let out = check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let c = cfg.display();
    assert!(
        err.contains(&format!(
            "warning: the configuration file {c} is accessible by other users (mode 0644); run `chmod 600 {c}`"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "warning: [repository.main] password_file {p} is accessible by other users (mode 0640); run `chmod 600 {p}`"
        )),
        "{err}"
    );
    fs::set_permissions(&pass, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(String::from_utf8_lossy(&check().stderr), "");
}

const SECRET_VARS: [&str; 3] = [
    "CAIRN_PASSWORD",
    "CAIRN_NEW_PASSWORD",
    "CAIRN_FROM_PASSWORD",
];

fn assert_no_passphrase_in(what: &str, env_dump: &str) {
    assert!(
        env_dump.contains("CAIRN_JOB=") || env_dump.contains("PATH="),
        "{what}: {env_dump}"
    );
    for v in SECRET_VARS {
        assert!(
            !env_dump.lines().any(|l| l.starts_with(&format!("{v}="))),
            "{what} inherited {v}:\n{env_dump}"
        );
    }
}

/// Hooks of `cairn run`, `--stdin-from-command` and `--password-command`
/// do not inherit `CAIRN_PASSWORD` (nor `CAIRN_NEW_PASSWORD` or
/// `CAIRN_FROM_PASSWORD`): each prints its environment, and the printout
/// holds none of them.
#[test]
fn hooks_and_commands_cairn_runs_do_not_inherit_the_passphrase() {
    let env = Env::new();
    let d = env.dir.path().display();
    let cfg = env.path("cairn.toml");
    fs::write(
        &cfg,
        format!(
            r#"[repository.main]
url = "{repo}"

[job.app]
repository = "main"
stdin_command = ["env"]
stdin_filename = "env.txt"
before = ["env > {d}/before.env"]
finally = ["env > {d}/finally.env"]
check_slices = 0
"#,
            repo = env.repo.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o600)).unwrap();
    let out = env
        .cmd()
        .env_remove("CAIRN_REPOSITORY")
        .env("CAIRN_NEW_PASSWORD", "new secret")
        .env("CAIRN_FROM_PASSWORD", "from secret")
        .env("CAIRN_STATE_DIR", env.path("state"))
        .env("CAIRN_CACHE_DIR", "off")
        .args(["--config", cfg.to_str().unwrap(), "run", "app"])
        .output()
        .unwrap();
    success(out);
    for hook in ["before.env", "finally.env"] {
        assert_no_passphrase_in(hook, &fs::read_to_string(env.path(hook)).unwrap());
    }
    let stored = env
        .cmd()
        .args(["dump", "latest", "/env.txt"])
        .output()
        .unwrap();
    assert_no_passphrase_in("stdin_command", &String::from_utf8_lossy(&stored.stdout));

    env.ok(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "e",
        "--",
        "env",
    ]);
    let stored = env.cmd().args(["dump", "latest", "/e"]).output().unwrap();
    assert_no_passphrase_in(
        "--stdin-from-command",
        &String::from_utf8_lossy(&stored.stdout),
    );

    let dump = env.path("password-command.env");
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD", "not the passphrase")
        .arg("--password-command")
        .arg(format!("env > {}; echo '{PASSWORD}'", dump.display()))
        .arg("snapshots")
        .output()
        .unwrap();
    success(out);
    assert_no_passphrase_in("--password-command", &fs::read_to_string(&dump).unwrap());
}
