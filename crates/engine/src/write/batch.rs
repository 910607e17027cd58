//! The batcher: groups write operations into multi() transactions bounded by
//! operation count and by request bytes, computed exactly as the server will
//! count them against its jute.maxbuffer. Pure and synchronous, so it is
//! benchmarked without a server.

use zookeeper_client as zk;

use crate::node::NodeKind;

/// One write, by absolute destination path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Create {
        path: String,
        data: Vec<u8>,
        acl: Vec<zk::Acl>,
        kind: NodeKind,
    },
    SetData {
        path: String,
        data: Vec<u8>,
    },
    /// Not allowed in a multi: always sent alone.
    SetAcl {
        path: String,
        acl: Vec<zk::Acl>,
    },
    Delete {
        path: String,
    },
    /// Creates and deletes child `name` of `parent` in one transaction:
    /// one more child creation (the parent's sequence counter goes up by
    /// one), nothing left behind. `target` is the counter (see
    /// [`crate::node::next_sequence`]) this pad brings the parent to: a pad
    /// whose outcome was unknown is redone only if the parent is still below.
    Pad {
        parent: String,
        name: String,
        target: i64,
    },
}

impl Op {
    pub fn path(&self) -> &str {
        match self {
            Op::Create { path, .. } | Op::SetData { path, .. } | Op::SetAcl { path, .. } | Op::Delete { path } => path,
            Op::Pad { parent, .. } => parent,
        }
    }

    /// Operations this op takes in a multi.
    pub fn op_count(&self) -> usize {
        match self {
            Op::Pad { .. } => 2,
            _ => 1,
        }
    }

    /// Whether it may travel in a multi().
    pub fn multi_allowed(&self) -> bool {
        !matches!(self, Op::SetAcl { .. })
    }

    /// Bytes of this op's request body(ies) inside a multi, each with its
    /// 9-byte multi header (type, done, err).
    pub fn multi_bytes(&self) -> usize {
        match self {
            Op::Pad { parent, name, .. } => {
                let child = parent.len() + 1 + name.len();
                // create (empty data, OPEN acl, flags) + delete (path, version)
                MULTI_HEADER
                    + string(child)
                    + 4
                    + acl_bytes(&crate::node::open_acl())
                    + 4
                    + MULTI_HEADER
                    + string(child)
                    + 4
            }
            op => MULTI_HEADER + op.body_bytes(),
        }
    }

    /// Bytes of the request when sent alone (header included, length prefix
    /// not, as the server counts it).
    pub fn single_bytes(&self) -> usize {
        match self {
            Op::Pad { .. } => REQUEST_HEADER + self.multi_bytes() + MULTI_HEADER,
            op => REQUEST_HEADER + op.body_bytes(),
        }
    }

    fn body_bytes(&self) -> usize {
        match self {
            Op::Create { path, data, acl, kind } => {
                let ttl = if matches!(kind, NodeKind::Ttl(_)) { 8 } else { 0 };
                string(path.len()) + 4 + data.len() + acl_bytes(acl) + 4 + ttl
            }
            Op::SetData { path, data } => string(path.len()) + 4 + data.len() + 4,
            Op::SetAcl { path, acl } => string(path.len()) + acl_bytes(acl) + 4,
            Op::Delete { path } => string(path.len()) + 4,
            Op::Pad { .. } => self.multi_bytes(),
        }
    }
}

/// xid + type.
pub const REQUEST_HEADER: usize = 8;
/// type + done + err.
pub const MULTI_HEADER: usize = 9;

fn string(len: usize) -> usize {
    4 + len
}

fn acl_bytes(acl: &[zk::Acl]) -> usize {
    4 + acl.iter().map(|a| 4 + string(a.auth_id().scheme().len()) + string(a.auth_id().id().len())).sum::<usize>()
}

/// A group of operations sent together: a multi() when it has several or
/// when its single op must be atomic, a plain request otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transaction {
    pub ops: Vec<Op>,
    /// Request bytes as the server counts them.
    pub bytes: usize,
}

impl Transaction {
    /// Sent as a plain request rather than a multi().
    pub fn is_single(&self) -> bool {
        self.ops.len() == 1 && !matches!(self.ops[0], Op::Pad { .. })
    }
}

/// Limits of one transaction.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub max_ops: usize,
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits { max_ops: 1000, max_bytes: 512 << 10 }
    }
}

/// Accumulates operations into batches, keeping their order.
pub struct Batcher {
    limits: BatchLimits,
    cur: Transaction,
    /// `cur.op_count()`, kept as ops arrive.
    cur_ops: usize,
}

impl Batcher {
    pub fn new(limits: BatchLimits) -> Batcher {
        Batcher { limits, cur: Transaction::default(), cur_ops: 0 }
    }

    /// Adds an op; returns the batches it completed, in order (at most two:
    /// the one it did not fit in, and itself when it must travel alone).
    pub fn push(&mut self, op: Op) -> Vec<Transaction> {
        let mut out = Vec::new();
        if !op.multi_allowed() {
            out.extend(self.finish());
            let bytes = op.single_bytes();
            out.push(Transaction { ops: vec![op], bytes });
            return out;
        }
        let bytes = op.multi_bytes();
        let count = op.op_count();
        let empty = REQUEST_HEADER + MULTI_HEADER;
        if !self.cur.ops.is_empty()
            && (self.cur_ops + count > self.limits.max_ops || self.cur.bytes + bytes > self.limits.max_bytes)
        {
            out.extend(self.finish());
        }
        if self.cur.ops.is_empty() {
            self.cur.bytes = empty;
        }
        self.cur.bytes += bytes;
        self.cur_ops += count;
        self.cur.ops.push(op);
        out
    }

    /// The partial batch, if any.
    pub fn finish(&mut self) -> Option<Transaction> {
        if self.cur.ops.is_empty() {
            return None;
        }
        let mut b = std::mem::take(&mut self.cur);
        self.cur_ops = 0;
        if b.is_single() {
            b.bytes = b.ops[0].single_bytes();
        }
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(path: &str, n: usize) -> Op {
        Op::Create {
            path: path.to_string(),
            data: vec![7; n],
            acl: crate::node::open_acl(),
            kind: NodeKind::Persistent,
        }
    }

    #[test]
    fn sizes_match_the_jute_encoding() {
        // header 8 + path (4+2) + data (4+3) + acl (4 + 4 + (4+5) + (4+6)) + flags 4
        assert_eq!(create("/a", 3).single_bytes(), 8 + 6 + 7 + 27 + 4);
        assert_eq!(Op::Delete { path: "/a".into() }.single_bytes(), 8 + 6 + 4);
        let ttl = Op::Create {
            path: "/a".into(),
            data: vec![],
            acl: crate::node::open_acl(),
            kind: NodeKind::Ttl(std::time::Duration::from_secs(1)),
        };
        assert_eq!(ttl.single_bytes(), create("/a", 0).single_bytes() + 8);
    }

    #[test]
    fn splits_by_count_and_bytes_in_order() {
        let mut b = Batcher::new(BatchLimits { max_ops: 3, max_bytes: 1 << 20 });
        let mut out = Vec::new();
        for i in 0..7 {
            out.extend(b.push(create(&format!("/n{i}"), 10)));
        }
        out.extend(b.finish());
        let sizes: Vec<usize> = out.iter().map(|b| b.ops.len()).collect();
        assert_eq!(sizes, vec![3, 3, 1]);
        let paths: Vec<&str> = out.iter().flat_map(|b| b.ops.iter().map(|o| o.path())).collect();
        assert_eq!(paths, vec!["/n0", "/n1", "/n2", "/n3", "/n4", "/n5", "/n6"]);

        let mut b = Batcher::new(BatchLimits { max_ops: 1000, max_bytes: 1000 });
        let mut out = Vec::new();
        for i in 0..10 {
            out.extend(b.push(create(&format!("/n{i}"), 300)));
        }
        out.extend(b.finish());
        assert!(out.iter().all(|b| b.bytes <= 1000 || b.ops.len() == 1));
        assert_eq!(out.iter().map(|b| b.ops.len()).sum::<usize>(), 10);
    }

    #[test]
    fn a_large_op_travels_alone_and_set_acl_breaks_batches() {
        let mut b = Batcher::new(BatchLimits { max_ops: 100, max_bytes: 1000 });
        let mut out = b.push(create("/small", 1));
        out.extend(b.push(create("/big", 5000)));
        out.extend(b.push(Op::SetAcl { path: "/small".into(), acl: crate::node::open_acl() }));
        out.extend(b.finish());
        assert_eq!(out.len(), 3);
        assert!(out[1].is_single() && out[1].bytes == create("/big", 5000).single_bytes());
        assert!(matches!(out[2].ops[0], Op::SetAcl { .. }));
    }

    #[test]
    fn pads_count_two_ops_and_are_never_single() {
        let mut b = Batcher::new(BatchLimits { max_ops: 4, max_bytes: 1 << 20 });
        let pad = || Op::Pad { parent: "/p".into(), name: "x".into(), target: 1 };
        let mut out = Vec::new();
        for _ in 0..5 {
            out.extend(b.push(pad()));
        }
        out.extend(b.finish());
        assert_eq!(out.iter().map(|b| b.ops.len()).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert!(!out[2].is_single());
    }
}
