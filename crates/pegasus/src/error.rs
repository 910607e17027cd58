//! Typed errors. Messages say what happened and at which meta server; the
//! command line adds which option changes it.

use std::time::Duration;

use crate::thrift::DecodeError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No meta server address was given.
    #[error("no meta server address given")]
    NoMetas,
    /// An address that is not `host[:port]`.
    #[error("bad meta server address {addr:?}: {why}")]
    BadAddress { addr: String, why: String },
    /// A level name that cannot be set.
    #[error(transparent)]
    UnknownLevel(#[from] crate::level::UnknownLevel),
    /// Nothing listens on the meta's port.
    #[error("meta server {meta} refused the connection")]
    Refused { meta: String },
    /// The meta could not be reached (name resolution, network).
    #[error("meta server {meta} unreachable: {source}")]
    Unreachable {
        meta: String,
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("meta server {meta} did not answer within {}", humanize(*after))]
    Timeout { meta: String, after: Duration },
    /// It answered, but not in the meta server's protocol.
    #[error("{meta} is not a Pegasus meta server: {why}")]
    NotAMeta { meta: String, why: String },
    /// A reply cut short.
    #[error("meta server {meta}: reply to {rpc} truncated after {got} of {expected} bytes")]
    Truncated { meta: String, rpc: String, got: usize, expected: usize },
    /// A reply longer than this client accepts.
    #[error("meta server {meta}: reply to {rpc} of {len} bytes exceeds the {limit}-byte limit")]
    Oversized { meta: String, rpc: String, len: usize, limit: usize },
    /// A reply whose framing was right and whose content was not.
    #[error("meta server {meta}: malformed reply to {rpc}: {source}")]
    Malformed {
        meta: String,
        rpc: String,
        #[source]
        source: DecodeError,
    },
    /// The meta refused the call itself (e.g. ERR_HANDLER_NOT_FOUND).
    #[error("meta server {meta} answered {rpc} with transport error {code}")]
    Transport { meta: String, rpc: String, code: String },
    /// The handler answered with an error in the response.
    #[error("meta server {meta} answered {rpc} with {code}")]
    Handler { meta: String, rpc: String, code: String },
    /// Every meta that answered said it is not the leader.
    #[error("every meta answered as a follower ({})", .answers.join("; "))]
    AllFollowers { answers: Vec<String> },
    /// No meta answered at all.
    #[error("no meta reachable ({})", .answers.join("; "))]
    NoMetaReachable { answers: Vec<String> },
    /// A level set, and the query after it saw another.
    #[error("meta server {meta}: the level was {old}, was set to {wanted}, and reads back as {now}")]
    LevelNotTaken { meta: String, old: String, wanted: String, now: String },
    /// A meta level value outside the enum.
    #[error("meta server {meta} reports unknown level value {value}")]
    UnknownLevelValue { meta: String, value: i32 },
    /// The HTTP fallback failed.
    #[error("meta server {meta}: HTTP {path}: {why}")]
    Http { meta: String, path: String, why: String },
    /// Reading the cluster's ZooKeeper failed.
    #[error("ZooKeeper {hosts}: {why}")]
    ZooKeeper { hosts: String, why: String },
}

impl Error {
    /// The meta did not answer (refused, unreachable, timed out): it is
    /// down, as far as this client can tell.
    pub fn is_down(&self) -> bool {
        matches!(self, Error::Refused { .. } | Error::Unreachable { .. } | Error::Timeout { .. })
    }

    /// The meta server does not know the RPC.
    pub fn is_handler_not_found(&self) -> bool {
        matches!(self, Error::Transport { code, .. } if code == "ERR_HANDLER_NOT_FOUND")
    }
}

/// A duration as people write it: 5s, 1500ms.
pub(crate) fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}
