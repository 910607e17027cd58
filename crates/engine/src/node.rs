//! What zkrepl knows of one node (its stat, data and ACL), plus the ACL and
//! sequence-counter rules that copy and verify share.

use zookeeper_client as zk;

/// One node as read from a tree.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub stat: zk::Stat,
    pub data: Vec<u8>,
    /// Empty when ACLs were not read.
    pub acl: Vec<zk::Acl>,
}

impl NodeInfo {
    /// Ephemeral nodes belong to a live session and are never copied.
    pub fn is_ephemeral(&self) -> bool {
        self.stat.ephemeral_owner != 0
    }
}

/// The result of reading one path.
#[derive(Debug)]
pub enum Slot {
    /// Not on this side (absent from its parent's children).
    Absent,
    /// Read.
    Node(Box<NodeInfo>),
    /// Listed by its parent but gone when read: the tree changed.
    Vanished,
    /// Could not be read (NoAuth and the like).
    Failed(zk::Error),
    /// Not read this time (the read was full): to be read again.
    Deferred,
}

impl Slot {
    pub fn node(&self) -> Option<&NodeInfo> {
        match self {
            Slot::Node(n) => Some(n),
            _ => None,
        }
    }

    /// The node unless it is ephemeral (and ephemerals are to be ignored).
    pub fn persistent(&self, include_ephemeral: bool) -> Option<&NodeInfo> {
        self.node().filter(|n| include_ephemeral || !n.is_ephemeral())
    }
}

const PERMS: [(zk::Permission, i32); 5] = [
    (zk::Permission::READ, 1),
    (zk::Permission::WRITE, 2),
    (zk::Permission::CREATE, 4),
    (zk::Permission::DELETE, 8),
    (zk::Permission::ADMIN, 16),
];

/// The raw permission bits of an ACL entry.
pub(crate) fn perm_bits(p: zk::Permission) -> i32 {
    PERMS.iter().filter(|(perm, _)| p.has(*perm)).map(|(_, bit)| bit).sum()
}

/// A permission from raw bits.
#[cfg(test)]
pub(crate) fn perm_from_bits(bits: i32) -> zk::Permission {
    PERMS.iter().filter(|(_, bit)| bits & bit != 0).fold(zk::Permission::NONE, |acc, (p, _)| acc | *p)
}

/// An ACL entry as plain data, for reports, hashing and ordering.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub(crate) struct AclEntry {
    pub scheme: String,
    pub id: String,
    pub perms: i32,
}

impl AclEntry {
    pub fn from_zk(acl: &zk::Acl) -> AclEntry {
        AclEntry {
            scheme: acl.auth_id().scheme().to_string(),
            id: acl.auth_id().id().to_string(),
            perms: perm_bits(acl.permission()),
        }
    }
}

impl std::fmt::Display for AclEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut p = String::new();
        for (c, bit) in [('c', 4), ('d', 8), ('r', 1), ('w', 2), ('a', 16)] {
            if self.perms & bit != 0 {
                p.push(c);
            }
        }
        write!(f, "{}:{}:{}", self.scheme, self.id, p)
    }
}

/// An ACL in canonical order: two ACLs grant the same when their canonical
/// forms are equal.
pub(crate) fn canonical_acl(acl: &[zk::Acl]) -> Vec<AclEntry> {
    let mut v: Vec<AclEntry> = acl.iter().map(AclEntry::from_zk).collect();
    v.sort();
    v.dedup();
    v
}

/// ACL equality regardless of entry order.
pub fn acl_equal(a: &[zk::Acl], b: &[zk::Acl]) -> bool {
    a == b || canonical_acl(a) == canonical_acl(b)
}

/// Whether the server hid digest hashes from this session: getACL shows a
/// digest id as `user:x` to a session without ADMIN permission on the node
/// (ZooKeeper >= 3.6). Such an ACL cannot be copied or compared.
pub fn acl_masked(acl: &[zk::Acl]) -> bool {
    acl.iter()
        .any(|a| a.auth_id().scheme() == "digest" && a.auth_id().id().split_once(':').is_some_and(|(_, h)| h == "x"))
}

/// The number the next sequential child of a node with this stat gets.
///
/// The server stores a count of child creations (a Java `int`, one more per
/// create, the number it gives the next sequential child) and shows clients
/// `cversion = creations * 2 - children`, in `int` arithmetic
/// (`client_cversion`): from 2^30 creations on the product wraps and the
/// cversion clients see is negative. So `creations * 2 = cversion +
/// children` holds modulo 2^32, which fixes the count modulo 2^31: it is
/// taken from 0 to 2^31 - 1, the range of the server's own counter (beyond
/// it the server itself numbers children negative).
pub fn next_sequence(stat: &zk::Stat) -> i64 {
    let twice = (stat.cversion as u32).wrapping_add(stat.num_children as u32);
    i64::from(twice / 2)
}

/// The cversion a client sees for a node with `creations` child creations
/// and `children` children, computed as the server computes it (Java `int`
/// arithmetic, wrapping).
#[cfg(test)]
pub(crate) fn client_cversion(creations: i32, children: i32) -> i32 {
    creations.wrapping_mul(2).wrapping_sub(children)
}

/// How many child creations (pads) bring the destination's counter up to
/// the source's; zero or less when it is not behind.
pub(crate) fn counter_deficit(src: &zk::Stat, dst: &zk::Stat) -> i64 {
    next_sequence(src) - next_sequence(dst)
}

/// The OPEN_ACL_UNSAFE list.
pub fn open_acl() -> Vec<zk::Acl> {
    vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::anyone())]
}

/// Does `acl` let a session holding `ids` (plus world:anyone) do `perm`?
pub(crate) fn grants(acl: &[zk::Acl], ids: &[(String, String)], perm: zk::Permission) -> bool {
    acl.iter().any(|a| {
        a.permission().has(perm)
            && ((a.auth_id().scheme() == "world" && a.auth_id().id() == "anyone")
                || ids.iter().any(|(s, i)| a.auth_id().scheme() == s && a.auth_id().id() == i))
    })
}

/// Whether every one of `perms` is granted to `ids` (or world:anyone) by
/// some entry of `acl`.
pub(crate) fn grants_all(acl: &[zk::Acl], ids: &[(String, String)], perms: &[zk::Permission]) -> bool {
    perms.iter().all(|p| grants(acl, ids, *p))
}

/// Renders bytes for humans: UTF-8 text as is (shortened), otherwise hex.
pub(crate) fn preview(data: &[u8], max: usize) -> String {
    match std::str::from_utf8(data) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            let mut out: String = s.chars().take(max).collect();
            if s.chars().count() > max {
                out.push('…');
            }
            format!("{out:?}")
        }
        _ => {
            let mut out: String = data.iter().take(max / 2).map(|b| format!("{b:02x}")).collect();
            if data.len() > max / 2 {
                out.push('…');
            }
            format!("0x{out} ({} bytes)", data.len())
        }
    }
}

/// A stat for unit tests: the fields given, the others fixed.
#[cfg(test)]
pub(crate) fn test_stat(cversion: i32, num_children: i32, data_length: i32, ephemeral_owner: i64) -> zk::Stat {
    zk::Stat {
        czxid: 1,
        mzxid: 1,
        pzxid: 1,
        ctime: 0,
        mtime: 0,
        version: 0,
        cversion,
        aversion: 0,
        ephemeral_owner,
        data_length,
        num_children,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(cversion: i32, num_children: i32) -> zk::Stat {
        test_stat(cversion, num_children, 0, 0)
    }

    /// A node with this many creations and children, as a client sees it.
    fn seen(creations: i32, children: i32) -> zk::Stat {
        stat(client_cversion(creations, children), children)
    }

    #[test]
    fn client_cversion_wraps_as_a_java_int() {
        assert_eq!(client_cversion(60, 10), 110);
        assert_eq!(client_cversion((1 << 30) - 1, 0), i32::MAX - 1);
        assert_eq!(client_cversion((1 << 30) - 1, 1), i32::MAX - 2);
        // 2^30 creations: 2^31 wraps to i32::MIN.
        assert_eq!(client_cversion(1 << 30, 0), i32::MIN);
        assert_eq!(client_cversion(1 << 30, 1), i32::MAX, "i32::MIN - 1 wraps back up");
        assert_eq!(client_cversion((1 << 30) + 1, 0), i32::MIN + 2);
        assert_eq!(client_cversion(i32::MAX, 0), -2);
        assert_eq!(client_cversion(i32::MAX, 5), -7);
    }

    #[test]
    fn sequence_counters_read_back_at_and_around_the_wrap() {
        assert_eq!(next_sequence(&stat(110, 10)), 60);
        assert_eq!(next_sequence(&stat(0, 0)), 0);
        let around = [
            0,
            1,
            1000,
            (1 << 30) - 2,
            (1 << 30) - 1,
            1 << 30,
            (1 << 30) + 1,
            (1 << 30) + 12_345,
            i32::MAX - 1,
            i32::MAX,
        ];
        for creations in around {
            for children in [0, 1, 2, 7, 1000, 1 << 20] {
                if children > creations {
                    continue;
                }
                let s = seen(creations, children);
                assert_eq!(
                    next_sequence(&s),
                    i64::from(creations),
                    "{creations} creations, {children} children: {s:?}"
                );
            }
        }
        // What a client sees just past the wrap: a negative cversion.
        assert_eq!(next_sequence(&stat(i32::MIN, 0)), 1 << 30);
        assert_eq!(next_sequence(&stat(i32::MIN + 2, 0)), (1 << 30) + 1);
        assert_eq!(next_sequence(&stat(i32::MAX, 1)), 1 << 30);
        assert_eq!(next_sequence(&stat(-2, 0)), i64::from(i32::MAX));
        assert_eq!(next_sequence(&stat(-7, 5)), i64::from(i32::MAX));
    }

    #[test]
    fn pads_are_counted_across_the_wrap() {
        let w = 1 << 30;
        // Source past the wrap (negative cversion), destination before it.
        let (src, dst) = (seen(w + 5, 3), seen(w - 5, 3));
        assert!(src.cversion < 0 && dst.cversion > 0);
        assert_eq!(counter_deficit(&src, &dst), 10);
        assert_eq!(counter_deficit(&dst, &src), -10, "a destination ahead needs nothing");
        // Both past it, and the destination's counter at the server's last.
        assert_eq!(counter_deficit(&seen(i32::MAX, 0), &seen(w + 1, 10)), i64::from(i32::MAX - w - 1));
        assert_eq!(counter_deficit(&seen(i32::MAX, 4), &seen(i32::MAX, 0)), 0);
        // Each pad is one creation: the target of pad k is the destination's count + k.
        let dst = seen(w - 1, 0);
        for k in 1..=3 {
            let after = seen(w - 1 + k, 0);
            assert_eq!(next_sequence(&after), next_sequence(&dst) + i64::from(k));
        }
    }

    #[test]
    fn permissions_round_trip() {
        for bits in 0..32 {
            assert_eq!(perm_bits(perm_from_bits(bits)), bits);
        }
    }

    #[test]
    fn acl_equality_ignores_order() {
        let a = zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone());
        let b = zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", "u:x"));
        assert!(acl_equal(&[a.clone(), b.clone()], &[b.clone(), a.clone()]));
        assert!(!acl_equal(std::slice::from_ref(&a), std::slice::from_ref(&b)));
        assert_eq!(AclEntry::from_zk(&b).to_string(), "digest:u:x:cdrwa");
    }

    #[test]
    fn grants_checks_world_and_ids() {
        let read_only = vec![zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())];
        assert!(!grants(&read_only, &[], zk::Permission::CREATE));
        let mine = vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", "me:h"))];
        assert!(grants(&mine, &[("digest".into(), "me:h".into())], zk::Permission::CREATE));
        assert!(!grants(&mine, &[], zk::Permission::CREATE));
        assert!(grants(&open_acl(), &[], zk::Permission::CREATE));
    }

    #[test]
    fn masked_digest_ids_are_recognised() {
        let masked = vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", "user:x"))];
        let real =
            vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", "user:D/InIHSb7yEEbrWz8b9l71RjZJU="))];
        assert!(acl_masked(&masked));
        assert!(!acl_masked(&real));
        assert!(!acl_masked(&open_acl()));
    }

    #[test]
    fn previews_text_and_binary() {
        assert_eq!(preview(b"abc", 10), "\"abc\"");
        assert_eq!(preview(&[0, 1, 255], 10), "0x0001ff (3 bytes)");
    }
}

/// The kind a node is created as. Kinds cannot be read over the client
/// protocol; they come from the user (globs) or from a snapshot file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    #[default]
    Persistent,
    Container,
    Ttl(#[serde(with = "millis")] std::time::Duration),
}

mod millis {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}
