//! The copy's decisions, apart from its I/O: which operations turn the
//! destination into the source, entry by entry, and what the end of the run
//! does (mirror deletions, sequence-counter pads, the final ACLs of nodes
//! kept writable for the copy).
//!
//! [`Planner`] reads walked entries and stats, and appends operations to a
//! list the caller sends on; it never waits, reads or writes. The caller
//! (see [`super::run`]) sends every operation of one call before the next
//! call, in order: the rules below rely on that order (a parent is opened
//! before a child is created beneath it, a final ACL is set only after its
//! subtree and counter are done).
//!
//! The end-of-run phases can also run for one subtree at a time: each call
//! that emits or clears pending work has a form taking a scope, a relative
//! path (`"/a"` holds `/a` and everything beneath it, not `/ab`; `"/"` is
//! the whole tree), and touches only what lies inside it. The whole-tree
//! calls are those with scope `"/"`.

use std::collections::{HashMap, HashSet};

use zookeeper_client as zk;

use super::{AclMode, CopyOptions, KindsCopied, Mode, Plan};
use crate::error::{Error, Result, Side};
use crate::node::NodeKind;
use crate::node::{NodeInfo, Slot, acl_equal, acl_masked, counter_deficit, grants_all, next_sequence, open_acl};
use crate::read::walk::{Entry, ListFailure};
use crate::write::Op;
use crate::zk::path;

/// The phases that follow the walk, in the order they run: mirror
/// deletions and counter pads both write beneath nodes that may hold a
/// temporary grant, which the final ACLs remove, so those come last; the
/// counters are read once the deletions have landed. The driver and the
/// model tests both run the phases from this list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Mirror deletions ([`Planner::deletions`]).
    Deletions,
    /// Sequence counters read and padded ([`Planner::pads`]).
    Counters,
    /// ACLs that waited for their subtrees ([`Planner::final_acls`]).
    FinalAcls,
}

/// See [`Phase`].
pub const PHASES: [Phase; 3] = [Phase::Deletions, Phase::Counters, Phase::FinalAcls];

/// The scope of the whole tree.
pub const WHOLE: &str = "/";

/// A subtree the end-of-run phases are run for, as the relative path of its
/// top and the absolute destination path of it.
struct Scope {
    rel: String,
    abs: String,
}

impl Scope {
    /// Holds the relative path `rel`.
    fn holds_rel(&self, rel: &str) -> bool {
        path::is_within(&self.rel, rel)
    }

    /// Holds the absolute destination path `abs`.
    fn holds(&self, abs: &str) -> bool {
        path::is_within(&self.abs, abs)
    }
}

/// What a plan did, or would do, counted as it is made.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub plan: Plan,
    pub unchanged: u64,
    pub data_updates: u64,
    pub acl_updates: u64,
    pub kinds: KindsCopied,
    /// Parents whose counter is (or would be) raised.
    pub padded_parents: u64,
    /// Pads (create-and-delete pairs) those parents need.
    pub pads: u64,
    /// More deletions than the delete limit (`max_delete`) allows.
    pub delete_limit_exceeded: bool,
}

/// The pads one parent needs: creations that bring its counter from
/// `next - 1` up to `last` (see [`next_sequence`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pads {
    /// Absolute destination path of the parent.
    pub parent: String,
    /// The counter the next pad brings the parent to.
    pub next: i64,
    /// The counter the last pad brings it to: the source's.
    pub last: i64,
}

impl Pads {
    /// Pads not emitted yet.
    pub fn remaining(&self) -> u64 {
        (self.last - self.next + 1).max(0) as u64
    }
}

/// A parent whose sequence counter may end behind the source's, and what
/// this plan does beneath it (to predict the pads before anything is written).
#[derive(Clone, Debug, Default)]
struct Counter {
    /// Children this plan creates beneath it.
    created: i64,
}

/// A parent this plan creates whose listed children are still to come.
#[derive(Clone, Debug, Default)]
struct Listing {
    /// Names its source listing gave and not planned yet (unknown until
    /// the listing is seen).
    left: Option<usize>,
    /// Children this plan created beneath it so far.
    created: i64,
}

/// Who a copy's destination sessions are: the ids of the destination's
/// credentials, and the run's one-time identity, which only the writer
/// presents. Every temporary grant goes to these, so a planner cannot be
/// made without them.
#[derive(Clone, Debug)]
pub struct Identities {
    pub dst: Vec<(String, String)>,
    pub run: (String, String),
}

impl Identities {
    /// The writer's ids: the run's first, then the destination's.
    pub fn writer(&self) -> Vec<(String, String)> {
        let mut ids = vec![self.run.clone()];
        ids.extend(self.dst.iter().cloned());
        ids
    }
}

/// The copy's decisions; see the module documentation.
pub struct Planner<'a> {
    opts: &'a CopyOptions,
    src_root: String,
    dst_root: String,
    tally: Tally,
    /// Destination paths to delete (mirror), in discovery order (parents
    /// first): taken from the end, children go first.
    deletes: Vec<String>,
    /// Final ACLs of nodes created or kept writable during the copy, not
    /// emitted yet.
    deferred_acl: Vec<(String, Vec<zk::Acl>)>,
    /// Paths whose final ACL was emitted and is not known to have landed.
    acls_sent: Vec<String>,
    /// Existing destination nodes whose ACL denies this copy CREATE, with
    /// their final ACL: opened only if something is created beneath them.
    closed: HashMap<String, Vec<zk::Acl>>,
    /// Destination-only nodes to delete beneath whose ACL denies this copy
    /// DELETE, with an ACL that allows it (set before the deletions).
    unlock: Vec<(String, Vec<zk::Acl>)>,
    /// Such nodes whose ACL denies ADMIN too, in discovery order.
    undeletable: Vec<String>,
    /// Of those given the grant, the ones that may still exist (until their
    /// own deletion is known to have landed).
    unlocked: Vec<String>,
    /// Relative paths of parents whose sequence counter may lag.
    counters: HashMap<String, Counter>,
    /// Relative paths of parents this plan creates, until all their listed
    /// children are planned: what was created beneath one before a child
    /// shows that its counter may lag. Bounded like the walk's own stack.
    listings: HashMap<String, Listing>,
    /// The ids the writer session holds: the run's and the destination's.
    writer_ids: Vec<(String, String)>,
}

impl<'a> Planner<'a> {
    pub fn new(src_root: &str, dst_root: &str, opts: &'a CopyOptions, ids: &Identities) -> Planner<'a> {
        Planner {
            opts,
            writer_ids: ids.writer(),
            src_root: src_root.to_string(),
            dst_root: dst_root.to_string(),
            tally: Tally::default(),
            deletes: Vec::new(),
            deferred_acl: Vec::new(),
            acls_sent: Vec::new(),
            closed: HashMap::new(),
            unlock: Vec::new(),
            undeletable: Vec::new(),
            unlocked: Vec::new(),
            counters: HashMap::new(),
            listings: HashMap::new(),
        }
    }

    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// A subtree the walk could not list stops the copy.
    pub fn listed(&self, failures: &[ListFailure]) -> Result<()> {
        match failures.first() {
            Some(f) => {
                Err(Error::zk(f.side, "list children of", &path::join(self.root(f.side), &f.rel), f.error.clone()))
            }
            None => Ok(()),
        }
    }

    /// A parent's source children were listed: `names` entries follow.
    pub fn children_listed(&mut self, rel: &str, names: usize) {
        if let Some(l) = self.listings.get_mut(rel) {
            if names == 0 {
                self.listings.remove(rel);
            } else {
                l.left = Some(names);
            }
        }
    }

    /// One listed child of `parent` was planned.
    fn child_planned(&mut self, parent: &str) {
        if let Some(l) = self.listings.get_mut(parent)
            && let Some(left) = l.left.as_mut()
        {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.listings.remove(parent);
            }
        }
    }

    fn root(&self, side: Side) -> &str {
        match side {
            Side::Source => &self.src_root,
            Side::Destination => &self.dst_root,
        }
    }

    /// Plans one walked entry: appends its operations to `out`.
    pub fn entry(&mut self, e: Entry, out: &mut Vec<Op>) -> Result<()> {
        let listed_parent = match e.src {
            Slot::Absent => None,
            _ => path::rel_parent(&e.rel).map(str::to_string),
        };
        let planned = self.plan_entry(e, out);
        if let Some(parent) = listed_parent {
            self.child_planned(&parent);
        }
        planned
    }

    fn plan_entry(&mut self, e: Entry, out: &mut Vec<Op>) -> Result<()> {
        let dst_path = path::join(&self.dst_root, &e.rel);
        let src_path = || path::join(&self.src_root, &e.rel);
        match (e.src, &e.dst) {
            (Slot::Failed(err), _) => Err(Error::zk(Side::Source, "read", &src_path(), err)),
            (_, Slot::Failed(err)) => Err(Error::zk(Side::Destination, "read", &dst_path, err.clone())),
            (Slot::Node(s), dst) if !s.is_ephemeral() => {
                if self.opts.acl == AclMode::Preserve && acl_masked(&s.acl) {
                    return Err(Error::AclMasked { side: Side::Source, path: src_path() });
                }
                match dst {
                    Slot::Node(d) if d.is_ephemeral() => Err(Error::EphemeralInTheWay { path: dst_path }),
                    Slot::Node(d) => self.update(&e.rel, dst_path, *s, d, out),
                    _ => {
                        let kind = if self.opts.kinds.is_empty() {
                            (NodeKind::Persistent, false)
                        } else {
                            self.opts.kinds.kind_for(&src_path())
                        };
                        self.create(&e.rel, dst_path, kind, *s, out);
                        Ok(())
                    }
                }
            }
            (src, dst) => {
                // Nothing to copy here: absent, vanished, or ephemeral. A
                // listed child not created leaves its parent's counter one
                // behind.
                if let Some(parent) = path::rel_parent(&e.rel)
                    && matches!(src, Slot::Node(_) | Slot::Vanished)
                    && !self.counters.contains_key(parent)
                {
                    let created = self.listings.get(parent).map_or(0, |l| l.created);
                    self.counters.insert(parent.to_string(), Counter { created });
                }
                if self.opts.mode == Mode::Mirror
                    && let Slot::Node(d) = dst
                    && !d.is_ephemeral()
                    && !e.rel.is_empty()
                {
                    if d.stat.num_children > 0 && !self.may_beneath(&d.acl, zk::Permission::DELETE) {
                        // Its children are deleted first: that needs DELETE
                        // on it, which ADMIN can grant (it goes anyway).
                        if self.may_beneath(&d.acl, zk::Permission::ADMIN) {
                            let acl = self.writable(&d.acl);
                            self.unlock.push((dst_path.clone(), acl));
                        } else {
                            self.undeletable.push(dst_path.clone());
                        }
                    }
                    self.deletes.push(dst_path);
                }
                Ok(())
            }
        }
    }

    /// Makes room for a create beneath `parent` when its ACL would refuse it.
    fn open_parent(&mut self, parent: &str, out: &mut Vec<Op>) {
        if let Some(final_acl) = self.closed.remove(parent) {
            let writable = self.writable(&final_acl);
            out.push(Op::SetAcl { path: parent.to_string(), acl: writable });
            if !self.deferred_acl.iter().any(|(p, _)| p == parent) && !self.acls_sent.iter().any(|p| p == parent) {
                self.deferred_acl.push((parent.to_string(), final_acl));
            }
        }
    }

    fn emit(&mut self, op: Op, out: &mut Vec<Op>) {
        if !self.closed.is_empty() {
            match &op {
                Op::Create { path, .. } | Op::Delete { path } => {
                    if let Some(parent) = path::parent(path) {
                        self.open_parent(parent, out);
                    }
                }
                Op::Pad { parent, .. } => self.open_parent(parent, out),
                _ => {}
            }
        }
        let sample = self.opts.plan_sample;
        let note = |v: &mut Vec<String>, p: &str| {
            if v.len() < sample {
                v.push(p.to_string());
            }
        };
        let plan = &mut self.tally.plan;
        match &op {
            Op::Create { path, .. } => {
                plan.creates += 1;
                note(&mut plan.first_creates, path);
            }
            Op::SetData { path, .. } => {
                plan.data_updates += 1;
                note(&mut plan.first_updates, path);
            }
            Op::SetAcl { path, .. } => {
                plan.acl_updates += 1;
                note(&mut plan.first_updates, path);
            }
            Op::Delete { path } => {
                plan.deletes += 1;
                note(&mut plan.first_deletes, path);
            }
            Op::Pad { .. } => {}
        }
        out.push(op);
    }

    /// The ACL a node ends with: the source's, or OPEN with `AclMode::Open`.
    fn final_acl(&self, src_acl: Vec<zk::Acl>) -> Vec<zk::Acl> {
        match self.opts.acl {
            AclMode::Preserve => src_acl,
            AclMode::Open => open_acl(),
        }
    }

    /// `acl` plus a grant that lets this copy create and read beneath it:
    /// to this run's identity, and to the destination's own ids, so that a
    /// later run with the same credentials can finish the job.
    fn writable(&mut self, acl: &[zk::Acl]) -> Vec<zk::Acl> {
        let mut out = acl.to_vec();
        for (scheme, id) in &self.writer_ids {
            out.push(zk::Acl::new(zk::Permission::ALL, zk::AuthId::new(scheme, id)));
        }
        out
    }

    /// Whether this copy may create nodes beneath it: children to copy, or
    /// a sequence counter to pad.
    fn writes_beneath(&self, s: &NodeInfo, d: Option<&NodeInfo>) -> bool {
        s.stat.num_children > 0
            || (self.opts.sequence_counters && next_sequence(&s.stat) > s.stat.num_children as i64)
            || (self.opts.mode == Mode::Mirror && d.is_some_and(|d| d.stat.num_children > 0))
    }

    /// Whether `acl` grants `perm` to this copy's writer.
    fn may_beneath(&self, acl: &[zk::Acl], perm: zk::Permission) -> bool {
        grants_all(acl, &self.writer_ids, &[perm])
    }

    /// Whether `acl` lets this copy do all it may do beneath a node: create
    /// (children, pads), delete (pads, mirror) and read (reconcile).
    fn open_beneath(&self, acl: &[zk::Acl]) -> bool {
        const BENEATH: [zk::Permission; 3] = [zk::Permission::CREATE, zk::Permission::DELETE, zk::Permission::READ];
        grants_all(acl, &self.writer_ids, &BENEATH)
    }

    fn create(&mut self, rel: &str, dst_path: String, kind: (NodeKind, bool), s: NodeInfo, out: &mut Vec<Op>) {
        let (kind, from_snapshot) = kind;
        match kind {
            NodeKind::Container => self.tally.kinds.containers += 1,
            NodeKind::Ttl(_) => self.tally.kinds.ttl += 1,
            NodeKind::Persistent => {}
        }
        self.tally.kinds.from_snapshot += from_snapshot as u64;
        if let Some(parent) = path::rel_parent(rel) {
            if let Some(c) = self.counters.get_mut(parent) {
                c.created += 1;
            }
            if let Some(l) = self.listings.get_mut(parent) {
                l.created += 1;
            }
        }
        // Children were deleted on the source: the copy alone would leave
        // the destination's counter behind.
        if next_sequence(&s.stat) > s.stat.num_children as i64 {
            self.counters.insert(rel.to_string(), Counter::default());
        } else if s.stat.num_children > 0 {
            self.listings.insert(rel.to_string(), Listing::default());
        }
        let writes_beneath = self.writes_beneath(&s, None);
        let acl = self.final_acl(s.acl);
        let acl = if writes_beneath && !self.open_beneath(&acl) {
            self.deferred_acl.push((dst_path.clone(), acl.clone()));
            self.writable(&acl)
        } else {
            acl
        };
        self.emit(Op::Create { path: dst_path, data: s.data, acl, kind }, out);
    }

    fn update(&mut self, rel: &str, dst_path: String, mut s: NodeInfo, d: &NodeInfo, out: &mut Vec<Op>) -> Result<()> {
        if next_sequence(&s.stat) > next_sequence(&d.stat) {
            self.counters.insert(rel.to_string(), Counter::default());
        }
        let mut changed = false;
        if s.data != d.data {
            changed = true;
            self.tally.data_updates += 1;
            self.emit(Op::SetData { path: dst_path.clone(), data: std::mem::take(&mut s.data) }, out);
        }
        let acl = self.final_acl(std::mem::take(&mut s.acl));
        // A hidden destination ACL cannot be compared: set it.
        let differs = acl_masked(&d.acl) || !acl_equal(&acl, &d.acl);
        if self.writes_beneath(&s, Some(d)) && !self.open_beneath(&acl) {
            // Children may still be created under it: its final ACL waits
            // until they are in; it is opened only if one is created.
            if !self.open_beneath(&d.acl) {
                self.closed.insert(dst_path.clone(), acl.clone());
            }
            if differs {
                changed = true;
                self.tally.acl_updates += 1;
                self.deferred_acl.push((dst_path, acl));
            }
        } else if differs {
            changed = true;
            self.tally.acl_updates += 1;
            self.emit(Op::SetAcl { path: dst_path, acl }, out);
        }
        if !changed {
            self.tally.unchanged += 1;
        }
        Ok(())
    }

    /// The scope of relative path `rel` (`"/"` or empty: the whole tree).
    fn scope(&self, rel: &str) -> Scope {
        let rel = if rel.is_empty() { WHOLE } else { rel };
        let abs = if rel == WHOLE { self.dst_root.clone() } else { path::join(&self.dst_root, rel) };
        Scope { rel: rel.to_string(), abs }
    }

    /// Once the walk is done: whether the mirror deletions go ahead. A dry
    /// run lists every deletion; a real run over the delete limit, or with a
    /// node to delete beneath which this copy may neither delete nor change
    /// the ACL of ([`Planner::undeletable`]), deletes none.
    #[cfg(test)]
    pub fn deletions_refused(&mut self) -> bool {
        self.deletions_refused_in(WHOLE)
    }

    /// [`Planner::deletions_refused`] for the deletions inside `scope`: the
    /// limit applies to those, and only a node they would delete beneath
    /// ([`Planner::undeletable_in`]) refuses them.
    pub fn deletions_refused_in(&mut self, scope: &str) -> bool {
        let over = self.opts.max_delete.is_some_and(|max| self.pending_deletions_in(scope) as u64 > max);
        self.tally.delete_limit_exceeded |= over;
        (over || self.undeletable_in(scope).is_some()) && !self.opts.dry_run
    }

    /// The first destination node the mirror would delete beneath whose ACL
    /// grants this copy neither DELETE nor ADMIN.
    #[cfg(test)]
    pub fn undeletable(&self) -> Option<&str> {
        self.undeletable.first().map(String::as_str)
    }

    /// The first such node the deletions inside `scope` would delete
    /// beneath: one inside it, or the parent of its top.
    pub fn undeletable_in(&self, scope: &str) -> Option<&str> {
        let scope = self.scope(scope);
        let parent = path::parent(&scope.abs);
        self.undeletable.iter().find(|p| scope.holds(p) || Some(p.as_str()) == parent).map(String::as_str)
    }

    /// Deletions planned and not emitted yet.
    #[cfg(test)]
    pub fn pending_deletions(&self) -> usize {
        self.deletes.len()
    }

    /// Deletions planned inside `scope` and not emitted yet.
    pub fn pending_deletions_in(&self, scope: &str) -> usize {
        let scope = self.scope(scope);
        self.deletes.iter().filter(|p| scope.holds(p)).count()
    }

    /// Emits up to `max` mirror deletions, children before parents; returns
    /// how many.
    /// Nodes only the destination has whose ACL denies this copy DELETE
    /// are first given a grant that lets it delete beneath them.
    #[cfg(test)]
    pub fn deletions(&mut self, max: usize, out: &mut Vec<Op>) -> usize {
        self.deletions_in(WHOLE, max, out)
    }

    /// [`Planner::deletions`] inside `scope`. The top of the scope waits
    /// (for a scope holding its parent) when its parent would first have to
    /// be opened or given a grant to delete beneath it: that would write
    /// outside the scope.
    pub fn deletions_in(&mut self, scope: &str, max: usize, out: &mut Vec<Op>) -> usize {
        let scope = self.scope(scope);
        let mut n = 0;
        let (unlock, rest) = std::mem::take(&mut self.unlock).into_iter().partition(|(p, _)| scope.holds(p));
        self.unlock = rest;
        for (p, acl) in unlock {
            self.unlocked.push(p.clone());
            self.emit(Op::SetAcl { path: p, acl }, out);
            n += 1;
        }
        // From the end (discovery order is parents first), skipping what
        // lies outside the scope or waits for its parent.
        let mut picked = Vec::new();
        let mut i = self.deletes.len();
        while n + picked.len() < max && i > 0 {
            i -= 1;
            let p = &self.deletes[i];
            let waits = path::parent(p).is_some_and(|parent| !scope.holds(parent) && self.guarded(parent));
            if scope.holds(p) && !waits {
                picked.push(i);
            }
        }
        // `picked` runs from the highest index down: take those entries out,
        // keep the others in their order, emit the highest first.
        let mut taken = Vec::with_capacity(picked.len());
        if let Some(&low) = picked.last() {
            let mut next = picked.iter().rev().copied().peekable();
            for (i, p) in self.deletes.split_off(low).into_iter().enumerate() {
                if next.next_if_eq(&(low + i)).is_some() {
                    taken.push(p);
                } else {
                    self.deletes.push(p);
                }
            }
            taken.reverse();
        }
        for p in taken {
            self.emit(Op::Delete { path: p }, out);
            n += 1;
        }
        n
    }

    /// Whether the ACL of `node` must change before a child of it can be
    /// deleted, and has not yet.
    fn guarded(&self, node: &str) -> bool {
        self.closed.contains_key(node) || self.unlock.iter().any(|(p, _)| p == node)
    }

    /// The deletions emitted so far have landed: the nodes given a grant to
    /// be deleted beneath are gone once they were deleted.
    #[cfg(test)]
    pub fn deletions_applied(&mut self) {
        self.deletions_applied_in(WHOLE);
    }

    /// [`Planner::deletions_applied`] for the nodes inside `scope`.
    pub fn deletions_applied_in(&mut self, scope: &str) {
        let scope = self.scope(scope);
        if !self.unlocked.iter().any(|p| scope.holds(p)) {
            return;
        }
        let pending: HashSet<&str> = self.deletes.iter().filter(|p| scope.holds(p)).map(String::as_str).collect();
        self.unlocked.retain(|p| !scope.holds(p) || pending.contains(p.as_str()));
    }

    /// The parents (relative paths, sorted) whose counters are to be read
    /// once everything else has landed.
    #[cfg(test)]
    pub fn counter_candidates(&self) -> Vec<String> {
        self.counter_candidates_in(WHOLE)
    }

    /// The parents inside `scope` whose counters are to be read once
    /// everything else there has landed.
    pub fn counter_candidates_in(&self, scope: &str) -> Vec<String> {
        let scope = self.scope(scope);
        let mut rels: Vec<String> = self.counters.keys().filter(|rel| scope.holds_rel(rel)).cloned().collect();
        rels.sort();
        rels
    }

    /// The counters inside `scope` were read and their pads have landed (or,
    /// in a dry run, were predicted): they are candidates no more.
    pub fn counters_applied_in(&mut self, scope: &str) {
        let scope = self.scope(scope);
        self.counters.retain(|rel, _| !scope.holds_rel(rel));
    }

    /// The pads a parent needs, from stats read after everything else
    /// landed: each pad is one more child creation on the destination.
    pub fn pads(&mut self, rel: &str, src: &zk::Stat, dst: &zk::Stat) -> Option<Pads> {
        let base = next_sequence(dst);
        let deficit = counter_deficit(src, dst);
        if deficit <= 0 {
            return None;
        }
        self.tally.padded_parents += 1;
        self.tally.pads += deficit as u64;
        Some(Pads { parent: path::join(&self.dst_root, rel), next: base + 1, last: base + deficit })
    }

    /// The pads a parent would need once this plan is applied, from stats
    /// read before anything is written (`dst` is `None` where the plan
    /// creates the parent): the source's counter less the destination's and
    /// the children this plan creates beneath it. Counts them; returns how
    /// many.
    ///
    /// The count of created children is exact where the plan creates the
    /// parent or the destination's counter is behind when the parent is
    /// read (tracked from the parent's own entry or listing); for other
    /// parents, tracked from their first child not created, the
    /// destination's counter is not behind to begin with.
    pub fn predict_pads(&mut self, rel: &str, src: &zk::Stat, dst: Option<&zk::Stat>) -> u64 {
        let Some(c) = self.counters.get(rel) else { return 0 };
        let deficit = next_sequence(src) - dst.map_or(0, next_sequence) - c.created;
        if deficit <= 0 {
            return 0;
        }
        self.tally.padded_parents += 1;
        self.tally.pads += deficit as u64;
        deficit as u64
    }

    /// The pads needed when they are more than the pad limit allows: counted
    /// before writing, they can only be more now if the source changed
    /// since, and then no counter is padded.
    pub fn pads_refused(&self, needed: &[Pads]) -> Option<u64> {
        let total: u64 = needed.iter().map(Pads::remaining).sum();
        self.opts.max_pad.is_some_and(|max| total > max).then_some(total)
    }

    /// Emits up to `max` of `pads` (child `name`), opening the parent first
    /// when its ACL would refuse them; returns how many.
    pub fn pad(&mut self, pads: &mut Pads, name: &str, max: usize, out: &mut Vec<Op>) -> usize {
        let mut n = 0;
        while n < max && pads.next <= pads.last {
            let op = Op::Pad { parent: pads.parent.clone(), name: name.to_string(), target: pads.next };
            self.emit(op, out);
            pads.next += 1;
            n += 1;
        }
        n
    }

    /// Emits up to `max` of the ACLs that waited for their subtrees, the
    /// ones not emitted yet; returns how many. They stay pending until
    /// [`Planner::acls_applied`].
    #[cfg(test)]
    pub fn final_acls(&mut self, max: usize, out: &mut Vec<Op>) -> usize {
        self.final_acls_in(WHOLE, max, out)
    }

    /// [`Planner::final_acls`] of the nodes inside `scope`.
    pub fn final_acls_in(&mut self, scope: &str, max: usize, out: &mut Vec<Op>) -> usize {
        let scope = self.scope(scope);
        let mut taken = Vec::new();
        let mut kept = Vec::with_capacity(self.deferred_acl.len());
        for (p, acl) in std::mem::take(&mut self.deferred_acl) {
            if taken.len() < max && scope.holds(&p) {
                taken.push((p, acl));
            } else {
                kept.push((p, acl));
            }
        }
        self.deferred_acl = kept;
        let n = taken.len();
        for (p, acl) in taken {
            self.acls_sent.push(p.clone());
            self.emit(Op::SetAcl { path: p, acl }, out);
        }
        n
    }

    /// The final ACLs emitted so far have landed: they are pending no more.
    pub fn acls_applied(&mut self) {
        self.acls_sent.clear();
    }

    /// How many nodes may still carry a temporary grant: waiting for their
    /// final ACL, given it in operations not known to have landed, or given
    /// one to be deleted beneath and not known to be deleted.
    pub fn pending_acls(&self) -> usize {
        self.deferred_acl.len() + self.acls_sent.len() + self.unlocked.len()
    }

    /// [`Planner::pending_acls`] inside `scope`.
    pub fn pending_acls_in(&self, scope: &str) -> usize {
        let scope = self.scope(scope);
        self.deferred_acl.iter().filter(|(p, _)| scope.holds(p)).count()
            + self.acls_sent.iter().filter(|p| scope.holds(p)).count()
            + self.unlocked.iter().filter(|p| scope.holds(p)).count()
    }
}

#[cfg(test)]
mod tests;
