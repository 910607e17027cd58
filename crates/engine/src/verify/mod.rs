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

use crate::error::Result;
use crate::node::{NodeInfo, Slot, acl_equal, acl_masked, canonical_acl, next_sequence, preview};
use crate::read::TreeReader;
use crate::read::walk::{self, Batch, DstOnly, Entry, ListFailure, WalkOptions};

#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    pub walk: WalkOptions,
    /// Compare ephemeral nodes too (ignored on both sides by default).
    pub include_ephemeral: bool,
    /// Count lagging sequence counters as differences.
    pub strict_counters: bool,
}

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

/// Where a verify sends each difference as it finds it.
pub trait DiffSink {
    fn difference(&mut self, d: Difference);
}

impl<F: FnMut(Difference)> DiffSink for F {
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

/// Compares walked entries one at a time. It keeps counts only: each
/// difference goes to the sink as soon as it is found.
pub struct Comparer<'s> {
    include_ephemeral: bool,
    acl: bool,
    counts: DiffCounts,
    compared: u64,
    sink: &'s mut dyn DiffSink,
}

impl<'s> Comparer<'s> {
    /// `acl`: compare ACLs (both sides read them).
    pub fn new(include_ephemeral: bool, acl: bool, sink: &'s mut dyn DiffSink) -> Comparer<'s> {
        Comparer { include_ephemeral, acl, counts: DiffCounts::default(), compared: 0, sink }
    }

    pub fn counts(&self) -> &DiffCounts {
        &self.counts
    }

    /// Nodes present on both sides and compared so far.
    pub fn compared(&self) -> u64 {
        self.compared
    }

    fn note(&mut self, class: DiffClass, rel: &str, detail: String) {
        self.counts.add(class);
        let path = if rel.is_empty() { "/".to_string() } else { rel.to_string() };
        self.sink.difference(Difference { class, path, detail });
    }

    /// A node whose children could not be listed.
    pub fn list_failure(&mut self, f: &ListFailure) {
        self.note(DiffClass::Unreadable, &f.rel, format!("children on the {}: {}", f.side, f.error));
    }

    fn visible<'e>(&self, slot: &'e Slot) -> Option<&'e NodeInfo> {
        slot.persistent(self.include_ephemeral)
    }

    /// One walked path, both sides.
    pub fn entry(&mut self, e: &Entry) {
        for (slot, side, flag) in [(&e.src, "source", "--src-auth"), (&e.dst, "destination", "--dst-auth")] {
            match slot {
                Slot::Failed(err @ zookeeper_client::Error::NoAuth) => {
                    self.note(DiffClass::Unreadable, &e.rel, format!("on the {side}: {err} (pass {flag})"))
                }
                Slot::Failed(err) => self.note(DiffClass::Unreadable, &e.rel, format!("on the {side}: {err}")),
                Slot::Vanished => self.note(DiffClass::Changed, &e.rel, format!("deleted on the {side} during verify")),
                _ => {}
            }
        }
        if matches!(e.src, Slot::Failed(_) | Slot::Vanished) || matches!(e.dst, Slot::Failed(_) | Slot::Vanished) {
            return;
        }
        match (self.visible(&e.src), self.visible(&e.dst)) {
            (Some(s), Some(d)) => {
                self.compared += 1;
                if s.data != d.data {
                    let at =
                        s.data.iter().zip(&d.data).position(|(a, b)| a != b).unwrap_or(s.data.len().min(d.data.len()));
                    let from = at.saturating_sub(8);
                    let detail = format!(
                        "{} / {} bytes, first difference at byte {at}: source {} / destination {}",
                        s.data.len(),
                        d.data.len(),
                        preview(&s.data[from.min(s.data.len())..], 40),
                        preview(&d.data[from.min(d.data.len())..], 40)
                    );
                    self.note(DiffClass::DataDiffers, &e.rel, detail);
                }
                let masked = [(&s.acl, "source", "--src-auth"), (&d.acl, "destination", "--dst-auth")]
                    .into_iter()
                    .find(|(acl, _, _)| self.acl && acl_masked(acl));
                if let Some((_, side, flag)) = masked {
                    let detail = format!(
                        "ACL hidden on the {side}: digest ids show only with ADMIN permission (pass {flag}, or --no-acl)"
                    );
                    self.note(DiffClass::Unreadable, &e.rel, detail);
                } else if self.acl && !acl_equal(&s.acl, &d.acl) {
                    let show = |a: &[zookeeper_client::Acl]| {
                        canonical_acl(a).iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
                    };
                    let detail = format!("source [{}] / destination [{}]", show(&s.acl), show(&d.acl));
                    self.note(DiffClass::AclDiffers, &e.rel, detail);
                }
                let (next_s, next_d) = (next_sequence(&s.stat), next_sequence(&d.stat));
                if next_d < next_s {
                    let detail = format!("next sequential number: source {next_s} / destination {next_d}");
                    self.note(DiffClass::CounterBehind, &e.rel, detail);
                }
            }
            (Some(_), None) => self.note(DiffClass::MissingOnDst, &e.rel, String::new()),
            (None, Some(_)) => self.note(DiffClass::ExtraOnDst, &e.rel, String::new()),
            (None, None) => {}
        }
    }
}

/// Compares the trees under `src` and `dst`, handing every difference to
/// `sink` as it is found.
pub async fn run(
    src: &TreeReader,
    dst: &TreeReader,
    opts: &VerifyOptions,
    progress: &crate::progress::Progress,
    sink: &mut dyn DiffSink,
) -> Result<VerifyReport> {
    progress.set_phase("verifying");
    let started = Instant::now();
    // Both trees as of now at least, whichever members they are read from.
    futures::try_join!(src.catch_up(), dst.catch_up())?;
    let (src_root, dst_root) = futures::try_join!(src.root_stat(), dst.root_stat())?;
    let Some(_) = src_root else {
        return Err(crate::Error::NoRoot { side: crate::Side::Source, path: src.root().to_string() });
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
                _ = progress.stopped() => None,
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
    if progress.stop_requested() {
        return Err(crate::Error::Interrupted);
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
    })
}

/// One tree's fingerprint: root digest, size and the newest zxids seen.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DigestReport {
    pub root: String,
    pub digest: Option<String>,
    pub nodes: u64,
    pub bytes: u64,
    pub ephemerals_ignored: u64,
    pub max_mzxid: i64,
    pub max_pzxid: i64,
    pub acl_included: bool,
    /// Nodes that could not be read (the digest is then absent).
    pub unreadable: u64,
    /// Nodes that vanished while being read (the tree was changing).
    pub vanished: u64,
    /// The first nodes that could not be read, and why.
    pub unreadable_paths: Vec<(String, String)>,
    pub seconds: f64,
}

/// Digests one tree.
pub async fn digest(
    tree: &TreeReader,
    walk_opts: &WalkOptions,
    progress: &crate::progress::Progress,
) -> Result<DigestReport> {
    progress.set_phase("digesting");
    let started = Instant::now();
    tree.catch_up().await?;
    if tree.root_stat().await?.is_none() {
        return Err(crate::Error::NoRoot { side: tree.side(), path: tree.root().to_string() });
    }
    let mut o = walk_opts.clone();
    o.digest = true;
    o.skip_system = [tree.absolute_root() == "/", false];
    let (tx, rx) = mpsc::channel::<Batch>(8);
    let with_acl = tree.reads_acl();
    let draining = async {
        let mut unreadable = 0u64;
        let mut paths = Vec::new();
        let mut note = |rel: &str, why: String| {
            if paths.len() < 20 {
                paths.push((if rel.is_empty() { "/".to_string() } else { rel.to_string() }, why));
            }
        };
        let mut rx = rx;
        loop {
            let b = tokio::select! {
                b = rx.recv() => b,
                _ = progress.stopped() => None,
            };
            let Some(b) = b else { break };
            progress.add_read(b.entries.len() as u64);
            unreadable += b.list_failures.len() as u64;
            for f in &b.list_failures {
                note(&f.rel, format!("children: {}", f.error));
            }
            for e in &b.entries {
                match &e.src {
                    Slot::Failed(err) => note(&e.rel, err.to_string()),
                    Slot::Node(n) if with_acl && acl_masked(&n.acl) => {
                        note(&e.rel, "digest ACL hidden: ZooKeeper shows it only with ADMIN permission".to_string())
                    }
                    _ => {}
                }
            }
        }
        (unreadable, paths)
    };
    let (walked, (list_failures, unreadable_paths)) =
        tokio::join!(walk::walk(Some(tree), None, walk::SRC, &o, tx), draining);
    if progress.stop_requested() {
        return Err(crate::Error::Interrupted);
    }
    let walked = walked?;
    let s = walked.src;
    Ok(DigestReport {
        root: tree.root().to_string(),
        digest: s.digest.as_ref().map(hex::encode),
        nodes: s.nodes,
        bytes: s.bytes,
        ephemerals_ignored: if o.include_ephemeral { 0 } else { s.ephemerals },
        max_mzxid: s.max_mzxid,
        max_pzxid: s.max_pzxid,
        acl_included: tree.reads_acl(),
        unreadable: s.unreadable + list_failures,
        vanished: s.vanished,
        unreadable_paths,
        seconds: started.elapsed().as_secs_f64(),
    })
}
