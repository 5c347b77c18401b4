//! `cairn cat`: print a repository object, decoded, for debugging.

use anyhow::{Result, bail};
use cairn::format::BlobType;
use cairn::format::tree::{FileContent, NodeKind, Tree};
use cairn::id::{BlobId, IndexId};

use super::{GlobalArgs, lossy};

/// Arguments of `cairn cat`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to print: config, snapshot, index, tree, list (an ID-list blob
    /// of a file's chunk-list tree), or blob.
    #[arg(value_parser = ["config", "snapshot", "index", "tree", "list", "blob"])]
    kind: String,
    /// The object's ID (snapshots: a prefix or `latest` too).
    id: Option<String>,
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let need_id = || -> Result<&str> {
        match &a.id {
            Some(id) => Ok(id),
            None => bail!("`cairn cat {}` needs an ID", a.kind),
        }
    };
    let value = match a.kind.as_str() {
        "config" => {
            let repo = g.open()?;
            let c = repo.config();
            serde_json::json!({
                "version": cairn::format::FORMAT_VERSION,
                "id": hex::encode(c.repo_id),
                "chunker": {
                    "algorithm": "FastCDC v2020, normalization level 1, keyed gear table",
                    "min_len": c.chunker.min_len,
                    "avg_len": c.chunker.avg_len,
                    "max_len": c.chunker.max_len,
                },
                "pack_size": c.pack_size,
                "compression_level": c.compression_level,
                "created": c.created,
            })
        }
        "snapshot" => {
            let repo = g.open()?;
            let (id, s) = repo.find_snapshot(need_id()?)?;
            super::snapshot_json(&id, &s)
        }
        "index" => {
            let repo = g.open()?;
            let f = repo.load_index_file(&IndexId::from_hex(need_id()?)?)?;
            serde_json::json!({
                "packs": f.packs.iter().map(|p| serde_json::json!({
                    "id": p.id.to_hex(),
                    "blobs": p.blobs.iter().map(|b| serde_json::json!({
                        "id": b.id.to_hex(), "type": b.blob_type.name(),
                        "offset": b.offset, "length": b.sealed_len, "raw_length": b.raw_len,
                        "compressed": b.compression == cairn::format::Compression::Zstd,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "supersedes": f.supersedes.iter().map(|s| s.to_hex()).collect::<Vec<_>>(),
            })
        }
        "tree" => {
            let repo = g.open_with_index()?;
            let t: Tree = repo.load_tree(&BlobId::from_hex(need_id()?)?)?;
            serde_json::json!({
                "nodes": t.nodes.iter().map(|n| {
                    let mut v = serde_json::json!({
                        "name": lossy(&n.name), "type": n.kind.name(), "mode": n.mode,
                        "uid": n.uid, "gid": n.gid, "user": n.user, "group": n.group,
                        "mtime": format!("{}.{:09}", n.mtime.sec, n.mtime.nsec),
                        "inode": n.inode, "nlink": n.nlink, "size": n.size, "flags": n.flags,
                        "xattrs": n.xattrs.iter().map(|x| lossy(&x.name)).collect::<Vec<_>>(),
                    });
                    match &n.kind {
                        NodeKind::File { content: FileContent::Inline(ids) } => v["content"] = ids.iter().map(|c| c.to_hex()).collect(),
                        NodeKind::File { content: FileContent::Tree { height, top } } => {
                            v["content_height"] = (*height).into();
                            v["content_lists"] = top.iter().map(|c| c.to_hex()).collect();
                        }
                        NodeKind::Dir { subtree } => v["subtree"] = subtree.to_hex().into(),
                        NodeKind::Symlink { target } => v["target"] = lossy(target).into(),
                        _ => {}
                    }
                    v
                }).collect::<Vec<_>>(),
            })
        }
        "list" => {
            let repo = g.open_with_index()?;
            let id = BlobId::from_hex(need_id()?)?;
            let l = cairn::format::chunklist::IdList::from_bytes(
                &repo.read_blob(BlobType::Tree, &id)?,
            )?;
            serde_json::json!({
                "level": l.level,
                "ids": l.ids.iter().map(|c| c.to_hex()).collect::<Vec<_>>(),
            })
        }
        "blob" => {
            let repo = g.open_with_index()?;
            let data = repo.read_blob(BlobType::Data, &BlobId::from_hex(need_id()?)?)?;
            use std::io::Write;
            std::io::stdout().write_all(&data)?;
            return Ok(super::exit::OK);
        }
        _ => bail!("unknown object kind {}", a.kind),
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(super::exit::OK)
}
