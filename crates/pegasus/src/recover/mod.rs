//! `pegasus recover`: moves a Pegasus cluster to a new ZooKeeper ensemble
//! by having the meta server rebuild its metadata from the replica
//! servers, the way to go when the old ZooKeeper's data is lost or not
//! trusted. Journaled step by step, resumable, and undone by restoring the
//! configs and starting the metas as they were.
//!
//! [`prepare`] reads the cluster and the configs and changes nothing.
//! [`execute`] runs the steps ([`Step`]); [`resume`] continues from a
//! journal; [`rollback`] restores the configs from their backups and starts
//! the metas on the old ensemble again (done by itself when the meta
//! refuses the recovery).

pub mod journal;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

pub use self::journal::{Journal, RecoverConfig, SavedFiles, SavedNode, Setup};
use crate::client::{MetaClient, Role};
use crate::config::ConfigFile;
use crate::messages::{AS_AVAILABLE, AppInfo, NS_ALIVE, RecoveryRequest, app_status_name};
use crate::migrate::journal::{JournalLock, StepState, now_ms};
use crate::migrate::rollback::{RollbackPlan, RollbackReport};
use crate::migrate::{AppRecord, Context, Event, Hook, HookEnv, Hooks, MigrateError, StepName, checks};
use crate::migrate::{Stopped, procedure};

/// `[replication] config_sync_interval_ms` when a config does not set it.
pub const DEFAULT_CONFIG_SYNC_INTERVAL_MS: u64 = 30_000;

/// The flag the recovery sets and clears.
const FLAG: (&str, &str) = ("meta_server", "recover_from_replica_server");

/// The steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Saved,
    ConfigsRewritten,
    MetasStopped,
    ReplicasReleased,
    MetaStarted,
    Recovered,
    Checked,
    FlagCleared,
    MetasRestarted,
}

impl Step {
    pub const ALL: [Step; 9] = [
        Step::Saved,
        Step::ConfigsRewritten,
        Step::MetasStopped,
        Step::ReplicasReleased,
        Step::MetaStarted,
        Step::Recovered,
        Step::Checked,
        Step::FlagCleared,
        Step::MetasRestarted,
    ];
}

impl StepName for Step {
    fn number(self) -> usize {
        Step::ALL.iter().position(|s| *s == self).unwrap_or(0) + 1
    }

    fn describe(self) -> &'static str {
        match self {
            Step::Saved => "save list_apps, list_nodes and the recovery node list beside the journal",
            Step::ConfigsRewritten => {
                "set [meta_server] recover_from_replica_server = true and the new [zookeeper] hosts_list in the configs"
            }
            Step::MetasStopped => "stop every meta server",
            Step::ReplicasReleased => "wait until the replica servers have dropped the metas (config_sync_interval_ms)",
            Step::MetaStarted => "start the leader alone on the new ensemble",
            Step::Recovered => "send the recovery (RPC_CM_START_RECOVERY) with the saved nodes",
            Step::Checked => "wait until every saved replica server is alive; compare the apps with the saved ones",
            Step::FlagCleared => "set recover_from_replica_server back to false in the configs",
            Step::MetasRestarted => "restart every meta server, the leader first, and check the cluster",
        }
    }

    fn count() -> usize {
        Step::ALL.len()
    }
}

/// A recovery as asked.
#[derive(Debug, Clone)]
pub struct RecoverRequest {
    /// Meta servers, `host[:port],...` (the configs' server_list is added).
    pub metas: String,
    /// The new ensemble's connect string (the new `hosts_list`).
    pub dst: String,
    pub configs: Vec<PathBuf>,
    pub hooks: Hooks,
    /// The journal; `zkrepl-recover.journal` beside the first config when `None`.
    pub journal: Option<PathBuf>,
    /// Go on although some replica servers are UNALIVE: the recovery is
    /// sent the alive ones, with skip_bad_nodes.
    pub skip_bad_nodes: bool,
    /// Let the meta recreate empty the partitions no given node holds.
    pub skip_lost_partitions: bool,
    /// The leader-lock path when the configs do not name one.
    pub lock_path: Option<String>,
    /// How long to wait for a condition (a meta down or serving, the
    /// replica servers back, a step done by hand).
    pub wait: Duration,
    pub meta_timeout: Duration,
    /// The recovery call: the meta asks every node, then writes every app
    /// and partition before it answers.
    pub recovery_timeout: Duration,
    /// Connecting to a ZooKeeper ensemble.
    pub zk_timeout: Duration,
    /// How to reach the old and the new ensemble (credentials, TLS, SASL).
    pub zk_access: crate::zk::ZkAccess,
}

impl RecoverRequest {
    pub fn new(metas: &str, dst: &str, configs: Vec<PathBuf>) -> RecoverRequest {
        RecoverRequest {
            metas: metas.to_string(),
            dst: dst.to_string(),
            configs,
            hooks: Hooks::default(),
            journal: None,
            skip_bad_nodes: false,
            skip_lost_partitions: false,
            lock_path: None,
            wait: Duration::from_secs(600),
            meta_timeout: Duration::from_secs(5),
            recovery_timeout: Duration::from_secs(300),
            zk_timeout: Duration::from_secs(10),
            zk_access: Default::default(),
        }
    }

    /// The journal path: given, or `zkrepl-recover.journal` beside the
    /// first config.
    pub fn journal_path(&self) -> PathBuf {
        crate::migrate::journal::default_path(self.journal.as_deref(), &self.configs, "zkrepl-recover.journal")
    }
}

/// What [`prepare`] found: the plan, the lists it saves, what stops it.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub setup: Setup,
    pub journal: PathBuf,
    /// list_apps and list_nodes as the leader answered.
    pub apps: Vec<AppInfo>,
    pub nodes: Vec<SavedNode>,
    /// What the new ensemble holds under the root's `apps`.
    pub dst_apps: String,
    pub refusals: Vec<String>,
    pub warnings: Vec<String>,
}

/// A finished recovery.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub journal: PathBuf,
    pub leader: String,
    pub dst_hosts: String,
    pub root: String,
    /// The meta's answer to the recovery.
    pub recovery_hint: String,
    /// How list_apps differs from before (empty: the same names, ids and
    /// partition counts).
    pub differences: Vec<String>,
    pub apps: usize,
    pub partitions: i64,
    pub nodes_alive: usize,
    /// Seconds from every meta seen down to the recovering meta's start.
    pub metas_down_seconds: Option<f64>,
    pub step_seconds: Vec<(Step, f64)>,
    pub notes: BTreeMap<String, String>,
    pub skipped: Vec<Step>,
}

/// The apps as compared: (id, name, partitions, status).
fn records(apps: &[AppInfo]) -> Vec<AppRecord> {
    apps.iter()
        .map(|a| AppRecord {
            app_id: a.app_id,
            app_name: a.app_name.clone(),
            partition_count: a.partition_count,
            status: app_status_name(a.status).to_string(),
        })
        .collect()
}

/// How `now` differs from `before`, for the apps that were available
/// before (a dropped app's replicas may or may not be found again): each
/// missing, renamed, resized or no longer available app, and each app not
/// available before that is now.
pub fn compare_apps(before: &[AppInfo], now: &[AppInfo]) -> Vec<String> {
    let available = |a: &&AppInfo| a.status == AS_AVAILABLE;
    let by_id: BTreeMap<i32, &AppInfo> = now.iter().map(|a| (a.app_id, a)).collect();
    let was: BTreeSet<i32> = before.iter().filter(available).map(|a| a.app_id).collect();
    let mut out = Vec::new();
    for b in before.iter().filter(available) {
        let (name, id) = (&b.app_name, b.app_id);
        let Some(n) = by_id.get(&id) else {
            out.push(format!("app {name} (id {id}) is missing"));
            continue;
        };
        if n.app_name != b.app_name {
            out.push(format!("app id {id} is named {} (was {name})", n.app_name));
        }
        if n.partition_count != b.partition_count {
            out.push(format!("app {name} (id {id}) has {} partitions (was {})", n.partition_count, b.partition_count));
        }
        if n.status != AS_AVAILABLE {
            out.push(format!("app {name} (id {id}) is {} (was available)", app_status_name(n.status)));
        }
    }
    for n in now.iter().filter(available).filter(|n| !was.contains(&n.app_id)) {
        out.push(format!("app {} (id {}) is available, and was not before", n.app_name, n.app_id));
    }
    out
}

/// The config as the recovery runs it: the new hosts, the flag set (added
/// to `[meta_server]` when missing).
fn recovery_bytes(file: &ConfigFile, dst: &str) -> Result<Vec<u8>, MigrateError> {
    let hosts = ConfigFile::parse(file.path(), file.with_value("zookeeper", "hosts_list", dst)?)?;
    Ok(hosts.with_value_or_added(FLAG.0, FLAG.1, "true")?)
}

/// The config afterwards: the original with the new hosts, and the flag as
/// it was (its line gone again when it was added, `false` when it was set).
fn final_bytes(original: &ConfigFile, dst: &str) -> Result<Vec<u8>, MigrateError> {
    let hosts = ConfigFile::parse(original.path(), original.with_value("zookeeper", "hosts_list", dst)?)?;
    match hosts.get(FLAG.0, FLAG.1) {
        Some(v) if v != "false" => Ok(hosts.with_value(FLAG.0, FLAG.1, "false")?),
        _ => Ok(hosts.bytes().to_vec()),
    }
}

/// Reads the configs, the cluster and the new ensemble; changes nothing.
pub async fn prepare(req: &RecoverRequest) -> Result<Plan, MigrateError> {
    let mut refusals = Vec::new();
    let mut warnings = Vec::new();
    if req.configs.is_empty() {
        refusals.push("no config file given: every meta server's config.ini is rewritten".to_string());
    }
    let configs: Vec<ConfigFile> = req.configs.iter().map(|p| ConfigFile::read(p)).collect::<Result<_, _>>()?;
    let mut metas = req.metas.clone();
    for c in &configs {
        if let Some(list) = c.get("meta_server", "server_list") {
            metas.push(',');
            metas.push_str(list);
        }
    }
    let client = MetaClient::new(&metas, req.meta_timeout)?;
    let leader = client.find_leader().await?;
    let info = &leader.info;
    let src_hosts = info.get("zookeeper_hosts").unwrap_or("").to_string();
    let root = info.get("zookeeper_root").unwrap_or("").to_string();
    if root.is_empty() {
        refusals.push(format!("the leader {}'s cluster_info names no zookeeper_root", leader.meta));
    }
    let apps = client.list_apps(&leader.meta).await?;
    let listed = client.list_nodes(&leader.meta).await?;
    let nodes: Vec<SavedNode> = listed.iter().map(SavedNode::from_info).collect();

    // What the cluster has: apps, and replica servers to rebuild them from.
    let available = apps.iter().filter(|a| a.status == AS_AVAILABLE).count();
    if available == 0 {
        refusals.push(format!(
            "list_apps names no available app ({} in all): there is nothing to recover, and nothing to check a recovery against",
            apps.len()
        ));
    }
    let unalive: Vec<&str> = nodes.iter().filter(|n| !n.alive()).map(|n| n.address.as_str()).collect();
    if !unalive.is_empty() && !req.skip_bad_nodes {
        refusals.push(format!(
            "replica server(s) not ALIVE: {}: their replicas would not be collected; bring them back, or give --skip-bad-nodes to recover from the alive ones",
            unalive.join(", ")
        ));
    } else if !unalive.is_empty() {
        warnings.push(format!("not ALIVE, left out of the recovery (--skip-bad-nodes): {}", unalive.join(", ")));
    }
    let recovery_nodes: Vec<String> = nodes.iter().filter(|n| n.alive()).map(|n| n.address.clone()).collect();
    if recovery_nodes.is_empty() {
        refusals.push("list_nodes names no ALIVE replica server to recover from".to_string());
    }

    // The configs.
    let stamp = now_ms();
    let mut records_ = Vec::new();
    let mut interval = None::<u64>;
    for c in &configs {
        let name = c.path().display().to_string();
        let Some(h) = c.get("zookeeper", "hosts_list") else {
            refusals.push(format!("{name} has no [zookeeper] hosts_list"));
            continue;
        };
        if !src_hosts.is_empty() && !checks::same_hosts(h, &src_hosts) {
            refusals.push(format!(
                "{name}: [zookeeper] hosts_list = {h}, but the cluster runs on {src_hosts} (cluster_info)"
            ));
        }
        let croot = c.get("meta_server", "cluster_root").unwrap_or("/");
        if croot.trim_end_matches('/') != root.trim_end_matches('/') {
            refusals.push(format!(
                "{name}: [meta_server] cluster_root = {croot}, but cluster_info reports zookeeper_root {root}"
            ));
        }
        let flag = c.get(FLAG.0, FLAG.1).map(str::to_string);
        if flag.as_deref().is_some_and(|f| f != "false") {
            refusals.push(format!(
                "{name}: [meta_server] recover_from_replica_server = {} already: an earlier recovery did not finish? (resume it with its journal, or set it to false)",
                flag.as_deref().unwrap_or("")
            ));
        }
        if let Err(e) = recovery_bytes(c, &req.dst) {
            refusals.push(format!("{name}: cannot be rewritten: {e}"));
        }
        match c.get("replication", "config_sync_interval_ms").map(|v| v.parse::<u64>()) {
            Some(Ok(v)) => interval = Some(interval.unwrap_or(0).max(v)),
            Some(Err(_)) => refusals.push(format!(
                "{name}: [replication] config_sync_interval_ms = {} is not a number",
                c.get("replication", "config_sync_interval_ms").unwrap_or("")
            )),
            None => interval = Some(interval.unwrap_or(0).max(DEFAULT_CONFIG_SYNC_INTERVAL_MS)),
        }
        records_.push(RecoverConfig {
            path: c.path().to_path_buf(),
            backup: journal_backup(c.path(), stamp),
            old_hosts: h.to_string(),
            flag_before: flag,
        });
    }
    let mut seen = BTreeSet::new();
    for r in &records_ {
        if !seen.insert(std::fs::canonicalize(&r.path).unwrap_or(r.path.clone())) {
            refusals.push(format!("{} is given twice", r.path.display()));
        }
    }
    let config_sync_interval_ms = interval.unwrap_or(DEFAULT_CONFIG_SYNC_INTERVAL_MS);
    let lock_path = configs
        .iter()
        .filter_map(|c| c.get("meta_server", "distributed_lock_service_parameters"))
        .filter_map(|v| v.split(',').next().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string))
        .next()
        .or_else(|| req.lock_path.clone())
        .unwrap_or_else(|| crate::zk::default_lock_path(&root));

    // The metas: the leader is started first; the others that answer now
    // are started again at the end.
    let mut all = vec![leader.meta.clone()];
    let mut others_up = Vec::new();
    for a in &leader.answers {
        if a.meta == leader.meta || all.contains(&a.meta) {
            continue;
        }
        all.push(a.meta.clone());
        if !matches!(a.role, Role::Down { .. }) {
            others_up.push(a.meta.clone());
        }
    }
    if records_.len() < all.len() {
        refusals.push(format!(
            "{} metas ({}) but {} config file(s): a meta started on a config that still names the old ensemble would lead there while the others lead on the new one; give every meta's config (or take a meta out of server_list)",
            all.len(),
            all.join(", "),
            records_.len()
        ));
    }

    // The new ensemble: a meta started with the flag over apps aborts.
    let apps_path = crate::zk::join(&root, "apps");
    let dst_apps = match checks::connect(&req.dst, zkrepl::Side::Destination, &req.zk_access.new, req.zk_timeout).await
    {
        Err(e) => {
            refusals.push(format!("the new ensemble: {e}"));
            "unreachable".to_string()
        }
        Ok(c) => match c.list_children(&apps_path).await {
            Err(zk::Error::NoNode) => "missing (created by the recovery)".to_string(),
            Ok(k) if k.is_empty() => "empty".to_string(),
            Ok(k) => {
                refusals.push(format!(
                    "{}{apps_path} already holds {} app(s): a meta started with recover_from_replica_server = true aborts on it; give an ensemble (or cluster_root) without them",
                    req.dst,
                    k.len()
                ));
                format!("holds {} apps", k.len())
            }
            Err(e) => {
                refusals.push(format!("reading {apps_path} on {}: {e}", req.dst));
                "unreadable".to_string()
            }
        },
    };
    if !root.is_empty() && !src_hosts.is_empty() {
        match checks::same_ensemble(&req.dst, &src_hosts, &root, &req.zk_access, req.zk_timeout).await {
            Ok(Some(why)) => refusals.push(format!(
                "the new ensemble {} is the one the cluster runs on ({why}): a recovery goes to another ensemble",
                req.dst
            )),
            Ok(None) => {}
            Err(e) => {
                warnings.push(format!("cannot tell the new ensemble from the old one ({e}): they differ by name"))
            }
        }
    }
    let journal = req.journal_path();
    if journal.exists() {
        refusals.push(format!(
            "the journal {} exists (an earlier recovery): resume it with --resume, or give another --journal",
            journal.display()
        ));
    }
    let release_wait_ms = config_sync_interval_ms + (config_sync_interval_ms / 2).max(1000);
    Ok(Plan {
        setup: Setup {
            metas: all,
            leader: leader.meta.clone(),
            others_up,
            src_hosts,
            dst_hosts: req.dst.clone(),
            root,
            lock_path,
            config_sync_interval_ms,
            release_wait_ms,
            skip_bad_nodes: req.skip_bad_nodes,
            skip_lost_partitions: req.skip_lost_partitions,
            apps: apps.clone(),
            nodes: nodes.clone(),
            recovery_nodes,
            configs: records_,
            hooks: req.hooks.clone(),
            saved: SavedFiles::beside(&journal),
        },
        journal,
        apps,
        nodes,
        dst_apps,
        refusals,
        warnings,
    })
}

/// The backup of a config for the recovery stamped `stamp`:
/// `<file>.before-recover-<stamp>`.
pub fn journal_backup(config: &Path, stamp: u64) -> PathBuf {
    crate::migrate::journal::beside(config, &format!(".before-recover-{stamp}"))
}

fn stopped_early(journal: &Path, state: &str, error: MigrateError) -> Box<Stopped<Step>> {
    Box::new(Stopped { step: Step::Saved, error, state: state.to_string(), journal: journal.to_path_buf() })
}

/// Runs a prepared recovery: writes the journal and runs every step.
pub async fn execute(plan: &Plan, req: &RecoverRequest, ctx: &Context<'_, Step>) -> Result<Report, Box<Stopped<Step>>> {
    if !plan.refusals.is_empty() {
        return Err(stopped_early(&plan.journal, "nothing was changed", MigrateError::Refused(plan.refusals.clone())));
    }
    let lock = JournalLock::acquire(&plan.journal)
        .map_err(|e| stopped_early(&plan.journal, "nothing was changed", e.into()))?;
    let journal = Journal::create(&plan.journal, plan.setup.clone())
        .map_err(|e| stopped_early(&plan.journal, "nothing was changed", e.into()))?;
    let r = Runner::new(journal, req, ctx)?.run().await;
    drop(lock);
    r
}

/// Continues the recovery `journal` records, with `req`'s waits and
/// timeouts (its metas, destination and configs are the journal's; hooks
/// given in `req` replace the journal's).
pub async fn resume(
    journal: &Path,
    req: &RecoverRequest,
    ctx: &Context<'_, Step>,
) -> Result<Report, Box<Stopped<Step>>> {
    let _lock = JournalLock::acquire(journal)
        .map_err(|e| stopped_early(journal, "unknown: another zkrepl holds the journal", e.into()))?;
    let mut j = Journal::load(journal)
        .map_err(|e| stopped_early(journal, "unknown: the journal could not be read", e.into()))?;
    if j.restored || j.restore_started {
        return Err(stopped_early(
            journal,
            &j.describe_state(),
            MigrateError::Failed(
                "this recovery was (or is being) undone: run the rollback again to finish it, or start a new recovery with a new journal"
                    .to_string(),
            ),
        ));
    }
    j.setup.hooks = j.setup.hooks.overridden_by(&req.hooks);
    Runner::new(j, req, ctx)?.run().await
}

/// What undoing the recovery `journal` records will do. Refused once the
/// recovery was accepted: the cluster then runs on what the replica
/// servers hold, and going back would run it on the old data again.
pub async fn plan_rollback(
    journal: &Path,
    access: &crate::zk::ZkAccess,
    zk_timeout: Duration,
) -> Result<RollbackPlan, MigrateError> {
    let j = Journal::load(journal)?;
    let s = &j.setup;
    let mut refusals = Vec::new();
    let mut warnings = Vec::new();
    if j.restored {
        refusals.push("already rolled back: the configs are as before and the metas ran on the old ensemble".into());
    }
    if j.is_done(Step::Recovered) {
        refusals.push(format!(
            "the recovery was accepted: the cluster's metadata was rebuilt on {} from the replica servers; going back would run it on the old ZooKeeper's data again. Resume instead (zkrepl pegasus recover --resume --journal {})",
            s.dst_hosts,
            journal.display()
        ));
    }
    if let Err(e) = checks::connect(&s.src_hosts, zkrepl::Side::Source, &access.old, zk_timeout).await {
        refusals.push(format!("the old ensemble does not answer ({e}): the metas could not run there"));
    }
    let actions = if !j.switched {
        vec!["nothing: no config was rewritten and no meta stopped".to_string()]
    } else {
        vec![
            "stop every meta that answers (--stop-metas)".to_string(),
            format!("restore every config from its backup ({} file(s))", s.configs.len()),
            format!("start {} on the old ensemble {} (--start-meta)", s.leader, s.src_hosts),
            if s.others_up.is_empty() {
                "no other meta to start".to_string()
            } else {
                format!("start {} (--start-metas)", s.others_up.join(", "))
            },
        ]
    };
    for rec in s.configs.iter().filter(|r| r.backup.exists()) {
        if let Some(why) = edited_since(rec, &s.dst_hosts) {
            warnings.push(why);
        }
    }
    Ok(RollbackPlan { journal: journal.to_path_buf(), state: j.describe_state(), actions, warnings, refusals })
}

/// Whether `rec` was edited by someone since the recovery wrote it: a
/// restore puts its backup back all the same.
fn edited_since(rec: &RecoverConfig, dst: &str) -> Option<String> {
    let original = ConfigFile::read(&rec.backup).ok()?;
    let current = std::fs::read(&rec.path).ok()?;
    let ours = [Some(original.bytes().to_vec()), recovery_bytes(&original, dst).ok(), final_bytes(&original, dst).ok()];
    if ours.iter().flatten().any(|b| *b == current) {
        return None;
    }
    Some(format!("{} was edited since the recovery rewrote it: its backup replaces those edits", rec.path.display()))
}

/// Undoes the recovery `journal` records: the metas stopped, the configs
/// restored from their backups, the leader and then the others started on
/// the old ensemble.
pub async fn rollback(
    journal: &Path,
    req: &RecoverRequest,
    ctx: &Context<'_, Step>,
) -> Result<RollbackReport, MigrateError> {
    let _lock = JournalLock::acquire(journal)?;
    let plan = plan_rollback(journal, &req.zk_access, req.zk_timeout).await?;
    if !plan.refusals.is_empty() {
        return Err(MigrateError::Refused(plan.refusals));
    }
    let mut j = Journal::load(journal)?;
    j.setup.hooks = j.setup.hooks.overridden_by(&req.hooks);
    if !j.switched {
        j.restored = true;
        j.save()?;
        return Ok(RollbackReport { journal: journal.to_path_buf(), done: vec!["nothing to undo".to_string()] });
    }
    let mut r = Runner::new(j, req, ctx).map_err(|s| s.error)?;
    let done = r.restore().await?;
    Ok(RollbackReport { journal: journal.to_path_buf(), done })
}

struct Runner<'a> {
    j: Journal,
    req: &'a RecoverRequest,
    ctx: &'a Context<'a, Step>,
    client: MetaClient,
    skipped: Vec<Step>,
    /// The meta answered the recovery with an error: undone at once.
    refused: bool,
    /// ZooKeeper sessions for the checks, by connect string.
    sessions: procedure::Sessions,
}

type StepResult = Result<String, MigrateError>;

impl<'a> Runner<'a> {
    fn new(j: Journal, req: &'a RecoverRequest, ctx: &'a Context<'a, Step>) -> Result<Runner<'a>, Box<Stopped<Step>>> {
        let client = MetaClient::new(&j.setup.metas.join(","), req.meta_timeout).map_err(|e| {
            Box::new(Stopped {
                step: Step::Saved,
                error: MigrateError::Failed(format!("the journal's metas: {e}")),
                state: j.describe_state(),
                journal: j.path().to_path_buf(),
            })
        })?;
        Ok(Runner { j, req, ctx, client, skipped: Vec::new(), refused: false, sessions: Default::default() })
    }

    fn say(&self, e: Event<Step>) {
        self.ctx.observer.event(e);
    }

    fn stopped(&self, step: Step, error: MigrateError) -> Box<Stopped<Step>> {
        Box::new(Stopped { step, error, state: self.j.describe_state(), journal: self.j.path().to_path_buf() })
    }

    /// A session on `hosts`, kept for the next check and synced.
    async fn zk(&self, hosts: &str) -> Result<zk::Client, String> {
        self.zk_or_why(hosts).await.map_err(String::from)
    }

    /// [`Runner::zk`], telling an ensemble that does not answer from one
    /// that refuses the session.
    async fn zk_or_why(&self, hosts: &str) -> Result<zk::Client, crate::zk::ConnectError> {
        let (side, access) = self.req.zk_access.of(hosts, &self.j.setup.dst_hosts);
        self.sessions.get(hosts, side, access, self.req.zk_timeout).await
    }

    async fn run(mut self) -> Result<Report, Box<Stopped<Step>>> {
        for step in Step::ALL {
            if self.j.is_done(step) {
                self.skipped.push(step);
                self.say(Event::StepSkipped { step, why: "done in an earlier run".to_string() });
                continue;
            }
            if self.ctx.cancel.is_cancelled() {
                return Err(self.stopped(step, MigrateError::Interrupted));
            }
            self.j.mark(step, StepState::Started, "").map_err(|e| self.stopped(step, e.into()))?;
            self.say(Event::StepStarted(step));
            let cancel = self.ctx.cancel.clone();
            let r = tokio::select! {
                r = self.step(step) => r,
                _ = cancel.cancelled() => Err(MigrateError::Interrupted),
            };
            match r {
                Ok(note) => {
                    self.j.mark(step, StepState::Done, &note).map_err(|e| self.stopped(step, e.into()))?;
                    self.say(Event::StepDone { step, note });
                }
                Err(error) => {
                    let _ = self.j.mark(step, StepState::Failed, &error.to_string());
                    if step == Step::Recovered && self.refused {
                        return Err(self.undo_after(step, error).await);
                    }
                    return Err(self.stopped(step, error));
                }
            }
        }
        self.j.finished = true;
        self.j.save().map_err(|e| self.stopped(Step::MetasRestarted, e.into()))?;
        let j = &self.j;
        let s = &j.setup;
        Ok(Report {
            journal: j.path().to_path_buf(),
            leader: s.leader.clone(),
            dst_hosts: s.dst_hosts.clone(),
            root: s.root.clone(),
            recovery_hint: j.recovery_hint.clone().unwrap_or_default(),
            differences: j.differences.clone(),
            apps: j.final_apps.unwrap_or_default(),
            partitions: j.final_partitions.unwrap_or_default(),
            nodes_alive: j.final_nodes_alive.unwrap_or_default(),
            metas_down_seconds: match (j.all_down_ms, j.meta_start_ms) {
                (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / 1000.0),
                _ => None,
            },
            step_seconds: j.step_seconds(),
            notes: j.notes.clone(),
            skipped: self.skipped,
        })
    }

    /// The recovery failed: the configs restored and the metas started as
    /// they were; the stop says what failed and what the restore did.
    async fn undo_after(&mut self, step: Step, error: MigrateError) -> Box<Stopped<Step>> {
        let src = self.j.setup.src_hosts.clone();
        if let Err(e) = self.zk(&src).await {
            return self.stopped(
                step,
                MigrateError::Failed(format!(
                    "{error}; not undone: the old ensemble does not answer ({e}), so the metas could not run there: fix the cause and resume, or roll back once it answers"
                )),
            );
        }
        self.say(Event::Warning(format!("{error}: restoring the configs and starting the metas as they were")));
        let error = match self.restore().await {
            Ok(done) => MigrateError::Failed(format!("{error}; undone: {}", done.join("; "))),
            Err(e) => MigrateError::Failed(format!(
                "{error}; and restoring failed too: {e} (run zkrepl pegasus rollback --journal {} to finish it)",
                self.j.path().display()
            )),
        };
        self.stopped(step, error)
    }

    async fn step(&mut self, step: Step) -> StepResult {
        match step {
            Step::Saved => self.save_lists(),
            Step::ConfigsRewritten => self.set_flag().await,
            Step::MetasStopped => self.stop_metas().await,
            Step::ReplicasReleased => self.release().await,
            Step::MetaStarted => self.start_recovering().await,
            Step::Recovered => self.recover().await,
            Step::Checked => self.check().await,
            Step::FlagCleared => self.clear_flag(),
            Step::MetasRestarted => self.restart().await,
        }
    }

    fn env(&self, hook: Hook, hosts: &str) -> HookEnv {
        let s = &self.j.setup;
        let configs: Vec<String> = s.configs.iter().map(|c| c.path.display().to_string()).collect();
        let metas = match hook {
            Hook::StartMetas => s.others_up.join(","),
            Hook::StartMeta => s.leader.clone(),
            _ => s.metas.join(","),
        };
        let vars = [
            ("ZKREPL_HOOK", hook.option().trim_start_matches("--").to_string()),
            ("ZKREPL_META", s.leader.clone()),
            ("ZKREPL_METAS", metas),
            ("ZKREPL_HOSTS", hosts.to_string()),
            ("ZKREPL_OLD_HOSTS", s.src_hosts.clone()),
            ("ZKREPL_NEW_HOSTS", s.dst_hosts.clone()),
            ("ZKREPL_ROOT", s.root.clone()),
            ("ZKREPL_CONFIGS", configs.join(",")),
            ("ZKREPL_JOURNAL", self.j.path().display().to_string()),
        ];
        HookEnv { vars: vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect() }
    }

    /// Runs `hook` (the metas then run on `hosts`), or tells the operator.
    async fn hook(&self, step: Step, hook: Hook, hosts: &str, manual: String) -> Result<(), MigrateError> {
        let command = self.j.setup.hooks.get(hook);
        procedure::hook_or_manual(self.ctx, step, hook, command, &self.env(hook, hosts), manual, self.req.wait).await
    }

    async fn wait_until<F, Fut>(&self, what: &str, every: Duration, cond: F) -> Result<String, MigrateError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<String>, String>>,
    {
        procedure::wait_unless(self.ctx, self.req.wait, what, every, cond, || async { Ok(()) }).await
    }

    // ---- step 1 ----

    fn save_lists(&mut self) -> StepResult {
        let s = &self.j.setup;
        let write = |path: &Path, bytes: Vec<u8>| {
            crate::config::write_atomic(path, &bytes)
                .map_err(|e| MigrateError::Failed(format!("writing {}: {e}", path.display())))
        };
        write(&s.saved.apps, to_json(&s.apps))?;
        write(&s.saved.nodes, to_json(&s.nodes))?;
        let mut list = s.recovery_nodes.join("\n");
        list.push('\n');
        write(&s.saved.node_list, list.into_bytes())?;
        Ok(format!(
            "{} apps, {} replica servers ({} to recover from) in {}, {} and {}",
            s.apps.len(),
            s.nodes.len(),
            s.recovery_nodes.len(),
            s.saved.apps.display(),
            s.saved.nodes.display(),
            s.saved.node_list.display()
        ))
    }

    // ---- step 2 ----

    /// Backs `rec` up (once) and returns the file as it was.
    fn original(&self, rec: &RecoverConfig) -> Result<ConfigFile, MigrateError> {
        if !rec.backup.exists() {
            crate::config::backup(&rec.path, &rec.backup)?;
        }
        Ok(ConfigFile::read(&rec.backup)?)
    }

    async fn set_flag(&mut self) -> StepResult {
        self.j.switched = true;
        self.j.save()?;
        let dst = self.j.setup.dst_hosts.clone();
        let mut changed = 0;
        for rec in self.j.setup.configs.clone() {
            self.original(&rec)?;
            let current = ConfigFile::read(&rec.path)?;
            if current.get("zookeeper", "hosts_list") == Some(dst.as_str())
                && current.get(FLAG.0, FLAG.1) == Some("true")
            {
                continue;
            }
            write_config(&rec.path, &recovery_bytes(&current, &dst)?)?;
            changed += 1;
        }
        Ok(format!(
            "{changed} of {} config(s) rewritten: hosts_list = {dst}, recover_from_replica_server = true",
            self.j.setup.configs.len()
        ))
    }

    // ---- step 3 ----

    /// The first meta that answers at all.
    async fn answering(&self, metas: &[String]) -> Option<String> {
        for m in metas {
            if !matches!(self.client.role_of(m).await.0, Role::Down { .. }) {
                return Some(m.clone());
            }
        }
        None
    }

    /// `Some` once no meta answers and, where `hosts` answers, none is in
    /// the leader election there (a meta whose port is gone but whose
    /// session lives may still be one).
    async fn all_down(&self, hosts: &str) -> Result<Option<String>, String> {
        let s = &self.j.setup;
        if let Some(m) = self.answering(&s.metas).await {
            return Err(format!("{m} still answers"));
        }
        let c = match self.zk_or_why(hosts).await {
            Ok(c) => c,
            // An ensemble that does not answer holds no one's lead; one that
            // refuses the session (credentials, TLS) may, unseen.
            Err(e) if e.unreachable => {
                return Ok(Some(format!("no meta answers ({hosts} does not answer either)")));
            }
            Err(e) => return Err(format!("cannot read the leader election on {hosts}: {e}")),
        };
        let holders = checks::holders(&c, &s.lock_path).await?;
        if !holders.is_empty() {
            return Err(format!(
                "no meta answers, but {} still hold a node in the leader election on {hosts} (a stopped meta's session ends within [zookeeper] timeout_ms)",
                holders.iter().map(|n| n.describe()).collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(Some(format!("no meta answers, none is in the leader election on {hosts}")))
    }

    async fn stop_all(&self, step: Step, hosts: &str) -> StepResult {
        if let Ok(Some(done)) = self.all_down(hosts).await {
            return Ok(done);
        }
        let metas = self.j.setup.metas.join(", ");
        self.hook(step, Hook::StopMetas, hosts, format!("Stop every meta server ({metas}).")).await?;
        self.wait_until("every meta is down", Duration::from_millis(200), || self.all_down(hosts)).await
    }

    async fn stop_metas(&mut self) -> StepResult {
        let src = self.j.setup.src_hosts.clone();
        let done = self.stop_all(Step::MetasStopped, &src).await?;
        self.j.all_down_ms = Some(now_ms());
        self.j.election_cversion = self.election_cversion(&src).await;
        self.j.save()?;
        Ok(done)
    }

    /// The child version of the leader election's directory on `hosts`:
    /// it moves with every meta that joins or leaves it. `None` when the
    /// ensemble does not answer.
    async fn election_cversion(&self, hosts: &str) -> Option<i32> {
        let c = self.zk(hosts).await.ok()?;
        let dir = crate::zk::join(&self.j.setup.lock_path, crate::zk::LEADER_LOCK);
        c.check_stat(&dir).await.ok().map(|st| st.map_or(-1, |st| st.cversion))
    }

    // ---- step 4 ----

    /// Why the wait must start over: a meta answers, or one joined the
    /// election on the old ensemble since every meta was seen down (also
    /// while zkrepl was not running).
    async fn woke(&self) -> Option<String> {
        let s = &self.j.setup;
        if let Some(m) = self.answering(&s.metas).await {
            return Some(format!("{m} answers again"));
        }
        let (Some(then), Some(now)) = (self.j.election_cversion, self.election_cversion(&s.src_hosts).await) else {
            return None;
        };
        (now != then).then(|| format!("a meta joined the leader election on {} since they were down", s.src_hosts))
    }

    async fn release(&mut self) -> StepResult {
        let s = self.j.setup.clone();
        let since = self.j.all_down_ms.unwrap_or_else(now_ms);
        let until = since + s.release_wait_ms;
        loop {
            if let Some(why) = self.woke().await {
                // The replica servers may be following it again: the wait
                // starts over once it is stopped.
                self.j.all_down_ms = None;
                self.j.mark(Step::MetasStopped, StepState::Failed, &why)?;
                return Err(MigrateError::Failed(format!(
                    "{why} while every meta must stay stopped (a supervisor?): stop it, then resume (the wait starts over)"
                )));
            }
            let now = now_ms();
            if now >= until {
                break;
            }
            procedure::sleep(self.ctx, Duration::from_millis((until - now).min(1000))).await?;
        }
        Ok(format!(
            "{:.1} s since every meta was down ([replication] config_sync_interval_ms = {} and a margin)",
            (now_ms() - since) as f64 / 1000.0,
            s.config_sync_interval_ms
        ))
    }

    // ---- step 5 ----

    /// `Some` once `meta` leads on `hosts` (a meta under recovery may
    /// answer cluster_info with ERR_UNDER_RECOVERY instead).
    async fn leads_on(&self, meta: &str, hosts: &str) -> Result<Option<String>, String> {
        match self.client.role_of(meta).await {
            (Role::Leader, Some(info)) => {
                let on = info.get("zookeeper_hosts").unwrap_or("");
                if checks::same_hosts(on, hosts) {
                    Ok(Some(format!("{meta} leads on {on}")))
                } else {
                    Err(format!("{meta} leads on {on}, not on {hosts}"))
                }
            }
            (Role::Follower { code }, _) if code == "ERR_UNDER_RECOVERY" => {
                // It cannot say where it runs: its lock node can.
                let c = self.zk(hosts).await?;
                let holders = checks::holders(&c, &self.j.setup.lock_path).await?;
                match holders.first() {
                    Some(n) if n.data == meta => Ok(Some(format!("{meta} leads on {hosts}, under recovery"))),
                    _ => Err(format!("{meta} is under recovery, but does not hold the first lock node on {hosts}")),
                }
            }
            (Role::Down { reason }, _) => Err(format!(
                "{meta} is down ({reason}); a meta started with recover_from_replica_server = true over a ZooKeeper holding apps aborts: its log says"
            )),
            (role, _) => Err(format!("{meta}: {role:?}")),
        }
    }

    async fn start_recovering(&mut self) -> StepResult {
        let s = self.j.setup.clone();
        if let Ok(Some(done)) = self.leads_on(&s.leader, &s.dst_hosts).await {
            return Ok(done);
        }
        if let Some(m) = self.answering(&s.metas).await {
            return Err(MigrateError::Failed(format!(
                "{m} answers while every meta must be stopped: stop it, then resume"
            )));
        }
        // Checked again: a resume may come long after the plan.
        let c = self.zk(&s.dst_hosts).await.map_err(MigrateError::Failed)?;
        let apps = crate::zk::join(&s.root, "apps");
        match c.list_children(&apps).await {
            Ok(k) if !k.is_empty() => {
                return Err(MigrateError::Failed(format!(
                    "{}{apps} holds {} app(s) now: a meta started with recover_from_replica_server = true aborts on them",
                    s.dst_hosts,
                    k.len()
                )));
            }
            Ok(_) | Err(zk::Error::NoNode) => {}
            Err(e) => return Err(MigrateError::Failed(format!("reading {apps} on {}: {e}", s.dst_hosts))),
        }
        self.j.meta_start_ms = Some(now_ms());
        self.j.save()?;
        let manual = format!(
            "Start the meta server {} alone (its config names {} with recover_from_replica_server = true).",
            s.leader, s.dst_hosts
        );
        self.hook(Step::MetaStarted, Hook::StartMeta, &s.dst_hosts, manual).await?;
        let what = format!("{} leads on the new ensemble", s.leader);
        self.wait_until(&what, Duration::from_millis(200), || self.leads_on(&s.leader, &s.dst_hosts)).await
    }

    // ---- step 6 ----

    async fn recover(&mut self) -> StepResult {
        let s = self.j.setup.clone();
        let request = RecoveryRequest {
            nodes: s.nodes.iter().filter(|n| n.alive()).map(SavedNode::to_info).collect(),
            skip_bad_nodes: s.skip_bad_nodes,
            skip_lost_partitions: s.skip_lost_partitions,
        };
        let sent_before = self.j.steps.iter().filter(|r| r.step == Step::Recovered).count() > 1;
        // The meta asks every node and writes every app before it answers.
        let client = MetaClient::new(&s.leader, self.req.recovery_timeout)?;
        let reply = client.start_recovery(&s.leader, &request).await?;
        self.j.recovery_err = Some(reply.err.clone());
        self.j.recovery_hint = Some(reply.hint.clone());
        self.j.save()?;
        for line in reply.hint.lines().filter(|l| !l.trim().is_empty()) {
            self.say(Event::Note(format!("meta: {line}")));
        }
        if reply.is_ok() {
            let first = reply.hint.lines().next().unwrap_or("").trim().to_string();
            return Ok(format!("{} accepted the recovery from {} nodes: {first}", s.leader, request.nodes.len()));
        }
        // Sent by an earlier run whose answer was lost: the meta serves
        // the apps it rebuilt.
        if reply.err == "ERR_SERVICE_ALREADY_RUNNING" && sent_before {
            if self.rebuilt(&s).await? {
                return Ok(format!("{} recovered in an earlier run (it serves the rebuilt apps)", s.leader));
            }
            return Err(MigrateError::Failed(format!(
                "{} answers ERR_SERVICE_ALREADY_RUNNING to the recovery an earlier run sent, but serves no rebuilt apps on {}: look at its log, then resume or roll back",
                s.leader, s.dst_hosts
            )));
        }
        self.refused = true;
        Err(MigrateError::Failed(format!(
            "{} refused the recovery: {} ({})",
            s.leader,
            reply.err,
            reply.hint.trim().replace('\n', "; ")
        )))
    }

    /// Whether the meta serves apps and the new ensemble holds them.
    async fn rebuilt(&self, s: &Setup) -> Result<bool, MigrateError> {
        let Ok(apps) = self.client.list_apps(&s.leader).await else { return Ok(false) };
        let c = self.zk(&s.dst_hosts).await.map_err(MigrateError::Failed)?;
        let held = c.list_children(&crate::zk::join(&s.root, "apps")).await.unwrap_or_default();
        Ok(!apps.is_empty() && !held.is_empty())
    }

    // ---- step 7 ----

    /// `Some` once every node the recovery was sent is ALIVE at `meta`.
    async fn nodes_back(&self, meta: &str) -> Result<Option<String>, String> {
        let s = &self.j.setup;
        let nodes = self.client.list_nodes(meta).await.map_err(|e| e.to_string())?;
        let alive: BTreeSet<String> = nodes.iter().filter(|n| n.status == NS_ALIVE).map(|n| n.address()).collect();
        let waiting: Vec<&str> = s.recovery_nodes.iter().filter(|n| !alive.contains(*n)).map(String::as_str).collect();
        if waiting.is_empty() {
            Ok(Some(format!("{} of {} saved replica servers alive", s.recovery_nodes.len(), s.nodes.len())))
        } else {
            Err(format!("not alive yet: {}", waiting.join(", ")))
        }
    }

    /// list_apps at `meta` against the saved list; each difference said.
    async fn differences(&mut self, meta: &str) -> Result<(Vec<AppInfo>, Vec<String>), MigrateError> {
        let now = self.client.list_apps(meta).await?;
        let diffs = compare_apps(&self.j.setup.apps, &now);
        for d in diffs.iter().filter(|d| !self.j.differences.contains(d)) {
            self.say(Event::Warning(format!("after the recovery: {d}")));
        }
        // The latest comparison is the one reported.
        self.j.differences = diffs.clone();
        self.j.save()?;
        Ok((now, diffs))
    }

    async fn check(&mut self) -> StepResult {
        let leader = self.j.setup.leader.clone();
        let nodes = self
            .wait_until("every saved replica server is alive again", Duration::from_millis(500), || {
                self.nodes_back(&leader)
            })
            .await?;
        let (now, diffs) = self.differences(&leader).await?;
        let apps = now.iter().filter(|a| a.status == AS_AVAILABLE).count();
        Ok(if diffs.is_empty() {
            format!("{nodes}; {apps} apps, the same names, ids and partition counts as before")
        } else {
            format!("{nodes}; {apps} apps, {} difference(s) from before: {}", diffs.len(), diffs.join("; "))
        })
    }

    // ---- step 8 ----

    fn clear_flag(&mut self) -> StepResult {
        let dst = self.j.setup.dst_hosts.clone();
        let mut changed = 0;
        for rec in self.j.setup.configs.clone() {
            let original = self.original(&rec)?;
            let current = ConfigFile::read(&rec.path)?;
            let fin = final_bytes(&original, &dst)?;
            if current.bytes() == fin.as_slice() {
                continue;
            }
            let bytes = if current.bytes() == recovery_bytes(&original, &dst)?.as_slice() {
                fin
            } else if current.get(FLAG.0, FLAG.1).is_some_and(|v| v != "false") {
                self.say(Event::Warning(format!(
                    "{} changed since the recovery rewrote it: only its recover_from_replica_server is set to false",
                    rec.path.display()
                )));
                current.with_value(FLAG.0, FLAG.1, "false")?
            } else {
                self.say(Event::Warning(format!(
                    "{} changed since the recovery rewrote it, its recover_from_replica_server already off: left as it is",
                    rec.path.display()
                )));
                continue;
            };
            write_config(&rec.path, &bytes)?;
            changed += 1;
        }
        Ok(format!(
            "{changed} of {} config(s) rewritten: recover_from_replica_server as before (false), hosts_list = {dst}",
            self.j.setup.configs.len()
        ))
    }

    // ---- step 9 ----

    /// `Some` once `meta` leads on `hosts` and serves its apps.
    async fn serving_on(&self, meta: &str, hosts: &str) -> Result<Option<String>, String> {
        let leads = self.leads_on(meta, hosts).await?.unwrap_or_default();
        let apps = self.client.list_apps(meta).await.map_err(|e| format!("{leads}, list_apps: {e}"))?;
        Ok(Some(format!("{leads}, serving {} apps", apps.len())))
    }

    /// `Some` once every meta of `others` answers as a follower.
    async fn followers(&self, others: &[String]) -> Result<Option<String>, String> {
        for m in others {
            match self.client.role_of(m).await {
                (Role::Follower { code }, _) if code != "ERR_UNDER_RECOVERY" => {}
                (role, _) => return Err(format!("{m}: {role:?}")),
            }
        }
        Ok(Some(format!("{} follower(s) answer", others.len())))
    }

    /// Starts the leader on `hosts`, then the others that ran before.
    async fn start_all(&self, step: Step, hosts: &str) -> Result<Vec<String>, MigrateError> {
        let s = &self.j.setup;
        let mut done = Vec::new();
        if self.serving_on(&s.leader, hosts).await.is_err() {
            let manual = format!("Start the meta server {} (its config names {hosts}).", s.leader);
            self.hook(step, Hook::StartMeta, hosts, manual).await?;
        }
        let what = format!("{} serves on {hosts}", s.leader);
        done.push(self.wait_until(&what, Duration::from_millis(200), || self.serving_on(&s.leader, hosts)).await?);
        if s.others_up.is_empty() {
            return Ok(done);
        }
        if self.followers(&s.others_up).await.is_err() {
            let manual =
                format!("Start the other meta servers ({}); their configs name {hosts}.", s.others_up.join(", "));
            self.hook(step, Hook::StartMetas, hosts, manual).await?;
        }
        let followers = self
            .wait_until("every other meta answers as a follower", Duration::from_millis(200), || {
                self.followers(&s.others_up)
            })
            .await?;
        done.push(followers);
        Ok(done)
    }

    async fn restart(&mut self) -> StepResult {
        let s = self.j.setup.clone();
        let down_before: Vec<&str> =
            s.metas.iter().filter(|m| **m != s.leader && !s.others_up.contains(m)).map(String::as_str).collect();
        if !down_before.is_empty() {
            self.say(Event::Warning(format!(
                "not started, as they were down before the recovery: {} (their configs name the new ensemble)",
                down_before.join(", ")
            )));
        }
        if !self.j.notes.contains_key("restart: stopped") {
            let down = self.stop_all(Step::MetasRestarted, &s.dst_hosts).await?;
            self.j.notes.insert("restart: stopped".into(), down);
            self.j.save()?;
        }
        let mut done = self.start_all(Step::MetasRestarted, &s.dst_hosts).await?;
        // The cluster as it now loads from the new ensemble.
        let leader = s.leader.clone();
        done.push(
            self.wait_until(
                "every saved replica server is alive at the restarted leader",
                Duration::from_millis(500),
                || self.nodes_back(&leader),
            )
            .await?,
        );
        let (now, diffs) = self.differences(&s.leader).await?;
        let c = self.zk(&s.dst_hosts).await.map_err(MigrateError::Failed)?;
        let available: Vec<AppInfo> = now.into_iter().filter(|a| a.status == AS_AVAILABLE).collect();
        let missing = checks::missing_partitions_on(&c, &s.dst_hosts, &s.root, &records(&available))
            .await
            .map_err(MigrateError::Failed)?;
        if !missing.is_empty() {
            return Err(MigrateError::Failed(format!(
                "{} app or partition node(s) list_apps names are missing on {} ({})",
                missing.len(),
                s.dst_hosts,
                missing.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let held = checks::holders(&c, &s.lock_path).await.map_err(MigrateError::Failed)?.len();
        let want = 1 + s.others_up.len();
        if held < want {
            return Err(MigrateError::Failed(format!(
                "{held} of {want} metas in the leader election on {} (under {})",
                s.dst_hosts, s.lock_path
            )));
        }
        self.j.final_apps = Some(available.len());
        self.j.final_partitions = Some(available.iter().map(|a| a.partition_count.max(0) as i64).sum());
        self.j.final_nodes_alive = Some(s.recovery_nodes.len());
        self.j.save()?;
        done.push(format!(
            "{} apps with every partition node on {}, {held} metas in the leader election{}",
            available.len(),
            s.dst_hosts,
            if diffs.is_empty() { String::new() } else { format!(", {} difference(s) from before", diffs.len()) }
        ));
        Ok(done.join("; "))
    }

    // ---- undo ----

    /// Stops the metas, restores every config from its backup, starts the
    /// leader and the others on the old ensemble.
    async fn restore(&mut self) -> Result<Vec<String>, MigrateError> {
        self.j.restore_started = true;
        self.j.save()?;
        let s = self.j.setup.clone();
        let mut done = Vec::new();
        done.push(self.stop_all(Step::Recovered, &s.dst_hosts).await?);
        let mut restored = 0;
        for rec in &s.configs {
            if !rec.backup.exists() {
                continue;
            }
            if let Some(why) = edited_since(rec, &s.dst_hosts) {
                self.say(Event::Warning(why));
            }
            let before = std::fs::read(&rec.backup)
                .map_err(|e| MigrateError::Failed(format!("reading the backup {}: {e}", rec.backup.display())))?;
            if std::fs::read(&rec.path).ok().as_deref() != Some(before.as_slice()) {
                write_config(&rec.path, &before)?;
                restored += 1;
            }
        }
        done.push(format!("{restored} config(s) restored from their backups"));
        done.extend(self.start_all(Step::Recovered, &s.src_hosts).await?);
        self.j.restored = true;
        self.j.save()?;
        self.say(Event::Note(self.j.describe_state()));
        Ok(done)
    }
}

fn write_config(path: &Path, bytes: &[u8]) -> Result<(), MigrateError> {
    crate::config::write_atomic(path, bytes)
        .map_err(|e| MigrateError::Failed(format!("writing {}: {e}", path.display())))
}

/// A saved list as the file holds it: pretty JSON and a final newline.
fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).expect("the saved lists serialize");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: i32, name: &str, parts: i32, status: i32) -> AppInfo {
        AppInfo { app_id: id, app_name: name.into(), partition_count: parts, status, ..Default::default() }
    }

    #[test]
    fn apps_are_compared_by_id_name_partitions_and_status() {
        let before = [app(1, "a", 8, 1), app(2, "b", 4, 1), app(3, "c", 4, 1), app(4, "gone", 2, 6), app(5, "e", 2, 1)];
        let now = [app(1, "a", 8, 1), app(2, "b2", 4, 1), app(3, "c", 8, 1), app(5, "e", 2, 6), app(6, "new", 1, 1)];
        assert_eq!(
            compare_apps(&before, &now),
            [
                "app id 2 is named b2 (was b)",
                "app c (id 3) has 8 partitions (was 4)",
                "app e (id 5) is dropped (was available)",
                "app new (id 6) is available, and was not before",
            ]
        );
        assert_eq!(compare_apps(&before[..1], &[]), ["app a (id 1) is missing"]);
        assert!(compare_apps(&before, &before).is_empty());
    }

    #[test]
    fn the_flag_is_added_then_removed_and_a_set_one_is_cleared() {
        let path = Path::new("meta.ini");
        let text =
            b"[zookeeper]\nhosts_list = old:2181 # the old one\n\n[meta_server]\ncluster_root = /p\n\n# next\n[x]\n";
        let c = ConfigFile::parse(path, text.to_vec()).unwrap();
        let during = ConfigFile::parse(path, recovery_bytes(&c, "new:2181").unwrap()).unwrap();
        assert_eq!(during.get("meta_server", "recover_from_replica_server"), Some("true"));
        assert_eq!(during.get("zookeeper", "hosts_list"), Some("new:2181"));
        let after = final_bytes(&c, "new:2181").unwrap();
        assert_eq!(
            after,
            b"[zookeeper]\nhosts_list = new:2181 # the old one\n\n[meta_server]\ncluster_root = /p\n\n# next\n[x]\n"
        );
        let set = b"[zookeeper]\nhosts_list = old\n[meta_server]\nrecover_from_replica_server = false\n";
        let c = ConfigFile::parse(path, set.to_vec()).unwrap();
        assert_eq!(
            final_bytes(&c, "new").unwrap(),
            b"[zookeeper]\nhosts_list = new\n[meta_server]\nrecover_from_replica_server = false\n"
        );
        let during = ConfigFile::parse(path, recovery_bytes(&c, "new").unwrap()).unwrap();
        assert_eq!(
            during.bytes(),
            b"[zookeeper]\nhosts_list = new\n[meta_server]\nrecover_from_replica_server = true\n"
        );
    }
}
