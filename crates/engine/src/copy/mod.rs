//! Copy: the walker streams source (and, where needed, destination) nodes,
//! the planner (`plan`, no I/O) turns each into write operations, and a
//! thin driver here hands them to the writer and runs the end-of-run reads.
//!
//! Modes: into an empty or missing destination root (default); `update`
//! (create missing, set changed data and ACLs, leave extra nodes); `mirror`
//! (also delete destination nodes the source lacks, strictly under the
//! destination root, after everything else). A dry run plans and writes
//! nothing.

pub mod kinds;
pub(crate) mod plan;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use zookeeper_client as zk;

use self::kinds::KindRules;
use self::plan::{Identities, Planner};
use crate::error::{Error, Result, Side};
use crate::progress::Progress;
use crate::read::TreeReader;
use crate::read::walk::{self, Batch, DstOnly, WalkOptions};
use crate::tree::{ReadSettings, RunCredential, Timeouts, Tree};
use crate::write::{Op, Writer, WriterOptions};
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

/// What a copy does (the trees and how to reach them are in
/// [`CopyRequest`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CopyOptions {
    pub mode: Mode,
    /// Plan and count, write nothing.
    pub dry_run: bool,
    pub acl: AclMode,
    /// Node kinds (containers, TTL nodes): clients cannot see them.
    pub kinds: KindRules,
    pub writer: WriterOptions,
    /// Refuse a mirror that would delete more nodes than this.
    pub max_delete: Option<u64>,
    /// Refuse a copy that would need more counter pads than this.
    pub max_pad: Option<u64>,
    /// Raise destination parents' child versions to the source's so that
    /// new sequential nodes keep counting from where the source was.
    pub sequence_counters: bool,
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
            writer: WriterOptions::default(),
            max_delete: None,
            max_pad: None,
            sequence_counters: true,
            plan_sample: 10,
        }
    }
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
pub struct KindsCopied {
    pub containers: u64,
    pub ttl: u64,
    pub from_snapshot: u64,
}

/// The result of a copy.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
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
    pub kinds: KindsCopied,
    pub padded_parents: u64,
    /// Counter pads (each a create and a delete in one transaction) written,
    /// or that a dry run would write.
    pub pads: u64,
    /// Operations of those pads: two each.
    pub padding_ops: u64,
    /// Time spent reading counters and padding them.
    pub padding_seconds: f64,
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
    /// Times a tree's reader sessions moved to another ensemble member
    /// together.
    pub member_moves: usize,
    /// A dry run found more deletions than `CopyOptions::max_delete` allows.
    pub delete_limit_exceeded: bool,
    /// A dry run found more pads than `CopyOptions::max_pad` allows.
    pub pad_limit_exceeded: bool,
    /// Peak resident memory of this process so far.
    pub peak_rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Where the source's ACLs came from, when it was read with a snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl_sources: Option<crate::read::AclSources>,
}

/// A copy: the two trees, how to reach and read them, and what to do. The
/// one value a driver hands to [`run`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CopyRequest {
    pub src: Tree,
    pub dst: Tree,
    pub timeouts: Timeouts,
    /// How both trees are read (the destination with one session in a
    /// fresh copy: it is only looked at).
    pub read: ReadSettings,
    pub options: CopyOptions,
    /// Copy even when the roots overlap on one ensemble (one is the other,
    /// or lies inside it). Off: such a copy is refused before anything is
    /// written, however the two are addressed, because it would read what
    /// it writes.
    pub allow_overlap: bool,
    /// Finish an earlier copy that failed or was cancelled: the identity
    /// it returned ([`CopyFailure::credential`]). This copy presents it
    /// again, so it can set the final ACLs of nodes that still carry that
    /// copy's temporary grant. Without it, a new identity is made.
    pub resume: Option<RunCredential>,
}

impl CopyRequest {
    /// A fresh copy of `src` to `dst` with the default settings.
    pub fn new(src: Tree, dst: Tree) -> CopyRequest {
        CopyRequest {
            src,
            dst,
            timeouts: Timeouts::default(),
            read: ReadSettings::default(),
            options: CopyOptions::default(),
            allow_overlap: false,
            resume: None,
        }
    }

    /// The request that finishes the copy `failure` came from: the same
    /// trees and options, the destination taken as it is now (a fresh copy
    /// becomes an update: its root has children), and the failed copy's
    /// identity presented again.
    pub fn resume(&self, failure: &CopyFailure) -> CopyRequest {
        let mut next = self.clone();
        if next.options.mode == Mode::Fresh {
            next.options.mode = Mode::Update;
        }
        next.resume = Some(failure.credential.clone());
        next
    }

    /// The verify that checks this copy: the same trees, readers and
    /// timeouts; ACLs compared unless the copy replaced them.
    pub fn verify_request(&self) -> crate::verify::VerifyRequest {
        let mut v = crate::verify::VerifyRequest::new(self.src.clone(), self.dst.clone());
        // A check of the copy on its own: every ACL read live, not from
        // the snapshot the copy took them from.
        v.src.snapshot = None;
        v.dst.snapshot = None;
        v.timeouts = self.timeouts;
        v.read = self.read;
        v.acl = self.options.acl == AclMode::Preserve;
        v
    }
}

/// A copy that stopped before its end: why, and what it left.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
#[non_exhaustive]
pub struct CopyFailure {
    pub error: Error,
    /// Write operations that landed on the destination before it stopped.
    pub applied: u64,
    /// Nodes that still carry the temporary grant to [`Self::credential`]
    /// instead of their final ACL.
    pub temporary_acls: u64,
    /// The copy's one-time identity: hand it to [`CopyRequest::resume`]
    /// (or present it as a digest credential) to finish the job.
    pub credential: RunCredential,
}

impl CopyFailure {
    /// Whether the copy was cancelled (rather than failed).
    pub fn cancelled(&self) -> bool {
        matches!(self.error, Error::Interrupted)
    }
}

/// Copies `req.src` to `req.dst`: opens the readers of both trees and the
/// writer session (which alone presents the copy's one-time identity),
/// refuses overlapping roots (unless `allow_overlap`), copies, and closes
/// them. Counters and cancellation go through `progress`.
pub async fn run(req: &CopyRequest, progress: &Arc<Progress>) -> Result<CopySummary, Box<CopyFailure>> {
    let credential = req.resume.clone().unwrap_or_else(RunCredential::generate);
    let mut left = Left::default();
    match copy_request(req, &credential, progress, &mut left).await {
        Ok(summary) => Ok(summary),
        Err(error) => {
            Err(Box::new(CopyFailure { error, applied: left.applied, temporary_acls: left.temporary_acls, credential }))
        }
    }
}

/// What a copy that failed left behind.
#[derive(Default)]
pub(crate) struct Left {
    applied: u64,
    temporary_acls: u64,
}

async fn copy_request(
    req: &CopyRequest,
    run: &RunCredential,
    progress: &Arc<Progress>,
    left: &mut Left,
) -> Result<CopySummary> {
    progress.set_phase("connecting");
    let mut dst = req.dst.clone();
    if req.resume.is_some() {
        // The earlier copy's grant lets the destination reader see beneath
        // the nodes that still carry it.
        dst.access.auth.push(run.auth().clone());
    }
    let mut writer_tree = req.dst.clone();
    writer_tree.access.auth.push(run.auth().clone());
    let src_acl = req.options.acl == AclMode::Preserve;
    let dst_sessions = if req.options.mode == Mode::Fresh { 1 } else { req.read.sessions };
    let (src_reader, dst_reader, writer) = progress
        .unless_cancelled(async {
            futures::try_join!(
                TreeReader::connect(Side::Source, &req.src, &req.timeouts, &req.read, src_acl, req.read.sessions),
                TreeReader::connect(Side::Destination, &dst, &req.timeouts, &req.read, true, dst_sessions),
                Session::connect(Arc::new(writer_tree.connect_options(Side::Destination, &req.timeouts))),
            )
        })
        .await?;
    let ids = Identities { dst: destination_ids(&writer, dst.acl_ids()).await, run: run.acl_id() };
    let walk = WalkOptions { batch: req.read.batch, window: req.read.window, ..WalkOptions::default() };
    let job = Job { opts: &req.options, walk: &walk, ids: &ids, allow_overlap: req.allow_overlap };
    run_on(&src_reader, &dst_reader, &Arc::new(writer), &job, progress, left).await
}

/// The ids the destination's credentials make a session: `known` (digest,
/// SASL DIGEST-MD5), and those only the servers know (a client
/// certificate's `x509` subject, a Kerberos `sasl` principal), asked of
/// them (whoAmI, ZooKeeper 3.7 and later; `known` alone before). Only
/// those two schemes are taken from the answer: it gives a digest id as the
/// user name alone (no ACL id), and a grant to an `ip` id would open a node
/// to a whole host.
pub(crate) async fn destination_ids(writer: &Session, known: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut ids = known;
    if let Ok(Ok(users)) = writer.retry(|c| async move { c.list_auth_users().await }).await {
        for u in users {
            let id = (u.scheme().to_string(), u.user().to_string());
            if matches!(id.0.as_str(), "sasl" | "x509") && !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

/// One copy's settings inside the engine.
pub(crate) struct Job<'a> {
    pub opts: &'a CopyOptions,
    pub walk: &'a WalkOptions,
    /// Who the destination sessions are (the temporary grants go to them).
    pub ids: &'a Identities,
    pub allow_overlap: bool,
}

/// Refuses a copy whose source and destination are the same tree or nest in
/// each other on the same ensemble, however the two are addressed (another
/// member, an alias, a proxy): a node seen through both sessions with the
/// same creation zxid and time is one node.
pub(crate) async fn check_distinct(src: &TreeReader, dst: &TreeReader) -> Result<()> {
    let (so, do_) = (src.pool().options(), dst.pool().options());
    let (src_abs, dst_abs) = (src.absolute_root(), dst.absolute_root());
    if !path::overlaps(&src_abs, &dst_abs) {
        return Ok(());
    }
    let same_hosts = {
        let a = so.hosts.socket_addrs().await;
        let b = do_.hosts.socket_addrs().await;
        a.iter().any(|x| b.contains(x))
    };
    let same = same_hosts || same_ensemble(src, dst, &src_abs, &dst_abs).await?;
    if same {
        let relation = if src_abs == dst_abs {
            crate::error::OverlapKind::Same
        } else if path::is_within(&src_abs, &dst_abs) {
            crate::error::OverlapKind::Inside
        } else {
            crate::error::OverlapKind::Contains
        };
        return Err(Error::Overlap { src_root: src_abs, dst_root: dst_abs, relation });
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

/// Copies `src`'s tree to `dst`'s root, writing through `writer_session`.
/// `dst` reads the destination (its root, and everything in update and
/// mirror modes). Refuses, before anything else, a missing source root,
/// then roots that overlap on one ensemble (see [`check_distinct`]) unless
/// the job allows them. On failure, `left` says what was applied.
pub(crate) async fn run_on(
    src: &TreeReader,
    dst: &TreeReader,
    writer_session: &Arc<Session>,
    job: &Job<'_>,
    progress: &Arc<Progress>,
    left: &mut Left,
) -> Result<CopySummary> {
    let opts = job.opts;
    // A missing source is what the user must fix first: whatever overlaps
    // would, it holds nothing to copy.
    if src.root_stat().await?.is_none() {
        return Err(Error::NoRoot { side: Side::Source, path: src.root().to_string() });
    }
    if !job.allow_overlap {
        check_distinct(src, dst).await?;
    }
    // Limits on deletions and pads are safety nets: know the counts before
    // writing.
    let max_delete = opts.max_delete.filter(|_| opts.mode == Mode::Mirror);
    if !opts.dry_run && (max_delete.is_some() || opts.max_pad.is_some()) {
        progress.set_phase("counting before writing");
        let probe = CopyOptions { dry_run: true, ..opts.clone() };
        let probe_job = Job { opts: &probe, ..*job };
        let planned = run_pass(src, dst, writer_session, &probe_job, progress, &mut Left::default()).await?;
        let deletes = planned.plan.as_ref().map_or(0, |p| p.deletes);
        if let Some(limit) = max_delete
            && deletes > limit
        {
            return Err(Error::DeleteLimit { deletes, limit, others_applied: false });
        }
        if let Some(limit) = opts.max_pad
            && planned.pads > limit
        {
            return Err(Error::PadLimit {
                pads: planned.pads,
                parents: planned.padded_parents,
                limit,
                others_applied: false,
            });
        }
        progress.read.store(0, std::sync::atomic::Ordering::Relaxed);
    }
    let before = src.acl_sources();
    let mut summary = run_pass(src, dst, writer_session, job, progress, left).await?;
    // This pass's own ACL reads, not the counting pass's too.
    if let (Some(now), Some(before)) = (&summary.acl_sources, &before) {
        summary.acl_sources = Some(now.since(before));
    }
    Ok(summary)
}

async fn run_pass(
    src: &TreeReader,
    dst: &TreeReader,
    writer_session: &Arc<Session>,
    job: &Job<'_>,
    progress: &Arc<Progress>,
    left: &mut Left,
) -> Result<CopySummary> {
    let opts = job.opts;
    let started = Instant::now();
    progress.set_phase("checking");
    // Both trees as of now at least, whichever members they are read from.
    progress.unless_cancelled(async { futures::try_join!(src.catch_up(), dst.catch_up()) }).await?;
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
        return Err(Error::EphemeralRoot { side: Side::Source, path: src.root().to_string() });
    }
    if progress.is_cancelled() {
        return Err(Error::Interrupted);
    }
    if dst_root.is_none() && !opts.dry_run {
        crate::write::create_ancestors(writer_session, dst.root()).await?;
    }

    let mut walk_opts = job.walk.clone();
    walk_opts.dst_only = if opts.mode == Mode::Mirror { DstOnly::Descend } else { DstOnly::Skip };
    walk_opts.skip_system = walk::system_skips(src, dst);
    let root_sides = walk::SRC | if dst_root.is_some() { walk::DST } else { 0 };

    let mut driver = Driver::new(src.root(), dst.root(), opts, job.ids, writer_session, progress);
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
                _ = progress.cancelled() => None,
            };
            if progress.is_cancelled() {
                return Err(Error::Interrupted);
            }
            match batch {
                Some(batch) => driver.batch(batch).await?,
                None => break,
            }
        }
        Ok::<(), Error>(())
    };
    let (walked, planned) = tokio::join!(walking, planning);
    let outcome = match (walked, planned) {
        (_, Err(e)) | (Err(e), _) => Err(e),
        (Ok(walked), Ok(())) => driver.finish(plan::WHOLE, src, dst).await.map(|_| walked),
    };
    let walked = match outcome {
        Ok(w) => w,
        Err(e) => {
            // Land what is in flight so the report is true, then fail; nodes
            // still waiting for their final ACL keep this run's grant.
            let _ = driver.land().await;
            if !opts.dry_run {
                left.applied = driver.applied();
                left.temporary_acls = driver.planner.pending_acls() as u64;
            }
            return Err(e);
        }
    };

    let t = driver.planner.tally();
    let w = driver.writer.as_ref().map(|w| w.counters().clone()).unwrap_or_default();
    let seconds = started.elapsed().as_secs_f64();
    let pads = if opts.dry_run { t.pads } else { w.padded };
    let nodes_read = walked.src.nodes;
    Ok(CopySummary {
        mode: opts.mode,
        dry_run: opts.dry_run,
        nodes_read,
        bytes_read: walked.src.bytes,
        created: if opts.dry_run { t.plan.creates } else { w.created + w.existed },
        data_updated: t.data_updates,
        acl_updated: t.acl_updates,
        deleted: if opts.dry_run { t.plan.deletes } else { w.deleted },
        unchanged: t.unchanged,
        skipped_ephemerals: walked.src.ephemerals,
        skipped_system: walked.skipped_system,
        vanished: walked.src.vanished,
        kinds: t.kinds.clone(),
        padded_parents: t.padded_parents,
        pads,
        padding_ops: pads * 2,
        padding_seconds: driver.padding_seconds,
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
        member_moves: src.pool().moves() + dst.pool().moves(),
        delete_limit_exceeded: t.delete_limit_exceeded,
        pad_limit_exceeded: opts.max_pad.is_some_and(|max| t.pads > max),
        peak_rss_bytes: crate::progress::peak_rss_bytes(),
        plan: opts.dry_run.then(|| t.plan.clone()),
        acl_sources: src.acl_sources(),
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

/// Feeds the planner's operations to the writer (none in a dry run) and
/// runs the end-of-run phases, which need reads of both trees.
struct Driver<'a> {
    planner: Planner<'a>,
    opts: &'a CopyOptions,
    writer: Option<Writer>,
    progress: &'a Progress,
    /// Operations of the current planner call, sent before the next one.
    ops: Vec<Op>,
    padding_seconds: f64,
}

/// Operations planned at a time in the end-of-run phases.
const PHASE_CHUNK: usize = 1000;

impl<'a> Driver<'a> {
    fn new(
        src_root: &str,
        dst_root: &str,
        opts: &'a CopyOptions,
        ids: &Identities,
        session: &Arc<Session>,
        progress: &'a Arc<Progress>,
    ) -> Self {
        Driver {
            planner: Planner::new(src_root, dst_root, opts, ids),
            opts,
            writer: (!opts.dry_run).then(|| Writer::new(session.clone(), opts.writer).with_progress(progress.clone())),
            progress,
            ops: Vec::new(),
            padding_seconds: 0.0,
        }
    }

    /// Sends what the last planner call produced.
    async fn send(&mut self) -> Result<()> {
        match self.writer.as_mut() {
            Some(w) => {
                for op in self.ops.drain(..) {
                    w.push(op).await?;
                }
                Ok(())
            }
            None => {
                self.ops.clear();
                Ok(())
            }
        }
    }

    async fn batch(&mut self, batch: Batch) -> Result<()> {
        self.planner.listed(&batch.list_failures)?;
        for (rel, names) in &batch.listed {
            self.planner.children_listed(rel, *names);
        }
        self.progress.add_read(batch.entries.len() as u64);
        for e in batch.entries {
            // What was planned before a refusal is sent, as it would be
            // had the refusal come later.
            let planned = self.planner.entry(e, &mut self.ops);
            self.send().await?;
            planned?;
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

    /// Operations that have landed on the destination.
    fn applied(&self) -> u64 {
        self.writer.as_ref().map_or(0, |w| w.applied())
    }

    fn check_stop(&self) -> Result<()> {
        if self.progress.is_cancelled() { Err(Error::Interrupted) } else { Ok(()) }
    }

    /// The phases after the walk, in the order of [`plan::PHASES`], for the
    /// pending work inside `scope` (a relative path; [`plan::WHOLE`] for all
    /// of it, see the [`plan`] module). Each checks for a stop between
    /// chunks: what a phase does can be done again. The refusals (deletions
    /// over the delete limit or beneath an undeletable node, pads over
    /// the pad limit) count the scope's work only.
    async fn finish(&mut self, scope: &str, src: &TreeReader, dst: &TreeReader) -> Result<()> {
        path::validate(scope)?;
        let refused = self.planner.deletions_refused_in(scope);
        let mut pads_refused = None;
        for phase in plan::PHASES {
            match phase {
                plan::Phase::Deletions => self.delete(scope, refused).await?,
                plan::Phase::Counters => pads_refused = self.counters(scope, src, dst).await?,
                plan::Phase::FinalAcls => self.final_acls(scope).await?,
            }
        }
        // Always: whatever is still queued goes out and lands here.
        self.finish_inflight().await?;
        // Nothing was written in a dry run; otherwise the other changes were.
        let others_applied = !self.opts.dry_run;
        if let Some(node) = self.planner.undeletable_in(scope) {
            return Err(Error::Undeletable { path: node.to_string(), others_applied });
        }
        if refused {
            return Err(Error::DeleteLimit {
                deletes: self.planner.pending_deletions_in(scope) as u64,
                limit: self.opts.max_delete.unwrap_or_default(),
                others_applied,
            });
        }
        if let Some((pads, parents)) = pads_refused {
            return Err(Error::PadLimit {
                pads,
                parents,
                limit: self.opts.max_pad.unwrap_or_default(),
                others_applied,
            });
        }
        Ok(())
    }

    async fn delete(&mut self, scope: &str, refused: bool) -> Result<()> {
        self.check_stop()?;
        if !refused && self.planner.pending_deletions_in(scope) > 0 {
            self.progress.set_phase("deleting");
            while self.planner.deletions_in(scope, PHASE_CHUNK, &mut self.ops) > 0 {
                self.send().await?;
                self.check_stop()?;
            }
            self.finish_inflight().await?;
            self.planner.deletions_applied_in(scope);
        }
        Ok(())
    }

    async fn counters(&mut self, scope: &str, src: &TreeReader, dst: &TreeReader) -> Result<Option<(u64, u64)>> {
        // Everything lands before counters are read and padded.
        self.finish_inflight().await?;
        let candidates = self.planner.counter_candidates_in(scope);
        if !self.opts.sequence_counters || candidates.is_empty() {
            return Ok(None);
        }
        self.check_stop()?;
        self.progress.set_phase("sequence counters");
        let started = Instant::now();
        // The counters are read through the destination reader's member,
        // the writes went through the writer's: let that member catch up.
        dst.catch_up().await?;
        let refused = self.pad_counters(&candidates, src, dst).await;
        self.padding_seconds += started.elapsed().as_secs_f64();
        if let Ok(None) = refused {
            self.planner.counters_applied_in(scope);
        }
        refused
    }

    /// Final ACLs, a chunk at a time; each chunk stays pending (its nodes
    /// may still carry the temporary grant) until it has landed.
    async fn final_acls(&mut self, scope: &str) -> Result<()> {
        if self.planner.pending_acls_in(scope) == 0 {
            return Ok(());
        }
        self.progress.set_phase("ACLs");
        loop {
            self.check_stop()?;
            if self.planner.final_acls_in(scope, PHASE_CHUNK, &mut self.ops) == 0 {
                return Ok(());
            }
            self.send().await?;
            self.finish_inflight().await?;
            self.planner.acls_applied();
        }
    }

    /// Raises destination child versions to the source's, so sequential
    /// children created later get numbers the source never handed out. A
    /// dry run reads the counters as they are and predicts the pads. Returns
    /// the pads needed, and the parents needing them, when they are more
    /// than the limit (none written).
    async fn pad_counters(
        &mut self,
        rels: &[String],
        src: &TreeReader,
        dst: &TreeReader,
    ) -> Result<Option<(u64, u64)>> {
        let mut needed = Vec::new();
        for chunk in rels.chunks(500) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let (s, d) = futures::try_join!(src.stats(&refs), dst.stats(&refs))?;
            for ((rel, s), d) in chunk.iter().zip(s).zip(d) {
                let Some(s) = s else { continue };
                if self.opts.dry_run {
                    self.planner.predict_pads(rel, &s, d.as_ref());
                } else if let Some(d) = d {
                    needed.extend(self.planner.pads(rel, &s, &d));
                }
            }
        }
        if let Some(total) = self.planner.pads_refused(&needed) {
            return Ok(Some((total, needed.len() as u64)));
        }
        let name = format!("zkrepl-cversion-pad-{:016x}", crate::tree::random_u64());
        for mut pads in needed {
            while self.planner.pad(&mut pads, &name, PHASE_CHUNK, &mut self.ops) > 0 {
                self.send().await?;
                self.check_stop()?;
            }
        }
        self.finish_inflight().await?;
        Ok(None)
    }
}
