//! One tree's Merkle digest (BLAKE3 over path, data, ACL and children), its size and the
//! newest zxids seen: two digests of one tree taken at different times tell
//! whether it changed, two of different trees whether they are equal.

use std::time::Instant;

use tokio::sync::mpsc;

use crate::error::{Error, Result, Side};
use crate::node::{Slot, acl_masked};
use crate::progress::Progress;
use crate::read::TreeReader;
use crate::read::walk::{self, Batch, WalkOptions};
use crate::tree::{ReadSettings, Timeouts, Tree};

/// A digest: the tree, how to reach and read it, and what to include. The
/// one value a driver hands to [`run`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DigestRequest {
    pub tree: Tree,
    pub timeouts: Timeouts,
    pub read: ReadSettings,
    /// Include each node's ACL (one getACL per node).
    pub acl: bool,
    /// Include ephemeral nodes.
    pub include_ephemeral: bool,
}

impl DigestRequest {
    /// A digest of `tree` with ACLs, without ephemerals.
    pub fn new(tree: Tree) -> DigestRequest {
        DigestRequest {
            tree,
            timeouts: Timeouts::default(),
            read: ReadSettings::default(),
            acl: true,
            include_ephemeral: false,
        }
    }
}

/// Digests `req.tree`: opens a reader on it and walks it.
pub async fn run(req: &DigestRequest, progress: &Progress) -> Result<DigestReport> {
    progress.set_phase("connecting");
    let connecting = TreeReader::connect(Side::Source, &req.tree, &req.timeouts, &req.read, req.acl, req.read.sessions);
    let reader = progress.unless_cancelled(connecting).await?;
    let walk = WalkOptions {
        batch: req.read.batch,
        window: req.read.window,
        include_ephemeral: req.include_ephemeral,
        ..WalkOptions::default()
    };
    run_on(&reader, &walk, progress).await
}

/// One tree's fingerprint: root digest, size and the newest zxids seen.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
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

/// Digests the tree `tree` reads.
pub(crate) async fn run_on(tree: &TreeReader, walk_opts: &WalkOptions, progress: &Progress) -> Result<DigestReport> {
    progress.set_phase("digesting");
    let started = Instant::now();
    progress.unless_cancelled(tree.catch_up()).await?;
    if tree.root_stat().await?.is_none() {
        return Err(Error::NoRoot { side: tree.side(), path: tree.root().to_string() });
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
                _ = progress.cancelled() => None,
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
    if progress.is_cancelled() {
        return Err(Error::Interrupted);
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
