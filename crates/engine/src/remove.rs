//! Remove: deletes a tree, children before parents, in multi() batches
//! sized like a copy's. Used to clean an old ensemble up once a migration
//! has moved off it; the caller checks that nothing uses the tree any more.
//!
//! It walks the whole tree first and deletes nothing when the walk found a
//! node it could not read or list, or an ephemeral node (a live session
//! still holds it: something still uses the tree). Deletes of nodes already
//! gone count as done, so a removal that was interrupted converges when run
//! again.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::error::{Error, Result, Side};
use crate::progress::Progress;
use crate::read::TreeReader;
use crate::read::walk::{self, Batch, WalkOptions};
use crate::tree::{ReadSettings, Timeouts, Tree};
use crate::write::{Op, Writer, WriterOptions};
use crate::zk::path;
use crate::zk::session::Session;

/// A removal: the tree, how to reach and read it, and what to delete. The
/// one value a driver hands to [`run`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RemoveRequest {
    pub tree: Tree,
    pub timeouts: Timeouts,
    pub read: ReadSettings,
    pub writer: WriterOptions,
    /// Delete the root node too (never `/` itself, nor `/zookeeper`).
    pub include_root: bool,
    /// Walk and count, delete nothing.
    pub dry_run: bool,
    /// Refuse, before deleting anything, a removal of more nodes than this.
    pub max_delete: Option<u64>,
    /// A missing root is nothing to remove (a removal finished earlier),
    /// not an error.
    pub missing_ok: bool,
}

impl RemoveRequest {
    /// A removal of `tree`, its root included.
    pub fn new(tree: Tree) -> RemoveRequest {
        RemoveRequest {
            tree,
            timeouts: Timeouts::default(),
            read: ReadSettings::default(),
            writer: WriterOptions::default(),
            include_root: true,
            dry_run: false,
            max_delete: None,
            missing_ok: false,
        }
    }
}

/// What a removal did (or, dry, would do).
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct RemoveReport {
    pub root: String,
    pub dry_run: bool,
    /// Nodes found by the walk (the root included when it is to go).
    pub nodes: u64,
    pub deleted: u64,
    pub transactions: u64,
    pub seconds: f64,
}

/// Why a removal refused to start.
fn refuse(why: String) -> Error {
    Error::Usage(why)
}

/// Removes `req.tree`: walks it, refuses if any node is ephemeral or could
/// not be read, then deletes children before parents.
pub async fn run(req: &RemoveRequest, progress: &Arc<Progress>) -> Result<RemoveReport> {
    let started = Instant::now();
    progress.set_phase("connecting");
    let absolute = req.tree.absolute_root();
    if absolute == "/" && req.include_root {
        return Err(refuse("the server's root / cannot be removed; remove the paths beneath it".to_string()));
    }
    let connecting =
        TreeReader::connect(Side::Source, &req.tree, &req.timeouts, &req.read, false, req.read.sessions.min(4));
    let reader = progress.unless_cancelled(connecting).await?;
    progress.unless_cancelled(reader.catch_up()).await?;
    if reader.root_stat().await?.is_none() {
        if req.missing_ok {
            let root = reader.root().to_string();
            let seconds = started.elapsed().as_secs_f64();
            return Ok(RemoveReport { root, dry_run: req.dry_run, nodes: 0, deleted: 0, transactions: 0, seconds });
        }
        return Err(Error::NoRoot { side: Side::Source, path: reader.root().to_string() });
    }
    progress.set_phase("listing");
    let paths = list(&reader, progress).await?;
    let root = reader.root().to_string();
    let mut doomed: Vec<String> = paths
        .into_iter()
        .filter(|rel| req.include_root || !rel.is_empty())
        .map(|rel| if rel.is_empty() { root.clone() } else { path::join(&root, &rel) })
        .collect();
    // Children first: deeper paths before shallower ones; among equals, any
    // order (siblings do not depend on each other).
    doomed.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    let nodes = doomed.len() as u64;
    if let Some(limit) = req.max_delete
        && nodes > limit
    {
        return Err(Error::DeleteLimit { deletes: nodes, limit, others_applied: false });
    }
    if req.dry_run {
        return Ok(RemoveReport {
            root,
            dry_run: true,
            nodes,
            deleted: 0,
            transactions: 0,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    progress.set_phase("deleting");
    let session = progress
        .unless_cancelled(Session::connect(Arc::new(req.tree.connect_options(Side::Source, &req.timeouts))))
        .await?;
    let mut writer = Writer::new(Arc::new(session), req.writer).with_progress(progress.clone());
    for p in doomed {
        if progress.is_cancelled() {
            writer.land().await?;
            return Err(Error::Interrupted);
        }
        writer.push(Op::Delete { path: p }).await?;
    }
    writer.flush().await?;
    let c = writer.counters();
    Ok(RemoveReport {
        root,
        dry_run: false,
        nodes,
        deleted: c.deleted,
        transactions: c.transactions,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Every path under the reader's root (relative; `""` is the root), or a
/// refusal naming the first node that stops the removal.
async fn list(reader: &TreeReader, progress: &Progress) -> Result<Vec<String>> {
    let root = reader.root().to_string();
    let shown = |rel: &str| if rel.is_empty() { root.clone() } else { path::join(&root, rel) };
    let opts = WalkOptions {
        batch: 1000,
        window: 8,
        include_ephemeral: true,
        skip_system: [reader.absolute_root() == "/", false],
        ..WalkOptions::default()
    };
    let (tx, mut rx) = mpsc::channel::<Batch>(8);
    let collecting = async {
        let mut paths = Vec::new();
        let mut stop: Option<Error> = None;
        while let Some(b) = tokio::select! { b = rx.recv() => b, _ = progress.cancelled() => None } {
            progress.add_read(b.entries.len() as u64);
            if let Some(f) = b.list_failures.first()
                && stop.is_none()
            {
                stop = Some(refuse(format!("cannot list the children of {}: {}", shown(&f.rel), f.error)));
            }
            for e in b.entries {
                match &e.src {
                    crate::node::Slot::Node(n) if n.is_ephemeral() => {
                        stop.get_or_insert_with(|| {
                            refuse(format!(
                                "{} is an ephemeral node of a live session (0x{:x}): something still uses this tree",
                                shown(&e.rel),
                                n.stat.ephemeral_owner
                            ))
                        });
                    }
                    crate::node::Slot::Node(_) => paths.push(e.rel),
                    crate::node::Slot::Failed(err) => {
                        stop.get_or_insert_with(|| refuse(format!("cannot read {}: {err}", shown(&e.rel))));
                    }
                    _ => {}
                }
            }
        }
        (paths, stop)
    };
    let (walked, (paths, stop)) = tokio::join!(walk::walk(Some(reader), None, walk::SRC, &opts, tx), collecting);
    if progress.is_cancelled() {
        return Err(Error::Interrupted);
    }
    walked?;
    match stop {
        Some(e) => Err(e),
        None => Ok(paths),
    }
}
