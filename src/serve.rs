//! `cairn serve`: a repository server speaking restic's REST protocol,
//! version 2, so that a backup host reaches its repository with its own
//! HTTP credentials and never with the storage itself.
//!
//! Owns: routing the protocol's paths onto repositories below one root
//! directory (each stored exactly as a local repository is, so that
//! `cairn -r ROOT/REPO prune` runs on the server), HTTP basic
//! authentication against an htpasswd file of bcrypt entries, private
//! repositories (user `alice` reaches only `/alice/...`), append-only mode,
//! a quota, and one log line per request. The server moves opaque bytes:
//! it never sees a passphrase or a key, and it checks nothing about what it
//! stores beyond object names.
//!
//! The protocol, as this server speaks it (a repository path `R` is any
//! number of `/`-separated segments, empty for the root itself):
//!
//! | Request                       | Meaning                                        |
//! |-------------------------------|------------------------------------------------|
//! | `POST R/?create=true`         | create the repository's directories            |
//! | `HEAD`/`GET`/`POST R/config`  | the repository's `config` object               |
//! | `GET R/TYPE/`                 | list objects of a type (`data`, `keys`, `locks`, `snapshots`, `index`) |
//! | `HEAD`/`GET`/`POST`/`DELETE R/TYPE/NAME` | one object; `GET` honours a `Range: bytes=A-B` header |
//!
//! Listings answer `application/vnd.x.restic.rest.v2` (when the client
//! asks for it) with `[{"name": …, "size": …, "mtime_ns": …}]`; `mtime_ns`
//! (the object's modification time, nanoseconds since the Unix epoch) is
//! Cairn's addition, which restic ignores. Without that `Accept` header a
//! listing is a JSON array of names (version 1).
//!
//! In append-only mode objects can be created, never overwritten or
//! deleted, except lock files: a `DELETE` of any other object answers
//! `403 Forbidden` before looking whether it exists, which is how a client
//! learns the mode (see [`crate::backend::rest`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use crate::backend::Backend;
use crate::backend::local::LocalBackend;
use crate::error::{Error, Result};

/// The object types of a repository, as the protocol names them.
pub const TYPES: [&str; 5] = ["data", "keys", "locks", "snapshots", "index"];

use crate::backend::rest::V2;

/// The largest object a client may send (a pack is far smaller).
const MAX_OBJECT: usize = 1 << 30;

/// Where the server's log lines go (one per request, and failures).
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// How `cairn serve` runs.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// The directory that holds the repositories.
    pub root: PathBuf,
    /// Objects can be created, never overwritten or deleted (lock files
    /// excepted).
    pub append_only: bool,
    /// A user reaches only repositories below `/USER/`.
    pub private_repos: bool,
    /// `user:bcrypt-hash` lines; `None` serves without authentication.
    pub htpasswd: Option<PathBuf>,
    /// The most bytes the root may hold; writes past it are refused.
    pub max_size: Option<u64>,
    /// Receives one line per request (client, user, request, status,
    /// bytes) and every failure; `None` logs nothing.
    pub log: Option<Log>,
    /// A PEM certificate chain and its PEM private key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A running server's shared state.
struct Server {
    opts: ServeOptions,
    /// The users of `--htpasswd-file`, if given.
    users: Option<Htpasswd>,
    /// Bytes below the root, kept current for the quota.
    used: AtomicU64,
}

/// Read an htpasswd file: `user:hash` lines with bcrypt hashes (`$2y$`,
/// `$2b$`, `$2a$`, as `htpasswd -B` writes them); blank lines and `#`
/// comments are skipped.
pub fn read_htpasswd(path: &Path) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io_path("cannot read the htpasswd file", path, e))?;
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line.split_once(':').ok_or_else(|| {
            Error::invalid(format!("{}:{}: expected user:hash", path.display(), i + 1))
        })?;
        if !["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
            return Err(Error::invalid(format!(
                "{}:{}: user {user}: only bcrypt entries are accepted (htpasswd -B)",
                path.display(),
                i + 1
            )));
        }
        users.insert(user.to_string(), hash.to_string());
    }
    Ok(users)
}

/// HTTP basic authentication against the users of an htpasswd file
/// (`cairn serve`, `cairn ui`).
pub struct Htpasswd {
    /// User name to bcrypt hash.
    users: HashMap<String, String>,
    /// Keyed hashes of credentials that bcrypt accepted: a bcrypt check
    /// costs tens of milliseconds, and a backup sends thousands of requests.
    verified: Mutex<std::collections::HashSet<[u8; 32]>>,
    cache_key: [u8; 32],
}

impl Htpasswd {
    /// Read the users of an htpasswd file ([`read_htpasswd`]).
    pub fn load(path: &Path) -> Result<Htpasswd> {
        Ok(Htpasswd {
            users: read_htpasswd(path)?,
            verified: Mutex::default(),
            cache_key: rand::random(),
        })
    }

    /// The user an `Authorization: Basic …` header value authenticates
    /// as, or `None` (no such user, a wrong password, not basic
    /// authentication).
    pub fn authenticate(&self, authorization: &str) -> Option<String> {
        use base64::Engine;
        let b64 = authorization.strip_prefix("Basic ")?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (user, pass) = raw.split_once(':')?;
        let hash = self.users.get(user)?;
        let key = blake3::keyed_hash(&self.cache_key, raw.as_bytes());
        let seen = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key.as_bytes());
        if !seen {
            if !bcrypt::verify(pass, hash).unwrap_or(false) {
                return None;
            }
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(*key.as_bytes());
        }
        Some(user.to_string())
    }
}

/// Total size of the files below `dir`.
fn tree_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Serve on `listener` until the process ends. Errors only if the server
/// cannot start (an unreadable htpasswd file or certificate).
pub fn serve(listener: std::net::TcpListener, opts: ServeOptions) -> Result<()> {
    if opts.private_repos && opts.htpasswd.is_none() {
        return Err(Error::invalid(
            "--private-repos needs --htpasswd-file: a repository belongs to a user",
        ));
    }
    let users = match &opts.htpasswd {
        Some(p) => Some(Htpasswd::load(p)?),
        None => None,
    };
    let tls = match &opts.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    std::fs::create_dir_all(&opts.root)
        .map_err(|e| Error::io_path("cannot create", &opts.root, e))?;
    let server = Arc::new(Server {
        used: AtomicU64::new(tree_size(&opts.root)),
        users,
        opts,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cairn-serve")
        .build()
        .map_err(|e| Error::io("cannot start the network runtime", e))?;
    rt.block_on(async move {
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("cannot listen", e))?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| Error::io("cannot listen", e))?;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    server.say(&format!("accept: {e}"));
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let server = server.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let for_svc = server.clone();
                let svc = hyper::service::service_fn(move |req| {
                    let server = for_svc.clone();
                    async move { Ok::<_, Infallible>(server.handle(req, peer).await) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                let r = match tls {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(s) => {
                            http.serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                                .await
                        }
                        Err(e) => {
                            server.say(&format!("{peer}: TLS handshake failed: {e}"));
                            return;
                        }
                    },
                    None => {
                        http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await
                    }
                };
                if let Err(e) = r
                    && !e.is_incomplete_message()
                {
                    server.say(&format!("{peer}: {e}"));
                }
            });
        }
    })
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| Error::invalid(format!("{}: not a PEM certificate: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no certificate in the file",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::invalid(format!("{}: not a PEM private key: {e}", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::invalid(format!("TLS: {e}")))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| Error::invalid(format!("TLS certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// The repository itself (`R/`).
    Repo(String),
    /// A listing of one type (`R/TYPE/`).
    List(String, &'static str),
    /// One object (`R/config`, `R/TYPE/NAME`), by its Cairn object name.
    Object(String, String, &'static str),
}

/// A repository path segment or object name: letters, digits, `.`, `_`,
/// `-`, not starting with a dot.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn route(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let (last, before) = segs.split_last()?;
    let repo = |s: &[&str]| -> Option<String> { s.iter().all(|x| plain(x)).then(|| s.join("/")) };
    let kind = |s: &str| TYPES.iter().find(|t| **t == s).copied();
    if last.is_empty() {
        if let Some((t, r)) = before.split_last()
            && let Some(t) = kind(t)
        {
            return Some(Target::List(repo(r)?, t));
        }
        return Some(Target::Repo(repo(before)?));
    }
    if *last == "config" {
        return Some(Target::Object(repo(before)?, "config".into(), "config"));
    }
    let (t, r) = before.split_last()?;
    let t = kind(t)?;
    if !plain(last) {
        return None;
    }
    let name = if t == "data" {
        if last.len() < 2 {
            return None;
        }
        format!("data/{}/{last}", &last[..2])
    } else {
        format!("{t}/{last}")
    };
    Some(Target::Object(repo(r)?, name, t))
}

/// `bytes=A-B` or `bytes=A-` as an offset and a length (`None`: to the end).
fn parse_range(h: &str) -> Option<(u64, Option<u64>)> {
    let (a, b) = h.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let b = b.trim();
    if b.is_empty() {
        return Some((start, None));
    }
    let end: u64 = b.parse().ok()?;
    let len = end.checked_sub(start)?.checked_add(1)?;
    Some((start, Some(len)))
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

fn error_reply(s: &Server, e: &Error) -> Response<Full<Bytes>> {
    let status = if e.is_not_found() {
        StatusCode::NOT_FOUND
    } else if e.kind() == crate::error::ErrorKind::InvalidInput {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        s.say(&e.to_string());
    }
    reply(
        status,
        format!("{}\n", status.canonical_reason().unwrap_or("")),
    )
}

impl Server {
    fn say(&self, line: &str) {
        if let Some(log) = &self.opts.log {
            log(line);
        }
    }

    /// The user the request authenticates as (`Some("")` when the server
    /// has no users), or `None` if it does not.
    fn authenticate(&self, req: &Request<Incoming>) -> Option<String> {
        let Some(users) = &self.users else {
            return Some(String::new());
        };
        let h = req
            .headers()
            .get(hyper::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        users.authenticate(h)
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let (user, resp) = match self.authenticate(&req) {
            None => {
                let mut r = reply(StatusCode::UNAUTHORIZED, "Unauthorized\n");
                r.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static("Basic realm=\"cairn\""),
                );
                (String::from("-"), r)
            }
            Some(user) => {
                let r = self.clone().dispatch(req, &user).await;
                (if user.is_empty() { "-".into() } else { user }, r)
            }
        };
        if self.opts.log.is_some() {
            let len = hyper::body::Body::size_hint(resp.body())
                .exact()
                .unwrap_or(0);
            self.say(&format!(
                "{peer} {user} \"{method} {path}\" {} {len}",
                resp.status().as_u16()
            ));
        }
        resp
    }

    async fn dispatch(
        self: Arc<Self>,
        req: Request<Incoming>,
        user: &str,
    ) -> Response<Full<Bytes>> {
        let Some(target) = route(req.uri().path()) else {
            return reply(StatusCode::NOT_FOUND, "Not Found\n");
        };
        let repo = match &target {
            Target::Repo(r) | Target::List(r, _) | Target::Object(r, _, _) => r.clone(),
        };
        if self.opts.private_repos && repo.split('/').next() != Some(user) {
            return reply(StatusCode::FORBIDDEN, "Forbidden\n");
        }
        let dir = if repo.is_empty() {
            self.opts.root.clone()
        } else {
            self.opts.root.join(&repo)
        };
        let method = req.method().clone();
        match (method, target) {
            (Method::POST, Target::Repo(_)) => {
                if req.uri().query() != Some("create=true") {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        "POST a repository with ?create=true\n",
                    );
                }
                self.blocking(move |_| {
                    LocalBackend::new(dir)
                        .create()
                        .map(|()| reply(StatusCode::OK, ""))
                })
                .await
            }
            (Method::DELETE, Target::Repo(_)) => reply(StatusCode::FORBIDDEN, "Forbidden\n"),
            (Method::GET, Target::List(_, t)) => {
                let v2 = req
                    .headers()
                    .get(hyper::header::ACCEPT)
                    .and_then(|a| a.to_str().ok())
                    .is_some_and(|a| a.contains(V2));
                self.blocking(move |_| {
                    let list = LocalBackend::new(dir).list(t)?;
                    let body = if v2 {
                        let items: Vec<serde_json::Value> = list
                            .iter()
                            .map(|o| {
                                let name = o.name.rsplit('/').next().unwrap_or("");
                                serde_json::json!({"name": name, "size": o.size, "mtime_ns": o.mtime})
                            })
                            .collect();
                        serde_json::Value::Array(items)
                    } else {
                        serde_json::Value::Array(
                            list.iter()
                                .map(|o| o.name.rsplit('/').next().unwrap_or("").into())
                                .collect(),
                        )
                    };
                    let mut r = reply(StatusCode::OK, body.to_string());
                    let ct = if v2 { V2 } else { "application/vnd.x.restic.rest.v1" };
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(ct),
                    );
                    Ok(r)
                })
                .await
            }
            (Method::HEAD, Target::Object(_, name, _)) => {
                self.blocking(move |_| {
                    let size = LocalBackend::new(dir).stat(&name)?;
                    let mut r = reply(StatusCode::OK, "");
                    r.headers_mut().insert(
                        hyper::header::CONTENT_LENGTH,
                        hyper::header::HeaderValue::from(size),
                    );
                    Ok(r)
                })
                .await
            }
            (Method::GET, Target::Object(_, name, _)) => {
                let range = req
                    .headers()
                    .get(hyper::header::RANGE)
                    .and_then(|h| h.to_str().ok())
                    .map(|h| parse_range(h).ok_or(()));
                self.blocking(move |_| {
                    let b = LocalBackend::new(dir);
                    match range {
                        None => Ok(reply(StatusCode::OK, b.get(&name)?)),
                        Some(Err(())) => Ok(reply(StatusCode::RANGE_NOT_SATISFIABLE, "")),
                        Some(Ok((start, len))) => {
                            let size = b.stat(&name)?;
                            let len = len.unwrap_or(size.saturating_sub(start));
                            if start.saturating_add(len) > size {
                                return Ok(reply(StatusCode::RANGE_NOT_SATISFIABLE, ""));
                            }
                            let bytes = b.get_range(&name, start, len)?;
                            let mut r = reply(StatusCode::PARTIAL_CONTENT, bytes);
                            if let Ok(v) = hyper::header::HeaderValue::from_str(&format!(
                                "bytes {start}-{}/{size}",
                                (start + len).saturating_sub(1)
                            )) {
                                r.headers_mut().insert(hyper::header::CONTENT_RANGE, v);
                            }
                            Ok(r)
                        }
                    }
                })
                .await
            }
            (Method::POST, Target::Object(_, name, t)) => {
                let body = match Limited::new(req.into_body(), MAX_OBJECT).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n"),
                };
                self.blocking(move |s| {
                    let b = LocalBackend::new(dir);
                    let old = match b.stat(&name) {
                        Ok(n) => Some(n),
                        Err(e) if e.is_not_found() => None,
                        Err(e) => return Err(e),
                    };
                    if old.is_some() && s.opts.append_only && t != "locks" {
                        return Ok(reply(StatusCode::FORBIDDEN, "Forbidden: append-only\n"));
                    }
                    let len = body.len() as u64;
                    if let Some(max) = s.opts.max_size {
                        let after = s.used.load(Ordering::SeqCst) + len;
                        if after.saturating_sub(old.unwrap_or(0)) > max {
                            return Ok(reply(
                                StatusCode::INSUFFICIENT_STORAGE,
                                "Insufficient Storage: the repository server's quota is full\n",
                            ));
                        }
                    }
                    b.put(&name, &body)?;
                    s.used.fetch_add(len, Ordering::SeqCst);
                    s.used.fetch_sub(
                        old.unwrap_or(0).min(s.used.load(Ordering::SeqCst)),
                        Ordering::SeqCst,
                    );
                    Ok(reply(StatusCode::OK, ""))
                })
                .await
            }
            (Method::DELETE, Target::Object(_, name, t)) => {
                if self.opts.append_only && t != "locks" {
                    return reply(StatusCode::FORBIDDEN, "Forbidden: append-only\n");
                }
                self.blocking(move |s| {
                    let b = LocalBackend::new(dir);
                    let old = b.stat(&name)?;
                    b.delete(&name)?;
                    s.used
                        .fetch_sub(old.min(s.used.load(Ordering::SeqCst)), Ordering::SeqCst);
                    Ok(reply(StatusCode::OK, ""))
                })
                .await
            }
            _ => reply(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n"),
        }
    }

    /// Run file work off the network threads.
    async fn blocking(
        self: &Arc<Self>,
        f: impl FnOnce(&Server) -> Result<Response<Full<Bytes>>> + Send + 'static,
    ) -> Response<Full<Bytes>> {
        let s = self.clone();
        match tokio::task::spawn_blocking(move || f(&s)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => error_reply(self, &e),
            Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_repositories_listings_and_objects() {
        assert_eq!(route("/"), Some(Target::Repo(String::new())));
        assert_eq!(
            route("/alice/repo/"),
            Some(Target::Repo("alice/repo".into()))
        );
        assert_eq!(
            route("/alice/repo/config"),
            Some(Target::Object(
                "alice/repo".into(),
                "config".into(),
                "config"
            ))
        );
        assert_eq!(route("/r/data/"), Some(Target::List("r".into(), "data")));
        assert_eq!(
            route("/data/abcd"),
            Some(Target::Object(String::new(), "data/ab/abcd".into(), "data"))
        );
        assert_eq!(
            route("/r/locks/0011"),
            Some(Target::Object("r".into(), "locks/0011".into(), "locks"))
        );
        for bad in [
            "/../x/config",
            "/r/data/a",
            "/r/keys/..",
            "/r/nope/x",
            "/r/.hidden/",
            "x",
        ] {
            assert!(
                !matches!(route(bad), Some(Target::Object(..))),
                "{bad}: {:?}",
                route(bad)
            );
        }
        assert_eq!(route("/../"), None);
    }

    #[test]
    fn ranges_parse_as_offset_and_length() {
        assert_eq!(parse_range("bytes=0-9"), Some((0, Some(10))));
        assert_eq!(parse_range("bytes=10-"), Some((10, None)));
        assert_eq!(parse_range("bytes=9-3"), None);
        assert_eq!(parse_range(&format!("bytes=0-{}", u64::MAX)), None);
        assert_eq!(parse_range("items=0-1"), None);
    }
}
