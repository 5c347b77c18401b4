//! Streams: `--stdin` and `--stdin-from-command`, stored as one file at
//! the top of the snapshot through the save path's windowed reader
//! ([`BlobSaver::save_reader`](crate::repo::save::BlobSaver::save_reader)),
//! which holds at most two windows of the input in memory.

use std::io::Read;

use super::options::StreamSource;
use super::{Ctx, add};
use crate::error::{Error, Result};
use crate::format::BlobType;
use crate::format::tree::{Node, NodeKind};
use crate::id::BlobId;

impl Ctx<'_> {
    /// Chunk and store a stream of unknown length, holding at most a window
    /// of it in memory. Returns the blob list and the length.
    pub(super) fn save_stream(
        &self,
        what: &str,
        input: &mut (dyn Read + Send),
    ) -> Result<(Vec<BlobId>, u64)> {
        self.saver.save_reader(input, &|_| {}, &|e| {
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
        let content = crate::format::chunklist::build(content, &mut |list| {
            Ok(self.saver.save(BlobType::Tree, list)?.id)
        })?;
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
