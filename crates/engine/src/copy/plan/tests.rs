//! The planner without a server: one table test per rule, and a property
//! test that applies plans to an in-memory model of ZooKeeper.
//!
//! The model keeps what the planner's correctness depends on: a parent
//! exists before its child is created, only childless nodes are deleted,
//! every write is checked against the ACL for the writer's identities
//! (CREATE and DELETE on the parent, WRITE and ADMIN on the node), and each
//! node counts its child creations as the server does (clients see
//! `cversion = 2 * creations - children`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use zookeeper_client as zk;

use super::*;
use crate::node::canonical_acl;
use crate::read::walk::Entry;

const SRC_ROOT: &str = "/src";
const DST_ROOT: &str = "/dst";

fn me() -> (String, String) {
    ("digest".to_string(), "me:hash".to_string())
}

fn run_id() -> (String, String) {
    ("digest".to_string(), "zkrepl-run:hash".to_string())
}

fn entry_acl(perms: zk::Permission, id: Option<&(String, String)>) -> zk::Acl {
    match id {
        Some((scheme, id)) => zk::Acl::new(perms, zk::AuthId::new(scheme, id)),
        None => zk::Acl::new(perms, zk::AuthId::anyone()),
    }
}

fn read_only() -> Vec<zk::Acl> {
    vec![entry_acl(zk::Permission::READ, None)]
}

fn options(mode: Mode) -> CopyOptions {
    CopyOptions { mode, ..CopyOptions::default() }
}

/// The destination's id (`me`) and the run's.
fn identities() -> Identities {
    Identities { dst: vec![me()], run: run_id() }
}

// ---------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug, PartialEq)]
struct Node {
    data: Vec<u8>,
    acl: Vec<zk::Acl>,
    /// Child creations ever made beneath it.
    creations: i64,
    ephemeral: bool,
    /// Listed by its parent, then deleted (with its subtree) before it is
    /// read: the walk sees it vanish.
    vanishes: bool,
}

/// A ZooKeeper tree by absolute path; `/` always exists.
#[derive(Clone, Debug, PartialEq)]
struct Tree {
    nodes: BTreeMap<String, Node>,
}

fn stat(creations: i64, children: i64, ephemeral: bool) -> zk::Stat {
    crate::node::test_stat((2 * creations - children) as i32, children as i32, 0, if ephemeral { 0x1234 } else { 0 })
}

/// Whether a session holding `ids` may do `perm` under `acl`.
fn allowed(acl: &[zk::Acl], ids: &[(String, String)], perm: zk::Permission) -> bool {
    acl.iter().any(|a| {
        let (scheme, id) = (a.auth_id().scheme(), a.auth_id().id());
        a.permission().has(perm)
            && ((scheme == "world" && id == "anyone") || ids.iter().any(|(s, i)| s == scheme && i == id))
    })
}

impl Tree {
    fn new() -> Tree {
        let root = Node { data: Vec::new(), acl: open_acl(), creations: 0, ephemeral: false, vanishes: false };
        Tree { nodes: BTreeMap::from([("/".to_string(), root)]) }
    }

    fn children(&self, p: &str) -> Vec<String> {
        let prefix = if p == "/" { "/".to_string() } else { format!("{p}/") };
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k[prefix.len()..].to_string())
            .filter(|name| !name.is_empty() && !name.contains('/'))
            .collect()
    }

    fn stat(&self, p: &str) -> Option<zk::Stat> {
        let n = self.nodes.get(p)?;
        Some(stat(n.creations, self.children(p).len() as i64, n.ephemeral))
    }

    fn info(&self, p: &str) -> Option<NodeInfo> {
        let n = self.nodes.get(p)?;
        Some(NodeInfo { stat: self.stat(p)?, data: n.data.clone(), acl: n.acl.clone() })
    }

    /// Adds a node under an existing parent, counting the creation.
    fn add(&mut self, p: &str, data: &[u8], acl: Vec<zk::Acl>, ephemeral: bool) {
        let parent = path::parent(p).expect("not the root");
        self.nodes.get_mut(parent).expect("parent first").creations += 1;
        self.nodes.insert(p.to_string(), Node { data: data.to_vec(), acl, creations: 0, ephemeral, vanishes: false });
    }

    /// Applies one operation as the server would for a session holding `ids`.
    fn apply(&mut self, op: &Op, ids: &[(String, String)]) -> Result<(), String> {
        let within = |p: &str| p == DST_ROOT || p.starts_with(&format!("{DST_ROOT}/"));
        if !within(op.path()) {
            return Err(format!("{op:?} is outside the destination root"));
        }
        let parent_of = |p: &str| path::parent(p).map(str::to_string).ok_or(format!("{p} has no parent"));
        match op {
            Op::Create { path, data, acl, .. } => {
                let parent = parent_of(path)?;
                let p = self.nodes.get(&parent).ok_or(format!("create {path}: no parent"))?;
                if p.ephemeral {
                    return Err(format!("create {path}: ephemeral parent"));
                }
                if !allowed(&p.acl, ids, zk::Permission::CREATE) {
                    return Err(format!("create {path}: NoAuth on {parent} {:?}", p.acl));
                }
                if self.nodes.contains_key(path) {
                    return Err(format!("create {path}: exists"));
                }
                if acl.is_empty() {
                    return Err(format!("create {path}: empty ACL"));
                }
                self.add(path, data, acl.clone(), false);
            }
            Op::SetData { path, data } => {
                let n = self.nodes.get_mut(path).ok_or(format!("setData {path}: no node"))?;
                if !allowed(&n.acl, ids, zk::Permission::WRITE) {
                    return Err(format!("setData {path}: NoAuth"));
                }
                n.data = data.clone();
            }
            Op::SetAcl { path, acl } => {
                let n = self.nodes.get_mut(path).ok_or(format!("setACL {path}: no node"))?;
                if !allowed(&n.acl, ids, zk::Permission::ADMIN) {
                    return Err(format!("setACL {path}: NoAuth"));
                }
                if acl.is_empty() {
                    return Err(format!("setACL {path}: empty ACL"));
                }
                n.acl = acl.clone();
            }
            Op::Delete { path } => {
                if !self.nodes.contains_key(path) {
                    return Err(format!("delete {path}: no node"));
                }
                if !self.children(path).is_empty() {
                    return Err(format!("delete {path}: not empty"));
                }
                let parent = parent_of(path)?;
                if !allowed(&self.nodes[&parent].acl, ids, zk::Permission::DELETE) {
                    return Err(format!("delete {path}: NoAuth on {parent}"));
                }
                self.nodes.remove(path);
            }
            Op::Pad { parent, name, target } => {
                let p = self.nodes.get(parent).ok_or(format!("pad {parent}: no node"))?;
                for perm in [zk::Permission::CREATE, zk::Permission::DELETE] {
                    if !allowed(&p.acl, ids, perm) {
                        return Err(format!("pad {parent}: NoAuth ({perm})"));
                    }
                }
                if self.nodes.contains_key(&path::child(parent, name)) {
                    return Err(format!("pad {parent}: child {name} exists"));
                }
                self.nodes.get_mut(parent).unwrap().creations += 1;
                let now = next_sequence(&self.stat(parent).unwrap());
                if now != *target {
                    return Err(format!("pad {parent}: counter at {now}, the pad meant {target}"));
                }
            }
        }
        Ok(())
    }

    /// The tree once its vanishing nodes are gone (their subtrees with
    /// them); a deletion leaves the parent's creations as they were.
    fn settled(&self) -> Tree {
        let gone: Vec<String> = self.nodes.iter().filter(|(_, n)| n.vanishes).map(|(p, _)| p.clone()).collect();
        let mut nodes = self.nodes.clone();
        nodes.retain(|p, _| !gone.iter().any(|g| path::is_within(g, p)));
        Tree { nodes }
    }

    /// The subtree under `root`: relative path -> (data, canonical ACL).
    fn subtree(&self, root: &str) -> BTreeMap<String, (Vec<u8>, Vec<crate::node::AclEntry>)> {
        self.nodes
            .iter()
            .filter_map(|(p, n)| {
                let rel = p.strip_prefix(root)?;
                (rel.is_empty() || rel.starts_with('/'))
                    .then(|| (rel.to_string(), (n.data.clone(), canonical_acl(&n.acl))))
            })
            .collect()
    }
}

/// One item of the walker's stream: an entry, or the news that a node's
/// source children were listed (how many names).
enum Step {
    Listed(String, usize),
    Entry(Entry),
}

/// The walker's stream over two model trees, in a parent-first order chosen
/// by `pick` (an index into the paths ready to be read): what the walker
/// reads, lists and merges, by the same rules (destination-only nodes are
/// walked in mirror mode only; a vanishing source node is listed, then read
/// as vanished).
fn walk(src: &Tree, dst: &Tree, mode: Mode, mut pick: impl FnMut(usize) -> usize) -> Vec<Step> {
    let mirror = mode == Mode::Mirror;
    let slot = |t: &Tree, root: &str, rel: &str, here: bool| match (t.info(&path::join(root, rel)), here) {
        (Some(_), true) if t.nodes[&path::join(root, rel)].vanishes => Slot::Vanished,
        (Some(n), true) => Slot::Node(Box::new(n)),
        _ => Slot::Absent,
    };
    let mut ready: Vec<(String, bool, bool)> = vec![(String::new(), true, dst.nodes.contains_key(DST_ROOT))];
    let mut out = Vec::new();
    while !ready.is_empty() {
        let (rel, on_src, on_dst) = ready.swap_remove(pick(ready.len()));
        let (s, d) = (slot(src, SRC_ROOT, &rel, on_src), slot(dst, DST_ROOT, &rel, on_dst));
        let src_names = if s.node().is_some() { src.children(&path::join(SRC_ROOT, &rel)) } else { Vec::new() };
        let dst_names = if d.node().is_some() && (s.node().is_some() || mirror) {
            dst.children(&path::join(DST_ROOT, &rel))
        } else {
            Vec::new()
        };
        for name in &src_names {
            ready.push((path::child(&rel, name), true, dst_names.contains(name)));
        }
        if mirror {
            for name in dst_names.iter().filter(|n| !src_names.contains(n)) {
                ready.push((path::child(&rel, name), false, true));
            }
        }
        let listed = (!src_names.is_empty()).then(|| Step::Listed(rel.clone(), src_names.len()));
        out.push(Step::Entry(Entry { rel, src: s, dst: d }));
        out.extend(listed);
    }
    out
}

/// What a run left: the destination, the planner's tally, and what was
/// applied to the destination.
struct Outcome {
    dst: Tree,
    tally: Tally,
    created: u64,
    deleted: u64,
    pads: u64,
    /// The node the mirror's deletions were refused for.
    refused: Option<String>,
    /// The scopes whose deletions were refused.
    refused_in: Vec<String>,
}

/// Runs a whole copy against the model, phase by phase as the driver does
/// (the phases in the order of [`PHASES`]): each call's operations are
/// applied before the next call. Fails with the first error (the planner's
/// or a refusal of the model).
fn run(src: &Tree, dst: &Tree, opts: &CopyOptions, seed: u64) -> Result<Outcome, String> {
    run_in(src, dst, opts, seed, &[WHOLE])
}

/// The destination nodes outside the scope of relative path `scope`.
fn outside(t: &Tree, scope: &str) -> BTreeMap<String, Node> {
    let abs = if scope == WHOLE { DST_ROOT.to_string() } else { path::join(DST_ROOT, scope) };
    t.nodes.iter().filter(|(p, _)| !path::is_within(&abs, p)).map(|(p, n)| (p.clone(), n.clone())).collect()
}

/// [`run`] with the end-of-run phases run for each of `scopes` in turn.
/// Fails also when a scope's operations write outside it, or change any
/// node outside it.
fn run_in(src: &Tree, dst: &Tree, opts: &CopyOptions, seed: u64, scopes: &[&str]) -> Result<Outcome, String> {
    let ids = identities().writer();
    let mut state = seed | 1;
    let pick = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let steps = walk(src, dst, opts.mode, pick);
    // Stats are read after the walk: the vanished nodes are gone by then.
    let src = src.settled();
    let mut planner = Planner::new(SRC_ROOT, DST_ROOT, opts, &identities());
    let mut out = Outcome {
        dst: dst.clone(),
        tally: Tally::default(),
        created: 0,
        deleted: 0,
        pads: 0,
        refused: None,
        refused_in: Vec::new(),
    };
    let mut ops = Vec::new();
    // Applies `ops`; in an end phase, each must write inside `scope`.
    let apply = |ops: &mut Vec<Op>, o: &mut Outcome, scope: Option<&str>| -> Result<(), String> {
        for op in ops.drain(..) {
            if let Some(scope) = scope {
                let written = match &op {
                    Op::Pad { parent, name, .. } => path::child(parent, name),
                    op => op.path().to_string(),
                };
                let top = if scope == WHOLE { DST_ROOT.to_string() } else { path::join(DST_ROOT, scope) };
                if !path::is_within(&top, &written) {
                    return Err(format!("{op:?} in scope {scope} writes outside it"));
                }
            }
            if !opts.dry_run {
                o.dst.apply(&op, &ids).map_err(|e| format!("{e} (scope {scope:?})"))?;
                match op {
                    Op::Create { .. } => o.created += 1,
                    Op::Delete { .. } => o.deleted += 1,
                    Op::Pad { .. } => o.pads += 1,
                    _ => {}
                }
            }
        }
        Ok(())
    };
    for step in steps {
        match step {
            Step::Listed(rel, names) => planner.children_listed(&rel, names),
            Step::Entry(e) => {
                planner.entry(e, &mut ops).map_err(|e| e.to_string())?;
                apply(&mut ops, &mut out, None)?;
            }
        }
    }
    for &scope in scopes {
        let before = outside(&out.dst, scope);
        let within = Some(scope);
        let refused = planner.deletions_refused_in(scope);
        if refused {
            out.refused_in.push(scope.to_string());
        }
        for phase in PHASES {
            match phase {
                Phase::Deletions => {
                    if !refused {
                        while planner.deletions_in(scope, 3, &mut ops) > 0 {
                            apply(&mut ops, &mut out, within)?;
                        }
                        planner.deletions_applied_in(scope);
                    }
                }
                Phase::Counters => {
                    if !opts.sequence_counters {
                        continue;
                    }
                    let mut needed = Vec::new();
                    for rel in planner.counter_candidates_in(scope) {
                        let Some(s) = src.stat(&path::join(SRC_ROOT, &rel)) else { continue };
                        let d = out.dst.stat(&path::join(DST_ROOT, &rel));
                        if opts.dry_run {
                            planner.predict_pads(&rel, &s, d.as_ref());
                        } else if let Some(d) = d {
                            needed.extend(planner.pads(&rel, &s, &d));
                        }
                    }
                    if let Some(n) = planner.pads_refused(&needed) {
                        return Err(format!("{n} pads refused"));
                    }
                    for mut pads in needed {
                        while planner.pad(&mut pads, "pad", 7, &mut ops) > 0 {
                            apply(&mut ops, &mut out, within)?;
                        }
                    }
                    planner.counters_applied_in(scope);
                }
                Phase::FinalAcls => {
                    while planner.final_acls_in(scope, 2, &mut ops) > 0 {
                        apply(&mut ops, &mut out, within)?;
                        planner.acls_applied();
                    }
                }
            }
        }
        // Only a node still to be deleted (refused, or waiting for its
        // parent) may keep a grant.
        if planner.pending_acls_in(scope) != 0 && planner.pending_deletions_in(scope) == 0 {
            return Err(format!("{} final ACLs still pending in {scope}", planner.pending_acls_in(scope)));
        }
        if outside(&out.dst, scope) != before {
            return Err(format!("the phases for {scope} changed nodes outside it"));
        }
    }
    // A node given a grant to be deleted beneath keeps it when its parent's
    // scope refused its deletion.
    if planner.pending_acls() != 0 && out.refused_in.is_empty() {
        return Err(format!("{} final ACLs still pending", planner.pending_acls()));
    }
    out.tally = planner.tally().clone();
    out.refused = planner.undeletable().map(str::to_string);
    Ok(out)
}

/// Feeds a walk to a planner, collecting its operations.
fn feed(planner: &mut Planner<'_>, steps: Vec<Step>, ops: &mut Vec<Op>) -> Vec<String> {
    let mut errors = Vec::new();
    for step in steps {
        match step {
            Step::Listed(rel, names) => planner.children_listed(&rel, names),
            Step::Entry(e) => {
                if let Err(e) = planner.entry(e, ops) {
                    errors.push(e.to_string());
                }
            }
        }
    }
    errors
}

/// Builds a model tree from (relative path, data, ACL, ephemeral), parents first.
fn tree(root: &str, nodes: &[(&str, &[u8], Vec<zk::Acl>, bool)]) -> Tree {
    let mut t = Tree::new();
    for (rel, data, acl, eph) in nodes {
        t.add(&path::join(root, rel), data, acl.clone(), *eph);
    }
    t
}

fn node(rel: &'static str, data: &'static [u8]) -> (&'static str, &'static [u8], Vec<zk::Acl>, bool) {
    (rel, data, open_acl(), false)
}

/// Plans a whole walk (in one parent-first order) without applying it.
fn plan<'a>(opts: &'a CopyOptions, src: &Tree, dst: &Tree) -> (Vec<Op>, Planner<'a>) {
    let mut planner = Planner::new(SRC_ROOT, DST_ROOT, opts, &identities());
    let mut ops = Vec::new();
    let errors = feed(&mut planner, walk(src, dst, opts.mode, |_| 0), &mut ops);
    assert!(errors.is_empty(), "{errors:?}");
    (ops, planner)
}

fn paths(ops: &[Op]) -> Vec<String> {
    ops.iter()
        .map(|op| {
            let kind = match op {
                Op::Create { .. } => "create",
                Op::SetData { .. } => "set",
                Op::SetAcl { .. } => "acl",
                Op::Delete { .. } => "delete",
                Op::Pad { .. } => "pad",
            };
            format!("{kind} {}", op.path())
        })
        .collect()
}

// ---------------------------------------------------------------------------
// One rule at a time.

#[test]
fn fresh_creates_every_source_node_parents_first_with_its_data_and_acl() {
    let src = tree(SRC_ROOT, &[node("", b"r"), node("/a", b"1"), node("/a/b", b"2")]);
    let opts = options(Mode::Fresh);
    let (ops, planner) = plan(&opts, &src, &Tree::new());
    assert_eq!(paths(&ops), ["create /dst", "create /dst/a", "create /dst/a/b"]);
    assert_eq!(
        ops[2],
        Op::Create { path: "/dst/a/b".into(), data: b"2".to_vec(), acl: open_acl(), kind: NodeKind::Persistent }
    );
    assert_eq!(planner.tally().plan.creates, 3);
    assert!(planner.counter_candidates().is_empty(), "no child was ever deleted");
}

#[test]
fn ephemerals_are_never_created_and_their_parent_counter_is_watched() {
    let src =
        tree(SRC_ROOT, &[node("", b""), node("/q", b""), ("/q/lock", b"me", open_acl(), true), node("/q/x", b"")]);
    let opts = options(Mode::Fresh);
    let (ops, mut planner) = plan(&opts, &src, &Tree::new());
    assert_eq!(paths(&ops), ["create /dst", "create /dst/q", "create /dst/q/x"]);
    assert_eq!(planner.counter_candidates(), ["/q"]);
    // Two creations on the source, one on the destination: one pad.
    let s = src.stat("/src/q").unwrap();
    assert_eq!(planner.predict_pads("/q", &s, None), 1);
    let pads = planner.pads("/q", &s, &stat(1, 1, false)).unwrap();
    assert_eq!(pads, Pads { parent: "/dst/q".into(), next: 2, last: 2 });
}

#[test]
fn update_sets_only_what_differs_and_keeps_extras() {
    let src = tree(
        SRC_ROOT,
        &[node("", b""), node("/same", b"1"), node("/data", b"new"), ("/acl", b"a", read_only(), false)],
    );
    let dst = tree(
        DST_ROOT,
        &[node("", b""), node("/same", b"1"), node("/data", b"old"), node("/acl", b"a"), node("/extra", b"e")],
    );
    let opts = options(Mode::Update);
    let (ops, planner) = plan(&opts, &src, &dst);
    let mut got = paths(&ops);
    got.sort();
    assert_eq!(got, ["acl /dst/acl", "set /dst/data"]);
    assert_eq!(planner.tally().unchanged, 2, "the root and /same");
    assert_eq!((planner.tally().data_updates, planner.tally().acl_updates), (1, 1));
    assert_eq!(planner.pending_deletions(), 0, "update keeps extra nodes");
}

#[test]
fn mirror_deletes_children_before_parents_after_everything_else_and_never_the_root() {
    let src = tree(SRC_ROOT, &[node("", b""), node("/keep", b"")]);
    let dst =
        tree(DST_ROOT, &[node("", b""), node("/keep", b""), node("/x", b""), node("/x/y", b""), node("/x/y/z", b"")]);
    let opts = options(Mode::Mirror);
    let (ops, mut planner) = plan(&opts, &src, &dst);
    assert!(ops.is_empty(), "deletions wait for the end: {ops:?}");
    assert!(!planner.deletions_refused());
    let mut out = Vec::new();
    assert_eq!(planner.deletions(2, &mut out), 2);
    assert_eq!(planner.deletions(2, &mut out), 1);
    assert_eq!(planner.deletions(2, &mut out), 0);
    assert_eq!(paths(&out), ["delete /dst/x/y/z", "delete /dst/x/y", "delete /dst/x"]);
}

#[test]
fn a_destination_only_node_denying_delete_is_given_a_grant_first_or_refused_without_admin() {
    use zk::Permission as P;
    let src = tree(SRC_ROOT, &[node("", b"")]);
    let no_delete = vec![entry_acl(P::READ | P::WRITE | P::CREATE | P::ADMIN, None)];
    let dst = tree(DST_ROOT, &[node("", b""), ("/x", b"", no_delete.clone(), false), node("/x/y", b"")]);
    let opts = options(Mode::Mirror);
    let (_, mut planner) = plan(&opts, &src, &dst);
    assert!(!planner.deletions_refused());
    let mut out = Vec::new();
    while planner.deletions(10, &mut out) > 0 {}
    assert_eq!(paths(&out), ["acl /dst/x", "delete /dst/x/y", "delete /dst/x"]);
    let Op::SetAcl { acl, .. } = &out[0] else { unreachable!() };
    assert!(allowed(acl, &[run_id()], P::DELETE) && acl.starts_with(&no_delete));
    assert_eq!(planner.pending_acls(), 1, "holds the grant until the deletions landed");
    planner.deletions_applied();
    assert_eq!(planner.pending_acls(), 0);

    let read_only_dst = tree(DST_ROOT, &[node("", b""), ("/x", b"", read_only(), false), node("/x/y", b"")]);
    let (_, mut planner) = plan(&opts, &src, &read_only_dst);
    assert!(planner.deletions_refused(), "nothing is deleted");
    assert_eq!(planner.undeletable(), Some("/dst/x"));
}

#[test]
fn a_mirror_over_max_delete_is_refused_in_a_real_run_and_shown_in_a_dry_run() {
    let src = tree(SRC_ROOT, &[node("", b"")]);
    let dst = tree(DST_ROOT, &[node("", b""), node("/a", b""), node("/b", b"")]);
    let real = CopyOptions { max_delete: Some(1), ..options(Mode::Mirror) };
    let (_, mut planner) = plan(&real, &src, &dst);
    assert!(planner.deletions_refused());
    assert!(planner.tally().delete_limit_exceeded);
    let dry = CopyOptions { dry_run: true, ..real.clone() };
    let (_, mut planner) = plan(&dry, &src, &dst);
    assert!(!planner.deletions_refused(), "a dry run lists them");
    assert!(planner.tally().delete_limit_exceeded);
    let allowed = CopyOptions { max_delete: Some(2), ..real };
    let (_, mut planner) = plan(&allowed, &src, &dst);
    assert!(!planner.deletions_refused());
}

#[test]
fn a_scope_holds_its_top_and_what_lies_beneath_not_a_sibling_sharing_its_name_prefix() {
    let mut src = tree(
        SRC_ROOT,
        &[
            node("", b""),
            ("/a", b"", read_only(), false),
            node("/a/k", b""),
            ("/ab", b"", read_only(), false),
            node("/ab/k", b""),
        ],
    );
    // Two children created and deleted since: both counters lag.
    src.nodes.get_mut("/src/a").unwrap().creations += 2;
    src.nodes.get_mut("/src/ab").unwrap().creations += 2;
    let dst =
        tree(DST_ROOT, &[node("", b""), node("/a", b""), node("/a/x", b""), node("/ab", b""), node("/ab/x", b"")]);
    let opts = options(Mode::Mirror);
    let (ops, mut planner) = plan(&opts, &src, &dst);
    let mut created = paths(&ops);
    created.sort();
    assert_eq!(created, ["create /dst/a/k", "create /dst/ab/k"]);
    assert_eq!(planner.pending_deletions_in("/a"), 1);
    assert_eq!(planner.pending_deletions_in("/ab"), 1);
    assert_eq!(planner.pending_deletions_in("/a/x"), 1, "the top itself");
    assert_eq!(planner.pending_deletions_in(WHOLE), 2);
    assert_eq!(planner.counter_candidates_in("/a"), ["/a"]);
    assert_eq!(planner.counter_candidates_in("/ab"), ["/ab"]);
    assert_eq!(planner.pending_acls_in("/a"), 1);
    assert!(!planner.deletions_refused_in("/a"));

    let mut out = Vec::new();
    while planner.deletions_in("/a", 10, &mut out) > 0 {}
    planner.deletions_applied_in("/a");
    planner.counters_applied_in("/a");
    while planner.final_acls_in("/a", 10, &mut out) > 0 {}
    assert_eq!(paths(&out), ["delete /dst/a/x", "acl /dst/a"]);
    assert_eq!(planner.pending_acls_in("/a"), 1, "sent, not known to have landed");
    planner.acls_applied();
    assert_eq!(planner.pending_acls_in("/a"), 0);
    assert_eq!(planner.pending_acls(), 1, "/ab still waits");
    assert_eq!(planner.counter_candidates(), ["/ab"]);
    assert_eq!(planner.pending_deletions(), 1);

    // What is left, for the whole tree: /ab's work only.
    let mut out = Vec::new();
    while planner.deletions(10, &mut out) > 0 {}
    while planner.final_acls(10, &mut out) > 0 {}
    assert_eq!(paths(&out), ["delete /dst/ab/x", "acl /dst/ab"]);
}

#[test]
fn the_top_of_a_scope_waits_for_its_parent_when_the_parent_must_be_opened() {
    // The destination root denies this copy DELETE: it is opened for the
    // deletion of /x, which only a scope holding the root may do.
    let closed = vec![
        entry_acl(zk::Permission::READ, None),
        entry_acl(zk::Permission::WRITE | zk::Permission::ADMIN, Some(&me())),
    ];
    let src = tree(SRC_ROOT, &[("", b"", read_only(), false)]);
    let dst = tree(DST_ROOT, &[("", b"", closed, false), node("/x", b""), node("/x/y", b"")]);
    let opts = options(Mode::Mirror);
    let (_, mut planner) = plan(&opts, &src, &dst);
    let mut out = Vec::new();
    while planner.deletions_in("/x", 10, &mut out) > 0 {}
    assert_eq!(paths(&out), ["delete /dst/x/y"]);
    assert_eq!(planner.pending_deletions_in("/x"), 1, "/x waits");
    let mut out = Vec::new();
    while planner.deletions(10, &mut out) > 0 {}
    assert_eq!(paths(&out), ["acl /dst", "delete /dst/x"]);
}

#[test]
fn max_delete_and_undeletable_nodes_refuse_the_deletions_of_the_scopes_they_concern() {
    let src = tree(SRC_ROOT, &[node("", b"")]);
    let dst = tree(DST_ROOT, &[node("", b""), node("/a", b""), node("/a/x", b""), node("/b", b""), node("/b/x", b"")]);
    let opts = CopyOptions { max_delete: Some(2), ..options(Mode::Mirror) };
    let (_, mut planner) = plan(&opts, &src, &dst);
    assert!(!planner.deletions_refused_in("/a"), "two in /a");
    assert!(!planner.tally().delete_limit_exceeded);
    assert!(planner.deletions_refused_in(WHOLE), "four in all");
    assert!(planner.tally().delete_limit_exceeded);

    // /u denies DELETE and ADMIN: nothing beneath it can go, which
    // concerns /u and the scopes of its children, not /b.
    let src = tree(SRC_ROOT, &[node("", b"")]);
    let dst = tree(
        DST_ROOT,
        &[
            node("", b""),
            ("/u", b"", read_only(), false),
            node("/u/x", b""),
            node("/u/x/y", b""),
            node("/b", b""),
            node("/b/x", b""),
        ],
    );
    let opts = options(Mode::Mirror);
    let (_, mut planner) = plan(&opts, &src, &dst);
    assert_eq!(planner.undeletable_in("/u"), Some("/dst/u"));
    assert_eq!(planner.undeletable_in("/u/x"), Some("/dst/u"), "/u/x is deleted beneath /u");
    assert_eq!(planner.undeletable_in("/u/x/y"), None, "deleted beneath /u/x");
    assert_eq!(planner.undeletable_in("/b"), None);
    assert!(planner.deletions_refused_in("/u/x"));
    assert!(!planner.deletions_refused_in("/b"));
    assert!(planner.deletions_refused());
}

#[test]
fn a_restrictive_new_parent_is_created_writable_for_this_run_and_gets_its_acl_last() {
    let src = tree(SRC_ROOT, &[node("", b""), ("/ro", b"r", read_only(), false), node("/ro/child", b"c")]);
    let opts = options(Mode::Fresh);
    let (ops, mut planner) = plan(&opts, &src, &Tree::new());
    let Op::Create { acl, .. } = &ops[1] else { panic!("{ops:?}") };
    let mut expect = read_only();
    expect.push(entry_acl(zk::Permission::ALL, Some(&run_id())));
    expect.push(entry_acl(zk::Permission::ALL, Some(&me())));
    assert_eq!(*acl, expect, "the one-time identity and the user's own, never world");
    assert_eq!(planner.pending_acls(), 1);
    let mut end = Vec::new();
    planner.final_acls(usize::MAX, &mut end);
    assert_eq!(end, [Op::SetAcl { path: "/dst/ro".into(), acl: read_only() }]);
    assert_eq!(planner.pending_acls(), 1, "pending until it is known to have landed");
    planner.acls_applied();
    assert_eq!(planner.pending_acls(), 0);
}

#[test]
fn final_acls_go_out_in_chunks_and_stay_pending_until_acknowledged() {
    let src = tree(
        SRC_ROOT,
        &[
            node("", b""),
            ("/a", b"", read_only(), false),
            node("/a/x", b""),
            ("/b", b"", read_only(), false),
            node("/b/x", b""),
            ("/c", b"", read_only(), false),
            node("/c/x", b""),
        ],
    );
    let opts = options(Mode::Fresh);
    let (_, mut planner) = plan(&opts, &src, &Tree::new());
    assert_eq!(planner.pending_acls(), 3);
    let mut out = Vec::new();
    assert_eq!(planner.final_acls(2, &mut out), 2);
    assert_eq!(planner.pending_acls(), 3, "sent, not acknowledged: a failure now leaves all three with the grant");
    planner.acls_applied();
    assert_eq!(planner.pending_acls(), 1);
    // The last one is sent and its flush fails: it stays pending.
    assert_eq!(planner.final_acls(2, &mut out), 1);
    assert_eq!(planner.final_acls(2, &mut out), 0, "each is emitted once");
    assert_eq!(planner.pending_acls(), 1);
    let mut got = paths(&out);
    got.sort();
    assert_eq!(got, ["acl /dst/a", "acl /dst/b", "acl /dst/c"]);
    planner.acls_applied();
    assert_eq!(planner.pending_acls(), 0);
}

#[test]
fn the_temporary_grant_goes_to_the_run_and_the_destinations_ids_alone() {
    let src = tree(SRC_ROOT, &[node("", b""), ("/ro", b"r", read_only(), false), node("/ro/child", b"c")]);
    let opts = options(Mode::Fresh);
    let (ops, _) = plan(&opts, &src, &Tree::new());
    let Op::Create { acl, .. } = &ops[1] else { panic!("{ops:?}") };
    assert_eq!(acl[..1], read_only()[..], "the real ACL first");
    assert_eq!(
        acl[1..],
        [entry_acl(zk::Permission::ALL, Some(&run_id())), entry_acl(zk::Permission::ALL, Some(&me()))],
        "then the run's identity and the destination's own: nobody else"
    );
}

#[test]
fn a_closed_existing_parent_is_opened_only_when_something_is_created_beneath_it() {
    // The destination's ACL lets this copy write and administer, not create.
    let closed = vec![
        entry_acl(zk::Permission::READ, None),
        entry_acl(zk::Permission::WRITE | zk::Permission::ADMIN, Some(&me())),
    ];
    let src = tree(SRC_ROOT, &[node("", b""), ("/p", b"", read_only(), false), node("/p/old", b"")]);
    let dst = tree(DST_ROOT, &[node("", b""), ("/p", b"", closed.clone(), false), node("/p/old", b"")]);
    let opts = options(Mode::Update);
    let (ops, mut planner) = plan(&opts, &src, &dst);
    assert!(ops.is_empty(), "nothing to create beneath: {ops:?}");
    let mut end = Vec::new();
    planner.final_acls(usize::MAX, &mut end);
    assert_eq!(end, [Op::SetAcl { path: "/dst/p".into(), acl: read_only() }]);

    let src =
        tree(SRC_ROOT, &[node("", b""), ("/p", b"", read_only(), false), node("/p/old", b""), node("/p/new", b"")]);
    let opts = options(Mode::Update);
    let (ops, mut planner) = plan(&opts, &src, &dst);
    assert_eq!(paths(&ops), ["acl /dst/p", "create /dst/p/new"], "opened first, then the create");
    let Op::SetAcl { acl, .. } = &ops[0] else { unreachable!() };
    assert!(allowed(acl, &[run_id()], zk::Permission::CREATE));
    let mut end = Vec::new();
    planner.final_acls(usize::MAX, &mut end);
    assert_eq!(end, [Op::SetAcl { path: "/dst/p".into(), acl: read_only() }], "the final ACL, once");
}

#[test]
fn counters_behind_are_padded_one_creation_at_a_time_and_predicted_before_writing() {
    // 5 creations, 2 children left.
    let mut src = tree(SRC_ROOT, &[node("", b""), node("/q", b""), node("/q/a", b""), node("/q/b", b"")]);
    src.nodes.get_mut("/src/q").unwrap().creations = 5;
    let opts = options(Mode::Fresh);
    let (ops, mut planner) = plan(&opts, &src, &Tree::new());
    assert_eq!(ops.len(), 4);
    assert_eq!(planner.counter_candidates(), ["/q"]);
    let s = src.stat("/src/q").unwrap();
    assert_eq!(planner.predict_pads("/q", &s, None), 3, "5 creations, 2 by the copy");
    let mut pads = planner.pads("/q", &s, &stat(2, 2, false)).unwrap();
    assert_eq!(pads.remaining(), 3);
    let mut out = Vec::new();
    assert_eq!(planner.pad(&mut pads, "p", 2, &mut out), 2);
    assert_eq!(planner.pad(&mut pads, "p", 2, &mut out), 1);
    assert_eq!(planner.pad(&mut pads, "p", 2, &mut out), 0);
    let targets: Vec<i64> = out
        .iter()
        .map(|op| match op {
            Op::Pad { target, .. } => *target,
            _ => panic!("{op:?}"),
        })
        .collect();
    assert_eq!(targets, [3, 4, 5]);
    assert!(planner.pads("/q", &s, &stat(7, 2, false)).is_none(), "a destination ahead is left alone");
}

#[test]
fn pads_over_max_pad_are_refused_all_together() {
    let opts = CopyOptions { max_pad: Some(5), ..options(Mode::Update) };
    let planner = Planner::new(SRC_ROOT, DST_ROOT, &opts, &identities());
    let pads = |next, last| Pads { parent: "/dst/q".into(), next, last };
    assert_eq!(planner.pads_refused(&[pads(1, 3), pads(10, 11)]), None, "5 pads: at the limit");
    assert_eq!(planner.pads_refused(&[pads(1, 3), pads(10, 12)]), Some(6));
    let unlimited = options(Mode::Update);
    assert_eq!(Planner::new(SRC_ROOT, DST_ROOT, &unlimited, &identities()).pads_refused(&[pads(1, 1000)]), None);
}

#[test]
fn an_update_predicts_pads_from_the_destination_counter_and_its_creates() {
    // Source: 6 creations, 3 children; destination: 2 creations, 1 child
    // (one of the source's). The plan creates 2: 6 - 2 - 2 = 2 pads.
    let mut src =
        tree(SRC_ROOT, &[node("", b""), node("/q", b""), node("/q/a", b""), node("/q/b", b""), node("/q/c", b"")]);
    src.nodes.get_mut("/src/q").unwrap().creations = 6;
    let mut dst = tree(DST_ROOT, &[node("", b""), node("/q", b""), node("/q/a", b"")]);
    dst.nodes.get_mut("/dst/q").unwrap().creations = 2;
    let opts = options(Mode::Update);
    let (ops, mut planner) = plan(&opts, &src, &dst);
    assert_eq!(ops.len(), 2);
    let (s, d) = (src.stat("/src/q").unwrap(), dst.stat("/dst/q").unwrap());
    assert_eq!(planner.predict_pads("/q", &s, Some(&d)), 2);
}

#[test]
fn refusals_name_the_node() {
    let masked = vec![entry_acl(zk::Permission::ALL, Some(&("digest".into(), "user:x".into())))];
    let src = tree(SRC_ROOT, &[node("", b""), ("/m", b"", masked, false)]);
    let opts = options(Mode::Fresh);
    let mut planner = Planner::new(SRC_ROOT, DST_ROOT, &opts, &identities());
    let errors = feed(&mut planner, walk(&src, &Tree::new(), Mode::Fresh, |_| 0), &mut Vec::new());
    assert!(errors.len() == 1 && errors[0].contains("/src/m") && errors[0].contains("ADMIN"), "{errors:?}");
    assert!(!errors[0].contains("--"), "the engine names no command-line option: {errors:?}");
    // With --acl open the masked ACL is not needed.
    let open = CopyOptions { acl: AclMode::Open, ..options(Mode::Fresh) };
    let (ops, _) = plan(&open, &src, &Tree::new());
    assert!(ops.iter().all(|op| matches!(op, Op::Create { acl, .. } if *acl == open_acl())));

    let src = tree(SRC_ROOT, &[node("", b""), node("/e", b"")]);
    let dst = tree(DST_ROOT, &[node("", b""), ("/e", b"", open_acl(), true)]);
    let mut planner = Planner::new(SRC_ROOT, DST_ROOT, &opts, &identities());
    let errors = feed(&mut planner, walk(&src, &dst, Mode::Update, |_| 0), &mut Vec::new());
    assert!(errors.len() == 1 && errors[0].contains("/dst/e") && errors[0].contains("ephemeral"), "{errors:?}");

    let failed = Entry { rel: "/x".into(), src: Slot::Failed(zk::Error::NoAuth), dst: Slot::Absent };
    let err = planner.entry(failed, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(&err, Error::NoAuth { side: Side::Source, path, .. } if path == "/src/x"),
        "a typed refusal with side and path: {err:?}"
    );
    assert_eq!(err.zk_error(), Some(&zk::Error::NoAuth));
}

// ---------------------------------------------------------------------------
// Random pairs of trees.

/// Every relative path a generated tree may hold: three levels of a, b, c.
fn universe() -> Vec<String> {
    let mut out = vec![String::new()];
    let mut level = vec![String::new()];
    for _ in 0..3 {
        level = level.iter().flat_map(|p| ["a", "b", "c"].map(|n| format!("{p}/{n}"))).collect();
        out.extend(level.iter().cloned());
    }
    out
}

/// Source ACLs: anything, restrictive ones included.
fn src_acl(i: u8) -> Vec<zk::Acl> {
    use zk::Permission as P;
    match i % 6 {
        0 => open_acl(),
        1 => read_only(),
        2 => vec![entry_acl(P::READ, None), entry_acl(P::ALL, Some(&me()))],
        3 => vec![entry_acl(P::ALL, Some(&("digest".into(), "other:hash".into())))],
        4 => vec![entry_acl(P::CREATE | P::READ, None)],
        _ => vec![entry_acl(P::READ | P::WRITE | P::ADMIN | P::CREATE, None)],
    }
}

/// ACLs of existing destination nodes: readable by the copy's reader and
/// writable and administrable by its writer (else the server refuses the
/// copy, rightly), but maybe closed to creating, deleting or both.
fn dst_acl(i: u8) -> Vec<zk::Acl> {
    use zk::Permission as P;
    match i % 4 {
        0 => open_acl(),
        1 => vec![entry_acl(P::READ | P::WRITE | P::ADMIN, None)],
        2 => vec![entry_acl(P::ALL, Some(&me()))],
        _ => vec![entry_acl(P::READ, None), entry_acl(P::WRITE | P::ADMIN | P::CREATE, Some(&me()))],
    }
}

/// ACLs of nodes only the destination has (readable, or the walk could not
/// list them): some deny this copy DELETE beneath them, with or without
/// ADMIN to change that.
fn dst_only_acl(i: u8) -> Vec<zk::Acl> {
    use zk::Permission as P;
    match i % 5 {
        0 => open_acl(),
        1 => vec![entry_acl(P::READ | P::WRITE | P::ADMIN | P::CREATE, None)],
        2 => vec![entry_acl(P::READ, None), entry_acl(P::ALL, Some(&me()))],
        3 => vec![entry_acl(P::READ | P::CREATE, None)],
        _ => vec![entry_acl(P::READ | P::DELETE, None)],
    }
}

/// Nodes a mirror would delete beneath whose ACL lets the copy neither
/// delete beneath them nor change it.
fn undeletable(src: &Tree, dst: &Tree, ids: &[(String, String)]) -> Vec<String> {
    dst.nodes
        .iter()
        .filter(|(p, _)| p.starts_with(&format!("{DST_ROOT}/")))
        .filter(|(p, _)| src.nodes.get(&format!("{SRC_ROOT}{}", &p[DST_ROOT.len()..])).is_none_or(|n| n.ephemeral))
        .filter(|(p, n)| {
            !dst.children(p).is_empty()
                && !allowed(&n.acl, ids, zk::Permission::DELETE)
                && !allowed(&n.acl, ids, zk::Permission::ADMIN)
        })
        .map(|(p, _)| p.clone())
        .collect()
}

/// One path of the universe on both sides.
#[derive(Clone, Debug)]
struct Spec {
    on_src: bool,
    on_dst: bool,
    src_data: u8,
    dst_data: u8,
    src_acl: u8,
    dst_acl: u8,
    /// Children created and deleted since.
    src_history: i64,
    dst_history: i64,
    ephemeral: bool,
    /// A source node that vanishes between its listing and its read.
    vanishes: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        any::<bool>(),
        0u8..3,
        0u8..3,
        any::<u8>(),
        any::<u8>(),
        0i64..3,
        0i64..3,
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(on_src, on_dst, src_data, dst_data, src_acl, dst_acl, src_history, dst_history, ephemeral, vanishes)| {
                Spec {
                    on_src,
                    on_dst,
                    src_data,
                    dst_data,
                    src_acl,
                    dst_acl,
                    src_history,
                    dst_history,
                    ephemeral,
                    vanishes,
                }
            },
        )
}

/// The two trees a list of specs describes (a path is there only if its
/// parent is, and is persistent). In a fresh copy the destination root is
/// missing or childless.
fn trees(specs: &[Spec], mode: Mode, dst_root: bool) -> (Tree, Tree) {
    let rels = universe();
    let (mut src, mut dst) = (Tree::new(), Tree::new());
    let data = |i: u8| [&b""[..], b"x", b"yy"][i as usize].to_vec();
    let parent_ok = |t: &Tree, root: &str, rel: &str| {
        path::rel_parent(rel).is_none_or(|p| t.nodes.get(&path::join(root, p)).is_some_and(|n| !n.ephemeral))
    };
    for (rel, s) in rels.iter().zip(specs) {
        if (rel.is_empty() || s.on_src) && parent_ok(&src, SRC_ROOT, rel) {
            let p = path::join(SRC_ROOT, rel);
            src.add(&p, &data(s.src_data), src_acl(s.src_acl), s.ephemeral && !rel.is_empty());
            src.nodes.get_mut(&p).unwrap().vanishes = s.vanishes && !rel.is_empty();
        }
    }
    let settled = src.settled();
    for (rel, s) in rels.iter().zip(specs) {
        let dst_here = if rel.is_empty() { dst_root } else { s.on_dst && mode != Mode::Fresh };
        if dst_here && parent_ok(&dst, DST_ROOT, rel) {
            // A node the source lacks (a mirror deletes it, and its
            // children first) lets this copy delete beneath it.
            let copied = settled.nodes.get(&path::join(SRC_ROOT, rel)).is_some_and(|n| !n.ephemeral);
            let acl = if copied { dst_acl(s.dst_acl) } else { dst_only_acl(s.dst_acl) };
            dst.add(&path::join(DST_ROOT, rel), &data(s.dst_data), acl, false);
        }
    }
    for (rel, s) in rels.iter().zip(specs) {
        if let Some(n) = src.nodes.get_mut(&path::join(SRC_ROOT, rel)) {
            n.creations += s.src_history;
        }
        if let Some(n) = dst.nodes.get_mut(&path::join(DST_ROOT, rel)) {
            n.creations += s.dst_history;
        }
    }
    (src, dst)
}

fn persistent(t: &Tree, root: &str) -> Vec<String> {
    t.nodes
        .iter()
        .filter(|(_, n)| !n.ephemeral)
        .filter_map(|(p, _)| p.strip_prefix(root).filter(|r| r.is_empty() || r.starts_with('/')).map(str::to_string))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn applying_the_plan_yields_the_source_tree(
        specs in prop::collection::vec(spec(), universe().len()),
        mode in prop::sample::select(vec![Mode::Fresh, Mode::Update, Mode::Mirror]),
        dst_root in any::<bool>(),
        open in prop::bool::weighted(0.2),
        counters in prop::bool::weighted(0.9),
        seed in any::<u64>(),
    ) {
        let (src, dst) = trees(&specs, mode, dst_root);
        let opts = CopyOptions {
            acl: if open { AclMode::Open } else { AclMode::Preserve },
            sequence_counters: counters,
            ..options(mode)
        };
        let done = run(&src, &dst, &opts, seed).map_err(TestCaseError::fail)?;
        // A mirror that cannot delete beneath a node refuses every deletion.
        let ids = identities().writer();
        let stuck = if mode == Mode::Mirror { undeletable(&src.settled(), &dst, &ids) } else { Vec::new() };
        prop_assert_eq!(done.refused.is_some(), !stuck.is_empty(), "refused {:?}, expected among {:?}", &done.refused, &stuck);
        if let Some(node) = &done.refused {
            prop_assert!(stuck.contains(node), "refused for {}, expected among {:?}", node, stuck);
            prop_assert_eq!(done.deleted, 0, "nothing deleted");
            prop_assert!(dst.nodes.keys().all(|p| done.dst.nodes.contains_key(p)), "every node kept");
            return Ok(());
        }

        // The source's persistent nodes (once the vanished are gone) with
        // their data and final ACL ...
        let open_list = open_acl();
        let final_acl = |acl: &[zk::Acl]| canonical_acl(if open { &open_list } else { acl });
        let settled = src.settled();
        let mut expect: BTreeMap<String, (Vec<u8>, Vec<crate::node::AclEntry>)> = persistent(&settled, SRC_ROOT)
            .into_iter()
            .map(|rel| {
                let n = &settled.nodes[&path::join(SRC_ROOT, &rel)];
                (rel, (n.data.clone(), final_acl(&n.acl)))
            })
            .collect();
        // ... and, with --update, every node only the destination had.
        if mode == Mode::Update {
            for (rel, v) in dst.subtree(DST_ROOT) {
                expect.entry(rel).or_insert(v);
            }
        }
        prop_assert_eq!(done.dst.subtree(DST_ROOT), expect);
        let above = |t: &Tree| (t.nodes["/"].data.clone(), t.nodes["/"].acl.clone(), t.nodes.keys().filter(|p| !p.starts_with(DST_ROOT)).count());
        prop_assert_eq!(above(&done.dst), above(&dst), "nothing written above the root but the root itself");
        // Counters exact: where the copy creates a parent, as many creations
        // as the source's; where the parent existed, the destination's
        // creations plus the copy's, raised to the source's when behind
        // (without counters, not raised).
        let settled = src.settled();
        for rel in persistent(&settled, SRC_ROOT) {
            let (sp, dp) = (path::join(SRC_ROOT, &rel), path::join(DST_ROOT, &rel));
            let s = next_sequence(&settled.stat(&sp).unwrap());
            let created_beneath = settled
                .children(&sp)
                .iter()
                .filter(|c| !settled.nodes[&path::child(&sp, c)].ephemeral && !dst.nodes.contains_key(&path::child(&dp, c)))
                .count() as i64;
            let expect = match dst.stat(&dp) {
                None if counters => s,
                None => created_beneath,
                Some(before) if counters => s.max(next_sequence(&before) + created_beneath),
                Some(before) => next_sequence(&before) + created_beneath,
            };
            let d = next_sequence(&done.dst.stat(&dp).unwrap());
            prop_assert_eq!(d, expect, "{}: destination counter (source {})", rel, s);
        }
        // A dry run writes nothing and counts what the real run wrote.
        let dry = run(&src, &dst, &CopyOptions { dry_run: true, ..opts.clone() }, seed).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&dry.dst, &dst);
        prop_assert_eq!(dry.tally.plan.creates, done.created);
        prop_assert_eq!(dry.tally.plan.deletes, done.deleted);
        prop_assert_eq!(dry.tally.pads, done.pads);
        prop_assert_eq!(dry.tally.padded_parents, done.tally.padded_parents);
    }

    #[test]
    fn the_end_phases_run_subtree_by_subtree_as_for_the_whole_tree(
        specs in prop::collection::vec(spec(), universe().len()),
        mode in prop::sample::select(vec![Mode::Fresh, Mode::Update, Mode::Mirror]),
        dst_root in any::<bool>(),
        open in prop::bool::weighted(0.2),
        counters in prop::bool::weighted(0.9),
        deeper in prop::collection::vec(prop::sample::select(universe()[4..].to_vec()), 0..4),
        order in Just(["/a", "/b", "/c"]).prop_shuffle(),
        seed in any::<u64>(),
    ) {
        let (src, dst) = trees(&specs, mode, dst_root);
        let opts = CopyOptions {
            acl: if open { AclMode::Open } else { AclMode::Preserve },
            sequence_counters: counters,
            ..options(mode)
        };
        // Some deeper subtrees first, then each child of the root, then
        // what is left.
        let mut scopes: Vec<&str> = deeper.iter().map(String::as_str).collect();
        scopes.extend(order);
        scopes.push(WHOLE);
        let whole = run(&src, &dst, &opts, seed).map_err(TestCaseError::fail)?;
        let parts = run_in(&src, &dst, &opts, seed, &scopes).map_err(TestCaseError::fail)?;
        if whole.refused.is_some() {
            // Refused where the deletions would be beneath an undeletable
            // node, and nowhere else.
            let ids = identities().writer();
            let stuck = undeletable(&src.settled(), &dst, &ids);
            let holds = |scope: &str| {
                let top = if scope == WHOLE { DST_ROOT.to_string() } else { path::join(DST_ROOT, scope) };
                stuck.iter().any(|n| path::is_within(&top, n) || path::parent(&top) == Some(n.as_str()))
            };
            let expect: Vec<String> = scopes.iter().filter(|s| holds(s)).map(|s| s.to_string()).collect();
            prop_assert_eq!(&parts.refused_in, &expect);
            return Ok(());
        }
        prop_assert_eq!(&parts.refused_in, &Vec::<String>::new());
        prop_assert_eq!(&parts.dst, &whole.dst, "scopes {:?}", scopes);
        prop_assert_eq!((parts.created, parts.deleted, parts.pads), (whole.created, whole.deleted, whole.pads));
        prop_assert_eq!(parts.tally.pads, whole.tally.pads);
        prop_assert_eq!(parts.tally.padded_parents, whole.tally.padded_parents);
        // A dry run predicts the same, scope by scope.
        let dry_opts = CopyOptions { dry_run: true, ..opts.clone() };
        let dry = run_in(&src, &dst, &dry_opts, seed, &scopes).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&dry.dst, &dst);
        prop_assert_eq!(dry.tally.plan.deletes, whole.deleted);
        prop_assert_eq!(dry.tally.pads, whole.pads);
    }
}
