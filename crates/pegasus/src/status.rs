//! A cluster's status as a migration needs it: how each meta answered, the
//! level stored and the level reported, the replica servers, the apps and
//! what is running on them (duplication, bulk load, backup, split), and
//! what the cluster's ZooKeeper holds.

use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;

use crate::client::{MetaAnswer, MetaClient, check};
use crate::error::Result;
use crate::level::Level;
use crate::messages as m;

/// Apps queried at once.
const APPS_AT_ONCE: usize = 8;

pub use crate::query::Query;

/// The replica servers, by status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nodes {
    pub alive: Vec<String>,
    pub unalive: Vec<String>,
}

/// One app and what runs on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppStatus {
    pub app_name: String,
    pub app_id: i32,
    pub status: &'static str,
    pub app_type: String,
    pub partition_count: i32,
    pub max_replica_count: i32,
    pub envs: std::collections::BTreeMap<String, String>,
    pub duplication: Query<Vec<Duplication>>,
    pub bulk_load: Query<BulkLoad>,
    pub backup: Query<Vec<m::BackupItem>>,
    pub split: Query<Split>,
}

/// A duplication and its status name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duplication {
    pub dupid: i32,
    pub status: &'static str,
    pub remote: String,
}

impl Duplication {
    /// Running (init, prepare, app or log; not paused or removed).
    pub fn in_progress(&self) -> bool {
        matches!(self.status, "init" | "prepare" | "app" | "log")
    }
}

/// An app's bulk load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkLoad {
    pub in_progress: bool,
    /// The last bulk load's status (`invalid` when there was none).
    pub status: &'static str,
}

/// An app's partition split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Split {
    pub in_progress: bool,
    pub new_partition_count: Option<i32>,
}

impl AppStatus {
    /// Whether anything a migration must pause runs, or could not be told.
    pub fn activity(&self) -> Vec<(&'static str, Option<bool>)> {
        vec![
            ("duplication", self.duplication.known().map(|d| d.iter().any(Duplication::in_progress))),
            ("bulk load", self.bulk_load.known().map(|b| b.in_progress)),
            ("backup", self.backup.known().map(|b| b.iter().any(m::BackupItem::in_progress))),
            ("split", self.split.known().map(|s| s.in_progress)),
        ]
    }
}

/// The whole status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    pub metas: Vec<MetaAnswer>,
    pub leader: String,
    /// Every key cluster_info returned.
    pub cluster_info: std::collections::BTreeMap<String, String>,
    pub cluster_name: Option<String>,
    pub primary_meta_server: Option<String>,
    /// The level the leader holds (control_meta with `invalid`).
    pub stored_level: Query<Level>,
    /// The level cluster_info reports: `freezed` when too few replica
    /// servers are alive, whatever is stored.
    pub reported_level: Option<String>,
    pub zookeeper_hosts: Option<String>,
    pub zookeeper_root: Option<String>,
    pub nodes: Query<Nodes>,
    pub apps: Query<Vec<AppStatus>>,
    /// Read from the cluster's ZooKeeper; `None` when not asked or when
    /// cluster_info names no hosts.
    pub zookeeper: Option<crate::zk::ZkState>,
}

impl ClusterStatus {
    /// The stored and the reported level differ (reported freezed: too few
    /// replica servers alive).
    pub fn levels_differ(&self) -> bool {
        match (self.stored_level.known(), &self.reported_level) {
            (Some(s), Some(r)) => s.name() != r,
            _ => false,
        }
    }
}

/// What [`cluster_status`] reads besides the metas.
#[derive(Debug, Clone, Default)]
pub struct StatusOptions {
    /// Read the cluster's ZooKeeper (hosts and root from cluster_info).
    pub zookeeper: bool,
    /// The leader-lock path; `<zookeeper_root>/lock` when `None`.
    pub lock_path: Option<String>,
    /// The timeout for ZooKeeper; the client's when `None`.
    pub zookeeper_timeout: Option<Duration>,
    /// How to reach it: credentials, TLS, SASL.
    pub zookeeper_access: zkrepl::zk::secure::Access,
}

/// Finds the leader and reads the status from it. Fails only when no meta
/// answers as the leader; a part that cannot be read is `Unknown`.
pub async fn cluster_status(client: &MetaClient, opts: &StatusOptions) -> Result<ClusterStatus> {
    let leader = client.find_leader().await?;
    let meta = leader.meta.clone();
    let info = &leader.info;
    let get = |k: &str| info.get(k).map(str::to_string);

    let stored_level = Query::from_result(client.query_level(&meta).await);
    let nodes = Query::from_result(client.list_nodes(&meta).await.map(|infos| {
        let mut n = Nodes { alive: Vec::new(), unalive: Vec::new() };
        for i in infos {
            if i.status == m::NS_ALIVE { n.alive.push(i.address()) } else { n.unalive.push(i.address()) }
        }
        n
    }));
    let apps = match client.list_apps(&meta).await {
        Ok(infos) => Query::Known(app_statuses(client, &meta, infos).await),
        Err(e) => Query::from_result(Err(e)),
    };
    let (hosts, root) = (get("zookeeper_hosts"), get("zookeeper_root"));
    let zookeeper = match (&hosts, &root, opts.zookeeper) {
        (Some(h), Some(r), true) if !h.is_empty() => {
            let lock = opts.lock_path.clone().unwrap_or_else(|| crate::zk::default_lock_path(r));
            let timeout = opts.zookeeper_timeout.unwrap_or(client.timeout());
            Some(crate::zk::read_state(h, &opts.zookeeper_access, r, &lock, timeout).await)
        }
        _ => None,
    };
    Ok(ClusterStatus {
        metas: leader.answers.clone(),
        leader: meta,
        cluster_info: info.entries.iter().cloned().collect(),
        cluster_name: get("cluster_name"),
        primary_meta_server: get("primary_meta_server"),
        stored_level,
        reported_level: get("meta_function_level"),
        zookeeper_hosts: hosts,
        zookeeper_root: root,
        nodes,
        apps,
        zookeeper,
    })
}

async fn app_statuses(client: &MetaClient, meta: &str, infos: Vec<m::AppInfo>) -> Vec<AppStatus> {
    // One list for every app when the meta serves it, else one query per app.
    let listed = client
        .call(meta, m::RPC_CM_LIST_DUPLICATION, m::list_duplication_request, m::read_list_duplication)
        .await
        .and_then(|r| match r.err.as_str() {
            // Duplication is off on this meta: none can run.
            "ERR_SERVICE_NOT_ACTIVE" => Ok(Default::default()),
            _ => check(meta, m::RPC_CM_LIST_DUPLICATION, &r.err).map(|()| r.apps),
        });
    let listed = match listed {
        Err(e) if e.is_handler_not_found() => None,
        other => Some(other),
    };
    futures::stream::iter(infos)
        .map(|info| app_status(client, meta, info, listed.as_ref()))
        .buffered(APPS_AT_ONCE)
        .collect()
        .await
}

fn unavailable<T>(status: i32) -> Query<T> {
    Query::Unknown(format!("app is {}", m::app_status_name(status)))
}

type Listed = Result<std::collections::BTreeMap<String, Vec<m::DuplicationEntry>>>;

async fn app_status(client: &MetaClient, meta: &str, a: m::AppInfo, listed: Option<&Listed>) -> AppStatus {
    let available = a.status == m::AS_AVAILABLE;
    let dups = |entries: &[m::DuplicationEntry]| {
        entries
            .iter()
            .map(|e| Duplication {
                dupid: e.dupid,
                status: m::duplication_status_name(e.status),
                remote: e.remote.clone(),
            })
            .collect::<Vec<_>>()
    };
    let duplication = match listed {
        Some(Ok(apps)) => Query::Known(apps.get(&a.app_name).map(|e| dups(e)).unwrap_or_default()),
        Some(Err(e)) => Query::Unknown(e.to_string()),
        None if !available => unavailable(a.status),
        None => Query::from_result(
            client
                .call(
                    meta,
                    m::RPC_CM_QUERY_DUPLICATION,
                    m::query_duplication_request(&a.app_name),
                    m::read_query_duplication,
                )
                .await
                .and_then(|r| match r.err.as_str() {
                    // Duplication is off on this meta: none can run.
                    "ERR_SERVICE_NOT_ACTIVE" => Ok(Vec::new()),
                    _ => check(meta, m::RPC_CM_QUERY_DUPLICATION, &r.err).map(|()| dups(&r.entries)),
                }),
        ),
    };
    let (bulk_load, backup, split) = if !available {
        (unavailable(a.status), unavailable(a.status), unavailable(a.status))
    } else {
        let bulk = client
            .call(
                meta,
                m::RPC_CM_QUERY_BULK_LOAD_STATUS,
                m::query_bulk_load_request(&a.app_name),
                m::read_query_bulk_load,
            )
            .await
            .and_then(|r| {
                check(meta, m::RPC_CM_QUERY_BULK_LOAD_STATUS, &r.err)?;
                // 1 downloading, 2 downloaded, 3 ingesting, 6 pausing, 7 paused
                let running = matches!(r.app_status, 1 | 2 | 3 | 6 | 7);
                Ok(BulkLoad {
                    in_progress: r.is_bulk_loading.or(a.is_bulk_loading).unwrap_or(running),
                    status: m::bulk_load_status_name(r.app_status),
                })
            });
        let backup = client
            .call(
                meta,
                m::RPC_CM_QUERY_BACKUP_STATUS,
                m::query_backup_status_request(a.app_id),
                m::read_query_backup_status,
            )
            .await
            .and_then(|r| match r.err.as_str() {
                // "Backup not found": the app has none; or cold backup is
                // off on this meta (its default): nothing can run.
                "ERR_INVALID_PARAMETERS" | "ERR_SERVICE_NOT_ACTIVE" => Ok(Vec::new()),
                _ => check(meta, m::RPC_CM_QUERY_BACKUP_STATUS, &r.err).map(|()| r.items),
            });
        let split = client
            .call(meta, m::RPC_CM_QUERY_PARTITION_SPLIT, m::query_split_request(&a.app_name), m::read_query_split)
            .await
            .and_then(|r| match r.err.as_str() {
                // "app is not splitting"
                "ERR_INVALID_STATE" => Ok(Split { in_progress: false, new_partition_count: None }),
                _ => check(meta, m::RPC_CM_QUERY_PARTITION_SPLIT, &r.err)
                    .map(|()| Split { in_progress: true, new_partition_count: Some(r.new_partition_count) }),
            });
        (Query::from_result(bulk), Query::from_result(backup), Query::from_result(split))
    };
    AppStatus {
        status: m::app_status_name(a.status),
        app_name: a.app_name,
        app_id: a.app_id,
        app_type: a.app_type,
        partition_count: a.partition_count,
        max_replica_count: a.max_replica_count,
        envs: a.envs,
        duplication,
        bulk_load,
        backup,
        split,
    }
}
