//! Framing of meta-server calls: the 48-byte "THFT" v0 request header and
//! the length-prefixed reply (src/rpc/thrift_message_parser.cpp).
//!
//! A request is the header and a body: MessageBegin(code, CALL, seqid), an
//! args struct whose field 1 is the request, STOP. A reply is an i32 total
//! length (these four bytes included), a string with the transport error,
//! MessageBegin(`<code>_ACK`, REPLY, seqid), and, when the transport error
//! is `ERR_OK`, a result struct whose field 0 is the response, STOP.

use crate::thrift::{self, DecodeError, DecodeResult, Reader, Writer, ttype};

/// Bytes of the v0 request header.
pub const HEADER_LEN: usize = 48;

/// The largest reply accepted (the length prefix included).
pub const MAX_REPLY: usize = 16 << 20;

/// The transport error of a call the server handled.
pub const ERR_OK: &str = "ERR_OK";

/// Encodes one call: header and body. `request` writes the request struct
/// (its fields and STOP).
pub fn encode_request(code: &str, seqid: i32, timeout_ms: u32, request: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut body = Writer::new();
    body.message_begin(code, thrift::CALL, seqid);
    body.field(ttype::STRUCT, 1);
    request(&mut body);
    body.stop();
    let body = body.into_bytes();

    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(b"THFT");
    for v in [0u32, HEADER_LEN as u32, 0, body.len() as u32, 0, 0, 0, timeout_ms, 0] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The length prefix of a reply: total bytes, the prefix included, refused
/// when shorter than the smallest reply or longer than [`MAX_REPLY`].
pub fn reply_length(prefix: [u8; 4]) -> Result<usize, LengthError> {
    let n = i32::from_be_bytes(prefix);
    // A length, an empty error string and a message begin at the least.
    if n < 4 + 4 + 12 {
        return Err(LengthError::TooShort(n as i64));
    }
    if n as usize > MAX_REPLY {
        return Err(LengthError::TooLong(n as usize));
    }
    Ok(n as usize)
}

/// Why a length prefix was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthError {
    TooShort(i64),
    TooLong(usize),
}

/// A decoded reply: the transport error, and the response when it is
/// `ERR_OK`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    pub transport_error: String,
    pub response: Option<T>,
}

/// Why a reply could not be decoded: its head (transport error and
/// message begin) is not this protocol's, or its result is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    Head(DecodeError),
    Body(DecodeError),
}

/// Decodes a reply's bytes after the length prefix. The name must be
/// `<code>_ACK` and the sequence id the call's; `response` reads the
/// response struct. Bytes after the result struct are ignored (the length
/// prefix already bounded the read).
pub fn decode_reply<T>(
    bytes: &[u8],
    code: &str,
    seqid: i32,
    response: impl FnOnce(&mut Reader<'_>) -> DecodeResult<T>,
) -> Result<Reply<T>, ReplyError> {
    let mut r = Reader::new(bytes);
    let transport_error = decode_head(&mut r, code, seqid).map_err(ReplyError::Head)?;
    if transport_error != ERR_OK {
        return Ok(Reply { transport_error, response: None });
    }
    let response = decode_result(&mut r, response).map_err(ReplyError::Body)?;
    Ok(Reply { transport_error, response: Some(response) })
}

fn decode_head(r: &mut Reader<'_>, code: &str, seqid: i32) -> DecodeResult<String> {
    let transport_error = r.string()?;
    if !transport_error.starts_with("ERR_") {
        return Err(r.invalid(format!("transport error {transport_error:?} is not an error code")));
    }
    let begin = r.message_begin()?;
    if begin.mtype != thrift::REPLY {
        return Err(r.invalid(format!("message type {} where a reply was expected", begin.mtype)));
    }
    let ack = format!("{code}_ACK");
    if begin.name != ack {
        return Err(r.invalid(format!("reply named {:?}, expected {ack:?}", begin.name)));
    }
    if begin.seqid != seqid {
        return Err(r.invalid(format!("reply to call {}, expected {seqid}", begin.seqid)));
    }
    Ok(transport_error)
}

fn decode_result<T>(r: &mut Reader<'_>, response: impl FnOnce(&mut Reader<'_>) -> DecodeResult<T>) -> DecodeResult<T> {
    let mut response = Some(response);
    let mut out = None;
    while let Some(f) = r.field()? {
        match (f.id, f.ttype, response.take()) {
            (0, ttype::STRUCT, Some(read)) => out = Some(read(r)?),
            (_, t, back) => {
                response = back;
                r.skip(t)?;
            }
        }
    }
    out.ok_or_else(|| DecodeError::Invalid { offset: r.offset(), what: "result without a response".into() })
}
