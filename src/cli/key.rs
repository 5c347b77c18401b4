//! `cairn key`: list, add, remove keys, and change the passphrase.

use anyhow::{Context, Result, bail};
use cairn::id::KeyId;
use cairn::repo::kdf_from_env;

use super::GlobalArgs;

/// Arguments of `cairn key`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    /// Read the new passphrase from this file (for add and passwd).
    #[arg(long, global = true, value_name = "FILE")]
    new_password_file: Option<std::path::PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// List the keys (the one in use is marked with *).
    List,
    /// Add a key for another passphrase.
    Add,
    /// Remove a key (not the last one, not the one in use).
    Remove {
        /// The key's ID (or a unique prefix).
        id: String,
    },
    /// Change the passphrase of the key in use.
    Passwd,
}

fn new_passphrase(a: &Args) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    if let Some(f) = &a.new_password_file {
        let mut b = std::fs::read(f)
            .with_context(|| format!("cannot read the new password file {}", f.display()))?;
        while b.last().is_some_and(|&c| c == b'\n' || c == b'\r') {
            b.pop();
        }
        return Ok(zeroize::Zeroizing::new(b));
    }
    if let Some(p) = std::env::var_os("CAIRN_NEW_PASSWORD") {
        use std::os::unix::ffi::OsStringExt;
        return Ok(zeroize::Zeroizing::new(p.into_vec()));
    }
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("new passphrase: ")?;
        let q = rpassword::prompt_password("new passphrase again: ")?;
        if p != q {
            bail!("the passphrases do not match");
        }
        return Ok(zeroize::Zeroizing::new(p.into_bytes()));
    }
    bail!("no new passphrase: use --new-password-file or CAIRN_NEW_PASSWORD, or run on a terminal")
}

fn resolve(repo: &cairn::repo::Repository, spec: &str) -> Result<KeyId> {
    let spec = spec.to_ascii_lowercase();
    let matches: Vec<KeyId> = repo
        .list_keys()?
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| id.to_hex().starts_with(&spec))
        .collect();
    match matches.as_slice() {
        [id] => Ok(*id),
        [] => bail!("no key matches {spec:?}"),
        _ => bail!("{spec:?} matches several keys; give more characters"),
    }
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let mut repo = g.open()?;
    match &a.action {
        Action::List => {
            let keys = repo.list_keys()?;
            if g.json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|(id, k)| {
                        serde_json::json!({
                            "id": id.to_hex(), "current": *id == repo.key_id(),
                            "created": k.created, "hostname": k.hostname, "username": k.username,
                            "kdf": {"memory_kib": k.kdf.memory_kib, "iterations": k.kdf.iterations, "parallelism": k.kdf.parallelism},
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                println!(
                    " {:<8}  {:<19}  {:<12}  {:<10}  KDF",
                    "ID", "Created", "Host", "User"
                );
                for (id, k) in &keys {
                    println!(
                        "{}{:<8}  {:<19}  {:<12}  {:<10}  Argon2id {}, t={}, p={}",
                        if *id == repo.key_id() { "*" } else { " " },
                        id.short(),
                        super::format_time(k.created.saturating_mul(1_000_000_000), 0),
                        k.hostname,
                        k.username,
                        super::human_bytes(u64::from(k.kdf.memory_kib) * 1024),
                        k.kdf.iterations,
                        k.kdf.parallelism
                    );
                }
            }
        }
        Action::Add => {
            let pass = new_passphrase(a)?;
            let id = repo.add_key(&pass, kdf_from_env())?;
            if g.json {
                super::print_summary(
                    &serde_json::json!({"action": "added", "key_id": id.to_hex()}),
                )?;
            } else if !g.quiet {
                println!("added key {}", id.short());
            }
        }
        Action::Remove { id } => {
            let id = resolve(&repo, id)?;
            repo.remove_key(&id)?;
            if g.json {
                super::print_summary(
                    &serde_json::json!({"action": "removed", "key_id": id.to_hex()}),
                )?;
            } else if !g.quiet {
                println!("removed key {}", id.short());
            }
        }
        Action::Passwd => {
            let pass = new_passphrase(a)?;
            let id = repo.change_passphrase(&pass, kdf_from_env())?;
            if g.json {
                super::print_summary(
                    &serde_json::json!({"action": "passphrase changed", "key_id": id.to_hex()}),
                )?;
            } else if !g.quiet {
                println!("passphrase changed (new key {})", id.short());
            }
        }
    }
    Ok(super::exit::OK)
}
