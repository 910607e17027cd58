//! Typed errors of the library. The CLI maps them to exit codes and one-line
//! messages; every variant that concerns a node names its path and side.

use std::fmt;
use std::time::Duration;

use zookeeper_client as zk;

/// Which tree an operation touched: the source is only ever read, the
/// destination is written strictly under its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Source,
    Destination,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

impl Side {
    /// The command-line flag that carries credentials for this side.
    pub fn auth_flag(self) -> &'static str {
        match self {
            Side::Source => "--src-auth",
            Side::Destination => "--dst-auth",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid connect string {input:?}: {reason}")]
    InvalidHosts { input: String, reason: String },

    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },

    #[error("{0}")]
    Usage(String),

    #[error("cannot reach {side} ZooKeeper at {hosts} within {timeout:?}: {reason}")]
    Unreachable { side: Side, hosts: String, timeout: Duration, reason: String },

    #[error(
        "the {side} ZooKeeper at {hosts} rejected the credentials of {flag} (scheme {schemes}); the usual form is digest:user:password",
        flag = side.auth_flag()
    )]
    AuthRejected { side: Side, hosts: String, schemes: String },

    #[error("cannot connect to the {side} ZooKeeper at {hosts}: {source}")]
    ConnectFailed { side: Side, hosts: String, source: zk::Error },

    #[error("{side} root {path} does not exist")]
    NoRoot { side: Side, path: String },

    #[error("not authorized to {op} {path} on the {side} (pass credentials with {flag}, e.g. {flag} digest:user:password)", flag = side.auth_flag())]
    NoAuth { side: Side, op: &'static str, path: String },

    #[error("{op} {path} on the {side} failed: {source}")]
    Zk { side: Side, op: &'static str, path: String, source: zk::Error },

    #[error(
        "node {path} needs a {size}-byte request, more than the destination accepts ({limit} bytes, its jute.maxbuffer); raise jute.maxbuffer on the destination servers and pass --max-request-bytes"
    )]
    NodeTooLarge { path: String, size: usize, limit: usize },

    #[error(
        "the {side} hides the digest ACL of {path}: ZooKeeper shows digest ids only to sessions with ADMIN permission on the node; pass {flag} digest:USER:PASSWORD for an id with ADMIN there (or a super user){alt}",
        flag = side.auth_flag(),
        alt = if *side == Side::Source { ", or --acl open to write OPEN ACLs instead" } else { "" }
    )]
    AclMasked { side: Side, path: String },

    #[error(
        "the destination refused TTL node {path}: TTL nodes need zookeeper.extendedTypesEnabled=true on the destination servers"
    )]
    TtlUnsupported { path: String },

    #[error(
        "destination root {path} exists and has {children} children; pass --update to add and change nodes, or --mirror to also delete what the source lacks"
    )]
    DestinationNotEmpty { path: String, children: i32 },

    #[error("{0}")]
    Overlap(String),

    #[error("the {side} session could not be re-established: {reason}")]
    SessionLost { side: Side, reason: String },

    #[error("interrupted")]
    Interrupted,

    /// An invariant between the engine's parts did not hold.
    #[error("internal error: {0}")]
    Internal(String),

    #[error("{0}")]
    Snapshot(String),

    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps a ZooKeeper error for a node, turning NoAuth into its own,
    /// actionable variant.
    pub fn zk(side: Side, op: &'static str, path: &str, source: zk::Error) -> Error {
        match source {
            zk::Error::NoAuth => Error::NoAuth { side, op, path: path.to_string() },
            source => Error::Zk { side, op, path: path.to_string(), source },
        }
    }
}

/// Errors after which the outcome of a request is unknown but the session is
/// alive: retry reads, reconcile writes.
pub fn is_transient(err: &zk::Error) -> bool {
    match err {
        zk::Error::ConnectionLoss | zk::Error::Timeout | zk::Error::Throttled => true,
        zk::Error::Custom(_) => !custom_is_permanent(err),
        _ => false,
    }
}

/// Errors that no retry can change: a request or connection the client
/// itself refuses (bad arguments, a CA, certificate or key it cannot use).
pub fn is_permanent(err: &zk::Error) -> bool {
    match err {
        zk::Error::BadArguments(_) | zk::Error::InvalidAcl | zk::Error::MarshallingError => true,
        zk::Error::Custom(_) => custom_is_permanent(err),
        _ => false,
    }
}

/// The client's own custom errors: most are I/O failures of a connection
/// or a silent server ("no response from connection"), which heal by
/// reconnecting. The ones that name a set-up problem (reading a CA,
/// certificate or key, TLS configuration, re-establishing a read-only
/// session) do not; any other is taken as transient, the safe side.
fn custom_is_permanent(err: &zk::Error) -> bool {
    const SET_UP: [&str; 6] = [
        "fail to read",
        "fail to set tls",
        "fail to create tls",
        "invalid client private key",
        "no valid tls trust anchor",
        "can't reestablish",
    ];
    let shown = err.to_string();
    SET_UP.iter().any(|m| shown.starts_with(m))
}

/// Errors after which the session is gone for good: a new one is needed.
pub fn is_session_lost(err: &zk::Error) -> bool {
    matches!(err, zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::NoHosts | zk::Error::SessionMoved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_up_errors_are_permanent_connection_problems_transient() {
        assert!(is_permanent(&zk::Error::BadArguments(&"no client private key")));
        assert!(!is_transient(&zk::Error::BadArguments(&"no client private key")));
        for e in [zk::Error::ConnectionLoss, zk::Error::Timeout] {
            assert!(is_transient(&e) && !is_permanent(&e), "{e}");
        }
        assert!(!is_permanent(&zk::Error::NoNode) && !is_transient(&zk::Error::NoNode));
    }
}
