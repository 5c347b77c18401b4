//! The transport of the `rclone:` backend: an `rclone serve restic
//! --stdio REMOTE:path` child, spoken to in HTTP/2 over its standard input
//! and output, as restic does. Every storage rclone reaches (B2, Google
//! Drive, OneDrive, Azure, GCS, WebDAV, …) is then a Cairn repository, and
//! the protocol is the one of [`super::rest`].
//!
//! Settings: `CAIRN_RCLONE_PROGRAM` (default `rclone`) and
//! `CAIRN_RCLONE_ARGS` (default `serve restic --stdio --b2-hard-delete`;
//! the remote is appended), which the command line's `--rclone-program`
//! and `--rclone-args` set. The child's standard error is Cairn's; it is
//! killed when the backend is dropped.

use std::process::Stdio;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::remote::RemoteOptions;
use super::rest::{Reply, TransportError};
use crate::error::{Error, Result};

/// The arguments rclone gets before the remote, unless told otherwise.
pub const DEFAULT_ARGS: &str = "serve restic --stdio --b2-hard-delete";

/// A running `rclone serve restic --stdio`.
pub struct Rclone {
    rt: tokio::runtime::Runtime,
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    child: std::sync::Mutex<tokio::process::Child>,
    program: String,
}

fn transport_error(message: String) -> TransportError {
    TransportError {
        message,
        transient: false,
    }
}

impl Rclone {
    /// Start rclone for `remote` and open the HTTP/2 connection.
    pub fn start(remote: &str, opts: &RemoteOptions) -> Result<Rclone> {
        let program = opts
            .env
            .get("CAIRN_RCLONE_PROGRAM")
            .cloned()
            .unwrap_or_else(|| "rclone".into());
        let args = opts
            .env
            .get("CAIRN_RCLONE_ARGS")
            .cloned()
            .unwrap_or_else(|| DEFAULT_ARGS.into());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("cairn-rclone")
            .build()
            .map_err(|e| Error::io("cannot start the network runtime", e))?;
        let (child, sender) = rt.block_on(async {
            let mut child = tokio::process::Command::new(&program)
                .args(args.split_whitespace())
                .arg(remote)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| {
                    Error::io(format!("cannot start {program} (set --rclone-program)"), e)
                })?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(Error::invalid(format!("{program}: no pipes")));
            };
            let io = hyper_util::rt::TokioIo::new(tokio::io::join(stdout, stdin));
            let (sender, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .map_err(|e| {
                        Error::io(
                            format!("{program} {args} {remote}"),
                            std::io::Error::other(format!("no HTTP/2 connection: {e}")),
                        )
                    })?;
            tokio::spawn(conn);
            Ok((child, sender))
        })?;
        Ok(Rclone {
            rt,
            sender,
            child: std::sync::Mutex::new(child),
            program,
        })
    }

    /// One request and its answer.
    pub(crate) fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::result::Result<Reply, TransportError> {
        let mut b = hyper::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| transport_error(e.to_string()))?;
        let mut sender = self.sender.clone();
        let program = &self.program;
        self.rt.block_on(async move {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| transport_error(format!("{program} stopped answering: {e}")))?;
            let status = resp.status().as_u16();
            let content_length = resp
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| transport_error(format!("{program}: {e}")))?
                .to_bytes();
            let body = if (200..300).contains(&status) && method != "HEAD" {
                body.to_vec()
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
}

impl Drop for Rclone {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = child.start_kill();
    }
}
