//! Merkle digests of trees. A node's digest is BLAKE3 over its path relative
//! to the walked root, its data, its ACL in canonical order (when ACLs are
//! read) and the sorted digests of its children, so two trees have the same
//! root digest exactly when they hold the same relative paths with the same
//! data and ACLs, wherever their roots are. Stat fields are not included:
//! a copy cannot carry them.
//!
//! [`MerkleBuilder`] takes nodes in any order in which a parent comes before
//! its children (the walker's order) and holds only the digests of children
//! whose parent is not complete yet.

use std::collections::HashMap;

use zookeeper_client as zk;

use crate::node::canonical_acl;
use crate::zk::path;

pub type Digest = [u8; 32];

fn put(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// Starts a node's hash: everything but its children.
pub fn node_hasher(rel: &str, data: &[u8], acl: Option<&[zk::Acl]>) -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    h.update(if acl.is_some() { b"zkrepl/node/v1/acl\0" } else { b"zkrepl/node/v1/noacl\0" });
    put(&mut h, rel.as_bytes());
    put(&mut h, data);
    if let Some(acl) = acl {
        let acl = canonical_acl(acl);
        h.update(&(acl.len() as u64).to_le_bytes());
        for e in &acl {
            put(&mut h, e.scheme.as_bytes());
            put(&mut h, e.id.as_bytes());
            h.update(&e.perms.to_le_bytes());
        }
    }
    h
}

/// Finishes a node's hash with its children's digests (sorted here).
pub fn finish(mut h: blake3::Hasher, children: &mut [Digest]) -> Digest {
    children.sort_unstable();
    h.update(&(children.len() as u64).to_le_bytes());
    for c in children.iter() {
        h.update(c);
    }
    *h.finalize().as_bytes()
}

struct Pending {
    hasher: blake3::Hasher,
    /// Children still to come; `None` until the listing is known.
    remaining: Option<usize>,
    children: Vec<Digest>,
}

/// Builds one tree's root digest from a stream of nodes.
#[derive(Default)]
pub struct MerkleBuilder {
    pending: HashMap<String, Pending>,
    root: Option<Digest>,
    incomplete: bool,
}

impl MerkleBuilder {
    pub fn new() -> MerkleBuilder {
        MerkleBuilder::default()
    }

    /// A node was read. `will_list` says whether its children will be
    /// listed ([`MerkleBuilder::listed`]); otherwise it is complete now.
    pub fn node(&mut self, rel: &str, data: &[u8], acl: Option<&[zk::Acl]>, will_list: bool) {
        let hasher = node_hasher(rel, data, acl);
        if will_list {
            self.pending.insert(rel.to_string(), Pending { hasher, remaining: None, children: Vec::new() });
        } else {
            let d = finish(hasher, &mut []);
            self.complete(rel, Some(d));
        }
    }

    /// The children of `rel` are known: `count` of them will each arrive as
    /// [`MerkleBuilder::node`] or [`MerkleBuilder::skip`].
    pub fn listed(&mut self, rel: &str, count: usize) {
        let Some(p) = self.pending.get_mut(rel) else {
            return;
        };
        p.remaining = Some(count);
        if count == 0 {
            self.finalize(rel);
        }
    }

    /// A listed child contributes nothing (ignored ephemeral, vanished).
    pub fn skip(&mut self, rel: &str) {
        self.complete(rel, None);
    }

    /// A listed child could not be read: the digest no longer proves
    /// anything, but the walk goes on.
    pub fn fail(&mut self, rel: &str) {
        self.incomplete = true;
        self.complete(rel, None);
    }

    /// Something could not be read completely: no root digest.
    pub fn taint(&mut self) {
        self.incomplete = true;
    }

    fn complete(&mut self, rel: &str, digest: Option<Digest>) {
        let Some(parent) = path::rel_parent(rel) else {
            self.root = digest;
            return;
        };
        let parent = parent.to_string();
        let Some(p) = self.pending.get_mut(&parent) else {
            return;
        };
        if let Some(d) = digest {
            p.children.push(d);
        }
        if let Some(r) = p.remaining.as_mut() {
            *r = r.saturating_sub(1);
            if *r == 0 {
                self.finalize(&parent);
            }
        }
    }

    fn finalize(&mut self, rel: &str) {
        if let Some(mut p) = self.pending.remove(rel) {
            let d = finish(p.hasher, &mut p.children);
            self.complete(rel, Some(d));
        }
    }

    /// The root digest, once every node has arrived and all were readable.
    pub fn root(&self) -> Option<Digest> {
        if self.incomplete || !self.pending.is_empty() { None } else { self.root }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds a tree given as (rel, data, children count) in parent-first order.
    fn build(order: &[(&str, &[u8], usize)]) -> Digest {
        let mut b = MerkleBuilder::new();
        for (rel, data, n) in order {
            b.node(rel, data, None, *n > 0);
            if *n > 0 {
                b.listed(rel, *n);
            }
        }
        b.root().expect("complete")
    }

    #[test]
    fn arrival_order_does_not_matter() {
        let a = build(&[("", b"r", 2), ("/a", b"1", 1), ("/b", b"2", 0), ("/a/x", b"3", 0)]);
        let b = build(&[("", b"r", 2), ("/b", b"2", 0), ("/a", b"1", 1), ("/a/x", b"3", 0)]);
        assert_eq!(a, b);
    }

    #[test]
    fn any_change_changes_the_root() {
        let base = build(&[("", b"r", 2), ("/a", b"1", 0), ("/b", b"2", 0)]);
        assert_ne!(base, build(&[("", b"r", 2), ("/a", b"1", 0), ("/b", b"3", 0)]));
        assert_ne!(base, build(&[("", b"r", 2), ("/a", b"1", 0), ("/c", b"2", 0)]));
        assert_ne!(base, build(&[("", b"r", 1), ("/a", b"1", 0)]));
        // Moving data between a name and its data is not a collision.
        assert_ne!(build(&[("", b"", 1), ("/ab", b"", 0)]), build(&[("", b"", 1), ("/a", b"b", 0)]));
    }

    #[test]
    fn acl_is_part_of_the_digest() {
        let open = crate::node::open_acl();
        let read = vec![zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())];
        let d = |acl: &[zk::Acl]| {
            let mut b = MerkleBuilder::new();
            b.node("", b"x", Some(acl), false);
            b.root().unwrap()
        };
        assert_ne!(d(&open), d(&read));
    }

    #[test]
    fn skipped_and_failed_children() {
        let mut b = MerkleBuilder::new();
        b.node("", b"", None, true);
        b.listed("", 2);
        b.node("/a", b"", None, false);
        b.skip("/eph");
        let with_skip = b.root().unwrap();
        assert_eq!(with_skip, build(&[("", b"", 1), ("/a", b"", 0)]));
        let mut b = MerkleBuilder::new();
        b.node("", b"", None, true);
        b.listed("", 1);
        b.fail("/a");
        assert!(b.root().is_none());
    }
}
