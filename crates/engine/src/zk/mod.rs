//! ZooKeeper plumbing: paths, connect strings and credentials, sessions.

pub mod path;
pub mod session;
pub mod target;
