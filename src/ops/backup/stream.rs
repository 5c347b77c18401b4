//! Streams: `--stdin` and `--stdin-from-command`, stored as one file at
//! the top of the snapshot, and the windowed reader that chunks any input
//! of unknown length (large files go through it too) with at most two
//! windows in memory.

use std::io::Read;

use super::options::StreamSource;
use super::{Ctx, add};
use crate::chunker::Cut;
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::id::BlobId;

/// Bytes of a stream held at once: chunks are cut in windows of this size.
pub(super) const STREAM_WINDOW: usize = 32 << 20;

impl Ctx<'_> {
    /// Chunk and store everything `input` yields, in windows of at least
    /// twice the largest chunk held in private buffers. The next window is
    /// read while the chunks of the current one are hashed, compressed and
    /// sealed (two buffers). Returns the blob list and the length.
    /// `report`: count the bytes towards progress as they go; `err` makes a
    /// read error.
    pub(super) fn save_reader(
        &self,
        input: &mut (dyn Read + Send),
        report: bool,
        err: &(dyn Fn(std::io::Error) -> Error + Sync),
    ) -> Result<(Vec<BlobId>, u64)> {
        let window = STREAM_WINDOW.max(2 * self.repo.chunker().params().max_len as usize);
        let mut cur = vec![0u8; window];
        let mut next = vec![0u8; window];
        let (mut filled, mut eof) = fill(input, &mut cur, 0).map_err(err)?;
        let mut ids = Vec::new();
        let mut total = 0u64;
        while filled > 0 {
            let data = &cur[..filled];
            let mut cuts: Vec<Cut> = self.repo.chunker().cuts(data).collect();
            if !eof && cuts.len() > 1 {
                cuts.pop(); // cut by the window, not by the content
            }
            let consumed: usize = cuts.iter().map(|c| c.len).sum();
            let tail = &data[consumed..];
            let (saved, read) = rayon::join(
                || self.save_chunks(data, &cuts),
                || {
                    next[..tail.len()].copy_from_slice(tail);
                    if eof {
                        Ok((tail.len(), true))
                    } else {
                        fill(input, &mut next, tail.len())
                    }
                },
            );
            ids.extend(saved?);
            (filled, eof) = read.map_err(err)?;
            total += consumed as u64;
            if report {
                self.progress.advance(0, consumed as u64);
            }
            std::mem::swap(&mut cur, &mut next);
        }
        Ok((ids, total))
    }

    /// Chunk and store a stream of unknown length, holding at most a window
    /// of it in memory. Returns the blob list and the length.
    pub(super) fn save_stream(
        &self,
        what: &str,
        input: &mut (dyn Read + Send),
    ) -> Result<(Vec<BlobId>, u64)> {
        self.save_reader(input, false, &|e| {
            Error::io(format!("cannot read {what}"), e)
        })
    }

    /// Store a stream source as a file node named after it.
    pub(super) fn save_stream_node(&self, source: &StreamSource) -> Result<Node> {
        let name = source.filename().as_bytes().to_vec();
        crate::format::tree::validate_name(&name).map_err(|_| {
            Error::invalid(format!("invalid --stdin-filename {:?}", source.filename()))
        })?;
        let (content, len) = match source {
            StreamSource::Stdin { .. } => {
                self.save_stream("standard input", &mut std::io::stdin())?
            }
            StreamSource::Command { argv, .. } => {
                let (prog, args) = argv.split_first().ok_or_else(|| {
                    Error::invalid("--stdin-from-command needs a command after --")
                })?;
                let mut child = std::process::Command::new(prog)
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::inherit())
                    .spawn()
                    .map_err(|e| Error::io(format!("cannot run {prog:?}"), e))?;
                let result = match child.stdout.as_mut() {
                    Some(out) => self.save_stream(&format!("the output of {prog:?}"), out),
                    None => Err(Error::invalid("no output pipe")),
                };
                let status = child
                    .wait()
                    .map_err(|e| Error::io(format!("cannot wait for {prog:?}"), e))?;
                let stored = result?;
                if !status.success() {
                    return Err(Error::invalid(format!(
                        "the command {} failed ({status}); no snapshot was written",
                        argv.join(" ")
                    )));
                }
                stored
            }
        };
        add(&self.counters.files, 1);
        add(&self.counters.files_read, 1);
        add(&self.counters.bytes_read, len);
        add(&self.counters.total_bytes, len);
        let now = jiff::Timestamp::now();
        let t = crate::format::tree::Timestamp {
            sec: now.as_second(),
            nsec: now.subsec_nanosecond().clamp(0, 999_999_999) as u32,
        };
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let mut n = Node::new(name, NodeKind::File { content });
        n.mode = 0o600;
        n.uid = uid;
        n.gid = gid;
        n.user = self.names.user(uid);
        n.group = self.names.group(gid);
        n.mtime = t;
        n.ctime = t;
        n.size = len;
        Ok(n)
    }
}

/// Read from `input` into `buf[start..]` until it is full or the input
/// ends. Returns the bytes now in `buf` and whether the input ended.
fn fill(input: &mut dyn Read, buf: &mut [u8], start: usize) -> std::io::Result<(usize, bool)> {
    let mut filled = start;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => return Ok((filled, true)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((filled, false))
}
