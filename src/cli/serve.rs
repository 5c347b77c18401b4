//! `cairn serve`: serve the repositories below a directory over restic's
//! REST protocol (see `cairn::serve`), so that backup hosts reach them as
//! `rest:http(s)://user:pass@host:port/user/repo` with their own
//! credentials, and, with `--append-only`, cannot delete what they wrote.

use anyhow::{Context, Result, bail};

use super::GlobalArgs;

/// Arguments of `cairn serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The directory that holds the repositories (`ROOT/alice/repo` is
    /// `rest:http://host:port/alice/repo`; a local repository there, as
    /// `cairn -r ROOT/alice/repo` sees it).
    #[arg(long, value_name = "DIR")]
    root: std::path::PathBuf,
    /// Address and port to listen on (port 0: any free port, printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    listen: String,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Users and bcrypt password hashes, one `user:hash` a line, as
    /// `htpasswd -B` writes them. Without it, anyone who reaches the port
    /// reaches every repository.
    #[arg(long, value_name = "FILE")]
    htpasswd_file: Option<std::path::PathBuf>,
    /// A user reaches only the repositories below `/USER/` (needs
    /// --htpasswd-file).
    #[arg(long)]
    private_repos: bool,
    /// Objects can be created, never deleted or overwritten (lock files
    /// excepted): a client that is broken into cannot destroy its backups.
    /// Run forget and prune on the server, on the directory.
    #[arg(long)]
    append_only: bool,
    /// The most the root directory may hold (e.g. 500G, 2T); writes past
    /// it are refused.
    #[arg(long, value_name = "SIZE")]
    max_size: Option<String>,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let max_size = a
        .max_size
        .as_deref()
        .map(|s| super::parse_size("--max-size", s))
        .transpose()?;
    if a.private_repos && a.htpasswd_file.is_none() {
        bail!("--private-repos needs --htpasswd-file: each repository belongs to a user");
    }
    let listener = std::net::TcpListener::bind(&a.listen)
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let addr = listener.local_addr().context("cannot listen")?;
    let scheme = if a.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let mut notes = Vec::new();
    if a.append_only {
        notes.push("append-only");
    }
    if a.private_repos {
        notes.push("private repositories");
    }
    if a.htpasswd_file.is_none() {
        notes.push("no authentication");
    }
    eprintln!(
        "cairn serve: listening on {scheme}://{addr}/ (root {}{}{})",
        a.root.display(),
        if notes.is_empty() { "" } else { "; " },
        notes.join(", ")
    );
    cairn::serve::serve(
        listener,
        cairn::serve::ServeOptions {
            root: a.root.clone(),
            append_only: a.append_only,
            private_repos: a.private_repos,
            htpasswd: a.htpasswd_file.clone(),
            max_size,
            log: (!g.quiet).then(|| -> cairn::serve::Log {
                std::sync::Arc::new(|line: &str| eprintln!("cairn serve: {line}"))
            }),
            tls: a.tls_cert.clone().zip(a.tls_key.clone()),
        },
    )?;
    Ok(super::exit::OK)
}
