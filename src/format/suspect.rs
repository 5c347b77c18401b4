//! Suspect captures: the byte layout of the tree-node extension
//! [`EXT_SQLITE_SUSPECT`](super::tree::EXT_SQLITE_SUSPECT) and of the
//! snapshot extension [`EXT_SUSPECT_PATHS`](super::snapshot::EXT_SUSPECT_PATHS)
//! (FORMAT.md §5.5, §5.6). Bytes in, bytes out.
//!
//! A capture is *suspect* when a database file looks damaged: it is no
//! longer a database, SQLite's check of it fails, SQLite cannot read it,
//! or most of its pages were rewritten since the last capture. Such a file
//! is still stored; the marks say why, so that the next backup keeps
//! calling it suspect until it is sound again and retention keeps the
//! last good capture.

use super::wire::{Reader, Writer};
use crate::error::Result;

const NODE_RECORD: &str = "suspect capture mark";
const LIST_RECORD: &str = "suspect path list";

/// Longest reason text written, in bytes (longer ones are cut at a
/// character boundary).
pub const MAX_DETAIL_LEN: usize = 1024;
/// Largest encoded path list written: entries past it are left out (the
/// tree entries stay marked).
pub const MAX_LIST_BYTES: usize = 1 << 20;

/// Why a capture is suspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The file was a database in the parent snapshot and is not one now.
    NotADatabase,
    /// `PRAGMA quick_check` reported problems.
    CheckFailed,
    /// More than half of the parent capture's pages differ.
    Rewritten,
    /// It starts like a database, but SQLite cannot read it.
    Unreadable,
    /// A code this version does not know (kept as read).
    Other(u8),
}

impl Reason {
    /// The wire byte.
    pub fn code(self) -> u8 {
        match self {
            Reason::NotADatabase => 1,
            Reason::CheckFailed => 2,
            Reason::Rewritten => 3,
            Reason::Unreadable => 4,
            Reason::Other(c) => c,
        }
    }
    /// Parse the wire byte.
    pub fn from_code(c: u8) -> Reason {
        match c {
            1 => Reason::NotADatabase,
            2 => Reason::CheckFailed,
            3 => Reason::Rewritten,
            4 => Reason::Unreadable,
            c => Reason::Other(c),
        }
    }
    /// Short name, for JSON.
    pub fn name(self) -> &'static str {
        match self {
            Reason::NotADatabase => "not_a_database",
            Reason::CheckFailed => "check_failed",
            Reason::Rewritten => "rewritten",
            Reason::Unreadable => "unreadable",
            Reason::Other(_) => "other",
        }
    }
    /// True for the reasons that say the file is not a sound database
    /// (a later capture is suspect until it is one again).
    pub fn unsound(self) -> bool {
        matches!(
            self,
            Reason::NotADatabase | Reason::CheckFailed | Reason::Unreadable
        )
    }
}

/// Why one capture is suspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspect {
    /// The kind of reason.
    pub reason: Reason,
    /// The reason as a person reads it ("quick_check: …", "9 000 of
    /// 12 000 pages rewritten since the last capture").
    pub detail: String,
}

fn cut(s: &str) -> &str {
    if s.len() <= MAX_DETAIL_LEN {
        return s;
    }
    let mut end = MAX_DETAIL_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Suspect {
    /// Encoded as the value of the node extension: `u8` reason code, then
    /// the detail as `bytes16` UTF-8.
    pub fn to_bytes(&self) -> Vec<u8> {
        let d = cut(&self.detail);
        let mut v = Vec::with_capacity(3 + d.len());
        v.push(self.reason.code());
        v.extend_from_slice(&(d.len() as u16).to_le_bytes());
        v.extend_from_slice(d.as_bytes());
        v
    }
    /// Decode the node extension's value.
    pub fn from_bytes(b: &[u8]) -> Result<Suspect> {
        let mut r = Reader::new(b, NODE_RECORD);
        let reason = Reason::from_code(r.u8()?);
        let detail = r.string16()?;
        r.finish()?;
        Ok(Suspect { reason, detail })
    }
}

/// Encode the snapshot extension: `u32` count, then each entry's path
/// (`bytes16`, absolute, as in the snapshot's tree), reason code (`u8`)
/// and detail (`bytes16` UTF-8), sorted by path. Entries that would take
/// the value past [`MAX_LIST_BYTES`] are left out.
pub fn encode_list(entries: &[(Vec<u8>, Suspect)]) -> Result<Vec<u8>> {
    let mut sorted: Vec<&(Vec<u8>, Suspect)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut body = Writer::with_capacity(LIST_RECORD, 256);
    let mut n = 0u32;
    for (path, s) in sorted {
        let d = cut(&s.detail);
        if path.len() > usize::from(u16::MAX) {
            // Not expressible here; the tree entry keeps its mark.
            continue;
        }
        if body.len() + 4 + 2 + path.len() + 3 + d.len() > MAX_LIST_BYTES {
            break;
        }
        body.bytes16(path);
        body.u8(s.reason.code());
        body.bytes16(d.as_bytes());
        n += 1;
    }
    let body = body.finish()?;
    let mut w = Writer::with_capacity(LIST_RECORD, 4 + body.len());
    w.u32(n);
    w.raw(&body);
    w.finish()
}

/// The suspect captures `snapshot` lists (its
/// [`EXT_SUSPECT_PATHS`](super::snapshot::EXT_SUSPECT_PATHS)); none if it
/// has no list or the list does not decode.
pub fn of_snapshot(snapshot: &super::snapshot::Snapshot) -> Vec<(Vec<u8>, Suspect)> {
    snapshot
        .extensions
        .iter()
        .find(|(t, _)| *t == super::snapshot::EXT_SUSPECT_PATHS)
        .and_then(|(_, v)| decode_list(v).ok())
        .unwrap_or_default()
}

/// Decode the snapshot extension's value.
pub fn decode_list(b: &[u8]) -> Result<Vec<(Vec<u8>, Suspect)>> {
    let mut r = Reader::new(b, LIST_RECORD);
    let n = r.count32(5)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let path = r.bytes16()?.to_vec();
        let reason = Reason::from_code(r.u8()?);
        let detail = r.string16()?;
        out.push((path, Suspect { reason, detail }));
    }
    r.finish()?;
    Ok(out)
}

/// Name of the capture path list in errors.
const PATHS_RECORD: &str = "capture path list";

/// Encode a list of paths (the snapshot extension
/// [`EXT_CAPTURE_PATHS`](super::snapshot::EXT_CAPTURE_PATHS)): `u32`
/// count, then each path (`bytes16`, absolute, as in the snapshot's tree),
/// sorted, without repeats. Paths that would take the value past
/// [`MAX_LIST_BYTES`] are left out.
pub fn encode_paths(paths: &[Vec<u8>]) -> Result<Vec<u8>> {
    let mut sorted: Vec<&Vec<u8>> = paths.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut body = Writer::with_capacity(PATHS_RECORD, 256);
    let mut n = 0u32;
    for path in sorted {
        if path.len() > usize::from(u16::MAX) {
            continue;
        }
        if body.len() + 4 + 2 + path.len() > MAX_LIST_BYTES {
            break;
        }
        body.bytes16(path);
        n += 1;
    }
    let body = body.finish()?;
    let mut w = Writer::with_capacity(PATHS_RECORD, 4 + body.len());
    w.u32(n);
    w.raw(&body);
    w.finish()
}

/// Decode [`encode_paths`]' value.
pub fn decode_paths(b: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut r = Reader::new(b, PATHS_RECORD);
    let n = r.count32(2)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.bytes16()?.to_vec());
    }
    r.finish()?;
    Ok(out)
}

/// The good captures `snapshot` lists (its
/// [`EXT_CAPTURE_PATHS`](super::snapshot::EXT_CAPTURE_PATHS)); none if it
/// has no list (snapshots written before the list existed) or the list
/// does not decode.
pub fn captures_of_snapshot(snapshot: &super::snapshot::Snapshot) -> Vec<Vec<u8>> {
    snapshot
        .extensions
        .iter()
        .find(|(t, _)| *t == super::snapshot::EXT_CAPTURE_PATHS)
        .and_then(|(_, v)| decode_paths(v).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_path_lists_round_trip_and_hostile_bytes_are_errors() {
        let paths = vec![
            b"/srv/b.db".to_vec(),
            b"/srv/a.db".to_vec(),
            b"/srv/a.db".to_vec(),
        ];
        let v = encode_paths(&paths).unwrap();
        assert_eq!(
            decode_paths(&v).unwrap(),
            vec![b"/srv/a.db".to_vec(), b"/srv/b.db".to_vec()]
        );
        assert!(decode_paths(&v[..v.len() - 1]).is_err());
        let mut extra = v.clone();
        extra.push(0);
        assert!(decode_paths(&extra).is_err());
        // A count the bytes cannot hold.
        assert!(decode_paths(&[0xff, 0xff, 0xff, 0x7f]).is_err());
        assert!(
            decode_paths(&encode_paths(&[]).unwrap())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn marks_and_lists_round_trip_and_hostile_bytes_are_errors() {
        let s = Suspect {
            reason: Reason::CheckFailed,
            detail: "quick_check: *** in database main ***".into(),
        };
        assert_eq!(Suspect::from_bytes(&s.to_bytes()).unwrap(), s);
        let long = Suspect {
            reason: Reason::Other(9),
            detail: "é".repeat(MAX_DETAIL_LEN),
        };
        let back = Suspect::from_bytes(&long.to_bytes()).unwrap();
        assert_eq!(back.reason, Reason::Other(9));
        assert!(back.detail.len() <= MAX_DETAIL_LEN && back.detail.starts_with('é'));

        let list = vec![
            (b"/srv/b.db".to_vec(), s.clone()),
            (
                b"/srv/a.db".to_vec(),
                Suspect {
                    reason: Reason::NotADatabase,
                    detail: "no longer a SQLite database".into(),
                },
            ),
        ];
        let enc = encode_list(&list).unwrap();
        let dec = decode_list(&enc).unwrap();
        assert_eq!(dec.len(), 2);
        assert_eq!(dec[0].0, b"/srv/a.db", "sorted by path");
        assert_eq!(dec[1].1, s);

        assert!(Suspect::from_bytes(&[]).is_err());
        assert!(Suspect::from_bytes(&[2, 5, 0, b'a']).is_err());
        assert!(decode_list(&[255, 255, 255, 255]).is_err());
        let mut trailing = enc.clone();
        trailing.push(0);
        assert!(decode_list(&trailing).is_err());
    }
}
