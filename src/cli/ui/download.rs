//! Downloads: one file of a snapshot byte for byte, or a directory as a
//! `.tar` stream. Both are streamed as they are read (bounded memory,
//! whatever the size); a read that fails midway aborts the connection, so
//! that a browser reports the download as failed instead of keeping a
//! truncated file.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use cairn::format::tree::{Node, NodeKind};
use cairn::ops::walk::{self, Found};
use cairn::repo::Repository;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::{Response, StatusCode};

use super::pages::{percent_encode, split_target};
use super::{Body, Failure, Ui};

/// Bytes gathered before they are handed to the connection.
const CHUNK: usize = 256 << 10;

/// Chunks in flight between the reader and the connection.
const QUEUE: usize = 8;

/// A body fed by a channel; an `Err` ends the connection.
struct ChannelBody(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// The writing end: buffers [`CHUNK`] bytes, then waits for room in the
/// channel (the reader goes no faster than the client takes the bytes).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
    written: u64,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client closed the connection",
            )
        })
    }

    /// End the body with an error: the connection is cut.
    fn fail(self, message: String) {
        let _ = self.tx.blocking_send(Err(std::io::Error::other(message)));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        self.written += b.len() as u64;
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// `attachment; filename*=UTF-8''NAME`, the name percent-encoded (any
/// bytes are safe in it).
fn disposition(name: &[u8]) -> hyper::header::HeaderValue {
    let v = format!(
        "attachment; filename*=UTF-8''{}",
        percent_encode(name, false)
    );
    hyper::header::HeaderValue::from_str(&v)
        .unwrap_or(hyper::header::HeaderValue::from_static("attachment"))
}

/// Start `produce` on a blocking thread, writing into the body of the
/// response it returns; `len` is the body's exact length if known.
fn stream(
    ui: Arc<Ui>,
    name: &[u8],
    content_type: &'static str,
    len: Option<u64>,
    produce: impl FnOnce(&Repository, &mut ChannelWriter) -> Result<(), String> + Send + 'static,
) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
            written: 0,
        };
        let result = match ui.indexed() {
            Ok(repo) => produce(&repo, &mut w),
            Err(f) => Err(f.message),
        };
        match result.and_then(|()| w.flush().map_err(|e| e.to_string())) {
            Ok(()) => {}
            // A client that went away (or a HEAD request) is no failure.
            Err(_) if w.tx.is_closed() => {}
            Err(e) => {
                eprintln!("cairn ui: download failed: {e}");
                w.fail(e);
            }
        }
    });
    let mut r = super::respond(StatusCode::OK, content_type, ChannelBody(rx).boxed());
    let h = r.headers_mut();
    h.insert(hyper::header::CONTENT_DISPOSITION, disposition(name));
    if let Some(len) = len {
        h.insert(hyper::header::CONTENT_LENGTH, len.into());
    }
    r
}

/// Find the entry `rest` (`ID/PATH`, percent-encoded) names.
fn resolve(ui: &Ui, rest: &str) -> Result<(String, Vec<u8>, Found), Failure> {
    let (spec, path) = split_target(rest)?;
    let (id, snap) = ui.snapshot(&spec)?;
    let found = {
        let repo = ui.indexed()?;
        walk::find(&repo, &snap.tree, &path)?
    };
    Ok((id.short(), path, found))
}

async fn resolved(ui: &Arc<Ui>, rest: String) -> Result<(String, Vec<u8>, Found), Failure> {
    let ui = ui.clone();
    tokio::task::spawn_blocking(move || resolve(&ui, &rest))
        .await
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

fn last_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/')
        .find(|c| !c.is_empty())
        .unwrap_or(b"")
}

/// `/file/ID/PATH`: the file's bytes, exactly as backed up.
pub async fn file(ui: Arc<Ui>, rest: String) -> Response<Body> {
    let (_, path, found) = match resolved(&ui, rest).await {
        Ok(r) => r,
        Err(f) => return super::failure_page(&f),
    };
    let node = match found {
        Found::Entry(n) if matches!(n.kind, NodeKind::File { .. }) => n,
        Found::Entry(n) => {
            return super::failure_page(&Failure::bad_request(format!(
                "{} is a {}, not a file",
                String::from_utf8_lossy(&path),
                n.kind.name()
            )));
        }
        Found::Dir(..) => {
            return super::failure_page(&Failure::bad_request(format!(
                "{} is a directory: download it as .tar",
                String::from_utf8_lossy(&path)
            )));
        }
    };
    let size = node.size;
    let name = last_name(&path).to_vec();
    stream(
        ui,
        &name,
        "application/octet-stream",
        Some(size),
        move |repo, w| {
            let n = walk::dump_file(repo, &node, w).map_err(|e| e.to_string())?;
            if n != size {
                return Err(format!(
                    "{}: read {n} bytes, the snapshot records {size}",
                    String::from_utf8_lossy(&path)
                ));
            }
            Ok(())
        },
    )
}

/// `/tar/ID/PATH`: the directory and everything below it, as a tar
/// archive whose entries are relative to the directory's parent
/// (`NAME/…`; the snapshot's root as `snapshot-ID/…`).
pub async fn tar(ui: Arc<Ui>, rest: String) -> Response<Body> {
    let (short, path, found) = match resolved(&ui, rest).await {
        Ok(r) => r,
        Err(f) => return super::failure_page(&f),
    };
    let (tree, dir) = match found {
        Found::Dir(tree, dir) => (tree, dir),
        Found::Entry(_) => {
            return super::failure_page(&Failure::bad_request(format!(
                "{} is not a directory",
                String::from_utf8_lossy(&path)
            )));
        }
    };
    let top = match last_name(&path) {
        b"" => format!("snapshot-{short}").into_bytes(),
        n => n.to_vec(),
    };
    let mut file_name = top.clone();
    file_name.extend_from_slice(b".tar");
    stream(ui, &file_name, "application/x-tar", None, move |repo, w| {
        write_tar(repo, &tree, dir.as_ref(), &top, w).map_err(|e| e.to_string())
    })
}

/// Write the tree `tree` (the directory `dir`, if not the root) as a tar
/// archive below `top`.
fn write_tar(
    repo: &Repository,
    tree: &cairn::id::BlobId,
    dir: Option<&Node>,
    top: &[u8],
    w: &mut ChannelWriter,
) -> anyhow::Result<()> {
    let mut b = tar::Builder::new(w);
    let mut root = match dir {
        Some(n) => header_for(n),
        None => {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h
        }
    };
    root.set_size(0);
    b.append_data(
        &mut root,
        std::ffi::OsStr::from_bytes(top),
        std::io::empty(),
    )?;
    walk::walk(repo, tree, top, &mut |p, n| {
        let name = std::path::Path::new(std::ffi::OsStr::from_bytes(p));
        let mut h = header_for(n);
        let io = |e: std::io::Error| {
            cairn::Error::io(
                format!("cannot write {} to the archive", String::from_utf8_lossy(p)),
                e,
            )
        };
        match &n.kind {
            NodeKind::File { .. } => {
                h.set_size(n.size);
                // The header (and a long name's extension), then the
                // content straight from the repository, then the padding.
                b.append_data(&mut h, name, std::io::empty()).map_err(io)?;
                let out = b.get_mut();
                let written = walk::dump_file(repo, n, out)?;
                if written != n.size {
                    return Err(cairn::Error::integrity(format!(
                        "{}: read {written} bytes, the snapshot records {}",
                        String::from_utf8_lossy(p),
                        n.size
                    )));
                }
                let pad = (512 - written % 512) % 512;
                out.write_all(&vec![0u8; pad as usize]).map_err(io)?;
            }
            NodeKind::Symlink { target } => {
                h.set_size(0);
                b.append_link(&mut h, name, std::ffi::OsStr::from_bytes(target))
                    .map_err(io)?;
            }
            NodeKind::Socket => {}
            _ => {
                h.set_size(0);
                b.append_data(&mut h, name, std::io::empty()).map_err(io)?;
            }
        }
        Ok(())
    })?;
    b.finish()?;
    Ok(())
}

/// A tar header with `n`'s type, mode, owner and time (no size, no path).
fn header_for(n: &Node) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let (kind, rdev) = match &n.kind {
        NodeKind::File { .. } => (tar::EntryType::Regular, None),
        NodeKind::Dir { .. } => (tar::EntryType::Directory, None),
        NodeKind::Symlink { .. } => (tar::EntryType::Symlink, None),
        NodeKind::Fifo => (tar::EntryType::Fifo, None),
        NodeKind::CharDevice { rdev } => (tar::EntryType::Char, Some(*rdev)),
        NodeKind::BlockDevice { rdev } => (tar::EntryType::Block, Some(*rdev)),
        NodeKind::Socket => (tar::EntryType::Regular, None),
    };
    h.set_entry_type(kind);
    h.set_mode(n.mode & 0o7777);
    h.set_uid(u64::from(n.uid));
    h.set_gid(u64::from(n.gid));
    h.set_mtime(u64::try_from(n.mtime.sec).unwrap_or(0));
    if !n.user.is_empty() {
        let _ = h.set_username(&n.user);
    }
    if !n.group.is_empty() {
        let _ = h.set_groupname(&n.group);
    }
    if let Some(rdev) = rdev {
        let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
        let _ = h.set_device_major(major);
        let _ = h.set_device_minor(minor);
    }
    h
}
