//! The replica servers' view of the cluster, kept apart from ZooKeeper: what
//! a real cluster's replica servers would report to a meta that rebuilds
//! its metadata from them (RPC_CM_START_RECOVERY). For every app its
//! app_info and, per partition, the partition_configuration the replicas
//! serve (ballot, primary, secondaries), as the simulator writes them to
//! `apps/<id>` and `apps/<id>/<pidx>`.
//!
//! One view is shared by every meta of a simulated cluster (a clone of the
//! handle) and outlives them: the leader updates it with each partition
//! change it writes, so after a restart or a migration it is still the
//! cluster's truth. Metas run as separate processes share it through a
//! JSON file (`[simulator] replica_state`), read at each takeover and each
//! recovery and rewritten (temporary file, rename) after each change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SimError;
use super::zk::{self, App, Seed};

/// One app as the replica servers hold it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicaApp {
    pub id: i32,
    /// app_info JSON, as in `apps/<id>`.
    pub info: Value,
    /// partition_configuration JSON by partition index, as in `apps/<id>/<pidx>`.
    pub partitions: Vec<Value>,
}

impl ReplicaApp {
    pub fn name(&self) -> &str {
        self.info["app_name"].as_str().unwrap_or("")
    }
}

/// The replica servers that serve a partition: its primary and
/// secondaries, as named in its partition_configuration.
pub fn holders(partition: &Value) -> Vec<String> {
    let primary = partition["primary"].as_str().filter(|p| *p != "invalid address" && !p.is_empty());
    let secondaries = partition["secondaries"].as_array().into_iter().flatten().filter_map(Value::as_str);
    primary.into_iter().chain(secondaries).map(str::to_string).collect()
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    apps: Vec<ReplicaApp>,
}

/// A handle on one view; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Replicas {
    apps: Arc<Mutex<Vec<ReplicaApp>>>,
    file: Option<PathBuf>,
}

impl Replicas {
    /// An empty view held in memory. A meta that takes over (without the
    /// recovery flag) while it is empty fills it with what it loaded.
    pub fn new() -> Replicas {
        Replicas::default()
    }

    /// The view of a cluster just written by [`super::seed`] with `spec`.
    pub fn from_seed(spec: &Seed) -> Replicas {
        let r = Replicas::new();
        *r.apps.lock().expect("replicas lock") = zk::seed_apps(spec);
        r
    }

    /// A view kept in a JSON file (read now if it exists; an empty view
    /// otherwise, written at the first change).
    pub fn file(path: &Path) -> Result<Replicas, SimError> {
        let r = Replicas { apps: Arc::default(), file: Some(path.to_path_buf()) };
        r.refresh()?;
        Ok(r)
    }

    /// Writes the view of a cluster seeded with `spec` to a JSON file.
    pub fn write_seed(path: &Path, spec: &Seed) -> Result<Replicas, SimError> {
        let r = Replicas { apps: Arc::default(), file: Some(path.to_path_buf()) };
        r.set(zk::seed_apps(spec))?;
        Ok(r)
    }

    /// The view a meta uses when none is given: its config's file, or an
    /// empty one in memory.
    pub fn for_config(cfg: &super::MetaConfig) -> Result<Replicas, SimError> {
        match &cfg.replica_state {
            Some(p) => Replicas::file(p),
            None => Ok(Replicas::new()),
        }
    }

    /// The file it is kept in, if it is.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Every app, by id (read again from the file first, when there is one).
    pub fn apps(&self) -> Result<Vec<ReplicaApp>, SimError> {
        self.refresh()?;
        Ok(self.apps.lock().expect("replicas lock").clone())
    }

    /// Replaces the whole view (apps sorted by id), and writes the file.
    pub fn set(&self, mut apps: Vec<ReplicaApp>) -> Result<(), SimError> {
        apps.sort_by_key(|a| a.id);
        *self.apps.lock().expect("replicas lock") = apps;
        self.save()
    }

    /// Changes one partition's configuration in memory (see [`Replicas::save`]).
    pub(crate) fn update_partition(&self, app_id: i32, pidx: usize, v: &Value) {
        let mut apps = self.apps.lock().expect("replicas lock");
        if let Some(p) = apps.iter_mut().find(|a| a.id == app_id).and_then(|a| a.partitions.get_mut(pidx)) {
            *p = v.clone();
        }
    }

    /// Fills an empty view with what a meta loaded; a view that holds
    /// something is left alone (the replicas, not the meta, know it).
    pub(crate) fn adopt_if_empty(&self, loaded: &[App]) -> Result<(), SimError> {
        self.refresh()?;
        if !self.apps.lock().expect("replicas lock").is_empty() || loaded.is_empty() {
            return Ok(());
        }
        self.set(
            loaded
                .iter()
                .map(|a| ReplicaApp { id: a.id, info: a.info.clone(), partitions: a.partitions.clone() })
                .collect(),
        )
    }

    /// Reads the file again, when there is one and it exists.
    fn refresh(&self) -> Result<(), SimError> {
        let Some(path) = &self.file else { return Ok(()) };
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(SimError::Config(format!("cannot read {}: {e}", path.display()))),
        };
        let state: StateFile = serde_json::from_slice(&text)
            .map_err(|e| SimError::Config(format!("{}: not a replica state file: {e}", path.display())))?;
        *self.apps.lock().expect("replicas lock") = state.apps;
        Ok(())
    }

    /// Writes the file (temporary file, rename), when there is one.
    pub(crate) fn save(&self) -> Result<(), SimError> {
        let Some(path) = &self.file else { return Ok(()) };
        let text = {
            let apps = self.apps.lock().expect("replicas lock");
            serde_json::to_vec(&StateFile { apps: apps.clone() }).expect("JSON values serialize")
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            SimError::Config(format!("cannot write {}: {e}", path.display()))
        })
    }
}
