//! A simulated Pegasus meta server for the tests: the real wire protocol on
//! a loopback TCP port (Thrift calls and the `/meta/cluster` HTTP page),
//! its state in a real ZooKeeper with the Pegasus layout, and the real
//! leader election through `LOCKNODE` ephemerals.
//!
//! What it simulates of the meta: the leader writes a partition update
//! (ballot + 1, a new primary) every `update_interval_ms` while the level
//! allows (steady, lively) and stops in blind, freezed and stopped; it keeps
//! writing duplication progress at every level, as the real one does in
//! blind (`progress_per_tick` nodes a tick, round-robin, each advanced by
//! one). A meta started from a config file can be restarted from it, read
//! again ([`SimMeta::restart_from_file`]), as a migration restarts a meta
//! onto a new ZooKeeper. The level lives in memory: a restart comes back at
//! `meta_function_level_on_start`. A meta that becomes leader and finds
//! `apps` = `lock` refuses to start; a missing partition node is recreated
//! with ballot 0 and no primary.
//!
//! Apart from ZooKeeper it keeps the replica servers' view ([`Replicas`]),
//! shared by every meta of a cluster and updated with each partition write.
//! With `[meta_server] recover_from_replica_server = true` a meta that
//! takes over refuses to start when apps exist, and otherwise loads
//! nothing and waits for RPC_CM_START_RECOVERY ([`recovery`]) to rebuild
//! them from that view.
//!
//! - [`wire`]: the request header, a Thrift binary codec, the reply frame;
//! - [`rpc`]: the handlers and the HTTP page;
//! - [`config`]: [`MetaConfig`] and its INI keys;
//! - [`zk`]: the ZooKeeper layout, [`seed`], loading and the periodic writes;
//! - [`replicas`]: the replica servers' view;
//! - [`recovery`]: rebuilding the apps from it.

pub mod config;
pub mod recovery;
pub mod replicas;
pub mod rpc;
pub mod wire;
pub mod zk;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use zookeeper_client as zkc;

pub use config::MetaConfig;
pub use replicas::{ReplicaApp, Replicas, holders};
pub use zk::{Seed, SeedApp, app_info_json, partition_json, seed};

/// A meta function level (enum meta_function_level). Any i32 can be stored,
/// as the real meta stores whatever control_meta sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level(pub i32);

impl Level {
    pub const STOPPED: Level = Level(100);
    pub const BLIND: Level = Level(200);
    pub const FREEZED: Level = Level(300);
    pub const STEADY: Level = Level(400);
    pub const LIVELY: Level = Level(500);
    /// Query only: control_meta with it sets nothing.
    pub const INVALID: Level = Level(10000);

    const NAMES: [(Level, &'static str); 6] = [
        (Level::STOPPED, "stopped"),
        (Level::BLIND, "blind"),
        (Level::FREEZED, "freezed"),
        (Level::STEADY, "steady"),
        (Level::LIVELY, "lively"),
        (Level::INVALID, "invalid"),
    ];

    /// The bare name (`blind`), or the number for a value outside the enum.
    pub fn name(self) -> String {
        Level::NAMES.iter().find(|(l, _)| *l == self).map_or_else(|| self.0.to_string(), |(_, n)| n.to_string())
    }

    /// A bare name as `meta_function_level_on_start` takes it (`fl_` names
    /// are refused, as they make the real meta fail).
    pub fn from_name(s: &str) -> Option<Level> {
        Level::NAMES.iter().find(|(_, n)| *n == s).map(|(l, _)| *l)
    }
}

/// Why the simulator could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{0}")]
    Config(String),
    #[error("cannot connect to ZooKeeper at {hosts}: {reason}")]
    Connect { hosts: String, reason: String },
    #[error("{op} {path} failed: {source}")]
    Zk { op: &'static str, path: String, source: zkc::Error },
    #[error("{path} holds \"lock\" (a meta stopped mid-update): the meta refuses to start")]
    AppsLocked { path: String },
    #[error(
        "{path} holds {count} apps while [meta_server] recover_from_replica_server = true: the meta refuses to start \
         (a recovery rebuilds the apps on a ZooKeeper without any; set the flag to false to load them)"
    )]
    AppsExist { path: String, count: usize },
    #[error("{path}: {reason}")]
    BadNode { path: String, reason: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A duplication progress node: (app id, duplication id, partition index).
pub type ProgressKey = (i32, i32, u32);

pub(crate) struct Shared {
    cfg: MetaConfig,
    addr: SocketAddr,
    /// The replica servers' view, shared with the cluster's other metas.
    replicas: Replicas,
    leader: AtomicBool,
    /// Leading with the recovery flag, waiting for RPC_CM_START_RECOVERY.
    recovering: AtomicBool,
    level: AtomicI32,
    leader_addr: Mutex<Option<String>>,
    apps: Mutex<Vec<zk::App>>,
    /// Why the last takeover failed, if it did.
    failure: Mutex<Option<String>>,
    /// Partition nodes found missing and recreated at the takeover.
    recreated: Mutex<Vec<(i32, u32)>>,
    /// Duplication progress as loaded at the takeover.
    loaded_progress: Mutex<BTreeMap<ProgressKey, i64>>,
    /// The last value written to each progress node written.
    written_progress: Mutex<BTreeMap<ProgressKey, i64>>,
    /// Held by the updater while it writes (`lock` ... `unlock`): a clean
    /// stop takes it first, so it never leaves `apps` locked.
    writing: tokio::sync::Mutex<()>,
}

impl Shared {
    fn with_view<T>(&self, f: impl FnOnce(&rpc::View<'_>) -> T) -> T {
        let apps = self.apps.lock().expect("apps lock");
        let view = rpc::View {
            cfg: &self.cfg,
            is_leader: self.leader.load(Ordering::SeqCst),
            recovering: self.recovering.load(Ordering::SeqCst),
            leader: self.leader_addr.lock().expect("leader lock").clone(),
            level: self.level.load(Ordering::SeqCst),
            apps: &apps,
        };
        f(&view)
    }
}

/// One simulated meta server, served by tokio tasks in this process.
/// Dropping it aborts its tasks and leaves its session to expire, as
/// [`SimMeta::kill`] does, without waiting.
pub struct SimMeta {
    cfg: MetaConfig,
    shared: Arc<Shared>,
    client: Option<zkc::Client>,
    /// Its `LOCKNODE<seq>` path.
    lock_node: String,
    /// The config file it was started from, if it was.
    source: Option<PathBuf>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimMeta {
    /// Starts a meta from a config file, remembered for
    /// [`SimMeta::restart_from_file`].
    pub async fn start_file(path: &Path) -> Result<SimMeta, SimError> {
        let mut m = SimMeta::start(MetaConfig::from_file(path)?).await?;
        m.source = Some(path.to_path_buf());
        Ok(m)
    }

    /// [`SimMeta::start_file`] with the replica servers' view given.
    pub async fn start_file_with(path: &Path, replicas: Replicas) -> Result<SimMeta, SimError> {
        let mut m = SimMeta::start_with(MetaConfig::from_file(path)?, replicas).await?;
        m.source = Some(path.to_path_buf());
        Ok(m)
    }

    /// Binds 127.0.0.1 (the configured port or an ephemeral one), joins the
    /// leader election and, if it leads, loads the cluster; fails when the
    /// leader finds `apps` = `lock`, or apps with the recovery flag set.
    /// Returns once it knows whether it leads. Its replica servers' view is
    /// its config's `replica_state` file, or its own in memory.
    pub async fn start(cfg: MetaConfig) -> Result<SimMeta, SimError> {
        let replicas = Replicas::for_config(&cfg)?;
        SimMeta::start_with(cfg, replicas).await
    }

    /// [`SimMeta::start`] sharing `replicas` (e.g. [`SimCluster::replicas`]):
    /// the view a recovery rebuilds from and the leader's partition writes
    /// update.
    pub async fn start_with(mut cfg: MetaConfig, replicas: Replicas) -> Result<SimMeta, SimError> {
        let listener = TcpListener::bind(("127.0.0.1", cfg.port)).await?;
        let addr = listener.local_addr()?;
        cfg.port = addr.port();
        let client = zk::connect(&cfg.zookeeper_hosts, cfg.zookeeper_timeout_ms).await?;
        let shared = Arc::new(Shared {
            level: AtomicI32::new(cfg.level_on_start.0),
            cfg: cfg.clone(),
            addr,
            replicas,
            leader: AtomicBool::new(false),
            recovering: AtomicBool::new(false),
            leader_addr: Mutex::new(None),
            apps: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            recreated: Mutex::new(Vec::new()),
            loaded_progress: Mutex::new(BTreeMap::new()),
            written_progress: Mutex::new(BTreeMap::new()),
            writing: tokio::sync::Mutex::new(()),
        });
        let dir = zk::join(&cfg.lock_path, zk::LEADER_DIR);
        let me = match join_election(&client, &dir, &addr).await {
            Ok(me) => me,
            Err(e) => {
                zk::close(&cfg.zookeeper_hosts, client).await;
                return Err(e);
            }
        };
        // The first round runs here so a refusal to lead fails the start.
        if let Err(e) = election_round(&client, &shared, &dir, &me).await {
            let _ = client.delete(&me, None).await;
            zk::close(&cfg.zookeeper_hosts, client).await;
            return Err(e);
        }
        let tasks = vec![
            // The connection tasks hold the session too (a recovery writes
            // through it), so aborting them lets a killed meta's session expire.
            tokio::spawn(accept_loop(listener, shared.clone(), client.clone())),
            tokio::spawn(election_loop(client.clone(), shared.clone(), dir, me.clone())),
            tokio::spawn(update_loop(client.clone(), shared.clone())),
            tokio::spawn(session_watch(client.state_watcher(), shared.clone())),
        ];
        Ok(SimMeta { cfg, shared, client: Some(client), lock_node: me, tasks, source: None })
    }

    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Its config, with the port it bound.
    pub fn config(&self) -> &MetaConfig {
        &self.cfg
    }

    pub fn is_leader(&self) -> bool {
        self.shared.leader.load(Ordering::SeqCst)
    }

    /// Leading with `recover_from_replica_server = true` and no app loaded:
    /// waiting for RPC_CM_START_RECOVERY.
    pub fn is_recovering(&self) -> bool {
        self.shared.recovering.load(Ordering::SeqCst)
    }

    /// The replica servers' view it shares.
    pub fn replicas(&self) -> &Replicas {
        &self.shared.replicas
    }

    /// The stored level (cluster_info may report freezed instead).
    pub fn level(&self) -> Level {
        Level(self.shared.level.load(Ordering::SeqCst))
    }

    /// Why taking over leadership failed (e.g. `apps` = `lock`), if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.lock().expect("failure lock").clone()
    }

    /// The config file it was started from, if it was.
    pub fn config_file(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The partition nodes it found missing and recreated (ballot 0, no
    /// primary) when it took over, as (app id, partition index); empty
    /// while it has not led.
    pub fn recreated_partitions(&self) -> Vec<(i32, u32)> {
        self.shared.recreated.lock().expect("recreated lock").clone()
    }

    /// The duplication progress (confirmed decrees) as it loaded them when
    /// it took over, by (app id, duplication id, partition index).
    pub fn loaded_progress(&self) -> BTreeMap<ProgressKey, i64> {
        self.shared.loaded_progress.lock().expect("progress lock").clone()
    }

    /// The last value it wrote to each progress node it has written.
    pub fn written_progress(&self) -> BTreeMap<ProgressKey, i64> {
        self.shared.written_progress.lock().expect("progress lock").clone()
    }

    fn halt(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.shared.leader.store(false, Ordering::SeqCst);
    }

    /// Aborts every task and waits until they are gone (the listener closed).
    async fn halt_and_wait(&mut self) {
        self.halt();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }

    /// A clean stop: lets an update in flight finish (so `apps` is left
    /// `unlock`), stops serving and closes its ZooKeeper session, so its
    /// lock node goes at once and a follower takes over.
    pub async fn stop(&mut self) {
        let shared = self.shared.clone();
        let guard = shared.writing.lock().await;
        self.halt_and_wait().await;
        drop(guard);
        if let Some(c) = self.client.take() {
            // Closing the session removes the node too, but only once the
            // server has processed the close; removing it first makes the
            // hand-over start before this returns.
            let _ = c.delete(&self.lock_node, None).await;
            zk::close(&self.cfg.zookeeper_hosts, c).await;
        }
    }

    /// A crash: stops answering at once (even mid-update, which can leave
    /// `apps` = `lock`, as a crashed meta does) and drops its session
    /// without closing it; the lock node stays until the session timeout.
    pub async fn kill(&mut self) {
        self.halt_and_wait().await;
        self.client.take();
    }

    /// A clean stop, then a start on the same port with the same config:
    /// the level is back at `meta_function_level_on_start`.
    pub async fn restart(&mut self) -> Result<(), SimError> {
        self.stop().await;
        let cfg = self.cfg.clone();
        self.start_again(cfg).await
    }

    /// A clean stop, then a start from the config file it was started from,
    /// read again (so a rewritten `[zookeeper] hosts_list` takes effect), on
    /// the file's port, or the same port when the file names none. Fails
    /// when it was not started from a file; a file that cannot be read
    /// leaves it stopped.
    pub async fn restart_from_file(&mut self) -> Result<(), SimError> {
        let path = self
            .source
            .clone()
            .ok_or_else(|| SimError::Config("this meta was not started from a config file".to_string()))?;
        self.stop().await;
        let mut cfg = MetaConfig::from_file(&path)?;
        if cfg.port == 0 {
            cfg.port = self.cfg.port;
        }
        self.start_again(cfg).await?;
        self.source = Some(path);
        Ok(())
    }

    async fn start_again(&mut self, cfg: MetaConfig) -> Result<(), SimError> {
        // The same view, unless the config now names a file of its own.
        let replicas = match &cfg.replica_state {
            Some(p) if self.shared.replicas.path() != Some(p.as_path()) => Replicas::file(p)?,
            _ => self.shared.replicas.clone(),
        };
        // The port was just released; a moment for the kernel to agree.
        let mut last = None;
        for _ in 0..50 {
            match SimMeta::start_with(cfg.clone(), replicas.clone()).await {
                Ok(m) => {
                    let source = self.source.take();
                    *self = m;
                    self.source = source;
                    return Ok(());
                }
                Err(SimError::Io(e)) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(SimError::Io(last.expect("an attempt was made")))
    }
}

impl Drop for SimMeta {
    fn drop(&mut self) {
        self.halt();
    }
}

async fn join_election(c: &zkc::Client, dir: &str, addr: &SocketAddr) -> Result<String, SimError> {
    zk::mkdirs(c, dir).await?;
    let path = zk::join(dir, "LOCKNODE");
    let opts = zkc::CreateMode::EphemeralSequential.with_acls(zkc::Acls::anyone_all());
    let (_, seq) = c.create(&path, addr.to_string().as_bytes(), &opts).await.map_err(|source| SimError::Zk {
        op: "create",
        path: path.clone(),
        source,
    })?;
    Ok(format!("{path}{seq}"))
}

/// Looks at the lock nodes once: records the leader, and when it is this
/// meta and it was not leading yet, loads the cluster and starts leading.
/// Returns the lowest node when another meta leads.
async fn election_round(c: &zkc::Client, s: &Shared, dir: &str, me: &str) -> Result<Option<String>, SimError> {
    let mut kids =
        c.list_children(dir).await.map_err(|source| SimError::Zk { op: "list", path: dir.to_string(), source })?;
    kids.retain(|k| k.starts_with("LOCKNODE"));
    kids.sort_by_key(|k| k[k.len().saturating_sub(10)..].to_string());
    let Some(first) = kids.first() else { return Ok(None) };
    let first = zk::join(dir, first);
    if first == me {
        if !s.leader.load(Ordering::SeqCst) && s.cfg.recover_from_replica_server {
            zk::check_recoverable(c, &s.cfg).await?;
            s.apps.lock().expect("apps lock").clear();
            s.recovering.store(true, Ordering::SeqCst);
            *s.leader_addr.lock().expect("leader lock") = Some(s.addr.to_string());
            s.leader.store(true, Ordering::SeqCst);
        } else if !s.leader.load(Ordering::SeqCst) {
            let loaded = zk::load(c, &s.cfg).await?;
            s.replicas.adopt_if_empty(&loaded.apps)?;
            let mut progress = BTreeMap::new();
            for a in &loaded.apps {
                for d in &a.dups {
                    for (i, x) in d.progress.iter().enumerate() {
                        progress.insert((a.id, d.id, i as u32), *x);
                    }
                }
            }
            *s.recreated.lock().expect("recreated lock") = loaded.recreated;
            *s.loaded_progress.lock().expect("progress lock") = progress;
            s.written_progress.lock().expect("progress lock").clear();
            *s.apps.lock().expect("apps lock") = loaded.apps;
            *s.leader_addr.lock().expect("leader lock") = Some(s.addr.to_string());
            s.leader.store(true, Ordering::SeqCst);
        }
        return Ok(None);
    }
    let data = c.get_data(&first).await.map(|(d, _)| String::from_utf8_lossy(&d).to_string()).ok();
    *s.leader_addr.lock().expect("leader lock") = data;
    Ok(Some(first))
}

/// Followers watch the leading lock node and take over when it goes.
async fn election_loop(c: zkc::Client, s: Arc<Shared>, dir: String, me: String) {
    while !c.state().is_terminated() {
        match election_round(&c, &s, &dir, &me).await {
            Ok(Some(first)) => match c.check_and_watch_stat(&first).await {
                Ok((Some(_), w)) => {
                    w.changed().await;
                }
                Ok((None, _)) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            },
            Ok(None) if s.leader.load(Ordering::SeqCst) => return,
            Ok(None) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => {
                // A refused takeover (`apps` = `lock`): report, retry later.
                *s.failure.lock().expect("failure lock") = Some(e.to_string());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// A meta whose session ends (expired, closed, refused) can no longer hold
/// the lock: it stops leading and answers as a follower (the real one exits).
async fn session_watch(mut w: zkc::StateWatcher, s: Arc<Shared>) {
    loop {
        let state = w.changed().await;
        if state.is_terminated() {
            s.leader.store(false, Ordering::SeqCst);
            *s.leader_addr.lock().expect("leader lock") = None;
            *s.failure.lock().expect("failure lock") = Some(format!("ZooKeeper session ended: {state:?}"));
            return;
        }
    }
}

/// The leader's periodic writes: one partition update per tick while the
/// level allows it; duplication progress at every level, at most
/// `progress_per_tick` nodes per tick, round-robin.
async fn update_loop(c: zkc::Client, s: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(s.cfg.update_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut turn, mut progress_turn) = (0usize, 0usize);
    loop {
        tick.tick().await;
        if !s.leader.load(Ordering::SeqCst) {
            continue;
        }
        let (level, alive) = s.with_view(|v| {
            let alive: Vec<String> =
                s.cfg.replica_nodes.iter().filter(|n| !s.cfg.unalive_nodes.contains(n)).cloned().collect();
            (v.effective_level(), alive)
        });
        let mut writes = Vec::new();
        let mut progress = Vec::new();
        {
            let mut apps = s.apps.lock().expect("apps lock");
            let total: usize = apps.iter().map(|a| a.partitions.len()).sum();
            if level >= Level::STEADY.0 && total > 0 {
                let mut k = turn % total;
                turn += 1;
                for a in apps.iter_mut() {
                    if k < a.partitions.len() {
                        let p = &mut a.partitions[k];
                        let ballot = p["ballot"].as_i64().unwrap_or(0) + 1;
                        let (primary, secs) = zk::placement(&alive, ballot as usize);
                        *p = zk::partition_json(a.id, k as u32, ballot, primary.as_deref(), &secs);
                        writes.push((a.id, k, p.clone()));
                        break;
                    }
                    k -= a.partitions.len();
                }
            }
            // Duplication progress at every level, bounded per tick:
            // the next `progress_per_tick` of every (app, dup, partition).
            let total: usize = apps.iter().flat_map(|a| a.dups.iter()).map(|d| d.progress.len()).sum();
            let count = s.cfg.progress_per_tick.min(total);
            for j in 0..count {
                let mut k = (progress_turn + j) % total;
                'find: for a in apps.iter_mut() {
                    for d in a.dups.iter_mut() {
                        if k < d.progress.len() {
                            d.progress[k] += 1;
                            progress.push((a.id, d.id, k, d.progress[k]));
                            break 'find;
                        }
                        k -= d.progress.len();
                    }
                }
            }
            if total > 0 {
                progress_turn = (progress_turn + count) % total;
            }
        }
        let _guard = s.writing.lock().await;
        let changed = !writes.is_empty();
        for (app, pidx, v) in writes {
            // The replicas follow what the meta has written.
            if zk::write_partition(&c, &s.cfg, app, pidx, &v).await.is_ok() {
                s.replicas.update_partition(app, pidx, &v);
            }
        }
        if changed {
            let _ = s.replicas.save();
        }
        let (c, cfg) = (&c, &s.cfg);
        let done = futures::future::join_all(progress.into_iter().map(|(app, dup, pidx, x)| async move {
            zk::write_progress(c, cfg, app, dup, pidx, x).await.ok().map(|()| ((app, dup, pidx as u32), x))
        }))
        .await;
        s.written_progress.lock().expect("progress lock").extend(done.into_iter().flatten());
    }
}

async fn accept_loop(listener: TcpListener, s: Arc<Shared>, c: zkc::Client) {
    // Connection tasks live in this set: aborting this task ends them all.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((sock, _)) => { conns.spawn(serve(sock, s.clone(), c.clone())); }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One connection: HTTP (one request, then close) or THFT requests until
/// the peer closes or sends something malformed (then it is dropped).
async fn serve(mut sock: TcpStream, s: Arc<Shared>, c: zkc::Client) {
    let mut first = [0u8; 4];
    if sock.read_exact(&mut first).await.is_err() {
        return;
    }
    if &first != b"THFT" {
        let _ = serve_http(sock, first, &s).await;
        return;
    }
    let mut header = [0u8; wire::HEADER_LEN];
    header[..4].copy_from_slice(&first);
    loop {
        if sock.read_exact(&mut header[4..]).await.is_err() {
            return;
        }
        let Some(h) = wire::parse_header(&header) else { return };
        let mut body = vec![0u8; h.body_length as usize];
        if sock.read_exact(&mut body).await.is_err() {
            return;
        }
        let Ok(call) = wire::parse_call(&body) else { return };
        let (frame, set) = if call.name == recovery::RPC_CM_START_RECOVERY && rpc::serves(&call.name, &s.cfg) {
            (recovery::answer(&call, &s, &c).await, None)
        } else {
            s.with_view(|v| rpc::handle(&call, v))
        };
        if let Some(level) = set {
            s.level.store(level, Ordering::SeqCst);
        }
        if sock.write_all(&frame).await.is_err() {
            return;
        }
        let mut magic = [0u8; 4];
        if sock.read_exact(&mut magic).await.is_err() || &magic != b"THFT" {
            return;
        }
    }
}

async fn serve_http(mut sock: TcpStream, first: [u8; 4], s: &Shared) -> std::io::Result<()> {
    let mut buf = first.to_vec();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut chunk)).await.unwrap_or(Ok(0))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next().unwrap_or("");
    let answer = s.with_view(|v| rpc::http(line, v));
    sock.write_all(answer.as_bytes()).await?;
    // As the real meta: the connection stays open after the answer (it
    // serves RPCs too), until the client closes it or a minute passes.
    let _ = tokio::time::timeout(Duration::from_secs(60), sock.read(&mut chunk)).await;
    Ok(())
}

/// What [`SimCluster::start`] sets up.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub zookeeper_hosts: String,
    pub cluster_root: String,
    pub lock_path: String,
    pub metas: usize,
    /// Written under the root first, when given.
    pub seed: Option<Seed>,
    /// Applied to every meta's config (its port and server_list are set).
    pub template: MetaConfig,
}

impl ClusterSpec {
    /// `metas` metas over a seeded root, with the lock under `<root>/lock`,
    /// a 4 s session timeout and 200 ms updates.
    pub fn new(zookeeper_hosts: &str, cluster_root: &str, metas: usize, seed: Seed) -> ClusterSpec {
        let lock_path = zk::join(cluster_root, "lock");
        let mut template = MetaConfig::new(zookeeper_hosts, cluster_root, &lock_path);
        template.zookeeper_timeout_ms = 4000;
        template.update_interval_ms = 200;
        template.replica_nodes = seed.replica_nodes.clone();
        ClusterSpec {
            zookeeper_hosts: zookeeper_hosts.to_string(),
            cluster_root: cluster_root.to_string(),
            lock_path,
            metas,
            seed: Some(seed),
            template,
        }
    }
}

/// Several metas over one seeded cluster root, each with its config.ini in
/// a temporary directory (removed on drop). The first meta leads.
pub struct SimCluster {
    pub metas: Vec<SimMeta>,
    /// `configs[i]` is the config.ini `metas[i]` was started from.
    pub configs: Vec<PathBuf>,
    /// The replica servers' view every meta shares: seeded with the tree,
    /// then updated by the leader. Give it to a meta started on another
    /// ZooKeeper with the recovery flag ([`SimMeta::start_with`]).
    pub replicas: Replicas,
    _dir: tempfile::TempDir,
}

impl SimCluster {
    pub async fn start(spec: ClusterSpec) -> Result<SimCluster, SimError> {
        if let Some(seed) = &spec.seed {
            zk::seed(&spec.zookeeper_hosts, &spec.cluster_root, seed).await?;
        }
        let replicas = match (&spec.template.replica_state, &spec.seed) {
            (Some(p), Some(seed)) => Replicas::write_seed(p, seed)?,
            (Some(p), None) => Replicas::file(p)?,
            (None, Some(seed)) => Replicas::from_seed(seed),
            (None, None) => Replicas::new(),
        };
        let mut ports = Vec::new();
        for _ in 0..spec.metas {
            ports.push(crate::local::free_port().map_err(|e| SimError::Config(e.to_string()))?);
        }
        let servers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let dir = tempfile::tempdir()?;
        let (mut metas, mut configs) = (Vec::new(), Vec::new());
        for (i, port) in ports.iter().enumerate() {
            let mut cfg = spec.template.clone();
            cfg.zookeeper_hosts = spec.zookeeper_hosts.clone();
            cfg.cluster_root = spec.cluster_root.clone();
            cfg.lock_path = spec.lock_path.clone();
            cfg.meta_servers = servers.clone();
            cfg.port = *port;
            let path = dir.path().join(format!("meta{}.ini", i + 1));
            std::fs::write(&path, cfg.to_ini())?;
            metas.push(SimMeta::start_file_with(&path, replicas.clone()).await?);
            configs.push(path);
        }
        Ok(SimCluster { metas, configs, replicas, _dir: dir })
    }

    /// The index of the leading meta, if one leads.
    pub fn leader(&self) -> Option<usize> {
        self.metas.iter().position(SimMeta::is_leader)
    }
}
