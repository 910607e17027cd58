//! Jute's binary encoding as ZooKeeper writes it to snapshot files: every
//! integer big-endian (`int` 4 bytes, `long` 8), a string or buffer as an
//! `int` length (-1 for null) followed by that many bytes, a vector as an
//! `int` count followed by its elements, a record as its fields in order.
//!
//! The reader keeps the offset in the (decompressed) stream and the Adler-32
//! of every byte consumed so far, which is what a snapshot's checksum covers.
//! Buffers (node data) are skipped through a small scratch buffer, never held.

use std::io::{ErrorKind, Read};

/// Longest string (a path, an ACL scheme or id) accepted. The server itself
/// refuses strings longer than about twice its `jute.maxbuffer` (2 MiB by
/// default); anything near this bound is corruption, and it keeps a corrupted
/// length from allocating gigabytes.
pub const MAX_STRING_LEN: usize = 16 << 20;

const SCRATCH: usize = 64 * 1024;

/// Why a read failed, with the stream offset it failed at.
#[derive(Debug)]
pub enum JuteError {
    /// The stream ended at `offset` in the middle of `what`.
    Truncated { offset: u64, what: String },
    /// The bytes at `offset` cannot be what they should be.
    Invalid { offset: u64, what: String, reason: String },
    /// The underlying stream failed (a decompression error, a disk error).
    Io { offset: u64, what: String, error: std::io::Error },
}

impl JuteError {
    pub fn invalid(offset: u64, what: &str, reason: impl Into<String>) -> JuteError {
        JuteError::Invalid { offset, what: what.to_string(), reason: reason.into() }
    }
}

impl std::fmt::Display for JuteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JuteError::Truncated { offset, what } => {
                write!(f, "truncated at offset {offset} while reading {what}")
            }
            JuteError::Invalid { offset, what, reason } => write!(f, "invalid {what} at offset {offset}: {reason}"),
            JuteError::Io { offset, what, error } => {
                write!(f, "read error at offset {offset} while reading {what}: {error}")
            }
        }
    }
}

pub type JuteResult<T> = std::result::Result<T, JuteError>;

/// A Jute decoder over a byte stream.
pub struct JuteReader<R> {
    inner: R,
    offset: u64,
    adler: adler2::Adler32,
    scratch: Vec<u8>,
}

impl<R: Read> JuteReader<R> {
    pub fn new(inner: R) -> JuteReader<R> {
        JuteReader { inner, offset: 0, adler: adler2::Adler32::new(), scratch: Vec::new() }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Adler-32 of every byte consumed so far (as `java.util.zip.Adler32`
    /// computes it; Java returns it as a non-negative `long`).
    pub fn checksum(&self) -> u32 {
        self.adler.checksum()
    }

    /// Fills `buf` or fails naming `what`. With `eof_ok`, a clean end of
    /// stream before the first byte returns `false` instead of an error.
    fn fill(&mut self, buf: &mut [u8], what: &str, eof_ok: bool) -> JuteResult<bool> {
        let start = self.offset;
        let mut got = 0;
        // Each pass reads at least one byte or ends; bounded by buf.len().
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => {
                    if eof_ok && got == 0 {
                        return Ok(false);
                    }
                    return Err(JuteError::Truncated { offset: start + got as u64, what: what.to_string() });
                }
                Ok(n) => {
                    self.adler.write_slice(&buf[got..got + n]);
                    got += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(e, what)),
            }
        }
        Ok(true)
    }

    fn array<const N: usize>(&mut self, what: &str) -> JuteResult<[u8; N]> {
        let mut b = [0u8; N];
        self.fill(&mut b, what, false)?;
        Ok(b)
    }

    pub fn read_int(&mut self, what: &str) -> JuteResult<i32> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    pub fn read_long(&mut self, what: &str) -> JuteResult<i64> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    /// A `long`, or `None` at a clean end of stream (nothing of it read).
    pub fn read_long_or_eof(&mut self, what: &str) -> JuteResult<Option<i64>> {
        let mut b = [0u8; 8];
        if self.fill(&mut b, what, true)? { Ok(Some(i64::from_be_bytes(b))) } else { Ok(None) }
    }

    /// A length prefix: -1 (null) is `None`, other negatives are invalid.
    fn read_len(&mut self, what: &str) -> JuteResult<Option<usize>> {
        let at = self.offset;
        let len = self.read_int(&format!("{what} length"))?;
        match len {
            -1 => Ok(None),
            n if n < 0 => Err(JuteError::invalid(at, &format!("{what} length"), format!("negative length {n}"))),
            n => Ok(Some(n as usize)),
        }
    }

    /// A string (Java writes UTF-8; invalid sequences are replaced, as
    /// Java's decoder does). Null reads as `None`.
    pub fn read_string(&mut self, what: &str) -> JuteResult<Option<String>> {
        let at = self.offset;
        let Some(len) = self.read_len(what)? else {
            return Ok(None);
        };
        if len > MAX_STRING_LEN {
            return Err(JuteError::invalid(
                at,
                &format!("{what} length"),
                format!("{len} bytes is unreasonable (more than {MAX_STRING_LEN})"),
            ));
        }
        // Grown as bytes arrive: a truncated stream costs no more than it has.
        let mut out = Vec::with_capacity(len.min(4096));
        let mut left = len;
        let mut chunk = [0u8; 4096];
        while left > 0 {
            let n = left.min(chunk.len());
            self.fill(&mut chunk[..n], what, false)?;
            out.extend_from_slice(&chunk[..n]);
            left -= n;
        }
        Ok(Some(match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }))
    }

    /// Skips a buffer, returning its length (null counts as 0).
    pub fn skip_buffer(&mut self, what: &str) -> JuteResult<usize> {
        let Some(len) = self.read_len(what)? else {
            return Ok(0);
        };
        if self.scratch.is_empty() {
            self.scratch = vec![0u8; SCRATCH];
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut left = len;
        let mut res = Ok(len);
        // Each pass consumes min(left, SCRATCH) > 0 bytes.
        while left > 0 {
            let n = left.min(scratch.len());
            if let Err(e) = self.fill(&mut scratch[..n], what, false) {
                res = Err(e);
                break;
            }
            left -= n;
        }
        self.scratch = scratch;
        res
    }

    /// A vector count: -1 (null) is `None`, other negatives are invalid.
    pub fn read_count(&mut self, what: &str) -> JuteResult<Option<u32>> {
        Ok(self.read_len(what)?.map(|n| n as u32))
    }

    /// A failed read at the current offset: an early end is a truncation.
    fn read_error(&self, e: std::io::Error, what: &str) -> JuteError {
        if e.kind() == ErrorKind::UnexpectedEof {
            JuteError::Truncated { offset: self.offset, what: format!("{what} ({e})") }
        } else {
            JuteError::Io { offset: self.offset, what: what.to_string(), error: e }
        }
    }

    /// Reads and discards the rest of the stream (so a decompressor checks
    /// its own trailer); returns how many bytes there were.
    pub fn drain(&mut self, what: &str) -> JuteResult<u64> {
        let mut scratch = vec![0u8; SCRATCH];
        let mut total = 0u64;
        // Bounded by the stream: every pass consumes bytes or returns.
        loop {
            match self.inner.read(&mut scratch) {
                Ok(0) => return Ok(total),
                Ok(n) => {
                    total += n as u64;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(e, what)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(b: &[u8]) -> JuteReader<&[u8]> {
        JuteReader::new(b)
    }

    #[test]
    fn primitives_are_big_endian() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0x0102_0304i32.to_be_bytes());
        bytes.extend_from_slice(&(-2i64).to_be_bytes());
        let mut r = reader(&bytes);
        assert_eq!(r.read_int("i").unwrap(), 0x0102_0304);
        assert_eq!(r.read_long("l").unwrap(), -2);
        assert_eq!(r.offset(), 12);
        assert!(r.read_long_or_eof("x").unwrap().is_none());
    }

    #[test]
    fn strings_and_null() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&3i32.to_be_bytes());
        bytes.extend_from_slice(b"/ab");
        bytes.extend_from_slice(&(-1i32).to_be_bytes());
        bytes.extend_from_slice(&0i32.to_be_bytes());
        bytes.extend_from_slice(&2i32.to_be_bytes());
        bytes.extend_from_slice(&[0xc3, 0xa9]); // é
        let mut r = reader(&bytes);
        assert_eq!(r.read_string("s").unwrap().as_deref(), Some("/ab"));
        assert_eq!(r.read_string("s").unwrap(), None);
        assert_eq!(r.read_string("s").unwrap().as_deref(), Some(""));
        assert_eq!(r.read_string("s").unwrap().as_deref(), Some("é"));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let mut bytes = 2i32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0xff, b'a']);
        assert_eq!(reader(&bytes).read_string("s").unwrap().as_deref(), Some("\u{fffd}a"));
    }

    #[test]
    fn buffers_are_skipped_and_checksummed() {
        let mut bytes = 100_000i32.to_be_bytes().to_vec();
        bytes.extend((0..100_000u32).map(|i| i as u8));
        bytes.extend_from_slice(&(-1i32).to_be_bytes());
        let mut r = reader(&bytes);
        assert_eq!(r.skip_buffer("data").unwrap(), 100_000);
        assert_eq!(r.skip_buffer("data").unwrap(), 0);
        assert_eq!(r.offset(), bytes.len() as u64);
        assert_eq!(r.checksum(), adler2::adler32_slice(&bytes));
    }

    #[test]
    fn truncation_names_offset_and_field() {
        let mut r = reader(&[0, 0, 1]);
        let e = r.read_int("session count").unwrap_err().to_string();
        assert_eq!(e, "truncated at offset 3 while reading session count");

        // A huge data length on a short stream: no huge allocation, an error.
        let mut bytes = i32::MAX.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        let e = reader(&bytes).skip_buffer("node data").unwrap_err();
        assert!(matches!(e, JuteError::Truncated { offset: 7, .. }), "{e}");

        // A half-read long at a clean-EOF read is truncation, not EOF.
        assert!(reader(&[1, 2]).read_long_or_eof("digest").is_err());
    }

    #[test]
    fn corrupt_lengths_are_refused() {
        let bytes = (-5i32).to_be_bytes();
        let e = reader(&bytes).read_string("node path").unwrap_err();
        assert_eq!(e.to_string(), "invalid node path length at offset 0: negative length -5");
        let bytes = i32::MAX.to_be_bytes();
        let e = reader(&bytes).read_string("node path").unwrap_err();
        assert!(e.to_string().contains("unreasonable"), "{e}");
        let bytes = (-7i32).to_be_bytes();
        assert!(reader(&bytes).skip_buffer("node data").is_err());
        assert!(reader(&bytes).read_count("acls").is_err());
        let bytes = (-1i32).to_be_bytes();
        assert_eq!(reader(&bytes).read_count("acls").unwrap(), None);
    }
}
