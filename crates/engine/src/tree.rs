//! What the entry points are given: trees to reach, how long to wait for
//! them, and how to read them. The entry points open their own sessions
//! from these.

use std::fmt;
use std::time::Duration;

use crate::error::{Result, Side};
use crate::zk::path;
use crate::zk::secure::Access;
use crate::zk::session::ConnectOptions;
use crate::zk::target::{Auth, Hosts};

/// One tree: an ensemble (a connect string, with an optional chroot), how
/// to reach it (credentials, TLS, SASL), and a root path inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    pub hosts: Hosts,
    /// Root of the tree, inside the chroot of `hosts`.
    pub root: String,
    /// Credentials, TLS and SASL, applied on every session and again on
    /// every reconnect.
    pub access: Access,
    /// A snapshot file of this tree's ensemble (`dataDir/version-2/
    /// snapshot.*`): a node's ACL is taken from it, not read with getACL,
    /// where the live stat shows the same node (creation zxid and time) and
    /// no setACL since (ACL version). Every other node is read live.
    pub snapshot: Option<std::path::PathBuf>,
}

impl Tree {
    /// A tree from a connect string (`host:port[,host:port...][/chroot]`)
    /// and a root path, both checked.
    pub fn new(connect_string: &str, root: &str) -> Result<Tree> {
        path::validate(root)?;
        Ok(Tree {
            hosts: Hosts::parse(connect_string)?,
            root: root.to_string(),
            access: Access::default(),
            snapshot: None,
        })
    }

    /// The same tree, its ACLs taken from the snapshot `file` of its
    /// ensemble where the live stat proves them current.
    pub fn with_snapshot(mut self, file: impl Into<std::path::PathBuf>) -> Tree {
        self.snapshot = Some(file.into());
        self
    }

    /// The same tree, with one more credential.
    pub fn with_auth(mut self, auth: Auth) -> Tree {
        self.access.auth.push(auth);
        self
    }

    /// The same tree, reached with `access` (its credentials, TLS and SASL
    /// in place of any given before).
    pub fn with_access(mut self, access: Access) -> Tree {
        self.access = access;
        self
    }

    /// The ACL ids this tree's credentials authenticate as, where they are
    /// known before connecting (digest, SASL DIGEST-MD5).
    pub fn acl_ids(&self) -> Vec<(String, String)> {
        self.access.known_ids()
    }

    /// The root as the server sees it (chroot and root joined).
    pub fn absolute_root(&self) -> String {
        self.hosts.absolute(&self.root)
    }

    /// How sessions on this tree are opened, for `side`.
    pub fn connect_options(&self, side: Side, timeouts: &Timeouts) -> ConnectOptions {
        let mut o = ConnectOptions::new(side, self.hosts.clone());
        o.access = self.access.clone();
        o.connect_timeout = timeouts.connect;
        o.session_timeout = timeouts.session;
        o.retry_timeout = timeouts.retry;
        o
    }
}

impl fmt::Display for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.hosts.host_list(), self.root)
    }
}

/// How long to wait for servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Give up connecting (or reconnecting) after this long.
    pub connect: Duration,
    /// Session timeout asked of the servers.
    pub session: Duration,
    /// Give up an operation whose requests keep failing with a lost
    /// connection for this long.
    pub retry: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(10), session: Duration::from_secs(10), retry: Duration::from_secs(60) }
    }
}

/// How a tree is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadSettings {
    /// Sessions per tree (getACL has no batched form: more sessions, more
    /// ACL reads per second). All are pinned to one member.
    pub sessions: usize,
    /// Nodes per read request (and names per listing request).
    pub batch: usize,
    /// Read requests in flight per tree.
    pub window: usize,
    /// Use multiRead where the server has it (ZooKeeper 3.6 and later);
    /// off: pipelined single reads.
    pub multi_read: bool,
}

impl Default for ReadSettings {
    fn default() -> Self {
        ReadSettings { sessions: 8, batch: 1000, window: 8, multi_read: true }
    }
}

/// 64 bits from the OS random source.
pub(crate) fn random_u64() -> u64 {
    getrandom::u64().expect("the operating system's random source (getrandom) failed")
}

/// The one-time identity of a copy: a digest credential made from the OS
/// random source (a 64-bit user name, a 192-bit password) that only the
/// copy's writer session presents. Temporary grants on nodes whose ACL
/// would stop the copy go to this identity, so they open nothing to anyone
/// else. A failed copy returns it: the call that finishes the job presents
/// it again (see [`crate::copy::CopyRequest::resume`]).
#[derive(Clone, PartialEq, Eq)]
pub struct RunCredential {
    auth: Auth,
}

impl RunCredential {
    /// A new identity. A copy makes its own; a driver that must record the
    /// identity before the copy starts (a journal that survives a crash)
    /// makes it here and hands it to the copy as
    /// [`crate::copy::CopyRequest::resume`].
    pub fn generate() -> RunCredential {
        let word = || format!("{:016x}", random_u64());
        let credential = format!("zkrepl-{}:{}{}{}", word(), word(), word(), word());
        RunCredential { auth: Auth { scheme: "digest".to_string(), credential } }
    }

    /// An identity given back, as `user:password` (the form
    /// [`RunCredential::credential`] shows).
    pub fn from_credential(credential: &str) -> Result<RunCredential> {
        Ok(RunCredential { auth: Auth::parse(&format!("digest:{credential}"))? })
    }

    /// The credential a session presents (scheme digest).
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// `user:password`: a secret; whoever holds it can open the nodes that
    /// still carry the grant.
    pub fn credential(&self) -> &str {
        &self.auth.credential
    }

    /// The ACL id, `("digest", "user:base64(sha1(user:password))")`.
    pub fn acl_id(&self) -> (String, String) {
        ("digest".to_string(), crate::zk::target::digest_id(&self.auth.credential))
    }
}

impl fmt::Debug for RunCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.auth.credential.split(':').next().unwrap_or("");
        write!(f, "RunCredential({user}:***)")
    }
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
