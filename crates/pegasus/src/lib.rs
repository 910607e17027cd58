//! Apache Pegasus support for zkrepl: the meta-server client and the
//! procedures that move a Pegasus cluster's metadata between ZooKeeper
//! ensembles. Built on the engine's copy, verify and digest entry points.
//!
//! The client speaks the meta server's Thrift RPC ([`thrift`], [`frame`],
//! [`messages`]), finds the leader among the given metas ([`MetaClient`]),
//! and reads a cluster's status ([`status::cluster_status`]), including
//! what its ZooKeeper holds ([`zk`]). [`migrate`] moves a cluster to a new
//! ZooKeeper ensemble on the engine's copy, verify and digest, with a
//! journal, a rollback and the old tree's cleanup; [`config`] rewrites the
//! meta servers' config files byte-exactly; [`recover`] moves it by having
//! the meta rebuild its metadata from the replica servers. It never prints.

pub mod client;
pub mod config;
pub mod error;
pub mod frame;
pub mod http;
pub mod level;
pub mod messages;
pub mod migrate;
pub mod query;
pub mod recover;
pub mod status;
pub mod thrift;
pub mod zk;

pub use client::{DEFAULT_PORT, Leader, LevelChange, MetaAnswer, MetaClient, Role, parse_metas};
pub use error::{Error, Result};
pub use level::{Level, UnknownLevel};
pub use messages::{NodeInfo, RecoveryReply, RecoveryRequest};
pub use status::{ClusterStatus, Query, StatusOptions, cluster_status};

#[cfg(test)]
mod tests;
