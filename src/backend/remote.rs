//! Network backends through Apache OpenDAL: SFTP and S3-compatible storage.
//!
//! Owns: turning a repository URL into an OpenDAL operator, bounding the
//! number of requests in flight (`--connections`), timeouts, and retrying
//! transient failures with exponential backoff. Integrity is not this
//! layer's business: it moves opaque bytes and never retries anything but
//! transport failures.
//!
//! URLs:
//! - `sftp:user@host:/path` or `sftp://user@host:port/path` — through the
//!   system's `ssh` (its configuration, agent and keys); `CAIRN_SFTP_KEY`
//!   names an identity file, `CAIRN_SFTP_KNOWN_HOSTS` (`strict`, `accept`,
//!   `add`) how unknown host keys are treated (default `strict`).
//! - `rest:http(s)://[user:pass@]host:port/path` — a server speaking
//!   restic's REST protocol (`super::rest`).
//! - `rclone:REMOTE:path` — anything rclone reaches, through `rclone serve
//!   restic --stdio` (`super::rclone`).
//! - `s3:https://host[:port]/bucket[/prefix]` — any S3-compatible store,
//!   path-style addressing; credentials from `AWS_ACCESS_KEY_ID` and
//!   `AWS_SECRET_ACCESS_KEY`, region from `AWS_DEFAULT_REGION` or
//!   `AWS_REGION` (default `us-east-1`).
//!
//! Anything else that starts like a URL scheme (`word:`) is an error that
//! names the known ones, so that a mistyped or not yet supported scheme
//! never becomes a local directory named after it; a local path with a
//! colon is written `./a:b` or as an absolute path.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use opendal::blocking;

use super::{Backend, ObjectInfo, validate_object_name};
use crate::error::{Error, ErrorKind, Result};

/// Options for network backends.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Requests in flight at most.
    pub connections: usize,
    /// Attempts per request (transient failures only).
    pub attempts: u32,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Settings by name ([`SETTINGS`]: `AWS_ACCESS_KEY_ID`,
    /// `CAIRN_SFTP_KEY`, …). The library never reads the process
    /// environment: the command line fills this from it, and from a
    /// configuration file's `[repository.NAME.env]`, which wins.
    pub env: std::collections::BTreeMap<String, String>,
    /// Root of the local cache of network repositories (one directory per
    /// location below it, see [`super::cache::cache_dir`]); `None` for no
    /// cache.
    pub cache_root: Option<std::path::PathBuf>,
}

/// The settings a network backend reads from [`RemoteOptions::env`].
pub const SETTINGS: [&str; 11] = [
    "CAIRN_SFTP_KEY",
    "CAIRN_SFTP_KNOWN_HOSTS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "CAIRN_REST_USERNAME",
    "CAIRN_REST_PASSWORD",
    "CAIRN_REST_TLS_CA_FILE",
    "CAIRN_RCLONE_PROGRAM",
    "CAIRN_RCLONE_ARGS",
];

impl RemoteOptions {
    /// A setting.
    fn var(&self, key: &str) -> Option<String> {
        self.env.get(key).cloned()
    }
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            connections: 4,
            attempts: 5,
            timeout: Duration::from_secs(120),
            env: Default::default(),
            cache_root: None,
        }
    }
}

/// What kind of store a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteUrl {
    /// SFTP: endpoint for ssh (`user@host` or `ssh://user@host:port`) and path.
    Sftp {
        /// Endpoint as ssh understands it.
        endpoint: String,
        /// Directory on the server.
        root: String,
    },
    /// A server speaking restic's REST protocol.
    Rest {
        /// `http(s)://[user:pass@]host:port/path`.
        url: String,
    },
    /// Anything rclone reaches, through `rclone serve restic --stdio`.
    Rclone {
        /// rclone's `REMOTE:path` (or a local path).
        remote: String,
    },
    /// S3-compatible storage.
    S3 {
        /// `https://host[:port]`.
        endpoint: String,
        /// Bucket name.
        bucket: String,
        /// Prefix inside the bucket (`/` for none).
        root: String,
    },
}

impl RemoteUrl {
    /// Parse a repository URL; `None` if it is a local path.
    pub fn parse(url: &str) -> Result<Option<RemoteUrl>> {
        if let Some(rest) = url.strip_prefix("sftp://") {
            let (auth, path) = rest.split_once('/').ok_or_else(|| {
                Error::invalid(format!(
                    "{url}: give a path, as in sftp://user@host:port/path"
                ))
            })?;
            return Ok(Some(RemoteUrl::Sftp {
                endpoint: format!("ssh://{auth}"),
                root: format!("/{path}"),
            }));
        }
        if let Some(rest) = url.strip_prefix("sftp:") {
            let (auth, path) = rest.split_once(':').ok_or_else(|| {
                Error::invalid(format!("{url}: give a path, as in sftp:user@host:/path"))
            })?;
            if auth.is_empty() || path.is_empty() {
                return Err(Error::invalid(format!(
                    "{url}: expected sftp:user@host:/path"
                )));
            }
            return Ok(Some(RemoteUrl::Sftp {
                endpoint: auth.to_string(),
                root: path.to_string(),
            }));
        }
        if let Some(remote) = url.strip_prefix("rclone:") {
            if remote.is_empty() {
                return Err(Error::invalid(format!(
                    "{url}: expected rclone:REMOTE:path (a remote of `rclone config`)"
                )));
            }
            return Ok(Some(RemoteUrl::Rclone {
                remote: remote.to_string(),
            }));
        }
        if let Some(rest) = url.strip_prefix("rest:") {
            if !(rest.starts_with("http://") || rest.starts_with("https://"))
                || rest.split_once("://").is_none_or(|(_, h)| h.is_empty())
            {
                return Err(Error::invalid(format!(
                    "{url}: expected rest:http://[user:pass@]host:port/path or rest:https://…"
                )));
            }
            return Ok(Some(RemoteUrl::Rest {
                url: rest.to_string(),
            }));
        }
        if let Some(rest) = url.strip_prefix("s3:") {
            let (scheme, after) = rest.split_once("://").ok_or_else(|| {
                Error::invalid(format!(
                    "{url}: expected s3:https://host[:port]/bucket[/prefix]"
                ))
            })?;
            let (host, path) = after.split_once('/').ok_or_else(|| {
                Error::invalid(format!("{url}: no bucket in s3:https://host/bucket"))
            })?;
            let mut parts = path.splitn(2, '/');
            let bucket = parts.next().unwrap_or("").to_string();
            if bucket.len() < 3 {
                return Err(Error::invalid(format!(
                    "{url}: bucket names have at least 3 characters"
                )));
            }
            let prefix = parts.next().unwrap_or("").trim_matches('/');
            return Ok(Some(RemoteUrl::S3 {
                endpoint: format!("{scheme}://{host}"),
                bucket,
                root: format!("/{prefix}"),
            }));
        }
        if let Some(scheme) = scheme_of(url) {
            return Err(Error::invalid(format!(
                "{url}: unknown repository scheme `{scheme}:` (known: {}); \
                 write a local path that holds a colon with ./ in front or as an absolute path",
                KNOWN_SCHEMES.join(", ")
            )));
        }
        Ok(None)
    }
}

/// The URL schemes [`RemoteUrl::parse`] knows, as they are written.
pub const KNOWN_SCHEMES: &[&str] = &["sftp:", "s3:", "rest:", "rclone:"];

/// The scheme of a location written `scheme:…` (RFC 3986: a letter, then
/// letters, digits, `+`, `-` or `.`), or `None` for a local path.
fn scheme_of(location: &str) -> Option<&str> {
    let (scheme, _) = location.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// A counting semaphore bounding requests in flight.
pub(crate) struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

impl Slots {
    pub(crate) fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn take(&self) -> SlotGuard<'_> {
        let mut n = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *n == 0 {
            n = self.cv.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n -= 1;
        SlotGuard(self)
    }
}

pub(crate) struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.cv.notify_one();
    }
}

/// A repository on SFTP or S3-compatible storage.
pub struct RemoteBackend {
    op: blocking::Operator,
    // Keeps the runtime the operator's futures run on alive.
    _rt: tokio::runtime::Runtime,
    location: String,
    /// SFTP writes are not atomic: write a temporary name, then rename.
    write_via_rename: bool,
    slots: Slots,
    opts: RemoteOptions,
}

/// The S3 error code in an OpenDAL error's text (`code: "NoSuchBucket"`).
fn s3_code(text: &str) -> Option<&str> {
    let rest = &text[text.find("code: \"")? + 7..];
    Some(&rest[..rest.find('"')?])
}

fn dal_error(what: String, e: opendal::Error) -> Error {
    let kind = match e.kind() {
        opendal::ErrorKind::NotFound => std::io::ErrorKind::NotFound,
        opendal::ErrorKind::PermissionDenied => std::io::ErrorKind::PermissionDenied,
        _ => std::io::ErrorKind::Other,
    };
    let full = e.to_string().replace('\n', " ");
    // Say the likely cause in a few words; the details stay for debugging.
    let msg = match (e.kind(), s3_code(&full)) {
        (_, Some(code @ ("SignatureDoesNotMatch" | "InvalidAccessKeyId" | "AccessDenied"))) => {
            format!("access denied ({code}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        }
        (_, Some("NoSuchBucket")) => "the bucket does not exist (NoSuchBucket)".to_string(),
        (opendal::ErrorKind::PermissionDenied, _) => format!("access denied: {full}"),
        _ => full,
    };
    Error::io(what, std::io::Error::new(kind, msg))
}

impl RemoteBackend {
    /// Connect to `url` (see the module documentation).
    pub fn open(url: &RemoteUrl, location: &str, opts: RemoteOptions) -> Result<RemoteBackend> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.connections.clamp(1, 16))
            .enable_all()
            .thread_name("cairn-net")
            .build()
            .map_err(|e| Error::io("cannot start the network runtime", e))?;
        let _enter = rt.enter();
        // The HTTP transport (reqwest, rustls) is installed explicitly: the
        // crate's auto-registration feature is off. First call wins.
        opendal::install_default();
        let (op, write_via_rename) = match url {
            RemoteUrl::Sftp { endpoint, root } => {
                let mut b = opendal::services::Sftp::default()
                    .endpoint(endpoint)
                    .root(root)
                    .known_hosts_strategy(
                        &opts
                            .var("CAIRN_SFTP_KNOWN_HOSTS")
                            .unwrap_or_else(|| "strict".into()),
                    );
                if let Some(key) = opts.var("CAIRN_SFTP_KEY") {
                    b = b.key(&key);
                }
                let op = opendal::Operator::new(b)
                    .map_err(|e| dal_error(format!("cannot use {location}"), e))?
                    .layer(
                        opendal::layers::TimeoutLayer::new()
                            .with_timeout(opts.timeout)
                            .with_io_timeout(opts.timeout),
                    );
                (op, true)
            }
            RemoteUrl::S3 {
                endpoint,
                bucket,
                root,
            } => {
                let region = opts
                    .var("AWS_DEFAULT_REGION")
                    .or_else(|| opts.var("AWS_REGION"))
                    .unwrap_or_else(|| "us-east-1".into());
                let key_id = opts.var("AWS_ACCESS_KEY_ID").ok_or_else(|| {
                    Error::invalid(format!(
                        "{location}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    ))
                })?;
                let secret = opts.var("AWS_SECRET_ACCESS_KEY").ok_or_else(|| {
                    Error::invalid(format!("{location}: set AWS_SECRET_ACCESS_KEY"))
                })?;
                let b = opendal::services::S3::default()
                    .endpoint(endpoint)
                    .bucket(bucket)
                    .root(root)
                    .region(&region)
                    .access_key_id(&key_id)
                    .secret_access_key(&secret)
                    .disable_config_load()
                    .disable_ec2_metadata();
                let op = opendal::Operator::new(b)
                    .map_err(|e| dal_error(format!("cannot use {location}"), e))?
                    .layer(
                        opendal::layers::TimeoutLayer::new()
                            .with_timeout(opts.timeout)
                            .with_io_timeout(opts.timeout),
                    );
                (op, false)
            }
            RemoteUrl::Rest { .. } | RemoteUrl::Rclone { .. } => {
                return Err(Error::invalid(format!(
                    "{location}: a REST server is opened by backend::rest"
                )));
            }
        };
        let op = blocking::Operator::new(op)
            .map_err(|e| dal_error(format!("cannot use {location}"), e))?;
        drop(_enter);
        Ok(RemoteBackend {
            op,
            _rt: rt,
            location: location.to_string(),
            write_via_rename,
            slots: Slots {
                free: Mutex::new(opts.connections.max(1)),
                cv: Condvar::new(),
            },
            opts,
        })
    }

    /// Run `f`, retrying transient failures with exponential backoff.
    fn retry<T>(&self, what: &str, f: impl Fn() -> opendal::Result<T>) -> Result<T> {
        let _slot = self.slots.take();
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(e) if e.is_temporary() && attempt < self.opts.attempts => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(10));
                    attempt += 1;
                }
                Err(e) => {
                    let tries = if attempt > 1 {
                        format!(" (after {attempt} attempts)")
                    } else {
                        String::new()
                    };
                    return Err(dal_error(format!("{what} on {}{tries}", self.location), e));
                }
            }
        }
    }
}

impl Backend for RemoteBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn create(&self) -> Result<()> {
        for d in super::local::DIRS {
            self.retry("create", || self.op.create_dir(&format!("{d}/")))?;
        }
        if self.write_via_rename {
            for i in 0..=255u8 {
                let d = format!("data/{}/", hex::encode([i]));
                self.retry("create", || self.op.create_dir(&d))?;
            }
        }
        Ok(())
    }

    fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        validate_object_name(dir)?;
        let entries = match self.retry(&format!("list {dir}"), || {
            self.op.list_options(
                &format!("{dir}/"),
                opendal::options::ListOptions {
                    recursive: true,
                    ..Default::default()
                },
            )
        }) {
            Ok(e) => e,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for e in entries {
            let path = e.path().trim_start_matches('/').to_string();
            if path.ends_with('/') || path.contains(".tmp-") {
                continue;
            }
            let meta = e.metadata();
            let mut size = meta.content_length();
            let mut mtime = meta.last_modified();
            if size == 0 || mtime.is_none() {
                // Some listings do not carry sizes or times; ask.
                if let Ok(m) = self.retry(&format!("stat {path}"), || self.op.stat(&path)) {
                    size = m.content_length();
                    mtime = m.last_modified().or(mtime);
                }
            }
            out.push(ObjectInfo {
                name: path,
                size,
                mtime: mtime.and_then(|t| super::system_time_ns(t.into())),
            });
        }
        Ok(out)
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        validate_object_name(name)?;
        self.retry(&format!("read {name}"), || self.op.read(name))
            .map(|b| b.to_vec())
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        validate_object_name(name)?;
        if len == 0 {
            self.stat(name)?;
            return Ok(Vec::new());
        }
        let buf = self.retry(&format!("read {name}"), || {
            self.op.read_options(
                name,
                opendal::options::ReadOptions {
                    range: (offset..offset + len).into(),
                    ..Default::default()
                },
            )
        })?;
        let v = buf.to_vec();
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

    fn get_range_stream(
        &self,
        name: &str,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        validate_object_name(name)?;
        if len == 0 {
            self.stat(name)?;
            return Ok(());
        }
        // One connection for the whole range, as `retry` takes for one
        // request; a transient failure part-way reads on from the next
        // byte, with the same attempts and backoff as `retry`.
        let _slot = self.slots.take();
        let mut done = 0u64;
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let mut stopped = None;
            let read = (|| -> opendal::Result<()> {
                let pieces = self
                    .op
                    .reader(name)?
                    .into_bytes_iterator(offset + done..offset + len)?;
                for piece in pieces {
                    let piece = piece.map_err(|e| match e.into_inner() {
                        Some(inner) => match inner.downcast::<opendal::Error>() {
                            Ok(e) => *e,
                            Err(other) => opendal::Error::new(
                                opendal::ErrorKind::Unexpected,
                                other.to_string(),
                            )
                            .set_temporary(),
                        },
                        None => opendal::Error::new(
                            opendal::ErrorKind::Unexpected,
                            "the connection failed while reading",
                        )
                        .set_temporary(),
                    })?;
                    // Never more than asked, whatever the server sends.
                    let piece = &piece[..piece.len().min((len - done) as usize)];
                    if let Err(e) = sink(piece) {
                        stopped = Some(e);
                        return Ok(());
                    }
                    done += piece.len() as u64;
                    if done == len {
                        break;
                    }
                }
                Ok(())
            })();
            if let Some(e) = stopped {
                return Err(e);
            }
            match read {
                Ok(()) if done == len => return Ok(()),
                Ok(()) => {
                    return Err(Error::io(
                        format!("read {name} on {}", self.location),
                        std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("wanted {len} bytes at {offset}, got {done}"),
                        ),
                    ));
                }
                Err(e) if e.is_temporary() && attempt < self.opts.attempts => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(10));
                    attempt += 1;
                }
                Err(e) => {
                    let tries = if attempt > 1 {
                        format!(" (after {attempt} attempts)")
                    } else {
                        String::new()
                    };
                    return Err(dal_error(
                        format!("read {name} on {}{tries}", self.location),
                        e,
                    ));
                }
            }
        }
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        validate_object_name(name)?;
        let bytes = bytes::Bytes::copy_from_slice(data);
        if self.write_via_rename {
            let tmp = format!("{name}.tmp-{}", hex::encode(rand::random::<[u8; 8]>()));
            self.retry(&format!("write {name}"), || {
                self.op.write(&tmp, bytes.clone())
            })?;
            let r = self.retry(&format!("rename {name}"), || self.op.rename(&tmp, name));
            if r.is_err() {
                let _ = self.op.delete(&tmp);
            }
            return r;
        }
        self.retry(&format!("write {name}"), || {
            self.op.write(name, bytes.clone())
        })
        .map(|_| ())
    }

    fn delete(&self, name: &str) -> Result<()> {
        validate_object_name(name)?;
        match self.retry(&format!("delete {name}"), || self.op.delete(name)) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    fn stat(&self, name: &str) -> Result<u64> {
        validate_object_name(name)?;
        self.retry(&format!("stat {name}"), || self.op.stat(name))
            .map(|m| m.content_length())
    }
    fn preferred_writers(&self) -> usize {
        self.opts.connections.max(1)
    }
}

/// Open a backend for a repository location: a local path, or a URL.
pub fn open(location: &str, opts: RemoteOptions) -> Result<std::sync::Arc<dyn Backend>> {
    match RemoteUrl::parse(location)? {
        None => Ok(std::sync::Arc::new(super::local::LocalBackend::new(
            location,
        ))),
        Some(url) => {
            let cache = opts
                .cache_root
                .as_deref()
                .map(|root| super::cache::cache_dir(root, location));
            let remote: std::sync::Arc<dyn Backend> = match &url {
                RemoteUrl::Rest { url } => {
                    std::sync::Arc::new(super::rest::RestBackend::open(url, location, opts)?)
                }
                RemoteUrl::Rclone { remote } => std::sync::Arc::new(
                    super::rest::RestBackend::open_rclone(remote, location, opts)?,
                ),
                _ => std::sync::Arc::new(RemoteBackend::open(&url, location, opts)?),
            };
            Ok(match cache {
                Some(dir) => std::sync::Arc::new(super::cache::CachedBackend::new(remote, dir)),
                None => remote,
            })
        }
    }
}

/// Keep the error kind of `e` when it says "not found".
pub fn is_not_found(e: &Error) -> bool {
    e.is_not_found() || e.kind() == ErrorKind::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(RemoteUrl::parse("/srv/backup").unwrap(), None);
        assert_eq!(
            RemoteUrl::parse("sftp:me@nas:/backups/cairn").unwrap(),
            Some(RemoteUrl::Sftp {
                endpoint: "me@nas".into(),
                root: "/backups/cairn".into()
            })
        );
        assert_eq!(
            RemoteUrl::parse("sftp://me@127.0.0.1:2222/srv/repo").unwrap(),
            Some(RemoteUrl::Sftp {
                endpoint: "ssh://me@127.0.0.1:2222".into(),
                root: "/srv/repo".into()
            })
        );
        assert_eq!(
            RemoteUrl::parse("s3:https://s3.example.com:9000/bucket/some/prefix/").unwrap(),
            Some(RemoteUrl::S3 {
                endpoint: "https://s3.example.com:9000".into(),
                bucket: "bucket".into(),
                root: "/some/prefix".into()
            })
        );
        assert_eq!(
            RemoteUrl::parse("s3:http://127.0.0.1:8333/cairn").unwrap(),
            Some(RemoteUrl::S3 {
                endpoint: "http://127.0.0.1:8333".into(),
                bucket: "cairn".into(),
                root: "/".into()
            })
        );
        for bad in [
            "sftp:nohostpath",
            "s3:noscheme/bucket",
            "s3:https://host",
            "s3:https://h/ab",
        ] {
            assert!(RemoteUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_schemes_are_errors_naming_the_known_ones() {
        for bad in [
            "rests:http://host/repo",
            "b2:bucket",
            "file:///srv/repo",
            "https://host/repo",
            "x:",
            "a1+b-c.d:thing",
        ] {
            let e = RemoteUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains("unknown repository scheme"), "{bad}: {e}");
            assert!(
                e.contains("known: sftp:, s3:, rest:, rclone:"),
                "{bad}: {e}"
            );
        }
        assert!(matches!(
            RemoteUrl::parse("rest:http://host/repo"),
            Ok(Some(RemoteUrl::Rest { .. }))
        ));
        assert!(matches!(
            RemoteUrl::parse("rclone:remote:path"),
            Ok(Some(RemoteUrl::Rclone { .. }))
        ));
        for bad in [
            "rest:host/repo",
            "rest:ftp://host/repo",
            "rest:http://",
            "rclone:",
        ] {
            assert!(RemoteUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_paths_with_a_colon_stay_local() {
        for local in [
            "./a:b",
            "/srv/a:b",
            "../x:y",
            "repo",
            "dir/sub:thing",
            "1abc:def",
            ":leading",
            "",
        ] {
            assert_eq!(RemoteUrl::parse(local).unwrap(), None, "{local}");
        }
    }
}
