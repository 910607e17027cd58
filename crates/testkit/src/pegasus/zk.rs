//! The simulated meta's ZooKeeper side: the Pegasus layout (apps, partition
//! and duplication nodes with the real JSON field names), the seeding
//! helper, loading at leader start and the periodic writes.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use zookeeper_client as zk;

use super::SimError;
use super::config::MetaConfig;
use super::replicas::ReplicaApp;

pub(crate) const LOCK: &[u8] = b"lock";
pub(crate) const UNLOCK: &[u8] = b"unlock";
/// The child of the lock path holding the `LOCKNODE<seq>` ephemerals.
pub(crate) const LEADER_DIR: &str = "dsn.meta.server.leader";

fn zerr<'a>(op: &'static str, path: &'a str) -> impl FnOnce(zk::Error) -> SimError + 'a {
    move |source| SimError::Zk { op, path: path.to_string(), source }
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

pub(crate) fn join(root: &str, rel: &str) -> String {
    format!("{}/{rel}", root.trim_end_matches('/'))
}

/// A session for one meta. Detached: dropping it leaves the session to
/// expire (a crash); [`close`] ends it at once (a clean stop).
pub(crate) async fn connect(hosts: &str, timeout_ms: u64) -> Result<zk::Client, SimError> {
    let fut = zk::Client::connector()
        .with_session_timeout(Duration::from_millis(timeout_ms))
        .with_connection_timeout(Duration::from_secs(5))
        .with_detached()
        .connect(hosts);
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(SimError::Connect { hosts: hosts.to_string(), reason: e.to_string() }),
        Err(_) => Err(SimError::Connect { hosts: hosts.to_string(), reason: "timed out".to_string() }),
    }
}

/// Closes a detached session: reattaches to it with a session that closes
/// when dropped, then drops that.
pub(crate) async fn close(hosts: &str, client: zk::Client) {
    let session = client.into_session();
    let fut =
        zk::Client::connector().with_session(session).with_connection_timeout(Duration::from_secs(5)).connect(hosts);
    if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(10), fut).await {
        // A last round trip, then the drop queues CloseSession.
        let _ = tokio::time::timeout(Duration::from_secs(5), c.sync("/")).await;
        drop(c);
    }
}

pub(crate) async fn mkdirs(c: &zk::Client, path: &str) -> Result<(), SimError> {
    if path == "/" {
        return Ok(());
    }
    c.mkdir(path, &persistent()).await.map_err(zerr("mkdir", path))
}

async fn put(c: &zk::Client, path: &str, data: &[u8]) -> Result<(), SimError> {
    match c.set_data(path, data, None).await {
        Ok(_) => Ok(()),
        Err(zk::Error::NoNode) => match c.create(path, data, &persistent()).await {
            Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
            Err(e) => Err(zerr("create", path)(e)),
        },
        Err(e) => Err(zerr("set", path)(e)),
    }
}

/// An app as the leader holds it.
#[derive(Clone, Debug)]
pub(crate) struct App {
    pub id: i32,
    pub info: Value,
    pub partitions: Vec<Value>,
    pub dups: Vec<Dup>,
}

impl App {
    pub fn name(&self) -> &str {
        self.info["app_name"].as_str().unwrap_or("")
    }
}

/// A duplication and its confirmed decree per partition.
#[derive(Clone, Debug)]
pub(crate) struct Dup {
    pub id: i32,
    pub info: Value,
    pub progress: Vec<i64>,
}

/// app_info JSON as the meta writes it to `apps/<app_id>`.
pub fn app_info_json(app_id: i32, name: &str, partitions: u32, duplicating: bool) -> Value {
    json!({
        "status": "app_status::AS_AVAILABLE", "app_type": "pegasus", "app_name": name, "app_id": app_id,
        "partition_count": partitions, "envs": {}, "is_stateful": true, "max_replica_count": 3,
        "expire_second": 0, "create_second": 1_700_000_000, "drop_second": 0, "duplicating": duplicating,
        "init_partition_count": partitions, "is_bulk_loading": false, "atomic_idempotent": false
    })
}

/// partition_configuration JSON; `primary` None is the default the meta
/// writes for a partition node it finds missing.
pub fn partition_json(app_id: i32, pidx: u32, ballot: i64, primary: Option<&str>, secondaries: &[String]) -> Value {
    json!({
        "pid": format!("{app_id}.{pidx}"), "ballot": ballot, "max_replica_count": 3,
        "primary": primary.unwrap_or("invalid address"), "secondaries": secondaries, "last_drops": [],
        "last_committed_decree": 0, "partition_flags": 0,
        "hp_primary": primary.unwrap_or("invalid host_port"), "hp_secondaries": secondaries, "hp_last_drops": []
    })
}

fn dup_json(remote: &str) -> Value {
    json!({
        "remote": remote, "status": "DS_LOG", "create_timestamp_ms": 1_700_000_000_000u64,
        "fail_mode": "FAIL_SLOW", "remote_app_name": "", "remote_replica_count": 3
    })
}

/// What [`seed`] writes: apps (name, partition count, duplication ids).
#[derive(Clone, Debug)]
pub struct Seed {
    pub apps: Vec<SeedApp>,
    /// Replica nodes the partitions are placed on (`ip:port`).
    pub replica_nodes: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct SeedApp {
    pub name: String,
    pub partitions: u32,
    /// Duplication ids; each gets a JSON node and a progress node per partition.
    pub duplications: Vec<i32>,
}

impl Seed {
    /// `apps` apps named `table_<n>` with `partitions` partitions each, the
    /// first with one duplication, on three local replica nodes.
    pub fn simple(apps: usize, partitions: u32) -> Seed {
        Seed {
            apps: (1..=apps)
                .map(|i| SeedApp {
                    name: format!("table_{i}"),
                    partitions,
                    duplications: if i == 1 { vec![1_700_000_001] } else { Vec::new() },
                })
                .collect(),
            replica_nodes: (1..=3).map(|i| format!("127.0.0.1:3480{i}")).collect(),
        }
    }
}

/// Writes a Pegasus-shaped cluster under `root`: `apps` = `unlock`, app ids
/// from 1, app_info and partition_configuration JSON, duplication JSON and
/// progress (decimal strings). Existing nodes are overwritten.
pub async fn seed(hosts: &str, root: &str, spec: &Seed) -> Result<(), SimError> {
    let c = connect(hosts, 30_000).await?;
    let r = seed_with(&c, root, spec).await;
    close(hosts, c).await;
    r
}

/// The apps and partitions [`seed`] writes for `spec`, as JSON: app ids
/// from 1, partitions at ballot 3 placed round-robin on the replica nodes.
pub(crate) fn seed_apps(spec: &Seed) -> Vec<ReplicaApp> {
    let nodes = &spec.replica_nodes;
    (spec.apps.iter().enumerate())
        .map(|(i, a)| {
            let id = i as i32 + 1;
            let partitions = (0..a.partitions)
                .map(|p| {
                    let (primary, secs) = placement(nodes, p as usize);
                    partition_json(id, p, 3, primary.as_deref(), &secs)
                })
                .collect();
            ReplicaApp { id, info: app_info_json(id, &a.name, a.partitions, !a.duplications.is_empty()), partitions }
        })
        .collect()
}

async fn seed_with(c: &zk::Client, root: &str, spec: &Seed) -> Result<(), SimError> {
    mkdirs(c, root).await?;
    let apps = join(root, "apps");
    put(c, &apps, UNLOCK).await?;
    for (a, ra) in spec.apps.iter().zip(seed_apps(spec)) {
        let app = join(&apps, &ra.id.to_string());
        put_app(c, &app, &ra.info, &ra.partitions).await?;
        if !a.duplications.is_empty() {
            let dir = join(&app, "duplication");
            put(c, &dir, b"").await?;
            for d in &a.duplications {
                let dp = join(&dir, &d.to_string());
                put(c, &dp, dup_json("remote_cluster").to_string().as_bytes()).await?;
                put_many(c, (0..a.partitions).map(|p| (join(&dp, &p.to_string()), b"100".to_vec()))).await?;
            }
        }
    }
    Ok(())
}

/// An app node and its partition nodes, the partitions pipelined.
async fn put_app(c: &zk::Client, app: &str, info: &Value, partitions: &[Value]) -> Result<(), SimError> {
    put(c, app, info.to_string().as_bytes()).await?;
    let parts: Vec<(String, Vec<u8>)> =
        partitions.iter().enumerate().map(|(p, v)| (join(app, &p.to_string()), v.to_string().into_bytes())).collect();
    put_many(c, parts.into_iter()).await
}

/// [`put`]s pipelined.
async fn put_many(c: &zk::Client, nodes: impl Iterator<Item = (String, Vec<u8>)>) -> Result<(), SimError> {
    futures::stream::iter(nodes.map(|(p, d)| async move { put(c, &p, &d).await }))
        .buffered(PIPELINE)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

/// Primary and secondaries for a turn `k` over `nodes`.
pub(crate) fn placement(nodes: &[String], k: usize) -> (Option<String>, Vec<String>) {
    if nodes.is_empty() {
        return (None, Vec::new());
    }
    let n = nodes.len();
    let secs = (1..n.min(3)).map(|j| nodes[(k + j) % n].clone()).collect();
    (Some(nodes[k % n].clone()), secs)
}

async fn data(c: &zk::Client, path: &str) -> Result<Option<Vec<u8>>, SimError> {
    match c.get_data(path).await {
        Ok((d, _)) => Ok(Some(d)),
        Err(zk::Error::NoNode) => Ok(None),
        Err(e) => Err(zerr("get", path)(e)),
    }
}

async fn children(c: &zk::Client, path: &str) -> Result<Vec<String>, SimError> {
    match c.list_children(path).await {
        Ok(v) => Ok(v),
        Err(zk::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(zerr("list", path)(e)),
    }
}

fn parse_json(path: &str, d: &[u8]) -> Result<Value, SimError> {
    serde_json::from_slice(d).map_err(|e| SimError::BadNode { path: path.to_string(), reason: e.to_string() })
}

/// What a leader found when it took over.
pub(crate) struct Loaded {
    pub apps: Vec<App>,
    /// Partition nodes it found missing and recreated (app id, index).
    pub recreated: Vec<(i32, u32)>,
}

/// What a meta does when it becomes leader: refuse `apps` = `lock`; create
/// the default apps when `apps` is missing or empty (and some are
/// configured); load every app, recreating missing partition nodes with
/// default JSON (ballot 0, no primary); load duplications and progress.
/// Partition and progress nodes are read pipelined, so a big cluster loads
/// in seconds.
pub(crate) async fn load(c: &zk::Client, cfg: &MetaConfig) -> Result<Loaded, SimError> {
    let apps_path = join(&cfg.cluster_root, "apps");
    let state = data(c, &apps_path).await?;
    if state.as_deref() == Some(LOCK) {
        return Err(SimError::AppsLocked { path: apps_path });
    }
    if let Some(s) = &state
        && !(s.is_empty() || s == UNLOCK)
    {
        return Err(SimError::BadNode {
            path: apps_path,
            reason: format!("invalid state {:?}", String::from_utf8_lossy(s)),
        });
    }
    let mut ids = children(c, &apps_path).await?;
    if ids.is_empty() && !cfg.default_apps.is_empty() {
        mkdirs(c, &cfg.cluster_root).await?;
        put(c, &apps_path, LOCK).await?;
        for (i, (name, n)) in cfg.default_apps.iter().enumerate() {
            let id = i as i32 + 1;
            let app = join(&apps_path, &id.to_string());
            put(c, &app, app_info_json(id, name, *n, false).to_string().as_bytes()).await?;
            for p in 0..*n {
                put(c, &join(&app, &p.to_string()), partition_json(id, p, 0, None, &[]).to_string().as_bytes()).await?;
            }
        }
        put(c, &apps_path, UNLOCK).await?;
        ids = children(c, &apps_path).await?;
    } else if state.is_none() {
        mkdirs(c, &cfg.cluster_root).await?;
        put(c, &apps_path, UNLOCK).await?;
    }
    let mut apps = Vec::new();
    let mut recreated = Vec::new();
    for id_s in ids {
        let Ok(id) = id_s.parse::<i32>() else { continue };
        let app_path = join(&apps_path, &id_s);
        let Some(d) = data(c, &app_path).await? else { continue };
        let info = parse_json(&app_path, &d)?;
        let n = info["partition_count"].as_u64().unwrap_or(0) as u32;
        let found = read_many(c, (0..n).map(|p| join(&app_path, &p.to_string()))).await?;
        let mut partitions = Vec::with_capacity(n as usize);
        let mut missing = Vec::new();
        for (p, d) in found.into_iter().enumerate() {
            match d {
                Some(d) => partitions.push(parse_json(&join(&app_path, &p.to_string()), &d)?),
                None => {
                    let v = partition_json(id, p as u32, 0, None, &[]);
                    missing.push((join(&app_path, &p.to_string()), v.to_string()));
                    recreated.push((id, p as u32));
                    partitions.push(v);
                }
            }
        }
        futures::stream::iter(missing.into_iter().map(|(pp, v)| async move {
            match c.create(&pp, v.as_bytes(), &persistent()).await {
                Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
                Err(e) => Err(zerr("create", &pp)(e)),
            }
        }))
        .buffered(PIPELINE)
        .try_collect::<Vec<()>>()
        .await?;
        let mut dups = Vec::new();
        let dir = join(&app_path, "duplication");
        for d_s in children(c, &dir).await? {
            let Ok(did) = d_s.parse::<i32>() else { continue };
            let dp = join(&dir, &d_s);
            let Some(d) = data(c, &dp).await? else { continue };
            let info = parse_json(&dp, &d)?;
            let found = read_many(c, (0..n).map(|p| join(&dp, &p.to_string()))).await?;
            let progress = found
                .into_iter()
                .map(|v| v.and_then(|v| String::from_utf8_lossy(&v).trim().parse().ok()).unwrap_or(0))
                .collect();
            dups.push(Dup { id: did, info, progress });
        }
        apps.push(App { id, info, partitions, dups });
    }
    Ok(Loaded { apps, recreated })
}

/// What a meta with `[meta_server] recover_from_replica_server = true` checks
/// when it takes over: no app under `apps` (the real meta aborts when it
/// finds some), and `apps` not `lock`. It loads and creates nothing.
pub(crate) async fn check_recoverable(c: &zk::Client, cfg: &MetaConfig) -> Result<(), SimError> {
    let apps_path = join(&cfg.cluster_root, "apps");
    let ids = children(c, &apps_path).await?;
    if !ids.is_empty() {
        return Err(SimError::AppsExist { path: apps_path, count: ids.len() });
    }
    if data(c, &apps_path).await?.as_deref() == Some(LOCK) {
        return Err(SimError::AppsLocked { path: apps_path });
    }
    Ok(())
}

/// Writes the apps a recovery rebuilt: `apps` = `lock` while the app and
/// partition nodes are written (so a meta stopped halfway leaves it locked,
/// as a real one would), then `unlock`.
pub(crate) async fn write_recovered(c: &zk::Client, cfg: &MetaConfig, apps: &[App]) -> Result<(), SimError> {
    mkdirs(c, &cfg.cluster_root).await?;
    let apps_path = join(&cfg.cluster_root, "apps");
    put(c, &apps_path, LOCK).await?;
    for a in apps {
        put_app(c, &join(&apps_path, &a.id.to_string()), &a.info, &a.partitions).await?;
    }
    put(c, &apps_path, UNLOCK).await
}

/// Reads in flight at once while loading: the session pipelines them.
const PIPELINE: usize = 256;

/// The data of `paths` (None for a missing node), in order, read pipelined.
async fn read_many(c: &zk::Client, paths: impl Iterator<Item = String>) -> Result<Vec<Option<Vec<u8>>>, SimError> {
    futures::stream::iter(paths.map(|p| async move { data(c, &p).await })).buffered(PIPELINE).try_collect().await
}

/// One partition update: `apps` set to `lock` around it when configured.
pub(crate) async fn write_partition(
    c: &zk::Client,
    cfg: &MetaConfig,
    app_id: i32,
    pidx: usize,
    v: &Value,
) -> Result<(), SimError> {
    let apps = join(&cfg.cluster_root, "apps");
    if cfg.lock_apps_while_updating {
        c.set_data(&apps, LOCK, None).await.map_err(zerr("set", &apps))?;
    }
    let p = join(&apps, &format!("{app_id}/{pidx}"));
    let r = c.set_data(&p, v.to_string().as_bytes(), None).await.map_err(zerr("set", &p));
    if cfg.lock_apps_while_updating {
        c.set_data(&apps, UNLOCK, None).await.map_err(zerr("set", &apps))?;
    }
    r.map(|_| ())
}

/// One duplication progress value (a decimal string).
pub(crate) async fn write_progress(
    c: &zk::Client,
    cfg: &MetaConfig,
    app_id: i32,
    dup_id: i32,
    pidx: usize,
    decree: i64,
) -> Result<(), SimError> {
    let p = join(&cfg.cluster_root, &format!("apps/{app_id}/duplication/{dup_id}/{pidx}"));
    put(c, &p, decree.to_string().as_bytes()).await
}
