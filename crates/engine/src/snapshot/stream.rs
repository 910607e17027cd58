//! Opening a snapshot file as a stream of its uncompressed bytes.
//!
//! ZooKeeper (`zookeeper.snapshot.compression.method`) writes snapshots
//! plain, gzip-compressed (`snapshot.<zxid>.gz`, `java.util.zip`'s gzip) or
//! snappy-compressed (`snapshot.<zxid>.snappy`, snappy-java's
//! `SnappyOutputStream`). The format is told by the first bytes of the file,
//! whatever its name.
//!
//! snappy-java's stream format: a 16-byte header (the magic
//! `0x82 "SNAPPY" 0x00`, then the `int`s version and compatible version, both
//! 1), then blocks, each an `int` (big-endian) byte count followed by that
//! many bytes of raw Snappy (one `Snappy.compress` block). A count equal to
//! the first four magic bytes starts another header (concatenated streams).

use std::fs::File;
use std::io::{self, BufReader, Cursor, ErrorKind, Read};
use std::path::Path;

/// How the snapshot's bytes are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Compression {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "gz")]
    Gzip,
    #[serde(rename = "snappy")]
    Snappy,
}

impl Compression {
    /// ZooKeeper's name for it (its file suffix; "none" when plain).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gz",
            Compression::Snappy => "snappy",
        }
    }
}

/// `"ZKSN"`, the first four bytes of an uncompressed snapshot.
pub const SNAP_MAGIC: [u8; 4] = *b"ZKSN";
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// snappy-java's stream magic.
pub const SNAPPY_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const SNAPPY_HEADER_LEN: usize = 16;
/// Largest compressed block accepted. snappy-java writes blocks of 32 KiB
/// (uncompressed) unless told otherwise; ZooKeeper never tells it otherwise.
const MAX_SNAPPY_BLOCK: usize = 64 << 20;

/// Opens `path` and returns its compression and a reader of its
/// uncompressed bytes. A file that starts like none of the three formats is
/// refused with a message (without the file name: the caller adds it).
pub fn open(path: &Path) -> Result<(Compression, Box<dyn Read>), String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut prefix = [0u8; SNAPPY_HEADER_LEN];
    let mut got = 0;
    // Bounded by the prefix length: each pass reads a byte or stops.
    while got < prefix.len() {
        match file.read(&mut prefix[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read: {e}")),
        }
    }
    let head = &prefix[..got];
    let compression = if head.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(&SNAPPY_MAGIC) {
        Compression::Snappy
    } else if head.starts_with(&SNAP_MAGIC) {
        Compression::None
    } else if got == 0 {
        return Err("not a ZooKeeper snapshot: the file is empty".to_string());
    } else if got < SNAPPY_MAGIC.len()
        && [&SNAP_MAGIC[..], &GZIP_MAGIC[..], &SNAPPY_MAGIC[..]].iter().any(|m| m.starts_with(head))
    {
        return Err(format!("truncated at offset {got} while reading the file header"));
    } else {
        return Err(format!(
            "not a ZooKeeper snapshot: it starts with {}, which is neither \"ZKSN\" (a plain snapshot) nor the gzip or snappy-java magic",
            hex::encode(&head[..got.min(8)])
        ));
    };
    let raw = BufReader::with_capacity(64 * 1024, Cursor::new(prefix[..got].to_vec()).chain(file));
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(BufReader::with_capacity(64 * 1024, flate2::read::MultiGzDecoder::new(raw))),
        Compression::Snappy => Box::new(SnappyJavaReader::new(raw)),
    };
    Ok((compression, reader))
}

/// Decodes snappy-java's `SnappyOutputStream` format, block by block.
pub struct SnappyJavaReader<R> {
    inner: R,
    /// Offset in the compressed input, for messages.
    in_offset: u64,
    header_read: bool,
    done: bool,
    compressed: Vec<u8>,
    block: Vec<u8>,
    pos: usize,
    decoder: snap::raw::Decoder,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, msg)
}

impl<R: Read> SnappyJavaReader<R> {
    pub fn new(inner: R) -> SnappyJavaReader<R> {
        SnappyJavaReader {
            inner,
            in_offset: 0,
            header_read: false,
            done: false,
            compressed: Vec::new(),
            block: Vec::new(),
            pos: 0,
            decoder: snap::raw::Decoder::new(),
        }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean end of input
    /// (nothing read) when `eof_ok`.
    fn read_exact_or_eof(&mut self, buf: &mut [u8], what: &str, eof_ok: bool) -> io::Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) if got == 0 && eof_ok => return Ok(false),
                Ok(0) => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        format!("snappy stream truncated at file offset {} in {what}", self.in_offset + got as u64),
                    ));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.in_offset += got as u64;
        Ok(true)
    }

    fn check_header(&mut self, first4: Option<[u8; 4]>) -> io::Result<()> {
        let at = self.in_offset - first4.map_or(0, |_| 4);
        let mut h = [0u8; SNAPPY_HEADER_LEN];
        let start = match first4 {
            Some(f) => {
                h[..4].copy_from_slice(&f);
                4
            }
            None => 0,
        };
        self.read_exact_or_eof(&mut h[start..], "the snappy-java header", false)?;
        if h[..8] != SNAPPY_MAGIC {
            return Err(invalid(format!("bad snappy-java magic at file offset {at}: {}", hex::encode(&h[..8]))));
        }
        let version = i32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        if version < 1 {
            return Err(invalid(format!("unsupported snappy-java stream version {version} at file offset {at}")));
        }
        Ok(())
    }

    /// Decodes the next block into `self.block`; `false` at the end.
    fn next_block(&mut self) -> io::Result<bool> {
        if !self.header_read {
            self.header_read = true;
            self.check_header(None)?;
        }
        // Each pass consumes input (a header or a block) or returns.
        loop {
            let at = self.in_offset;
            let mut len4 = [0u8; 4];
            if !self.read_exact_or_eof(&mut len4, "a block length", true)? {
                self.done = true;
                return Ok(false);
            }
            if len4 == SNAPPY_MAGIC[..4] {
                self.check_header(Some(len4))?;
                continue;
            }
            let len = i32::from_be_bytes(len4);
            if len < 0 || len as usize > MAX_SNAPPY_BLOCK {
                return Err(invalid(format!("bad snappy block length {len} at file offset {at}")));
            }
            let len = len as usize;
            self.compressed.clear();
            // Grows as bytes arrive: a corrupted length cannot allocate more
            // than the file holds.
            let n = (&mut self.inner).take(len as u64).read_to_end(&mut self.compressed)?;
            self.in_offset += n as u64;
            if n < len {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!(
                        "snappy stream truncated at file offset {}: the block at {at} holds {len} bytes",
                        self.in_offset
                    ),
                ));
            }
            let out_len = snap::raw::decompress_len(&self.compressed)
                .map_err(|e| invalid(format!("corrupt snappy block at file offset {at}: {e}")))?;
            // Snappy expands at most about 22 times.
            if out_len > MAX_SNAPPY_BLOCK || out_len > len.saturating_mul(32) + 64 {
                return Err(invalid(format!(
                    "corrupt snappy block at file offset {at}: claims {out_len} bytes from {len}"
                )));
            }
            self.block.resize(out_len, 0);
            let wrote = self
                .decoder
                .decompress(&self.compressed, &mut self.block)
                .map_err(|e| invalid(format!("corrupt snappy block at file offset {at}: {e}")))?;
            self.block.truncate(wrote);
            self.pos = 0;
            if wrote > 0 {
                return Ok(true);
            }
        }
    }
}

impl<R: Read> Read for SnappyJavaReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.block.len() && (self.done || !self.next_block()?) {
            return Ok(0);
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
/// Writes `data` the way snappy-java's SnappyOutputStream does.
pub(crate) fn snappy_java(data: &[u8], block: usize) -> Vec<u8> {
    let mut out = SNAPPY_MAGIC.to_vec();
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut enc = snap::raw::Encoder::new();
    for chunk in data.chunks(block.max(1)) {
        let c = enc.compress_vec(chunk).unwrap();
        out.extend_from_slice(&(c.len() as i32).to_be_bytes());
        out.extend_from_slice(&c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: impl Read) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        let mut r = r;
        r.read_to_end(&mut v)?;
        Ok(v)
    }

    #[test]
    fn snappy_java_roundtrip_and_concatenation() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let enc = snappy_java(&data, 32 * 1024);
        assert_eq!(read_all(SnappyJavaReader::new(&enc[..])).unwrap(), data);
        let mut two = snappy_java(b"hello ", 4);
        two.extend(snappy_java(b"world", 4));
        assert_eq!(read_all(SnappyJavaReader::new(&two[..])).unwrap(), b"hello world");
    }

    #[test]
    fn snappy_java_errors() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let enc = snappy_java(&data, 32 * 1024);
        // Truncated in a block.
        let e = read_all(SnappyJavaReader::new(&enc[..enc.len() - 10])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");
        // Truncated in a length.
        let e = read_all(SnappyJavaReader::new(&enc[..SNAPPY_HEADER_LEN + 2])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");
        // A huge block length.
        let mut bad = enc.clone();
        bad[SNAPPY_HEADER_LEN..SNAPPY_HEADER_LEN + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(read_all(SnappyJavaReader::new(&bad[..])).is_err());
        // Garbage in a block.
        let mut bad = enc.clone();
        for b in &mut bad[SNAPPY_HEADER_LEN + 4..SNAPPY_HEADER_LEN + 40] {
            *b = 0xff;
        }
        assert!(read_all(SnappyJavaReader::new(&bad[..])).is_err());
        // Bad magic.
        let mut bad = enc;
        bad[1] = b'X';
        assert_eq!(read_all(SnappyJavaReader::new(&bad[..])).unwrap_err().kind(), ErrorKind::InvalidData);
    }
}
