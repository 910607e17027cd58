//! The journal of a recovery: one JSON file, rewritten whole before and
//! after every step (as a migration's is, [`crate::migrate::journal`]),
//! holding what the cluster said it had before it changed anything, the
//! config backups, when the metas were seen down, and the recovery's
//! answer. A resumed run and a rollback read it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Step;
use crate::messages::{AppInfo, NS_ALIVE, NodeInfo};
use crate::migrate::Hooks;
use crate::migrate::journal::{self as mj, FORMAT, JournalError, StepRecord, StepState, now_ms};
use crate::thrift::{HostPort, RpcAddress};

/// What a recovery journal records as its operation.
pub const OPERATION: &str = "pegasus recover";

/// A replica server as list_nodes named it before the recovery: enough to
/// send it in the recovery request again after a restart of zkrepl.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedNode {
    /// host:port when the meta gave one, else ip:port.
    pub address: String,
    /// ALIVE, UNALIVE or INVALID.
    pub status: String,
    /// The rpc_address as the meta sent it (ipv4, port and type in an i64).
    pub rpc_address: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<SavedHostPort>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedHostPort {
    pub host: String,
    pub port: u16,
    pub host_type: i8,
}

impl SavedNode {
    pub fn from_info(n: &NodeInfo) -> SavedNode {
        SavedNode {
            address: n.address(),
            status: crate::messages::node_status_name(n.status).to_string(),
            rpc_address: n.node.0,
            host_port: n.hp_node.as_ref().map(|h| SavedHostPort {
                host: h.host.clone(),
                port: h.port,
                host_type: h.host_type,
            }),
        }
    }

    pub fn alive(&self) -> bool {
        self.status == crate::messages::node_status_name(NS_ALIVE)
    }

    /// As the recovery request sends it.
    pub fn to_info(&self) -> NodeInfo {
        NodeInfo {
            status: if self.alive() { NS_ALIVE } else { crate::messages::NS_UNALIVE },
            node: RpcAddress(self.rpc_address),
            hp_node: self.host_port.as_ref().map(|h| HostPort {
                host: h.host.clone(),
                port: h.port,
                host_type: h.host_type,
            }),
        }
    }
}

/// A config file the recovery rewrites twice: the flag and the new hosts,
/// then the flag back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverConfig {
    pub path: PathBuf,
    /// The file as it was, written before it is first changed.
    pub backup: PathBuf,
    /// `[zookeeper] hosts_list` before.
    pub old_hosts: String,
    /// `[meta_server] recover_from_replica_server` before, if the file had
    /// it (else the line is added for the recovery and removed after).
    pub flag_before: Option<String>,
}

/// The files beside the journal that hold what the cluster said it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFiles {
    /// list_apps, as JSON.
    pub apps: PathBuf,
    /// list_nodes, as JSON.
    pub nodes: PathBuf,
    /// The recovery node list, one address per line.
    pub node_list: PathBuf,
}

impl SavedFiles {
    pub fn beside(journal: &Path) -> SavedFiles {
        SavedFiles {
            apps: mj::beside(journal, ".apps.json"),
            nodes: mj::beside(journal, ".nodes.json"),
            node_list: mj::beside(journal, ".recovery-nodes"),
        }
    }
}

/// What the recovery was asked and what it found before changing anything.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Setup {
    /// Every meta known (given and from the configs' server_list).
    pub metas: Vec<String>,
    /// The leader before: started first, and the one the recovery is sent to.
    pub leader: String,
    /// The other metas that answered before (started again at the end).
    pub others_up: Vec<String>,
    /// The ensemble the cluster ran on (cluster_info).
    pub src_hosts: String,
    pub dst_hosts: String,
    pub root: String,
    pub lock_path: String,
    /// `[replication] config_sync_interval_ms` of the configs (the
    /// largest), and how long after every meta is down the recovery waits.
    pub config_sync_interval_ms: u64,
    pub release_wait_ms: u64,
    pub skip_bad_nodes: bool,
    pub skip_lost_partitions: bool,
    /// list_apps before, as compared after.
    pub apps: Vec<AppInfo>,
    /// list_nodes before.
    pub nodes: Vec<SavedNode>,
    /// The nodes the recovery is sent (the ALIVE ones).
    pub recovery_nodes: Vec<String>,
    pub configs: Vec<RecoverConfig>,
    pub hooks: Hooks,
    pub saved: SavedFiles,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub format: u32,
    pub operation: String,
    pub created_ms: u64,
    pub setup: Setup,
    pub steps: Vec<StepRecord<Step>>,
    /// When every meta was last seen down (ms since the epoch).
    pub all_down_ms: Option<u64>,
    /// The child version of the old ensemble's leader election when every
    /// meta was down (it moves when a meta joins it again).
    #[serde(default)]
    pub election_cversion: Option<i32>,
    /// When the first meta's start hook was called.
    pub meta_start_ms: Option<u64>,
    /// The meta's answer to the recovery.
    pub recovery_err: Option<String>,
    pub recovery_hint: Option<String>,
    /// How list_apps after the recovery differs from before (the latest
    /// comparison).
    pub differences: Vec<String>,
    /// What the restarted cluster serves: available apps, their
    /// partitions, the saved nodes seen alive.
    #[serde(default)]
    pub final_apps: Option<usize>,
    #[serde(default)]
    pub final_partitions: Option<i64>,
    #[serde(default)]
    pub final_nodes_alive: Option<usize>,
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
    /// The first config rewrite has begun: configs may name the new
    /// ensemble (set before the first file is touched).
    pub switched: bool,
    /// The configs were restored and the metas started as they were (after
    /// a refused recovery, or a rollback): the recovery cannot be resumed.
    pub restore_started: bool,
    pub restored: bool,
    pub finished: bool,
    #[serde(skip)]
    path: PathBuf,
}

impl Journal {
    /// Writes a new journal; refuses to replace an existing one.
    pub fn create(path: &Path, setup: Setup) -> Result<Journal, JournalError> {
        if path.exists() {
            return Err(JournalError::Exists { path: path.to_path_buf() });
        }
        let j = Journal {
            format: FORMAT,
            operation: OPERATION.to_string(),
            created_ms: now_ms(),
            setup,
            steps: Vec::new(),
            all_down_ms: None,
            election_cversion: None,
            meta_start_ms: None,
            recovery_err: None,
            recovery_hint: None,
            differences: Vec::new(),
            final_apps: None,
            final_partitions: None,
            final_nodes_alive: None,
            notes: BTreeMap::new(),
            switched: false,
            restore_started: false,
            restored: false,
            finished: false,
            path: path.to_path_buf(),
        };
        j.save()?;
        Ok(j)
    }

    pub fn load(path: &Path) -> Result<Journal, JournalError> {
        let mut j: Journal = mj::read(path, OPERATION)?;
        j.path = path.to_path_buf();
        Ok(j)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn save(&self) -> Result<(), JournalError> {
        mj::write(&self.path, self)
    }

    pub fn state(&self, step: Step) -> Option<StepState> {
        mj::last_state(&self.steps, step)
    }

    pub fn is_done(&self, step: Step) -> bool {
        self.state(step) == Some(StepState::Done)
    }

    /// Whether `step` was ever started (by this run or an earlier one).
    pub fn was_started(&self, step: Step) -> bool {
        self.steps.iter().any(|r| r.step == step)
    }

    pub fn mark(&mut self, step: Step, state: StepState, note: &str) -> Result<(), JournalError> {
        self.steps.push(StepRecord { step, state, at_ms: now_ms(), note: note.to_string() });
        self.save()
    }

    pub fn step_seconds(&self) -> Vec<(Step, f64)> {
        mj::step_seconds(&self.steps)
    }

    /// Where the cluster stands, from what the journal recorded.
    pub fn describe_state(&self) -> String {
        let s = &self.setup;
        if self.restored {
            return format!(
                "restored: the configs are as before and the metas were started on the old ensemble {}",
                s.src_hosts
            );
        }
        if self.restore_started {
            return "being restored: some configs may be back as before (backups beside them); run the rollback again to finish".to_string();
        }
        if self.finished {
            return format!("recovered: the cluster runs on {} with the flag back to false", s.dst_hosts);
        }
        if self.is_done(Step::FlagCleared) {
            return format!(
                "recovered on {}; the configs have the flag back to false; the metas still run with it set until restarted",
                s.dst_hosts
            );
        }
        if self.is_done(Step::Recovered) {
            return format!(
                "recovered on {}: one meta serves there with recover_from_replica_server = true",
                s.dst_hosts
            );
        }
        if self.meta_start_ms.is_some() {
            return format!(
                "the configs name {} with recover_from_replica_server = true; a meta was started there, the recovery not yet accepted",
                s.dst_hosts
            );
        }
        if self.all_down_ms.is_some() {
            return format!(
                "every meta is stopped; the configs name {} with recover_from_replica_server = true (backups beside them)",
                s.dst_hosts
            );
        }
        if self.switched {
            return format!(
                "the configs name (or are being rewritten to name) {} with recover_from_replica_server = true (backups beside them); the metas may still run on {}",
                s.dst_hosts, s.src_hosts
            );
        }
        "the cluster and its configs are unchanged".to_string()
    }
}
