//! A bounded Thrift binary-protocol codec: what the meta server's messages
//! need, and nothing that allocates more than the bytes at hand.
//!
//! Pegasus encodes some IDL "structs" as bare values (error_code,
//! host_port, rpc_address, gpid; see the functions at the end): a generic
//! struct reader misreads them, so they are read and written explicitly.

use std::fmt;

/// Field and element types of the binary protocol.
pub mod ttype {
    pub const STOP: u8 = 0;
    pub const BOOL: u8 = 2;
    pub const BYTE: u8 = 3;
    pub const DOUBLE: u8 = 4;
    pub const I16: u8 = 6;
    pub const I32: u8 = 8;
    pub const I64: u8 = 10;
    pub const STRING: u8 = 11;
    pub const STRUCT: u8 = 12;
    pub const MAP: u8 = 13;
    pub const SET: u8 = 14;
    pub const LIST: u8 = 15;
}

/// Strict message-begin version word; the message type is in the low byte.
pub const VERSION_1: u32 = 0x8001_0000;
pub const CALL: u8 = 1;
pub const REPLY: u8 = 2;
pub const EXCEPTION: u8 = 3;

/// How deep nested structs and containers may go when skipped.
const MAX_DEPTH: usize = 32;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended `needed` bytes early at `offset`.
    Truncated { offset: usize, needed: usize },
    /// A length or count larger than what is left or than the cap.
    TooLong { offset: usize, len: i64 },
    /// A type byte that is not a Thrift type.
    BadType { offset: usize, ttype: u8 },
    /// Nesting deeper than the reader follows.
    TooDeep { offset: usize },
    /// A string that is not UTF-8.
    NotUtf8 { offset: usize },
    /// Anything else the message does not allow, said in words.
    Invalid { offset: usize, what: String },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { offset, needed } => {
                write!(f, "truncated at byte {offset} ({needed} more bytes needed)")
            }
            DecodeError::TooLong { offset, len } => {
                write!(f, "length {len} at byte {offset} exceeds what the message holds")
            }
            DecodeError::BadType { offset, ttype } => write!(f, "unknown Thrift type {ttype} at byte {offset}"),
            DecodeError::TooDeep { offset } => write!(f, "nesting too deep at byte {offset}"),
            DecodeError::NotUtf8 { offset } => write!(f, "string at byte {offset} is not UTF-8"),
            DecodeError::Invalid { offset, what } => write!(f, "{what} at byte {offset}"),
        }
    }
}

impl std::error::Error for DecodeError {}

pub type DecodeResult<T> = Result<T, DecodeError>;

/// Writes the binary protocol into a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }

    pub fn byte(&mut self, v: i8) {
        self.buf.push(v as u8);
    }

    pub fn i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn binary(&mut self, v: &[u8]) {
        self.i32(v.len() as i32);
        self.buf.extend_from_slice(v);
    }

    pub fn string(&mut self, v: &str) {
        self.binary(v.as_bytes());
    }

    pub fn field(&mut self, ttype: u8, id: i16) {
        self.buf.push(ttype);
        self.i16(id);
    }

    pub fn stop(&mut self) {
        self.buf.push(ttype::STOP);
    }

    pub fn list_begin(&mut self, elem: u8, len: usize) {
        self.buf.push(elem);
        self.i32(len as i32);
    }

    /// Strict message begin: version word with the type, name, sequence id.
    pub fn message_begin(&mut self, name: &str, mtype: u8, seqid: i32) {
        self.i32((VERSION_1 | mtype as u32) as i32);
        self.string(name);
        self.i32(seqid);
    }
}

/// A field header read from a struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub ttype: u8,
    pub id: i16,
}

/// A message begin read from a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBegin {
    pub name: String,
    pub mtype: u8,
    pub seqid: i32,
}

/// Reads the binary protocol from a slice. Every length and count is checked
/// against the bytes left before anything is allocated.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn invalid(&self, what: impl Into<String>) -> DecodeError {
        DecodeError::Invalid { offset: self.pos, what: what.into() }
    }

    fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated { offset: self.pos, needed: n - self.remaining() });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    pub fn bool(&mut self) -> DecodeResult<bool> {
        Ok(self.take(1)?[0] != 0)
    }

    pub fn byte(&mut self) -> DecodeResult<i8> {
        Ok(self.take(1)?[0] as i8)
    }

    pub fn i16(&mut self) -> DecodeResult<i16> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    pub fn i32(&mut self) -> DecodeResult<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> DecodeResult<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// A length or count of elements of at least `min_size` bytes each:
    /// refused when negative or when the rest of the input cannot hold it.
    fn count(&mut self, min_size: usize) -> DecodeResult<usize> {
        let at = self.pos;
        let n = self.i32()?;
        if n < 0 || (n as usize).saturating_mul(min_size) > self.remaining() {
            return Err(DecodeError::TooLong { offset: at, len: n as i64 });
        }
        Ok(n as usize)
    }

    pub fn binary(&mut self) -> DecodeResult<&'a [u8]> {
        let n = self.count(1)?;
        self.take(n)
    }

    pub fn string(&mut self) -> DecodeResult<String> {
        let at = self.pos;
        let b = self.binary()?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::NotUtf8 { offset: at })
    }

    /// A field header, or `None` at STOP.
    pub fn field(&mut self) -> DecodeResult<Option<Field>> {
        let ttype = self.take(1)?[0];
        if ttype == ttype::STOP {
            return Ok(None);
        }
        check_type(self.pos - 1, ttype)?;
        Ok(Some(Field { ttype, id: self.i16()? }))
    }

    /// A list or set header: element type and count.
    pub fn list_begin(&mut self) -> DecodeResult<(u8, usize)> {
        let elem = self.take(1)?[0];
        check_type(self.pos - 1, elem)?;
        let n = self.count(min_size(elem))?;
        Ok((elem, n))
    }

    /// A map header: key type, value type and count.
    pub fn map_begin(&mut self) -> DecodeResult<(u8, u8, usize)> {
        let k = self.take(1)?[0];
        check_type(self.pos - 1, k)?;
        let v = self.take(1)?[0];
        check_type(self.pos - 1, v)?;
        let n = self.count(min_size(k) + min_size(v))?;
        Ok((k, v, n))
    }

    /// A list of `elem`, each read by `f`; refused if the element type differs.
    pub fn list<T>(&mut self, elem: u8, mut f: impl FnMut(&mut Reader<'a>) -> DecodeResult<T>) -> DecodeResult<Vec<T>> {
        let at = self.pos;
        let (t, n) = self.list_begin()?;
        if n > 0 && t != elem {
            return Err(DecodeError::Invalid { offset: at, what: format!("list of type {t}, expected {elem}") });
        }
        // The count is checked against the bytes left, not against the size
        // of what they decode into: grow as elements arrive.
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            v.push(f(self)?);
        }
        Ok(v)
    }

    /// Strict message begin (the only form Pegasus writes).
    pub fn message_begin(&mut self) -> DecodeResult<MessageBegin> {
        let at = self.pos;
        let word = self.i32()? as u32;
        if word & 0xffff_0000 != VERSION_1 {
            return Err(DecodeError::Invalid { offset: at, what: format!("bad message version {word:#010x}") });
        }
        let name = self.string()?;
        let seqid = self.i32()?;
        Ok(MessageBegin { name, mtype: (word & 0xff) as u8, seqid })
    }

    /// Skips one value of a type, nested structs and containers included.
    pub fn skip(&mut self, ttype: u8) -> DecodeResult<()> {
        self.skip_depth(ttype, 0)
    }

    fn skip_depth(&mut self, t: u8, depth: usize) -> DecodeResult<()> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep { offset: self.pos });
        }
        match t {
            ttype::BOOL | ttype::BYTE => self.take(1).map(drop),
            ttype::I16 => self.take(2).map(drop),
            ttype::I32 => self.take(4).map(drop),
            ttype::I64 | ttype::DOUBLE => self.take(8).map(drop),
            ttype::STRING => self.binary().map(drop),
            ttype::STRUCT => {
                while let Some(f) = self.field()? {
                    self.skip_depth(f.ttype, depth + 1)?;
                }
                Ok(())
            }
            ttype::LIST | ttype::SET => {
                let (e, n) = self.list_begin()?;
                for _ in 0..n {
                    self.skip_depth(e, depth + 1)?;
                }
                Ok(())
            }
            ttype::MAP => {
                let (k, v, n) = self.map_begin()?;
                for _ in 0..n {
                    self.skip_depth(k, depth + 1)?;
                    self.skip_depth(v, depth + 1)?;
                }
                Ok(())
            }
            other => Err(DecodeError::BadType { offset: self.pos, ttype: other }),
        }
    }
}

fn check_type(offset: usize, t: u8) -> DecodeResult<()> {
    use ttype::*;
    match t {
        BOOL | BYTE | DOUBLE | I16 | I32 | I64 | STRING | STRUCT | MAP | SET | LIST => Ok(()),
        _ => Err(DecodeError::BadType { offset, ttype: t }),
    }
}

/// The fewest bytes one value of a type takes (a STOP for an empty struct,
/// a length for an empty string or container).
fn min_size(t: u8) -> usize {
    use ttype::*;
    match t {
        BOOL | BYTE | STRUCT => 1,
        I16 => 2,
        I32 | STRING => 4,
        I64 | DOUBLE => 8,
        MAP => 6,
        LIST | SET => 5,
        _ => 1,
    }
}

/// An error_code: on the wire a bare string (e.g. `ERR_OK`) under a field
/// of type STRUCT, with no field headers and no STOP.
pub fn read_error_code(r: &mut Reader<'_>) -> DecodeResult<String> {
    r.string()
}

pub fn write_error_code(w: &mut Writer, id: i16, code: &str) {
    w.field(ttype::STRUCT, id);
    w.string(code);
}

/// A host_port: under a field of type STRUCT, a bare host string, an i16
/// port (signed on the wire: ports above 32767 arrive negative) and a
/// byte host type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
    #[serde(skip)]
    pub host_type: i8,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

pub fn read_host_port(r: &mut Reader<'_>) -> DecodeResult<HostPort> {
    let host = r.string()?;
    let port = r.i16()? as u16;
    let host_type = r.byte()?;
    Ok(HostPort { host, port, host_type })
}

pub fn write_host_port(w: &mut Writer, hp: &HostPort) {
    w.string(&hp.host);
    w.i16(hp.port as i16);
    w.byte(hp.host_type);
}

/// An IPv4 rpc_address: an i64 `(ipv4 << 32) | (port << 16) | type`, type 1
/// for IPv4 and 0 for an invalid (empty) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcAddress(pub u64);

impl RpcAddress {
    pub fn new(ip: std::net::Ipv4Addr, port: u16) -> RpcAddress {
        RpcAddress(((u32::from(ip) as u64) << 32) | ((port as u64) << 16) | 1)
    }

    /// The IPv4 address and port, or `None` for an invalid address.
    pub fn ipv4(self) -> Option<std::net::SocketAddrV4> {
        if self.0 & 0b11 != 1 {
            return None;
        }
        let ip = std::net::Ipv4Addr::from((self.0 >> 32) as u32);
        Some(std::net::SocketAddrV4::new(ip, ((self.0 >> 16) & 0xffff) as u16))
    }
}

impl fmt::Display for RpcAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ipv4() {
            Some(a) => write!(f, "{a}"),
            None => write!(f, "invalid address"),
        }
    }
}

pub fn read_rpc_address(r: &mut Reader<'_>) -> DecodeResult<RpcAddress> {
    Ok(RpcAddress(r.i64()? as u64))
}

/// A gpid: an i64 with the app id in the low 32 bits and the partition
/// index in the high 32.
pub fn gpid(app_id: i32, partition_index: i32) -> i64 {
    (((partition_index as u32 as u64) << 32) | app_id as u32 as u64) as i64
}

/// The app id and partition index of a gpid.
pub fn split_gpid(v: i64) -> (i32, i32) {
    (v as u64 as u32 as i32, ((v as u64) >> 32) as u32 as i32)
}
