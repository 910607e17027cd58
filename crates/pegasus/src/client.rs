//! The meta-server client: one TCP connection per call, a timeout per call,
//! and the leader found among the given metas.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::frame::{self, LengthError, ReplyError};
use crate::level::Level;
use crate::messages::{self as m, ClusterInfoResponse};
use crate::thrift::{DecodeResult, Reader, Writer};

/// The meta server's default port.
pub const DEFAULT_PORT: u16 = 34601;

/// The handler error of a meta that is not the leader.
pub const ERR_FORWARD_TO_OTHERS: &str = "ERR_FORWARD_TO_OTHERS";

/// Parses a comma-separated list of `host[:port]` (port 34601 when left out).
pub fn parse_metas(list: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let addr = normalize(raw)?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    if out.is_empty() {
        return Err(Error::NoMetas);
    }
    Ok(out)
}

fn normalize(raw: &str) -> Result<String> {
    let bad = |why: &str| Error::BadAddress { addr: raw.to_string(), why: why.to_string() };
    if raw.contains('/') || raw.contains(char::is_whitespace) {
        return Err(bad("expected host:port"));
    }
    let (host, port) = match raw.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || (h.starts_with('[') && h.ends_with(']')) => {
            (h, p.parse::<u16>().map_err(|_| bad("the port is not a number from 1 to 65535"))?)
        }
        Some(_) => return Err(bad("an IPv6 address goes in brackets: [addr]:port")),
        None => (raw, DEFAULT_PORT),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if port == 0 {
        return Err(bad("the port is not a number from 1 to 65535"));
    }
    Ok(format!("{host}:{port}"))
}

/// Calls meta servers. Each call opens a connection, sends one request and
/// reads one reply, all within the timeout.
#[derive(Debug)]
pub struct MetaClient {
    metas: Vec<String>,
    timeout: Duration,
    seq: AtomicI32,
}

/// How one meta answered the cluster_info call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Role {
    /// It answered with the cluster's information.
    Leader,
    /// It answered with a handler error (ERR_FORWARD_TO_OTHERS from a
    /// follower; ERR_SERVICE_NOT_ACTIVE, ... from a meta still starting).
    Follower { code: String },
    /// Refused, unreachable or timed out.
    Down { reason: String },
    /// Something else listens there.
    NotAMeta { reason: String },
    /// A meta whose reply could not be used.
    Failed { reason: String },
}

/// A meta and how it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetaAnswer {
    pub meta: String,
    #[serde(flatten)]
    pub role: Role,
    /// Not among the given metas: named as the leader by the meta here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub named_by: Option<String>,
}

/// The leader, its cluster_info, and how every meta answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leader {
    pub meta: String,
    pub info: ClusterInfoResponse,
    pub answers: Vec<MetaAnswer>,
}

/// A level before and after `set_level`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LevelChange {
    pub meta: String,
    pub old: Level,
    pub new: Level,
    /// What cluster_info reports after the change (freezed when too few
    /// replica servers are alive, whatever was set).
    pub reported: Option<String>,
}

impl MetaClient {
    /// A client of the metas in `list` (`host[:port],...`), each call given
    /// `timeout`.
    pub fn new(list: &str, timeout: Duration) -> Result<MetaClient> {
        Ok(MetaClient { metas: parse_metas(list)?, timeout, seq: AtomicI32::new(1) })
    }

    /// The metas, normalized to `host:port`.
    pub fn metas(&self) -> &[String] {
        &self.metas
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One call to one meta: `request` writes the request struct, `read`
    /// reads the response struct. A transport error other than `ERR_OK`
    /// (`ERR_HANDLER_NOT_FOUND` for an RPC the meta does not serve) is
    /// [`Error::Transport`]; the response's own `err` is the caller's.
    pub async fn call<T>(
        &self,
        meta: &str,
        code: &str,
        request: impl FnOnce(&mut Writer),
        read: impl FnOnce(&mut Reader<'_>) -> DecodeResult<T>,
    ) -> Result<T> {
        let seqid = self.seq.fetch_add(1, Ordering::Relaxed);
        let timeout_ms = self.timeout.as_millis().min(u32::MAX as u128) as u32;
        let bytes = frame::encode_request(code, seqid, timeout_ms, request);
        let reply = match tokio::time::timeout(self.timeout, exchange(meta, code, &bytes)).await {
            Ok(r) => r?,
            Err(_) => return Err(Error::Timeout { meta: meta.to_string(), after: self.timeout }),
        };
        match frame::decode_reply(&reply, code, seqid, read) {
            Ok(frame::Reply { response: Some(v), .. }) => Ok(v),
            Ok(frame::Reply { transport_error, .. }) => {
                Err(Error::Transport { meta: meta.to_string(), rpc: code.to_string(), code: transport_error })
            }
            Err(ReplyError::Head(e)) => {
                Err(Error::NotAMeta { meta: meta.to_string(), why: format!("its reply is not this protocol's ({e})") })
            }
            Err(ReplyError::Body(source)) => {
                Err(Error::Malformed { meta: meta.to_string(), rpc: code.to_string(), source })
            }
        }
    }

    /// cluster_info at one meta (its `err` not checked).
    pub async fn cluster_info_at(&self, meta: &str) -> Result<ClusterInfoResponse> {
        self.call(meta, m::RPC_CM_CLUSTER_INFO, m::cluster_info_request, m::read_cluster_info).await
    }

    /// How `meta` answers cluster_info now, and what it said when it
    /// answered as the leader.
    pub async fn role_of(&self, meta: &str) -> (Role, Option<ClusterInfoResponse>) {
        let result = self.cluster_info_at(meta).await;
        let role = classify(&result);
        (role.clone(), if role == Role::Leader { result.ok() } else { None })
    }

    /// Asks every given meta for cluster_info at once; the one that answers
    /// is the leader. When none does, the followers' HTTP port names the
    /// leader (307 to it), which is then asked even if it was not given.
    pub async fn find_leader(&self) -> Result<Leader> {
        let results = futures::future::join_all(self.metas.iter().map(|meta| self.cluster_info_at(meta))).await;
        let mut answers = Vec::new();
        let mut leader = None;
        for (meta, result) in self.metas.iter().zip(results) {
            let role = classify(&result);
            if role == Role::Leader && leader.is_none() {
                leader = Some((meta.clone(), result.expect("a leader answered")));
            }
            answers.push(MetaAnswer { meta: meta.clone(), role, named_by: None });
        }
        if leader.is_none() {
            leader = self.follow_http(&mut answers).await;
        }
        match leader {
            Some((meta, info)) => Ok(Leader { meta, info, answers }),
            None => {
                let said = answers.iter().map(describe).collect();
                if answers.iter().any(|a| matches!(a.role, Role::Follower { .. })) {
                    Err(Error::AllFollowers { answers: said })
                } else {
                    Err(Error::NoMetaReachable { answers: said })
                }
            }
        }
    }

    /// Asks each follower's HTTP port where the leader is and calls it.
    async fn follow_http(&self, answers: &mut Vec<MetaAnswer>) -> Option<(String, ClusterInfoResponse)> {
        let followers: Vec<String> =
            answers.iter().filter(|a| matches!(a.role, Role::Follower { .. })).map(|a| a.meta.clone()).collect();
        for follower in followers {
            let Ok(answer) = crate::http::get(&follower, "/meta/cluster", self.timeout).await else { continue };
            let named = match answer.status {
                300..=399 => answer.location.as_deref().and_then(crate::http::location_host),
                200 => crate::http::cluster_entries(&answer.body)
                    .and_then(|e| e.into_iter().find(|(k, _)| k == "primary_meta_server").map(|(_, v)| v)),
                _ => None,
            };
            let Some(named) = named.and_then(|n| normalize(&n).ok()) else { continue };
            if let Some(a) = answers.iter().find(|a| a.meta == named) {
                // Already asked; it did not answer as the leader.
                if a.role != Role::Leader {
                    continue;
                }
            }
            let result = self.cluster_info_at(&named).await;
            let role = classify(&result);
            answers.push(MetaAnswer { meta: named.clone(), role: role.clone(), named_by: Some(follower) });
            if role == Role::Leader {
                return Some((named, result.expect("a leader answered")));
            }
        }
        None
    }

    /// control_meta at `meta`: sets `level` (or queries, with
    /// [`Level::Invalid`]) and returns the level before.
    pub async fn control_meta(&self, meta: &str, level: Level) -> Result<Level> {
        let r = self.call(meta, m::RPC_CM_CONTROL_META, m::control_meta_request(level), m::read_control_meta).await?;
        check(meta, m::RPC_CM_CONTROL_META, &r.err)?;
        Level::from_code(r.old_level).ok_or(Error::UnknownLevelValue { meta: meta.to_string(), value: r.old_level })
    }

    /// The level stored at `meta` (control_meta with `invalid`).
    pub async fn query_level(&self, meta: &str) -> Result<Level> {
        self.control_meta(meta, Level::Invalid).await
    }

    /// Sets the leader's level: finds the leader, reads the level, sets it,
    /// reads it again and checks it took.
    pub async fn set_level(&self, level: Level) -> Result<LevelChange> {
        if level == Level::Invalid {
            return Err(crate::level::UnknownLevel(level.name().to_string()).into());
        }
        let leader = self.find_leader().await?;
        let meta = leader.meta;
        let old = self.query_level(&meta).await?;
        self.control_meta(&meta, level).await?;
        let new = self.query_level(&meta).await?;
        if new != level {
            return Err(Error::LevelNotTaken {
                meta,
                old: old.to_string(),
                wanted: level.to_string(),
                now: new.to_string(),
            });
        }
        let reported =
            self.cluster_info_at(&meta).await.ok().and_then(|i| i.get("meta_function_level").map(str::to_string));
        Ok(LevelChange { meta, old, new, reported })
    }

    /// Every replica server the meta knows.
    pub async fn list_nodes(&self, meta: &str) -> Result<Vec<m::NodeInfo>> {
        let r = self.call(meta, m::RPC_CM_LIST_NODES, m::list_nodes_request(m::NS_INVALID), m::read_list_nodes).await?;
        check(meta, m::RPC_CM_LIST_NODES, &r.err)?;
        Ok(r.infos)
    }

    /// RPC_CM_START_RECOVERY at `meta`: a meta started with `[meta_server]
    /// recover_from_replica_server = true` rebuilds its apps and partitions
    /// in its (empty) ZooKeeper from the replica servers in `req`. The
    /// reply's `err` and hint are the caller's to judge (ERR_OK, or
    /// ERR_SERVICE_ALREADY_RUNNING, ERR_TRY_AGAIN, ...); a follower's
    /// ERR_FORWARD_TO_OTHERS is [`Error::Handler`], and a meta without the
    /// RPC is [`Error::Transport`] (ERR_HANDLER_NOT_FOUND).
    pub async fn start_recovery(&self, meta: &str, req: &m::RecoveryRequest) -> Result<m::RecoveryReply> {
        let r =
            self.call(meta, m::RPC_CM_START_RECOVERY, m::start_recovery_request(req), m::read_start_recovery).await?;
        if r.err == ERR_FORWARD_TO_OTHERS {
            check(meta, m::RPC_CM_START_RECOVERY, &r.err)?;
        }
        Ok(r)
    }

    /// Every app, whatever its status.
    pub async fn list_apps(&self, meta: &str) -> Result<Vec<m::AppInfo>> {
        let r = self.call(meta, m::RPC_CM_LIST_APPS, m::list_apps_request(m::AS_INVALID), m::read_list_apps).await?;
        check(meta, m::RPC_CM_LIST_APPS, &r.err)?;
        Ok(r.infos)
    }
}

/// A handler error as [`Error::Handler`].
pub(crate) fn check(meta: &str, rpc: &str, err: &str) -> Result<()> {
    if err == frame::ERR_OK {
        Ok(())
    } else {
        Err(Error::Handler { meta: meta.to_string(), rpc: rpc.to_string(), code: err.to_string() })
    }
}

fn classify(result: &Result<ClusterInfoResponse>) -> Role {
    match result {
        Ok(info) if info.err == frame::ERR_OK => Role::Leader,
        Ok(info) => Role::Follower { code: info.err.clone() },
        Err(e) if e.is_down() => Role::Down { reason: e.to_string() },
        Err(e @ Error::NotAMeta { .. }) => Role::NotAMeta { reason: e.to_string() },
        Err(e) => Role::Failed { reason: e.to_string() },
    }
}

fn describe(a: &MetaAnswer) -> String {
    match &a.role {
        Role::Leader => format!("{} leader", a.meta),
        Role::Follower { code } => format!("{} answered {code}", a.meta),
        Role::Down { reason } | Role::NotAMeta { reason } | Role::Failed { reason } => reason.clone(),
    }
}

/// Sends one request and reads one length-prefixed reply.
async fn exchange(meta: &str, rpc: &str, request: &[u8]) -> Result<Vec<u8>> {
    let name = || meta.to_string();
    let mut s = TcpStream::connect(meta).await.map_err(|e| match e.kind() {
        ErrorKind::ConnectionRefused => Error::Refused { meta: name() },
        _ => Error::Unreachable { meta: name(), source: e },
    })?;
    let closed = |why: &str| Error::NotAMeta { meta: name(), why: why.to_string() };
    if let Err(e) = s.write_all(request).await {
        return Err(match e.kind() {
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => closed("it closed the connection on the request"),
            _ => Error::Unreachable { meta: name(), source: e },
        });
    }
    let mut prefix = [0u8; 4];
    let got = read_full(&mut s, &mut prefix).await.map_err(|e| Error::Unreachable { meta: name(), source: e })?;
    match got {
        0 => return Err(closed("it closed the connection without a reply")),
        1..=3 => return Err(closed(&format!("it sent {got} bytes and closed the connection"))),
        _ => {}
    }
    let total = match frame::reply_length(prefix) {
        Ok(n) => n,
        Err(LengthError::TooShort(n)) => return Err(closed(&format!("its reply length {n} is too short"))),
        Err(LengthError::TooLong(_)) if prefix.iter().all(|b| b.is_ascii_graphic() || *b == b' ') => {
            return Err(closed(&format!("it answered text ({:?}...)", String::from_utf8_lossy(&prefix))));
        }
        Err(LengthError::TooLong(len)) => {
            return Err(Error::Oversized { meta: name(), rpc: rpc.to_string(), len, limit: frame::MAX_REPLY });
        }
    };
    let mut body = vec![0u8; total - 4];
    let got = read_full(&mut s, &mut body).await.map_err(|e| Error::Unreachable { meta: name(), source: e })?;
    if got < body.len() {
        return Err(Error::Truncated { meta: name(), rpc: rpc.to_string(), got: 4 + got, expected: total });
    }
    Ok(body)
}

/// Reads until `buf` is full or the peer closes; returns the bytes read. A
/// reset counts as a close.
async fn read_full(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match s.read(&mut buf[n..]).await {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
