//! ACLs already read, reused while the node's stat proves them current.
//!
//! A node's ACL changes only by setACL, which raises its `aversion`; a node
//! deleted and created again gets a new `czxid`. So the ACL getACL returned
//! with a stat still holds for any later read of the same path whose stat
//! has the same `czxid` and `aversion`: the reader then skips the getACL
//! (one request per node, the cost that bounds every ACL-preserving pass).
//! Anything else (a new node, a recreated one, an ACL set since) is read
//! with getACL, as without a memo.
//!
//! Kept per tree (one ensemble, one chroot): paths are keyed by a 128-bit
//! hash under keys drawn at random for this process, so no tree can be made
//! to collide on purpose; an entry is 24 bytes plus the map's overhead
//! (about 40 MB per million nodes), and the memo starts over once it holds
//! `limit` entries (deleted paths are never removed one by one).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use zookeeper_client as zk;

use crate::node::AclEntry;

/// The default most entries: a tree of a few million nodes.
pub const DEFAULT_LIMIT: usize = 4_000_000;

#[derive(Clone, Copy)]
struct Entry {
    czxid: i64,
    aversion: i32,
    acl: u32,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<u128, Entry>,
    /// Every distinct ACL list seen, in the order read; entries point here.
    acls: Vec<Vec<zk::Acl>>,
    index: HashMap<Vec<AclEntry>, u32>,
}

/// ACLs read from one tree, by path, with the stat they were read with.
pub struct AclMemo {
    keys: (RandomState, RandomState),
    inner: Mutex<Inner>,
    limit: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    resets: AtomicU64,
}

impl AclMemo {
    pub fn new(limit: usize) -> AclMemo {
        AclMemo {
            keys: (RandomState::new(), RandomState::new()),
            inner: Mutex::new(Inner::default()),
            limit: limit.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            resets: AtomicU64::new(0),
        }
    }

    fn key(&self, path: &str) -> u128 {
        let a = self.keys.0.hash_one(path) as u128;
        let b = self.keys.1.hash_one(path) as u128;
        (a << 64) | b
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ACL of `path` if it was read with this stat's `czxid` and
    /// `aversion` (so it is still the node's ACL).
    pub fn get(&self, path: &str, stat: &zk::Stat) -> Option<Vec<zk::Acl>> {
        let key = self.key(path);
        let inner = self.lock();
        let found = inner
            .entries
            .get(&key)
            .filter(|e| e.czxid == stat.czxid && e.aversion == stat.aversion)
            .map(|e| inner.acls[e.acl as usize].clone());
        drop(inner);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Records `acl` as getACL returned it for `path`, with the stat it
    /// came with.
    pub fn put(&self, path: &str, stat: &zk::Stat, acl: &[zk::Acl]) {
        let key = self.key(path);
        let canonical: Vec<AclEntry> = acl.iter().map(AclEntry::from_zk).collect();
        let mut inner = self.lock();
        if inner.entries.len() >= self.limit && !inner.entries.contains_key(&key) {
            *inner = Inner::default();
            self.resets.fetch_add(1, Ordering::Relaxed);
        }
        let id = match inner.index.get(&canonical) {
            Some(id) => *id,
            None => {
                let id = inner.acls.len() as u32;
                inner.acls.push(acl.to_vec());
                inner.index.insert(canonical, id);
                id
            }
        };
        inner.entries.insert(key, Entry { czxid: stat.czxid, aversion: stat.aversion, acl: id });
    }

    /// ACLs taken from the memo, and looked up and not found (read).
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Times the memo was full and started over.
    #[cfg(test)]
    fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_stat;

    fn stat(czxid: i64, aversion: i32) -> zk::Stat {
        let mut s = test_stat(0, 0, 1, 0);
        s.czxid = czxid;
        s.aversion = aversion;
        s
    }

    fn acl(perm: zk::Permission) -> Vec<zk::Acl> {
        vec![zk::Acl::new(perm, zk::AuthId::anyone())]
    }

    #[test]
    fn an_acl_holds_only_for_the_same_node_and_acl_version() {
        let m = AclMemo::new(10);
        m.put("/a", &stat(7, 0), &acl(zk::Permission::ALL));
        assert_eq!(m.get("/a", &stat(7, 0)), Some(acl(zk::Permission::ALL)));
        assert_eq!(m.get("/a", &stat(7, 1)), None, "an ACL set since");
        assert_eq!(m.get("/a", &stat(9, 0)), None, "the node created again");
        assert_eq!(m.get("/b", &stat(7, 0)), None, "another path");
        m.put("/a", &stat(7, 1), &acl(zk::Permission::READ));
        assert_eq!(m.get("/a", &stat(7, 1)), Some(acl(zk::Permission::READ)));
        assert_eq!(m.get("/a", &stat(7, 0)), None, "the old version is gone");
        assert_eq!(m.hits_and_misses(), (2, 4));
    }

    #[test]
    fn a_full_memo_starts_over() {
        let m = AclMemo::new(2);
        m.put("/a", &stat(1, 0), &acl(zk::Permission::ALL));
        m.put("/b", &stat(2, 0), &acl(zk::Permission::ALL));
        m.put("/b", &stat(2, 1), &acl(zk::Permission::ALL));
        assert_eq!(m.len(), 2, "an update of a known path does not count");
        m.put("/c", &stat(3, 0), &acl(zk::Permission::ALL));
        assert_eq!((m.len(), m.resets()), (1, 1));
        assert_eq!(m.get("/a", &stat(1, 0)), None);
        assert!(m.get("/c", &stat(3, 0)).is_some());
    }
}
