//! Little-endian primitives shared by every record codec.
//!
//! Owns: a bounds-checked reader that returns errors (never panics) on
//! truncated or oversized input, and the matching writer.

use crate::error::{Error, Result};

/// Appends little-endian fields to a buffer.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer { buf: Vec::new() }
    }
    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// Two bytes, little-endian.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Four bytes, little-endian.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Eight bytes, little-endian.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Eight bytes, little-endian, two's complement.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Raw bytes, no length.
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// Bytes with a u16 length prefix. The caller guarantees `v.len() <= u16::MAX`.
    pub fn bytes16(&mut self, v: &[u8]) {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.buf.extend_from_slice(&v[..usize::from(len)]);
    }
    /// Bytes with a u32 length prefix. The caller guarantees `v.len() <= u32::MAX`.
    pub fn bytes32(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.buf.extend_from_slice(&v[..len as usize]);
    }
    /// Tagged extensions: a `u16` count, then each tag (`u16`) and value
    /// (`bytes32`).
    pub fn extensions(&mut self, ext: &[(u16, Vec<u8>)]) {
        self.u16(ext.len() as u16);
        for (tag, value) in ext {
            self.u16(*tag);
            self.bytes32(value);
        }
    }
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// The finished buffer.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads little-endian fields from a slice; every read is bounds-checked.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    record: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`; `record` names the record kind in errors.
    pub fn new(buf: &'a [u8], record: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            record,
        }
    }

    /// An error for this record.
    pub fn error(&self, problem: impl std::fmt::Display) -> Error {
        Error::malformed(self.record, format!("{problem} (at byte {})", self.pos))
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.error(format!("truncated: wanted {n} more bytes")))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    /// A fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    /// Two bytes, little-endian.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    /// Four bytes, little-endian.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// Eight bytes, little-endian.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// Eight bytes, little-endian, two's complement.
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    /// Bytes with a u16 length prefix.
    pub fn bytes16(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    /// Bytes with a u32 length prefix, at most `max` long.
    pub fn bytes32(&mut self, max: usize) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(self.error(format!("field of {n} bytes exceeds the limit of {max}")));
        }
        self.take(n)
    }
    /// A UTF-8 string with a u16 length prefix.
    pub fn string16(&mut self) -> Result<String> {
        let b = self.bytes16()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.error("string is not UTF-8"))
    }
    /// A count of items that each take at least `min_item_len` bytes: rejects
    /// counts the remaining input cannot hold, so no decoder pre-allocates
    /// memory on a hostile count.
    pub fn count32(&mut self, min_item_len: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item_len.max(1)) > self.remaining() {
            return Err(self.error(format!("count {n} exceeds the remaining input")));
        }
        Ok(n)
    }
    /// Like [`Reader::count32`] with a u16 count.
    pub fn count16(&mut self, min_item_len: usize) -> Result<usize> {
        let n = usize::from(self.u16()?);
        if n.saturating_mul(min_item_len.max(1)) > self.remaining() {
            return Err(self.error(format!("count {n} exceeds the remaining input")));
        }
        Ok(n)
    }
    /// Tagged extensions (see [`Writer::extensions`]): tags strictly
    /// increasing, each value at most `max` bytes.
    pub fn extensions(&mut self, max: usize) -> Result<Vec<(u16, Vec<u8>)>> {
        let n = self.count16(6)?;
        let mut out: Vec<(u16, Vec<u8>)> = Vec::with_capacity(n);
        for _ in 0..n {
            let tag = self.u16()?;
            if out.last().is_some_and(|(prev, _)| *prev >= tag) {
                return Err(self.error("extensions not in strictly increasing tag order"));
            }
            out.push((tag, self.bytes32(max)?.to_vec()));
        }
        Ok(out)
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// Fail unless every byte was consumed.
    pub fn finish(self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(self.error(format!("{} trailing bytes", self.buf.len() - self.pos)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = Writer::new();
        w.u8(1);
        w.u16(2);
        w.u32(3);
        w.u64(4);
        w.i64(-5);
        w.bytes16(b"abc");
        w.bytes32(b"defg");
        let buf = w.finish();
        let mut r = Reader::new(&buf, "test");
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 2);
        assert_eq!(r.u32().unwrap(), 3);
        assert_eq!(r.u64().unwrap(), 4);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.bytes16().unwrap(), b"abc");
        assert_eq!(r.bytes32(10).unwrap(), b"defg");
        r.finish().unwrap();
        for cut in 0..buf.len() {
            let mut r = Reader::new(&buf[..cut], "test");
            let ok = (|| -> Result<()> {
                r.u8()?;
                r.u16()?;
                r.u32()?;
                r.u64()?;
                r.i64()?;
                r.bytes16()?;
                r.bytes32(10)?;
                Ok(())
            })();
            assert!(ok.is_err(), "cut at {cut} must fail");
        }
    }

    #[test]
    fn hostile_counts_are_rejected() {
        let buf = [0xff, 0xff, 0xff, 0xff, 0, 0];
        assert!(Reader::new(&buf, "t").count32(1).is_err());
        assert!(Reader::new(&buf, "t").bytes32(usize::MAX).is_err());
    }
}
