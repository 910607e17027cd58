//! Sync: a live mirror. A persistent recursive watch is set on the source
//! root before a full copy, so no change between the copy and the follow is
//! lost; each event is then applied by re-reading the source node (the
//! destination converges to the current state, never to a stale event),
//! batched through the writer.
//!
//! What the watch does not tell, and what is done about it:
//! - it never reports a setACL, nor children-changed: ACLs are caught by
//!   the reconciles (a mirror copy pass: periodic, after every gap, and at
//!   the end);
//! - the client does not re-register a persistent watch after a reconnect
//!   and the server does not replay what was missed (ZOOKEEPER-4698): after
//!   every Disconnected, SyncConnected the watch is added again and the tree
//!   reconciled; an expired session loses the watch: a new session, a new
//!   watch, a reconcile;
//! - the server drops events for nodes the session may not read: such a
//!   node is reported as unreadable when read;
//! - events carry no zxid before 3.9: the order comes from re-reading;
//! - the client's event channel is unbounded: a task drains it at once into
//!   a per-path queue, so a burst costs memory by paths pending, not events.
//!
//! The watch is set on a session of the source reader's pool, so the
//! re-reads that follow an event are served by the member that sent it;
//! when the pool renews that session or moves to another member, the watch
//! is set again on the new session and the gap reconciled.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use zookeeper_client as zk;

use crate::copy::plan::Identities;
use crate::copy::{self, CopyRequest, CopySummary, Job, Left, Mode};
use crate::error::{Error, Result, Side, is_session_lost};
use crate::node::{NodeKind, Slot, acl_equal, acl_masked, counter_deficit, next_sequence};
use crate::progress::Progress;
use crate::read::TreeReader;
use crate::read::memo;
use crate::read::walk::WalkOptions;
use crate::tree::{ReadSettings, RunCredential, Timeouts, Tree};
use crate::verify::compare::VerifyOptions;
use crate::verify::{self, FirstDifferences, VerifyReport};
use crate::write::{Op, Writer, WriterOptions};
use crate::zk::path;
use crate::zk::session::Session;

/// A sync: the trees, how to reach and read them, and when to stop. The
/// one value a driver hands to [`run`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SyncRequest {
    pub src: Tree,
    pub dst: Tree,
    pub timeouts: Timeouts,
    pub read: ReadSettings,
    pub writer: WriterOptions,
    /// Stop once caught up and no event came for this long.
    pub until_idle: Option<Duration>,
    /// Fail when the oldest pending change is older than this.
    pub max_lag: Option<Duration>,
    /// A reconcile (a mirror copy pass: ACL changes, anything a watch does
    /// not tell) this often.
    pub reconcile_every: Option<Duration>,
    /// End with a verify.
    pub verify: bool,
    /// Refuse a reconcile that would delete more destination nodes.
    pub max_delete: Option<u64>,
    /// Paths re-read and applied at a time.
    pub batch: usize,
    /// The copy's identity (the temporary grants of nodes whose ACL would
    /// stop it); a new one when `None`. A driver that may run again over
    /// the same destination keeps it.
    pub credential: Option<RunCredential>,
}

impl SyncRequest {
    pub fn new(src: Tree, dst: Tree) -> SyncRequest {
        SyncRequest {
            src,
            dst,
            timeouts: Timeouts::default(),
            read: ReadSettings::default(),
            writer: WriterOptions::default(),
            until_idle: None,
            max_lag: None,
            reconcile_every: Some(Duration::from_secs(300)),
            verify: true,
            max_delete: None,
            batch: 1000,
            credential: None,
        }
    }
}

/// Where a sync stands.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[non_exhaustive]
pub struct SyncStatus {
    pub phase: &'static str,
    /// Paths changed on the source and not applied yet.
    pub pending: usize,
    /// Age of the oldest of them.
    pub lag_seconds: f64,
    pub events: u64,
    /// Paths applied (re-read and written where they differed).
    pub applied: u64,
    pub writes: u64,
    pub reconciles: u64,
    /// Times the watch was added again (after a reconnect or a new session).
    pub watch_resets: u64,
    pub unreadable: u64,
    /// ACLs taken from what earlier passes read (the node's stat proved
    /// them current), and ACLs read with getACL, on both sides.
    pub acls_remembered: u64,
    pub acls_read: u64,
    pub seconds: f64,
}

/// What a sync did.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct SyncReport {
    pub status: SyncStatus,
    pub copy: CopySummary,
    /// The last verify of the end.
    pub verify: Option<VerifyReport>,
    /// The last verify found the trees equal and the watch told of no
    /// change on the source from the catch-up before it to the mark after
    /// it: the two trees were equal then. A watch does not tell of a setACL
    /// (nor of a node this session may not read): one made on the source
    /// during the verify, after it read that node, is not seen.
    pub settled: bool,
    /// Rounds of catch-up and verify the end took.
    pub end_rounds: u32,
    /// Events received and watch resets at the end's last mark (compare
    /// with a [`CatchUp`]'s).
    pub final_events: u64,
    pub final_watch_resets: u64,
}

/// Told how a sync goes: a status at least every second, and notes
/// (reconciles, gaps, unreadable nodes).
pub trait SyncObserver: Send + Sync {
    fn status(&self, s: &SyncStatus);
    fn note(&self, msg: &str);
}

/// Changed paths waiting to be applied, each once, in the order first seen.
#[derive(Default)]
struct Pending {
    paths: HashMap<String, Instant>,
    /// The same paths by when they were first seen (oldest in front).
    order: VecDeque<(String, Instant)>,
    events: u64,
    last_event: Option<Instant>,
    /// A gap (reconnect, new session): the tree must be reconciled.
    gap: bool,
    resets: u64,
    /// The watch is gone for good (session ended): a new one is needed.
    lost: bool,
    /// The watch's connection dropped: its member may be gone.
    away: bool,
}

impl Pending {
    fn add(&mut self, path: String, now: Instant) {
        if let std::collections::hash_map::Entry::Vacant(v) = self.paths.entry(path.clone()) {
            v.insert(now);
            self.order.push_back((path, now));
        }
    }

    fn oldest(&self) -> Option<Instant> {
        self.order.front().map(|(_, t)| *t)
    }

    /// Up to `n` paths, the oldest first, and when the oldest was seen.
    fn take(&mut self, n: usize) -> (Vec<String>, Option<Instant>) {
        let oldest = self.oldest();
        let k = n.min(self.order.len());
        let taken: Vec<String> = self.order.drain(..k).map(|(p, _)| p).collect();
        for p in &taken {
            self.paths.remove(p);
        }
        (taken, oldest)
    }

    /// Forgets what was first seen before `t` (a reconcile begun then read it).
    fn forget_before(&mut self, t: Instant) {
        while let Some((p, seen)) = self.order.front() {
            if *seen >= t {
                break;
            }
            self.paths.remove(p);
            self.order.pop_front();
        }
    }
}

/// The queue, also after a panic elsewhere held it (its state stays usable).
fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|e| e.into_inner())
}

/// Drains a persistent watcher into `pending`; re-adds the watch after a
/// reconnect (the client does not) and says a gap happened. On a flush
/// request it moves every event already received, then answers.
async fn drain(
    client: zk::Client,
    root: String,
    mut w: zk::PersistentWatcher,
    pending: Arc<Mutex<Pending>>,
    mut flushes: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
) {
    let mut disconnected = false;
    loop {
        let (e, flush) = tokio::select! {
            e = w.changed() => (e, None),
            Some(reply) = flushes.recv() => match w.changed().now_or_never() {
                Some(e) => (e, Some(reply)),
                None => {
                    let _ = reply.send(());
                    continue;
                }
            },
        };
        // A flush goes on until nothing is left, then answers.
        let mut next = Some(e);
        while let Some(e) = next.take() {
            if e.event_type == zk::EventType::Session {
                match e.session_state {
                    zk::SessionState::Disconnected => {
                        disconnected = true;
                        lock(&pending).away = true;
                    }
                    zk::SessionState::SyncConnected if disconnected => {
                        disconnected = false;
                        match client.watch(&root, zk::AddWatchMode::PersistentRecursive).await {
                            Ok(nw) => {
                                w = nw;
                                let mut p = lock(&pending);
                                p.gap = true;
                                p.resets += 1;
                            }
                            Err(_) => {
                                lock(&pending).lost = true;
                                return;
                            }
                        }
                    }
                    s if s.is_terminated() => {
                        lock(&pending).lost = true;
                        return;
                    }
                    _ => {}
                }
            } else {
                let mut p = lock(&pending);
                p.events += 1;
                let now = Instant::now();
                p.last_event = Some(now);
                p.add(e.path, now);
            }
            if flush.is_some() {
                next = w.changed().now_or_never();
            }
        }
        if let Some(reply) = flush {
            let _ = reply.send(());
        }
    }
}

/// The draining task, ended when this is dropped (an early return too).
struct Drainer {
    task: tokio::task::JoinHandle<()>,
    /// The generation of the pool's client whose watch it drains.
    generation: u64,
    client: zk::Client,
    root: String,
    flushes: mpsc::UnboundedSender<oneshot::Sender<()>>,
    pending: Arc<Mutex<Pending>>,
}

impl Drop for Drainer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Drainer {
    /// Ends the task and waits until it has: nothing it notes comes after.
    async fn stop(&mut self) {
        self.task.abort();
        if !self.task.is_finished() {
            let _ = (&mut self.task).await;
        }
    }

    /// After this, every change the source committed before the call is
    /// in the queue (or a gap is flagged): the watch's member catches up
    /// with the leader, and the server sends a session's events before the
    /// answers that follow them.
    async fn mark(&self, opts: &crate::zk::session::ConnectOptions) -> Result<(), zk::Error> {
        match tokio::time::timeout(opts.session_timeout, self.client.sync(&self.root)).await {
            Ok(r) => r?,
            Err(_) => return Err(zk::Error::Timeout),
        }
        let (tx, rx) = oneshot::channel();
        // A drain that ended (a lost session flags it; anything else, such
        // as a panic, is flagged here) leaves no watch: a gap.
        let answered = self.flushes.send(tx).is_ok() && rx.await.is_ok();
        if !answered {
            lock(&self.pending).lost = true;
        }
        Ok(())
    }
}

/// Sets the watch on the source reader's first session and starts draining.
async fn watch(reader: &TreeReader, pending: &Arc<Mutex<Pending>>) -> Result<Drainer> {
    let (generation, client) = reader.pool().get(0).client();
    let root = reader.root().to_string();
    let w = client
        .watch(&root, zk::AddWatchMode::PersistentRecursive)
        .await
        .map_err(|e| Error::zk(Side::Source, "add a persistent recursive watch on", &root, e))?;
    let (flushes, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(drain(client.clone(), root.clone(), w, pending.clone(), rx));
    Ok(Drainer { task, generation, client, root, flushes, pending: pending.clone() })
}

/// Asks a running sync ([`run_controlled`]) to catch up or to end.
#[derive(Clone, Debug)]
pub struct Control(mpsc::UnboundedSender<Command>);

/// What a [`Control`] sends; handed to [`run_controlled`].
pub struct Commands(mpsc::UnboundedReceiver<Command>);

#[derive(Debug)]
pub enum Command {
    CatchUp(oneshot::Sender<CatchUp>),
    Finish,
}

/// A catch-up done: every change the source committed before it was asked
/// is on the destination.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct CatchUp {
    pub seconds: f64,
    /// Paths applied meanwhile.
    pub applied: u64,
    /// Events received and watch resets so far: a driver that compares
    /// them with the report's at the end knows whether the source changed
    /// (as far as a watch tells) in between.
    pub events: u64,
    pub watch_resets: u64,
    /// Changed nodes that could not be read on the source, so far.
    pub unreadable: u64,
}

/// A control and the commands it sends.
pub fn control() -> (Control, Commands) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Control(tx), Commands(rx))
}

impl Control {
    /// Waits until every change the source committed before this call is
    /// applied to the destination; `None` once the sync no longer runs.
    pub async fn catch_up(&self) -> Option<CatchUp> {
        let (tx, rx) = oneshot::channel();
        self.0.send(Command::CatchUp(tx)).ok()?;
        rx.await.ok()
    }

    /// Ends the sync: a last catch-up, then the proof (see [`run`]).
    pub fn finish(&self) {
        let _ = self.0.send(Command::Finish);
    }
}

/// Runs `work` (a copy pass, a verify) and meanwhile tells `obs` a status
/// every second: the phase's, with the events and pending paths the watch
/// brought in since, so the status lines (and metrics) do not freeze for
/// the length of a pass over a large tree.
async fn ticking<T>(
    work: impl std::future::Future<Output = T>,
    pending: &Mutex<Pending>,
    status: &SyncStatus,
    started: Instant,
    obs: &dyn SyncObserver,
) -> T {
    let mut work = std::pin::pin!(work);
    let mut status = status.clone();
    let mut every =
        tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = every.tick() => {
                {
                    let p = lock(pending);
                    status.events = p.events;
                    status.watch_resets = p.resets;
                    status.pending = p.paths.len();
                    status.lag_seconds = p.oldest().map(|t| t.elapsed().as_secs_f64()).unwrap_or_default();
                }
                status.seconds = started.elapsed().as_secs_f64();
                obs.status(&status);
            }
        }
    }
}

/// The state of a running sync between its steps.
struct Follower<'a> {
    req: &'a SyncRequest,
    src: &'a TreeReader,
    dst: &'a TreeReader,
    session: &'a Arc<Session>,
    job: &'a Job<'a>,
    writer: Writer,
    pending: Arc<Mutex<Pending>>,
    drainer: Drainer,
    status: SyncStatus,
    obs: &'a dyn SyncObserver,
    progress: &'a Arc<Progress>,
    /// The child name of this run's counter pads.
    pad: String,
    reconcile_due: bool,
    last_reconcile: Instant,
    /// In the end: a Ctrl-C no longer stops what the end must do.
    ending: bool,
    started: Instant,
}

impl Follower<'_> {
    /// Cancelled, and not in the end (which runs to its verify regardless).
    fn stopping(&self) -> bool {
        self.progress.is_cancelled() && !self.ending
    }

    /// A mirror copy pass on the sync's own readers and writer.
    async fn reconcile(&mut self, p: &Arc<Progress>) -> Result<CopySummary> {
        copy::run_on(self.src, self.dst, self.session, self.job, p, &mut Left::default()).await
    }

    /// Handles what the watch could not tell: a lost watch gets a new
    /// session's watch; a gap, or the period, a reconcile. False when
    /// cancelled during the reconcile.
    async fn gaps(&mut self) -> Result<bool> {
        let (lost, gap, away) = {
            let mut p = lock(&self.pending);
            (std::mem::take(&mut p.lost), std::mem::take(&mut p.gap), std::mem::take(&mut p.away))
        };
        // The watch's connection dropped: a member that is gone is left now
        // (the pool moves, synced), not once the session expires. When no
        // member takes the sessions yet, the session's expiry (below) goes
        // on trying, for up to the retry timeout.
        if away && let Err(e) = self.src.pool().check_member().await {
            tracing::debug!(error = %e, "no other source member to move to yet");
        }
        // The watch must be on the client the re-reads use, so that they
        // come from the member that sent the events (and a mark, which
        // syncs the watch's member, holds for them): a pool that moved (or
        // renewed its first session) left the watch on a client it no
        // longer reads with, maybe on a member ahead of the one it reads.
        let moved = self.src.pool().get(0).client().0 != self.drainer.generation;
        if lost || moved {
            self.drainer.stop().await;
            {
                // What the old watch noted, the reconcile below covers.
                let mut p = lock(&self.pending);
                (p.lost, p.gap, p.away) = (false, false, false);
            }
            self.obs.note(if moved {
                "the source reads moved to another member (or a new session): setting the watch there"
            } else {
                "the source session ended: opening a new session for a new watch"
            });
            // The source may still be away: keep trying, as long as an
            // operation may keep failing (the retry timeout).
            let deadline = Instant::now() + self.req.timeouts.retry;
            let mut renew = !moved;
            self.drainer = loop {
                let attempt = async {
                    if renew {
                        // On its member, or, when that member is gone, on another.
                        let (generation, _) = self.src.pool().get(0).client();
                        self.src.pool().revive(0, generation).await?;
                    }
                    watch(self.src, &self.pending).await
                };
                match attempt.await {
                    Ok(d) => break d,
                    Err(e) if Instant::now() >= deadline || self.stopping() => return Err(e),
                    Err(_) => {
                        renew = true;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            };
            lock(&self.pending).resets += 1;
            self.obs.note("a new source session and a new watch; reconciling the gap");
            self.reconcile_due = true;
        }
        if gap {
            self.obs.note("reconnected to the source: the watch was added again; reconciling what the gap hid");
            self.reconcile_due = true;
        }
        if !self.ending && self.req.reconcile_every.is_some_and(|every| self.last_reconcile.elapsed() >= every) {
            self.reconcile_due = true;
        }
        if !self.reconcile_due || self.stopping() {
            return Ok(true);
        }
        self.status.phase = "reconciling";
        self.obs.status(&self.status);
        self.writer.flush().await?;
        let began = Instant::now();
        // In the end a Ctrl-C does not cut it short: the end needs it done.
        let p = if self.ending {
            Arc::new(Progress::new())
        } else {
            Arc::new(Progress::with_cancel(self.progress.cancel_token().child_token()))
        };
        let (pending, status, obs) = (self.pending.clone(), self.status.clone(), self.obs);
        let started = self.started;
        match ticking(self.reconcile(&p), &pending, &status, started, obs).await {
            Ok(_) => {}
            // Ctrl-C during it: the end (catch-up, proof) still runs.
            Err(Error::Interrupted) if self.progress.is_cancelled() => return Ok(false),
            Err(e) => return Err(e),
        }
        // What changed before it began, it read: no longer pending.
        lock(&self.pending).forget_before(began);
        self.status.reconciles += 1;
        self.last_reconcile = Instant::now();
        self.reconcile_due = false;
        self.status.phase = "following";
        // Idle counts from here: a gap just ended is not idleness.
        let mut p = lock(&self.pending);
        p.last_event = Some(p.last_event.map_or(self.last_reconcile, |t| t.max(self.last_reconcile)));
        Ok(true)
    }

    /// Every change committed on the source before this call is queued (or
    /// a gap flagged) once it returns; returns when that was. Retried while
    /// the source is away (a reconnect flags the gap first).
    async fn mark(&mut self) -> Result<Instant> {
        let deadline = Instant::now() + self.req.timeouts.retry;
        loop {
            match self.drainer.mark(self.src.pool().options()).await {
                Ok(()) => return Ok(Instant::now()),
                Err(e) if Instant::now() >= deadline || self.stopping() => {
                    return Err(Error::zk(Side::Source, "sync", self.src.root(), e));
                }
                Err(e) if is_session_lost(&e) => {
                    // The drain sees the session end and flags it; a new
                    // watch comes with the next gaps().
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.gaps().await?;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Everything queued before `mark` applied, and nothing left for a
    /// reconcile to do.
    /// With no mark: nothing pending at all.
    fn caught_up(&self, mark: Option<Instant>) -> bool {
        let p = lock(&self.pending);
        !self.reconcile_due && !p.gap && !p.lost && p.oldest().is_none_or(|t| mark.is_some_and(|m| t > m))
    }

    fn count_acls(&mut self) {
        let [(sh, sm), (dh, dm)] = [self.src, self.dst].map(|r| r.acl_memo().map_or((0, 0), |m| m.hits_and_misses()));
        self.status.acls_remembered = sh + dh;
        self.status.acls_read = sm + dm;
    }

    /// Events and watch resets so far: unchanged across a proof, the
    /// source stood still.
    fn seen(&self) -> (u64, u64) {
        let p = lock(&self.pending);
        (p.events, p.resets)
    }

    /// Takes a batch of changed paths and applies it; the paths taken.
    async fn step(&mut self) -> Result<usize> {
        let (batch, batch_oldest) = {
            let mut p = lock(&self.pending);
            self.status.events = p.events;
            self.status.watch_resets = p.resets;
            p.take(self.req.batch.max(1))
        };
        let pending = &self.pending.clone();
        // The lag counts what is being applied too, and is watched while
        // it is: a destination that stalls must not stall the check.
        let lag = || {
            let oldest = lock(pending).oldest();
            [batch_oldest, oldest].into_iter().flatten().min().map(|t| t.elapsed()).unwrap_or_default()
        };
        let over_limit = async {
            match self.req.max_lag {
                Some(limit) => loop {
                    if lag() > limit {
                        return limit;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                },
                None => std::future::pending().await,
            }
        };
        if !batch.is_empty() {
            let ctx = Apply { src: self.src, dst: self.dst, max_delete: self.req.max_delete };
            let applied = tokio::select! {
                r = apply(&ctx, &mut self.writer, &batch) => r,
                limit = over_limit => {
                    let pending_now = lock(pending).paths.len() + batch.len();
                    let behind = lag();
                    // What was sent lands (or is given a few seconds) first.
                    let _ = tokio::time::timeout(Duration::from_secs(5), self.writer.land()).await;
                    return Err(Error::Lag { behind, limit, pending: pending_now });
                }
            };
            let applied = match applied {
                Ok((writes, unreadable)) => self.pad_counters(&batch).await.map(|pads| (writes + pads, unreadable)),
                Err(e) => Err(e),
            };
            match applied {
                Ok((writes, unreadable)) => {
                    self.status.applied += batch.len() as u64;
                    self.status.writes += writes;
                    if unreadable > 0 {
                        self.status.unreadable += unreadable;
                        self.obs.note(&format!(
                            "{unreadable} changed node(s) could not be read on the source (no READ for this session: ZooKeeper 3.8.4 and later also send no events for them)"
                        ));
                    }
                }
                Err(e) => {
                    // What one pass could not do (a restrictive ACL, a
                    // node in the way) the copy's reconcile does.
                    self.obs.note(&format!("applying changes: {e}; reconciling"));
                    self.writer.land().await?;
                    self.reconcile_due = true;
                }
            }
        }
        let (pending_now, behind) = {
            let p = lock(pending);
            (p.paths.len(), p.oldest().map(|t| t.elapsed()).unwrap_or_default())
        };
        self.status.pending = pending_now;
        self.status.lag_seconds = behind.as_secs_f64();
        if let Some(limit) = self.req.max_lag
            && behind > limit
        {
            return Err(Error::Lag { behind, limit, pending: pending_now });
        }
        Ok(batch.len())
    }

    /// A child created or deleted moves its parent's sequence counter; what
    /// the destination did not repeat (an ephemeral child, a child gone
    /// before it was read) leaves the destination's behind: raised here to
    /// the source's, as a copy pads it. Exactly: the source's counters are
    /// read, then a mark; a parent with a child change still pending (made
    /// before or after the read) waits for a later batch, so the
    /// destination has repeated every creation the source's counter holds
    /// but the ones it never will.
    async fn pad_counters(&mut self, batch: &[String]) -> Result<u64> {
        let root = self.src.root().to_string();
        let mut parents: Vec<String> = batch
            .iter()
            .filter_map(|p| relative(&root, p))
            .filter_map(|r| r.rsplit_once('/').map(|(p, _)| p.to_string()))
            .collect();
        parents.sort_unstable();
        parents.dedup();
        if parents.is_empty() {
            return Ok(0);
        }
        let refs: Vec<&str> = parents.iter().map(String::as_str).collect();
        // The writes went through the writer's member.
        self.dst.catch_up().await?;
        let (s, d) = futures::try_join!(self.src.stats(&refs), self.dst.stats(&refs))?;
        let behind: Vec<(&str, i64, i64)> = refs
            .iter()
            .zip(s)
            .zip(d)
            .filter_map(|((rel, s), d)| match (s, d) {
                (Some(s), Some(d)) if counter_deficit(&s, &d) > 0 => {
                    Some((*rel, next_sequence(&d), counter_deficit(&s, &d)))
                }
                _ => None,
            })
            .collect();
        if behind.is_empty() {
            return Ok(0);
        }
        self.mark().await?;
        let waiting: std::collections::HashSet<String> = {
            let p = lock(&self.pending);
            p.paths
                .keys()
                .filter_map(|k| relative(&root, k))
                .filter_map(|r| r.rsplit_once('/').map(|(p, _)| p.to_string()))
                .collect()
        };
        let dst_root = self.dst.root().to_string();
        let mut pads = 0u64;
        for (rel, base, deficit) in behind {
            if waiting.contains(rel) {
                continue;
            }
            for k in 1..=deficit {
                let op = Op::Pad { parent: path::join(&dst_root, rel), name: self.pad.clone(), target: base + k };
                self.writer.push(op).await?;
                pads += 1;
            }
        }
        self.writer.flush().await?;
        Ok(pads)
    }

    /// Applies everything committed on the source so far.
    async fn catch_up(&mut self) -> Result<CatchUp> {
        let t = Instant::now();
        let applied = self.status.applied;
        let mark = self.mark().await?;
        while !self.caught_up(Some(mark)) {
            if !self.gaps().await? {
                return Err(Error::Interrupted);
            }
            if self.step().await? == 0 && !self.caught_up(Some(mark)) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        self.writer.flush().await?;
        Ok(self.caught(t, applied))
    }

    fn caught(&self, asked: Instant, applied_before: u64) -> CatchUp {
        let (events, watch_resets) = self.seen();
        CatchUp {
            seconds: asked.elapsed().as_secs_f64(),
            applied: self.status.applied - applied_before,
            events,
            watch_resets,
            unreadable: self.status.unreadable,
        }
    }
}

/// Runs a sync: the watch, a full copy, then every change as it comes,
/// until idle, cancelled, or too far behind; then the end: a catch-up and
/// a verify (ACLs and sequence counters compared) bracketed by marks, so an
/// equal verify with no event between the marks proves the trees equal; a
/// verify that differs is followed by a reconcile and another round.
pub async fn run(req: &SyncRequest, progress: &Arc<Progress>, obs: &dyn SyncObserver) -> Result<SyncReport> {
    // Nothing sends: the receiver sees no command.
    let (_control, commands) = control();
    run_controlled(req, progress, obs, commands).await
}

/// Rounds of catch-up, verify and reconcile at the end before giving up.
const END_ROUNDS: u32 = 3;

/// [`run`], also answering `commands`: catch-ups while it follows, and an
/// end on request.
pub async fn run_controlled(
    req: &SyncRequest,
    progress: &Arc<Progress>,
    obs: &dyn SyncObserver,
    commands: Commands,
) -> Result<SyncReport> {
    let mut commands = commands.0;
    let started = Instant::now();
    let mut status = SyncStatus { phase: "connecting", ..SyncStatus::default() };
    let credential = req.credential.clone().unwrap_or_else(RunCredential::generate);
    let n = req.read.sessions;
    let mut writer_tree = req.dst.clone();
    writer_tree.access.auth.push(credential.auth().clone());
    let mut dst_tree = req.dst.clone();
    dst_tree.access.auth.push(credential.auth().clone());
    let (src, dst, session) = progress
        .unless_cancelled(async {
            futures::try_join!(
                TreeReader::connect(Side::Source, &req.src, &req.timeouts, &req.read, true, n),
                TreeReader::connect(Side::Destination, &dst_tree, &req.timeouts, &req.read, true, n),
                Session::connect(Arc::new(writer_tree.connect_options(Side::Destination, &req.timeouts))),
            )
        })
        .await?;
    // Each pass after the first reads again only the ACLs set since.
    let src = src.with_acl_memo(memo::DEFAULT_LIMIT);
    let dst = dst.with_acl_memo(memo::DEFAULT_LIMIT);
    let pending = Arc::new(Mutex::new(Pending::default()));
    let drainer = watch(&src, &pending).await?;
    obs.note(&format!("watching {} (persistent, recursive) before the full copy", req.src));

    // The full copy, and the reconciles: mirror passes under one identity.
    let mut copy_req = CopyRequest::new(req.src.clone(), req.dst.clone());
    copy_req.timeouts = req.timeouts;
    copy_req.read = req.read;
    copy_req.options.mode = Mode::Mirror;
    copy_req.options.max_delete = req.max_delete;
    copy_req.options.writer = req.writer;
    copy_req.resume = Some(credential.clone());
    status.phase = "copying";
    obs.status(&status);
    // The copies read through the same readers as the re-reads, so through
    // the member that sends the events: never an older state than they saw.
    let session = Arc::new(session);
    let ids = Identities { dst: copy::destination_ids(&session, req.dst.acl_ids()).await, run: credential.acl_id() };
    let walk = WalkOptions { batch: req.read.batch, window: req.read.window, ..WalkOptions::default() };
    let job = Job { opts: &copy_req.options, walk: &walk, ids: &ids, allow_overlap: false };
    let first = ticking(
        copy::run_on(&src, &dst, &session, &job, progress, &mut Left::default()),
        &pending,
        &status,
        started,
        obs,
    )
    .await?;
    let writer = Writer::new(session.clone(), req.writer).with_progress(progress.clone());
    let mut f = Follower {
        req,
        src: &src,
        dst: &dst,
        session: &session,
        job: &job,
        writer,
        pending,
        drainer,
        status,
        obs,
        progress,
        pad: format!("zkrepl-cversion-pad-{:016x}", crate::tree::random_u64()),
        reconcile_due: false,
        last_reconcile: Instant::now(),
        ending: false,
        started,
    };
    let mut last_status = Instant::now();
    let mut waiting: Vec<(Instant, Instant, u64, oneshot::Sender<CatchUp>)> = Vec::new();
    let mut finishing = false;
    let mut queued: Option<Command> = None;
    f.status.phase = "following";
    loop {
        if !f.gaps().await? {
            break;
        }
        // Commands: a catch-up is answered once what came before its mark
        // is applied.
        while let Some(cmd) = queued.take().or_else(|| commands.try_recv().ok()) {
            match cmd {
                Command::CatchUp(reply) => {
                    let asked = Instant::now();
                    let mark = f.mark().await?;
                    waiting.push((mark, asked, f.status.applied, reply));
                }
                Command::Finish => finishing = true,
            }
        }
        let taken = f.step().await?;
        f.status.seconds = started.elapsed().as_secs_f64();
        f.count_acls();
        if last_status.elapsed() >= Duration::from_secs(1) {
            obs.status(&f.status);
            last_status = Instant::now();
        }
        if !waiting.is_empty() && waiting.iter().any(|w| f.caught_up(Some(w.0))) {
            f.writer.flush().await?;
            let (done, still): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|w| f.caught_up(Some(w.0)));
            waiting = still;
            for (_, asked, before, reply) in done {
                let _ = reply.send(f.caught(asked, before));
            }
        }
        if progress.is_cancelled() || finishing {
            break;
        }
        if taken == 0 && f.status.pending == 0 && !f.reconcile_due {
            let idle = lock(&f.pending).last_event.map(|t| t.elapsed()).unwrap_or_else(|| started.elapsed());
            if let Some(limit) = req.until_idle
                && idle >= limit
            {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                Some(cmd) = commands.recv() => queued = Some(cmd),
            }
        }
    }
    f.writer.flush().await?;
    f.ending = true;
    // Waiters left at the end: the end's catch-up covers them.
    let mut waiting = waiting;

    let mut report = SyncReport {
        status: f.status.clone(),
        copy: first,
        verify: None,
        settled: false,
        end_rounds: 0,
        final_events: 0,
        final_watch_resets: 0,
    };
    for round in 1..=END_ROUNDS {
        f.status.phase = "catching up";
        obs.status(&f.status);
        f.catch_up().await?;
        for (_, asked, before, reply) in waiting.drain(..) {
            let _ = reply.send(f.caught(asked, before));
        }
        report.end_rounds = round;
        if !req.verify {
            // No proof asked: a last reconcile catches what no event
            // tells (ACL changes).
            f.status.phase = "reconciling";
            obs.status(&f.status);
            let (pending, status) = (f.pending.clone(), f.status.clone());
            ticking(f.reconcile(&Arc::new(Progress::new())), &pending, &status, started, obs).await?;
            f.status.reconciles += 1;
            break;
        }
        f.status.phase = "verifying";
        obs.status(&f.status);
        let before = f.seen();
        let mut first_diffs = FirstDifferences::new(20);
        let vopts = VerifyOptions { walk: walk.clone(), include_ephemeral: false, strict_counters: true };
        let vprogress = Progress::new();
        let verifying = verify::run_on(&src, &dst, &vopts, &vprogress, &mut first_diffs);
        let v = ticking(verifying, &f.pending, &f.status, started, obs).await?;
        // Nothing changed on the source from the mark before the verify to
        // the one after it: what it compared is one state of the source.
        f.mark().await?;
        let settled = f.seen() == before && f.caught_up(None);
        (report.final_events, report.final_watch_resets) = f.seen();
        let equal = v.equal();
        report.verify = Some(v);
        report.settled = settled && equal;
        if report.settled {
            break;
        }
        if !equal {
            let shown: Vec<String> =
                first_diffs.listed.iter().take(5).map(|d| format!("{} {}", d.class.symbol(), d.path)).collect();
            obs.note(&format!("the verify found differences ({}): reconciling", shown.join(", ")));
            f.status.phase = "reconciling";
            obs.status(&f.status);
            let (pending, status) = (f.pending.clone(), f.status.clone());
            ticking(f.reconcile(&Arc::new(Progress::new())), &pending, &status, started, obs).await?;
            f.status.reconciles += 1;
        } else {
            obs.note("the source changed during the verify: catching up and verifying again");
        }
    }
    f.count_acls();
    drop(f.drainer);
    f.status.phase = "done";
    f.status.seconds = started.elapsed().as_secs_f64();
    obs.status(&f.status);
    report.status = f.status;
    Ok(report)
}

/// What [`apply`] works with.
struct Apply<'a> {
    src: &'a TreeReader,
    dst: &'a TreeReader,
    max_delete: Option<u64>,
}

/// Re-reads `batch` (absolute paths inside the source's chroot) on both
/// sides and writes what differs: creates (parents first), data and ACL
/// changes, deletes (children first). Returns the writes and the paths that
/// could not be read.
async fn apply(ctx: &Apply<'_>, w: &mut Writer, batch: &[String]) -> Result<(u64, u64)> {
    let (src, dst) = (ctx.src, ctx.dst);
    let root = src.root().to_string();
    // The server's own nodes under `/` are not the tree's (as a copy skips them).
    let system = |rel: &String| src.absolute_root() == "/" && (rel == "/zookeeper" || rel.starts_with("/zookeeper/"));
    let mut rels: Vec<String> = batch.iter().filter_map(|p| relative(&root, p)).filter(|r| !system(r)).collect();
    rels.sort_by_key(|r| r.matches('/').count());
    rels.dedup();
    // Every missing parent on the destination is created first (from the
    // source's current state).
    let mut with_parents: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for r in &rels {
        let mut a = r.as_str();
        while let Some((parent, _)) = a.rsplit_once('/') {
            if parent.is_empty() {
                break;
            }
            with_parents.entry(parent.matches('/').count()).or_default().push(parent.to_string());
            a = parent;
        }
        with_parents.entry(r.matches('/').count()).or_default().push(r.clone());
    }
    let mut ordered: Vec<String> = Vec::new();
    for (_, mut v) in with_parents {
        v.sort();
        v.dedup();
        ordered.extend(v);
    }
    let refs: Vec<&str> = ordered.iter().map(String::as_str).collect();
    dst.catch_up().await?;
    let (s, d) = futures::try_join!(read_all(src, &refs), read_all(dst, &refs))?;
    let dst_root = dst.root().to_string();
    let (mut writes, mut unreadable) = (0u64, 0u64);
    let mut deletes: Vec<String> = Vec::new();
    for ((rel, s), d) in ordered.iter().zip(s).zip(d) {
        let abs = path::join(&dst_root, rel);
        if let Slot::Node(n) = &s
            && acl_masked(&n.acl)
        {
            return Err(Error::AclMasked { side: Side::Source, path: path::join(&root, rel) });
        }
        match (&s, &d) {
            (Slot::Failed(_), _) | (_, Slot::Failed(_)) => unreadable += 1,
            (Slot::Node(n), _) if n.is_ephemeral() => {}
            (Slot::Node(n), Slot::Absent | Slot::Vanished) => {
                w.push(Op::Create { path: abs, data: n.data.clone(), acl: n.acl.clone(), kind: NodeKind::Persistent })
                    .await?;
                writes += 1;
            }
            (Slot::Node(n), Slot::Node(m)) => {
                if n.data != m.data {
                    w.push(Op::SetData { path: abs.clone(), data: n.data.clone() }).await?;
                    writes += 1;
                }
                if !acl_equal(&n.acl, &m.acl) {
                    w.push(Op::SetAcl { path: abs, acl: n.acl.clone() }).await?;
                    writes += 1;
                }
            }
            // The root itself stays, as a mirror keeps it.
            (Slot::Absent | Slot::Vanished, Slot::Node(m)) if !m.is_ephemeral() && !rel.is_empty() => deletes.push(abs),
            _ => {}
        }
    }
    // Deletions after the rest, each subtree children first.
    w.flush().await?;
    if !deletes.is_empty() {
        let (_, c) = dst.pool().get(0).client();
        let mut doomed = Vec::new();
        for top in deletes {
            subtree(&c, &top, &mut doomed).await?;
        }
        doomed.sort_by(|a, b| b.matches('/').count().cmp(&a.matches('/').count()).then_with(|| a.cmp(b)));
        doomed.dedup();
        if let Some(limit) = ctx.max_delete
            && doomed.len() as u64 > limit
        {
            return Err(Error::DeleteLimit { deletes: doomed.len() as u64, limit, others_applied: true });
        }
        for p in doomed {
            w.push(Op::Delete { path: p }).await?;
            writes += 1;
        }
        w.flush().await?;
    }
    Ok((writes, unreadable))
}

/// `reader.read`, with what came back Deferred (a read past its byte
/// bound) read again until nothing is.
async fn read_all(reader: &TreeReader, rels: &[&str]) -> Result<Vec<Slot>> {
    let mut slots = reader.read(rels).await?;
    for _ in 0..rels.len().max(1) {
        let again: Vec<usize> = (0..slots.len()).filter(|&i| matches!(slots[i], Slot::Deferred)).collect();
        if again.is_empty() {
            break;
        }
        let refs: Vec<&str> = again.iter().map(|&i| rels[i]).collect();
        for (i, slot) in again.into_iter().zip(reader.read(&refs).await?) {
            slots[i] = slot;
        }
    }
    Ok(slots)
}

/// `top` and every node beneath it on the destination.
async fn subtree(c: &zk::Client, top: &str, out: &mut Vec<String>) -> Result<()> {
    let mut stack = vec![top.to_string()];
    while let Some(p) = stack.pop() {
        match c.list_children(&p).await {
            Ok(kids) => {
                for k in kids {
                    stack.push(path::join(&p, &format!("/{k}")));
                }
                out.push(p);
            }
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(Error::zk(Side::Destination, "list", &p, e)),
        }
    }
    Ok(())
}

/// `abs` relative to `root` (`""` for the root itself), or `None` outside it.
fn relative(root: &str, abs: &str) -> Option<String> {
    if root == "/" {
        return Some(if abs == "/" { String::new() } else { abs.to_string() });
    }
    if abs == root {
        return Some(String::new());
    }
    abs.strip_prefix(root).filter(|rest| rest.starts_with('/')).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_relative_to_the_root() {
        assert_eq!(relative("/a", "/a"), Some(String::new()));
        assert_eq!(relative("/a", "/a/b/c"), Some("/b/c".to_string()));
        assert_eq!(relative("/a", "/ab"), None);
        assert_eq!(relative("/", "/x"), Some("/x".to_string()));
        assert_eq!(relative("/", "/"), Some(String::new()));
    }

    #[test]
    fn pending_paths_are_taken_oldest_first_once_each() {
        let mut p = Pending::default();
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        p.add("/a".into(), ms(1));
        p.add("/b".into(), ms(2));
        p.add("/a".into(), ms(3));
        p.add("/c".into(), ms(4));
        assert_eq!(p.take(2), (vec!["/a".to_string(), "/b".to_string()], Some(ms(1))));
        assert_eq!(p.oldest(), Some(ms(4)));
        p.add("/a".into(), ms(5));
        assert_eq!(p.take(5).0, vec!["/c".to_string(), "/a".to_string()]);
        assert!(p.take(5).0.is_empty());
        assert!(p.paths.is_empty());
    }

    #[test]
    fn a_reconcile_forgets_what_came_before_it() {
        let mut p = Pending::default();
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        p.add("/a".into(), ms(1));
        p.add("/b".into(), ms(2));
        p.add("/c".into(), ms(3));
        p.forget_before(ms(3));
        assert_eq!(p.oldest(), Some(ms(3)));
        assert_eq!(p.take(5).0, vec!["/c".to_string()]);
        assert!(p.paths.is_empty());
    }
}
