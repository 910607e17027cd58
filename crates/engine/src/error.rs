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

/// How the destination root relates to the source root when the two are on
/// one ensemble.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapKind {
    /// The same node.
    Same,
    /// The destination root lies inside the source tree.
    Inside,
    /// The destination root contains the source root.
    Contains,
}

/// What the engine's operations fail with. Every variant that concerns a
/// node names its path and side; those that come from a ZooKeeper answer
/// keep it ([`Error::zk_error`]). Messages describe what happened, not
/// which option of which program changes it: a caller adds that.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid connect string {input:?}: {reason}")]
    InvalidHosts { input: String, reason: String },

    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },

    /// An argument the engine cannot use (an option value, a credential's
    /// form, a glob).
    #[error("{0}")]
    Usage(String),

    #[error("cannot reach {side} ZooKeeper at {hosts} within {timeout:?}: {reason}")]
    Unreachable { side: Side, hosts: String, timeout: Duration, reason: String },

    #[error("the {side} ZooKeeper at {hosts} rejected the credentials ({schemes})")]
    AuthRejected { side: Side, hosts: String, schemes: String },

    /// TLS to a member fails for a reason no retry changes.
    #[error("the {side} ZooKeeper at {member} {problem}")]
    Tls { side: Side, member: String, problem: crate::zk::secure::TlsProblem },

    /// Kerberos (SASL GSSAPI) cannot start: no ticket, or none for the
    /// servers' principal.
    #[error("Kerberos to the {side} ZooKeeper at {member} cannot start (principal {principal}): {reason}")]
    Kerberos { side: Side, member: String, principal: String, reason: String },

    #[error("cannot connect to the {side} ZooKeeper at {hosts}: {source}")]
    ConnectFailed { side: Side, hosts: String, source: zk::Error },

    #[error("{side} root {path} does not exist")]
    NoRoot { side: Side, path: String },

    #[error("not authorized to {op} {path} on the {side}")]
    NoAuth { side: Side, op: &'static str, path: String },

    #[error("{op} {path} on the {side} failed: {source}")]
    Zk { side: Side, op: &'static str, path: String, source: zk::Error },

    #[error(
        "node {path} needs a {size}-byte request, more than the destination accepts ({limit} bytes, its jute.maxbuffer)"
    )]
    NodeTooLarge { path: String, size: usize, limit: usize },

    #[error(
        "the {side} hides the digest ACL of {path}: ZooKeeper shows digest ids only to sessions with ADMIN permission on the node"
    )]
    AclMasked { side: Side, path: String },

    #[error(
        "the destination refused TTL node {path}: TTL nodes need zookeeper.extendedTypesEnabled=true on the destination servers"
    )]
    TtlUnsupported { path: String },

    #[error("destination root {path} exists and has {children} children")]
    DestinationNotEmpty { path: String, children: i32 },

    #[error("destination root {dst_root} {} on the same ensemble", relation.describe(src_root))]
    Overlap { src_root: String, dst_root: String, relation: OverlapKind },

    #[error("{side} root {path} is an ephemeral node: nothing to copy")]
    EphemeralRoot { side: Side, path: String },

    #[error("destination {path} is an ephemeral node of a live session; the persistent source node cannot replace it")]
    EphemeralInTheWay { path: String },

    #[error(
        "the mirror would delete {deletes} destination nodes, more than the limit of {limit}; {}",
        done(*others_applied, "deleted")
    )]
    DeleteLimit { deletes: u64, limit: u64, others_applied: bool },

    #[error(
        "the copy would write {pads} counter pads (a create and a delete each, raising {parents} sequence counters), more than the limit of {limit}; {}",
        done(*others_applied, "padded")
    )]
    PadLimit { pads: u64, parents: u64, limit: u64, others_applied: bool },

    #[error(
        "the mirror would delete beneath destination node {path}, whose ACL lets this copy neither delete beneath it nor change it (DELETE, ADMIN); {}",
        done(*others_applied, "deleted")
    )]
    Undeletable { path: String, others_applied: bool },

    #[error("the {side} session could not be re-established: {reason}")]
    SessionLost { side: Side, reason: String },

    #[error("interrupted")]
    Interrupted,

    #[error(
        "the destination is {:.1}s behind the source ({pending} changed paths pending), more than the limit of {:.1}s",
        behind.as_secs_f64(),
        limit.as_secs_f64()
    )]
    Lag { behind: std::time::Duration, limit: std::time::Duration, pending: usize },

    /// An invariant between the engine's parts did not hold.
    #[error("internal error: {0}")]
    Internal(String),

    #[error("{0}")]
    Snapshot(String),

    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl OverlapKind {
    fn describe(self, src_root: &str) -> String {
        match self {
            OverlapKind::Same => "is the source root".to_string(),
            OverlapKind::Inside => format!("lies inside the source root {src_root}"),
            OverlapKind::Contains => format!("contains the source root {src_root}"),
        }
    }
}

/// The end of a refusal's message: whether anything was written.
fn done(others_applied: bool, what: &str) -> String {
    if others_applied {
        format!("nothing was {what} (the other changes were applied)")
    } else {
        "nothing was written".to_string()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The tree the error concerns, when it concerns one.
    pub fn side(&self) -> Option<Side> {
        match self {
            Error::Unreachable { side, .. }
            | Error::AuthRejected { side, .. }
            | Error::ConnectFailed { side, .. }
            | Error::NoRoot { side, .. }
            | Error::NoAuth { side, .. }
            | Error::Zk { side, .. }
            | Error::AclMasked { side, .. }
            | Error::EphemeralRoot { side, .. }
            | Error::SessionLost { side, .. } => Some(*side),
            Error::NodeTooLarge { .. }
            | Error::TtlUnsupported { .. }
            | Error::DestinationNotEmpty { .. }
            | Error::Overlap { .. }
            | Error::EphemeralInTheWay { .. }
            | Error::DeleteLimit { .. }
            | Error::PadLimit { .. }
            | Error::Undeletable { .. } => Some(Side::Destination),
            _ => None,
        }
    }

    /// The node the error concerns, when it concerns one (a path inside
    /// the side's chroot).
    pub fn path(&self) -> Option<&str> {
        match self {
            Error::InvalidPath { path, .. }
            | Error::NoRoot { path, .. }
            | Error::NoAuth { path, .. }
            | Error::Zk { path, .. }
            | Error::NodeTooLarge { path, .. }
            | Error::AclMasked { path, .. }
            | Error::TtlUnsupported { path }
            | Error::DestinationNotEmpty { path, .. }
            | Error::EphemeralRoot { path, .. }
            | Error::EphemeralInTheWay { path }
            | Error::Undeletable { path, .. } => Some(path),
            Error::Overlap { dst_root, .. } => Some(dst_root),
            _ => None,
        }
    }

    /// The ZooKeeper answer behind the error, when there is one
    /// (`NoAuth` is ZooKeeper's NOAUTH).
    pub fn zk_error(&self) -> Option<&zk::Error> {
        match self {
            Error::Zk { source, .. } | Error::ConnectFailed { source, .. } => Some(source),
            Error::NoAuth { .. } => Some(&zk::Error::NoAuth),
            _ => None,
        }
    }

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
pub(crate) fn is_transient(err: &zk::Error) -> bool {
    match err {
        zk::Error::ConnectionLoss | zk::Error::Timeout | zk::Error::Throttled => true,
        zk::Error::Custom(_) => !custom_is_permanent(err),
        _ => false,
    }
}

/// Errors that no retry can change: a request or connection the client
/// itself refuses (bad arguments, a CA, certificate or key it cannot use).
pub(crate) fn is_permanent(err: &zk::Error) -> bool {
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
pub(crate) fn is_session_lost(err: &zk::Error) -> bool {
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
