//! Little-endian primitives shared by every record codec.
//!
//! Owns: a bounds-checked reader that returns errors (never panics) on
//! truncated or oversized input, and the matching writer.

use crate::error::{Error, Result};

/// Appends little-endian fields to a buffer.
///
/// A field that does not fit its length prefix (a `bytes16` of more than
/// 65 535 bytes, a count above its integer's range) is never truncated: the
/// writer remembers the first such field and [`Writer::finish`] returns an
/// error naming it, so no encoder can write a record its decoder rejects.
pub struct Writer {
    buf: Vec<u8>,
    record: &'static str,
    error: Option<String>,
}

impl Writer {
    /// An empty writer for a record of kind `record` (named in errors), with
    /// room for `n` bytes.
    pub fn with_capacity(record: &'static str, n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
            record,
            error: None,
        }
    }
    fn fail(&mut self, problem: String) {
        if self.error.is_none() {
            self.error = Some(problem);
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
    /// A count or length that must fit a `u16`; `what` names it in the error.
    pub fn len16(&mut self, n: usize, what: &str) {
        match u16::try_from(n) {
            Ok(v) => self.u16(v),
            Err(_) => {
                self.fail(format!("{what} is {n}, more than the limit of 65535"));
                self.u16(u16::MAX);
            }
        }
    }
    /// A count or length that must fit a `u32`; `what` names it in the error.
    pub fn len32(&mut self, n: usize, what: &str) {
        match u32::try_from(n) {
            Ok(v) => self.u32(v),
            Err(_) => {
                self.fail(format!(
                    "{what} is {n}, more than the limit of {}",
                    u32::MAX
                ));
                self.u32(u32::MAX);
            }
        }
    }
    /// Bytes with a u16 length prefix; more than 65 535 bytes is an error
    /// (at [`Writer::finish`]), never a truncation.
    pub fn bytes16(&mut self, v: &[u8]) {
        self.len16(v.len(), "the length of a field");
        self.buf.extend_from_slice(v);
    }
    /// Bytes with a u32 length prefix; see [`Writer::bytes16`].
    pub fn bytes32(&mut self, v: &[u8]) {
        self.len32(v.len(), "the length of a field");
        self.buf.extend_from_slice(v);
    }
    /// Tagged extensions: a `u16` count, then each tag (`u16`) and value
    /// (`bytes32`).
    pub fn extensions(&mut self, ext: &[(u16, Vec<u8>)]) {
        self.len16(ext.len(), "the number of extensions");
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
    /// The finished buffer, or an error of kind *invalid input* naming the
    /// first field that did not fit.
    pub fn finish(self) -> Result<Vec<u8>> {
        match self.error {
            None => Ok(self.buf),
            Some(problem) => Err(Error::invalid(format!(
                "cannot encode {}: {problem}",
                self.record
            ))),
        }
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
        let mut w = Writer::with_capacity("test", 0);
        w.u8(1);
        w.u16(2);
        w.u32(3);
        w.u64(4);
        w.i64(-5);
        w.bytes16(b"abc");
        w.bytes32(b"defg");
        let buf = w.finish().unwrap();
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

    /// Regression: a field longer than its length prefix allows was cut at
    /// 65 535 bytes (mid-character for a long non-ASCII tag) and written;
    /// the decoder then rejected the whole record.
    #[test]
    fn an_oversized_field_is_an_error_not_a_truncation() {
        let long = "\u{e9}".repeat(40_000);
        let mut w = Writer::with_capacity("snapshot", 0);
        w.bytes16(long.as_bytes());
        let e = w.finish().unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("cannot encode snapshot"), "{e}");
        assert!(e.to_string().contains("80000"), "{e}");
        let mut w = Writer::with_capacity("t", 0);
        w.bytes16(&vec![b'x'; 65_535]);
        assert_eq!(w.finish().unwrap().len(), 65_537);
        let mut w = Writer::with_capacity("t", 0);
        w.len16(70_000, "the number of tags");
        assert!(
            w.finish()
                .unwrap_err()
                .to_string()
                .contains("number of tags")
        );
    }

    #[test]
    fn hostile_counts_are_rejected() {
        let buf = [0xff, 0xff, 0xff, 0xff, 0, 0];
        assert!(Reader::new(&buf, "t").count32(1).is_err());
        assert!(Reader::new(&buf, "t").bytes32(usize::MAX).is_err());
    }
}
