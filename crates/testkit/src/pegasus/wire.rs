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

/// A request field the handlers read (ints, bools, strings, and the lists
/// of bare addresses a request names); others are skipped.
#[derive(Debug, Clone)]
pub enum Value {
    I32(i32),
    I64(i64),
    Bool(bool),
    Str(String),
    /// list<rpc_address>: elements typed STRUCT, each a bare i64.
    Addrs(Vec<i64>),
    /// list<host_port>: elements typed STRUCT, each a bare host and port.
    HostPorts(Vec<(String, u16)>),
    Other,
}

/// How a list field typed STRUCT is laid out: Pegasus writes rpc_address
/// and host_port elements bare, which a generic skip would misread.
#[derive(Debug, Clone, Copy)]
enum Bare {
    RpcAddress,
    HostPort,
}

/// The list fields of a request whose elements are bare, by RPC code.
fn bare_lists(code: &str) -> &'static [(i16, Bare)] {
    match code {
        "RPC_CM_START_RECOVERY" => &[(1, Bare::RpcAddress), (4, Bare::HostPort)],
        _ => &[],
    }
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

    pub fn bool(&self, id: i16) -> Option<bool> {
        self.fields.iter().find_map(|(f, v)| match v {
            Value::Bool(x) if *f == id => Some(*x),
            _ => None,
        })
    }

    pub fn addrs(&self, id: i16) -> Option<&[i64]> {
        self.fields.iter().find_map(|(f, v)| match v {
            Value::Addrs(x) if *f == id => Some(x.as_slice()),
            _ => None,
        })
    }

    pub fn host_ports(&self, id: i16) -> Option<&[(String, u16)]> {
        self.fields.iter().find_map(|(f, v)| match v {
            Value::HostPorts(x) if *f == id => Some(x.as_slice()),
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

/// A list of bare elements; the count is checked against the bytes left.
fn read_bare_list(r: &mut Reader<'_>, kind: Bare) -> Result<Value, Malformed> {
    let (et, n) = (r.u8()?, r.i32()?);
    if n != 0 && et != T_STRUCT {
        return Err(Malformed("a list of addresses not typed STRUCT"));
    }
    let n = usize::try_from(n).map_err(|_| Malformed("negative length"))?;
    if n > r.buf.len() - r.pos {
        return Err(Malformed("truncated"));
    }
    Ok(match kind {
        Bare::RpcAddress => Value::Addrs((0..n).map(|_| r.i64()).collect::<Result<_, _>>()?),
        Bare::HostPort => Value::HostPorts(
            (0..n)
                .map(|_| {
                    let host = r.string()?;
                    let port = r.i16()? as u16;
                    r.u8()?;
                    Ok((host, port))
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn read_fields(r: &mut Reader<'_>, bare: &[(i16, Bare)]) -> Result<Vec<(i16, Value)>, Malformed> {
    let mut out = Vec::new();
    loop {
        let t = r.u8()?;
        if t == T_STOP {
            return Ok(out);
        }
        let id = r.i16()?;
        let v = match t {
            T_LIST if bare.iter().any(|(f, _)| *f == id) => {
                read_bare_list(r, bare.iter().find(|(f, _)| *f == id).expect("found").1)?
            }
            T_BOOL => Value::Bool(r.u8()? != 0),
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
            fields = read_fields(&mut r, bare_lists(&name))?;
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
    fn start_recovery_lists_are_read_bare() {
        let mut w = Writer::new();
        w.i32((VERSION_1 | MSG_CALL as u32) as i32).string("RPC_CM_START_RECOVERY").i32(9).field(T_STRUCT, 1);
        w.field(T_LIST, 1).list(T_STRUCT, 2).i64(rpc_address("10.0.0.1".parse().unwrap(), 34801)).i64(5);
        w.field(T_BOOL, 2).bool(true).field(T_BOOL, 3).bool(false);
        w.field(T_LIST, 4).list(T_STRUCT, 1).host_port("r1", 40960);
        w.stop().stop();
        let call = parse_call(&w.buf).unwrap();
        assert_eq!(call.addrs(1), Some(&[rpc_address("10.0.0.1".parse().unwrap(), 34801), 5][..]));
        assert_eq!((call.bool(2), call.bool(3)), (Some(true), Some(false)));
        assert_eq!(call.host_ports(4), Some(&[("r1".to_string(), 40960)][..]));
        // A count beyond the bytes is refused, not allocated.
        let mut w = Writer::new();
        w.i32((VERSION_1 | MSG_CALL as u32) as i32).string("RPC_CM_START_RECOVERY").i32(9).field(T_STRUCT, 1);
        w.field(T_LIST, 1).list(T_STRUCT, i32::MAX as usize);
        assert!(parse_call(&w.buf).is_err());
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
