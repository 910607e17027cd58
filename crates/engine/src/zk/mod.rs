//! ZooKeeper plumbing: paths, connect strings and credentials, secure
//! connections, sessions.

pub mod path;
pub mod secure;
pub mod session;
pub mod target;
