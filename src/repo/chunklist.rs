//! Reading chunk-list trees (FORMAT.md §5.8) through a repository: a file's
//! data blob IDs in order, from either content form, and the walk over every
//! blob of a tree for reachability (prune, check, copy, repair).
//!
//! Owns: loading ID-list blobs (as tree blobs: through the tree cache, every
//! one re-hashed to its ID), the level check that bounds recursion, and the
//! per-file chunk limit. Never touches: the byte layout (`format::chunklist`)
//! or storing (the file saver builds trees with `format::chunklist::build`).

use std::borrow::Cow;
use std::collections::HashMap;

use super::Repository;
use crate::error::{Error, ErrorKind, Result};
use crate::format::BlobType;
use crate::format::chunklist::{IdList, MAX_FILE_CHUNKS};
use crate::format::tree::{FileContent, Node};
use crate::id::BlobId;

/// Most data blobs a reader follows for `node`: its size (each data blob
/// holds at least one byte), at most [`MAX_FILE_CHUNKS`].
pub fn chunk_limit(node: &Node) -> u64 {
    node.size.min(MAX_FILE_CHUNKS)
}

/// Read one ID-list blob, which must be of `level`.
pub fn load_list(repo: &Repository, id: &BlobId, level: u8) -> Result<Vec<BlobId>> {
    let what = || format!("chunk-list blob {id}");
    let raw = repo
        .read_blob(BlobType::Tree, id)
        .map_err(|e| e.context(what()))?;
    let list = IdList::from_bytes(&raw).map_err(|e| e.context(what()))?;
    if list.level != level {
        return Err(Error::integrity(format!(
            "{}: level {} where its parent needs level {level} (a damaged or \
             hostile chunk-list tree)",
            what(),
            list.level
        )));
    }
    Ok(list.ids)
}

/// Call `f` with every data blob ID of `content`, in file order, holding one
/// list blob per level in memory. More than `limit` IDs is an integrity
/// error (see [`chunk_limit`]).
pub fn for_each_data_id(
    repo: &Repository,
    content: &FileContent,
    limit: u64,
    f: &mut dyn FnMut(&BlobId) -> Result<()>,
) -> Result<()> {
    let mut seen = 0u64;
    let mut leaf = |id: &BlobId| -> Result<()> {
        seen += 1;
        if seen > limit {
            return Err(Error::integrity(format!(
                "a file's chunk-list tree names more than {limit} data blobs, more than its \
                 size allows (a damaged or hostile tree)"
            )));
        }
        f(id)
    };
    match content {
        FileContent::Inline(ids) => ids.iter().try_for_each(leaf),
        FileContent::Tree { height, top } => {
            let mut visit = |t: BlobType, id: &BlobId| -> Result<bool> {
                if t == BlobType::Data {
                    leaf(id)?;
                }
                Ok(true)
            };
            for id in top {
                descend(repo, id, height - 1, &mut visit)?;
            }
            Ok(())
        }
    }
}

/// Every data blob ID of `content`, in file order: borrowed for the inline
/// form, read from the list blobs for a tree.
pub fn data_ids<'a>(
    repo: &Repository,
    content: &'a FileContent,
    limit: u64,
) -> Result<Cow<'a, [BlobId]>> {
    match content {
        FileContent::Inline(ids) => Ok(Cow::Borrowed(ids)),
        FileContent::Tree { .. } => {
            let mut out = Vec::new();
            for_each_data_id(repo, content, limit, &mut |id| {
                out.push(*id);
                Ok(())
            })?;
            Ok(Cow::Owned(out))
        }
    }
}

/// Visit every blob `content` references: `visit(Tree, id)` for each ID-list
/// blob before its children, which are visited only if it returns true (so a
/// walk over many snapshots reads each shared list blob once);
/// `visit(Data, id)` for each data blob. The inline form visits its data
/// blobs only.
pub fn walk(
    repo: &Repository,
    content: &FileContent,
    visit: &mut dyn FnMut(BlobType, &BlobId) -> Result<bool>,
) -> Result<()> {
    match content {
        FileContent::Inline(ids) => {
            for id in ids {
                visit(BlobType::Data, id)?;
            }
            Ok(())
        }
        FileContent::Tree { height, top } => {
            for id in top {
                descend(repo, id, height - 1, visit)?;
            }
            Ok(())
        }
    }
}

/// Visit the list blob `id` (level `level`) and, if `visit` says so, its
/// children. Recursion depth is at most `MAX_HEIGHT`: levels strictly
/// decrease, and a list blob with another level than its parent needs is an
/// error (so no list can name itself or an ancestor).
fn descend(
    repo: &Repository,
    id: &BlobId,
    level: u8,
    visit: &mut dyn FnMut(BlobType, &BlobId) -> Result<bool>,
) -> Result<()> {
    if visit(BlobType::Tree, id)? {
        descend_children(repo, id, level, visit)?;
    }
    Ok(())
}

fn descend_children(
    repo: &Repository,
    id: &BlobId,
    level: u8,
    visit: &mut dyn FnMut(BlobType, &BlobId) -> Result<bool>,
) -> Result<()> {
    let ids = load_list(repo, id, level)?;
    if level == 0 {
        for child in &ids {
            visit(BlobType::Data, child)?;
        }
    } else {
        for child in &ids {
            descend(repo, child, level - 1, visit)?;
        }
    }
    Ok(())
}

/// True if every blob `content` references is indexed: the data blobs, and
/// for a tree every ID-list blob, each read (through the tree cache) and
/// checked. A backup reuses an unchanged file's entry only then (FORMAT.md
/// §7.12); for a tree that costs reading its list blobs, ~1/128 of the
/// file's size with one-page SQLite blobs, and nothing is stored. Any
/// failure to read counts as not indexed: the file is read again.
pub fn content_indexed(repo: &Repository, node: &Node, content: &FileContent) -> bool {
    let index = repo.index();
    let problem = |t: BlobType, id: &BlobId| (!index.contains(t, id)).then(String::new);
    let mut memo = ScanMemo::new();
    matches!(
        scan(repo, content, chunk_limit(node), &mut memo, &problem),
        Ok(Ok(_))
    )
}

/// What [`scan`] remembers per ID-list blob and the level it was reached
/// at: the number of data blobs below it, or the first problem found there.
/// The level is part of the key: a list blob that is sound at one level is
/// an integrity error where an entry names it at another, and the verdict
/// for one must not stand for the other.
pub type ScanMemo = HashMap<(BlobId, u8), std::result::Result<u64, String>>;

/// Check `content` without reading data blobs: every ID-list blob passes
/// `problem`, reads, authenticates, hashes to its ID and has the level its
/// parent needs; every data blob passes `problem` (which says why a blob is
/// missing or damaged, e.g. not indexed); at most `limit` data blobs. The
/// number of data blobs, or the first problem. Verdicts are memoised per
/// list blob in `memo`, so a tree shared by many snapshots is read once.
/// Errors other than integrity or a missing object are returned as `Err`.
pub fn scan(
    repo: &Repository,
    content: &FileContent,
    limit: u64,
    memo: &mut ScanMemo,
    problem: &dyn Fn(BlobType, &BlobId) -> Option<String>,
) -> Result<std::result::Result<u64, String>> {
    let (top, top_level) = match content {
        FileContent::Inline(ids) => {
            for id in ids {
                if let Some(why) = problem(BlobType::Data, id) {
                    return Ok(Err(why));
                }
            }
            return Ok(Ok(ids.len() as u64));
        }
        FileContent::Tree { height, top } => (top, height - 1),
    };
    let mut total = 0u64;
    for id in top {
        match scan_list(repo, id, top_level, memo, problem)? {
            Ok(n) => total = total.saturating_add(n),
            Err(why) => return Ok(Err(why)),
        }
    }
    if total > limit {
        return Ok(Err(format!(
            "its chunk-list tree names {total} data blobs, more than its size allows"
        )));
    }
    Ok(Ok(total))
}

fn scan_list(
    repo: &Repository,
    id: &BlobId,
    level: u8,
    memo: &mut ScanMemo,
    problem: &dyn Fn(BlobType, &BlobId) -> Option<String>,
) -> Result<std::result::Result<u64, String>> {
    if let Some(v) = memo.get(&(*id, level)) {
        return Ok(v.clone());
    }
    let verdict = if let Some(why) = problem(BlobType::Tree, id) {
        Err(why)
    } else {
        match load_list(repo, id, level) {
            Err(e) if e.kind() == ErrorKind::Integrity || e.is_not_found() => Err(e.to_string()),
            Err(e) => return Err(e),
            Ok(ids) => {
                let mut total = 0u64;
                let mut bad = None;
                for child in &ids {
                    let r = if level == 0 {
                        problem(BlobType::Data, child).map_or(Ok(1), Err)
                    } else {
                        scan_list(repo, child, level - 1, memo, problem)?
                    };
                    match r {
                        Ok(n) => total = total.saturating_add(n),
                        Err(why) => {
                            bad = Some(why);
                            break;
                        }
                    }
                }
                bad.map_or(Ok(total), Err)
            }
        }
    };
    memo.insert((*id, level), verdict.clone());
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::chunklist::list_to_bytes_unchecked;
    use crate::repo::lock::RepoLock;
    use crate::repo::save::{BlobSaver, SaveOptions};

    /// One list blob reached at its own level by one entry and at another
    /// level by a second entry: the memo shared by `check`'s walk of many
    /// snapshots must not let the first verdict stand for the second.
    #[test]
    fn a_list_blob_named_at_the_wrong_level_is_damaged_whatever_was_scanned_first() {
        let mut r = crate::repo::test_repo();
        let (leaf, upper) = {
            let lock = RepoLock::acquire(&r, false).unwrap();
            let saver = BlobSaver::new(&r, lock.gate(), SaveOptions::for_repo(&r));
            let data = saver.save(BlobType::Data, b"some file content").unwrap().id;
            let leaf = saver
                .save(
                    BlobType::Tree,
                    &list_to_bytes_unchecked(0, &[data]).unwrap(),
                )
                .unwrap()
                .id;
            let upper = saver
                .save(
                    BlobType::Tree,
                    &list_to_bytes_unchecked(1, &[leaf]).unwrap(),
                )
                .unwrap()
                .id;
            saver.finish().unwrap();
            (leaf, upper)
        };
        r.load_index().unwrap();
        let sound = FileContent::Tree {
            height: 2,
            top: vec![upper],
        };
        let wrong = FileContent::Tree {
            height: 2,
            top: vec![leaf],
        };
        let none = |_: BlobType, _: &BlobId| None;
        for order in [[&sound, &wrong], [&wrong, &sound]] {
            let mut memo = ScanMemo::new();
            let verdicts: Vec<_> = order
                .iter()
                .map(|c| scan(&r, c, 10, &mut memo, &none).unwrap())
                .collect();
            for (c, v) in order.iter().zip(&verdicts) {
                if std::ptr::eq(*c, &sound) {
                    assert_eq!(v, &Ok(1));
                } else {
                    assert!(v.as_ref().is_err_and(|why| why.contains("level")), "{v:?}");
                }
            }
        }
    }
}
