//! The meta server's HTTP port (the RPC port): `GET /meta/cluster`, used to
//! find the leader when no RPC answer names it. A follower answers 307 with
//! `Location: http://<leader>/meta/cluster`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// The most bytes read from an HTTP answer.
const MAX_ANSWER: usize = 1 << 20;

/// An HTTP answer: status, Location when given, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// GETs `path` from `meta` (HTTP/1.1, one request per connection).
pub async fn get(meta: &str, path: &str, timeout: Duration) -> Result<Answer> {
    let fail = |why: String| Error::Http { meta: meta.to_string(), path: path.to_string(), why };
    let exchange = async {
        let mut s = TcpStream::connect(meta).await.map_err(|e| fail(e.to_string()))?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {meta}\r\nConnection: close\r\nAccept: */*\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| fail(e.to_string()))?;
        // The meta keeps the connection open after answering (it serves
        // RPCs on it too): read until the answer is whole, not until EOF.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if complete(&buf) {
                break;
            }
            let n = s.read(&mut chunk).await.map_err(|e| fail(e.to_string()))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_ANSWER {
                return Err(fail(format!("answer longer than {MAX_ANSWER} bytes")));
            }
        }
        parse(&buf).map_err(fail)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(fail(format!("no answer within {}", crate::error::humanize(timeout)))),
    }
}

/// Whether `buf` holds a whole answer: the head, then `Content-Length`
/// bytes, or a chunked body up to its last chunk, or nothing for a
/// redirect or a status without a body and without a length.
fn complete(buf: &[u8]) -> bool {
    let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
    let body = &buf[split + 4..];
    let header = |name: &str| {
        head.split("\r\n")
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == name).map(|(_, v)| v.trim().to_string()))
    };
    if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        return body.len() >= n;
    }
    if header("transfer-encoding").is_some_and(|v| v == "chunked") {
        return body.windows(5).any(|w| w == b"0\r\n\r\n");
    }
    // No length: a redirect or an empty answer is whole at its head;
    // anything else runs to the close.
    let status = head.split(' ').nth(1).unwrap_or("");
    status.starts_with('3') || status == "204" || status == "304"
}

/// Parses an HTTP/1.x answer (plain or chunked body).
pub fn parse(buf: &[u8]) -> Result<Answer, String> {
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").ok_or("not an HTTP answer")?;
    let head = std::str::from_utf8(&buf[..split]).map_err(|_| "not an HTTP answer")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().unwrap_or("").starts_with("HTTP/1.") {
        return Err("not an HTTP answer".into());
    }
    let status = parts.next().and_then(|s| s.parse().ok()).ok_or("no status code")?;
    let (mut location, mut chunked) = (None, false);
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "location" {
                location = Some(v.to_string());
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let raw = &buf[split + 4..];
    let body = if chunked { dechunk(raw)? } else { raw.to_vec() };
    Ok(Answer { status, location, body: String::from_utf8_lossy(&body).into_owned() })
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size = std::str::from_utf8(&raw[..eol]).map_err(|_| "bad chunk")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).map_err(|_| "bad chunk")?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size {
            return Err("chunk cut short".into());
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or(&[]);
    }
}

/// The `host:port` of a Location such as `http://host:port/meta/cluster`.
pub fn location_host(location: &str) -> Option<String> {
    let rest = location.split_once("://").map(|(_, r)| r).unwrap_or(location);
    let host = rest.split('/').next().unwrap_or("");
    (!host.is_empty()).then(|| host.to_string())
}

/// The key/value pairs of a `/meta/cluster` body: a flat JSON object of
/// strings, or such an object nested one level down.
pub fn cluster_entries(body: &str) -> Option<Vec<(String, String)>> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let obj = v.as_object()?;
    let flat = |o: &serde_json::Map<String, serde_json::Value>| {
        o.iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k.clone(), s.clone())),
                serde_json::Value::Number(n) => Some((k.clone(), n.to_string())),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    if obj.contains_key("primary_meta_server") {
        return Some(flat(obj));
    }
    obj.values().filter_map(|v| v.as_object()).find(|o| o.contains_key("primary_meta_server")).map(flat)
}
