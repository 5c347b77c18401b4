//! The capture record: the byte layout of the
//! [`EXT_SQLITE_CAPTURE`](crate::format::tree::EXT_SQLITE_CAPTURE)
//! extension a captured database's tree entry carries (FORMAT.md). Bytes
//! in, bytes out; no I/O.

/// What a capture extension records: the page size, and the on-disk state
/// of the database and its WAL when it was captured (to decide whether the
/// next backup may reuse it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureInfo {
    /// SQLite page size.
    pub page_size: u32,
    /// Size of the database file on disk (the capture may differ).
    pub file_size: u64,
    /// Size of the `-wal` file, 0 if absent.
    pub wal_size: u64,
    /// Modification time of the `-wal` file (seconds, nanoseconds).
    pub wal_mtime: (i64, u32),
}

impl CaptureInfo {
    /// Encoded as the value of [`EXT_SQLITE_CAPTURE`](crate::format::tree::EXT_SQLITE_CAPTURE) (32 bytes, LE).
    pub fn to_bytes(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32);
        v.extend_from_slice(&self.page_size.to_le_bytes());
        v.extend_from_slice(&self.file_size.to_le_bytes());
        v.extend_from_slice(&self.wal_size.to_le_bytes());
        v.extend_from_slice(&self.wal_mtime.0.to_le_bytes());
        v.extend_from_slice(&self.wal_mtime.1.to_le_bytes());
        v
    }
    /// Decode; `None` if malformed.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 32 {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        Some(CaptureInfo {
            page_size: u32_at(0),
            file_size: u64_at(4),
            wal_size: u64_at(12),
            wal_mtime: (u64_at(20) as i64, u32_at(28)),
        })
    }
}
