//! The RPC handlers and the `/meta/cluster` HTTP page. A follower answers
//! every call with ERR_FORWARD_TO_OTHERS and default (empty) fields, as the
//! real meta does when it cannot forward.

use std::net::Ipv4Addr;

use super::Level;
use super::config::MetaConfig;
use super::wire::{self, Call, T_BOOL, T_I32, T_I64, T_LIST, T_MAP, T_STRING, T_STRUCT, Writer};
use super::zk::App;

/// What a handler sees of the meta.
pub(crate) struct View<'a> {
    pub cfg: &'a MetaConfig,
    pub is_leader: bool,
    /// Leading, and waiting for RPC_CM_START_RECOVERY: only cluster_info
    /// and list_nodes are served, the rest answer ERR_UNDER_RECOVERY.
    pub recovering: bool,
    /// The leader's `host:port`, when known.
    pub leader: Option<String>,
    /// The stored level (what control_meta returns as old_level).
    pub level: i32,
    pub apps: &'a [App],
}

const FORWARD: &str = "ERR_FORWARD_TO_OTHERS";

impl View<'_> {
    fn alive(&self) -> Vec<&String> {
        self.cfg.replica_nodes.iter().filter(|n| !self.cfg.unalive_nodes.contains(n)).collect()
    }

    fn unalive(&self) -> Vec<&String> {
        let mut v: Vec<&String> = self.cfg.unalive_nodes.iter().collect();
        v.dedup();
        v
    }

    /// The level cluster_info reports: freezed when too few replica nodes are
    /// alive, whatever is stored above freezed.
    pub fn effective_level(&self) -> i32 {
        let alive = self.alive().len();
        let total = alive + self.unalive().len();
        let freeze = alive < self.cfg.min_live_node_count_for_unfreeze
            || alive * 100 < self.cfg.node_live_percentage_threshold_for_update * total;
        if self.level > Level::FREEZED.0 && freeze { Level::FREEZED.0 } else { self.level }
    }

    fn app(&self, name: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.name() == name)
    }

    /// cluster_info's keys and values, in the real order.
    pub fn cluster_info(&self) -> Vec<(&'static str, String)> {
        vec![
            ("meta_servers", self.cfg.meta_servers.join(",")),
            ("primary_meta_server", self.leader.clone().unwrap_or_default()),
            ("zookeeper_hosts", self.cfg.zookeeper_hosts.clone()),
            ("zookeeper_root", self.cfg.cluster_root.clone()),
            ("meta_function_level", Level(self.effective_level()).name()),
            // The balancer's counters as JSON, pretty-printed with 2 spaces.
            (
                "balance_operation_count",
                "{\n  \"copy_pri\": 0,\n  \"copy_sec\": 0,\n  \"move_pri\": 0,\n  \"total\": 0\n}".to_string(),
            ),
            ("primary_replica_count_stddev", "0.00".to_string()),
            ("total_replica_count_stddev", "0.00".to_string()),
            ("cluster_name", self.cfg.cluster_name.clone()),
        ]
    }
}

/// The RPC codes this simulator serves.
pub const RPCS: &[&str] = &[
    "RPC_CM_CLUSTER_INFO",
    "RPC_CM_CONTROL_META",
    "RPC_CM_LIST_NODES",
    "RPC_CM_LIST_APPS",
    "RPC_CM_QUERY_DUPLICATION",
    "RPC_CM_LIST_DUPLICATION",
    "RPC_CM_QUERY_BULK_LOAD_STATUS",
    "RPC_CM_QUERY_BACKUP_STATUS",
    "RPC_CM_QUERY_PARTITION_SPLIT",
    "RPC_CM_START_RECOVERY",
];

/// Served by this simulator and not disabled in `cfg`.
pub(crate) fn serves(name: &str, cfg: &MetaConfig) -> bool {
    RPCS.contains(&name) && !cfg.disabled_rpcs.iter().any(|d| d == name)
}

/// The reply frame for `call`, and a new stored level when the call set one.
/// (RPC_CM_START_RECOVERY is answered by [`super::recovery::answer`].)
pub(crate) fn handle(call: &Call, v: &View<'_>) -> (Vec<u8>, Option<i32>) {
    let name = call.name.as_str();
    if !serves(name, v.cfg) {
        return (wire::reply_frame(name, call.seqid, "ERR_HANDLER_NOT_FOUND", None), None);
    }
    // A recovering leader answers as one only what it can without apps.
    let held = v.recovering && !matches!(name, "RPC_CM_CLUSTER_INFO" | "RPC_CM_LIST_NODES");
    let lead = v.is_leader && !held;
    let err = if lead {
        "ERR_OK"
    } else if v.is_leader {
        "ERR_UNDER_RECOVERY"
    } else {
        FORWARD
    };
    let mut w = Writer::new();
    let mut set = None;
    w.error_code(1, err);
    match name {
        "RPC_CM_CLUSTER_INFO" => {
            let kv = if lead { v.cluster_info() } else { Vec::new() };
            let keys: Vec<String> = kv.iter().map(|(k, _)| k.to_string()).collect();
            let vals: Vec<String> = kv.into_iter().map(|(_, x)| x).collect();
            w.list_of_strings(2, &keys).list_of_strings(3, &vals);
        }
        "RPC_CM_CONTROL_META" => {
            w.field(T_I32, 2).i32(if lead { v.level } else { 0 });
            let req = call.i32(1).unwrap_or(Level::INVALID.0);
            if lead && req != Level::INVALID.0 {
                set = Some(req);
            }
        }
        "RPC_CM_LIST_NODES" => {
            let want = call.i32(1).unwrap_or(0);
            let mut nodes: Vec<(i32, &String)> = Vec::new();
            if lead {
                if want == 0 || want == 1 {
                    nodes.extend(v.alive().into_iter().map(|n| (1, n)));
                }
                if want == 0 || want == 2 {
                    nodes.extend(v.unalive().into_iter().map(|n| (2, n)));
                }
            }
            w.field(T_LIST, 2).list(T_STRUCT, nodes.len());
            for (status, n) in nodes {
                let (host, port) = split_host_port(n);
                let ip: Ipv4Addr = host.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
                w.field(T_I32, 1).i32(status).field(T_STRUCT, 2).i64(wire::rpc_address(ip, port));
                w.field(T_STRUCT, 3).host_port(host, port).stop();
            }
        }
        "RPC_CM_LIST_APPS" => {
            let status = call.i32(1).unwrap_or(0);
            let pattern = call.str(2).unwrap_or("");
            let apps: Vec<&App> = if lead {
                v.apps.iter().filter(|a| (status == 0 || status == 1) && a.name().contains(pattern)).collect()
            } else {
                Vec::new()
            };
            w.field(T_LIST, 2).list(T_STRUCT, apps.len());
            for a in apps {
                write_app_info(&mut w, a);
            }
        }
        "RPC_CM_QUERY_DUPLICATION" => {
            let app = call.str(1).and_then(|n| v.app(n)).filter(|_| lead);
            if lead && app.is_none() {
                w = Writer::new();
                w.error_code(1, "ERR_APP_NOT_EXIST");
            }
            w.field(T_I32, 3).i32(app.map_or(0, |a| a.id));
            let dups = app.map_or(&[][..], |a| &a.dups[..]);
            w.field(T_LIST, 4).list(T_STRUCT, dups.len());
            for d in dups {
                write_dup_entry(&mut w, d);
            }
        }
        "RPC_CM_LIST_DUPLICATION" => {
            let pattern = call.str(1).unwrap_or("");
            w.field(T_STRING, 2).string("");
            let apps: Vec<&App> = if lead {
                v.apps.iter().filter(|a| !a.dups.is_empty() && a.name().contains(pattern)).collect()
            } else {
                Vec::new()
            };
            w.field(T_MAP, 3).map(T_STRING, T_STRUCT, apps.len());
            for a in apps {
                w.string(a.name());
                w.field(T_I32, 1).i32(a.id);
                w.field(T_MAP, 2).map(T_I32, T_STRUCT, a.dups.len());
                for d in &a.dups {
                    w.i32(d.id);
                    write_dup_entry(&mut w, d);
                }
                w.field(T_STRING, 3).string(a.name());
                w.field(T_I32, 4).i32(a.partitions.len() as i32).stop();
            }
        }
        "RPC_CM_QUERY_BULK_LOAD_STATUS" => {
            let app_name = call.str(1).unwrap_or("");
            let app = v.app(app_name).filter(|_| lead);
            if lead && app.is_none() {
                w = Writer::new();
                w.error_code(1, "ERR_APP_NOT_EXIST");
            }
            let n = app.map_or(0, |a| a.partitions.len());
            w.field(T_STRING, 2).string(app_name).field(T_I32, 3).i32(0);
            w.field(T_LIST, 4).list(T_I32, n);
            for _ in 0..n {
                w.i32(0);
            }
            w.field(T_I32, 5).i32(3).field(T_LIST, 6).list(T_MAP, 0);
            w.field(T_BOOL, 8).bool(false);
        }
        "RPC_CM_QUERY_BACKUP_STATUS" => {
            // No backups are simulated: the real answer for an unknown backup.
            if lead {
                w = Writer::new();
                w.error_code(1, "ERR_INVALID_PARAMETERS");
                w.field(T_STRING, 2).string("Backup not found, please check app_id or backup_id.");
            } else {
                w.field(T_STRING, 2).string("");
            }
        }
        "RPC_CM_QUERY_PARTITION_SPLIT" => {
            // No splits are simulated: an existing app is not splitting.
            let app = call.str(1).and_then(|n| v.app(n)).filter(|_| lead);
            if lead {
                w = Writer::new();
                w.error_code(1, if app.is_some() { "ERR_INVALID_STATE" } else { "ERR_APP_NOT_EXIST" });
            }
            w.field(T_I32, 2).i32(app.map_or(0, |a| a.partitions.len() as i32));
            w.field(T_MAP, 3).map(T_I32, T_I32, 0);
        }
        _ => {
            // RPC_CM_START_RECOVERY, should it come here: a default response.
            w.field(T_STRING, 2).string("");
        }
    }
    w.stop();
    (wire::reply_frame(name, call.seqid, "ERR_OK", Some(&w.buf)), set)
}

fn split_host_port(n: &str) -> (&str, u16) {
    match n.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().unwrap_or(0)),
        None => (n, 0),
    }
}

fn write_app_info(w: &mut Writer, a: &App) {
    let i = &a.info;
    let int = |k: &str| i[k].as_i64().unwrap_or(0);
    let flag = |k: &str| i[k].as_bool().unwrap_or(false);
    let status = match i["status"].as_str().unwrap_or("") {
        "app_status::AS_AVAILABLE" => 1,
        "app_status::AS_CREATING" => 2,
        "app_status::AS_DROPPING" => 4,
        "app_status::AS_DROPPED" => 6,
        "app_status::AS_RECALLING" => 7,
        _ => 0,
    };
    w.field(T_I32, 1).i32(status);
    w.field(T_STRING, 2).string(i["app_type"].as_str().unwrap_or(""));
    w.field(T_STRING, 3).string(a.name());
    w.field(T_I32, 4).i32(a.id);
    w.field(T_I32, 5).i32(int("partition_count") as i32);
    let envs: Vec<(&String, &serde_json::Value)> =
        i["envs"].as_object().map(|m| m.iter().collect()).unwrap_or_default();
    w.field(T_MAP, 6).map(T_STRING, T_STRING, envs.len());
    for (k, x) in envs {
        w.string(k).string(x.as_str().unwrap_or(""));
    }
    w.field(T_BOOL, 7).bool(flag("is_stateful"));
    w.field(T_I32, 8).i32(int("max_replica_count") as i32);
    w.field(T_I64, 9).i64(int("expire_second"));
    w.field(T_I64, 10).i64(int("create_second"));
    w.field(T_I64, 11).i64(int("drop_second"));
    w.field(T_BOOL, 12).bool(flag("duplicating"));
    w.field(T_I32, 13).i32(int("init_partition_count") as i32);
    w.field(T_BOOL, 14).bool(flag("is_bulk_loading"));
    w.field(T_BOOL, 15).bool(flag("atomic_idempotent"));
    w.stop();
}

fn write_dup_entry(w: &mut Writer, d: &super::zk::Dup) {
    let status = match d.info["status"].as_str().unwrap_or("") {
        "DS_PREPARE" => 1,
        "DS_APP" => 2,
        "DS_LOG" => 3,
        "DS_PAUSE" => 4,
        "DS_REMOVED" => 5,
        _ => 0,
    };
    w.field(T_I32, 1).i32(d.id).field(T_I32, 2).i32(status);
    w.field(T_STRING, 3).string(d.info["remote"].as_str().unwrap_or(""));
    w.field(T_I64, 4).i64(d.info["create_timestamp_ms"].as_i64().unwrap_or(0));
    w.field(T_MAP, 5).map(T_I32, T_I64, d.progress.len());
    for (p, x) in d.progress.iter().enumerate() {
        w.i32(p as i32).i64(*x);
    }
    w.stop();
}

/// The HTTP answer to one request line: `/meta/cluster` from the leader, a
/// 307 to the leader from a follower, 404 for other paths.
pub(crate) fn http(request_line: &str, v: &View<'_>) -> String {
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, headers, body) = if path != "/meta/cluster" {
        ("404 Not Found", String::new(), "not found\n".to_string())
    } else if !v.is_leader {
        match &v.leader {
            Some(l) => ("307 Temporary Redirect", format!("Location: http://{l}/meta/cluster\r\n"), String::new()),
            None => ("503 Service Unavailable", String::new(), "no leader\n".to_string()),
        }
    } else {
        let mut m = serde_json::Map::new();
        for (k, x) in v.cluster_info().into_iter().filter(|(k, _)| *k != "cluster_name") {
            m.insert(k.to_string(), serde_json::Value::String(x));
        }
        ("200 OK", "Content-Type: application/json\r\n".to_string(), serde_json::Value::Object(m).to_string() + "\n")
    };
    format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n{body}", body.len())
}
