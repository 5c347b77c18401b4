//! `cairn key`: list, add, remove keys, and change the passphrase.

use anyhow::{Result, bail};
use cairn::id::KeyId;

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
        return super::read_password_file("new password file", f);
    }
    if let Some(p) = super::secret_env("CAIRN_NEW_PASSWORD") {
        return Ok(p);
    }
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("new passphrase: ")?;
        let q = zeroize::Zeroizing::new(rpassword::prompt_password("new passphrase again: ")?);
        if p != *q {
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
        .map(|k| k.id)
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
                    .map(|k| {
                        let info = k.info.as_ref();
                        serde_json::json!({
                            "id": k.id.to_hex(), "current": k.id == repo.key_id(),
                            "version": k.version,
                            "created": info.map(|i| i.created),
                            "hostname": info.map(|i| i.hostname.as_str()),
                            "username": info.map(|i| i.username.as_str()),
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
                for k in &keys {
                    let (created, host, user) = match &k.info {
                        Some(i) => (
                            super::format_time(i.created.saturating_mul(1_000_000_000), 0),
                            i.hostname.as_str(),
                            i.username.as_str(),
                        ),
                        None => ("?".to_string(), "?", "?"),
                    };
                    println!(
                        "{}{:<8}  {:<19}  {:<12}  {:<10}  Argon2id {}, t={}, p={}{}",
                        if k.id == repo.key_id() { "*" } else { " " },
                        k.id.short(),
                        created,
                        host,
                        user,
                        super::human_bytes(u64::from(k.kdf.memory_kib) * 1024),
                        k.kdf.iterations,
                        k.kdf.parallelism,
                        if k.version == 1 {
                            "  (v1: host and user in clear text)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        Action::Add => {
            let pass = new_passphrase(a)?;
            let id = repo.add_key(&pass, super::kdf_policy().0)?;
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
            let id = repo.change_passphrase(&pass, super::kdf_policy().0)?;
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
