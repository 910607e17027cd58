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
