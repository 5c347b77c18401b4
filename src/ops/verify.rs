//! Verify a restored tree against its snapshot: every regular file's bytes
//! are cut where the snapshot's blobs end and hashed again, so the check is
//! independent of the restore code that wrote them; sizes, permissions,
//! modification times and symlink targets are compared too.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rayon::prelude::*;

use super::Progress;
use crate::error::Result;
use crate::format::BlobType;
use crate::format::tree::{FileContent, Node, NodeKind};
use crate::id::BlobId;
use crate::repo::Repository;

/// What `verify` found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct VerifyResult {
    /// Regular files compared.
    pub files: u64,
    /// Bytes of file content hashed.
    pub bytes: u64,
    /// Directories and symlinks compared.
    pub others: u64,
    /// Differences, as (snapshot path, what differs).
    pub problems: Vec<(String, String)>,
}

/// Compare the restored copy of `tree` under `target` (as `restore` lays it
/// out, with `prefix` the snapshot path of `tree`).
pub fn verify(
    repo: &Repository,
    tree: &BlobId,
    prefix: &[u8],
    target: &Path,
    progress: &dyn Progress,
) -> Result<VerifyResult> {
    let mut entries: Vec<(Vec<u8>, Node)> = Vec::new();
    super::walk::walk(repo, tree, prefix, &mut |p, n| {
        entries.push((p.to_vec(), n.clone()));
        Ok(())
    })?;
    let total: u64 = entries
        .iter()
        .filter(|(_, n)| matches!(n.kind, NodeKind::File { .. }))
        .map(|(_, n)| n.size)
        .sum();
    progress.start(
        "verify",
        Some(
            entries
                .iter()
                .filter(|(_, n)| matches!(n.kind, NodeKind::File { .. }))
                .count() as u64,
        ),
        Some(total),
    );
    let outcomes: Vec<(String, Outcome)> = super::in_pool(|| {
        entries
            .par_iter()
            .map(|(p, n)| {
                let mut rel = &p[prefix.len().min(p.len())..];
                while let [b'/', rest @ ..] = rel {
                    rel = rest;
                }
                let o = check_entry(repo, &target.join(OsStr::from_bytes(rel)), n);
                if let Outcome::File(bytes, _) = &o {
                    progress.advance(1, *bytes);
                }
                (String::from_utf8_lossy(p).into_owned(), o)
            })
            .collect()
    });
    let mut r = VerifyResult::default();
    for (path, o) in outcomes {
        match o {
            Outcome::File(bytes, problem) => {
                r.files += 1;
                r.bytes += bytes;
                if let Some(why) = problem {
                    r.problems.push((path, why));
                }
            }
            Outcome::Other(problem) => {
                r.others += 1;
                if let Some(why) = problem {
                    r.problems.push((path, why));
                }
            }
            Outcome::Skipped => {}
        }
    }
    Ok(r)
}

enum Outcome {
    /// A regular file: bytes hashed, and what differs.
    File(u64, Option<String>),
    /// A directory or symlink, and what differs.
    Other(Option<String>),
    /// Devices, FIFOs and sockets are not compared.
    Skipped,
}

fn check_entry(repo: &Repository, path: &Path, n: &Node) -> Outcome {
    match &n.kind {
        NodeKind::File { content } => {
            let (bytes, problem) = match check_file(repo, path, n, content) {
                Ok(v) => v,
                Err(why) => (0, Some(why)),
            };
            Outcome::File(bytes, problem)
        }
        NodeKind::Dir { .. } => Outcome::Other(match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some("restored as something other than a directory".into()),
            Err(e) => Some(format!("missing: {e}")),
        }),
        NodeKind::Symlink { target } => Outcome::Other(match std::fs::read_link(path) {
            Ok(t) if t.as_os_str().as_encoded_bytes() == target.as_slice() => None,
            Ok(t) => Some(format!("symlink points to {} instead", t.display())),
            Err(e) => Some(format!("symlink missing: {e}")),
        }),
        _ => Outcome::Skipped,
    }
}

/// Hash a restored file blob by blob. `Err` when it cannot be compared at
/// all; `Ok((bytes, Some(why)))` when it differs.
fn check_file(
    repo: &Repository,
    path: &Path,
    n: &Node,
    content: &FileContent,
) -> std::result::Result<(u64, Option<String>), String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("missing: {e}"))?;
    if !meta.is_file() {
        return Err("restored as something other than a regular file".into());
    }
    if meta.len() != n.size {
        return Ok((
            0,
            Some(format!("size {} instead of {} bytes", meta.len(), n.size)),
        ));
    }
    let content =
        crate::repo::chunklist::data_ids(repo, content, crate::repo::chunklist::chunk_limit(n))
            .map_err(|e| format!("its chunk list cannot be read: {e}"))?;
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut buf = Vec::new();
    let mut off = 0u64;
    for id in content.iter() {
        let Some(loc) = repo.index().get(BlobType::Data, id) else {
            return Ok((off, Some(format!("blob {} is in no index file", id))));
        };
        buf.resize(loc.raw_len as usize, 0);
        f.read_exact(&mut buf)
            .map_err(|e| format!("cannot read at offset {off}: {e}"))?;
        if repo.id_key().blob_id(&buf) != *id {
            return Ok((
                off,
                Some(format!(
                    "content differs from the snapshot in bytes {off}..{}",
                    off + buf.len() as u64
                )),
            ));
        }
        off += buf.len() as u64;
    }
    if off != n.size {
        return Ok((
            off,
            Some(format!(
                "the snapshot's blobs hold {off} of {} bytes",
                n.size
            )),
        ));
    }
    if meta.permissions().mode() & 0o7777 != n.mode & 0o7777 {
        return Ok((
            off,
            Some(format!(
                "mode {:o} instead of {:o}",
                meta.permissions().mode() & 0o7777,
                n.mode & 0o7777
            )),
        ));
    }
    if (meta.mtime(), meta.mtime_nsec()) != (n.mtime.sec, i64::from(n.mtime.nsec)) {
        return Ok((off, Some("modification time differs".into())));
    }
    Ok((off, None))
}

/// A temporary directory under `base` for `restore-test`, removed on drop.
pub fn temp_target(base: &Path) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("cairn-restore-test-")
        .tempdir_in(base)
        .map_err(|e| crate::error::Error::io_path("cannot create a directory in", base, e))
}
