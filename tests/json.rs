//! Every command's `--json` output against the schema blocks of
//! `docs/JSON.md`, in both directions (no undocumented field, no documented
//! field missing), and progress output: never without a terminal unless
//! asked for with `--progress json`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::*;
use serde_json::Value;

/// The schema blocks of docs/JSON.md by name.
fn schemas() -> BTreeMap<String, Value> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/JSON.md"))
        .unwrap();
    let mut out = BTreeMap::new();
    let mut lines = doc.lines();
    while let Some(l) = lines.next() {
        let Some(name) = l.strip_prefix("schema: ") else {
            continue;
        };
        assert_eq!(
            lines.next(),
            Some("```json"),
            "block after `schema: {name}`"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let v: Value = serde_json::from_str(&body.join("\n"))
            .unwrap_or_else(|e| panic!("schema {name} is not JSON: {e}"));
        assert!(
            out.insert(name.to_string(), v).is_none(),
            "schema {name} twice"
        );
    }
    assert!(out.len() > 20, "found the schema blocks");
    out
}

struct Checker {
    schemas: BTreeMap<String, Value>,
    used: BTreeSet<String>,
}

impl Checker {
    /// Check `v` against template `t`; errors name the JSON path.
    fn check(&mut self, v: &Value, t: &Value, at: &str) -> Result<(), String> {
        match t {
            Value::String(s) => {
                let mut why = Vec::new();
                for alt in s.split('|') {
                    let ok = match alt {
                        "string" => v.is_string(),
                        "integer" => v.is_i64() || v.is_u64(),
                        "number" => v.is_number(),
                        "boolean" => v.is_boolean(),
                        "null" => v.is_null(),
                        "array" => v.is_array(),
                        "object" => v.is_object(),
                        "any" => true,
                        lit if lit.starts_with('=') => v.as_str() == Some(&lit[1..]),
                        r if r.starts_with("schema:") => {
                            let name = &r[7..];
                            self.used.insert(name.to_string());
                            let sub = self
                                .schemas
                                .get(name)
                                .unwrap_or_else(|| panic!("{at}: no schema {name}"))
                                .clone();
                            match self.check(v, &sub, at) {
                                Ok(()) => true,
                                Err(e) => {
                                    why.push(e);
                                    false
                                }
                            }
                        }
                        other => panic!("{at}: unknown type {other:?} in docs/JSON.md"),
                    };
                    if ok {
                        return Ok(());
                    }
                }
                Err(format!("{at}: {v} is not {s} {why:?}"))
            }
            Value::Array(items) => {
                let Value::Array(vs) = v else {
                    return Err(format!("{at}: {v} is not an array"));
                };
                for (i, x) in vs.iter().enumerate() {
                    self.check(x, &items[0], &format!("{at}[{i}]"))?;
                }
                Ok(())
            }
            Value::Object(fields) => {
                let Value::Object(o) = v else {
                    return Err(format!("{at}: {v} is not an object"));
                };
                for (k, ft) in fields {
                    let (name, optional) = match k.strip_prefix('?') {
                        Some(n) => (n, true),
                        None => (k.as_str(), false),
                    };
                    match o.get(name) {
                        Some(x) => self.check(x, ft, &format!("{at}.{name}"))?,
                        None if optional => {}
                        None => {
                            return Err(format!("{at}: documented field `{name}` missing in {v}"));
                        }
                    }
                }
                for k in o.keys() {
                    if !fields.contains_key(k) && !fields.contains_key(&format!("?{k}")) {
                        return Err(format!(
                            "{at}: field `{k}` is not documented in docs/JSON.md"
                        ));
                    }
                }
                Ok(())
            }
            _ => panic!("{at}: bad template {t}"),
        }
    }

    /// Check every line of a command's output; `name` picks the schema:
    /// `name:MESSAGE_TYPE` when documented, else `name`. Returns the lines.
    fn output(&mut self, name: &str, stdout: &str) -> Vec<Value> {
        // `cat` pretty-prints one value; `snapshots` and `key list` print
        // one array; everything else prints one value per line.
        let whole = name.starts_with("cat-") || name == "snapshot" || stdout.starts_with('[');
        let values: Vec<Value> = if whole {
            vec![serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{name}: {e}: {stdout}"))]
        } else {
            stdout
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}")))
                .collect()
        };
        assert!(!values.is_empty(), "{name}: no output");
        for v in &values {
            let mt = v.get("message_type").and_then(Value::as_str).unwrap_or("");
            let schema = match mt {
                "status" | "error" => mt.to_string(),
                _ if self.schemas.contains_key(&format!("{name}:{mt}")) => format!("{name}:{mt}"),
                _ => name.to_string(),
            };
            let t = self
                .schemas
                .get(&schema)
                .unwrap_or_else(|| panic!("no schema {schema} in docs/JSON.md"))
                .clone();
            self.used.insert(schema.clone());
            if let Err(e) = self.check(v, &t, &schema) {
                panic!("{e}");
            }
        }
        values
    }
}

fn stdout_of(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(3),
        "cairn {args:?}: {:?} {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_command_prints_documented_json() {
    let mut c = Checker {
        schemas: schemas(),
        used: BTreeSet::new(),
    };
    let env = Env::uninit();
    c.output("init", &stdout_of(&env, &["init", "--json"]));

    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/a.bin"), random_bytes(3 << 20, 1)).unwrap();
    std::fs::write(src.join("b.txt"), b"hello\n").unwrap();
    std::os::unix::fs::symlink("b.txt", src.join("link")).unwrap();
    std::fs::write(
        src.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"caf\xe9")),
        b"latin-1 name",
    )
    .unwrap();
    let db = rusqlite::Connection::open(src.join("app.db")).unwrap();
    db.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let s = src.to_str().unwrap();

    // A database locked past the timeout: an error event, exit code 3.
    db.execute_batch("BEGIN EXCLUSIVE; INSERT INTO t VALUES (2);")
        .unwrap();
    let lines = c.output(
        "backup",
        &stdout_of(
            &env,
            &[
                "backup",
                "--json",
                "--progress",
                "json",
                "--sqlite-timeout",
                "0",
                s,
            ],
        ),
    );
    assert!(lines.iter().any(|l| l["message_type"] == "status"));
    assert!(
        lines.iter().any(|l| l["message_type"] == "error"),
        "{lines:?}"
    );
    assert_eq!(lines.last().unwrap()["message_type"], "summary");
    db.execute_batch("COMMIT;").unwrap();
    std::fs::write(src.join("b.txt"), b"hello again\n").unwrap();
    let second = c.output("backup", &stdout_of(&env, &["backup", "--json", s]));
    let id2 = second[0]["snapshot_id"].as_str().unwrap().to_string();
    let snaps = c.output("snapshots", &stdout_of(&env, &["snapshots", "--json"]));
    let id1 = snaps[0][0]["id"].as_str().unwrap().to_string();

    let ls = c.output("ls", &stdout_of(&env, &["ls", "--json", "latest"]));
    assert!(
        ls.iter().any(|l| l.get("path_hex").is_some()),
        "non-UTF-8 name"
    );
    assert!(ls.iter().any(|l| l.get("link_target").is_some()));
    let target = env.path("restore");
    let lines = c.output(
        "restore",
        &stdout_of(
            &env,
            &[
                "restore",
                "--json",
                "--progress",
                "json",
                "latest",
                "--target",
                target.to_str().unwrap(),
            ],
        ),
    );
    assert!(lines.iter().any(|l| l["message_type"] == "status"));
    c.output("diff", &stdout_of(&env, &["diff", "--json", &id1, &id2]));
    // Row-level diff of a database, in a repository of its own (the
    // snapshots here are counted below).
    {
        let env = Env::new();
        let dir = env.path("db");
        std::fs::create_dir(&dir).unwrap();
        let k = rusqlite::Connection::open(dir.join("k.db")).unwrap();
        k.execute_batch(
            "CREATE TABLE k(id INTEGER PRIMARY KEY, v); INSERT INTO k VALUES (1, 'a');",
        )
        .unwrap();
        let d = dir.to_str().unwrap();
        let a = env.backup_json(&[&dir], &[])["snapshot_id"]
            .as_str()
            .unwrap()
            .to_string();
        k.execute_batch("UPDATE k SET v = 'b' WHERE id = 1; INSERT INTO k VALUES (2, x'00');")
            .unwrap();
        let b = env.backup_json(&[&dir], &[])["snapshot_id"]
            .as_str()
            .unwrap()
            .to_string();
        let lines = c.output(
            "diff-rows",
            &stdout_of(&env, &["diff", "--json", &a, &b, "--rows", "--table", "k"]),
        );
        assert_eq!(lines.len(), 4, "a table, two rows, the summary: {lines:?}");
        let lines = c.output(
            "diff-rows",
            &stdout_of(
                &env,
                &["diff", "--json", &a, &b, "--rows", &format!("{d}/k.db")],
            ),
        );
        assert_eq!(lines.len(), 2, "a table, the summary: {lines:?}");
    }
    let lines = c.output("find", &stdout_of(&env, &["find", "--json", "*.txt"]));
    assert_eq!(lines.len(), 3, "b.txt in each snapshot, then the summary");
    let lines = c.output("find", &stdout_of(&env, &["find", "--json", "caf*"]));
    assert!(lines[0].get("path_hex").is_some(), "non-UTF-8 name");
    let lines = c.output(
        "find-history",
        &stdout_of(
            &env,
            &["find", "--json", "--history", &format!("{s}/b.txt")],
        ),
    );
    assert_eq!(lines[1]["change"], "modified");
    c.output("check", &stdout_of(&env, &["check", "--json"]));
    let lines = c.output(
        "check",
        &stdout_of(
            &env,
            &["check", "--json", "--progress", "json", "--read-data"],
        ),
    );
    assert!(lines.iter().any(|l| l["phase"] == "read data"));
    c.output("stats", &stdout_of(&env, &["stats", "--json"]));
    c.output("cat-config", &stdout_of(&env, &["cat", "config", "--json"]));
    c.output(
        "snapshot",
        &stdout_of(&env, &["cat", "snapshot", "latest", "--json"]),
    );
    let index = std::fs::read_dir(env.repo.join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    c.output(
        "cat-index",
        &stdout_of(&env, &["cat", "index", index.to_str().unwrap(), "--json"]),
    );
    let tree = snaps[0][0]["tree"].as_str().unwrap();
    c.output(
        "cat-tree",
        &stdout_of(&env, &["cat", "tree", tree, "--json"]),
    );

    // Keys.
    let keys = c.output("key-list", &stdout_of(&env, &["key", "list", "--json"]));
    assert_eq!(keys[0].as_array().unwrap().len(), 1);
    let added = env
        .cmd()
        .env("CAIRN_NEW_PASSWORD", "another one")
        .args(["key", "add", "--json"])
        .output()
        .unwrap();
    let added = c.output("key", &String::from_utf8(added.stdout).unwrap());
    let key_id = added[0]["key_id"].as_str().unwrap().to_string();
    c.output(
        "key",
        &stdout_of(&env, &["key", "remove", &key_id, "--json"]),
    );

    // Locks: a lock held by this process is kept by `unlock` and removed
    // by `unlock --remove-all`.
    let backend = std::sync::Arc::new(cairn::backend::local::LocalBackend::new(&env.repo));
    let repo = cairn::repo::Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    let lock = cairn::repo::lock::RepoLock::acquire(&repo, false).unwrap();
    let kept = c.output("unlock", &stdout_of(&env, &["unlock", "--json"]));
    assert_eq!(kept[0]["removed"].as_array().unwrap().len(), 0);
    let removed = c.output(
        "unlock",
        &stdout_of(&env, &["unlock", "--json", "--remove-all"]),
    );
    assert_eq!(removed[0]["removed"][0]["pid"], std::process::id());
    drop(lock);

    // Copy to a second repository.
    let other = Env::new();
    let out = other
        .cmd()
        .env("CAIRN_FROM_PASSWORD", PASSWORD)
        .args([
            "copy",
            "--json",
            "--progress",
            "json",
            "--from-repo",
            env.repo.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let lines = c.output("copy", &success(out));
    assert_eq!(lines.last().unwrap()["copied"], 2);

    let lines = c.output(
        "restore-test",
        &stdout_of(&env, &["restore-test", "--json", "--progress", "json"]),
    );
    assert!(lines.iter().any(|l| l["phase"] == "verify"));

    // Retention and prune.
    let lines = c.output(
        "forget",
        &stdout_of(&env, &["forget", "--json", "--keep-last", "1", "--dry-run"]),
    );
    assert_eq!(lines[0]["message_type"], "plan");
    let lines = c.output(
        "forget",
        &stdout_of(
            &env,
            &[
                "forget",
                "--json",
                "--progress",
                "json",
                "--keep-last",
                "1",
                "--prune",
            ],
        ),
    );
    assert!(lines.last().unwrap()["prune"].is_object());
    c.output("prune", &stdout_of(&env, &["prune", "--json"]));

    // Configuration, schedule and jobs.
    std::fs::write(env.path("pass"), PASSWORD).unwrap();
    let config = env.path("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "[repository.main]\nurl = \"{}\"\npassword_file = \"{}\"\n\n[job.docs]\nrepository = \"main\"\npaths = [\"{s}/sub\"]\nkeep_last = 3\n",
            env.repo.display(),
            env.path("pass").display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    c.output(
        "config-check",
        &stdout_of(&env, &["config", "check", cfg, "--json"]),
    );
    c.output(
        "schedule",
        &stdout_of(
            &env,
            &["--config", cfg, "schedule", "print", "docs", "--json"],
        ),
    );
    let out = env
        .cmd()
        .env("CAIRN_STATE_DIR", env.path("state"))
        .args(["--config", cfg, "run", "docs", "--json"])
        .output()
        .unwrap();
    let lines = c.output("run", &success(out));
    assert_eq!(lines[0]["jobs"][0]["ok"], true);

    // Commands that write artifacts refuse --json rather than ignore it.
    assert_eq!(
        env.ok(&["dump", &id2, &format!("{s}/b.txt")]),
        "hello again\n"
    );
    for args in [
        &["dump", "--json", &id2, &format!("{s}/b.txt")][..],
        &["completions", "bash", "--json"][..],
        &["man", "--json"][..],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("does not take --json: it prints no JSON"),
            "{args:?}"
        );
    }

    // Rewrite and tag; a rewritten snapshot names its original.
    let lines = c.output(
        "rewrite",
        &stdout_of(&env, &["rewrite", "--json", "--dry-run", "-e", "b.txt"]),
    );
    assert_eq!(lines[0]["rewritten"][0]["id"], Value::Null);
    let lines = c.output(
        "rewrite",
        &stdout_of(
            &env,
            &["rewrite", "--json", "--progress", "json", "-e", "b.txt"],
        ),
    );
    assert!(lines.iter().any(|l| l["phase"] == "rewrite"));
    let summary = lines.last().unwrap();
    assert_eq!(summary["rewritten"][0]["removed"][0]["type"], "file");
    let lines = c.output(
        "rewrite",
        &stdout_of(&env, &["tag", "--json", "--add", "x", "latest"]),
    );
    assert_eq!(lines[0]["removed"].as_array().unwrap().len(), 1);
    let snaps = c.output("snapshots", &stdout_of(&env, &["snapshots", "--json"]));
    assert!(
        snaps[0]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x.get("original").is_some())
    );

    // Repair, after the biggest pack (file data) is lost.
    let biggest = walk(&env.repo.join("data"))
        .into_iter()
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    std::fs::remove_file(&biggest).unwrap();
    let lines = c.output(
        "repair-index",
        &stdout_of(&env, &["repair", "index", "--json", "--progress", "json"]),
    );
    assert!(lines.iter().any(|l| l["phase"] == "read pack headers"));
    assert_eq!(
        lines.last().unwrap()["packs_missing"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let lines = c.output(
        "repair-snapshots",
        &stdout_of(&env, &["repair", "snapshots", "--json", "--forget"]),
    );
    assert!(
        !lines[0]["repaired"][0]["lost"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Every documented schema was seen (nothing documented that no
    // command prints).
    let unused: Vec<&String> = c.schemas.keys().filter(|k| !c.used.contains(*k)).collect();
    assert!(unused.is_empty(), "schemas no command printed: {unused:?}");
    drop(db);
}

/// Text that only a progress display would print: carriage returns,
/// terminal escapes, ETAs and status events.
fn has_progress(b: &[u8]) -> bool {
    let s = String::from_utf8_lossy(b);
    s.contains('\r') || s.contains('\x1b') || s.contains("ETA") || s.contains("\"status\"")
}

#[test]
fn progress_never_appears_without_a_terminal() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // Enough data that a progress display would tick at least once.
    for i in 0..4 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(24 << 20, i)).unwrap();
    }
    let s = src.to_str().unwrap();
    let target = env.path("restore");
    let t = target.to_str().unwrap();
    let other = Env::new();
    for json in [false, true] {
        let mut runs: Vec<Vec<&str>> = vec![
            vec!["backup", "--force", s],
            vec!["restore", "latest", "--target", t],
            vec!["check", "--read-data"],
            vec!["restore-test"],
            vec!["forget", "--keep-last", "1", "--prune"],
        ];
        if json {
            for r in &mut runs {
                r.push("--json");
            }
        }
        for args in runs {
            let out = env.run(&args);
            assert!(out.status.success(), "{args:?}");
            assert!(!has_progress(&out.stdout), "{args:?}: stdout has progress");
            assert!(!has_progress(&out.stderr), "{args:?}: stderr has progress");
        }
        std::fs::remove_dir_all(&target).unwrap();
    }
    let out = other
        .cmd()
        .env("CAIRN_FROM_PASSWORD", PASSWORD)
        .args(["copy", "--from-repo", env.repo.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!has_progress(&out.stdout) && !has_progress(&out.stderr));

    // The same run asked for JSON progress does print it: the check above
    // is not vacuous.
    let out = env.run(&["backup", "--force", "--progress", "json", s]);
    assert!(has_progress(&out.stdout));

    // The last status event accounts for every file and byte exactly once
    // (large files report their bytes as they are read or written).
    let last_status = |stdout: &[u8]| -> Value {
        String::from_utf8_lossy(stdout)
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message_type"] == "status")
            .unwrap()
    };
    let total = 4 * (24u64 << 20);
    let out = env.run(&["backup", "--force", "--json", "--progress", "json", s]);
    let st = last_status(&out.stdout);
    assert_eq!(st["items_done"], 4, "{st}");
    assert_eq!(st["bytes_done"], total, "{st}");
    assert_eq!(st["bytes_total"], total, "{st}");
    assert_eq!(st["percent_done"], 100.0, "{st}");
    let out = env.run(&[
        "restore",
        "latest",
        "--target",
        t,
        "--json",
        "--progress",
        "json",
    ]);
    let st = last_status(&out.stdout);
    assert_eq!(
        (st["items_done"].as_u64(), st["bytes_done"].as_u64()),
        (Some(4), Some(total)),
        "{st}"
    );
}

/// On a terminal (a pseudo-terminal from `script`), a long backup draws a
/// bar on standard error: the display exists and is what the test above
/// keeps away from pipes.
#[test]
fn a_terminal_gets_a_progress_bar() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        skipped("a_terminal_gets_a_progress_bar: util-linux `script` is not installed");
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..2 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(8 << 20, i)).unwrap();
    }
    let bin = assert_cmd::cargo::cargo_bin("cairn");
    let log = env.path("typescript");
    let out = std::process::Command::new("script")
        .arg("-qefc")
        .arg(format!(
            "{} backup --compression 19 {}",
            bin.display(),
            src.display()
        ))
        .arg(&log)
        .env("CAIRN_REPOSITORY", &env.repo)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_INSECURE_TEST_KDF", "1")
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    success(out);
    let seen = std::fs::read(&log).unwrap();
    assert!(has_progress(&seen), "{}", String::from_utf8_lossy(&seen));
}
