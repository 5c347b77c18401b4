//! Lock records: who holds a lock on the repository, since when.
//!
//! Version 2 adds what it takes to judge "is the holder still running?"
//! safely: the holder's boot ID and PID namespace next to host and PID.
//! Version 1 records (without them) are still read; such a lock can only
//! ever go stale by age, never by PID.

use super::wire::{Reader, Writer};
use crate::error::Result;

const RECORD: &str = "lock";
/// Version byte of the lock records Cairn writes.
pub const LOCK_VERSION: u8 = 2;
/// Length of a boot ID (a UUID, as `/proc/sys/kernel/random/boot_id`).
pub const BOOT_ID_LEN: usize = 16;

/// A decoded lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// True for an exclusive lock.
    pub exclusive: bool,
    /// When the lock was taken or last refreshed, ns since the epoch, by
    /// the holder's clock: for people to read, never to judge staleness.
    pub time_ns: i64,
    /// Host of the holder.
    pub hostname: String,
    /// User of the holder.
    pub username: String,
    /// Process ID of the holder, in its PID namespace.
    pub pid: u32,
    /// Boot ID of the holder's kernel; all zeros if unknown (and in
    /// version 1 records).
    pub boot_id: [u8; BOOT_ID_LEN],
    /// Inode number of the holder's PID namespace (`/proc/self/ns/pid`);
    /// 0 if unknown (and in version 1 records).
    pub pid_ns: u64,
}

impl Lock {
    /// Encode (always the current version), checked: the bytes are decoded
    /// again before they are returned.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let buf = self.to_bytes_unchecked()?;
        Lock::from_bytes(&buf).map_err(|e| super::encode_error(RECORD, e))?;
        Ok(buf)
    }

    /// The encoding without the decode check (for tests of the decoder).
    pub fn to_bytes_unchecked(&self) -> Result<Vec<u8>> {
        let mut w = Writer::with_capacity(RECORD, 64 + self.hostname.len() + self.username.len());
        w.u8(LOCK_VERSION);
        w.u8(u8::from(self.exclusive));
        w.i64(self.time_ns);
        w.bytes16(self.hostname.as_bytes());
        w.bytes16(self.username.as_bytes());
        w.u32(self.pid);
        w.raw(&self.boot_id);
        w.u64(self.pid_ns);
        w.finish()
    }

    /// Decode version 1 or 2.
    pub fn from_bytes(buf: &[u8]) -> Result<Lock> {
        let mut r = Reader::new(buf, RECORD);
        let v = r.u8()?;
        if v != 1 && v != LOCK_VERSION {
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
        let (boot_id, pid_ns) = if v >= 2 {
            (r.array::<BOOT_ID_LEN>()?, r.u64()?)
        } else {
            ([0; BOOT_ID_LEN], 0)
        };
        r.finish()?;
        Ok(Lock {
            exclusive,
            time_ns,
            hostname,
            username,
            pid,
            boot_id,
            pid_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock() -> Lock {
        Lock {
            exclusive: true,
            time_ns: 9,
            hostname: "h".into(),
            username: "u".into(),
            pid: 42,
            boot_id: [7; BOOT_ID_LEN],
            pid_ns: 4_026_531_836,
        }
    }

    #[test]
    fn round_trip_and_truncation() {
        let l = lock();
        let b = l.to_bytes().unwrap();
        assert_eq!(b.len(), 1 + 1 + 8 + 3 + 3 + 4 + 16 + 8);
        assert_eq!(Lock::from_bytes(&b).unwrap(), l);
        for cut in 0..b.len() {
            assert!(Lock::from_bytes(&b[..cut]).is_err());
        }
        let mut long = b.clone();
        long.push(0);
        assert!(Lock::from_bytes(&long).is_err());
        let mut v3 = b;
        v3[0] = 3;
        assert!(Lock::from_bytes(&v3).is_err());
    }

    /// Version 1 records (Cairn before the boot ID and PID namespace were
    /// recorded) still decode, with both unknown.
    #[test]
    fn version_1_records_decode_with_unknown_boot_and_namespace() {
        let v1: Vec<u8> = [
            &[1u8, 1][..],
            &9i64.to_le_bytes(),
            &[1, 0, b'h', 1, 0, b'u'],
            &42u32.to_le_bytes(),
        ]
        .concat();
        let l = Lock::from_bytes(&v1).unwrap();
        assert_eq!(
            l,
            Lock {
                boot_id: [0; BOOT_ID_LEN],
                pid_ns: 0,
                ..lock()
            }
        );
        let mut long = v1;
        long.extend_from_slice(&[7; 24]);
        assert!(Lock::from_bytes(&long).is_err(), "v1 with v2 fields");
    }
}
