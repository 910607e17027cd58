//! The server side of the meta server's wire format: the 48-byte "THFT" v0
//! request header, a small Thrift binary codec, and the reply frame.
//!
//! Written from the protocol description, not shared with any client, so a
//! client tested against it is checked by a second implementation.

/// Bytes in a v0 request header.
pub const HEADER_LEN: usize = 48;
/// The largest request body accepted; meta requests are a few hundred bytes.
pub const MAX_BODY: u32 = 1 << 20;

pub const T_STOP: u8 = 0;
pub const T_BOOL: u8 = 2;
pub const T_BYTE: u8 = 3;
pub const T_DOUBLE: u8 = 4;
pub const T_I16: u8 = 6;
pub const T_I32: u8 = 8;
pub const T_I64: u8 = 10;
pub const T_STRING: u8 = 11;
pub const T_STRUCT: u8 = 12;
pub const T_MAP: u8 = 13;
pub const T_SET: u8 = 14;
pub const T_LIST: u8 = 15;

const MSG_CALL: u8 = 1;
const MSG_REPLY: u8 = 2;
const VERSION_1: u32 = 0x8001_0000;
/// `HOST_TYPE_IPV4` of a host_port.
const HOST_TYPE_IPV4: u8 = 1;

/// What the server uses of a request header.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub body_length: u32,
}

/// Parses a v0 header; `None` for anything else (bad magic, version or
/// header length, an oversized body): the server then drops the
/// connection, as the real one does. The CRC fields are read and ignored.
pub fn parse_header(b: &[u8; HEADER_LEN]) -> Option<Header> {
    let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if &b[0..4] != b"THFT" || u32_at(4) != 0 || u32_at(8) != HEADER_LEN as u32 {
        return None;
    }
    let body_length = u32_at(16);
    (body_length <= MAX_BODY).then_some(Header { body_length })
}

/// A decoding failure: the request is not a strict Thrift call.
#[derive(Debug)]
pub struct Malformed(pub &'static str);

/// A cursor over a Thrift binary buffer; every read is bounds-checked.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(Malformed("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    pub fn i16(&mut self) -> Result<i16, Malformed> {
        let s = self.take(2)?;
        Ok(i16::from_be_bytes([s[0], s[1]]))
    }

    pub fn i32(&mut self) -> Result<i32, Malformed> {
        let s = self.take(4)?;
        Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub fn i64(&mut self) -> Result<i64, Malformed> {
        let s = self.take(8)?;
        Ok(i64::from_be_bytes(s.try_into().expect("8 bytes")))
    }

    pub fn string(&mut self) -> Result<String, Malformed> {
        let n = usize::try_from(self.i32()?).map_err(|_| Malformed("negative length"))?;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| Malformed("string is not UTF-8"))
    }

    /// Skips a value of type `t`; containers nest at most 16 deep.
    pub fn skip(&mut self, t: u8, depth: u32) -> Result<(), Malformed> {
        if depth > 16 {
            return Err(Malformed("nested too deep"));
        }
        match t {
            T_BOOL | T_BYTE => drop(self.take(1)?),
            T_I16 => drop(self.take(2)?),
            T_I32 => drop(self.take(4)?),
            T_DOUBLE | T_I64 => drop(self.take(8)?),
            T_STRING => drop(self.string()?),
            T_STRUCT => loop {
                let ft = self.u8()?;
                if ft == T_STOP {
                    break;
                }
                self.i16()?;
                self.skip(ft, depth + 1)?;
            },
            T_MAP => {
                let (kt, vt, n) = (self.u8()?, self.u8()?, self.i32()?);
                for _ in 0..n.max(0) {
                    self.skip(kt, depth + 1)?;
                    self.skip(vt, depth + 1)?;
                }
            }
            T_SET | T_LIST => {
                let (et, n) = (self.u8()?, self.i32()?);
                for _ in 0..n.max(0) {
                    self.skip(et, depth + 1)?;
                }
            }
            _ => return Err(Malformed("unknown field type")),
        }
        Ok(())
    }
}

/// A request field the handlers read (ints and strings); others are skipped.
#[derive(Debug, Clone)]
pub enum Value {
    I32(i32),
    I64(i64),
    Str(String),
    Other,
}

/// A decoded call: the RPC code name, the sequence id and the request
/// struct's fields by id.
#[derive(Debug)]
pub struct Call {
    pub name: String,
    pub seqid: i32,
    pub fields: Vec<(i16, Value)>,
}

impl Call {
    pub fn i32(&self, id: i16) -> Option<i32> {
        self.fields.iter().find_map(|(f, v)| match v {
            Value::I32(x) if *f == id => Some(*x),
            _ => None,
        })
    }

    pub fn str(&self, id: i16) -> Option<&str> {
        self.fields.iter().find_map(|(f, v)| match v {
            Value::Str(s) if *f == id => Some(s.as_str()),
            _ => None,
        })
    }
}

fn read_fields(r: &mut Reader<'_>) -> Result<Vec<(i16, Value)>, Malformed> {
    let mut out = Vec::new();
    loop {
        let t = r.u8()?;
        if t == T_STOP {
            return Ok(out);
        }
        let id = r.i16()?;
        let v = match t {
            T_I32 => Value::I32(r.i32()?),
            T_I64 => Value::I64(r.i64()?),
            T_STRING => Value::Str(r.string()?),
            _ => {
                r.skip(t, 0)?;
                Value::Other
            }
        };
        out.push((id, v));
    }
}

/// Decodes a body: strict MessageBegin (CALL), an args struct whose field 1
/// is the request struct, STOP.
pub fn parse_call(body: &[u8]) -> Result<Call, Malformed> {
    let mut r = Reader::new(body);
    let v = r.i32()? as u32;
    if v & 0xffff_0000 != VERSION_1 || (v & 0xff) as u8 != MSG_CALL {
        return Err(Malformed("not a strict Thrift CALL"));
    }
    let name = r.string()?;
    let seqid = r.i32()?;
    let mut fields = Vec::new();
    loop {
        let t = r.u8()?;
        if t == T_STOP {
            break;
        }
        let id = r.i16()?;
        if id == 1 && t == T_STRUCT {
            fields = read_fields(&mut r)?;
        } else {
            r.skip(t, 0)?;
        }
    }
    Ok(Call { name, seqid, fields })
}

/// A Thrift binary writer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }

    pub fn field(&mut self, t: u8, id: i16) -> &mut Self {
        self.buf.push(t);
        self.buf.extend_from_slice(&id.to_be_bytes());
        self
    }

    pub fn stop(&mut self) -> &mut Self {
        self.buf.push(T_STOP);
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(v as u8);
        self
    }

    pub fn byte(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn string(&mut self, s: &str) -> &mut Self {
        self.i32(s.len() as i32);
        self.buf.extend_from_slice(s.as_bytes());
        self
    }

    pub fn list(&mut self, elem: u8, n: usize) -> &mut Self {
        self.buf.push(elem);
        self.i32(n as i32)
    }

    pub fn map(&mut self, k: u8, v: u8, n: usize) -> &mut Self {
        self.buf.push(k);
        self.buf.push(v);
        self.i32(n as i32)
    }

    /// An error_code field: type STRUCT, payload a bare string.
    pub fn error_code(&mut self, id: i16, name: &str) -> &mut Self {
        self.field(T_STRUCT, id).string(name)
    }

    /// A host_port payload: bare string host, i16 port (the u16 reinterpreted,
    /// so ports above 32767 are negative), byte type.
    pub fn host_port(&mut self, host: &str, port: u16) -> &mut Self {
        self.string(host).i16(port as i16).byte(HOST_TYPE_IPV4)
    }

    pub fn list_of_strings(&mut self, id: i16, items: &[String]) -> &mut Self {
        self.field(T_LIST, id).list(T_STRING, items.len());
        for s in items {
            self.string(s);
        }
        self
    }
}

/// The i64 form of an IPv4 rpc_address: `ip << 32 | port << 16 | 1`.
pub fn rpc_address(ip: std::net::Ipv4Addr, port: u16) -> i64 {
    ((u32::from(ip) as u64) << 32 | (port as u64) << 16 | 1) as i64
}

/// A reply frame as the real server writes it: i32 total length (these 4
/// bytes included), the transport error as a Thrift string,
/// MessageBegin(`<code>_ACK`, REPLY, seqid), then, only with `ERR_OK`, a
/// result struct whose field 0 (STRUCT) is `response` (a struct body ending
/// in its STOP), then the result's STOP.
pub fn reply_frame(code: &str, seqid: i32, transport_error: &str, response: Option<&[u8]>) -> Vec<u8> {
    let mut w = Writer::new();
    w.i32(0).string(transport_error);
    w.i32((VERSION_1 | MSG_REPLY as u32) as i32).string(&format!("{code}_ACK")).i32(seqid);
    if let Some(body) = response {
        w.field(T_STRUCT, 0);
        w.buf.extend_from_slice(body);
        w.stop();
    }
    let n = w.buf.len() as i32;
    w.buf[0..4].copy_from_slice(&n.to_be_bytes());
    w.buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks_magic_version_and_length() {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(b"THFT");
        h[8..12].copy_from_slice(&48u32.to_be_bytes());
        h[16..20].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(parse_header(&h).unwrap().body_length, 7);
        h[8..12].copy_from_slice(&47u32.to_be_bytes());
        assert!(parse_header(&h).is_none());
    }

    #[test]
    fn rpc_address_and_negative_ports() {
        assert_eq!(rpc_address("127.0.0.1".parse().unwrap(), 34601), (0x7f00_0001i64 << 32) | (34601 << 16) | 1);
        let mut w = Writer::new();
        w.host_port("h", 34601);
        assert_eq!(&w.buf[5..7], &(34601u16 as i16).to_be_bytes());
        assert!((34601u16 as i16) < 0);
    }
}
