//! `cairn ls`: list the entries of a snapshot.

use std::io::Write;

use anyhow::Result;
use cairn::format::tree::{Node, NodeKind};
use cairn::ops::walk::{self, Found};

use super::{GlobalArgs, format_time, lossy};

/// Arguments of `cairn ls`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot ID (or a unique prefix, or `latest`).
    snapshot: String,
    /// Only list below this path of the snapshot.
    path: Option<String>,
    /// Long listing: type, mode, owner, size, mtime.
    #[arg(short, long)]
    long: bool,
    #[command(flatten)]
    filter: super::FilterArgs,
    #[command(flatten)]
    pub(super) job: super::JobArgs,
}

/// `ls -l`'s mode column, as `ls` prints it: type, then rwx for user,
/// group and others, with setuid and setgid in the user's and group's
/// execute place (`s`, or `S` without execute) and sticky in the others'
/// (`t`, or `T`).
pub(super) fn mode_string(n: &Node) -> String {
    let t = match n.kind {
        NodeKind::File { .. } => '-',
        NodeKind::Dir { .. } => 'd',
        NodeKind::Symlink { .. } => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice { .. } => 'c',
        NodeKind::BlockDevice { .. } => 'b',
        NodeKind::Socket => 's',
    };
    let mut s = String::from(t);
    // (shift, the special bit shown in this triple's execute place, its letter)
    for (shift, special, letter) in [(6u32, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (n.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, n.mode & special != 0) {
            (true, false) => 'x',
            (false, false) => '-',
            (true, true) => letter,
            (false, true) => letter.to_ascii_uppercase(),
        });
    }
    s
}

/// Owner names for `ls -l`: the name the snapshot recorded, else this
/// system's user and group databases' name for the ID, else the ID.
#[derive(Default)]
struct Owners {
    users: std::collections::HashMap<u32, String>,
    groups: std::collections::HashMap<u32, String>,
}

impl Owners {
    fn user(&mut self, n: &Node) -> String {
        if !n.user.is_empty() {
            return n.user.clone();
        }
        self.users
            .entry(n.uid)
            .or_insert_with(|| {
                uzers::get_user_by_uid(n.uid).map_or_else(
                    || n.uid.to_string(),
                    |u| u.name().to_string_lossy().into_owned(),
                )
            })
            .clone()
    }
    fn group(&mut self, n: &Node) -> String {
        if !n.group.is_empty() {
            return n.group.clone();
        }
        self.groups
            .entry(n.gid)
            .or_insert_with(|| {
                uzers::get_group_by_gid(n.gid).map_or_else(
                    || n.gid.to_string(),
                    |g| g.name().to_string_lossy().into_owned(),
                )
            })
            .clone()
    }
}

pub fn run(g: &GlobalArgs, a: &Args) -> Result<i32> {
    let repo = g.open_with_index()?;
    let (id, snap) = super::select_snapshot(
        g,
        &repo,
        &a.snapshot,
        &a.filter.filter()?,
        a.path.as_deref(),
    )?;
    let start = a.path.as_deref().unwrap_or("/");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if g.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"message_type": "snapshot", "id": id.to_hex(), "tree": snap.tree.to_hex()})
        )?;
    }
    let mut owners = Owners::default();
    let mut emit = |path: &[u8], n: &Node| -> cairn::Result<()> {
        let line = if g.json {
            let mut v = serde_json::json!({
                "message_type": "node",
                "path": lossy(path),
                "name": lossy(&n.name),
                "type": n.kind.name(),
                "mode": n.mode,
                "uid": n.uid,
                "gid": n.gid,
                "user": n.user,
                "group": n.group,
                "size": n.size,
                "mtime": format!("{}.{:09}", n.mtime.sec, n.mtime.nsec),
            });
            if std::str::from_utf8(path).is_err() {
                v["path_hex"] = serde_json::Value::String(hex::encode(path));
            }
            if let NodeKind::Symlink { target } = &n.kind {
                v["link_target"] = serde_json::Value::String(lossy(target));
            }
            v.to_string()
        } else if a.long {
            let mut l = format!(
                "{} {:>8} {:>8} {:>12} {} {}",
                mode_string(n),
                owners.user(n),
                owners.group(n),
                n.size,
                format_time(n.mtime.sec.saturating_mul(1_000_000_000), 0),
                lossy(path)
            );
            if let NodeKind::Symlink { target } = &n.kind {
                l.push_str(" -> ");
                l.push_str(&lossy(target));
            }
            l
        } else {
            lossy(path)
        };
        writeln!(out, "{line}").map_err(|e| cairn::Error::io("cannot write the listing", e))
    };
    match walk::find(&repo, &snap.tree, start.as_bytes())? {
        Found::Dir(tree, _) => walk::walk(
            &repo,
            &tree,
            start.trim_end_matches('/').as_bytes(),
            &mut emit,
        )?,
        Found::Entry(n) => emit(start.as_bytes(), &n)?,
    }
    out.flush()?;
    Ok(super::exit::OK)
}
