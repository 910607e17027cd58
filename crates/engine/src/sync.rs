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
//! re-reads that follow an event are served by the member that sent it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zookeeper_client as zk;

use crate::copy::plan::Identities;
use crate::copy::{self, CopyRequest, CopySummary, Job, Left, Mode};
use crate::error::{Error, Result, Side};
use crate::node::{NodeKind, Slot, acl_equal, acl_masked};
use crate::progress::Progress;
use crate::read::TreeReader;
use crate::read::walk::WalkOptions;
use crate::tree::{ReadSettings, RunCredential, Timeouts, Tree};
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
    pub seconds: f64,
}

/// What a sync did.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct SyncReport {
    pub status: SyncStatus,
    pub copy: CopySummary,
    pub verify: Option<VerifyReport>,
}

/// Told how a sync goes: a status at least every second, and notes
/// (reconciles, gaps, unreadable nodes).
pub trait SyncObserver: Send + Sync {
    fn status(&self, s: &SyncStatus);
    fn note(&self, msg: &str);
}

/// Changed paths waiting to be applied, each once, with when it was first
/// seen.
#[derive(Default)]
struct Pending {
    paths: HashMap<String, Instant>,
    events: u64,
    last_event: Option<Instant>,
    /// A gap (reconnect, new session): the tree must be reconciled.
    gap: bool,
    resets: u64,
    /// The watch is gone for good (session ended): a new one is needed.
    lost: bool,
}

impl Pending {
    fn oldest(&self) -> Option<Instant> {
        self.paths.values().min().copied()
    }

    /// Up to `n` paths, the oldest first, and when the oldest was seen.
    fn take(&mut self, n: usize) -> (Vec<String>, Option<Instant>) {
        let mut v: Vec<(String, Instant)> = self.paths.iter().map(|(p, t)| (p.clone(), *t)).collect();
        v.sort_by_key(|(_, t)| *t);
        v.truncate(n);
        for (p, _) in &v {
            self.paths.remove(p);
        }
        let oldest = v.first().map(|(_, t)| *t);
        (v.into_iter().map(|(p, _)| p).collect(), oldest)
    }
}

/// The queue, also after a panic elsewhere held it (its state stays usable).
fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|e| e.into_inner())
}

/// Drains a persistent watcher into `pending`; re-adds the watch after a
/// reconnect (the client does not) and says a gap happened.
async fn drain(client: zk::Client, root: String, mut w: zk::PersistentWatcher, pending: Arc<Mutex<Pending>>) {
    let mut disconnected = false;
    loop {
        let e = w.changed().await;
        if e.event_type == zk::EventType::Session {
            match e.session_state {
                zk::SessionState::Disconnected => disconnected = true,
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
            continue;
        }
        let mut p = lock(&pending);
        p.events += 1;
        let now = Instant::now();
        p.last_event = Some(now);
        p.paths.entry(e.path).or_insert(now);
    }
}

/// The draining task, ended when this is dropped (an early return too).
struct Drainer(tokio::task::JoinHandle<()>);

impl Drop for Drainer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sets the watch on the source reader's first session and starts draining.
async fn watch(reader: &TreeReader, pending: &Arc<Mutex<Pending>>) -> Result<Drainer> {
    let (_, client) = reader.pool().get(0).client();
    let root = reader.root().to_string();
    let w = client
        .watch(&root, zk::AddWatchMode::PersistentRecursive)
        .await
        .map_err(|e| Error::zk(Side::Source, "add a persistent recursive watch on", &root, e))?;
    Ok(Drainer(tokio::spawn(drain(client, root, w, pending.clone()))))
}

/// Runs a sync: the watch, a full copy, then every change as it comes,
/// until idle, cancelled, or too far behind; then a last reconcile and a
/// verify.
pub async fn run(req: &SyncRequest, progress: &Arc<Progress>, obs: &dyn SyncObserver) -> Result<SyncReport> {
    let started = Instant::now();
    let mut status = SyncStatus { phase: "connecting", ..SyncStatus::default() };
    let credential = RunCredential::generate();
    let n = req.read.sessions;
    let mut writer_tree = req.dst.clone();
    writer_tree.auth.push(credential.auth().clone());
    let mut dst_tree = req.dst.clone();
    dst_tree.auth.push(credential.auth().clone());
    let (src, dst, session) = progress
        .unless_cancelled(async {
            futures::try_join!(
                TreeReader::connect(Side::Source, &req.src, &req.timeouts, &req.read, true, n),
                TreeReader::connect(Side::Destination, &dst_tree, &req.timeouts, &req.read, true, n),
                Session::connect(Arc::new(writer_tree.connect_options(Side::Destination, &req.timeouts))),
            )
        })
        .await?;
    let pending = Arc::new(Mutex::new(Pending::default()));
    let mut drainer = watch(&src, &pending).await?;
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
    let ids = Identities { dst: dst_tree.acl_ids(), run: credential.acl_id() };
    let walk = WalkOptions { batch: req.read.batch, window: req.read.window, ..WalkOptions::default() };
    let job = Job { opts: &copy_req.options, walk: &walk, ids: &ids, allow_overlap: false };
    let reconcile = async |p: &Arc<Progress>| -> Result<CopySummary> {
        copy::run_on(&src, &dst, &session, &job, p, &mut Left::default()).await
    };
    let first = reconcile(progress).await?;
    status.reconciles = 0;

    let mut writer = Writer::new(session.clone(), req.writer).with_progress(progress.clone());
    let mut last_reconcile = Instant::now();
    let mut last_status = Instant::now();
    let mut reconcile_due = false;
    let cancelled = |progress: &Progress| progress.is_cancelled();
    status.phase = "following";
    loop {
        // A lost watch: a new session's watch, and a reconcile for the gap.
        let (lost, gap) = {
            let mut p = lock(&pending);
            let r = (p.lost, p.gap);
            p.gap = false;
            p.lost = false;
            (r.0, r.1)
        };
        if lost {
            drop(drainer);
            obs.note("the source session ended: opening a new session for a new watch");
            // The source may still be away: keep trying, as long as an
            // operation may keep failing (the retry timeout).
            let deadline = Instant::now() + req.timeouts.retry;
            drainer = loop {
                let (generation, _) = src.pool().get(0).client();
                let attempt = match src.pool().get(0).renew(generation).await {
                    Ok(()) => watch(&src, &pending).await,
                    Err(e) => Err(e),
                };
                match attempt {
                    Ok(d) => break d,
                    Err(e) if Instant::now() >= deadline || cancelled(progress) => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            };
            lock(&pending).resets += 1;
            obs.note("a new source session and a new watch; reconciling the gap");
            reconcile_due = true;
        }
        if gap {
            obs.note("reconnected to the source: the watch was added again; reconciling what the gap hid");
            reconcile_due = true;
        }
        if req.reconcile_every.is_some_and(|every| last_reconcile.elapsed() >= every) {
            reconcile_due = true;
        }
        if reconcile_due && !cancelled(progress) {
            status.phase = "reconciling";
            obs.status(&status);
            let began = Instant::now();
            match reconcile(&Arc::new(Progress::with_cancel(progress.cancel_token().child_token()))).await {
                Ok(_) => {}
                // Ctrl-C during it: the last reconcile and the verify still run.
                Err(Error::Interrupted) if cancelled(progress) => break,
                Err(e) => return Err(e),
            }
            // What changed before it began, it read: no longer pending.
            lock(&pending).paths.retain(|_, seen| *seen >= began);
            status.reconciles += 1;
            last_reconcile = Instant::now();
            reconcile_due = false;
            status.phase = "following";
            // Idle counts from here: a gap just ended is not idleness.
            let mut p = lock(&pending);
            p.last_event = Some(p.last_event.map_or(last_reconcile, |t| t.max(last_reconcile)));
        }

        let (batch, batch_oldest, last_event) = {
            let mut p = lock(&pending);
            status.events = p.events;
            status.watch_resets = p.resets;
            let (batch, oldest) = p.take(req.batch.max(1));
            (batch, oldest, p.last_event)
        };
        // The lag counts what is being applied too, and is watched while
        // it is: a destination that stalls must not stall the check.
        let lag = || {
            let oldest = lock(&pending).oldest();
            [batch_oldest, oldest].into_iter().flatten().min().map(|t| t.elapsed()).unwrap_or_default()
        };
        let over_limit = async {
            match req.max_lag {
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
            let applied = tokio::select! {
                r = apply(&src, &dst, &mut writer, &batch, req.max_delete) => r,
                limit = over_limit => {
                    let pending_now = lock(&pending).paths.len() + batch.len();
                    let behind = lag();
                    // What was sent lands (or is given a few seconds) first.
                    let _ = tokio::time::timeout(Duration::from_secs(5), writer.land()).await;
                    return Err(Error::Lag { behind, limit, pending: pending_now });
                }
            };
            match applied {
                Ok((writes, unreadable)) => {
                    status.applied += batch.len() as u64;
                    status.writes += writes;
                    if unreadable > 0 {
                        status.unreadable += unreadable;
                        obs.note(&format!(
                            "{unreadable} changed node(s) could not be read on the source (no READ for this session: ZooKeeper 3.8.4 and later also send no events for them)"
                        ));
                    }
                }
                Err(e) => {
                    // What one pass could not do (a restrictive ACL, a
                    // node in the way) the copy's reconcile does.
                    obs.note(&format!("applying changes: {e}; reconciling"));
                    writer.land().await?;
                    reconcile_due = true;
                }
            }
        }
        let (pending_now, behind) = {
            let p = lock(&pending);
            (p.paths.len(), p.oldest().map(|t| t.elapsed()).unwrap_or_default())
        };
        status.pending = pending_now;
        status.lag_seconds = behind.as_secs_f64();
        status.seconds = started.elapsed().as_secs_f64();
        if let Some(limit) = req.max_lag
            && behind > limit
        {
            return Err(Error::Lag { behind, limit, pending: pending_now });
        }
        if last_status.elapsed() >= Duration::from_secs(1) {
            obs.status(&status);
            last_status = Instant::now();
        }
        if cancelled(progress) {
            break;
        }
        if batch.is_empty() && pending_now == 0 && !reconcile_due {
            let idle = last_event.map(|t| t.elapsed()).unwrap_or_else(|| started.elapsed());
            if let Some(limit) = req.until_idle
                && idle >= limit
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    writer.flush().await?;
    drop(drainer);

    // A last reconcile catches what no event tells (ACL changes).
    status.phase = "reconciling";
    obs.status(&status);
    let last = Arc::new(Progress::new());
    reconcile(&last).await?;
    status.reconciles += 1;
    let verify_report = if req.verify {
        status.phase = "verifying";
        obs.status(&status);
        let mut first_diffs = FirstDifferences::new(20);
        let mut v = copy_req.verify_request();
        v.dst = v.dst.with_auth(credential.auth().clone());
        Some(verify::run(&v, &Progress::new(), &mut first_diffs).await?)
    } else {
        None
    };
    status.phase = "done";
    status.seconds = started.elapsed().as_secs_f64();
    obs.status(&status);
    Ok(SyncReport { status, copy: first, verify: verify_report })
}

/// Re-reads `batch` (absolute paths inside the source's chroot) on both
/// sides and writes what differs: creates (parents first), data and ACL
/// changes, deletes (children first). Returns the writes and the paths that
/// could not be read.
async fn apply(
    src: &TreeReader,
    dst: &TreeReader,
    w: &mut Writer,
    batch: &[String],
    max_delete: Option<u64>,
) -> Result<(u64, u64)> {
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
        if let Some(limit) = max_delete
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
        p.paths.insert("/b".into(), t + Duration::from_millis(2));
        p.paths.insert("/a".into(), t + Duration::from_millis(1));
        p.paths.insert("/c".into(), t + Duration::from_millis(3));
        assert_eq!(p.take(2), (vec!["/a".to_string(), "/b".to_string()], Some(t + Duration::from_millis(1))));
        assert_eq!(p.take(5).0, vec!["/c".to_string()]);
        assert!(p.take(5).0.is_empty());
    }
}
