//! Snapshot records: the commit point of a backup.

use super::wire::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::BlobId;

const RECORD: &str = "snapshot";
/// Version byte at the start of every snapshot record.
pub const SNAPSHOT_VERSION: u8 = 1;
/// Extension tag: the snapshot is a copy; the value is the source
/// repository's ID (32 bytes) followed by the source snapshot's ID (32).
pub const EXT_COPIED_FROM: u16 = 1;
/// Extension tag: the snapshot is a repaired copy (`cairn repair
/// snapshots`); the value is the damaged original's snapshot ID (32 bytes).
pub const EXT_REPAIRED_FROM: u16 = 2;
/// Extension tag: the snapshot record replaces another (`cairn rewrite`,
/// `cairn tag`); the value is the ID of the first original (32 bytes): a
/// record rewritten again keeps the value it had.
pub const EXT_REWRITTEN_FROM: u16 = 3;
/// Extension tag: the snapshot holds suspect database captures; the value
/// lists their paths and reasons ([`super::suspect::encode_list`]).
pub const EXT_SUSPECT_PATHS: u16 = 4;
/// Extension tag: the paths of the files the snapshot holds as good SQLite
/// captures ([`super::suspect::encode_paths`]), so that a later backup
/// can judge a path against its newest good capture even when the
/// snapshots between did not capture it.
pub const EXT_CAPTURE_PATHS: u16 = 5;
/// The tag a backup gives a snapshot that holds suspect captures.
pub const SUSPECT_TAG: &str = "suspect";

/// Most paths or tags one snapshot may list (the format's `u16` count).
pub const MAX_LIST_LEN: usize = 65535;

/// Longest tag Cairn writes, in bytes of UTF-8. The format could carry
/// 65 535; a tag is a label, and a label this long is a mistake.
pub const MAX_TAG_LEN: usize = 256;
/// Longest host name Cairn writes, in bytes (Linux allows 64).
pub const MAX_HOSTNAME_LEN: usize = 256;
/// Longest backed-up path Cairn writes, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

fn check_label(what: &str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(format!("an empty {what} is not allowed")));
    }
    if value.len() > max {
        let shown: String = value.chars().take(24).collect();
        return Err(Error::invalid(format!(
            "the {what} {shown:?}… is {} bytes long; at most {max} are allowed",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "the {what} {value:?} contains a control character"
        )));
    }
    Ok(())
}

/// Check a tag before anything is written: 1 to [`MAX_TAG_LEN`] bytes, no
/// control characters.
pub fn check_tag(tag: &str) -> Result<()> {
    check_label("tag", tag, MAX_TAG_LEN)
}

/// Check a host name before anything is written: at most
/// [`MAX_HOSTNAME_LEN`] bytes, no control characters.
pub fn check_hostname(host: &str) -> Result<()> {
    // An empty host name is odd but not harmful (a container without one).
    if host.is_empty() {
        return Ok(());
    }
    check_label("host name", host, MAX_HOSTNAME_LEN)
}

/// Check a snapshot's lists before anything is written: at most
/// [`MAX_LIST_LEN`] tags and paths, each path at most [`MAX_PATH_LEN`]
/// bytes, each tag and the host name as [`check_tag`] and
/// [`check_hostname`] say.
pub fn check_labels(host: &str, tags: &[String], paths: &[Vec<u8>]) -> Result<()> {
    check_hostname(host)?;
    if tags.len() > MAX_LIST_LEN {
        return Err(Error::invalid(format!(
            "{} tags; a snapshot carries at most {MAX_LIST_LEN}",
            tags.len()
        )));
    }
    for t in tags {
        check_tag(t)?;
    }
    if paths.len() > MAX_LIST_LEN {
        return Err(Error::invalid(format!(
            "{} paths; a snapshot lists at most {MAX_LIST_LEN}",
            paths.len()
        )));
    }
    for p in paths {
        if p.len() > MAX_PATH_LEN {
            return Err(Error::invalid(format!(
                "the path {:?}… is {} bytes long; at most {MAX_PATH_LEN} are allowed",
                String::from_utf8_lossy(&p[..64.min(p.len())]),
                p.len()
            )));
        }
    }
    Ok(())
}

/// What a backup did, stored with its snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Regular files in the snapshot.
    pub files: u64,
    /// Directories in the snapshot.
    pub dirs: u64,
    /// Other entries (symlinks, devices, fifos).
    pub others: u64,
    /// Files whose content was read (not reused from the parent).
    pub files_read: u64,
    /// Bytes of file content read from the sources.
    pub bytes_read: u64,
    /// Logical size of all files in the snapshot.
    pub total_bytes: u64,
    /// Data blobs new to the repository.
    pub data_blobs_added: u64,
    /// Tree blobs new to the repository.
    pub tree_blobs_added: u64,
    /// Plaintext bytes of the new blobs.
    pub bytes_added: u64,
    /// Bytes written to packs for the new blobs (compressed, sealed).
    pub bytes_stored: u64,
    /// Entries that could not be read and are missing from the snapshot.
    pub errors: u64,
    /// Wall time of the backup, nanoseconds.
    pub duration_ns: u64,
}

/// A snapshot: a root tree plus who, when, what and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Creation time, nanoseconds since the Unix epoch (UTC).
    pub time_ns: i64,
    /// The local UTC offset at creation, seconds (for display).
    pub utc_offset_s: i32,
    /// Root tree blob.
    pub tree: BlobId,
    /// The snapshot this one was based on, if any.
    pub parent: Option<[u8; 32]>,
    /// Host name.
    pub hostname: String,
    /// User name of the process that made it.
    pub username: String,
    /// The backed-up paths, absolute, as bytes.
    pub paths: Vec<Vec<u8>>,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Version of the program that wrote it.
    pub program_version: String,
    /// Statistics of the backup.
    pub summary: Summary,
    /// Tagged extensions (unknown tags are kept).
    pub extensions: Vec<(u16, Vec<u8>)>,
}

impl Snapshot {
    /// Encode, checked: the bytes are decoded again before they are
    /// returned, so a snapshot its decoder would reject (an oversized tag, a
    /// field cut mid-character) is an error here, before anything is stored.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let buf = self.to_bytes_unchecked()?;
        Snapshot::from_bytes(&buf).map_err(|e| super::encode_error(RECORD, e))?;
        Ok(buf)
    }

    /// The encoding without the decode check (for tests of the decoder).
    pub fn to_bytes_unchecked(&self) -> Result<Vec<u8>> {
        let mut w = Writer::with_capacity(RECORD, 512);
        w.u8(SNAPSHOT_VERSION);
        w.i64(self.time_ns);
        w.u32(self.utc_offset_s as u32);
        w.raw(self.tree.as_bytes());
        match &self.parent {
            Some(p) => {
                w.u8(1);
                w.raw(p);
            }
            None => w.u8(0),
        }
        w.bytes16(self.hostname.as_bytes());
        w.bytes16(self.username.as_bytes());
        w.len16(self.paths.len(), "the number of paths");
        for p in &self.paths {
            w.bytes16(p);
        }
        w.len16(self.tags.len(), "the number of tags");
        for t in &self.tags {
            w.bytes16(t.as_bytes());
        }
        w.bytes16(self.program_version.as_bytes());
        let s = &self.summary;
        for v in [
            s.files,
            s.dirs,
            s.others,
            s.files_read,
            s.bytes_read,
            s.total_bytes,
            s.data_blobs_added,
            s.tree_blobs_added,
            s.bytes_added,
            s.bytes_stored,
            s.errors,
            s.duration_ns,
        ] {
            w.u64(v);
        }
        w.extensions(&self.extensions);
        w.finish()
    }

    /// Decode.
    pub fn from_bytes(buf: &[u8]) -> Result<Snapshot> {
        let mut r = Reader::new(buf, RECORD);
        let version = r.u8()?;
        if version != SNAPSHOT_VERSION {
            return Err(r.error(format!("unknown snapshot version {version}")));
        }
        let time_ns = r.i64()?;
        let utc_offset_s = r.u32()? as i32;
        if !(-86_400..=86_400).contains(&utc_offset_s) {
            return Err(r.error("UTC offset out of range"));
        }
        let tree = BlobId(r.array()?);
        let parent = match r.u8()? {
            0 => None,
            1 => Some(r.array()?),
            b => return Err(r.error(format!("bad parent flag {b}"))),
        };
        let hostname = r.string16()?;
        let username = r.string16()?;
        let np = r.count16(2)?;
        let mut paths = Vec::with_capacity(np);
        for _ in 0..np {
            paths.push(r.bytes16()?.to_vec());
        }
        let nt = r.count16(2)?;
        let mut tags = Vec::with_capacity(nt);
        for _ in 0..nt {
            tags.push(r.string16()?);
        }
        let program_version = r.string16()?;
        let mut v = [0u64; 12];
        for x in v.iter_mut() {
            *x = r.u64()?;
        }
        let summary = Summary {
            files: v[0],
            dirs: v[1],
            others: v[2],
            files_read: v[3],
            bytes_read: v[4],
            total_bytes: v[5],
            data_blobs_added: v[6],
            tree_blobs_added: v[7],
            bytes_added: v[8],
            bytes_stored: v[9],
            errors: v[10],
            duration_ns: v[11],
        };
        let extensions = r.extensions(1 << 20)?;
        r.finish()?;
        Ok(Snapshot {
            time_ns,
            utc_offset_s,
            tree,
            parent,
            hostname,
            username,
            paths,
            tags,
            program_version,
            summary,
            extensions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Snapshot {
        Snapshot {
            time_ns: 1_790_000_000_123_456_789,
            utc_offset_s: 3600,
            tree: BlobId([9; 32]),
            parent: Some([8; 32]),
            hostname: "vault".into(),
            username: "root".into(),
            paths: vec![b"/opt/vaultwarden/data".to_vec()],
            tags: vec!["nightly".into()],
            program_version: "cairn 0.1.0".into(),
            summary: Summary {
                files: 3,
                bytes_read: 100,
                ..Default::default()
            },
            extensions: vec![(7, b"x".to_vec())],
        }
    }

    #[test]
    fn round_trip_and_truncation() {
        let s = sample();
        let b = s.to_bytes().unwrap();
        assert_eq!(Snapshot::from_bytes(&b).unwrap(), s);
        for cut in 0..b.len() {
            assert!(Snapshot::from_bytes(&b[..cut]).is_err());
        }
    }
}
