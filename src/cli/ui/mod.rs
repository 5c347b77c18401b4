//! `cairn ui`: a web view of one repository, served by the process that
//! opened it (the passphrase stays in this process; the browser only ever
//! sees pages).
//!
//! Owns: the listening socket and who may use it (loopback only by
//! default; anything else needs `--listen` and either an htpasswd login or
//! a token printed at start), routing, the repository the pages read (its
//! snapshot list and index kept current), and the job states `cairn run`
//! leaves. The pages themselves are in [`pages`] (HTML) and [`chart`]
//! (SVG); downloads in [`download`]. Never touches: anything that writes to
//! the repository. The only lock it takes is a shared one, for as long as
//! reloading the index takes, when the repository's index files changed.
//!
//! Routes (all `GET`):
//!
//! | path | page |
//! |---|---|
//! | `/` | the timeline of snapshots per host and job, and the size chart |
//! | `/snapshot/ID/PATH` | a directory of a snapshot (or one entry's details) |
//! | `/file/ID/PATH` | a file's content, byte for byte |
//! | `/tar/ID/PATH` | a directory as a `.tar` stream |
//! | `/diff?from=ID&to=ID` | what changed between two snapshots |
//! | `/jobs` | `cairn run`'s jobs on this repository: last run, its steps, check |
//! | `/metrics` | the Prometheus text `cairn run` writes to `metrics_file` |

mod chart;
mod download;
mod pages;

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use cairn::format::snapshot::Snapshot;
use cairn::id::{IndexId, SnapshotId};
use cairn::repo::Repository;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::GlobalArgs;

/// Where `cairn ui` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8380";

/// The cookie that carries the access token.
const TOKEN_COOKIE: &str = "cairn_ui_token";

/// Arguments of `cairn ui`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address and port to listen on [default: 127.0.0.1:8380] (port 0:
    /// any free port, printed). An address other than loopback needs a
    /// login: --htpasswd-file, or else a random token that is printed at
    /// start as part of the URL to open.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Users and bcrypt password hashes, one `user:hash` a line, as
    /// `htpasswd -B` writes them: every request must log in as one of
    /// them (HTTP basic authentication).
    #[arg(long, value_name = "FILE")]
    htpasswd_file: Option<PathBuf>,
    #[command(flatten)]
    pub(super) job: super::JobArgs,
}

/// Who may use the server.
enum Access {
    /// Loopback, no login: any local user, through a host name that is
    /// a loopback name (no page of another site can read this one by
    /// rebinding its own name to 127.0.0.1).
    Loopback,
    /// Users of an htpasswd file.
    Users(cairn::serve::Htpasswd),
    /// Whoever holds the token printed at start (in the URL once, then in
    /// a cookie; or `Authorization: Bearer TOKEN` for scrapers).
    Token(String),
}

/// The opened repository and what the pages keep of it.
pub(crate) struct Ui {
    /// Read by every page; written only to reload the index.
    repo: RwLock<Repository>,
    /// Where the repository is (passwords hidden), for page headers.
    location: String,
    /// The index files the loaded index was built from (`None`: not
    /// loaded yet).
    index_files: Mutex<Option<BTreeSet<IndexId>>>,
    /// Snapshots read so far (they never change; new ones are read when
    /// the listing shows them).
    snapshots: Mutex<HashMap<SnapshotId, Snapshot>>,
    /// `cairn run`'s jobs that back up to this repository (from the
    /// configuration file), besides those its snapshots' `job:` tags name.
    config_jobs: Vec<String>,
    /// With `--job NAME`: only that job's snapshots and state.
    only_job: Option<super::jobconfig::JobScope>,
    access: Access,
}

/// A page that could not be made: the status and what to tell the user.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl Failure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::NOT_FOUND, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<cairn::Error> for Failure {
    fn from(e: cairn::Error) -> Failure {
        let status = if e.is_not_found() {
            StatusCode::NOT_FOUND
        } else {
            match e.kind() {
                cairn::ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
                cairn::ErrorKind::Locked => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            }
        };
        Failure::new(status, e.to_string())
    }
}

/// A response body: a whole page, or a download streamed as it is read.
pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

pub(crate) fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(b.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// True if every address `listen` names is a loopback address.
fn is_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => {
            a.ip().is_loopback() || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The jobs of the configuration file (if there is one) that back up to
/// the repository at `location`.
fn config_jobs(g: &GlobalArgs, location: &str) -> Vec<String> {
    let Ok(Some(loaded)) = super::jobconfig::load_if_any(g.config.as_deref()) else {
        return Vec::new();
    };
    let url_of = |name: &str| {
        loaded
            .config
            .repository
            .get(name)
            .map_or(name.to_string(), |r| r.url.clone())
    };
    loaded
        .config
        .job
        .iter()
        .filter(|(_, j)| url_of(&j.repository) == location)
        .map(|(name, _)| name.clone())
        .collect()
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let listen = a.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(listen)
        .with_context(|| format!("--listen {listen}: expected ADDRESS:PORT"))?
        .collect();
    let Some(first) = addrs.first() else {
        bail!("--listen {listen}: the name has no address");
    };
    let loopback = addrs.iter().all(is_loopback);
    if !loopback && a.listen.is_none() {
        // The default is loopback; this guards a future default.
        bail!("listening on {listen} needs --listen given explicitly");
    }
    let access = match &a.htpasswd_file {
        Some(p) => Access::Users(cairn::serve::Htpasswd::load(p)?),
        None if loopback => Access::Loopback,
        None => {
            let token: [u8; 24] = rand::random();
            Access::Token(hex::encode(token))
        }
    };
    let repo = g.open()?;
    // Shown on every page: the backend's form of it, with any password
    // in a URL hidden.
    let location = repo.backend().location();
    let listener =
        std::net::TcpListener::bind(first).with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr().context("cannot listen")?;
    let host = if bound.ip().is_unspecified() {
        cairn::repo::hostname()
    } else {
        match bound {
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
            SocketAddr::V4(a) => a.ip().to_string(),
        }
    };
    let url = format!("http://{host}:{}/", bound.port());
    match &access {
        Access::Loopback => eprintln!("cairn ui: {} at {url}", repo.backend().location()),
        Access::Users(_) => eprintln!(
            "cairn ui: {} at {url} (users of {})",
            repo.backend().location(),
            a.htpasswd_file
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
        Access::Token(t) => eprintln!(
            "cairn ui: {} at {url}?token={t} (open this URL once; the token is then kept in a cookie)",
            repo.backend().location()
        ),
    }
    let ui = Arc::new(Ui {
        repo: RwLock::new(repo),
        config_jobs: config_jobs(g, g.repo.as_deref().unwrap_or_default()),
        location,
        index_files: Mutex::new(None),
        snapshots: Mutex::new(HashMap::new()),
        only_job: g.job.clone(),
        access,
    });
    serve(listener, ui, g.quiet)?;
    Ok(super::exit::OK)
}

/// Serve until the process ends.
fn serve(listener: std::net::TcpListener, ui: Arc<Ui>, quiet: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cairn-ui")
        .build()
        .context("cannot start the network runtime")?;
    rt.block_on(async move {
        listener.set_nonblocking(true).context("cannot listen")?;
        let listener = tokio::net::TcpListener::from_std(listener).context("cannot listen")?;
        loop {
            let (stream, _peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    if !quiet {
                        eprintln!("cairn ui: accept: {e}");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let ui = ui.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let ui = ui.clone();
                    async move { Ok::<_, Infallible>(ui.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

/// Headers every page carries: nothing from elsewhere, no script, no
/// framing, no guessing of content types.
fn secure(mut r: Response<Body>) -> Response<Body> {
    use hyper::header::{self, HeaderValue};
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Body,
) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

fn html(status: StatusCode, page: String) -> Response<Body> {
    respond(status, "text/html; charset=utf-8", full(page))
}

fn failure_page(f: &Failure) -> Response<Body> {
    html(f.status, pages::failure(f))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The value of `name` in a query string, percent-decoded.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| pages::percent_decode(&v.replace('+', " ")))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn token_matches(given: &str, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

/// What the access rules say about a request.
enum Admission {
    Allowed,
    /// The token came in the URL: set the cookie and send the browser to
    /// the same page without it.
    SetCookie(String),
    Refused(Response<Body>),
}

impl Ui {
    fn admit(&self, req: &Request<Incoming>) -> Admission {
        let unauthorized = |why: &str, basic: bool| {
            let mut r = html(
                StatusCode::UNAUTHORIZED,
                pages::failure(&Failure::new(StatusCode::UNAUTHORIZED, why)),
            );
            if basic {
                r.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static("Basic realm=\"cairn ui\""),
                );
            }
            Admission::Refused(r)
        };
        match &self.access {
            Access::Loopback => {
                let host = req
                    .headers()
                    .get(hyper::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("");
                if loopback_host(host) {
                    Admission::Allowed
                } else {
                    Admission::Refused(html(
                        StatusCode::FORBIDDEN,
                        pages::failure(&Failure::new(
                            StatusCode::FORBIDDEN,
                            format!(
                                "this server answers only to loopback names (localhost, 127.0.0.1, [::1]), not {host:?}"
                            ),
                        )),
                    ))
                }
            }
            Access::Users(users) => {
                let user = req
                    .headers()
                    .get(hyper::header::AUTHORIZATION)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| users.authenticate(h));
                match user {
                    Some(_) => Admission::Allowed,
                    None => unauthorized("log in with a user of the htpasswd file", true),
                }
            }
            Access::Token(token) => {
                if let Some(given) = query_param(req.uri().query(), "token") {
                    return if token_matches(&given, token) {
                        Admission::SetCookie(token.clone())
                    } else {
                        unauthorized("wrong token", false)
                    };
                }
                let bearer = req
                    .headers()
                    .get(hyper::header::AUTHORIZATION)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.strip_prefix("Bearer "));
                match bearer.or_else(|| cookie(req, TOKEN_COOKIE)) {
                    Some(given) if token_matches(given.trim(), token) => Admission::Allowed,
                    Some(_) => unauthorized("wrong token", false),
                    None => unauthorized(
                        "open the URL with the token that `cairn ui` printed when it started",
                        false,
                    ),
                }
            }
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let resp = match self.admit(&req) {
            Admission::Refused(r) => r,
            Admission::SetCookie(token) => {
                let mut r = respond(StatusCode::SEE_OTHER, "text/plain", full(""));
                let h = r.headers_mut();
                if let Ok(v) = hyper::header::HeaderValue::from_str(&format!(
                    "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                )) {
                    h.insert(hyper::header::SET_COOKIE, v);
                }
                let rest: Vec<&str> = req
                    .uri()
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .filter(|kv| !kv.starts_with("token=") && !kv.is_empty())
                    .collect();
                let mut to = req.uri().path().to_string();
                if !rest.is_empty() {
                    to.push('?');
                    to.push_str(&rest.join("&"));
                }
                if let Ok(v) = hyper::header::HeaderValue::from_str(&to) {
                    h.insert(hyper::header::LOCATION, v);
                }
                r
            }
            Admission::Allowed => {
                if req.method() != Method::GET && req.method() != Method::HEAD {
                    failure_page(&Failure::new(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "this server only shows things (GET)",
                    ))
                } else {
                    self.route(&req).await
                }
            }
        };
        secure(resp)
    }

    async fn route(self: Arc<Self>, req: &Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(str::to_string);
        match path.as_str() {
            "/style.css" => {
                let mut r = respond(
                    StatusCode::OK,
                    "text/css; charset=utf-8",
                    full(pages::STYLE),
                );
                r.headers_mut().insert(
                    hyper::header::CACHE_CONTROL,
                    hyper::header::HeaderValue::from_static("max-age=3600"),
                );
                return r;
            }
            "/favicon.svg" | "/favicon.ico" => {
                return respond(StatusCode::OK, "image/svg+xml", full(pages::ICON));
            }
            "/metrics" => {
                let ui = self.clone();
                return match tokio::task::spawn_blocking(move || ui.metrics()).await {
                    Ok(Ok(text)) => respond(
                        StatusCode::OK,
                        "text/plain; version=0.0.4; charset=utf-8",
                        full(text),
                    ),
                    Ok(Err(f)) => failure_page(&f),
                    Err(e) => failure_page(&Failure::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        e.to_string(),
                    )),
                };
            }
            _ => {}
        }
        if let Some(rest) = path.strip_prefix("/file/") {
            return download::file(self.clone(), rest.to_string()).await;
        }
        if let Some(rest) = path.strip_prefix("/tar/") {
            return download::tar(self.clone(), rest.to_string()).await;
        }
        let ui = self.clone();
        let page = tokio::task::spawn_blocking(move || -> Result<String, Failure> {
            match path.as_str() {
                "/" => pages::timeline(&ui),
                "/jobs" => pages::jobs(&ui),
                "/diff" => pages::diff(
                    &ui,
                    query_param(query.as_deref(), "from").as_deref(),
                    query_param(query.as_deref(), "to").as_deref(),
                ),
                p => match p.strip_prefix("/snapshot/") {
                    Some(rest) => pages::browse(&ui, rest),
                    None => Err(Failure::not_found(format!(
                        "no page {}",
                        String::from_utf8_lossy(&pages::percent_decode(p).unwrap_or_default())
                    ))),
                },
            }
        })
        .await;
        match page {
            Ok(Ok(page)) => html(StatusCode::OK, page),
            Ok(Err(f)) => failure_page(&f),
            Err(e) => failure_page(&Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
            )),
        }
    }

    /// The repository, for reading.
    pub(crate) fn repo(&self) -> std::sync::RwLockReadGuard<'_, Repository> {
        self.repo.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The repository with an index that lists every index file on the
    /// storage now: reloaded (under a shared lock, so that no prune
    /// removes what it lists meanwhile) when the index files changed since
    /// the last load. The lock is released before the page is made.
    pub(crate) fn indexed(&self) -> Result<std::sync::RwLockReadGuard<'_, Repository>, Failure> {
        let now: BTreeSet<IndexId> = self.repo().list_index_files()?.into_iter().collect();
        let mut loaded = self.index_files.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.as_ref() != Some(&now) {
            let mut repo = self.repo.write().unwrap_or_else(|p| p.into_inner());
            let mut lock = repo.lock_shared()?;
            lock.load_index()?;
            drop(lock);
            // What the load read: listed again under the lock's protection
            // would be exact, but a file added since only makes the next
            // page reload once more.
            *loaded = Some(now);
        }
        drop(loaded);
        Ok(self.repo())
    }

    /// Every readable snapshot (of `--job`, if given), oldest first; the
    /// second list holds the IDs of snapshots that could not be read and
    /// why.
    pub(crate) fn snapshots(&self) -> Result<SnapshotList, Failure> {
        let repo = self.repo();
        let ids = repo.list_snapshot_ids()?;
        let mut cache = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        let listed: BTreeSet<SnapshotId> = ids.iter().copied().collect();
        cache.retain(|id, _| listed.contains(id));
        let mut damaged = Vec::new();
        for id in &ids {
            if cache.contains_key(id) {
                continue;
            }
            match repo.load_snapshot(id) {
                Ok(s) => {
                    cache.insert(*id, s);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => damaged.push((*id, e.to_string())),
            }
        }
        let mut snaps: Vec<(SnapshotId, Snapshot)> = cache
            .iter()
            .filter(|(_, s)| self.in_scope(s))
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        snaps.sort_by_key(|(id, s)| (s.time_ns, *id));
        Ok(SnapshotList { snaps, damaged })
    }

    fn in_scope(&self, s: &Snapshot) -> bool {
        match &self.only_job {
            None => true,
            Some(j) => {
                s.tags.contains(&format!("job:{}", j.name))
                    && j.host.as_ref().is_none_or(|h| *h == s.hostname)
            }
        }
    }

    /// The snapshot `spec` names (an ID or unique prefix).
    pub(crate) fn snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot), Failure> {
        let list = self.snapshots()?;
        let found: Vec<_> = list
            .snaps
            .into_iter()
            .filter(|(id, _)| id.to_hex().starts_with(spec))
            .collect();
        match found.len() {
            _ if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) => Err(
                Failure::bad_request(format!("{spec:?} is not a snapshot ID")),
            ),
            0 => Err(Failure::not_found(format!("no snapshot {spec}"))),
            1 => Ok(found
                .into_iter()
                .next()
                .ok_or_else(|| Failure::not_found(""))?),
            n => Err(Failure::bad_request(format!(
                "{n} snapshots start with {spec}: give more of the ID"
            ))),
        }
    }

    /// The jobs to show: those of the configuration file that back up
    /// here, and those the snapshots' `job:` tags name.
    pub(crate) fn job_names(&self, snaps: &[(SnapshotId, Snapshot)]) -> Vec<String> {
        let mut names: BTreeSet<String> = self.config_jobs.iter().cloned().collect();
        for (_, s) in snaps {
            for t in &s.tags {
                if let Some(j) = t.strip_prefix("job:") {
                    names.insert(j.to_string());
                }
            }
        }
        if let Some(j) = &self.only_job {
            names.retain(|n| *n == j.name);
        }
        names.into_iter().collect()
    }

    /// `/metrics`: the text `cairn run` writes to `metrics_file`, for the
    /// jobs of this repository.
    fn metrics(&self) -> Result<String, Failure> {
        let snaps = self.snapshots()?;
        let jobs: Vec<(String, super::run::Metrics)> = self
            .job_names(&snaps.snaps)
            .into_iter()
            .map(|name| {
                let m = super::run::JobState::load(&name).metrics;
                (name, m)
            })
            .collect();
        Ok(super::run::render_metrics(&jobs))
    }

    pub(crate) fn location(&self) -> &str {
        &self.location
    }
}

/// Snapshots as the pages see them.
pub(crate) struct SnapshotList {
    /// Oldest first.
    pub snaps: Vec<(SnapshotId, Snapshot)>,
    /// Snapshots that could not be read, and why.
    pub damaged: Vec<(SnapshotId, String)>,
}

/// True for a `Host` header that names this machine's loopback: a page
/// of another site whose name was made to resolve to 127.0.0.1 sends its
/// own name, and is refused.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, _)) => ip,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:8380",
            "127.0.0.1:1",
            "127.1.2.3",
            "[::1]:8380",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:8380",
            "10.0.0.1:8380",
            "",
            "[::1",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(
            query_param(Some("from=ab&to=c%20d"), "to").as_deref(),
            Some("c d")
        );
        assert_eq!(query_param(Some("from=ab"), "to"), None);
        assert_eq!(query_param(None, "to"), None);
    }
}
