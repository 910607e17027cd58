//! One copy-and-verify round of the cluster root through the engine: a
//! copy (fresh, update or mirror) under the migration's one identity, then
//! a verify with ACLs and sequence counters, keeping the first differences.

use std::sync::Arc;
use std::time::Instant;

use zkrepl::copy::{self, CopyRequest, Mode};
use zkrepl::verify::{self, FirstDifferences, VerifyReport, VerifyRequest};
use zkrepl::{CancellationToken, Progress, ReadSettings, RunCredential, Timeouts, Tree};

/// The two trees of a migration and how to read them.
#[derive(Clone, Debug)]
pub struct Trees {
    pub src: Tree,
    pub dst: Tree,
    pub timeouts: Timeouts,
    pub read: ReadSettings,
}

/// What one round did.
#[derive(Debug)]
pub struct Round {
    pub copy_seconds: f64,
    pub verify_seconds: f64,
    pub written: u64,
    pub report: VerifyReport,
    pub differences: FirstDifferences,
}

impl Round {
    pub fn equal(&self) -> bool {
        self.report.equal()
    }

    /// The first `limit` differences, as `symbol path` lines.
    pub fn listing(&self, limit: usize) -> Vec<String> {
        let d = &self.differences;
        let mut v: Vec<String> =
            d.listed.iter().take(limit).map(|d| format!("{} {}", d.class.symbol(), d.path)).collect();
        let more = d.listed.len().saturating_sub(limit) as u64 + d.unlisted;
        if more > 0 {
            v.push(format!("... and {more} more"));
        }
        v
    }
}

/// Copies in `mode` with `credential` as the copy's identity, then verifies.
pub async fn round(
    trees: &Trees,
    mode: Mode,
    credential: &RunCredential,
    cancel: &CancellationToken,
    on_progress: &(dyn Fn(&'static str, &Arc<Progress>) + Send + Sync),
) -> zkrepl::Result<Round> {
    let mut req = CopyRequest::new(trees.src.clone(), trees.dst.clone());
    req.timeouts = trees.timeouts;
    req.read = trees.read;
    req.options.mode = mode;
    req.resume = Some(credential.clone());
    let progress = Arc::new(Progress::with_cancel(cancel.child_token()));
    on_progress("copy", &progress);
    let started = Instant::now();
    let summary = copy::run(&req, &progress).await.map_err(|f| f.error)?;
    let copy_seconds = started.elapsed().as_secs_f64();

    let mut v: VerifyRequest = req.verify_request();
    v.strict_counters = true;
    // The copy's identity opens what still carries its grant (none, once
    // the copy ended; presented so a verify never trips over one).
    v.dst = v.dst.with_auth(credential.auth().clone());
    let progress = Arc::new(Progress::with_cancel(cancel.child_token()));
    on_progress("verify", &progress);
    let started = Instant::now();
    let mut differences = FirstDifferences::new(20);
    let report = verify::run(&v, &progress, &mut differences).await?;
    Ok(Round {
        copy_seconds,
        verify_seconds: started.elapsed().as_secs_f64(),
        written: summary.created + summary.data_updated + summary.acl_updated + summary.deleted,
        report,
        differences,
    })
}

/// The source root's digest (with ACLs, without ephemerals), as the verify
/// computes it.
pub async fn digest(trees: &Trees, cancel: &CancellationToken) -> zkrepl::Result<Option<String>> {
    let mut req = zkrepl::digest::DigestRequest::new(trees.src.clone());
    req.timeouts = trees.timeouts;
    req.read = trees.read;
    let progress = Progress::with_cancel(cancel.child_token());
    Ok(zkrepl::digest::run(&req, &progress).await?.digest)
}

/// What the mirror says as it goes, kept for the migration to pass on.
#[derive(Default)]
struct Notes(std::sync::Mutex<Vec<String>>);

impl zkrepl::sync::SyncObserver for Notes {
    fn status(&self, _: &zkrepl::sync::SyncStatus) {}

    fn note(&self, msg: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(msg.to_string());
    }
}

/// A live mirror of the cluster root (the engine's sync) followed in the
/// background while the migration goes on; stopped when dropped.
pub struct Mirror {
    control: zkrepl::sync::Control,
    task: Option<tokio::task::JoinHandle<zkrepl::Result<zkrepl::sync::SyncReport>>>,
    /// The full copy's counters, then the follow's.
    pub progress: Arc<Progress>,
    notes: Arc<Notes>,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl Mirror {
    /// Starts it: a persistent watch on the source, a full mirror copy under
    /// `credential`, then every change as it comes. No periodic reconcile:
    /// the end's verify catches what no event tells.
    pub fn start(trees: &Trees, credential: &RunCredential, cancel: &CancellationToken) -> Mirror {
        let mut req = zkrepl::sync::SyncRequest::new(trees.src.clone(), trees.dst.clone());
        req.timeouts = trees.timeouts;
        req.read = trees.read;
        req.reconcile_every = None;
        req.verify = true;
        req.credential = Some(credential.clone());
        let (control, commands) = zkrepl::sync::control();
        let progress = Arc::new(Progress::with_cancel(cancel.child_token()));
        let notes = Arc::new(Notes::default());
        let (p, n) = (progress.clone(), notes.clone());
        let task = tokio::spawn(async move { zkrepl::sync::run_controlled(&req, &p, &*n, commands).await });
        Mirror { control, task: Some(task), progress, notes }
    }

    /// What it said since last asked.
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits until every change the source committed before the call is on
    /// the destination.
    pub async fn catch_up(&mut self) -> zkrepl::Result<zkrepl::sync::CatchUp> {
        match self.control.catch_up().await {
            Some(c) => Ok(c),
            None => Err(self.ended().await),
        }
    }

    /// Why it stopped running.
    async fn ended(&mut self) -> zkrepl::Error {
        match self.task.take() {
            Some(t) => match t.await {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => zkrepl::Error::Internal("the live mirror ended unasked".to_string()),
                Err(e) => zkrepl::Error::Internal(format!("the live mirror failed: {e}")),
            },
            None => zkrepl::Error::Internal("the live mirror was already ended".to_string()),
        }
    }

    /// Ends it: a last catch-up, and the verify between two marks.
    pub async fn finish(mut self) -> zkrepl::Result<zkrepl::sync::SyncReport> {
        self.control.finish();
        match self.task.take() {
            Some(t) => t.await.map_err(|e| zkrepl::Error::Internal(format!("the live mirror failed: {e}")))?,
            None => Err(zkrepl::Error::Internal("the live mirror was already ended".to_string())),
        }
    }
}
