//! Copy: the walker streams source (and, where needed, destination) nodes,
//! the planner turns each into write operations, the writer applies them.
//!
//! Modes: into an empty or missing destination root (default); `update`
//! (create missing, set changed data and ACLs, leave extra nodes); `mirror`
//! (also delete destination nodes the source lacks, strictly under the
//! destination root, after everything else). A dry run plans and writes
//! nothing.

pub mod kinds;

use std::collections::HashSet;
use std::time::Instant;

use tokio::sync::mpsc;
use zookeeper_client as zk;

use self::kinds::KindRules;
use crate::error::{Error, Result, Side};
use crate::node::{NodeInfo, Slot, acl_equal, acl_masked, grants_all, next_sequence, open_acl};
use crate::progress::Progress;
use crate::read::TreeReader;
use crate::read::walk::{self, Batch, DstOnly, Entry, WalkOptions};
use crate::write::{NodeKind, Op, Writer, WriterOptions};
use crate::zk::path;
use crate::zk::session::Session;

/// What to do with an existing destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The destination root must be missing or have no children.
    Fresh,
    /// Create missing nodes, set changed data and ACLs, keep extra nodes.
    Update,
    /// Like update, and delete destination nodes the source lacks.
    Mirror,
}

/// ACLs to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclMode {
    /// The source's ACL on every node.
    Preserve,
    /// OPEN_ACL_UNSAFE on every node.
    Open,
}

#[derive(Clone)]
pub struct CopyOptions {
    pub mode: Mode,
    pub dry_run: bool,
    pub acl: AclMode,
    pub kinds: KindRules,
    pub walk: WalkOptions,
    pub writer: WriterOptions,
    /// Refuse a mirror that would delete more nodes than this.
    pub max_delete: Option<u64>,
    /// Raise destination parents' child versions to the source's so that
    /// new sequential nodes keep counting from where the source was.
    pub sequence_counters: bool,
    /// ACL ids the destination session authenticates as.
    pub dst_ids: Vec<(String, String)>,
    /// This run's own identity, held by the writer session only (see
    /// [`run_identity`]): the temporary grant on nodes whose ACL would stop
    /// the copy from writing beneath them. Without one, the grant goes to
    /// `world:anyone`.
    pub copy_id: Option<(String, String)>,
    /// Paths listed per class in a dry-run plan.
    pub plan_sample: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            mode: Mode::Fresh,
            dry_run: false,
            acl: AclMode::Preserve,
            kinds: KindRules::default(),
            walk: WalkOptions::default(),
            writer: WriterOptions::default(),
            max_delete: None,
            sequence_counters: true,
            dst_ids: Vec::new(),
            copy_id: None,
            plan_sample: 10,
        }
    }
}

/// A one-time digest identity for a copy: give the credential to the writer
/// session and the id to [`CopyOptions::copy_id`]. No one else holds it, so
/// the temporary grants made with it open nothing to anyone else.
pub fn run_identity() -> (crate::zk::target::Auth, (String, String)) {
    use std::hash::{BuildHasher, Hasher};
    let word = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        format!("{:016x}", h.finish())
    };
    let credential = format!("zkrepl-{}:{}{}{}", word(), word(), word(), word());
    let id = ("digest".to_string(), crate::zk::target::digest_id(&credential));
    (crate::zk::target::Auth { scheme: "digest".to_string(), credential }, id)
}

/// What a dry run would do.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Plan {
    pub creates: u64,
    pub data_updates: u64,
    pub acl_updates: u64,
    pub deletes: u64,
    pub first_creates: Vec<String>,
    pub first_updates: Vec<String>,
    pub first_deletes: Vec<String>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct KindCounts {
    pub containers: u64,
    pub ttl: u64,
    pub from_snapshot: u64,
}

/// The result of a copy.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CopySummary {
    pub mode: Mode,
    pub dry_run: bool,
    pub nodes_read: u64,
    pub bytes_read: u64,
    pub created: u64,
    pub data_updated: u64,
    pub acl_updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub skipped_ephemerals: u64,
    pub skipped_system: u64,
    /// Nodes listed by their parent but gone when read (source changing).
    pub vanished: u64,
    pub kinds: KindCounts,
    pub padded_parents: u64,
    pub padding_ops: u64,
    pub transactions: u64,
    pub reconciled_transactions: u64,
    pub bytes_written: u64,
    pub seconds: f64,
    pub nodes_per_sec: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub max_source_mzxid: i64,
    pub max_source_pzxid: i64,
    /// Sessions replaced after expiring (the copy went on).
    pub session_renewals: usize,
    /// A dry run found more deletions than --max-delete allows.
    pub delete_limit_exceeded: bool,
    /// Peak resident memory of this process so far.
    pub peak_rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

/// Refuses a copy whose source and destination are the same tree or nest in
/// each other on the same ensemble, however the two are addressed (another
/// member, an alias, a proxy): a node seen through both sessions with the
/// same creation zxid and time is one node.
pub async fn check_distinct(src: &TreeReader, dst: &TreeReader) -> Result<()> {
    let (so, do_) = (src.pool().options(), dst.pool().options());
    let (src_abs, dst_abs) = (src.absolute_root(), dst.absolute_root());
    if !path::overlaps(&src_abs, &dst_abs) {
        return Ok(());
    }
    let same_hosts = {
        let a = resolve(&so.hosts.hosts).await;
        let b = resolve(&do_.hosts.hosts).await;
        a.iter().any(|x| b.contains(x))
    };
    let same = same_hosts || same_ensemble(src, dst, &src_abs, &dst_abs).await?;
    if same {
        let how = if src_abs == dst_abs {
            "is the source root".to_string()
        } else if path::is_within(&src_abs, &dst_abs) {
            format!("lies inside the source root {src_abs}")
        } else {
            format!("contains the source root {src_abs}")
        };
        return Err(Error::Overlap(format!(
            "destination root {dst_abs} {how} on the same ensemble; choose a --dst-root outside it"
        )));
    }
    Ok(())
}

/// Whether the two readers see the same ensemble: the deepest existing
/// ancestor of the inner root (visible to both, being inside both chroots)
/// or, when that is a node without a creation zxid (the server root), a few
/// of its children, have the same identity through both sessions.
async fn same_ensemble(src: &TreeReader, dst: &TreeReader, src_abs: &str, dst_abs: &str) -> Result<bool> {
    let identity = |s: &zk::Stat| (s.czxid, s.ctime);
    let inner = if src_abs.len() >= dst_abs.len() { src_abs } else { dst_abs };
    let (sc, dc) = (&src.pool().options().hosts.chroot, &dst.pool().options().hosts.chroot);
    let deeper = if sc.len() >= dc.len() { sc } else { dc };
    let mut candidates = vec![inner];
    candidates.extend(path::ancestors(inner).into_iter().rev());
    if inner != "/" {
        candidates.push("/");
    }
    // Only nodes inside both chroots are seen through both sessions.
    candidates.retain(|c| path::is_within(deeper, c));
    for c in candidates {
        let Some((s, children)) = src.probe_abs(c, true).await? else { continue };
        if s.czxid != 0 {
            return Ok(dst.probe_abs(c, false).await?.is_some_and(|(d, _)| identity(&d) == identity(&s)));
        }
        // The server root: look at its children instead.
        for name in children.iter().filter(|n| c != "/" || *n != "zookeeper").take(5) {
            let child = if c == "/" { format!("/{name}") } else { format!("{c}/{name}") };
            if let Some((cs, _)) = src.probe_abs(&child, false).await?
                && cs.czxid != 0
            {
                return Ok(dst.probe_abs(&child, false).await?.is_some_and(|(d, _)| identity(&d) == identity(&cs)));
            }
        }
        return Ok(false);
    }
    Ok(false)
}

async fn resolve(hosts: &[String]) -> Vec<std::net::SocketAddr> {
    let mut out = Vec::new();
    for h in hosts {
        if let Ok(addrs) = tokio::net::lookup_host(h.as_str()).await {
            out.extend(addrs);
        }
    }
    out
}

/// Copies `src`'s tree to `dst`'s root, writing through `writer_session`.
/// `dst` reads the destination (its root, and everything in update and
/// mirror modes). Refuses, before anything else, a missing source root,
/// then roots that overlap on one ensemble (see [`check_distinct`]).
pub async fn run(
    src: &TreeReader,
    dst: &TreeReader,
    writer_session: &Session,
    opts: &CopyOptions,
    progress: &Progress,
) -> Result<CopySummary> {
    // A missing source is what the user must fix first: whatever overlaps
    // would, it holds nothing to copy.
    if src.root_stat().await?.is_none() {
        return Err(Error::NoRoot { side: Side::Source, path: src.root().to_string() });
    }
    check_distinct(src, dst).await?;
    // A limit on deletions is a safety net: know the count before writing.
    if let (Mode::Mirror, false, Some(max)) = (opts.mode, opts.dry_run, opts.max_delete) {
        progress.set_phase("counting deletions");
        let probe = CopyOptions { dry_run: true, ..opts.clone() };
        let planned = run_pass(src, dst, writer_session, &probe, progress).await?;
        let deletes = planned.plan.map_or(0, |p| p.deletes);
        if deletes > max {
            return Err(Error::Usage(format!(
                "the mirror would delete {deletes} destination nodes, more than --max-delete {max}; nothing was written"
            )));
        }
        progress.read.store(0, std::sync::atomic::Ordering::Relaxed);
    }
    run_pass(src, dst, writer_session, opts, progress).await
}

async fn run_pass(
    src: &TreeReader,
    dst: &TreeReader,
    writer_session: &Session,
    opts: &CopyOptions,
    progress: &Progress,
) -> Result<CopySummary> {
    let started = Instant::now();
    progress.set_phase("checking");
    let Some(src_root) = src.root_stat().await? else {
        return Err(Error::NoRoot { side: Side::Source, path: src.root().to_string() });
    };
    let dst_root = dst.root_stat().await?;
    if let Some(stat) = &dst_root
        && opts.mode == Mode::Fresh
        && stat.num_children > 0
    {
        let children = own_children(dst, stat).await?;
        if children > 0 {
            return Err(Error::DestinationNotEmpty { path: dst.root().to_string(), children });
        }
    }
    if src_root.ephemeral_owner != 0 {
        return Err(Error::Usage(format!("source root {} is an ephemeral node: nothing to copy", src.root())));
    }
    if dst_root.is_none() && !opts.dry_run {
        crate::write::create_ancestors(writer_session, dst.root()).await?;
    }

    let mut walk_opts = opts.walk.clone();
    walk_opts.dst_only = if opts.mode == Mode::Mirror { DstOnly::Descend } else { DstOnly::Skip };
    walk_opts.skip_system = walk::system_skips(src, dst);
    let root_sides = walk::SRC | if dst_root.is_some() { walk::DST } else { 0 };

    let mut planner = Planner::new(src.root(), dst.root(), opts, writer_session, progress);
    progress.set_phase("copying");
    let (tx, rx) = mpsc::channel::<Batch>(8);
    let walking = walk::walk(Some(src), Some(dst), root_sides, &walk_opts, tx);
    let planning = async {
        // Owned here: when planning stops early, the receiver goes and the
        // walker stops too instead of waiting on a full channel.
        let mut rx = rx;
        loop {
            let batch = tokio::select! {
                b = rx.recv() => b,
                _ = progress.stopped() => None,
            };
            if progress.stop_requested() {
                return Err(Error::Interrupted);
            }
            match batch {
                Some(batch) => planner.batch(batch).await?,
                None => break,
            }
        }
        Ok::<(), Error>(())
    };
    let (walked, planned) = tokio::join!(walking, planning);
    let outcome = match (walked, planned) {
        (_, Err(e)) | (Err(e), _) => Err(e),
        (Ok(walked), Ok(())) => planner.finish(src, dst).await.map(|_| walked),
    };
    let walked = match outcome {
        Ok(w) => w,
        Err(e) => {
            // Land what is in flight so the report is true, then fail; nodes
            // still waiting for their final ACL keep this run's grant.
            let _ = planner.land().await;
            progress.temporary_acls.store(planner.pending_acls() as u64, std::sync::atomic::Ordering::Relaxed);
            return Err(e);
        }
    };

    let w = planner.writer.as_ref().map(|w| w.counters().clone()).unwrap_or_default();
    let seconds = started.elapsed().as_secs_f64();
    let nodes_read = walked.src.nodes;
    Ok(CopySummary {
        mode: opts.mode,
        dry_run: opts.dry_run,
        nodes_read,
        bytes_read: walked.src.bytes,
        created: if opts.dry_run { planner.plan.creates } else { w.created + w.existed },
        data_updated: planner.data_updates,
        acl_updated: planner.acl_updates,
        deleted: if opts.dry_run { planner.plan.deletes } else { w.deleted },
        unchanged: planner.unchanged,
        skipped_ephemerals: walked.src.ephemerals,
        skipped_system: walked.skipped_system,
        vanished: walked.src.vanished,
        kinds: planner.kinds.clone(),
        padded_parents: planner.padded_parents,
        padding_ops: w.padded * 2,
        transactions: w.transactions,
        reconciled_transactions: w.reconciled,
        bytes_written: w.bytes,
        seconds,
        nodes_per_sec: if seconds > 0.0 { nodes_read as f64 / seconds } else { 0.0 },
        latency_p50_ms: w.latency_ms(50.0),
        latency_p99_ms: w.latency_ms(99.0),
        max_source_mzxid: walked.src.max_mzxid,
        max_source_pzxid: walked.src.max_pzxid,
        session_renewals: src.pool().renewals() + dst.pool().renewals() + writer_session.renewals(),
        delete_limit_exceeded: planner.delete_limit_exceeded,
        peak_rss_bytes: crate::progress::peak_rss_bytes(),
        plan: opts.dry_run.then(|| planner.plan.clone()),
    })
}

/// Children of the destination root that count for a fresh copy: all of
/// them, except the server's own `zookeeper` when the root is the server's `/`.
async fn own_children(dst: &TreeReader, stat: &zk::Stat) -> Result<i32> {
    let abs = dst.absolute_root();
    if abs != "/" {
        return Ok(stat.num_children);
    }
    let Some((_, names)) = dst.probe_abs(&abs, true).await? else { return Ok(0) };
    Ok(names.iter().filter(|n| *n != "zookeeper").count() as i32)
}

struct Planner<'a> {
    opts: &'a CopyOptions,
    src_root: String,
    dst_root: String,
    writer: Option<Writer<'a>>,
    progress: &'a Progress,
    plan: Plan,
    unchanged: u64,
    data_updates: u64,
    acl_updates: u64,
    kinds: KindCounts,
    /// Destination paths to delete (mirror), in discovery order.
    deletes: Vec<String>,
    /// Final ACLs of nodes created or kept writable during the copy.
    deferred_acl: Vec<(String, Vec<zk::Acl>)>,
    /// Existing destination nodes whose ACL denies this copy CREATE, with
    /// their final ACL: opened only if something is created beneath them.
    closed: std::collections::HashMap<String, Vec<zk::Acl>>,
    /// Relative paths of parents whose sequence counter may lag.
    counter_candidates: HashSet<String>,
    padded_parents: u64,
    delete_limit_exceeded: bool,
    warned_open: bool,
}

impl<'a> Planner<'a> {
    fn new(
        src_root: &str,
        dst_root: &str,
        opts: &'a CopyOptions,
        session: &'a Session,
        progress: &'a Progress,
    ) -> Planner<'a> {
        Planner {
            opts,
            src_root: src_root.to_string(),
            dst_root: dst_root.to_string(),
            writer: (!opts.dry_run).then(|| Writer::new(session, opts.writer).with_progress(progress)),
            progress,
            plan: Plan::default(),
            unchanged: 0,
            data_updates: 0,
            acl_updates: 0,
            kinds: KindCounts::default(),
            deletes: Vec::new(),
            deferred_acl: Vec::new(),
            closed: std::collections::HashMap::new(),
            counter_candidates: HashSet::new(),
            padded_parents: 0,
            delete_limit_exceeded: false,
            warned_open: false,
        }
    }

    /// Makes room for a create beneath `parent` when its ACL would refuse it.
    async fn open_parent(&mut self, parent: &str) -> Result<()> {
        if let Some(final_acl) = self.closed.remove(parent) {
            let writable = self.writable(&final_acl);
            self.push(Op::SetAcl { path: parent.to_string(), acl: writable }).await?;
            if !self.deferred_acl.iter().any(|(p, _)| p == parent) {
                self.deferred_acl.push((parent.to_string(), final_acl));
            }
        }
        Ok(())
    }

    async fn push(&mut self, op: Op) -> Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.push(op).await,
            None => Ok(()),
        }
    }

    async fn emit(&mut self, op: Op) -> Result<()> {
        if !self.closed.is_empty() {
            match &op {
                Op::Create { path, .. } | Op::Delete { path } => {
                    if let Some(parent) = path::parent(path) {
                        self.open_parent(parent).await?;
                    }
                }
                Op::Pad { parent, .. } => self.open_parent(&parent.clone()).await?,
                _ => {}
            }
        }
        let sample = self.opts.plan_sample;
        let note = |v: &mut Vec<String>, p: &str| {
            if v.len() < sample {
                v.push(p.to_string());
            }
        };
        match &op {
            Op::Create { path, .. } => {
                self.plan.creates += 1;
                note(&mut self.plan.first_creates, path);
            }
            Op::SetData { path, .. } => {
                self.plan.data_updates += 1;
                note(&mut self.plan.first_updates, path);
            }
            Op::SetAcl { path, .. } => {
                self.plan.acl_updates += 1;
                note(&mut self.plan.first_updates, path);
            }
            Op::Delete { path } => {
                self.plan.deletes += 1;
                note(&mut self.plan.first_deletes, path);
            }
            Op::Pad { .. } => {}
        }
        match self.writer.as_mut() {
            Some(w) => w.push(op).await,
            None => Ok(()),
        }
    }

    async fn batch(&mut self, batch: Batch) -> Result<()> {
        if let Some(f) = batch.list_failures.into_iter().next() {
            return Err(Error::zk(f.side, "list children of", &path::join(self.root(f.side), &f.rel), f.error));
        }
        self.progress.add_read(batch.entries.len() as u64);
        for e in batch.entries {
            self.entry(e).await?;
        }
        Ok(())
    }

    fn root(&self, side: Side) -> &str {
        match side {
            Side::Source => &self.src_root,
            Side::Destination => &self.dst_root,
        }
    }

    /// The ACL a node ends with: the source's, or OPEN with `--acl open`.
    fn final_acl(&self, src_acl: Vec<zk::Acl>) -> Vec<zk::Acl> {
        match self.opts.acl {
            AclMode::Preserve => src_acl,
            AclMode::Open => open_acl(),
        }
    }

    /// `acl` plus a grant that lets this copy create and read beneath it.
    fn writable(&mut self, acl: &[zk::Acl]) -> Vec<zk::Acl> {
        let mut out = acl.to_vec();
        match &self.opts.copy_id {
            Some((scheme, id)) => {
                // This run's identity, and the user's own, so that a later
                // run with the same credentials can finish the job.
                out.push(zk::Acl::new(zk::Permission::ALL, zk::AuthId::new(scheme, id)));
                for (scheme, id) in &self.opts.dst_ids {
                    out.push(zk::Acl::new(zk::Permission::ALL, zk::AuthId::new(scheme, id)));
                }
            }
            None => {
                if !self.warned_open {
                    tracing::warn!(
                        "some nodes have ACLs that deny this copy writing beneath them; they are open to anyone until their subtree is copied"
                    );
                    self.warned_open = true;
                }
                out.push(zk::Acl::new(zk::Permission::ALL, zk::AuthId::anyone()));
            }
        }
        out
    }

    async fn entry(&mut self, e: Entry) -> Result<()> {
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
                    Slot::Node(d) if d.is_ephemeral() => Err(Error::Usage(format!(
                        "destination {dst_path} is an ephemeral node of a live session; the persistent source node cannot replace it"
                    ))),
                    Slot::Node(d) => self.update(&e.rel, dst_path, *s, d).await,
                    _ => {
                        let kind = if self.opts.kinds.is_empty() {
                            (NodeKind::Persistent, false)
                        } else {
                            self.opts.kinds.kind_for(&src_path())
                        };
                        self.create(&e.rel, dst_path, kind, *s).await
                    }
                }
            }
            (src, dst) => {
                // Nothing to copy here: absent, vanished, or ephemeral.
                if let Slot::Node(s) = src
                    && s.is_ephemeral()
                    && let Some(parent) = path::rel_parent(&e.rel)
                {
                    self.counter_candidates.insert(parent.to_string());
                }
                if self.opts.mode == Mode::Mirror
                    && let Slot::Node(d) = dst
                    && !d.is_ephemeral()
                    && !e.rel.is_empty()
                {
                    self.deletes.push(dst_path);
                }
                Ok(())
            }
        }
    }

    /// Whether this copy may create nodes beneath it: children to copy, or
    /// a sequence counter to pad.
    fn writes_beneath(&self, s: &NodeInfo, d: Option<&NodeInfo>) -> bool {
        s.stat.num_children > 0
            || (self.opts.sequence_counters && next_sequence(&s.stat) > s.stat.num_children as i64)
            || (self.opts.mode == Mode::Mirror && d.is_some_and(|d| d.stat.num_children > 0))
    }

    /// Whether `acl` lets this copy do all it may do beneath a node: create
    /// (children, pads), delete (pads, mirror) and read (reconcile).
    fn open_beneath(&self, acl: &[zk::Acl]) -> bool {
        const BENEATH: [zk::Permission; 3] = [zk::Permission::CREATE, zk::Permission::DELETE, zk::Permission::READ];
        let mut ids = self.opts.dst_ids.clone();
        ids.extend(self.opts.copy_id.clone());
        grants_all(acl, &ids, &BENEATH)
    }

    async fn create(&mut self, rel: &str, dst_path: String, kind: (NodeKind, bool), s: NodeInfo) -> Result<()> {
        let (kind, from_snapshot) = kind;
        match kind {
            NodeKind::Container => self.kinds.containers += 1,
            NodeKind::Ttl(_) => self.kinds.ttl += 1,
            NodeKind::Persistent => {}
        }
        self.kinds.from_snapshot += from_snapshot as u64;
        // Children were deleted on the source: the copy alone would leave
        // the destination's counter behind.
        if next_sequence(&s.stat) > s.stat.num_children as i64 {
            self.counter_candidates.insert(rel.to_string());
        }
        let writes_beneath = self.writes_beneath(&s, None);
        let acl = self.final_acl(s.acl);
        let acl = if writes_beneath && !self.open_beneath(&acl) {
            self.deferred_acl.push((dst_path.clone(), acl.clone()));
            self.writable(&acl)
        } else {
            acl
        };
        self.emit(Op::Create { path: dst_path, data: s.data, acl, kind }).await
    }

    async fn update(&mut self, rel: &str, dst_path: String, mut s: NodeInfo, d: &NodeInfo) -> Result<()> {
        if next_sequence(&s.stat) > next_sequence(&d.stat) {
            self.counter_candidates.insert(rel.to_string());
        }
        let mut changed = false;
        if s.data != d.data {
            changed = true;
            self.data_updates += 1;
            self.emit(Op::SetData { path: dst_path.clone(), data: std::mem::take(&mut s.data) }).await?;
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
                self.acl_updates += 1;
                self.deferred_acl.push((dst_path, acl));
            }
        } else if differs {
            changed = true;
            self.acl_updates += 1;
            self.emit(Op::SetAcl { path: dst_path, acl }).await?;
        }
        if !changed {
            self.unchanged += 1;
        }
        Ok(())
    }

    /// Sends what is queued and waits until all of it has landed.
    async fn finish_inflight(&mut self) -> Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.flush().await,
            None => Ok(()),
        }
    }

    /// After an error or a stop: lands what is in flight, sends nothing more.
    async fn land(&mut self) -> Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.land().await,
            None => Ok(()),
        }
    }

    /// Deletes (mirror), sequence counters, deferred ACLs, in that order.
    async fn finish(&mut self, src: &TreeReader, dst: &TreeReader) -> Result<()> {
        self.delete_limit_exceeded = self.opts.max_delete.is_some_and(|max| self.deletes.len() as u64 > max);
        // A dry run shows every deletion; a real run over the limit (the
        // source grew since it was counted) deletes none.
        let refused = self.delete_limit_exceeded && !self.opts.dry_run;
        self.check_stop()?;
        if !refused && !self.deletes.is_empty() {
            self.progress.set_phase("deleting");
            // Discovery order has parents first: reversed, children go first.
            for p in std::mem::take(&mut self.deletes).into_iter().rev() {
                self.emit(Op::Delete { path: p }).await?;
            }
        }
        // Everything lands before counters are read and padded.
        self.finish_inflight().await?;
        if self.opts.sequence_counters && !self.counter_candidates.is_empty() {
            self.check_stop()?;
            self.progress.set_phase("sequence counters");
            self.pad_counters(src, dst).await?;
        }
        self.final_acls().await?;
        if refused {
            return Err(Error::Usage(format!(
                "the mirror would delete {} destination nodes, more than --max-delete {}; nothing was deleted (the other changes were applied)",
                self.deletes.len(),
                self.opts.max_delete.unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// Sets the ACLs that waited for their subtrees.
    async fn final_acls(&mut self) -> Result<()> {
        if !self.deferred_acl.is_empty() {
            self.progress.set_phase("ACLs");
        }
        for (p, acl) in std::mem::take(&mut self.deferred_acl) {
            self.emit(Op::SetAcl { path: p, acl }).await?;
        }
        // Always: whatever is still queued goes out and lands here.
        self.finish_inflight().await
    }

    fn check_stop(&self) -> Result<()> {
        if self.progress.stop_requested() { Err(Error::Interrupted) } else { Ok(()) }
    }

    /// After a failure or a stop: how many nodes still carry the temporary
    /// grant (their final ACL waits for a re-run).
    fn pending_acls(&self) -> usize {
        self.deferred_acl.len()
    }

    /// Raises destination child versions to the source's, so sequential
    /// children created later get numbers the source never handed out.
    async fn pad_counters(&mut self, src: &TreeReader, dst: &TreeReader) -> Result<()> {
        let mut rels: Vec<String> = std::mem::take(&mut self.counter_candidates).into_iter().collect();
        rels.sort();
        let name = format!("zkrepl-cversion-pad-{:016x}", rand_u64());
        for chunk in rels.chunks(500) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let (s, d) = futures::try_join!(src.stats(&refs), dst.stats(&refs))?;
            for ((rel, s), d) in chunk.iter().zip(s).zip(d) {
                let (Some(s), Some(d)) = (s, d) else { continue };
                // Each pad is one more child creation on the destination.
                let deficit = next_sequence(&s) - next_sequence(&d);
                if self.opts.dry_run {
                    self.padded_parents += (deficit > 0) as u64;
                    continue;
                }
                if deficit <= 0 {
                    continue;
                }
                self.padded_parents += 1;
                let parent = path::join(&self.dst_root, rel);
                let base = next_sequence(&d);
                for k in 1..=deficit {
                    self.emit(Op::Pad { parent: parent.clone(), name: name.clone(), target: base + k }).await?;
                }
            }
        }
        self.finish_inflight().await
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish()
}
