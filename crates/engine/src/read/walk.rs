//! The walker: reads one tree, or two in lockstep (source and destination
//! by relative path), and streams what it read in batches over a bounded
//! channel.
//!
//! Order: a node is sent before any of its descendants (its children are
//! listed only after it was read and sent), so a writer that applies the
//! stream in order always has a node's parent already.
//!
//! Memory: work is a stack (depth first). A read node with children becomes
//! an "expand" task; its children are listed only when that task reaches the
//! top of the stack, and a listing request covers about one batch of names.
//! What is held is bounded by depth x (fan-out + batch), never by the size
//! or the width of the tree.

use std::future::Future;
use std::pin::Pin;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use zookeeper_client as zk;

use super::{Listing, TreeReader};
use crate::error::{Error, Result, Side};
use crate::merkle::{Digest, MerkleBuilder};
use crate::node::Slot;
use crate::zk::path;

/// Side bits of a relative path.
pub const SRC: u8 = 1;
pub const DST: u8 = 2;

/// One relative path as read on each side.
#[derive(Debug)]
pub struct Entry {
    pub rel: String,
    pub src: Slot,
    pub dst: Slot,
}

/// A node whose children could not be listed (its subtree is not walked).
#[derive(Debug)]
pub struct ListFailure {
    pub rel: String,
    pub side: Side,
    pub error: zk::Error,
}

/// What one completed request produced.
#[derive(Debug, Default)]
pub struct Batch {
    pub entries: Vec<Entry>,
    pub list_failures: Vec<ListFailure>,
    /// Nodes whose source children were listed, with how many names the
    /// listing gave (a left-out system node not counted): each of those
    /// names comes later as one entry.
    pub listed: Vec<(String, usize)>,
}

/// What to do with nodes only the destination has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DstOnly {
    /// Neither read nor reported (a copy that does not mirror).
    Skip,
    /// Read and reported, their subtrees walked too (verify, a mirror copy).
    Descend,
}

#[derive(Clone, Debug)]
pub struct WalkOptions {
    /// Nodes per read request (and names per listing request).
    pub batch: usize,
    /// Requests in flight.
    pub window: usize,
    pub dst_only: DstOnly,
    /// Leave out a `zookeeper` child of the walked root: on the source
    /// side, and on the destination side (set when a root is the server's
    /// `/`, whose `/zookeeper` is the server's own).
    pub skip_system: [bool; 2],
    /// Compute each side's Merkle digest.
    pub digest: bool,
    /// Count ephemerals in digests (they are always streamed).
    pub include_ephemeral: bool,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            batch: 1000,
            window: 8,
            dst_only: DstOnly::Skip,
            skip_system: [false, false],
            digest: false,
            include_ephemeral: false,
        }
    }
}

/// Totals for one side of a walk.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SideSummary {
    pub nodes: u64,
    pub bytes: u64,
    pub ephemerals: u64,
    pub vanished: u64,
    pub unreadable: u64,
    pub max_mzxid: i64,
    pub max_pzxid: i64,
    #[serde(skip)]
    pub digest: Option<Digest>,
}

#[derive(Clone, Debug, Default)]
pub struct WalkSummary {
    pub src: SideSummary,
    pub dst: SideSummary,
    /// `/zookeeper` entries left out.
    pub skipped_system: u64,
}

enum Task {
    /// Paths to read, with the sides that list them.
    Read(Vec<(String, u8)>),
    /// A node whose children are to be listed on `sides`.
    Expand { rel: String, sides: u8, expect: usize },
}

enum Done {
    Read(Vec<(String, u8)>, Vec<Slot>, Vec<Slot>),
    Expand(Vec<(String, u8)>, Vec<Listing>, Vec<Listing>),
}

type InFlight<'a> = Pin<Box<dyn Future<Output = Result<Done>> + Send + 'a>>;

/// Walks `src` and/or `dst` from their roots; `root_sides` says on which
/// sides the root exists. Batches go to `tx` in a parent-first order.
pub async fn walk(
    src: Option<&TreeReader>,
    dst: Option<&TreeReader>,
    root_sides: u8,
    opts: &WalkOptions,
    tx: mpsc::Sender<Batch>,
) -> Result<WalkSummary> {
    let mut w = Walker {
        src,
        dst,
        opts,
        stack: vec![Task::Read(vec![(String::new(), root_sides & sides_of(src, dst))])],
        summary: WalkSummary::default(),
        merkle: [MerkleBuilder::new(), MerkleBuilder::new()],
    };
    let mut inflight: FuturesUnordered<InFlight<'_>> = FuturesUnordered::new();
    loop {
        while inflight.len() < opts.window.max(1) {
            match w.next_request() {
                Some(f) => inflight.push(f),
                None => break,
            }
        }
        let Some(done) = inflight.next().await else {
            break;
        };
        let batch = w.complete(done?);
        let empty = batch.entries.is_empty() && batch.list_failures.is_empty() && batch.listed.is_empty();
        if !empty && tx.send(batch).await.is_err() {
            // The consumer stopped; its own result tells why.
            return Ok(w.summary);
        }
    }
    if opts.digest {
        let [s, d] = &w.merkle;
        w.summary.src.digest = s.root();
        w.summary.dst.digest = d.root();
    }
    Ok(w.summary)
}

fn sides_of(src: Option<&TreeReader>, dst: Option<&TreeReader>) -> u8 {
    (if src.is_some() { SRC } else { 0 }) | (if dst.is_some() { DST } else { 0 })
}

struct Walker<'a> {
    src: Option<&'a TreeReader>,
    dst: Option<&'a TreeReader>,
    opts: &'a WalkOptions,
    stack: Vec<Task>,
    summary: WalkSummary,
    merkle: [MerkleBuilder; 2],
}

impl<'a> Walker<'a> {
    fn next_request(&mut self) -> Option<InFlight<'a>> {
        let budget = self.opts.batch.max(1);
        match self.stack.last()? {
            Task::Expand { .. } => {
                let mut nodes = Vec::new();
                let mut names = 0;
                while let Some(Task::Expand { expect, .. }) = self.stack.last() {
                    if !nodes.is_empty() && names + expect > budget {
                        break;
                    }
                    let Some(Task::Expand { rel, sides, expect }) = self.stack.pop() else { unreachable!() };
                    names += expect;
                    nodes.push((rel, sides, expect));
                }
                Some(Box::pin(expand(self.src, self.dst, nodes)))
            }
            Task::Read(_) => {
                let mut items = Vec::new();
                while items.len() < budget {
                    let Some(Task::Read(top)) = self.stack.last_mut() else {
                        break;
                    };
                    let take = (budget - items.len()).min(top.len());
                    items.extend(top.drain(top.len() - take..));
                    if top.is_empty() {
                        self.stack.pop();
                    }
                }
                Some(Box::pin(read(self.src, self.dst, items)))
            }
        }
    }

    fn complete(&mut self, done: Done) -> Batch {
        match done {
            Done::Read(items, src, dst) => self.complete_read(items, src, dst),
            Done::Expand(nodes, src, dst) => self.complete_expand(nodes, src, dst),
        }
    }

    fn complete_read(&mut self, items: Vec<(String, u8)>, src: Vec<Slot>, dst: Vec<Slot>) -> Batch {
        let mut entries = Vec::with_capacity(items.len());
        let mut again = Vec::new();
        for ((rel, item_sides), (s, d)) in items.into_iter().zip(src.into_iter().zip(dst)) {
            if matches!(s, Slot::Deferred) || matches!(d, Slot::Deferred) {
                // The read was full: read this one (both sides) again.
                again.push((rel, item_sides));
                continue;
            }
            let mut sides = 0;
            let mut expect = 0usize;
            let src_present = matches!(s, Slot::Node(_));
            for (side, slot) in [(SRC, &s), (DST, &d)] {
                let walk_children = side == SRC || src_present || self.opts.dst_only == DstOnly::Descend;
                let children = slot.node().map_or(0, |n| n.stat.num_children.max(0) as usize);
                let lists = walk_children && children > 0;
                if lists {
                    sides |= side;
                    expect = expect.max(children);
                }
                self.account(side, &rel, slot, lists);
            }
            if sides != 0 {
                self.stack.push(Task::Expand { rel: rel.clone(), sides, expect });
            }
            entries.push(Entry { rel, src: s, dst: d });
        }
        if !again.is_empty() {
            self.stack.push(Task::Read(again));
        }
        Batch { entries, ..Batch::default() }
    }

    fn account(&mut self, side: u8, rel: &str, slot: &Slot, lists: bool) {
        let (summary, merkle) = if side == SRC {
            (&mut self.summary.src, &mut self.merkle[0])
        } else {
            (&mut self.summary.dst, &mut self.merkle[1])
        };
        let digest = self.opts.digest;
        match slot {
            Slot::Absent | Slot::Deferred => {}
            Slot::Node(n) => {
                if n.is_ephemeral() {
                    summary.ephemerals += 1;
                }
                if n.is_ephemeral() && !self.opts.include_ephemeral {
                    if digest {
                        merkle.skip(rel);
                    }
                    return;
                }
                summary.nodes += 1;
                summary.bytes += n.data.len() as u64;
                summary.max_mzxid = summary.max_mzxid.max(n.stat.mzxid);
                summary.max_pzxid = summary.max_pzxid.max(n.stat.pzxid);
                if digest {
                    let with_acl = if side == SRC { self.src } else { self.dst }.is_some_and(|r| r.reads_acl());
                    if with_acl && crate::node::acl_masked(&n.acl) {
                        // A hidden ACL proves nothing: no digest for this tree.
                        merkle.taint();
                        summary.unreadable += 1;
                    }
                    merkle.node(rel, &n.data, with_acl.then_some(n.acl.as_slice()), lists);
                }
            }
            Slot::Vanished => {
                summary.vanished += 1;
                if digest {
                    merkle.skip(rel);
                }
            }
            Slot::Failed(_) => {
                summary.unreadable += 1;
                if digest {
                    merkle.fail(rel);
                }
            }
        }
    }

    fn complete_expand(&mut self, nodes: Vec<(String, u8)>, src: Vec<Listing>, dst: Vec<Listing>) -> Batch {
        let mut list_failures = Vec::new();
        let mut listed = Vec::new();
        for ((rel, sides), (s, d)) in nodes.into_iter().zip(src.into_iter().zip(dst)) {
            let mut names = [Vec::new(), Vec::new()];
            for (k, (side, listing)) in [(SRC, s), (DST, d)].into_iter().enumerate() {
                if sides & side == 0 {
                    continue;
                }
                match listing {
                    Listing::Names(mut n) => {
                        if self.opts.skip_system[k] && rel.is_empty() {
                            let before = n.len();
                            n.retain(|name| name != "zookeeper");
                            if k == 0 {
                                self.summary.skipped_system += (before - n.len()) as u64;
                            }
                        }
                        names[k] = n;
                    }
                    Listing::Vanished => {}
                    Listing::Failed(error) => {
                        if self.opts.digest {
                            self.merkle[k].fail(&rel);
                        }
                        let side = if side == SRC { Side::Source } else { Side::Destination };
                        list_failures.push(ListFailure { rel: rel.clone(), side, error });
                    }
                }
            }
            let [src_names, dst_names] = names;
            if sides & SRC != 0 {
                listed.push((rel.clone(), src_names.len()));
            }
            let items = merge(&rel, src_names, dst_names, self.opts.dst_only);
            if self.opts.digest {
                for (k, side) in [(0, SRC), (1, DST)] {
                    if sides & side != 0 {
                        let count = items.iter().filter(|(_, s)| s & side != 0).count();
                        self.merkle[k].listed(&rel, count);
                    }
                }
            }
            if !items.is_empty() {
                self.stack.push(Task::Read(items));
            }
        }
        Batch { entries: Vec::new(), list_failures, listed }
    }
}

/// Which sides leave out a `zookeeper` child of their root: the source's
/// own system node, or a child of that name that would land on the
/// destination's; the destination's own.
pub fn system_skips(src: &TreeReader, dst: &TreeReader) -> [bool; 2] {
    let (src_abs, dst_abs) = (src.absolute_root(), dst.absolute_root());
    [src_abs == "/" || dst_abs == "/", dst_abs == "/"]
}

/// Merges two sorted name lists into child paths with side bits.
fn merge(parent: &str, src: Vec<String>, dst: Vec<String>, dst_only: DstOnly) -> Vec<(String, u8)> {
    let mut out = Vec::with_capacity(src.len().max(dst.len()));
    let mut d = dst.into_iter().peekable();
    for name in src {
        while let Some(x) = d.next_if(|x| *x < name) {
            if dst_only == DstOnly::Descend {
                out.push((path::child(parent, &x), DST));
            }
        }
        let both = d.next_if(|x| *x == name).is_some();
        out.push((path::child(parent, &name), if both { SRC | DST } else { SRC }));
    }
    if dst_only == DstOnly::Descend {
        out.extend(d.map(|x| (path::child(parent, &x), DST)));
    }
    // Read in name order: the stack is taken from its end.
    out.reverse();
    out
}

async fn read(src: Option<&TreeReader>, dst: Option<&TreeReader>, items: Vec<(String, u8)>) -> Result<Done> {
    let pick =
        |side: u8| -> Vec<&str> { items.iter().filter(|(_, s)| s & side != 0).map(|(r, _)| r.as_str()).collect() };
    let (src_rels, dst_rels) = (pick(SRC), pick(DST));
    let (s, d) = futures::try_join!(read_side(src, &src_rels), read_side(dst, &dst_rels))?;
    let (src_slots, dst_slots) = spread(items.iter().map(|(_, s)| *s), s, d, || Slot::Absent)?;
    Ok(Done::Read(items, src_slots, dst_slots))
}

/// Gives each side's answers back to the items they were asked for: an item
/// not on a side gets `absent()`. A side with fewer or more answers than
/// items is an error: nothing is made up for a missing answer (it could
/// read as "vanished", and a mirror would delete on it).
fn spread<T>(
    sides: impl Iterator<Item = u8>,
    src: Vec<T>,
    dst: Vec<T>,
    absent: impl Fn() -> T,
) -> Result<(Vec<T>, Vec<T>)> {
    let (mut s, mut d) = (src.into_iter(), dst.into_iter());
    let mut short = false;
    let mut next = |it: &mut std::vec::IntoIter<T>, here: bool| {
        if !here {
            return absent();
        }
        it.next().unwrap_or_else(|| {
            short = true;
            absent()
        })
    };
    let out: (Vec<T>, Vec<T>) =
        sides.map(|side| (next(&mut s, side & SRC != 0), next(&mut d, side & DST != 0))).unzip();
    if short || s.next().is_some() || d.next().is_some() {
        return Err(Error::Internal("a read returned a different number of answers than nodes asked".to_string()));
    }
    Ok(out)
}

async fn read_side(reader: Option<&TreeReader>, rels: &[&str]) -> Result<Vec<Slot>> {
    match reader {
        Some(r) if !rels.is_empty() => r.read(rels).await,
        _ => Ok(Vec::new()),
    }
}

async fn expand(src: Option<&TreeReader>, dst: Option<&TreeReader>, nodes: Vec<(String, u8, usize)>) -> Result<Done> {
    let pick = |side: u8| -> (Vec<&str>, Vec<usize>) {
        nodes.iter().filter(|(_, s, _)| s & side != 0).map(|(r, _, e)| (r.as_str(), *e)).unzip()
    };
    let ((src_rels, src_expect), (dst_rels, dst_expect)) = (pick(SRC), pick(DST));
    let (s, d) = futures::try_join!(list_side(src, &src_rels, &src_expect), list_side(dst, &dst_rels, &dst_expect))?;
    let (src_l, dst_l) = spread(nodes.iter().map(|(_, s, _)| *s), s, d, || Listing::Vanished)?;
    Ok(Done::Expand(nodes.into_iter().map(|(r, s, _)| (r, s)).collect(), src_l, dst_l))
}

async fn list_side(reader: Option<&TreeReader>, rels: &[&str], expect: &[usize]) -> Result<Vec<Listing>> {
    match reader {
        Some(r) if !rels.is_empty() => r.list(rels, expect).await,
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_marks_sides_and_keeps_name_order() {
        let s = vec!["a".to_string(), "c".to_string(), "d".to_string()];
        let d = vec!["b".to_string(), "c".to_string(), "e".to_string()];
        let mut got = merge("/p", s.clone(), d.clone(), DstOnly::Descend);
        got.reverse();
        assert_eq!(
            got,
            vec![
                ("/p/a".to_string(), SRC),
                ("/p/b".to_string(), DST),
                ("/p/c".to_string(), SRC | DST),
                ("/p/d".to_string(), SRC),
                ("/p/e".to_string(), DST),
            ]
        );
        let mut got = merge("", s, d, DstOnly::Skip);
        got.reverse();
        assert_eq!(got, vec![("/a".to_string(), SRC), ("/c".to_string(), SRC | DST), ("/d".to_string(), SRC)]);
    }

    #[test]
    fn answers_go_back_to_their_items_and_none_is_made_up() {
        let sides = [SRC, SRC | DST, DST];
        let (s, d) = spread(sides.into_iter(), vec![1, 2], vec![20, 30], || 0).unwrap();
        assert_eq!((s, d), (vec![1, 2, 0], vec![0, 20, 30]));
        assert!(spread(sides.into_iter(), vec![1], vec![20, 30], || 0).is_err(), "a missing answer");
        assert!(spread(sides.into_iter(), vec![1, 2, 3], vec![20, 30], || 0).is_err(), "an answer too many");
    }
}
