//! Everyday use after the first nightly job works (issue 15): the
//! configuration file drives every command (`-r NAME`, its only repository,
//! `--job NAME`), `latest` finds the snapshot holding the path asked for
//! and says which it used, `dump` fails before writing, `cairn run` opens
//! and locks the repository before any hook, and `config check` opens
//! every repository and catches misspelt keys and bad values. Each case
//! pins standard output, standard error and the exit status.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

/// A machine with a configuration file naming one repository (`main`,
/// not yet initialised) and one job (`app`, backing up `A`), its password
/// file, and the source directories `A` and `B`. Commands run with no
/// `CAIRN_REPOSITORY` and no passphrase in the environment, an empty
/// `XDG_CONFIG_HOME`, and `TZ=UTC`.
struct Site {
    env: Env,
    config: PathBuf,
}

impl Site {
    fn new() -> Site {
        let env = Env::uninit();
        for (dir, file, text) in [("A", "x", "x of A\n"), ("B", "y", "y of B\n")] {
            std::fs::create_dir_all(env.path(dir)).unwrap();
            std::fs::write(env.path(dir).join(file), text).unwrap();
        }
        std::fs::create_dir_all(env.path("xdg")).unwrap();
        let pass = env.path("main.pass");
        std::fs::write(&pass, format!("{PASSWORD}\n")).unwrap();
        let config = env.path("cairn.toml");
        let site = Site { env, config };
        site.write_config("");
        site
    }

    /// Write the configuration file: `main`, job `app`, then `extra`.
    fn write_config(&self, extra: &str) {
        let text = format!(
            r#"[repository.main]
url = "{repo}"
password_file = "{pass}"

[job.app]
repository = "main"
paths = ["{a}"]
before = ["touch {marker}"]
after = ["echo after >> {log}"]
on_failure = ["echo on_failure >> {log}"]
finally = ["echo finally $CAIRN_STATUS >> {log}"]
{extra}"#,
            repo = self.env.repo.display(),
            pass = self.path("main.pass").display(),
            a = self.path("A").display(),
            marker = self.path("marker").display(),
            log = self.path("hooks.log").display(),
        );
        std::fs::write(&self.config, text).unwrap();
        for f in [&self.config, &self.path("main.pass")] {
            std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.env.path(rel)
    }

    fn p(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    /// `cairn ARGS` as described on [`Site`] (no `--config` added).
    fn bare(&self, args: &[&str]) -> Output {
        self.env
            .cmd()
            .env_remove("CAIRN_REPOSITORY")
            .env_remove("CAIRN_PASSWORD")
            .env_remove("CAIRN_CONFIG")
            .env("XDG_CONFIG_HOME", self.path("xdg"))
            .env("CAIRN_STATE_DIR", self.path("state"))
            .env("CAIRN_CACHE_DIR", "off")
            .env("TZ", "UTC")
            .args(args)
            .output()
            .unwrap()
    }

    /// `cairn --config FILE ARGS`.
    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["--config", self.config.to_str().unwrap()];
        all.extend_from_slice(args);
        self.bare(&all)
    }

    /// `cairn --config FILE ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        success(self.run(args))
    }

    /// Initialise `main` and back up `A` (2026-01-01 10:00, job `app`'s
    /// tag) then `B` (2026-01-02 10:00, no job); their short IDs.
    fn two_backups(&self) -> (String, String) {
        self.ok(&["-r", "main", "init"]);
        self.ok(&[
            "-r",
            "main",
            "backup",
            &self.p("A"),
            "--tag",
            "job:app",
            "--time",
            "2026-01-01 10:00",
        ]);
        self.ok(&[
            "-r",
            "main",
            "backup",
            &self.p("B"),
            "--time",
            "2026-01-02 10:00",
        ]);
        let snaps: serde_json::Value =
            serde_json::from_str(&self.ok(&["-r", "main", "snapshots", "--json"])).unwrap();
        let id = |i: usize| snaps[i]["short_id"].as_str().unwrap().to_string();
        (id(0), id(1))
    }

    fn hooks_log(&self) -> String {
        std::fs::read_to_string(self.path("hooks.log")).unwrap_or_default()
    }
}

/// Exit status, stdout and stderr of a finished command.
fn outcome(out: &Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lines(v: &[&str]) -> String {
    v.iter().map(|l| format!("{l}\n")).collect()
}

// ---- item 1: the configuration file for every command ----------------------

#[test]
fn a_repository_name_from_the_configuration_file_gives_its_url_and_passphrase_to_any_command() {
    let site = Site::new();
    let (a, _) = site.two_backups();
    // `-r main`: the table's url and password_file; no passphrase in the
    // environment.
    let out = site.run(&["-r", "main", "ls", &a, &site.p("A")]);
    assert_eq!(
        outcome(&out),
        (Some(0), lines(&[&site.p("A/x")]), String::new())
    );
    // CAIRN_REPOSITORY=main works the same way.
    let out = site
        .env
        .cmd()
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_REPOSITORY", "main")
        .env("XDG_CONFIG_HOME", site.path("xdg"))
        .args(["--config", site.config.to_str().unwrap(), "dump", &a])
        .arg(site.path("A/x"))
        .output()
        .unwrap();
    assert_eq!(
        outcome(&out),
        (Some(0), "x of A\n".to_string(), String::new())
    );
}

#[test]
fn with_no_repository_given_the_configuration_files_only_repository_is_used() {
    let site = Site::new();
    site.two_backups();
    // The default place: $XDG_CONFIG_HOME/cairn/cairn.toml.
    std::fs::create_dir_all(site.path("xdg/cairn")).unwrap();
    std::fs::copy(&site.config, site.path("xdg/cairn/cairn.toml")).unwrap();
    let out = site.bare(&["snapshots", "--json"]);
    let (code, stdout, stderr) = outcome(&out);
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
}

#[test]
fn a_configuration_file_naming_several_repositories_needs_one_chosen() {
    let site = Site::new();
    site.write_config(&format!(
        "\n[repository.offsite]\nurl = \"{}\"\n",
        site.p("offsite")
    ));
    let out = site.run(&["snapshots"]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!(
                "cairn: no repository given, and {} names several: main, offsite; choose one with -r NAME\n",
                site.config.display()
            )
        )
    );
}

#[test]
fn with_no_repository_and_no_configuration_file_the_error_says_where_to_name_one() {
    let site = Site::new();
    let out = site.bare(&["snapshots"]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!(
                "cairn: no repository given: use -r/--repo, set CAIRN_REPOSITORY, or name one in a configuration file (--config FILE, or one of {}/cairn/cairn.toml, /etc/cairn/cairn.toml)\n",
                site.p("xdg")
            )
        )
    );
}

#[test]
fn job_selects_the_jobs_repository_and_only_its_snapshots() {
    let site = Site::new();
    let (a, b) = site.two_backups();
    // Two repositories in the file: --job picks the job's.
    site.write_config(&format!(
        "\n[repository.offsite]\nurl = \"{}\"\n",
        site.p("offsite")
    ));
    let out = site.run(&["snapshots", "--job", "app", "--json"]);
    let (code, stdout, stderr) = outcome(&out);
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["short_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.as_str()]);

    let used = format!(
        "using snapshot {a} of {} taken 2026-01-01 10:00:00\n",
        site.p("A")
    );
    let out = site.run(&["ls", "latest", "--job", "app"]);
    let (code, stdout, stderr) = outcome(&out);
    assert_eq!((code, stderr), (Some(0), used.clone()), "ls");
    assert!(
        stdout.ends_with(&lines(&[&site.p("A"), &site.p("A/x")])),
        "{stdout}"
    );
    let out = site.run(&["dump", "latest", &site.p("A/x"), "--job", "app"]);
    assert_eq!(
        outcome(&out),
        (Some(0), "x of A\n".to_string(), used.clone()),
        "dump"
    );
    let target = site.p("restored");
    let out = site.run(&["restore", "latest", "--job", "app", "--target", &target]);
    let (code, _, stderr) = outcome(&out);
    assert_eq!((code, stderr), (Some(0), used.clone()), "restore");
    assert!(restored(Path::new(&target), &site.path("A/x")).exists());
    // An ID of another job's snapshot is not the job's.
    let out = site.run(&["diff", &a, &b, "--job", "app"]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!("cairn: snapshot {b} does not match tag \"job:app\"\n")
        ),
        "diff"
    );
    // forget --job applies the policy to the job's snapshots only.
    let out = site.run(&["forget", "--job", "app", "--keep-last", "0", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", outcome(&out).2);
    let left = site.ok(&["-r", "main", "snapshots", "--json"]);
    let left: serde_json::Value = serde_json::from_str(&left).unwrap();
    let left: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["short_id"].as_str().unwrap())
        .collect();
    assert_eq!(left, [b.as_str()]);
}

#[test]
fn restore_test_job_tests_the_jobs_latest_snapshot() {
    let site = Site::new();
    let (a, _) = site.two_backups();
    let out = site.run(&["restore-test", "--job", "app", "--json"]);
    let (code, stdout, stderr) = outcome(&out);
    assert_eq!(
        (code, stderr),
        (
            Some(0),
            format!(
                "using snapshot {a} of {} taken 2026-01-01 10:00:00\n",
                site.p("A")
            )
        )
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["files"].as_u64()),
        (Some(true), Some(1))
    );
}

#[test]
fn job_names_a_job_of_the_configuration_file() {
    let site = Site::new();
    let out = site.run(&["snapshots", "--job", "ap"]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!(
                "cairn: no job \"ap\" in {} (jobs: app)\n",
                site.config.display()
            )
        )
    );
}

#[test]
fn commands_that_take_no_job_refuse_job() {
    let site = Site::new();
    let out = site.run(&["backup", "--job", "app", &site.p("A")]);
    let (code, stdout, stderr) = outcome(&out);
    assert_eq!((code, stdout.as_str()), (Some(2), ""));
    assert!(
        stderr.starts_with("error: unexpected argument '--job' found\n"),
        "{stderr}"
    );
}

#[test]
fn run_refuses_a_repository_flag_it_would_not_use() {
    let site = Site::new();
    let out = site.run(&["run", "app", "-r", &site.p("elsewhere")]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            "cairn: `cairn run` does not take -r/--repo: each job backs up to the repository its `repository` key names (to back up elsewhere once, use `cairn -r REPO backup`)\n".to_string()
        )
    );
    assert!(!site.path("marker").exists());
    let out = site.run(&["run", "app", "--progress", "json"]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            "cairn: `cairn run` does not take --progress: it shows no progress (-v prints each step)\n"
                .to_string()
        )
    );
}

#[test]
fn a_password_flag_that_a_repository_table_overrides_is_an_error() {
    let site = Site::new();
    let out = site.run(&[
        "-r",
        "main",
        "--password-file",
        &site.p("other"),
        "snapshots",
    ]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!(
                "cairn: --password-file would not be used: [repository.main] in {} has its own password_file; drop one of them\n",
                site.config.display()
            )
        )
    );
}

// ---- item 2: `latest` finds the path, and says which snapshot it used -------

#[test]
fn dump_latest_with_a_path_uses_the_newest_snapshot_holding_it() {
    let site = Site::new();
    let (a, b) = site.two_backups();
    let out = site.run(&["-r", "main", "dump", "latest", &site.p("A/x")]);
    assert_eq!(
        outcome(&out),
        (
            Some(0),
            "x of A\n".to_string(),
            format!(
                "using snapshot {a} of {} taken 2026-01-01 10:00:00\n",
                site.p("A")
            )
        )
    );
    let out = site.run(&["-r", "main", "dump", "latest", &site.p("B/y")]);
    assert_eq!(
        outcome(&out),
        (
            Some(0),
            "y of B\n".to_string(),
            format!(
                "using snapshot {b} of {} taken 2026-01-02 10:00:00\n",
                site.p("B")
            )
        )
    );
}

#[test]
fn dump_of_a_missing_path_writes_nothing_and_fails() {
    let site = Site::new();
    let (a, _) = site.two_backups();
    let out = site.run(&["-r", "main", "dump", "latest", &site.p("A/missing")]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!(
                "using snapshot {a} of {} taken 2026-01-01 10:00:00\ncairn: {} is not in the snapshot\n",
                site.p("A"),
                site.p("A/missing")
            )
        )
    );
    // No snapshot holds it at all.
    let out = site.run(&["-r", "main", "dump", "latest", &site.p("C/z")]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!("cairn: no snapshot matches holding \"{}\"\n", site.p("C/z"))
        )
    );
    // A directory is refused before anything is written too.
    let out = site.run(&["-r", "main", "dump", "latest", &site.p("A")]);
    let (code, stdout, _) = outcome(&out);
    assert_eq!((code, stdout.as_str()), (Some(1), ""));
}

#[test]
fn ls_and_restore_latest_with_a_path_use_the_snapshot_holding_it() {
    let site = Site::new();
    let (a, _) = site.two_backups();
    let used = format!(
        "using snapshot {a} of {} taken 2026-01-01 10:00:00\n",
        site.p("A")
    );
    let out = site.run(&["-r", "main", "ls", "latest", &site.p("A")]);
    assert_eq!(
        outcome(&out),
        (Some(0), lines(&[&site.p("A/x")]), used.clone())
    );
    let target = site.p("t");
    let spec = format!("latest:{}", site.p("A"));
    let out = site.run(&["-r", "main", "-q", "restore", &spec, "--target", &target]);
    assert_eq!(outcome(&out), (Some(0), String::new(), String::new()));
    let out = site.run(&["-r", "main", "restore", &spec, "--target", &site.p("t2")]);
    let (code, _, stderr) = outcome(&out);
    assert_eq!((code, stderr), (Some(0), used));
    assert_eq!(
        std::fs::read_to_string(site.path("t2/x")).unwrap(),
        "x of A\n"
    );
}

#[test]
fn as_of_and_latest_say_which_snapshot_they_chose() {
    let site = Site::new();
    let (a, b) = site.two_backups();
    let out = site.run(&[
        "-r",
        "main",
        "ls",
        "latest",
        "--as-of",
        "2026-01-01 12:00",
        &site.p("A/x"),
    ]);
    assert_eq!(
        outcome(&out),
        (
            Some(0),
            lines(&[&site.p("A/x")]),
            format!(
                "using snapshot {a} of {} taken 2026-01-01 10:00:00\n",
                site.p("A")
            )
        )
    );
    let out = site.run(&["-r", "main", "diff", &a, "latest"]);
    let (code, _, stderr) = outcome(&out);
    assert_eq!(
        (code, stderr),
        (
            Some(0),
            format!(
                "using snapshot {b} of {} taken 2026-01-02 10:00:00\n",
                site.p("B")
            )
        )
    );
}

// ---- item 5: before hooks wait for an open, locked repository --------------

#[test]
fn a_wrong_password_file_fails_the_job_before_any_before_hook_runs() {
    let site = Site::new();
    site.ok(&["-r", "main", "init"]);
    std::fs::write(site.path("main.pass"), "not the passphrase\n").unwrap();
    let out = site.run(&["run", "app"]);
    let (code, stdout, stderr) = outcome(&out);
    assert_eq!((code, stdout.as_str()), (Some(1), ""));
    assert!(!site.path("marker").exists(), "the before hook did not run");
    let first = stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with(&format!(
            "job app: backup failed: wrong passphrase for repository {}",
            site.env.repo.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().last(),
        Some("cairn: 1 of 1 jobs failed: app")
    );
    // Nothing was stopped, so nothing is restarted; the failure hooks run.
    assert_eq!(site.hooks_log(), "on_failure\nfinally failure\n");
}

#[test]
fn an_uninitialised_repository_fails_the_job_before_any_before_hook_runs() {
    let site = Site::new();
    let out = site.run(&["run", "app"]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!(
                "job app: backup failed: repository {} does not exist; create it with `cairn init`\ncairn: 1 of 1 jobs failed: app\n",
                site.env.repo.display()
            )
        )
    );
    assert!(!site.path("marker").exists(), "the before hook did not run");
    assert_eq!(site.hooks_log(), "on_failure\nfinally failure\n");
}

#[test]
fn a_job_whose_repository_opens_runs_its_before_hook_then_backs_up() {
    let site = Site::new();
    site.ok(&["-r", "main", "init"]);
    let out = site.run(&["run", "app"]);
    assert_eq!(outcome(&out), (Some(0), String::new(), String::new()));
    assert!(site.path("marker").exists());
    assert_eq!(site.hooks_log(), "after\nfinally success\n");
}

// ---- item 5: config check opens every repository, catches bad values ------

#[test]
fn config_check_opens_every_repository_and_names_those_that_cannot_be_opened() {
    let site = Site::new();
    site.ok(&["-r", "main", "init"]);
    site.write_config(&format!(
        "\n[repository.offsite]\nurl = \"{}\"\npassword_file = \"{}\"\n",
        site.p("offsite"),
        site.p("main.pass")
    ));
    let out = site.run(&["config", "check"]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!(
                "error: [repository.offsite] cannot be opened: repository {} does not exist; create it with `cairn init`\ncairn: {}: 1 of 2 repositories cannot be opened: offsite\n",
                site.p("offsite"),
                site.config.display()
            )
        )
    );
    site.ok(&["-r", "offsite", "init"]);
    let out = site.run(&["config", "check"]);
    assert_eq!(
        outcome(&out),
        (
            Some(0),
            format!(
                "{}: valid; repositories: main, offsite (opened); jobs: app\n",
                site.config.display()
            ),
            String::new()
        )
    );
    // A wrong passphrase is found too.
    std::fs::write(site.path("main.pass"), "wrong\n").unwrap();
    let out = site.run(&["config", "check", "--json"]);
    let (code, stdout, stderr) = outcome(&out);
    assert_eq!((code, stderr.as_str()), (Some(1), ""));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["opened"][0]["repository"], "main");
    assert_eq!(v["opened"][0]["ok"], false);
    assert!(
        v["opened"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("wrong passphrase"),
        "{v}"
    );
    // --no-open checks the file alone.
    let out = site.run(&["config", "check", "--no-open"]);
    assert_eq!(
        outcome(&out),
        (
            Some(0),
            format!(
                "{}: valid; repositories: main, offsite; jobs: app\n",
                site.config.display()
            ),
            String::new()
        )
    );
}

#[test]
fn config_check_rejects_negative_keep_counts_malformed_urls_and_durations() {
    let site = Site::new();
    let text = |extra: &str| {
        site.write_config(extra);
        std::fs::read_to_string(&site.config).unwrap()
    };
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let c = site.config.display().to_string();
    // keep_last = -1 means "all"; below that is a mistake.
    let t = text("keep_daily = -3\n");
    let out = site.run(&["config", "check", "--no-open"]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!(
                "cairn: {c}:{}: key `keep_daily` in [job.app]: -3: give a count, or -1 to keep all\n",
                line_of(&t, "keep_daily")
            )
        )
    );
    let t = text("keep_within = \"30 dayz\"\n");
    let out = site.run(&["config", "check", "--no-open"]);
    let (code, stdout, stderr) = outcome(&out);
    assert_eq!((code, stdout.as_str()), (Some(1), ""));
    assert!(
        stderr.starts_with(&format!(
            "cairn: {c}:{}: key `keep_within` in [job.app]: \"30 dayz\": ",
            line_of(&t, "keep_within")
        )),
        "{stderr}"
    );
    site.write_config("\n[repository.nas]\nurl = \"s3:nas.lan/bucket\"\n");
    let t = std::fs::read_to_string(&site.config).unwrap();
    let out = site.run(&["config", "check", "--no-open"]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!(
                "cairn: {c}:{}: key `url` in [repository.nas]: s3:nas.lan/bucket: expected s3:https://host[:port]/bucket[/prefix]\n",
                line_of(&t, "s3:nas.lan")
            )
        )
    );
}

#[test]
fn config_check_suggests_the_key_a_misspelt_one_meant() {
    let site = Site::new();
    site.write_config("keep_dayly = 7\n");
    let t = std::fs::read_to_string(&site.config).unwrap();
    let line = t.lines().position(|l| l.contains("keep_dayly")).unwrap() + 1;
    let out = site.run(&["config", "check"]);
    assert_eq!(
        outcome(&out),
        (
            Some(1),
            String::new(),
            format!(
                "cairn: {}:{line}:1: key `keep_dayly`: unknown key `keep_dayly`; did you mean `keep_daily`?\n",
                site.config.display()
            )
        )
    );
    // Nothing close: the keys that are allowed there.
    site.write_config("\n[repository.x]\nurl = \"/x\"\nzzz = 1\n");
    let out = site.run(&["config", "check"]);
    let (code, _, stderr) = outcome(&out);
    assert_eq!(code, Some(1));
    assert!(
        stderr.ends_with(
            "unknown key `zzz` (keys here: url, password_file, password_command, connections, env)\n"
        ),
        "{stderr}"
    );
}

/// A repository another process holds locked (a forget, stopped before it
/// deletes) fails the job before any before hook runs: the services are not
/// stopped for a backup that cannot start.
#[test]
fn a_repository_locked_by_another_process_fails_the_job_before_any_before_hook_runs() {
    let site = Site::new();
    site.ok(&["-r", "main", "init"]);
    for _ in 0..2 {
        site.ok(&["-r", "main", "backup", "-q", &site.p("A")]);
    }
    let mut forget = site.env.spawn(
        &["forget", "--keep-last", "1"],
        &[("FAILPOINTS", "forget::before_delete=return(stop)")],
    );
    wait_stopped(&mut forget);
    let out = site.run(&["run", "app", "--retry-lock", "0s"]);
    let (code, stdout, stderr) = outcome(&out);
    assert_eq!((code, stdout.as_str()), (Some(1), ""), "{stderr}");
    assert!(!site.path("marker").exists(), "the before hook did not run");
    let first = stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with("job app: backup failed: ") && first.contains("lock"),
        "{stderr}"
    );
    assert_eq!(site.hooks_log(), "on_failure\nfinally failure\n");
    resume(&forget);
    let done = forget.wait_with_output().unwrap();
    assert!(done.status.success(), "{:?}", done);
}

/// Global options given to a command that would not use them are errors
/// naming the command and the option, before anything runs: events that
/// never come (`--progress json` on `snapshots`), JSON from `dump`, a lock
/// wait where no lock is taken, a repository for `completions`.
#[test]
fn options_a_command_would_not_use_are_errors() {
    let site = Site::new();
    site.ok(&["-r", "main", "init"]);
    for (args, message) in [
        (
            &["snapshots", "--progress", "json"][..],
            "cairn: `cairn snapshots` does not take --progress json: it reports no progress\n",
        ),
        (
            &["dump", "--json", "latest", "/x"][..],
            "cairn: `cairn dump` does not take --json: it prints no JSON\n",
        ),
        (
            &["snapshots", "--retry-lock", "5m"][..],
            "cairn: `cairn snapshots` does not take --retry-lock: it takes no lock\n",
        ),
        (
            &["completions", "bash", "-r", "main"][..],
            "cairn: `cairn completions` does not take -r/--repo: it opens no repository\n",
        ),
    ] {
        let out = site.run(args);
        assert_eq!(
            outcome(&out),
            (Some(1), String::new(), message.to_string()),
            "{args:?}"
        );
    }
    // What such a command does honour stays accepted.
    site.ok(&["snapshots", "--progress", "off"]);
    site.ok(&["snapshots", "--json"]);
}
