//! The reader: reads batches of nodes of one tree in as few round trips as
//! the server allows.
//!
//! With ACLs (the default), a batch costs one getACL per node, spread over a
//! pool of sessions (getACL has no batched form), whose Stat tells each
//! node's data length and child count; then multiRead requests fetch the data
//! and children of exactly the nodes that have them, packed by the reply size
//! they will produce. Without ACLs, a multiRead of getData comes first. On a
//! server without multiRead (< 3.6), the same requests go out pipelined, one
//! by one.

pub(crate) mod memo;
pub(crate) mod walk;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use futures::future::join_all;
use zookeeper_client as zk;

use crate::error::{Error, Result, Side, is_session_lost, is_transient};
use crate::node::{NodeInfo, Slot};
use crate::zk::path;
use crate::zk::session::{SessionPool, sync_client};

pub use self::memo::{AclMemo, AclSources};

/// Nodes in the first getData chunk of a read whose sizes are unknown: the
/// chunk that tells how large this read's nodes are, before any of them is
/// asked for in bulk.
const BLIND_FIRST_OPS: usize = 16;

/// Whether to use multiRead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultiRead {
    /// Use it when the server supports it (probed at open).
    Auto,
    /// Pipelined single requests only.
    Off,
}

#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Read each node's ACL (one getACL per node).
    pub acl: bool,
    pub multi_read: MultiRead,
    /// Most operations in one multiRead.
    pub max_ops: usize,
    /// Most reply bytes one multiRead is expected to produce.
    pub max_reply_bytes: usize,
    /// Most bytes of one multiRead request (paths add up: keep well under
    /// the server's jute.maxbuffer).
    pub max_request_bytes: usize,
    /// Most data bytes one read returns; the nodes beyond come back
    /// deferred (this bounds memory by bytes, not only by node count).
    pub max_read_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            acl: true,
            multi_read: MultiRead::Auto,
            max_ops: 1000,
            max_reply_bytes: 2 << 20,
            max_request_bytes: 512 << 10,
            max_read_bytes: 4 << 20,
        }
    }
}

/// Reads one tree: a session pool, a root inside it, and options.
pub struct TreeReader {
    pool: SessionPool,
    root: String,
    opts: ReadOptions,
    multi_read: AtomicBool,
    /// Largest data length seen so far: sizes getData chunks when lengths
    /// are not known in advance (no ACL pass).
    largest_seen: AtomicUsize,
    /// Large nodes seen without ACL reads: learn sizes first from now on.
    sized: AtomicBool,
    rotate: AtomicUsize,
    unconfirmed: AtomicU64,
    /// ACLs read before, reused while a node's stat proves them current.
    memo: Option<Arc<AclMemo>>,
    /// The memo was filled from a snapshot file.
    from_snapshot: bool,
}

enum ReadOp {
    Data(usize),
    Children(usize),
}

/// The children of one node, or why there are none to show.
#[derive(Debug)]
pub enum Listing {
    Names(Vec<String>),
    Vanished,
    Failed(zk::Error),
}

enum Answer {
    Data(Vec<u8>, zk::Stat),
    Children(Vec<String>),
    Failed(zk::Error),
}

impl TreeReader {
    /// Opens a reader; probes multiRead support unless it is turned off.
    pub async fn open(pool: SessionPool, root: &str, opts: ReadOptions) -> Result<TreeReader> {
        path::validate(root)?;
        let reader = TreeReader {
            pool,
            root: root.to_string(),
            multi_read: AtomicBool::new(opts.multi_read == MultiRead::Auto),
            opts,
            largest_seen: AtomicUsize::new(0),
            sized: AtomicBool::new(false),
            rotate: AtomicUsize::new(0),
            unconfirmed: AtomicU64::new(0),
            memo: None,
            from_snapshot: false,
        };
        if reader.multi_read.load(Ordering::Relaxed) {
            reader.probe_multi_read().await?;
        }
        Ok(reader)
    }

    /// Opens `sessions` sessions on `tree` (pinned to one member) and a
    /// reader of its root.
    pub async fn connect(
        side: Side,
        tree: &crate::tree::Tree,
        timeouts: &crate::tree::Timeouts,
        settings: &crate::tree::ReadSettings,
        acl: bool,
        sessions: usize,
    ) -> Result<TreeReader> {
        // The snapshot is read (and checked whole) before any session opens.
        let memo = match (&tree.snapshot, acl) {
            (Some(file), true) => {
                let (file, abs_root, chroot) = (file.clone(), tree.absolute_root(), tree.hosts.chroot.clone());
                let memo = tokio::task::spawn_blocking(move || {
                    let mut m = AclMemo::new(memo::DEFAULT_LIMIT);
                    m.load_snapshot(&file, &abs_root, &chroot).map(|()| m)
                })
                .await
                .map_err(|e| crate::Error::Snapshot(format!("reading the snapshot: {e}")))??;
                Some(Arc::new(memo))
            }
            _ => None,
        };
        let pool = SessionPool::connect(tree.connect_options(side, timeouts), sessions).await?;
        let opts = ReadOptions {
            acl,
            multi_read: if settings.multi_read { MultiRead::Auto } else { MultiRead::Off },
            ..ReadOptions::default()
        };
        let mut reader = TreeReader::open(pool, &tree.root, opts).await?;
        if let Some(memo) = memo {
            reader.check_snapshot(&memo).await?;
            reader.memo = Some(memo);
            reader.from_snapshot = true;
        }
        Ok(reader)
    }

    /// Before any pass: nodes whose ACL was set since their creation, read
    /// live. Where the live stat is the snapshot's (same creation, same ACL
    /// version), the ACL must be too; one that is not means the snapshot is
    /// of another history of this tree (an ensemble restored from a backup,
    /// or cloned from this one and changed apart), whose ACL versions count
    /// other setACLs: refused.
    async fn check_snapshot(&self, memo: &AclMemo) -> Result<()> {
        let (mut checked, mut matched) = (0u64, 0u64);
        for s in memo.samples() {
            // The path as this reader asks for it (inside the chroot).
            let path = s.path.clone();
            let p = path.clone();
            let answer = self.pool.retry(|c| {
                let p = p.clone();
                async move { c.get_acl(&p).await }
            });
            let Ok((acl, stat)) = answer.await? else { continue };
            checked += 1;
            if (stat.czxid, stat.ctime, stat.aversion) != (s.czxid, s.ctime, s.aversion) {
                continue;
            }
            matched += 1;
            if !crate::node::acl_equal(&acl, &s.acl) {
                return Err(crate::Error::Snapshot(format!(
                    "the snapshot gives {path} another ACL than the server has, though the node's creation and ACL version are the same: the snapshot is of another history of this tree (an ensemble restored from a backup, or a clone changed apart); run without it"
                )));
            }
        }
        memo.checked(checked, matched);
        Ok(())
    }

    /// Where the ACLs read so far came from, when the tree was read with a
    /// snapshot.
    pub fn acl_sources(&self) -> Option<memo::AclSources> {
        self.memo.as_ref().filter(|_| self.from_snapshot).map(|m| m.sources())
    }

    async fn probe_multi_read(&self) -> Result<()> {
        let answer = self
            .pool
            .retry(|c| async move {
                let mut r = c.new_multi_reader();
                r.add_get_data("/")?;
                r.commit().await
            })
            .await?;
        match answer {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::info!(side = %self.side(), error = %e, "multiRead not supported; using pipelined single reads");
                self.multi_read.store(false, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    /// Remembers the ACLs it reads from now on (at most `limit` nodes):
    /// data and stats first (multiRead), then getACL only for the nodes
    /// whose stat does not match what it remembers. The memo is this
    /// reader's own: one tree, one chroot, one identity. One filled from a
    /// snapshot is kept (it remembers what it reads too).
    pub fn with_acl_memo(mut self, limit: usize) -> TreeReader {
        if self.memo.is_none() {
            self.memo = Some(Arc::new(AclMemo::new(limit)));
        }
        self
    }

    pub fn acl_memo(&self) -> Option<&Arc<AclMemo>> {
        self.memo.as_ref()
    }

    /// The root as a path on the server (chroot included).
    pub fn absolute_root(&self) -> String {
        self.pool.options().hosts.absolute(&self.root)
    }

    pub fn side(&self) -> Side {
        self.pool.side()
    }

    pub fn pool(&self) -> &SessionPool {
        &self.pool
    }

    pub fn reads_acl(&self) -> bool {
        self.opts.acl
    }

    /// Whether multiRead is in use.
    pub fn uses_multi_read(&self) -> bool {
        self.multi_read.load(Ordering::Relaxed)
    }

    /// The stat of the root, or `None` when it does not exist.
    pub async fn root_stat(&self) -> Result<Option<zk::Stat>> {
        let root = self.root.clone();
        self.pool
            .retry(|c| {
                let root = root.clone();
                async move { c.check_stat(&root).await }
            })
            .await?
            .map_err(|e| Error::zk(self.side(), "stat", &self.root, e))
    }

    /// Reads stat, data and (when enabled) ACL of the nodes at `rels`
    /// (relative to the root), children not included: see [`TreeReader::list`].
    /// Per-node problems (gone, not authorized) come back as slots; connection
    /// problems are retried with the whole batch, since reads are idempotent.
    /// A node that answers NoNode is [`Slot::Vanished`] only once the member
    /// has caught up with the leader and still lacks it (see
    /// [`TreeReader::confirm`]); otherwise it is read again.
    pub async fn read(&self, rels: &[&str]) -> Result<Vec<Slot>> {
        if rels.is_empty() {
            return Ok(Vec::new());
        }
        let what = path::join(&self.root, rels[0]);
        let mut slots = self.with_retries(&what, |clients| async move { self.read_once(&clients, rels).await }).await?;
        let gone: Vec<usize> = (0..slots.len()).filter(|&i| matches!(slots[i], Slot::Vanished)).collect();
        if !gone.is_empty() {
            let again: Vec<&str> = gone.iter().map(|&i| rels[i]).collect();
            let again = &again;
            let confirmed =
                self.confirm(&what, |c| async move { self.read_once(std::slice::from_ref(&c), again).await }).await?;
            self.count_unconfirmed(confirmed.iter().filter(|s| !matches!(s, Slot::Vanished)).count());
            for (i, slot) in gone.into_iter().zip(confirmed) {
                slots[i] = slot;
            }
        }
        Ok(slots)
    }

    /// Makes the member this tree is read from catch up with the leader:
    /// every read after this includes every change the ensemble committed
    /// before the call. Each operation (copy, verify, digest) starts with it.
    pub async fn catch_up(&self) -> Result<()> {
        self.pool.sync().await
    }

    /// Asks again, on one session and after a sync, what answered NoNode
    /// after it was listed: the synced member has every change committed
    /// before the sync, so a node that any member listed earlier and that
    /// still exists is seen, whichever member gave the NoNode. What this
    /// answers is final.
    async fn confirm<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut(zk::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, zk::Error>>,
    {
        let opts = self.pool.options();
        self.with_retries(what, |clients| {
            let c = clients[0].clone();
            // Built now, but an async block sends nothing until polled:
            // its reads go out only once the sync has returned.
            let again = attempt(c.clone());
            async move {
                sync_client(opts, &c).await?;
                again.await
            }
        })
        .await
    }

    fn count_unconfirmed(&self, n: usize) {
        if n > 0 {
            tracing::debug!(side = %self.side(), nodes = n, "NoNode answers not confirmed after a sync; read again");
            self.unconfirmed.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// NoNode answers that a synced member did not confirm (read again).
    #[cfg(feature = "internals")]
    pub fn unconfirmed_vanishes(&self) -> u64 {
        self.unconfirmed.load(Ordering::Relaxed)
    }

    async fn read_once(&self, clients: &[zk::Client], rels: &[&str]) -> Result<Vec<Slot>, zk::Error> {
        let paths: Vec<String> = rels.iter().map(|r| path::join(&self.root, r)).collect();
        let sized = self.sized.load(Ordering::Relaxed);
        let mut slots = if let (true, false, Some(memo)) = (self.opts.acl, sized, &self.memo) {
            let mut slots = self.read_blind(clients, &paths).await?;
            self.remembered_acls(memo, clients, &paths, &mut slots).await?;
            slots
        } else if self.opts.acl || sized {
            self.read_sized(clients, &paths).await?
        } else {
            self.read_blind(clients, &paths).await?
        };
        if !self.opts.acl {
            // Read only to learn sizes: not part of what was asked.
            for s in slots.iter_mut().flatten() {
                s.acl.clear();
            }
        }
        Ok(slots.into_iter().map(|slot| slot.map_or_else(|slot| slot, |node| Slot::Node(Box::new(node)))).collect())
    }

    /// Stat first (getACL, one per node, spread over the sessions), then the
    /// data of as many nodes as fit `max_read_bytes`; the others come back
    /// [`Slot::Deferred`], to be read again later.
    async fn read_sized(
        &self,
        clients: &[zk::Client],
        paths: &[String],
    ) -> Result<Vec<Result<NodeInfo, Slot>>, zk::Error> {
        let mut slots: Vec<Result<NodeInfo, Slot>> = Vec::with_capacity(paths.len());
        let base = self.rotate.fetch_add(paths.len(), Ordering::Relaxed);
        let answers =
            join_all(paths.iter().enumerate().map(|(i, p)| clients[(base + i) % clients.len()].get_acl(p))).await;
        if let Some(memo) = self.memo.as_ref().filter(|_| self.from_snapshot) {
            memo.count_read(paths.len() as u64);
        }
        let mut ops = Vec::new();
        let mut budget = 0usize;
        for (i, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok((acl, stat)) => {
                    if let Some(memo) = &self.memo {
                        memo.put(&paths[i], &stat, &acl);
                    }
                    let len = stat.data_length.max(0) as usize;
                    if !ops.is_empty() && budget + len > self.opts.max_read_bytes {
                        slots.push(Err(Slot::Deferred));
                        continue;
                    }
                    budget += len;
                    if len > 0 {
                        ops.push(ReadOp::Data(i));
                    }
                    slots.push(Ok(NodeInfo { stat, data: Vec::new(), acl }));
                }
                Err(e) => slots.push(Err(per_node_error(e)?)),
            }
        }
        if !ops.is_empty() {
            let expected = |op: &ReadOp| match op {
                ReadOp::Data(i) => slots[*i].as_ref().map_or(0, |n| n.stat.data_length as usize),
                ReadOp::Children(_) => 0,
            };
            let answers = self.fetch(clients, paths, &ops, expected).await?;
            for (op, answer) in ops.iter().zip(answers) {
                let ReadOp::Data(i) = op else { continue };
                match answer {
                    Answer::Data(data, stat) => {
                        if let Ok(node) = slots[*i].as_mut() {
                            node.data = data;
                            node.stat = stat;
                        }
                    }
                    Answer::Failed(e) => slots[*i] = Err(per_node_error(e)?),
                    Answer::Children(_) => unreachable!("getData answered with children"),
                }
            }
        }
        Ok(slots)
    }

    /// The ACLs of the nodes read in `slots`: from the memo where the
    /// node's stat matches it, by getACL (recorded) where not.
    async fn remembered_acls(
        &self,
        memo: &AclMemo,
        clients: &[zk::Client],
        paths: &[String],
        slots: &mut [Result<NodeInfo, Slot>],
    ) -> Result<(), zk::Error> {
        let mut unknown = Vec::new();
        let read: Vec<usize> = (0..slots.len()).filter(|i| slots[*i].is_ok()).collect();
        let asked: Vec<(&str, &zk::Stat)> =
            read.iter().filter_map(|&i| slots[i].as_ref().ok().map(|node| (paths[i].as_str(), &node.stat))).collect();
        let found = memo.get_many(&asked);
        for (&i, acl) in read.iter().zip(found) {
            match (acl, &mut slots[i]) {
                (Some(acl), Ok(node)) => node.acl = acl,
                _ => unknown.push(i),
            }
        }
        let base = self.rotate.fetch_add(unknown.len(), Ordering::Relaxed);
        let answers =
            join_all(unknown.iter().enumerate().map(|(k, &i)| clients[(base + k) % clients.len()].get_acl(&paths[i])))
                .await;
        for (i, answer) in unknown.into_iter().zip(answers) {
            match answer {
                Ok((acl, stat)) => {
                    memo.put(&paths[i], &stat, &acl);
                    if let Ok(node) = &mut slots[i] {
                        node.acl = acl;
                    }
                }
                Err(e) => slots[i] = Err(per_node_error(e)?),
            }
        }
        Ok(())
    }

    /// Sizes unknown (no getACL pass): getData in chunks sent one after the
    /// other, the rest deferred once `max_read_bytes` came back. The first
    /// chunk is [`BLIND_FIRST_OPS`] nodes, whatever was read before (large
    /// nodes that begin a read cost 16 of them, not a reply sized for small
    /// ones); the next ones are sized by the largest node seen so far, so
    /// large nodes after small ones in the same read can still come as one
    /// chunk. A node over 256 KiB switches this reader to
    /// [`TreeReader::read_sized`] for good.
    async fn read_blind(
        &self,
        clients: &[zk::Client],
        paths: &[String],
    ) -> Result<Vec<Result<NodeInfo, Slot>>, zk::Error> {
        let mut slots: Vec<Result<NodeInfo, Slot>> = Vec::with_capacity(paths.len());
        let mut used = 0usize;
        let mut i = 0;
        while i < paths.len() {
            if used > self.opts.max_read_bytes || self.sized.load(Ordering::Relaxed) {
                slots.extend((i..paths.len()).map(|_| Err(Slot::Deferred)));
                break;
            }
            let est = self.largest_seen.load(Ordering::Relaxed).max(8 << 10);
            let k = if i == 0 {
                BLIND_FIRST_OPS
            } else {
                (self.opts.max_reply_bytes / est).clamp(BLIND_FIRST_OPS, self.opts.max_ops.max(BLIND_FIRST_OPS))
            };
            let ops: Vec<ReadOp> = (i..(i + k).min(paths.len())).map(ReadOp::Data).collect();
            let answers = self.fetch(clients, paths, &ops, |_| est).await?;
            for answer in answers {
                match answer {
                    Answer::Data(data, stat) => {
                        used += data.len();
                        self.largest_seen.fetch_max(data.len(), Ordering::Relaxed);
                        slots.push(Ok(NodeInfo { stat, data, acl: Vec::new() }));
                    }
                    Answer::Failed(e) => slots.push(Err(per_node_error(e)?)),
                    Answer::Children(_) => unreachable!("getData answered with children"),
                }
            }
            i += ops.len();
            if self.largest_seen.load(Ordering::Relaxed) > 256 << 10 {
                self.sized.store(true, Ordering::Relaxed);
            }
        }
        Ok(slots)
    }

    /// Lists the children of the nodes at `rels`, each sorted; `expected`
    /// gives each node's child count as last seen (to pack requests). A
    /// node that answers NoNode is [`Listing::Vanished`] only once confirmed
    /// as [`TreeReader::read`] confirms it; otherwise it is listed again.
    pub async fn list(&self, rels: &[&str], expected: &[usize]) -> Result<Vec<Listing>> {
        if rels.is_empty() {
            return Ok(Vec::new());
        }
        let what = path::join(&self.root, rels[0]);
        let mut listings =
            self.with_retries(&what, |clients| async move { self.list_with(&clients, rels, expected).await }).await?;
        let gone: Vec<usize> = (0..listings.len()).filter(|&i| matches!(listings[i], Listing::Vanished)).collect();
        if !gone.is_empty() {
            let again: Vec<&str> = gone.iter().map(|&i| rels[i]).collect();
            let expected: Vec<usize> = gone.iter().map(|&i| expected.get(i).copied().unwrap_or(0)).collect();
            let (again, expected) = (&again, &expected);
            let confirmed = self
                .confirm(&what, |c| async move { self.list_with(std::slice::from_ref(&c), again, expected).await })
                .await?;
            self.count_unconfirmed(confirmed.iter().filter(|l| !matches!(l, Listing::Vanished)).count());
            for (i, listing) in gone.into_iter().zip(confirmed) {
                listings[i] = listing;
            }
        }
        Ok(listings)
    }

    /// One attempt at listing the children of the nodes at `rels` with
    /// `clients`.
    async fn list_with(
        &self,
        clients: &[zk::Client],
        rels: &[&str],
        expected: &[usize],
    ) -> Result<Vec<Listing>, zk::Error> {
        let paths: Vec<String> = rels.iter().map(|r| path::join(&self.root, r)).collect();
        let ops: Vec<ReadOp> = (0..paths.len()).map(ReadOp::Children).collect();
        let answers = self
            .fetch(clients, &paths, &ops, |op| match op {
                ReadOp::Children(i) => expected.get(*i).copied().unwrap_or(0) * 24,
                ReadOp::Data(_) => 0,
            })
            .await?;
        Ok(answers
            .into_iter()
            .map(|a| match a {
                Answer::Children(mut names) => {
                    names.sort_unstable();
                    Listing::Names(names)
                }
                Answer::Failed(zk::Error::NoNode) => Listing::Vanished,
                Answer::Failed(e) => Listing::Failed(e),
                Answer::Data(..) => unreachable!("getChildren answered with data"),
            })
            .collect())
    }

    /// The path inside this reader's chroot of a server-absolute path, if
    /// the chroot contains it.
    fn in_chroot(&self, abs: &str) -> Option<String> {
        let chroot = &self.pool.options().hosts.chroot;
        if chroot == "/" {
            return Some(abs.to_string());
        }
        match abs.strip_prefix(chroot.as_str()) {
            Some("") => Some("/".to_string()),
            Some(rest) if rest.starts_with('/') => Some(rest.to_string()),
            _ => None,
        }
    }

    /// The stat of a server-absolute path (`None` when missing or outside
    /// this reader's chroot), and its children when asked.
    pub async fn probe_abs(&self, abs: &str, children: bool) -> Result<Option<(zk::Stat, Vec<String>)>> {
        let Some(p) = self.in_chroot(abs) else { return Ok(None) };
        self.pool
            .retry(|c| {
                let p = p.clone();
                async move {
                    if children {
                        match c.get_children(&p).await {
                            Ok((names, stat)) => Ok(Some((stat, names))),
                            Err(zk::Error::NoNode) => Ok(None),
                            Err(e) => Err(e),
                        }
                    } else {
                        Ok(c.check_stat(&p).await?.map(|s| (s, Vec::new())))
                    }
                }
            })
            .await?
            .map_err(|e| Error::zk(self.side(), "stat", abs, e))
    }

    /// The stats of the nodes at `rels` (`None` where missing).
    pub async fn stats(&self, rels: &[&str]) -> Result<Vec<Option<zk::Stat>>> {
        if rels.is_empty() {
            return Ok(Vec::new());
        }
        let paths: Vec<String> = rels.iter().map(|r| path::join(&self.root, r)).collect();
        self.with_retries(&paths[0], |clients| {
            let paths = &paths;
            async move {
                let futs = paths.iter().enumerate().map(|(i, p)| clients[i % clients.len()].check_stat(p));
                join_all(futs).await.into_iter().collect::<Result<Vec<_>, _>>()
            }
        })
        .await
    }

    /// Runs `attempt` with the pool's current clients until it succeeds or
    /// fails for a reason other than the connection: reads are idempotent.
    async fn with_retries<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut(Vec<zk::Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, zk::Error>>,
    {
        loop {
            match self.pool.run(&mut attempt).await? {
                Ok(v) => return Ok(v),
                Err(zk::Error::Unimplemented) if self.uses_multi_read() => {
                    tracing::info!(side = %self.side(), "multiRead refused; using pipelined single reads");
                    self.multi_read.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(Error::zk(self.side(), "read", what, e)),
            }
        }
    }

    /// Runs read operations: packed into multiRead requests by count and by
    /// expected reply bytes, or one by one without multiRead.
    async fn fetch(
        &self,
        clients: &[zk::Client],
        paths: &[String],
        ops: &[ReadOp],
        expected: impl Fn(&ReadOp) -> usize,
    ) -> Result<Vec<Answer>, zk::Error> {
        let base = self.rotate.fetch_add(1, Ordering::Relaxed);
        if !self.uses_multi_read() {
            let futs = ops.iter().enumerate().map(|(k, op)| {
                let c = &clients[(base + k) % clients.len()];
                async move {
                    match op {
                        ReadOp::Data(i) => match c.get_data(&paths[*i]).await {
                            Ok((data, stat)) => Ok(Answer::Data(data, stat)),
                            Err(e) => connection_error(e),
                        },
                        ReadOp::Children(i) => match c.list_children(&paths[*i]).await {
                            Ok(children) => Ok(Answer::Children(children)),
                            Err(e) => connection_error(e),
                        },
                    }
                }
            });
            return join_all(futs).await.into_iter().collect();
        }
        // Pack into chunks: by count, by the reply they will produce, and by
        // their own size (long paths), which must stay under jute.maxbuffer.
        let mut chunks: Vec<(usize, usize)> = Vec::new();
        let (mut start, mut bytes, mut request) = (0, 0usize, 0usize);
        for (k, op) in ops.iter().enumerate() {
            let b = expected(op) + 64;
            let path = match op {
                ReadOp::Data(i) | ReadOp::Children(i) => &paths[*i],
            };
            // multi header (9) + path (4 + len) + watch flag (1)
            let r = 14 + path.len();
            if k > start
                && (k - start >= self.opts.max_ops
                    || bytes + b > self.opts.max_reply_bytes
                    || request + r > self.opts.max_request_bytes)
            {
                chunks.push((start, k));
                start = k;
                bytes = 0;
                request = 0;
            }
            bytes += b;
            request += r;
        }
        chunks.push((start, ops.len()));
        let futs = chunks.iter().enumerate().map(|(n, (a, b))| {
            let c = &clients[(base + n) % clients.len()];
            let mut reader = c.new_multi_reader();
            let mut added = Ok(());
            for op in &ops[*a..*b] {
                let r = match op {
                    ReadOp::Data(i) => reader.add_get_data(&paths[*i]),
                    ReadOp::Children(i) => reader.add_get_children(&paths[*i]),
                };
                if r.is_err() {
                    added = r;
                    break;
                }
            }
            let commit = added.map(|_| reader.commit());
            async move { commit?.await }
        });
        let mut out = Vec::with_capacity(ops.len());
        for ((a, b), result) in chunks.iter().zip(join_all(futs).await) {
            let first = match &ops[*a] {
                ReadOp::Data(i) | ReadOp::Children(i) => &paths[*i],
            };
            out.extend(match_reply(&ops[*a..*b], first, result?)?);
        }
        Ok(out)
    }
}

/// Matches one multiRead reply to the reads it answers: one answer per read,
/// in order, each of the kind asked (or an error). A reply that does not
/// answer every read cannot be matched to the paths asked: the batch fails
/// rather than guess.
fn match_reply(asked: &[ReadOp], first: &str, reply: Vec<zk::MultiReadResult>) -> Result<Vec<Answer>, zk::Error> {
    if reply.len() != asked.len() {
        return Err(zk::Error::UnexpectedError(format!(
            "multiRead answered {} of {} reads (the first {first})",
            reply.len(),
            asked.len()
        )));
    }
    asked
        .iter()
        .zip(reply)
        .map(|(op, r)| match (op, r) {
            (ReadOp::Data(_), zk::MultiReadResult::Data { data, stat }) => Ok(Answer::Data(data, stat)),
            (ReadOp::Children(_), zk::MultiReadResult::Children { children }) => Ok(Answer::Children(children)),
            (_, zk::MultiReadResult::Error { err }) => connection_error(err),
            (_, other) => Err(zk::Error::UnexpectedError(format!(
                "multiRead answered a read in the batch from {first} with {other:?}"
            ))),
        })
        .collect()
}

/// Connection problems fail the whole batch (to be retried); anything else
/// is the node's own answer.
fn connection_error(e: zk::Error) -> Result<Answer, zk::Error> {
    if is_transient(&e) || is_session_lost(&e) { Err(e) } else { Ok(Answer::Failed(e)) }
}

fn per_node_error(e: zk::Error) -> Result<Slot, zk::Error> {
    match e {
        zk::Error::NoNode => Ok(Slot::Vanished),
        e if is_transient(&e) || is_session_lost(&e) => Err(e),
        e => Ok(Slot::Failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> zk::MultiReadResult {
        zk::MultiReadResult::Data { data: b"x".to_vec(), stat: crate::node::test_stat(0, 0, 1, 0) }
    }

    #[test]
    fn a_reply_with_fewer_answers_fails_the_batch() {
        let asked = [ReadOp::Data(0), ReadOp::Data(1), ReadOp::Children(2)];
        let e = match_reply(&asked, "/a", vec![data(), data()]).err().expect("short reply refused");
        assert!(e.to_string().contains("answered 2 of 3"), "{e}");
        assert!(match_reply(&asked[..2], "/a", vec![data(), data(), data()]).is_err(), "a longer reply too");
    }

    #[test]
    fn answers_must_be_of_the_kind_asked() {
        let asked = [ReadOp::Children(0)];
        assert!(match_reply(&asked, "/a", vec![data()]).is_err());
        let asked = [ReadOp::Data(0), ReadOp::Children(1), ReadOp::Data(2)];
        let reply = vec![
            data(),
            zk::MultiReadResult::Children { children: vec!["c".into()] },
            zk::MultiReadResult::Error { err: zk::Error::NoNode },
        ];
        let answers = match_reply(&asked, "/a", reply).expect("matched");
        assert!(matches!(answers[0], Answer::Data(..)));
        assert!(matches!(&answers[1], Answer::Children(c) if c == &["c"]));
        assert!(matches!(answers[2], Answer::Failed(zk::Error::NoNode)));
        // A connection problem in one slot fails the batch (to be retried).
        let reply = vec![data(), zk::MultiReadResult::Error { err: zk::Error::ConnectionLoss }];
        assert!(matches!(match_reply(&asked[..2], "/a", reply), Err(zk::Error::ConnectionLoss)));
    }
}
