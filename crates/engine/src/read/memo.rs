//! ACLs already read, reused while the node's stat proves them current.
//!
//! A node's ACL changes only by setACL, which raises its `aversion`; a node
//! deleted and created again gets a new `czxid` and `ctime`. So the ACL
//! getACL returned with a stat still holds for any later read of the same
//! path whose stat has the same `czxid`, `ctime` and `aversion`: the reader
//! then skips the getACL (one request per node, the cost that bounds every
//! ACL-preserving pass). Anything else (a new node, a recreated one, an ACL
//! set since) is read with getACL, as without a memo.
//!
//! A server's snapshot file holds the same facts for every node (its ACL
//! and the stat it had when written): [`AclMemo::load_snapshot`] fills the
//! memo from one, so a pass reads live only the ACLs of nodes created or
//! changed since. The creation time is compared with the zxid because
//! zxids alone do not tell ensembles apart: two ensembles given the same
//! history assign the same zxids, never the same milliseconds.
//!
//! Kept per tree (one ensemble, one chroot): paths are keyed by a 128-bit
//! hash under keys drawn at random for this process, so no tree can be made
//! to collide on purpose; an entry is a 16-byte key and 16 bytes of entry
//! in a map that doubles as it grows (measured: about 80 MB of resident
//! memory per million nodes), and the memo starts over once it holds
//! `limit` entries (deleted paths are never removed one by one; one filled
//! from a snapshot may hold twice the snapshot's nodes).

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
    /// The node's creation, `czxid` and `ctime` hashed together.
    created: u64,
    aversion: i32,
    /// Index into `acls`; the top bit set for an entry from a snapshot.
    acl: u32,
}

const FROM_SNAPSHOT: u32 = 1 << 31;

/// Where a pass's ACLs came from, when it had a snapshot of the tree's
/// ensemble.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct AclSources {
    /// The snapshot's nodes under the root (each an entry to trust).
    pub snapshot_nodes: u64,
    /// Nodes the snapshot could not vouch for: their ACL reference missing
    /// from its ACL cache, or an ACL with permission bits ZooKeeper does
    /// not define.
    pub snapshot_unusable: u64,
    /// ACLs taken from the snapshot (the live stat matched its entry).
    pub from_snapshot: u64,
    /// ACLs read live with getACL (no entry, or its stat did not match).
    pub read: u64,
    /// Seconds spent reading the snapshot file (before the pass began).
    pub load_seconds: f64,
    /// Nodes whose ACL was set since they were created, checked against a
    /// live getACL before the pass (the same stat must mean the same ACL),
    /// and how many of them the live stat matched.
    pub spot_checked: u64,
    pub spot_matched: u64,
}

impl AclSources {
    /// These counts less `before`'s (one pass of several on one reader).
    pub fn since(&self, before: &AclSources) -> AclSources {
        AclSources {
            from_snapshot: self.from_snapshot.saturating_sub(before.from_snapshot),
            read: self.read.saturating_sub(before.read),
            ..self.clone()
        }
    }
}

/// Snapshot entries kept whole (path and ACL), for the check before a pass.
const SAMPLES: usize = 64;

/// A snapshot entry kept whole: a node whose ACL was set since it was
/// created, with the stat and ACL the snapshot gives it.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub path: String,
    pub czxid: i64,
    pub ctime: i64,
    pub aversion: i32,
    pub acl: Vec<zk::Acl>,
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
    keys: Keys,
    inner: Mutex<Inner>,
    limit: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    resets: AtomicU64,
    snapshot_hits: AtomicU64,
    snapshot_nodes: AtomicU64,
    snapshot_unusable: AtomicU64,
    load_micros: AtomicU64,
    samples: Vec<Sample>,
    spot: (AtomicU64, AtomicU64),
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
            snapshot_hits: AtomicU64::new(0),
            snapshot_nodes: AtomicU64::new(0),
            snapshot_unusable: AtomicU64::new(0),
            load_micros: AtomicU64::new(0),
            samples: Vec::new(),
            spot: (AtomicU64::new(0), AtomicU64::new(0)),
        }
    }

    fn created(&self, czxid: i64, ctime: i64) -> u64 {
        created(&self.keys, czxid, ctime)
    }

    fn key(&self, path: &str) -> u128 {
        path_key(&self.keys, path)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ACL of `path` if it was read with this stat's `czxid`, `ctime`
    /// and `aversion` (so it is still the node's ACL).
    #[cfg(test)]
    pub fn get(&self, path: &str, stat: &zk::Stat) -> Option<Vec<zk::Acl>> {
        self.get_many(&[(path, stat)]).pop().flatten()
    }

    /// [`AclMemo::get`] of each `(path, stat)`, under one lock.
    pub fn get_many(&self, nodes: &[(&str, &zk::Stat)]) -> Vec<Option<Vec<zk::Acl>>> {
        let wanted: Vec<(u128, u64, i32)> =
            nodes.iter().map(|(p, st)| (self.key(p), self.created(st.czxid, st.ctime), st.aversion)).collect();
        let inner = self.lock();
        let found: Vec<Option<(bool, Vec<zk::Acl>)>> = wanted
            .iter()
            .map(|(key, created, aversion)| {
                inner
                    .entries
                    .get(key)
                    .filter(|e| e.created == *created && e.aversion == *aversion)
                    .map(|e| (e.acl & FROM_SNAPSHOT != 0, inner.acls[(e.acl & !FROM_SNAPSHOT) as usize].clone()))
            })
            .collect();
        drop(inner);
        let hits = found.iter().flatten().count() as u64;
        let from_snapshot = found.iter().flatten().filter(|(s, _)| *s).count() as u64;
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses.fetch_add(found.len() as u64 - hits, Ordering::Relaxed);
        self.snapshot_hits.fetch_add(from_snapshot, Ordering::Relaxed);
        found.into_iter().map(|f| f.map(|(_, acl)| acl)).collect()
    }

    /// Records `acl` as getACL returned it for `path`, with the stat it
    /// came with.
    pub fn put(&self, path: &str, stat: &zk::Stat, acl: &[zk::Acl]) {
        let key = self.key(path);
        let created = self.created(stat.czxid, stat.ctime);
        let mut inner = self.lock();
        if inner.entries.len() >= self.limit && !inner.entries.contains_key(&key) {
            *inner = Inner::default();
            self.resets.fetch_add(1, Ordering::Relaxed);
        }
        let id = inner.intern(acl);
        inner.entries.insert(key, Entry { created, aversion: stat.aversion, acl: id });
    }

    /// Fills the memo from the snapshot `file` of the tree's ensemble: each
    /// node under `abs_root` (a server path) with its ACL, creation and ACL
    /// version as the snapshot holds them, keyed by its path inside
    /// `chroot` (the path the reader asks for). Read whole and its
    /// checksums verified before anything is kept; the memo's limit is
    /// raised to hold it.
    pub fn load_snapshot(&mut self, file: &std::path::Path, abs_root: &str, chroot: &str) -> crate::Result<()> {
        let started = std::time::Instant::now();
        let root = abs_root.trim_end_matches('/');
        let open = crate::node::open_acl();
        let keys = self.keys.clone();
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        *inner = Inner::default();
        // The cache comes first: each list's index, or `None` for one whose
        // live form is not known. Both callbacks fill the one memo.
        let state = std::cell::RefCell::new((inner, HashMap::<i64, Option<u32>>::new()));
        let (mut total, mut unusable) = (0u64, 0u64);
        // A reservoir of the nodes whose ACL was set since their creation.
        let mut samples: Vec<(String, i64, i64, i32, u32)> = Vec::new();
        let (mut seen, mut rng) = (0u64, crate::tree::random_u64() | 1);
        let read = crate::snapshot::for_each_acl_and_node(
            file,
            |a| {
                let (inner, lists) = &mut *state.borrow_mut();
                let id = acl_of(&a.entries).map(|acl| inner.intern(&acl));
                lists.insert(a.key, id);
                Ok(())
            },
            |n| {
                let inside = root.is_empty() || n.path == root || n.path.starts_with(&format!("{root}/"));
                let Some(rel) = strip_chroot(&n.path, chroot).filter(|_| inside) else { return Ok(()) };
                // Ephemerals are never copied; nodes made with the database
                // (`/`, `/zookeeper...`: creation zxid 0, time 0 in every
                // ensemble) cannot be told from another ensemble's.
                if n.ephemeral_owner != 0 {
                    return Ok(());
                }
                total += 1;
                if n.czxid <= 0 {
                    unusable += 1;
                    return Ok(());
                }
                let (inner, lists) = &mut *state.borrow_mut();
                // -1 is the open ACL, stored by reference only.
                let id =
                    if n.acl_id == -1 { Some(inner.intern(&open)) } else { lists.get(&n.acl_id).copied().flatten() };
                let Some(id) = id else {
                    unusable += 1;
                    return Ok(());
                };
                if n.aversion > 0 {
                    seen += 1;
                    let slot = if samples.len() < SAMPLES {
                        Some(samples.len())
                    } else {
                        // xorshift: which of the `seen` so far stays.
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        Some((rng % seen) as usize).filter(|i| *i < SAMPLES)
                    };
                    if let Some(i) = slot {
                        let sample = (rel.clone(), n.czxid, n.ctime, n.aversion, id);
                        if i == samples.len() { samples.push(sample) } else { samples[i] = sample }
                    }
                }
                let entry =
                    Entry { created: created(&keys, n.czxid, n.ctime), aversion: n.aversion, acl: id | FROM_SNAPSHOT };
                inner.entries.insert(path_key(&keys, &rel), entry);
                Ok(())
            },
        );
        let (inner, _) = state.into_inner();
        if let Err(e) = read {
            // Nothing from a file that did not read whole and verified.
            *inner = Inner::default();
            return Err(e);
        }
        let kept = inner.entries.len();
        self.samples = samples
            .into_iter()
            .map(|(path, czxid, ctime, aversion, id)| Sample {
                path,
                czxid,
                ctime,
                aversion,
                acl: inner.acls[id as usize].clone(),
            })
            .collect();
        self.limit = self.limit.max(kept * 2);
        self.snapshot_nodes.store(total, Ordering::Relaxed);
        self.snapshot_unusable.store(unusable, Ordering::Relaxed);
        self.load_micros.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Where the ACLs came from so far, for a memo filled from a snapshot.
    pub fn sources(&self) -> AclSources {
        AclSources {
            snapshot_nodes: self.snapshot_nodes.load(Ordering::Relaxed),
            snapshot_unusable: self.snapshot_unusable.load(Ordering::Relaxed),
            from_snapshot: self.snapshot_hits.load(Ordering::Relaxed),
            // Only misses went to the server (a hit on an entry read live
            // earlier, in a later pass, read nothing either).
            read: self.hits_and_misses().1,
            load_seconds: self.load_micros.load(Ordering::Relaxed) as f64 / 1e6,
            spot_checked: self.spot.0.load(Ordering::Relaxed),
            spot_matched: self.spot.1.load(Ordering::Relaxed),
        }
    }

    /// The snapshot entries to check against the server before a pass.
    pub(crate) fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Records the check: `checked` samples asked, `matched` whose live stat
    /// was the snapshot's (and whose ACL then was too).
    pub(crate) fn checked(&self, checked: u64, matched: u64) {
        self.spot.0.store(checked, Ordering::Relaxed);
        self.spot.1.store(matched, Ordering::Relaxed);
    }

    /// ACLs read with getACL outside [`AclMemo::get_many`] (a reader that
    /// learns sizes from getACL reads every ACL).
    pub(crate) fn count_read(&self, n: u64) {
        self.misses.fetch_add(n, Ordering::Relaxed);
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

type Keys = (RandomState, RandomState);

/// A path's 128-bit key.
fn path_key(keys: &Keys, path: &str) -> u128 {
    ((keys.0.hash_one(path) as u128) << 64) | keys.1.hash_one(path) as u128
}

/// A node's creation (`czxid` and `ctime`) as one hash.
fn created(keys: &Keys, czxid: i64, ctime: i64) -> u64 {
    keys.0.hash_one((czxid, ctime))
}

impl Inner {
    /// The index of `acl` in `acls`, added when new.
    fn intern(&mut self, acl: &[zk::Acl]) -> u32 {
        let canonical: Vec<AclEntry> = acl.iter().map(AclEntry::from_zk).collect();
        if let Some(id) = self.index.get(&canonical) {
            return *id;
        }
        let id = self.acls.len() as u32;
        self.acls.push(acl.to_vec());
        self.index.insert(canonical, id);
        id
    }
}

/// A snapshot's ACL list as the client would return it; `None` when it
/// has permission bits ZooKeeper does not define (its live form is not
/// known, so it is read live).
fn acl_of(entries: &[(i32, String, String)]) -> Option<Vec<zk::Acl>> {
    let bits = [
        zk::Permission::READ,
        zk::Permission::WRITE,
        zk::Permission::CREATE,
        zk::Permission::DELETE,
        zk::Permission::ADMIN,
    ];
    let mut out = Vec::with_capacity(entries.len());
    for (raw, scheme, id) in entries {
        if raw & !31 != 0 {
            return None;
        }
        let perms = (0..5).filter(|i| raw & (1 << i) != 0).fold(zk::Permission::NONE, |p, i| p | bits[i]);
        out.push(zk::Acl::new(perms, zk::AuthId::new(scheme, id)));
    }
    Some(out)
}

/// A server path as a client inside `chroot` names it; `None` outside it.
fn strip_chroot(path: &str, chroot: &str) -> Option<String> {
    let chroot = chroot.trim_end_matches('/');
    if chroot.is_empty() {
        return Some(path.to_string());
    }
    if path == chroot {
        return Some("/".to_string());
    }
    path.strip_prefix(chroot).filter(|rest| rest.starts_with('/')).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_stat;

    fn stat(czxid: i64, aversion: i32) -> zk::Stat {
        let mut s = test_stat(0, 0, 1, 0);
        s.czxid = czxid;
        s.ctime = 1_700_000_000_000 + czxid;
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
        let mut other_time = stat(7, 0);
        other_time.ctime += 1;
        assert_eq!(m.get("/a", &other_time), None, "the same zxid at another time: another ensemble");
        assert_eq!(m.get("/b", &stat(7, 0)), None, "another path");
        m.put("/a", &stat(7, 1), &acl(zk::Permission::READ));
        assert_eq!(m.get("/a", &stat(7, 1)), Some(acl(zk::Permission::READ)));
        assert_eq!(m.get("/a", &stat(7, 0)), None, "the old version is gone");
        assert_eq!(m.hits_and_misses(), (2, 5));
    }

    #[test]
    fn snapshot_acls_and_paths_are_read_as_a_client_sees_them() {
        let e = |p: i32, s: &str, i: &str| (p, s.to_string(), i.to_string());
        let acl = acl_of(&[e(31, "world", "anyone"), e(1 | 16, "ip", "10.0.0.1")]).unwrap();
        assert_eq!(acl[0], zk::Acl::new(zk::Permission::ALL, zk::AuthId::anyone()));
        assert_eq!(acl[1].permission(), zk::Permission::READ | zk::Permission::ADMIN);
        assert_eq!(acl_of(&[e(32, "world", "anyone")]), None, "a bit ZooKeeper does not define: read live");
        assert_eq!(strip_chroot("/a/b", ""), Some("/a/b".into()));
        assert_eq!(strip_chroot("/c/a", "/c"), Some("/a".into()));
        assert_eq!(strip_chroot("/c", "/c/"), Some("/".into()));
        assert_eq!(strip_chroot("/cd/a", "/c"), None, "outside the chroot");
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
