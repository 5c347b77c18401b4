//! The `rest:` backend: a repository behind a server that speaks restic's
//! REST protocol, version 2 (`cairn serve`, restic's rest-server,
//! `rclone serve restic`).
//!
//! Owns: mapping Cairn's object names onto the protocol's paths (a pack
//! `data/ab/abcd…` is `/data/abcd…`; `config`, `keys/`, `index/`,
//! `snapshots/`, `locks/` keep their names), HTTP basic authentication,
//! bounding the requests in flight (`--connections`), retrying transport
//! failures and server errors with exponential backoff, and telling
//! whether the server is append-only.
//!
//! URL: `rest:http://[user:pass@]host:port/path/` or `rest:https://…`.
//! Credentials in the URL win over the settings `CAIRN_REST_USERNAME` and
//! `CAIRN_REST_PASSWORD`; `CAIRN_REST_TLS_CA_FILE` names a PEM file of
//! certificate authorities to trust instead of the system's.
//!
//! Listing times: a `cairn serve` listing carries each object's
//! modification time (`mtime_ns`), which lock staleness and prune's grace
//! period judge by. Other servers (`rclone serve restic`, rest-server)
//! list names and sizes only, and send no `Last-Modified`: objects are
//! then listed without a time, so a lock is stale only when its process
//! on this host is gone, and prune treats every pack as new and deletes
//! none. Run prune where the files are (`cairn -r /path/on/the/server
//! prune`), as an append-only setup does anyway.

use std::sync::OnceLock;
use std::time::Duration;

use super::{Backend, ObjectInfo, validate_object_name};
use crate::error::{Error, Result};

use super::remote::RemoteOptions;

/// The media type of a version 2 listing.
pub const V2: &str = "application/vnd.x.restic.rest.v2";

/// A repository behind a REST server.
pub struct RestBackend {
    transport: Transport,
    /// `http(s)://host:port/path` without a trailing slash or credentials.
    base: String,
    /// The `Authorization` header, if any.
    auth: Option<String>,
    /// The location as the user wrote it, with any password hidden.
    location: String,
    slots: super::remote::Slots,
    opts: RemoteOptions,
    append_only: OnceLock<bool>,
}

/// How requests reach the server.
enum Transport {
    /// HTTP/1.1 over TCP, or HTTPS, with the runtime its futures run on.
    Http(reqwest::Client, tokio::runtime::Runtime),
    /// HTTP/2 over the standard input and output of an `rclone serve
    /// restic --stdio` child.
    Rclone(Box<super::rclone::Rclone>),
}

/// One answer.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_length: Option<u64>,
    /// The body of a 2xx answer (empty for others and for `HEAD`).
    pub(crate) body: Vec<u8>,
}

/// A request that got no answer.
pub(crate) struct TransportError {
    pub(crate) message: String,
    /// Worth another attempt (a dropped connection, a timeout), unlike a
    /// refused certificate.
    pub(crate) transient: bool,
}

impl Transport {
    fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::result::Result<Reply, TransportError> {
        match self {
            Transport::Http(client, rt) => {
                let method =
                    reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| TransportError {
                        message: e.to_string(),
                        transient: false,
                    })?;
                let is_head = method == reqwest::Method::HEAD;
                let mut req = client.request(method, url);
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                if !body.is_empty() {
                    req = req.body(body.to_vec());
                }
                let error = |e: reqwest::Error| {
                    // The whole chain: reqwest's own text is one word.
                    let mut message = e.to_string();
                    let mut cause = std::error::Error::source(&e);
                    while let Some(c) = cause {
                        message.push_str(&format!(": {c}"));
                        cause = c.source();
                    }
                    // A refused certificate stays refused.
                    let tls = message.contains("certificate") || message.contains("Certificate");
                    TransportError {
                        transient: (e.is_connect() || e.is_timeout() || e.is_request()) && !tls,
                        message,
                    }
                };
                rt.block_on(async move {
                    let resp = req.send().await.map_err(error)?;
                    let status = resp.status().as_u16();
                    let content_length = resp
                        .headers()
                        .get(reqwest::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let body = if (200..300).contains(&status) && !is_head {
                        resp.bytes().await.map_err(error)?.to_vec()
                    } else {
                        Vec::new()
                    };
                    Ok(Reply {
                        status,
                        content_length,
                        body,
                    })
                })
            }
            Transport::Rclone(r) => r.exchange(method, url, headers, body),
        }
    }
}

/// A failed request: the status, if the server answered.
struct Failure {
    status: Option<u16>,
    /// What was asked of which server (`read config on rest:…`).
    context: String,
    /// Why it failed.
    detail: String,
}

/// Split `http://user:pass@host/path` into the URL without credentials and
/// the credentials.
fn split_credentials(url: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((creds, host)) => {
            let (user, pass) = creds.split_once(':').unwrap_or((creds, ""));
            (
                format!("{scheme}://{host}{path}"),
                Some((percent_decode(user), percent_decode(pass))),
            )
        }
        None => (url.to_string(), None),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(hi), Some(lo)) = (
                (b[i + 1] as char).to_digit(16),
                (b[i + 2] as char).to_digit(16),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The location with its password replaced by `***`, for messages.
pub fn redact(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((creds, host)) if creds.contains(':') => {
            let user = creds.split_once(':').map_or(creds, |c| c.0);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => location.to_string(),
    }
}

impl RestBackend {
    /// Connect to `url` (`http://…` or `https://…`, without the `rest:`).
    pub fn open(url: &str, location: &str, opts: RemoteOptions) -> Result<RestBackend> {
        use base64::Engine;
        let (base, creds) = split_credentials(url);
        let base = base.trim_end_matches('/').to_string();
        let creds = creds.or_else(|| {
            let user = opts.env.get("CAIRN_REST_USERNAME")?;
            let pass = opts
                .env
                .get("CAIRN_REST_PASSWORD")
                .cloned()
                .unwrap_or_default();
            Some((user.clone(), pass))
        });
        let auth = creds.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        // rustls is built with two crypto providers here (ring for the
        // server and rclone, aws-lc-rs for OpenDAL): name the process's
        // default once, or building a TLS client fails. First call wins.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(opts.timeout)
            .pool_max_idle_per_host(opts.connections.max(1))
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")));
        if let Some(file) = opts.env.get("CAIRN_REST_TLS_CA_FILE") {
            let pem = std::fs::read(file)
                .map_err(|e| Error::io_path("cannot read the CA file", file, e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "{file}: no PEM certificate in CAIRN_REST_TLS_CA_FILE"
                    ))
                })?;
            builder = builder.tls_certs_only(certs);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.connections.clamp(1, 16))
            .enable_all()
            .thread_name("cairn-rest")
            .build()
            .map_err(|e| Error::io("cannot start the network runtime", e))?;
        let client = {
            let _enter = rt.enter();
            builder.build().map_err(|e| {
                Error::io(
                    format!("cannot use {}", redact(location)),
                    std::io::Error::other(e.to_string()),
                )
            })?
        };
        Ok(RestBackend {
            transport: Transport::Http(client, rt),
            base,
            auth,
            location: redact(location),
            slots: super::remote::Slots::new(opts.connections.max(1)),
            opts,
            append_only: OnceLock::new(),
        })
    }

    /// A repository behind `rclone serve restic --stdio REMOTE` (`remote`
    /// is what follows `rclone:` in the location).
    pub fn open_rclone(remote: &str, location: &str, opts: RemoteOptions) -> Result<RestBackend> {
        let rclone = super::rclone::Rclone::start(remote, &opts)?;
        Ok(RestBackend {
            transport: Transport::Rclone(Box::new(rclone)),
            base: "http://localhost".into(),
            auth: None,
            location: location.to_string(),
            slots: super::remote::Slots::new(opts.connections.max(1)),
            opts,
            append_only: OnceLock::new(),
        })
    }

    /// The URL of an object name.
    fn url(&self, name: &str) -> String {
        match name.strip_prefix("data/") {
            Some(rest) => {
                let file = rest.rsplit('/').next().unwrap_or(rest);
                format!("{}/data/{file}", self.base)
            }
            None => format!("{}/{name}", self.base),
        }
    }

    /// Send one request, retrying transport failures and server errors.
    fn request(
        &self,
        what: &str,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::result::Result<Reply, Failure> {
        let _slot = self.slots.take();
        let mut headers = headers.to_vec();
        if let Some(h) = &self.auth {
            headers.push(("Authorization", h));
        }
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let r = self.transport.exchange(method, url, &headers, body);
            let transient = match &r {
                Ok(reply) => {
                    let s = reply.status;
                    s >= 500 && s != 507 || s == 429 || s == 408
                }
                Err(e) => e.transient,
            };
            if transient && attempt < self.opts.attempts {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(10));
                attempt += 1;
                continue;
            }
            let tries = if attempt > 1 {
                format!(" (after {attempt} attempts)")
            } else {
                String::new()
            };
            let context = format!("{what} on {}{tries}", self.location);
            return match r {
                Ok(reply) if (200..300).contains(&reply.status) => Ok(reply),
                Ok(reply) => Err(Failure {
                    status: Some(reply.status),
                    context,
                    detail: status_text(reply.status),
                }),
                Err(e) => Err(Failure {
                    status: None,
                    context,
                    detail: e.message,
                }),
            };
        }
    }

    fn fail(f: Failure) -> Error {
        let kind = match f.status {
            Some(404) => std::io::ErrorKind::NotFound,
            Some(401 | 403) => std::io::ErrorKind::PermissionDenied,
            _ => std::io::ErrorKind::Other,
        };
        Error::io(f.context, std::io::Error::new(kind, f.detail))
    }
}

/// A status in the words a user can act on.
fn status_text(s: u16) -> String {
    match s {
        401 => "the server refused the credentials (401): check the user and password \
                (in the URL, or CAIRN_REST_USERNAME and CAIRN_REST_PASSWORD)"
            .into(),
        403 => "the server forbids this (403)".into(),
        404 => "not found (404)".into(),
        413 | 507 => format!("the repository server's quota is full ({s})"),
        416 => "range not satisfiable (416)".into(),
        _ => format!("the server answered {s}"),
    }
}

impl Backend for RestBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn create(&self) -> Result<()> {
        let url = format!("{}/?create=true", self.base);
        self.request("create the repository", "POST", &url, &[], &[])
            .map(|_| ())
            .map_err(Self::fail)
    }

    fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        validate_object_name(dir)?;
        let url = format!("{}/{dir}/", self.base);
        let body = match self.request(&format!("list {dir}"), "GET", &url, &[("Accept", V2)], &[]) {
            Ok(reply) => reply.body,
            Err(f) if f.status == Some(404) => return Ok(Vec::new()),
            Err(f) => return Err(Self::fail(f)),
        };
        #[derive(serde::Deserialize)]
        struct Item {
            name: String,
            size: u64,
            mtime_ns: Option<i64>,
        }
        let items: Vec<Item> = serde_json::from_slice(&body).map_err(|e| {
            Error::io(
                format!("list {dir} on {}", self.location),
                std::io::Error::other(format!("not a version 2 listing: {e}")),
            )
        })?;
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            if validate_object_name(&it.name).is_err() || it.name.contains('/') {
                continue;
            }
            let name = if dir == "data" {
                if it.name.len() < 2 || !it.name.is_char_boundary(2) {
                    continue;
                }
                format!("data/{}/{}", &it.name[..2], it.name)
            } else {
                format!("{dir}/{}", it.name)
            };
            out.push(ObjectInfo {
                name,
                size: it.size,
                mtime: it.mtime_ns,
            });
        }
        Ok(out)
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        validate_object_name(name)?;
        self.request(&format!("read {name}"), "GET", &self.url(name), &[], &[])
            .map(|reply| reply.body)
            .map_err(Self::fail)
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        validate_object_name(name)?;
        if len == 0 {
            self.stat(name)?;
            return Ok(Vec::new());
        }
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let v = self
            .request(
                &format!("read {name}"),
                "GET",
                &self.url(name),
                &[("Range", &range)],
                &[],
            )
            .map_err(Self::fail)?
            .body;
        if v.len() as u64 != len {
            return Err(Error::io(
                format!("read {name} on {}", self.location),
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("wanted {len} bytes at {offset}, got {}", v.len()),
                ),
            ));
        }
        Ok(v)
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        validate_object_name(name)?;
        self.request(
            &format!("write {name}"),
            "POST",
            &self.url(name),
            &[("Content-Type", "application/octet-stream")],
            data,
        )
        .map(|_| ())
        .map_err(Self::fail)
    }

    fn delete(&self, name: &str) -> Result<()> {
        validate_object_name(name)?;
        match self.request(
            &format!("delete {name}"),
            "DELETE",
            &self.url(name),
            &[],
            &[],
        ) {
            Ok(_) => Ok(()),
            Err(f) if f.status == Some(404) => Ok(()),
            Err(f) => Err(Self::fail(f)),
        }
    }

    fn stat(&self, name: &str) -> Result<u64> {
        validate_object_name(name)?;
        let reply = self
            .request(&format!("stat {name}"), "HEAD", &self.url(name), &[], &[])
            .map_err(Self::fail)?;
        reply.content_length.ok_or_else(|| {
            Error::io(
                format!("stat {name} on {}", self.location),
                std::io::Error::other("the server sent no Content-Length"),
            )
        })
    }

    fn preferred_writers(&self) -> usize {
        self.opts.connections.max(1)
    }

    fn append_only(&self) -> Result<bool> {
        if let Some(a) = self.append_only.get() {
            return Ok(*a);
        }
        // An append-only server refuses to delete anything but a lock
        // before it looks whether the object exists; any other server
        // answers that this one is not there.
        let probe = self.url(&format!("snapshots/{}", "0".repeat(64)));
        let append_only = match self.request(
            "ask whether the server is append-only",
            "DELETE",
            &probe,
            &[],
            &[],
        ) {
            Ok(_) => false,
            Err(f) if f.status == Some(404) => false,
            Err(f) if f.status == Some(403) => true,
            Err(f) => return Err(Self::fail(f)),
        };
        Ok(*self.append_only.get_or_init(|| append_only))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_taken_out_of_the_url_and_hidden_in_messages() {
        let (url, creds) = split_credentials("http://alice:s%3Acret@127.0.0.1:8000/alice/repo/");
        assert_eq!(url, "http://127.0.0.1:8000/alice/repo/");
        assert_eq!(creds, Some(("alice".into(), "s:cret".into())));
        assert_eq!(split_credentials("https://h/r").1, None);
        assert_eq!(
            redact("rest:http://alice:secret@h:1/r"),
            "rest:http://alice:***@h:1/r"
        );
        assert_eq!(redact("rest:http://h:1/r"), "rest:http://h:1/r");
    }
}
