//! The layering rules of `docs/ARCHITECTURE.md`, checked on the source
//! text and the manifest: the format codecs and the backends never see keys
//! or do cryptography; dependencies point down (operations never name a
//! concrete backend, the repository layer never names an operation,
//! nothing in the library names the command line); the library prints
//! nothing and reads no environment; it builds without the CLI crates.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn assert_layer_avoids(layer: &str, forbidden: &[&str]) {
    let root = src().join(layer);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(!files.is_empty(), "no sources under {}", root.display());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for word in forbidden {
            assert!(
                !text.contains(word),
                "{} mentions {word}: the {layer} layer must not depend on it (docs/ARCHITECTURE.md)",
                f.display()
            );
        }
    }
}

/// Every library source file (everything under `src/` but the binary:
/// `src/main.rs` and `src/cli/`), with its text.
fn library_sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let cli = src().join("cli");
    let main = src().join("main.rs");
    let out: Vec<(PathBuf, String)> = files
        .into_iter()
        .filter(|f| !f.starts_with(&cli) && *f != main)
        .map(|f| {
            let t = std::fs::read_to_string(&f).unwrap();
            (f, t)
        })
        .collect();
    assert!(out.len() > 20, "library sources not found");
    out
}

/// The code of a source file: comment lines (`//`, `//!`, `///`) left out,
/// so that documentation may name what the code must not use.
fn code(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_library_prints_nothing() {
    for (f, text) in library_sources() {
        for word in ["println!", "eprintln!", "print!", "eprint!", "dbg!"] {
            assert!(
                !code(&text).contains(word),
                "{} uses {word}: the library never prints; warnings and events go to the caller's Observer (src/observer.rs)",
                f.display()
            );
        }
    }
}

#[test]
fn the_library_reads_no_environment() {
    for (f, text) in library_sources() {
        for word in ["std::env", "env::var", "var_os(", "temp_dir()"] {
            assert!(
                !code(&text).contains(word),
                "{} uses {word}: the library reads no environment; the command line reads it and passes values in",
                f.display()
            );
        }
    }
}

#[test]
fn nothing_in_the_library_names_the_command_line() {
    for (f, text) in library_sources() {
        for word in [
            "crate::cli",
            "clap",
            "anyhow",
            "indicatif",
            "rpassword",
            "ureq",
            "toml::",
            "signal_hook",
        ] {
            assert!(
                !code(&text).contains(word),
                "{} names {word}, a command-line concern",
                f.display()
            );
        }
    }
}

#[test]
fn operations_never_name_a_concrete_backend() {
    assert_layer_avoids(
        "ops",
        &[
            "crate::backend::local",
            "crate::backend::remote",
            "crate::backend::cache",
            "LocalBackend",
            "RemoteBackend",
            "opendal",
        ],
    );
}

#[test]
fn the_repository_layer_never_names_an_operation() {
    assert_layer_avoids("repo", &["crate::ops", "crate::source"]);
}

#[test]
fn lower_layers_never_name_the_layers_above() {
    for layer in ["format", "crypto", "chunker", "index", "backend"] {
        assert_layer_avoids(layer, &["crate::repo", "crate::ops", "crate::source"]);
    }
    assert_layer_avoids("source", &["crate::repo", "crate::ops"]);
}

/// The crates only the command line uses. (serde_json is not one: the
/// library speaks JSON with REST servers, `backend::rest` and `serve`;
/// what the library prints is still nothing.)
const CLI_CRATES: [&str; 10] = [
    "anyhow",
    "clap",
    "clap_complete",
    "clap_mangen",
    "indicatif",
    "rpassword",
    "signal-hook",
    "tar",
    "toml",
    "ureq",
];

/// The manifest makes every command-line crate optional, enabled by the
/// default `cli` feature, and the binary needs that feature.
#[test]
fn the_command_line_crates_are_optional_behind_the_cli_feature() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let section = |name: &str| -> String {
        let start = manifest
            .find(&format!("\n[{name}]\n"))
            .unwrap_or_else(|| panic!("no [{name}] in Cargo.toml"));
        let rest = &manifest[start + name.len() + 4..];
        rest[..rest.find("\n[").unwrap_or(rest.len())].to_string()
    };
    let deps = section("dependencies");
    let features = section("features");
    for krate in CLI_CRATES {
        let line = deps
            .lines()
            .find(|l| l.split('=').next().is_some_and(|k| k.trim() == krate))
            .unwrap_or_else(|| panic!("{krate} is not a dependency"));
        assert!(
            line.contains("optional = true"),
            "{krate} must be optional: {line}"
        );
        assert!(
            features.contains(&format!("\"dep:{krate}\"")),
            "the cli feature must enable {krate}"
        );
    }
    assert!(
        features.contains("default = [\"cli\"]"),
        "cli must be a default feature"
    );
    let bin = section("[bin]");
    assert!(
        bin.contains("required-features = [\"cli\"]"),
        "the binary must need the cli feature: {bin}"
    );
}

/// `cargo tree` of the library without default features: none of the
/// command-line crates is a direct dependency, and none but `anyhow` and
/// `serde_json` (which OpenDAL itself uses) is anywhere in the tree.
#[test]
fn the_library_builds_without_the_command_line_crates() {
    let tree = |depth: Option<&str>| -> std::collections::BTreeSet<String> {
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.args([
            "tree",
            "--offline",
            "--locked",
            "--no-default-features",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ]);
        if let Some(d) = depth {
            cmd.args(["--depth", d]);
        }
        let out = cmd.output().expect("cargo runs");
        assert!(
            out.status.success(),
            "cargo tree failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    };
    let direct = tree(Some("1"));
    assert!(
        direct.contains("cairn") && direct.contains("blake3"),
        "{direct:?}"
    );
    for krate in CLI_CRATES {
        assert!(
            !direct.contains(krate),
            "{krate} is a dependency of the library without the cli feature"
        );
    }
    let all = tree(None);
    for krate in CLI_CRATES.iter().filter(|k| !["anyhow"].contains(k)) {
        assert!(
            !all.contains(*krate),
            "{krate} is in the library's dependency tree without the cli feature"
        );
    }
}

#[test]
fn format_does_no_crypto_and_no_io() {
    assert_layer_avoids(
        "format",
        &[
            "crate::crypto",
            "chacha20poly1305",
            "blake3",
            "std::fs",
            "crate::backend",
        ],
    );
}

#[test]
fn backends_never_see_keys() {
    assert_layer_avoids(
        "backend",
        &["crate::crypto", "crate::format", "crate::repo", "SealKey"],
    );
}

#[test]
fn seal_overhead_agrees_between_format_and_crypto() {
    assert_eq!(cairn::format::SEAL_OVERHEAD, cairn::crypto::SEAL_OVERHEAD);
}
