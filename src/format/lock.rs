//! Lock records: who holds a lock on the repository, since when.

use super::wire::{Reader, Writer};
use crate::error::Result;

const RECORD: &str = "lock";
/// Version byte of lock records.
pub const LOCK_VERSION: u8 = 1;

/// A decoded lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// True for an exclusive lock.
    pub exclusive: bool,
    /// When the lock was taken or last refreshed, ns since the epoch.
    pub time_ns: i64,
    /// Host of the holder.
    pub hostname: String,
    /// User of the holder.
    pub username: String,
    /// Process ID of the holder.
    pub pid: u32,
}

impl Lock {
    /// Encode, checked: the bytes are decoded again before they are
    /// returned.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let buf = self.to_bytes_unchecked()?;
        Lock::from_bytes(&buf).map_err(|e| super::encode_error(RECORD, e))?;
        Ok(buf)
    }

    /// The encoding without the decode check (for tests of the decoder).
    pub fn to_bytes_unchecked(&self) -> Result<Vec<u8>> {
        let mut w = Writer::with_capacity(RECORD, 64);
        w.u8(LOCK_VERSION);
        w.u8(u8::from(self.exclusive));
        w.i64(self.time_ns);
        w.bytes16(self.hostname.as_bytes());
        w.bytes16(self.username.as_bytes());
        w.u32(self.pid);
        w.finish()
    }

    /// Decode.
    pub fn from_bytes(buf: &[u8]) -> Result<Lock> {
        let mut r = Reader::new(buf, RECORD);
        let v = r.u8()?;
        if v != LOCK_VERSION {
            return Err(r.error(format!("unknown lock version {v}")));
        }
        let exclusive = match r.u8()? {
            0 => false,
            1 => true,
            b => return Err(r.error(format!("bad exclusive flag {b}"))),
        };
        let time_ns = r.i64()?;
        let hostname = r.string16()?;
        let username = r.string16()?;
        let pid = r.u32()?;
        r.finish()?;
        Ok(Lock {
            exclusive,
            time_ns,
            hostname,
            username,
            pid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let l = Lock {
            exclusive: true,
            time_ns: 9,
            hostname: "h".into(),
            username: "u".into(),
            pid: 42,
        };
        let b = l.to_bytes().unwrap();
        assert_eq!(Lock::from_bytes(&b).unwrap(), l);
        for cut in 0..b.len() {
            assert!(Lock::from_bytes(&b[..cut]).is_err());
        }
    }
}
