//! Verify: walks source and destination in lockstep (the same reader and
//! walker as copy), compares every node's presence, data and ACL, and
//! computes both trees' Merkle digests on the way.
//!
//! Differences are handed to a [`DiffSink`] as they are found and only
//! counted here, so a verify of a million differing nodes holds no more than
//! one of equal trees.
//!
//! Ephemerals are left out on both sides unless asked for. Stat fields a
//! copy cannot carry (zxids, times, versions) are not compared, except that
//! a destination parent whose child version (sequence counter) is behind the
//! source's is reported in a class of its own.

use std::time::Instant;

use tokio::sync::mpsc;

use crate::error::{Error, Result, Side};
use crate::progress::Progress;
use crate::tree::{ReadSettings, Timeouts, Tree};

pub(crate) mod compare;
pub(crate) use self::compare::{Comparer, VerifyOptions};
use crate::read::TreeReader;
use crate::read::walk::{self, Batch, DstOnly, WalkOptions};

/// Kinds of difference, with the symbols of rclone's check report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffClass {
    /// `-`: only in the source.
    MissingOnDst,
    /// `+`: only in the destination.
    ExtraOnDst,
    /// `*`: data differs.
    DataDiffers,
    /// `*`: ACL differs.
    AclDiffers,
    /// `<`: destination sequence counter behind the source's.
    CounterBehind,
    /// `!`: could not be read on a side.
    Unreadable,
    /// `~`: listed, then gone when read: the tree changed during verify.
    Changed,
}

impl DiffClass {
    pub fn symbol(self) -> char {
        match self {
            DiffClass::MissingOnDst => '-',
            DiffClass::ExtraOnDst => '+',
            DiffClass::DataDiffers | DiffClass::AclDiffers => '*',
            DiffClass::CounterBehind => '<',
            DiffClass::Unreadable => '!',
            DiffClass::Changed => '~',
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Difference {
    pub class: DiffClass,
    /// Path relative to the roots (`/` for the roots themselves).
    pub path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Where a verify sends each difference as it finds it. `Send`, so that a
/// verify can run in a task of its own.
pub trait DiffSink: Send {
    fn difference(&mut self, d: Difference);
}

impl<F: FnMut(Difference) + Send> DiffSink for F {
    fn difference(&mut self, d: Difference) {
        self(d)
    }
}

/// A sink that keeps the first `limit` differences and counts the others:
/// a listing of bounded size, for summaries printed after the walk.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FirstDifferences {
    #[serde(rename = "differences")]
    pub listed: Vec<Difference>,
    /// Differences found beyond the limit.
    pub unlisted: u64,
    #[serde(skip)]
    limit: usize,
}

impl FirstDifferences {
    pub fn new(limit: usize) -> FirstDifferences {
        FirstDifferences { listed: Vec::new(), unlisted: 0, limit }
    }
}

impl DiffSink for FirstDifferences {
    fn difference(&mut self, d: Difference) {
        if self.listed.len() < self.limit {
            self.listed.push(d);
        } else {
            self.unlisted += 1;
        }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DiffCounts {
    pub missing_on_dst: u64,
    pub extra_on_dst: u64,
    pub data_differs: u64,
    pub acl_differs: u64,
    pub counter_behind: u64,
    pub unreadable: u64,
    pub changed: u64,
}

impl DiffCounts {
    fn add(&mut self, class: DiffClass) {
        match class {
            DiffClass::MissingOnDst => self.missing_on_dst += 1,
            DiffClass::ExtraOnDst => self.extra_on_dst += 1,
            DiffClass::DataDiffers => self.data_differs += 1,
            DiffClass::AclDiffers => self.acl_differs += 1,
            DiffClass::CounterBehind => self.counter_behind += 1,
            DiffClass::Unreadable => self.unreadable += 1,
            DiffClass::Changed => self.changed += 1,
        }
    }
}

/// The outcome of a verify: counts and digests; the differences themselves
/// went to the sink.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct VerifyReport {
    pub src_nodes: u64,
    pub dst_nodes: u64,
    pub src_bytes: u64,
    pub dst_bytes: u64,
    /// Present on both sides and compared.
    pub compared: u64,
    pub ephemerals_ignored: u64,
    pub acl_compared: bool,
    pub counts: DiffCounts,
    pub src_digest: Option<String>,
    pub dst_digest: Option<String>,
    pub strict_counters: bool,
    pub seconds: f64,
    /// Nodes read per second on each side.
    pub nodes_per_sec_per_side: f64,
    /// Sessions replaced after expiring (the walk went on).
    pub session_renewals: usize,
    /// Times a tree's sessions moved to another ensemble member together.
    pub member_moves: usize,
    /// Peak resident memory of this process so far.
    pub peak_rss_bytes: Option<u64>,
    /// Where each side's ACLs came from, when it was read with a snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_acl_sources: Option<crate::read::AclSources>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_acl_sources: Option<crate::read::AclSources>,
}

/// What a verify concluded, as an exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Equal,
    Different,
    /// Some node could not be read: equality is not proven.
    Incomplete,
}

impl VerifyReport {
    pub fn verdict(&self) -> Verdict {
        let c = &self.counts;
        if c.unreadable > 0 {
            return Verdict::Incomplete;
        }
        let diffs = c.missing_on_dst
            + c.extra_on_dst
            + c.data_differs
            + c.acl_differs
            + c.changed
            + if self.strict_counters { c.counter_behind } else { 0 };
        if diffs > 0 { Verdict::Different } else { Verdict::Equal }
    }

    pub fn equal(&self) -> bool {
        self.verdict() == Verdict::Equal
    }
}

/// A verify: the two trees, how to reach and read them, and what to
/// compare. The one value a driver hands to [`run`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct VerifyRequest {
    pub src: Tree,
    pub dst: Tree,
    pub timeouts: Timeouts,
    pub read: ReadSettings,
    /// Read and compare ACLs (one getACL per node on each side).
    pub acl: bool,
    /// Compare ephemeral nodes too (left out on both sides by default).
    pub include_ephemeral: bool,
    /// Count destination sequence counters behind the source's as
    /// differences.
    pub strict_counters: bool,
}

impl VerifyRequest {
    /// A verify of `dst` against `src`: ACLs compared, ephemerals left out.
    pub fn new(src: Tree, dst: Tree) -> VerifyRequest {
        VerifyRequest {
            src,
            dst,
            timeouts: Timeouts::default(),
            read: ReadSettings::default(),
            acl: true,
            include_ephemeral: false,
            strict_counters: false,
        }
    }
}

/// Verifies `req.dst` against `req.src`: opens readers on both, compares
/// every node, and hands each difference to `sink` as it is found.
pub async fn run(req: &VerifyRequest, progress: &Progress, sink: &mut dyn DiffSink) -> Result<VerifyReport> {
    progress.set_phase("connecting");
    let n = req.read.sessions;
    let (src, dst) = progress
        .unless_cancelled(async {
            futures::try_join!(
                TreeReader::connect(Side::Source, &req.src, &req.timeouts, &req.read, req.acl, n),
                TreeReader::connect(Side::Destination, &req.dst, &req.timeouts, &req.read, req.acl, n),
            )
        })
        .await?;
    let opts = VerifyOptions {
        walk: WalkOptions { batch: req.read.batch, window: req.read.window, ..WalkOptions::default() },
        include_ephemeral: req.include_ephemeral,
        strict_counters: req.strict_counters,
    };
    run_on(&src, &dst, &opts, progress, sink).await
}

/// Compares the trees under `src` and `dst`, handing every difference to
/// `sink` as it is found.
pub(crate) async fn run_on(
    src: &TreeReader,
    dst: &TreeReader,
    opts: &VerifyOptions,
    progress: &Progress,
    sink: &mut dyn DiffSink,
) -> Result<VerifyReport> {
    progress.set_phase("verifying");
    let started = Instant::now();
    // Both trees as of now at least, whichever members they are read from.
    progress.unless_cancelled(async { futures::try_join!(src.catch_up(), dst.catch_up()) }).await?;
    let (src_root, dst_root) = futures::try_join!(src.root_stat(), dst.root_stat())?;
    let Some(_) = src_root else {
        return Err(Error::NoRoot { side: Side::Source, path: src.root().to_string() });
    };
    let mut walk_opts = opts.walk.clone();
    walk_opts.dst_only = DstOnly::Descend;
    walk_opts.digest = true;
    walk_opts.include_ephemeral = opts.include_ephemeral;
    walk_opts.skip_system = walk::system_skips(src, dst);
    let root_sides = walk::SRC | if dst_root.is_some() { walk::DST } else { 0 };

    let mut cmp = Comparer::new(opts.include_ephemeral, src.reads_acl() && dst.reads_acl(), sink);
    let (tx, rx) = mpsc::channel::<Batch>(8);
    let walking = walk::walk(Some(src), Some(dst), root_sides, &walk_opts, tx);
    let comparing = async {
        let mut rx = rx;
        loop {
            let batch = tokio::select! {
                b = rx.recv() => b,
                _ = progress.cancelled() => None,
            };
            let Some(batch) = batch else { break };
            for f in &batch.list_failures {
                cmp.list_failure(f);
            }
            progress.add_read(batch.entries.len() as u64);
            for e in &batch.entries {
                cmp.entry(e);
            }
        }
    };
    let (walked, ()) = tokio::join!(walking, comparing);
    if progress.is_cancelled() {
        return Err(Error::Interrupted);
    }
    let walked = walked?;
    let seconds = started.elapsed().as_secs_f64();
    let most = walked.src.nodes.max(walked.dst.nodes);
    Ok(VerifyReport {
        src_nodes: walked.src.nodes,
        dst_nodes: walked.dst.nodes,
        src_bytes: walked.src.bytes,
        dst_bytes: walked.dst.bytes,
        compared: cmp.compared,
        ephemerals_ignored: if opts.include_ephemeral { 0 } else { walked.src.ephemerals + walked.dst.ephemerals },
        acl_compared: cmp.acl,
        counts: cmp.counts,
        src_digest: walked.src.digest.as_ref().map(hex::encode),
        dst_digest: walked.dst.digest.as_ref().map(hex::encode),
        strict_counters: opts.strict_counters,
        seconds,
        nodes_per_sec_per_side: if seconds > 0.0 { most as f64 / seconds } else { 0.0 },
        session_renewals: src.pool().renewals() + dst.pool().renewals(),
        member_moves: src.pool().moves() + dst.pool().moves(),
        peak_rss_bytes: crate::progress::peak_rss_bytes(),
        src_acl_sources: src.acl_sources(),
        dst_acl_sources: dst.acl_sources(),
    })
}
