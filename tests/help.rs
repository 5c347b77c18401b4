//! Help and manual pages: global options under their own heading, usage
//! lines that do not take options from the environment for required ones,
//! no empty `[env: X=]`, `cairn run` pointing at `--all`, and `cairn man`
//! with EXIT STATUS, ENVIRONMENT, FILES and the configuration keys.

mod common;

use common::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `cairn ARGS` with none of Cairn's variables set, and `vars` added.
fn cairn(args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"));
    for v in [
        "CAIRN_REPOSITORY",
        "CAIRN_PASSWORD_FILE",
        "CAIRN_PASSWORD_COMMAND",
        "CAIRN_PASSWORD",
        "CAIRN_CONFIG",
        "CAIRN_FROM_REPOSITORY",
    ] {
        c.env_remove(v);
    }
    c.args(args).envs(vars.iter().copied()).output().unwrap()
}

/// The lines of the help section `heading` (up to the next blank line
/// followed by a heading, or the end).
fn section<'a>(help: &'a str, heading: &str) -> Vec<&'a str> {
    let mut lines = help.lines().skip_while(|l| *l != heading);
    assert!(lines.next().is_some(), "no {heading:?} in:\n{help}");
    lines
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect()
}

#[test]
fn global_options_are_listed_apart_from_the_command_s_own() {
    let out = cairn(&["backup", "--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stderr), "");
    let help = text(&out.stdout);
    assert!(
        help.starts_with(
            "Back up files and directories into a new snapshot\n\n\
             Usage: cairn backup [OPTIONS] [PATHS]... [-- <COMMAND>...]\n"
        ),
        "{help}"
    );
    let own = section(&help, "Options:").join("\n");
    let global = section(&help, "Global options:").join("\n");
    assert!(own.contains("  -e, --exclude <GLOB>\n"), "{own}");
    assert!(own.contains("  -h, --help\n"), "{own}");
    for flag in [
        "--repo",
        "--password-file",
        "--password-command",
        "--json",
        "--progress",
        "--config",
        "--retry-lock",
    ] {
        assert!(
            !own.contains(flag),
            "{flag} among backup's own options:\n{own}"
        );
        assert!(
            global.contains(flag),
            "{flag} not among the global options:\n{global}"
        );
    }
    assert!(
        global.starts_with(
            "  -r, --repo <REPO>\n          Repository location: a local directory, \
             `sftp:user@host:/path`,\n"
        ),
        "{global}"
    );
    // `cairn --help` lists them under the same heading.
    let top = text(&cairn(&["--help"], &[]).stdout);
    assert!(
        section(&top, "Global options:")
            .join("\n")
            .contains("--repo <REPO>"),
        "{top}"
    );
}

/// An unset variable shows no `[env: X=]`; a set one does not show its
/// value either (a passphrase command or a repository URL with a key in
/// it has no business in a help screen).
#[test]
fn environment_variables_are_named_without_values() {
    for vars in [
        &[][..],
        &[
            ("CAIRN_REPOSITORY", "/srv/secret-place"),
            ("CAIRN_CONFIG", "/etc/x.toml"),
        ][..],
    ] {
        let help = text(&cairn(&["backup", "--help"], vars).stdout);
        for name in [
            "CAIRN_REPOSITORY",
            "CAIRN_PASSWORD_FILE",
            "CAIRN_PASSWORD_COMMAND",
            "CAIRN_CONFIG",
        ] {
            assert!(
                help.contains(&format!("[env: {name}]\n")),
                "{name}:\n{help}"
            );
        }
        assert!(!help.contains("=]"), "{help}");
        assert!(!help.contains("secret-place"), "{help}");
        let copy = text(&cairn(&["copy", "--help"], vars).stdout);
        assert!(copy.contains("[env: CAIRN_FROM_REPOSITORY]\n"), "{copy}");
        assert!(!copy.contains("=]"), "{copy}");
    }
}

/// With the repository and the password file in the environment, a
/// missing path's usage line was `cairn backup --repo <REPO>
/// --password-file <PASSWORD_FILE> <PATHS>...`, as if both were required.
#[test]
fn a_missing_argument_s_usage_does_not_show_options_from_the_environment() {
    let out = cairn(
        &["backup"],
        &[
            ("CAIRN_REPOSITORY", "/srv/backup"),
            ("CAIRN_PASSWORD_FILE", "/etc/cairn/pass"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "error: the following required arguments were not provided:\n  <PATHS>...\n\n\
         Usage: cairn backup [OPTIONS] [PATHS]... [-- <COMMAND>...]\n\n\
         For more information, try '--help'.\n"
    );
    // The same in a nested command, with the option on the command line.
    let out = cairn(&["-r", "/srv/backup", "key", "remove"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("\nUsage: cairn key remove [OPTIONS] <"),
        "{err}"
    );
    assert!(!err.contains("--repo <REPO>"), "{err}");
}

#[test]
fn run_without_a_job_mentions_all() {
    let out = cairn(&["run"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "error: the following required arguments were not provided:\n  <JOB>...\n\n\
         Usage: cairn run [OPTIONS] <JOB>...\n       cairn run [OPTIONS] --all\n\n\
         For more information, try '--help'.\n"
    );
}

/// The roff source's section headings, in order.
fn sections(page: &str) -> Vec<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix(".SH "))
        .map(|h| h.trim_matches('"').to_string())
        .collect()
}

#[test]
fn the_manual_page_has_exit_status_environment_files_and_configuration() {
    let out = cairn(&["man"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stderr), "");
    let page = text(&out.stdout);
    assert_eq!(
        sections(&page),
        [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "GLOBAL OPTIONS",
            "SUBCOMMANDS",
            "EXIT STATUS",
            "ENVIRONMENT",
            "FILES",
            "CONFIGURATION",
            "VERSION"
        ]
    );
    let part = |from: &str, to: &str| -> String {
        let a = page.find(&format!(".SH {from}")).unwrap();
        let b = page.find(&format!(".SH {to}")).unwrap();
        page[a..b].to_string()
    };
    let exit = part("\"EXIT STATUS\"", "ENVIRONMENT");
    for code in ["0", "1", "3", "10", "11", "12", "130", "143"] {
        assert!(
            exit.contains(&format!(".TP\n\\fB{code}\\fR\n")),
            "exit {code}:\n{exit}"
        );
    }
    let env = part("ENVIRONMENT", "FILES");
    for var in [
        "CAIRN_REPOSITORY",
        "CAIRN_PASSWORD_FILE",
        "CAIRN_PASSWORD_COMMAND",
        "CAIRN_PASSWORD",
        "CAIRN_CONFIG",
        "CAIRN_CACHE_DIR",
        "CAIRN_STATE_DIR",
        "AWS_ACCESS_KEY_ID",
        "CAIRN_SFTP_KEY",
    ] {
        assert!(env.contains(&format!("\\fB{var}")), "{var}:\n{env}");
    }
    let files = part("FILES", "CONFIGURATION");
    assert!(files.contains("/etc/cairn/cairn.toml"), "{files}");
    let config = part("CONFIGURATION", "VERSION");
    assert!(config.contains(".SS [repository.NAME]\n"), "{config}");
    assert!(config.contains(".SS [job.NAME]\n"), "{config}");
    // Every key the guide's tables document is in the manual too.
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/GUIDE.md")).unwrap();
    let mut keys = Vec::new();
    for table in ["### Repository keys", "### Job keys"] {
        let rows = guide
            .split(table)
            .nth(1)
            .unwrap()
            .lines()
            .skip_while(|l| !l.starts_with("| `"))
            .take_while(|l| l.starts_with('|'));
        for row in rows {
            let first = row.split('|').nth(1).unwrap();
            keys.extend(first.split('`').skip(1).step_by(2).map(str::to_string));
        }
    }
    assert!(keys.len() > 30, "{keys:?}");
    for key in keys {
        assert!(
            config.contains(&format!("\\fB{key}")) || config.contains(&format!(", {key}")),
            "configuration key {key} is in docs/GUIDE.md but not in `cairn man`"
        );
    }
    // `--dir` writes the same page as cairn.1, next to the subcommands'.
    let env = Env::uninit();
    let dir = env.path("man");
    let out = cairn(&["man", "--dir", dir.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(dir.join("cairn.1")).unwrap(), page);
    assert!(dir.join("cairn-backup.1").exists());
}

/// The long options of `cairn COMMAND`'s own "Options:" section.
fn own_options(command: &str) -> Vec<String> {
    let out = cairn(&[command, "--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    section(&help, "Options:")
        .iter()
        .filter_map(|l| {
            // `      --path`, `  -s, --snapshot <ID>`
            let l = l.trim_start();
            let l = match l.get(2..4) {
                Some(", ") if !l.starts_with("--") => &l[4..],
                _ => l,
            };
            let flag = l.strip_prefix("--")?;
            let end = flag.find([' ', '\t']).unwrap_or(flag.len());
            Some(format!("--{}", &flag[..end]))
        })
        .filter(|f| f != "--help")
        .collect()
}

#[test]
fn the_guide_documents_every_option_of_find_rewrite_tag_serve_ui_and_mount() {
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/GUIDE.md"),
    )
    .unwrap();
    let between = |from: &str, to: &str| -> String {
        let a = guide
            .find(from)
            .unwrap_or_else(|| panic!("{from:?} in GUIDE.md"));
        let b = guide[a..].find(to).map_or(guide.len(), |b| a + b);
        guide[a..b].to_string()
    };
    for (command, text) in [
        ("find", between("**Finding a file**", "**Databases.**")),
        ("rewrite", between("## 10. ", "**Tags**")),
        ("tag", between("**Tags**", "\n## ")),
        (
            "serve",
            between("### Out of the backup host's reach", "### Copying"),
        ),
        ("ui", between("## 11. ", "\n## ")),
        (
            "mount",
            between("### Browsing snapshots with `mount`", "\n## "),
        ),
    ] {
        let options = own_options(command);
        assert!(options.len() >= 2, "{command}: {options:?}");
        for o in options {
            assert!(
                text.contains(&format!("`{o}")) || text.contains(&format!("{command} {o}")),
                "GUIDE.md's section on `cairn {command}` does not mention {o}"
            );
        }
    }
}
