//! The meta server's messages this crate speaks, each with its RPC code,
//! its request encoder and its response decoder (idl/meta_admin.thrift,
//! idl/dsn.layer2.thrift, idl/duplication.thrift, idl/bulk_load.thrift,
//! idl/backup.thrift, idl/partition_split.thrift). Responses decode what a
//! status needs and skip the rest.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::level::Level;
use crate::thrift::{
    DecodeResult, HostPort, Reader, RpcAddress, Writer, read_error_code, read_host_port, read_rpc_address, ttype,
    write_host_port,
};

pub const RPC_CM_CLUSTER_INFO: &str = "RPC_CM_CLUSTER_INFO";
pub const RPC_CM_CONTROL_META: &str = "RPC_CM_CONTROL_META";
pub const RPC_CM_LIST_NODES: &str = "RPC_CM_LIST_NODES";
pub const RPC_CM_LIST_APPS: &str = "RPC_CM_LIST_APPS";
pub const RPC_CM_LIST_DUPLICATION: &str = "RPC_CM_LIST_DUPLICATION";
pub const RPC_CM_QUERY_DUPLICATION: &str = "RPC_CM_QUERY_DUPLICATION";
pub const RPC_CM_QUERY_BULK_LOAD_STATUS: &str = "RPC_CM_QUERY_BULK_LOAD_STATUS";
pub const RPC_CM_QUERY_BACKUP_STATUS: &str = "RPC_CM_QUERY_BACKUP_STATUS";
pub const RPC_CM_QUERY_PARTITION_SPLIT: &str = "RPC_CM_QUERY_PARTITION_SPLIT";
pub const RPC_CM_START_RECOVERY: &str = "RPC_CM_START_RECOVERY";

/// A handler's error in a response's `err` field (`ERR_OK` when it worked).
pub type ErrorCode = String;

/// Reads a response struct: `err` (field 1, an error_code) and the other
/// fields through `field`, which returns false for fields it does not take
/// (they are skipped).
fn read_response(
    r: &mut Reader<'_>,
    mut field: impl FnMut(&mut Reader<'_>, i16, u8) -> DecodeResult<bool>,
) -> DecodeResult<ErrorCode> {
    let mut err = None;
    while let Some(f) = r.field()? {
        if f.id == 1 && f.ttype == ttype::STRUCT {
            err = Some(read_error_code(r)?);
        } else if !field(r, f.id, f.ttype)? {
            r.skip(f.ttype)?;
        }
    }
    err.ok_or_else(|| r.invalid("response without err"))
}

/// Reads a plain struct's fields through `field`; the others are skipped.
fn read_struct(
    r: &mut Reader<'_>,
    mut field: impl FnMut(&mut Reader<'_>, i16, u8) -> DecodeResult<bool>,
) -> DecodeResult<()> {
    while let Some(f) = r.field()? {
        if !field(r, f.id, f.ttype)? {
            r.skip(f.ttype)?;
        }
    }
    Ok(())
}

fn write_i32_field(w: &mut Writer, id: i16, v: i32) {
    w.field(ttype::I32, id);
    w.i32(v);
}

fn write_string_field(w: &mut Writer, id: i16, v: &str) {
    w.field(ttype::STRING, id);
    w.string(v);
}

// cluster_info

/// `configuration_cluster_info_request`: no fields.
pub fn cluster_info_request(w: &mut Writer) {
    w.stop();
}

/// `configuration_cluster_info_response`: keys and values in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterInfoResponse {
    pub err: ErrorCode,
    pub entries: Vec<(String, String)>,
}

impl ClusterInfoResponse {
    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

pub fn read_cluster_info(r: &mut Reader<'_>) -> DecodeResult<ClusterInfoResponse> {
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    let err = read_response(r, |r, id, t| {
        Ok(match (id, t) {
            (2, ttype::LIST) => {
                keys = r.list(ttype::STRING, Reader::string)?;
                true
            }
            (3, ttype::LIST) => {
                values = r.list(ttype::STRING, Reader::string)?;
                true
            }
            _ => false,
        })
    })?;
    if keys.len() != values.len() {
        return Err(r.invalid(format!("{} keys and {} values", keys.len(), values.len())));
    }
    Ok(ClusterInfoResponse { err, entries: keys.into_iter().zip(values).collect() })
}

// control_meta

/// `configuration_meta_control_request`: the level to set, or
/// [`Level::Invalid`] to query.
pub fn control_meta_request(level: Level) -> impl FnOnce(&mut Writer) {
    move |w| {
        write_i32_field(w, 1, level.code());
        w.stop();
    }
}

/// `configuration_meta_control_response`: the level before the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlMetaResponse {
    pub err: ErrorCode,
    /// The raw enum value (0 from a follower).
    pub old_level: i32,
}

pub fn read_control_meta(r: &mut Reader<'_>) -> DecodeResult<ControlMetaResponse> {
    let mut old_level = 0;
    let err = read_response(r, |r, id, t| {
        Ok(match (id, t) {
            (2, ttype::I32) => {
                old_level = r.i32()?;
                true
            }
            _ => false,
        })
    })?;
    Ok(ControlMetaResponse { err, old_level })
}

// list_nodes

/// `node_status`.
pub const NS_INVALID: i32 = 0;
pub const NS_ALIVE: i32 = 1;
pub const NS_UNALIVE: i32 = 2;

/// A node status as the shell prints it.
pub fn node_status_name(v: i32) -> &'static str {
    match v {
        NS_ALIVE => "ALIVE",
        NS_UNALIVE => "UNALIVE",
        _ => "INVALID",
    }
}

/// `configuration_list_nodes_request`: a status filter (0 for all).
pub fn list_nodes_request(status: i32) -> impl FnOnce(&mut Writer) {
    move |w| {
        write_i32_field(w, 1, status);
        w.stop();
    }
}

/// `node_info`: a replica server and whether it is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub status: i32,
    pub node: RpcAddress,
    pub hp_node: Option<HostPort>,
}

impl NodeInfo {
    /// host:port when the meta sent one, else the IPv4 address.
    pub fn address(&self) -> String {
        match &self.hp_node {
            Some(hp) if !hp.host.is_empty() => hp.to_string(),
            _ => self.node.to_string(),
        }
    }
}

/// `configuration_list_nodes_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListNodesResponse {
    pub err: ErrorCode,
    pub infos: Vec<NodeInfo>,
}

fn read_node_info(r: &mut Reader<'_>) -> DecodeResult<NodeInfo> {
    let mut n = NodeInfo { status: NS_INVALID, node: RpcAddress(0), hp_node: None };
    read_struct(r, |r, id, t| {
        Ok(match (id, t) {
            (1, ttype::I32) => {
                n.status = r.i32()?;
                true
            }
            // rpc_address is a struct in the IDL: field type STRUCT, the
            // payload a bare i64.
            (2, ttype::STRUCT) => {
                n.node = read_rpc_address(r)?;
                true
            }
            (3, ttype::STRUCT) => {
                n.hp_node = Some(read_host_port(r)?);
                true
            }
            _ => false,
        })
    })?;
    Ok(n)
}

pub fn read_list_nodes(r: &mut Reader<'_>) -> DecodeResult<ListNodesResponse> {
    let mut infos = Vec::new();
    let err = read_response(r, |r, id, t| {
        Ok(match (id, t) {
            (2, ttype::LIST) => {
                infos = r.list(ttype::STRUCT, read_node_info)?;
                true
            }
            _ => false,
        })
    })?;
    Ok(ListNodesResponse { err, infos })
}

// start_recovery

/// `configuration_recovery_request`: the replica servers a meta started with
/// `[meta_server] recover_from_replica_server = true` rebuilds its apps and
/// partitions from. Build it from list_nodes' answer ([`RecoveryRequest::alive`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryRequest {
    /// Each node's rpc_address is sent (field 1); the host_ports (field 4)
    /// only when every node has one, as the meta pairs the two lists.
    pub nodes: Vec<NodeInfo>,
    /// Rebuild from the nodes that answer when some do not (else the meta
    /// answers ERR_TRY_AGAIN).
    pub skip_bad_nodes: bool,
    /// Recreate empty the partitions no given node holds (else the meta
    /// answers ERR_TRY_AGAIN).
    pub skip_lost_partitions: bool,
}

impl RecoveryRequest {
    /// The ALIVE nodes of a list_nodes answer, neither skip set: what the
    /// documented procedure sends.
    pub fn alive(nodes: &[NodeInfo]) -> RecoveryRequest {
        RecoveryRequest {
            nodes: nodes.iter().filter(|n| n.status == NS_ALIVE).cloned().collect(),
            skip_bad_nodes: false,
            skip_lost_partitions: false,
        }
    }

    /// The host_ports of field 4: every node's, or none when one lacks it.
    fn host_ports(&self) -> Option<Vec<&HostPort>> {
        self.nodes.iter().map(|n| n.hp_node.as_ref().filter(|hp| !hp.host.is_empty())).collect()
    }
}

/// Writes `configuration_recovery_request`: list<rpc_address> (elements of
/// type STRUCT, each a bare i64), two bools, and the optional
/// list<host_port> (elements of type STRUCT, each bare).
pub fn start_recovery_request(req: &RecoveryRequest) -> impl FnOnce(&mut Writer) + '_ {
    move |w| {
        w.field(ttype::LIST, 1);
        w.list_begin(ttype::STRUCT, req.nodes.len());
        for n in &req.nodes {
            w.i64(n.node.0 as i64);
        }
        w.field(ttype::BOOL, 2);
        w.bool(req.skip_bad_nodes);
        w.field(ttype::BOOL, 3);
        w.bool(req.skip_lost_partitions);
        if let Some(hps) = req.host_ports().filter(|h| !h.is_empty()) {
            w.field(ttype::LIST, 4);
            w.list_begin(ttype::STRUCT, hps.len());
            for hp in hps {
                write_host_port(w, hp);
            }
        }
        w.stop();
    }
}

/// `configuration_recovery_response`: the handler's error (ERR_OK,
/// ERR_SERVICE_ALREADY_RUNNING once the meta serves, ERR_TRY_AGAIN when a
/// node or a partition is missing, ...) and its hint, one line per finding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReply {
    pub err: ErrorCode,
    pub hint: String,
}

impl RecoveryReply {
    pub fn is_ok(&self) -> bool {
        self.err == crate::frame::ERR_OK
    }
}

pub fn read_start_recovery(r: &mut Reader<'_>) -> DecodeResult<RecoveryReply> {
    let mut hint = String::new();
    let err = read_response(r, |r, id, t| {
        Ok(match (id, t) {
            (2, ttype::STRING) => {
                hint = r.string()?;
                true
            }
            _ => false,
        })
    })?;
    Ok(RecoveryReply { err, hint })
}

// list_apps

/// `app_status`: AS_INVALID asks for every app.
pub const AS_INVALID: i32 = 0;
pub const AS_AVAILABLE: i32 = 1;

/// The name of an `app_status` value.
pub fn app_status_name(v: i32) -> &'static str {
    match v {
        0 => "invalid",
        1 => "available",
        2 => "creating",
        3 => "create_failed",
        4 => "dropping",
        5 => "drop_failed",
        6 => "dropped",
        7 => "recalling",
        _ => "unknown",
    }
}

/// `configuration_list_apps_request`: apps of a status (AS_INVALID: all).
pub fn list_apps_request(status: i32) -> impl FnOnce(&mut Writer) {
    move |w| {
        write_i32_field(w, 1, status);
        w.stop();
    }
}

/// `app_info`, the fields a status shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AppInfo {
    pub status: i32,
    pub app_type: String,
    pub app_name: String,
    pub app_id: i32,
    pub partition_count: i32,
    pub envs: BTreeMap<String, String>,
    pub max_replica_count: i32,
    pub duplicating: Option<bool>,
    pub is_bulk_loading: Option<bool>,
}

fn read_app_info(r: &mut Reader<'_>) -> DecodeResult<AppInfo> {
    let mut a = AppInfo::default();
    read_struct(r, |r, id, t| {
        Ok(match (id, t) {
            (1, ttype::I32) => {
                a.status = r.i32()?;
                true
            }
            (2, ttype::STRING) => {
                a.app_type = r.string()?;
                true
            }
            (3, ttype::STRING) => {
                a.app_name = r.string()?;
                true
            }
            (4, ttype::I32) => {
                a.app_id = r.i32()?;
                true
            }
            (5, ttype::I32) => {
                a.partition_count = r.i32()?;
                true
            }
            (6, ttype::MAP) => {
                let at = r.offset();
                let (k, v, n) = r.map_begin()?;
                if n > 0 && (k, v) != (ttype::STRING, ttype::STRING) {
                    return Err(crate::thrift::DecodeError::Invalid {
                        offset: at,
                        what: format!("envs of types {k}/{v}"),
                    });
                }
                for _ in 0..n {
                    let key = r.string()?;
                    a.envs.insert(key, r.string()?);
                }
                true
            }
            (8, ttype::I32) => {
                a.max_replica_count = r.i32()?;
                true
            }
            (12, ttype::BOOL) => {
                a.duplicating = Some(r.bool()?);
                true
            }
            (14, ttype::BOOL) => {
                a.is_bulk_loading = Some(r.bool()?);
                true
            }
            _ => false,
        })
    })?;
    Ok(a)
}

/// `configuration_list_apps_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListAppsResponse {
    pub err: ErrorCode,
    pub infos: Vec<AppInfo>,
}

pub fn read_list_apps(r: &mut Reader<'_>) -> DecodeResult<ListAppsResponse> {
    let mut infos = Vec::new();
    let err = read_response(r, |r, id, t| {
        Ok(match (id, t) {
            (2, ttype::LIST) => {
                infos = r.list(ttype::STRUCT, read_app_info)?;
                true
            }
            _ => false,
        })
    })?;
    Ok(ListAppsResponse { err, infos })
}

// duplication

/// The name of a `duplication_status` value.
pub fn duplication_status_name(v: i32) -> &'static str {
    match v {
        0 => "init",
        1 => "prepare",
        2 => "app",
        3 => "log",
        4 => "pause",
        5 => "removed",
        _ => "unknown",
    }
}

/// `pattern_match_type::PMT_MATCH_ALL`.
pub const PMT_MATCH_ALL: i32 = 1;

/// `duplication_list_request`: every app (an empty pattern, match all).
pub fn list_duplication_request(w: &mut Writer) {
    write_string_field(w, 1, "");
    write_i32_field(w, 2, PMT_MATCH_ALL);
    w.stop();
}

/// `duplication_query_request`: one app's duplications.
pub fn query_duplication_request(app_name: &str) -> impl FnOnce(&mut Writer) + '_ {
    move |w| {
        write_string_field(w, 1, app_name);
        w.stop();
    }
}

/// `duplication_entry`: its id and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicationEntry {
    pub dupid: i32,
    pub status: i32,
    pub remote: String,
}

fn read_duplication_entry(r: &mut Reader<'_>) -> DecodeResult<DuplicationEntry> {
    let mut e = DuplicationEntry { dupid: 0, status: -1, remote: String::new() };
    read_struct(r, |r, id, t| {
        Ok(match (id, t) {
            (1, ttype::I32) => {
                e.dupid = r.i32()?;
                true
            }
            (2, ttype::I32) => {
                e.status = r.i32()?;
                true
            }
            (3, ttype::STRING) => {
                e.remote = r.string()?;
                true
            }
            _ => false,
        })
    })?;
    Ok(e)
}

/// `duplication_query_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryDuplicationResponse {
    pub err: ErrorCode,
    pub appid: i32,
    pub entries: Vec<DuplicationEntry>,
}

pub fn read_query_duplication(r: &mut Reader<'_>) -> DecodeResult<QueryDuplicationResponse> {
    let (mut appid, mut entries) = (0, Vec::new());
    let err = read_response(r, |r, id, t| {
        Ok(match (id, t) {
            (3, ttype::I32) => {
                appid = r.i32()?;
                true
            }
            (4, ttype::LIST) => {
                entries = r.list(ttype::STRUCT, read_duplication_entry)?;
                true
            }
            _ => false,
        })
    })?;
    Ok(QueryDuplicationResponse { err, appid, entries })
}

/// `duplication_list_response`: per app name, its duplications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListDuplicationResponse {
    pub err: ErrorCode,
    pub apps: BTreeMap<String, Vec<DuplicationEntry>>,
}

/// `duplication_app_state`: its name and duplications.
fn read_duplication_app_state(r: &mut Reader<'_>) -> DecodeResult<(String, Vec<DuplicationEntry>)> {
    let (mut name, mut entries) = (String::new(), Vec::new());
    read_struct(r, |r, id, t| {
        Ok(match (id, t) {
            (2, ttype::MAP) => {
                let (_, v, n) = r.map_begin()?;
                for _ in 0..n {
                    r.i32()?;
                    if v != ttype::STRUCT {
                        return Err(r.invalid("duplications not of entries"));
                    }
                    entries.push(read_duplication_entry(r)?);
                }
                true
            }
            (3, ttype::STRING) => {
                name = r.string()?;
                true
            }
            _ => false,
        })
    })?;
    Ok((name, entries))
}

pub fn read_list_duplication(r: &mut Reader<'_>) -> DecodeResult<ListDuplicationResponse> {
    let mut apps = BTreeMap::new();
    let err = read_response(r, |r, id, t| {
        Ok(match (id, t) {
            (3, ttype::MAP) => {
                let (k, v, n) = r.map_begin()?;
                if n > 0 && (k, v) != (ttype::STRING, ttype::STRUCT) {
                    return Err(r.invalid(format!("app states of types {k}/{v}")));
                }
                for _ in 0..n {
                    let key = r.string()?;
                    let (name, entries) = read_duplication_app_state(r)?;
                    apps.insert(if name.is_empty() { key } else { name }, entries);
                }
                true
            }
            _ => false,
        })
    })?;
    Ok(ListDuplicationResponse { err, apps })
}

// bulk load

/// The name of a `bulk_load_status` value.
pub fn bulk_load_status_name(v: i32) -> &'static str {
    match v {
        0 => "invalid",
        1 => "downloading",
        2 => "downloaded",
        3 => "ingesting",
        4 => "succeed",
        5 => "failed",
        6 => "pausing",
        7 => "paused",
        8 => "canceled",
        _ => "unknown",
    }
}

/// `query_bulk_load_request`: one app.
pub fn query_bulk_load_request(app_name: &str) -> impl FnOnce(&mut Writer) + '_ {
    move |w| {
        write_string_field(w, 1, app_name);
        w.stop();
    }
}

/// `query_bulk_load_response`: the app's status and whether it is loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryBulkLoadResponse {
    pub err: ErrorCode,
    pub app_status: i32,
    pub is_bulk_loading: Option<bool>,
}

/// Skips `partition_bulk_load_state`, whose field 2 is an error_code.
fn skip_partition_bulk_load_state(r: &mut Reader<'_>) -> DecodeResult<()> {
    read_struct(r, |r, id, t| {
        Ok(match (id, t) {
            (2, ttype::STRUCT) => {
                read_error_code(r)?;
                true
            }
            _ => false,
        })
    })
}

/// Skips `list<map<K, partition_bulk_load_state>>` where K is an
/// rpc_address (i64) or a host_port (bare), both typed STRUCT on the wire.
fn skip_bulk_load_states(r: &mut Reader<'_>, host_port_keys: bool) -> DecodeResult<()> {
    let (_, n) = r.list_begin()?;
    for _ in 0..n {
        let (_, _, m) = r.map_begin()?;
        for _ in 0..m {
            if host_port_keys {
                read_host_port(r)?;
            } else {
                read_rpc_address(r)?;
            }
            skip_partition_bulk_load_state(r)?;
        }
    }
    Ok(())
}

pub fn read_query_bulk_load(r: &mut Reader<'_>) -> DecodeResult<QueryBulkLoadResponse> {
    let (mut app_status, mut is_bulk_loading) = (0, None);
    let err = read_response(r, |r, id, t| {
        Ok(match (id, t) {
            (3, ttype::I32) => {
                app_status = r.i32()?;
                true
            }
            (6, ttype::LIST) => {
                skip_bulk_load_states(r, false)?;
                true
            }
            (8, ttype::BOOL) => {
                is_bulk_loading = Some(r.bool()?);
                true
            }
            (9, ttype::LIST) => {
                skip_bulk_load_states(r, true)?;
                true
            }
            _ => false,
        })
    })?;
    Ok(QueryBulkLoadResponse { err, app_status, is_bulk_loading })
}

// backup

/// `query_backup_status_request`: one app's backups (every backup id).
pub fn query_backup_status_request(app_id: i32) -> impl FnOnce(&mut Writer) {
    move |w| {
        write_i32_field(w, 1, app_id);
        w.stop();
    }
}

/// `backup_item`: what tells whether it is still running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupItem {
    pub backup_id: i64,
    pub end_time_ms: i64,
    pub is_backup_failed: bool,
}

impl BackupItem {
    /// Not ended and not failed.
    pub fn in_progress(&self) -> bool {
        self.end_time_ms == 0 && !self.is_backup_failed
    }
}

/// `query_backup_status_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryBackupStatusResponse {
    pub err: ErrorCode,
    pub items: Vec<BackupItem>,
}

fn read_backup_item(r: &mut Reader<'_>) -> DecodeResult<BackupItem> {
    let mut b = BackupItem { backup_id: 0, end_time_ms: 0, is_backup_failed: false };
    read_struct(r, |r, id, t| {
        Ok(match (id, t) {
            (1, ttype::I64) => {
                b.backup_id = r.i64()?;
                true
            }
            (6, ttype::I64) => {
                b.end_time_ms = r.i64()?;
                true
            }
            (7, ttype::BOOL) => {
                b.is_backup_failed = r.bool()?;
                true
            }
            _ => false,
        })
    })?;
    Ok(b)
}

pub fn read_query_backup_status(r: &mut Reader<'_>) -> DecodeResult<QueryBackupStatusResponse> {
    let mut items = Vec::new();
    let err = read_response(r, |r, id, t| {
        Ok(match (id, t) {
            (3, ttype::LIST) => {
                items = r.list(ttype::STRUCT, read_backup_item)?;
                true
            }
            _ => false,
        })
    })?;
    Ok(QueryBackupStatusResponse { err, items })
}

// partition split

/// `query_split_request`: one app.
pub fn query_split_request(app_name: &str) -> impl FnOnce(&mut Writer) + '_ {
    move |w| {
        write_string_field(w, 1, app_name);
        w.stop();
    }
}

/// `query_split_response`: the new partition count and how many
/// partitions report a split status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerySplitResponse {
    pub err: ErrorCode,
    pub new_partition_count: i32,
    pub partitions_splitting: usize,
}

pub fn read_query_split(r: &mut Reader<'_>) -> DecodeResult<QuerySplitResponse> {
    let (mut new_partition_count, mut partitions_splitting) = (0, 0);
    let err = read_response(r, |r, id, t| {
        Ok(match (id, t) {
            (2, ttype::I32) => {
                new_partition_count = r.i32()?;
                true
            }
            (3, ttype::MAP) => {
                let (k, v, n) = r.map_begin()?;
                for _ in 0..n {
                    r.skip(k)?;
                    r.skip(v)?;
                }
                partitions_splitting = n;
                true
            }
            _ => false,
        })
    })?;
    Ok(QuerySplitResponse { err, new_partition_count, partitions_splitting })
}
