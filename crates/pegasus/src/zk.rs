//! What the cluster's ZooKeeper holds that a migration must check: whether
//! `<zookeeper_root>/apps` is locked mid-update, and the leader lock's
//! nodes. Only read.

use std::time::Duration;

use serde::Serialize;
use zkrepl::Side;
use zkrepl::zk::secure::Access;
use zookeeper_client as zk;

use crate::query::Query;

/// The child of the lock path that holds the leader election's nodes
/// (`_primary_lock_id` in src/meta/meta_server_failure_detector.cpp).
pub const LEADER_LOCK: &str = "dsn.meta.server.leader";

/// The leader-lock path when none is given: `<zookeeper_root>/lock`, as in
/// the sample config (cluster_root `/pegasus/<cluster>`,
/// distributed_lock_service_parameters `/pegasus/<cluster>/lock`). The meta
/// server itself has no default: the config must name it.
pub fn default_lock_path(zookeeper_root: &str) -> String {
    join(zookeeper_root, "lock")
}

/// `parent/child`, with one slash.
pub fn join(parent: &str, child: &str) -> String {
    format!("{}/{child}", parent.trim_end_matches('/'))
}

/// How the procedures reach ZooKeeper (credentials, TLS, SASL): the
/// ensemble the cluster runs on (`old`: a migration's source) and the one
/// it moves to (`new`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZkAccess {
    pub old: Access,
    pub new: Access,
}

impl ZkAccess {
    /// The same access on both ensembles.
    pub fn both(access: Access) -> ZkAccess {
        ZkAccess { old: access.clone(), new: access }
    }

    /// How to reach `hosts`: as the new ensemble when it names the servers
    /// of `new_hosts` (in any order), as the old one otherwise.
    pub fn of(&self, hosts: &str, new_hosts: &str) -> (Side, &Access) {
        if crate::migrate::checks::same_hosts(hosts, new_hosts) {
            (Side::Destination, &self.new)
        } else {
            (Side::Source, &self.old)
        }
    }
}

/// Why a session could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    /// No member took a session within the timeout. Otherwise the
    /// ensemble answered and refused (credentials, TLS, SASL), or the
    /// connect string is wrong: an answer, which a check must not take for
    /// an ensemble that is down.
    pub unreachable: bool,
    pub message: String,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ConnectError> for String {
    fn from(e: ConnectError) -> String {
        e.message
    }
}

/// A session on `hosts` (its member synced), tried until `timeout`: what
/// no retry changes (a TLS or SASL problem, bad credentials) fails at once,
/// told as the engine tells it.
pub async fn connect(hosts: &str, side: Side, access: &Access, timeout: Duration) -> Result<zk::Client, ConnectError> {
    open(hosts, side, access, timeout, false).await
}

/// [`connect`] for a session that replaces one lost mid-procedure: a TLS
/// or Kerberos problem is retried until `timeout` too (a member going down
/// can look like one).
pub async fn reconnect(
    hosts: &str,
    side: Side,
    access: &Access,
    timeout: Duration,
) -> Result<zk::Client, ConnectError> {
    open(hosts, side, access, timeout, true).await
}

async fn open(
    hosts: &str,
    side: Side,
    access: &Access,
    timeout: Duration,
    again: bool,
) -> Result<zk::Client, ConnectError> {
    let refused = |message: String| ConnectError { unreachable: false, message };
    let parsed = zkrepl::zk::target::Hosts::parse(hosts).map_err(|e| refused(e.to_string()))?;
    let mut o = zkrepl::zk::session::ConnectOptions::new(side, parsed);
    o.access = access.clone();
    o.connect_timeout = timeout;
    o.session_timeout = timeout.max(Duration::from_secs(4));
    let o = std::sync::Arc::new(o);
    let session = match again {
        true => zkrepl::zk::session::Session::reconnect(o).await,
        false => zkrepl::zk::session::Session::connect(o).await,
    };
    match session {
        Ok(s) => Ok(s.client().1),
        Err(e) => Err(ConnectError {
            unreachable: matches!(e, zkrepl::Error::Unreachable { .. } | zkrepl::Error::SessionLost { .. }),
            message: e.to_string(),
        }),
    }
}

/// The `apps` node: its data says whether a meta is mid-update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppsNode {
    Unlock,
    /// A meta is mid-update, or stopped mid-update (a meta that starts and
    /// finds `lock` aborts).
    Lock,
    Missing,
    Other(String),
}

/// One node of the leader lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockNode {
    pub name: String,
    /// `host:port` of the meta holding it.
    pub data: String,
    pub ephemeral: bool,
}

/// What the cluster's ZooKeeper says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZkState {
    pub hosts: String,
    pub apps_path: String,
    pub apps: Query<AppsNode>,
    pub leader_lock_path: String,
    /// `None` when the path does not exist.
    pub lock_nodes: Query<Option<Vec<LockNode>>>,
}

/// Reads the apps node and the leader lock's children.
pub async fn read_state(hosts: &str, access: &Access, root: &str, lock_path: &str, timeout: Duration) -> ZkState {
    let apps_path = join(root, "apps");
    let leader_lock_path = join(lock_path, LEADER_LOCK);
    let unknown = |why: String| ZkState {
        hosts: hosts.to_string(),
        apps_path: apps_path.clone(),
        apps: Query::Unknown(why.clone()),
        leader_lock_path: leader_lock_path.clone(),
        lock_nodes: Query::Unknown(why),
    };
    let client = match connect(hosts, Side::Source, access, timeout).await {
        Ok(c) => c,
        Err(e) => return unknown(e.message),
    };
    let read = async {
        let apps = match client.get_data(&apps_path).await {
            Ok((d, _)) => Query::Known(match d.as_slice() {
                b"unlock" => AppsNode::Unlock,
                b"lock" => AppsNode::Lock,
                other => AppsNode::Other(String::from_utf8_lossy(other).into_owned()),
            }),
            Err(zk::Error::NoNode) => Query::Known(AppsNode::Missing),
            Err(e) => Query::Unknown(format!("reading {apps_path}: {e}")),
        };
        let lock_nodes = match client.list_children(&leader_lock_path).await {
            Ok(mut names) => {
                names.sort();
                let mut nodes = Vec::new();
                for name in names {
                    let path = join(&leader_lock_path, &name);
                    match client.get_data(&path).await {
                        Ok((d, stat)) => nodes.push(LockNode {
                            name,
                            data: String::from_utf8_lossy(&d).into_owned(),
                            ephemeral: stat.ephemeral_owner != 0,
                        }),
                        Err(zk::Error::NoNode) => {}
                        Err(e) => return (apps, Query::Unknown(format!("reading {path}: {e}"))),
                    }
                }
                Query::Known(Some(nodes))
            }
            Err(zk::Error::NoNode) => Query::Known(None),
            Err(e) => Query::Unknown(format!("listing {leader_lock_path}: {e}")),
        };
        (apps, lock_nodes)
    };
    match tokio::time::timeout(timeout, read).await {
        Ok((apps, lock_nodes)) => ZkState {
            hosts: hosts.to_string(),
            apps_path: apps_path.clone(),
            apps,
            leader_lock_path: leader_lock_path.clone(),
            lock_nodes,
        },
        Err(_) => unknown(format!("ZooKeeper {hosts} did not answer within {}", crate::error::humanize(timeout))),
    }
}
