//! `pegasus migrate`: moves a Pegasus cluster's metadata to a new
//! ZooKeeper ensemble, proven complete, journaled step by step, resumable
//! and reversible.
//!
//! [`prepare`] reads everything and changes nothing: it finds the leader,
//! reads the configs, and says what would stop the migration. [`execute`]
//! then runs the steps ([`Step`]), each recorded in the journal before and
//! after it runs; [`resume`] continues from a journal, re-checking what it
//! finds and skipping what is already done. [`rollback`] and
//! [`cleanup_old`] undo and finish a migration from its journal.
//!
//! The steps: stop the followers; set blind (the level recorded first);
//! copy the cluster root, verify, re-sync while it changed; stop the
//! leader and prove its ZooKeeper connection closed; the final sync and
//! verify; rewrite `[zookeeper] hosts_list` in every config; start the
//! leader on the new ensemble and restore the level; start the followers.

pub mod checks;
pub mod cleanup;
pub mod hooks;
pub mod journal;
pub(crate) mod procedure;
pub mod rollback;
pub mod sync;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zkrepl::copy::Mode;
use zkrepl::{CancellationToken, Progress, ReadSettings, RunCredential, Timeouts, Tree};
use zookeeper_client as zk;

use self::checks::DstRoot;
pub use self::cleanup::{CleanupPlan, CleanupRequest, cleanup_old, plan_cleanup};
pub use self::hooks::{FnHooks, Hook, HookEnv, HookRunner, Hooks, ShellHooks};
pub use self::journal::{AppRecord, ConfigRecord, Journal, JournalError, JournalLock, Setup, StepState};
pub use self::rollback::{RollbackRequest, rollback};
use self::sync::Trees;
use crate::client::{MetaClient, Role};
use crate::config::ConfigFile;
use crate::level::Level;
use crate::status::{StatusOptions, cluster_status};

/// The steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    FollowersStopped,
    Blind,
    Copied,
    LeaderStopped,
    FinalSync,
    ConfigsRewritten,
    LeaderStarted,
    FollowersStarted,
}

impl Step {
    pub const ALL: [Step; 8] = [
        Step::FollowersStopped,
        Step::Blind,
        Step::Copied,
        Step::LeaderStopped,
        Step::FinalSync,
        Step::ConfigsRewritten,
        Step::LeaderStarted,
        Step::FollowersStarted,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Step::FollowersStopped => "stop the follower metas",
            Step::Blind => "set the leader's level to blind",
            Step::Copied => "copy the cluster root, verify, re-sync while it changed",
            Step::LeaderStopped => "stop the leader, prove it can no longer write",
            Step::FinalSync => "sync its last writes and verify",
            Step::ConfigsRewritten => "rewrite [zookeeper] hosts_list in the configs",
            Step::LeaderStarted => "start the leader on the new ensemble, restore the level",
            Step::FollowersStarted => "start the followers on the new ensemble",
        }
    }

    pub fn number(self) -> usize {
        Step::ALL.iter().position(|s| *s == self).unwrap_or(0) + 1
    }
}

/// The steps of a procedure (a migration, a recovery), as its events and
/// its stop name them.
pub trait StepName: Copy + std::fmt::Debug + Send + Sync + 'static {
    /// Its place, from 1.
    fn number(self) -> usize;
    fn describe(self) -> &'static str;
    /// How many steps the procedure has.
    fn count() -> usize;
}

impl StepName for Step {
    fn number(self) -> usize {
        Step::number(self)
    }

    fn describe(self) -> &'static str {
        Step::describe(self)
    }

    fn count() -> usize {
        Step::ALL.len()
    }
}

/// A migration as asked.
#[derive(Debug, Clone)]
pub struct MigrateRequest {
    /// Meta servers, `host[:port],...` (any of them; the configs'
    /// server_list is added).
    pub metas: String,
    /// The new ensemble's connect string (the new `hosts_list`).
    pub dst: String,
    pub configs: Vec<PathBuf>,
    pub hooks: Hooks,
    /// The journal; beside the first config when `None`.
    pub journal: Option<PathBuf>,
    /// Copy onto a destination root that already holds a tree.
    pub update: bool,
    /// Go on although something blind does not stop runs (or could not be
    /// told); the re-syncs and the final sync after the leader stops catch
    /// what it writes.
    pub allow_drift: bool,
    /// The leader-lock path when the configs do not name one.
    pub lock_path: Option<String>,
    /// Re-sync rounds while the source changes, before giving up.
    pub max_rounds: u32,
    /// The level to restore afterwards when the leader is already blind or
    /// stopped (otherwise refused: that level is not one to come back to).
    pub restore_level: Option<Level>,
    /// How long to wait for a condition (a meta gone, a meta serving, a
    /// step done by hand).
    pub wait: Duration,
    pub meta_timeout: Duration,
    pub timeouts: Timeouts,
    pub read: ReadSettings,
    /// Mirror the tree live (a watch and a full copy while the cluster runs
    /// at its level), so blind lasts only for the catch-ups, the stop and
    /// the proof.
    pub live: bool,
    /// How to reach the old and the new ensemble (credentials, TLS, SASL).
    pub zk_access: crate::zk::ZkAccess,
}

impl MigrateRequest {
    pub fn new(metas: &str, dst: &str, configs: Vec<PathBuf>) -> MigrateRequest {
        MigrateRequest {
            metas: metas.to_string(),
            dst: dst.to_string(),
            configs,
            hooks: Hooks::default(),
            journal: None,
            update: false,
            allow_drift: false,
            lock_path: None,
            max_rounds: 3,
            restore_level: None,
            wait: Duration::from_secs(600),
            meta_timeout: Duration::from_secs(5),
            timeouts: Timeouts::default(),
            read: ReadSettings::default(),
            live: false,
            zk_access: Default::default(),
        }
    }

    /// The journal path: given, or `zkrepl-migrate.journal` beside the
    /// first config.
    pub fn journal_path(&self) -> PathBuf {
        journal::default_path(self.journal.as_deref(), &self.configs, "zkrepl-migrate.journal")
    }
}

/// What [`prepare`] found: the plan, and what stops it.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub setup: Setup,
    pub journal: PathBuf,
    /// The level stored at the leader, and what cluster_info reports.
    pub level: Level,
    pub reported_level: Option<String>,
    pub dst_root: String,
    /// Followers still up (stopped by `--stop-followers`).
    pub followers_alive: Vec<String>,
    /// What blind does not stop, running (`app: kind`), and what could not
    /// be told.
    pub in_progress: Vec<String>,
    pub unknown: Vec<String>,
    /// Reasons the migration cannot start; empty when it can.
    pub refusals: Vec<String>,
    /// Worth knowing, not stopping.
    pub warnings: Vec<String>,
}

/// What a migration (or a recovery, `S` its steps) tells its caller as it
/// goes.
#[derive(Debug, Clone)]
pub enum Event<S = Step> {
    StepStarted(S),
    StepDone {
        step: S,
        note: String,
    },
    StepSkipped {
        step: S,
        why: String,
    },
    Note(String),
    Warning(String),
    /// The operator's turn: what to do; the migration waits for the result.
    Manual {
        step: S,
        instructions: String,
    },
    HookRunning {
        hook: Hook,
        command: Option<String>,
    },
    /// A long engine operation started; its counters.
    Working {
        what: &'static str,
        progress: Arc<Progress>,
    },
}

pub trait Observer<S = Step>: Send + Sync {
    fn event(&self, e: Event<S>);
}

impl<S, F: Fn(Event<S>) + Send + Sync> Observer<S> for F {
    fn event(&self, e: Event<S>) {
        self(e)
    }
}

/// Why a migration step failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("refused: {}", .0.join("; "))]
    Refused(Vec<String>),
    #[error(transparent)]
    Meta(#[from] crate::Error),
    #[error(transparent)]
    Engine(#[from] zkrepl::Error),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("hook {} failed: {why}", .hook.option())]
    Hook { hook: Hook, why: String },
    #[error("gave up after {}s waiting until {what} ({last})", .waited.as_secs())]
    Timeout { what: String, waited: Duration, last: String },
    #[error("{0}")]
    Failed(String),
    #[error("interrupted")]
    Interrupted,
}

/// A migration (or recovery) that stopped: at which step, why, where the
/// cluster stands and what to do next.
#[derive(Debug)]
pub struct Stopped<S = Step> {
    pub step: S,
    pub error: MigrateError,
    /// Where the cluster stands, from the journal.
    pub state: String,
    pub journal: PathBuf,
}

impl<S: StepName> std::fmt::Display for Stopped<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step {} ({}) failed: {}", self.step.number(), self.step.describe(), self.error)
    }
}

impl<S: StepName> std::error::Error for Stopped<S> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// A finished migration.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub journal: PathBuf,
    pub leader: String,
    pub dst_hosts: String,
    pub root: String,
    /// Seconds from setting blind to the leader serving on the new ensemble.
    pub blind_window_seconds: Option<f64>,
    pub parts: std::collections::BTreeMap<String, f64>,
    /// Seconds between the moments of the window: blind to the stop hook,
    /// the stop hook itself, its return to the proof the leader is gone
    /// (its session ending), the proof to the start hook, the start hook to
    /// serving; and the working time (blind to the stop hook plus the proof
    /// to the start hook).
    pub timeline: Vec<(String, f64)>,
    /// Each step's last run, in seconds (its checks included).
    pub step_seconds: Vec<(Step, f64)>,
    pub notes: std::collections::BTreeMap<String, String>,
    pub level: Option<Level>,
    pub skipped: Vec<Step>,
}

/// The parts of the blind window, in the order they happen.
pub const PARTS: [&str; 9] =
    ["digest", "copy", "verify", "re-sync", "catch-up", "partition check", "stop", "final sync", "start"];

impl Report {
    /// The parts of the blind window in the order they happen.
    pub fn parts_in_order(&self) -> Vec<(&str, f64)> {
        let known = PARTS.iter().filter_map(|p| self.parts.get(*p).map(|v| (*p, *v)));
        let other = self.parts.iter().filter(|(k, _)| !PARTS.contains(&k.as_str())).map(|(k, v)| (k.as_str(), *v));
        known.chain(other).collect()
    }
}

/// What a run needs besides the request.
pub struct Context<'a, S = Step> {
    pub observer: &'a dyn Observer<S>,
    pub hooks: &'a dyn HookRunner,
    pub cancel: CancellationToken,
}

/// Reads the configs, the cluster and both ensembles; changes nothing.
/// `hooks` tells which steps have a hook (followers up are refused unless
/// one stops them).
pub async fn prepare(req: &MigrateRequest, hooks: &dyn HookRunner) -> Result<Plan, MigrateError> {
    let stop_followers = hooks.has(Hook::StopFollowers);
    let mut refusals = Vec::new();
    let mut warnings = Vec::new();
    if req.configs.is_empty() {
        refusals.push("no config file given: every meta server's config.ini is rewritten".to_string());
    }
    let configs: Vec<ConfigFile> = req.configs.iter().map(|p| ConfigFile::read(p)).collect::<Result<_, _>>()?;

    // Every meta the configs name is checked too.
    let mut metas = req.metas.clone();
    for c in &configs {
        if let Some(list) = c.get("meta_server", "server_list") {
            metas.push(',');
            metas.push_str(list);
        }
    }
    let client = MetaClient::new(&metas, req.meta_timeout)?;
    let lock_from_configs = configs
        .iter()
        .filter_map(|c| c.get("meta_server", "distributed_lock_service_parameters"))
        .filter_map(|v| v.split(',').next().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string))
        .collect::<std::collections::BTreeSet<_>>();
    if lock_from_configs.len() > 1 {
        refusals.push(format!(
            "the configs name different leader-lock paths ({})",
            lock_from_configs.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let opts = StatusOptions {
        zookeeper: true,
        lock_path: lock_from_configs.iter().next().cloned().or_else(|| req.lock_path.clone()),
        zookeeper_timeout: Some(req.timeouts.connect),
        zookeeper_access: req.zk_access.old.clone(),
    };
    let status = cluster_status(&client, &opts).await?;
    let leader = status.leader.clone();
    let src_hosts = status.zookeeper_hosts.clone().unwrap_or_default();
    let root = status.zookeeper_root.clone().unwrap_or_default();
    if src_hosts.is_empty() || root.is_empty() {
        refusals.push(format!("the leader {leader}'s cluster_info names no zookeeper_hosts or zookeeper_root"));
    }
    let lock_path = opts.lock_path.clone().unwrap_or_else(|| crate::zk::default_lock_path(&root));
    if root.trim_end_matches('/').is_empty() && !root.is_empty() {
        refusals.push(
            "zookeeper_root is / (the whole ensemble, its /zookeeper included): move the cluster under a root path first"
                .to_string(),
        );
    }
    // Backups are named for this run, so an earlier migration's are kept.
    let stamp = journal::now_ms();

    // Configs: the key must be there, the root the cluster's, the hosts the
    // cluster's (or already the new ones, for a migration resumed by hand).
    let mut records = Vec::new();
    let mut session_timeout_ms = 30_000u64;
    for c in &configs {
        let name = c.path().display().to_string();
        match c.get("zookeeper", "hosts_list") {
            None => refusals.push(format!("{name} has no [zookeeper] hosts_list")),
            Some(h) if !checks::same_hosts(h, &src_hosts) => refusals.push(format!(
                "{name}: [zookeeper] hosts_list = {h}, but the cluster runs on {src_hosts} (cluster_info)"
            )),
            Some(h) => records.push(ConfigRecord {
                path: c.path().to_path_buf(),
                backup: backup_path(c.path(), stamp),
                old_hosts: h.to_string(),
            }),
        }
        let croot = c.get("meta_server", "cluster_root").unwrap_or("/");
        if croot.trim_end_matches('/') != root.trim_end_matches('/') {
            refusals.push(format!(
                "{name}: [meta_server] cluster_root = {croot}, but cluster_info reports zookeeper_root {root}"
            ));
        }
        if let Some(t) = c.get("zookeeper", "timeout_ms").and_then(|t| t.parse::<u64>().ok()) {
            session_timeout_ms = session_timeout_ms.max(t);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in &records {
        let canon = std::fs::canonicalize(&r.path).unwrap_or(r.path.clone());
        if !seen.insert(canon) {
            refusals.push(format!("{} is given twice", r.path.display()));
        }
    }

    // The metas: only the leader may answer.
    let mut followers = Vec::new();
    let mut followers_alive = Vec::new();
    for a in &status.metas {
        if a.meta == leader {
            continue;
        }
        match &a.role {
            Role::Leader => warnings.push(format!("{} answers as the leader too (another address of it?)", a.meta)),
            Role::Down { .. } => followers.push(a.meta.clone()),
            Role::Follower { .. } | Role::NotAMeta { .. } | Role::Failed { .. } => {
                followers.push(a.meta.clone());
                followers_alive.push(a.meta.clone());
            }
        }
    }
    if !followers_alive.is_empty() && !stop_followers {
        refusals.push(format!(
            "follower metas still answer ({}): stop them first (or give --stop-followers CMD); only the leader may run during the migration",
            followers_alive.join(", ")
        ));
    }
    match status.zookeeper.as_ref().map(|z| &z.lock_nodes) {
        Some(crate::status::Query::Known(Some(nodes))) => {
            let persistent: Vec<_> = nodes.iter().filter(|n| !n.ephemeral).map(|n| n.name.clone()).collect();
            if !persistent.is_empty() {
                refusals.push(format!(
                    "the leader lock holds persistent nodes ({}): they block elections; remove them first",
                    persistent.join(", ")
                ));
            }
            let holders = nodes.iter().filter(|n| n.ephemeral && n.name.starts_with("LOCKNODE")).count();
            if holders == 0 {
                refusals.push(format!(
                    "no meta holds a node in the leader election under {lock_path}: the lock path is not the cluster's (name it in the configs' distributed_lock_service_parameters or give --lock-path); without it nothing proves the metas stopped"
                ));
            }
            if holders > 1 && !stop_followers && followers_alive.is_empty() {
                refusals.push(format!(
                    "{holders} metas hold a node in the leader election under {lock_path}: a follower still has a ZooKeeper session (stopped less than [zookeeper] timeout_ms ago?); wait, or give --stop-followers CMD"
                ));
            }
        }
        Some(crate::status::Query::Known(None)) => refusals.push(format!(
            "no leader lock at {lock_path}/{}: give --lock-path, or name it in the configs (distributed_lock_service_parameters)",
            crate::zk::LEADER_LOCK
        )),
        Some(crate::status::Query::Unknown(why)) => refusals.push(format!("cannot read the leader lock: {why}")),
        None => {}
    }
    let apps_locked = match status.zookeeper.as_ref().map(|z| &z.apps) {
        // A running leader holds `lock` for the moment of an update: only
        // a lock that stays is one a meta left.
        Some(crate::status::Query::Known(crate::zk::AppsNode::Lock)) => {
            stays_locked(&src_hosts, &req.zk_access.old, &crate::zk::join(&root, "apps"), req.timeouts.connect).await
        }
        _ => false,
    };
    match status.zookeeper.as_ref().map(|z| &z.apps) {
        Some(crate::status::Query::Known(crate::zk::AppsNode::Lock)) if apps_locked => refusals.push(format!(
            "{}/apps holds \"lock\": a meta is, or stopped, mid-update (a meta that starts on it aborts)",
            root.trim_end_matches('/')
        )),
        Some(crate::status::Query::Unknown(why)) => refusals.push(format!("cannot read the apps node: {why}")),
        _ => {}
    }

    // The destination: another ensemble, and empty unless --update.
    if !root.is_empty() {
        match checks::same_ensemble(&req.dst, &src_hosts, &root, &req.zk_access, req.timeouts.connect).await {
            Ok(Some(why)) => {
                refusals.push(format!("the destination {} is the ensemble the cluster runs on ({why})", req.dst))
            }
            Ok(None) => {}
            Err(e) => refusals.push(format!("cannot tell the destination from the source: {e}")),
        }
    }
    if let Err(e) = Tree::new(&req.dst, if root.is_empty() { "/" } else { &root }) {
        refusals.push(format!("the destination {}: {e}", req.dst));
    }
    let dst_root = if root.is_empty() {
        "unknown".to_string()
    } else {
        match checks::dst_root(&req.dst, &req.zk_access.new, &root, req.timeouts.connect).await {
            Ok(DstRoot::Missing) => "missing (created by the copy)".to_string(),
            Ok(DstRoot::Empty) => "empty".to_string(),
            Ok(DstRoot::Children(n)) if req.update => format!("holds {n} children (updated: --update)"),
            Ok(DstRoot::Children(n)) => {
                refusals.push(format!(
                    "the destination {}{root} already holds a tree ({n} children): give --update to copy onto it",
                    req.dst
                ));
                format!("holds {n} children")
            }
            Err(e) => {
                refusals.push(format!("the destination: {e}"));
                "unreachable".to_string()
            }
        }
    };

    // What blind does not stop.
    let (mut in_progress, mut unknown) = (Vec::new(), Vec::new());
    for a in status.apps.known().into_iter().flatten() {
        for (kind, state) in a.activity() {
            match state {
                Some(true) => in_progress.push(format!("{}: {kind}", a.app_name)),
                Some(false) => {}
                None => unknown.push(format!("{}: {kind}", a.app_name)),
            }
        }
    }
    if let crate::status::Query::Unknown(why) = &status.apps {
        unknown.push(format!("apps ({why})"));
    }
    if !in_progress.is_empty() && req.live {
        warnings.push(format!(
            "still writing in blind ({}): the live mirror follows it to the leader's stop",
            in_progress.join(", ")
        ));
    }
    if (!in_progress.is_empty() || !unknown.is_empty()) && !req.allow_drift && !req.live {
        let mut parts = Vec::new();
        if !in_progress.is_empty() {
            parts.push(format!("in progress: {}", in_progress.join(", ")));
        }
        if !unknown.is_empty() {
            parts.push(format!("could not tell: {}", unknown.join(", ")));
        }
        refusals.push(format!(
            "blind does not stop duplication, bulk load, backup or partition split ({}): pause them, or give --allow-drift to rely on the re-syncs",
            parts.join("; ")
        ));
    }
    if let Some(l @ (Level::Blind | Level::Stopped | Level::Invalid)) = req.restore_level {
        refusals.push(format!("--restore-level {l} is not a level to come back to (freezed, steady or lively)"));
    }
    let level = match &status.stored_level {
        crate::status::Query::Known(l @ (Level::Blind | Level::Stopped)) if req.restore_level.is_none() => {
            refusals.push(format!(
                "the leader is already at {l} (an earlier migration stopped?): give --restore-level LEVEL, the level it should run at afterwards"
            ));
            *l
        }
        crate::status::Query::Known(l) => *l,
        crate::status::Query::Unknown(why) => {
            refusals.push(format!("cannot read the leader's level: {why}"));
            Level::Invalid
        }
    };
    let apps = match &status.apps {
        crate::status::Query::Known(apps) => apps
            .iter()
            .map(|a| AppRecord {
                app_id: a.app_id,
                app_name: a.app_name.clone(),
                partition_count: a.partition_count,
                status: a.status.to_string(),
            })
            .collect(),
        crate::status::Query::Unknown(why) => {
            refusals.push(format!("cannot list the apps: {why}"));
            Vec::new()
        }
    };
    let alive_nodes = status.nodes.known().map(|n| n.alive.len()).unwrap_or(0);
    if records.len() < 1 + followers.len() {
        warnings.push(format!(
            "{} metas but {} config file(s): a meta started later on a config that still names the old ensemble would lead there (give every meta's config)",
            1 + followers.len(),
            records.len()
        ));
    }
    let journal = req.journal_path();
    let followers_up = followers_alive.clone();
    let mut all_metas: Vec<String> = vec![leader.clone()];
    all_metas.extend(followers.iter().cloned());
    Ok(Plan {
        setup: Setup {
            metas: all_metas,
            leader,
            followers,
            followers_up,
            src_hosts,
            dst_hosts: req.dst.clone(),
            root,
            lock_path,
            session_timeout_ms,
            alive_nodes,
            apps,
            configs: records,
            hooks: req.hooks.clone(),
            update: req.update,
            allow_drift: req.allow_drift,
            max_rounds: req.max_rounds.max(1),
            restore_level: req.restore_level,
            live: req.live,
        },
        journal,
        level,
        reported_level: status.reported_level.clone(),
        dst_root,
        followers_alive,
        in_progress,
        unknown,
        refusals,
        warnings,
    })
}

/// Whether `apps` still reads `lock` over a second (ten reads).
async fn stays_locked(hosts: &str, access: &zkrepl::zk::secure::Access, apps: &str, timeout: Duration) -> bool {
    let Ok(c) = checks::connect(hosts, zkrepl::Side::Source, access, timeout).await else { return true };
    for _ in 0..10 {
        match c.get_data(apps).await {
            Ok((d, _)) if d != b"lock" => return false,
            Err(_) => return true,
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    true
}

/// The backup of a config file for the run stamped `stamp`:
/// `<file>.before-migrate-<stamp>`.
/// Apps or partitions list_apps names that a tree lacks: a meta starting on
/// it would recreate them empty.
fn partitions_error(missing: &[String], where_: &str, starting: &str) -> MigrateError {
    let shown: Vec<&str> = missing.iter().take(10).map(String::as_str).collect();
    MigrateError::Failed(format!(
        "{} app or partition node(s) that list_apps names are {where_} ({}{}): a meta starting {starting} would recreate them empty",
        missing.len(),
        shown.join(", "),
        if missing.len() > 10 { ", ..." } else { "" },
    ))
}

pub fn backup_path(config: &Path, stamp: u64) -> PathBuf {
    journal::beside(config, &format!(".before-migrate-{stamp}"))
}

/// A stop before any step ran.
fn stopped_early(journal: &Path, state: &str, error: MigrateError) -> Box<Stopped> {
    Box::new(Stopped { step: Step::FollowersStopped, error, state: state.to_string(), journal: journal.to_path_buf() })
}

/// Runs a prepared migration: writes the journal and runs every step.
pub async fn execute(plan: &Plan, req: &MigrateRequest, ctx: &Context<'_>) -> Result<Report, Box<Stopped>> {
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

/// Continues the migration `journal` records, with `req`'s timeouts and
/// waits (its metas, destination and configs are the journal's).
pub async fn resume(journal: &Path, req: &MigrateRequest, ctx: &Context<'_>) -> Result<Report, Box<Stopped>> {
    let _lock = JournalLock::acquire(journal)
        .map_err(|e| stopped_early(journal, "unknown: another zkrepl holds the journal", e.into()))?;
    let j = Journal::load(journal)
        .map_err(|e| stopped_early(journal, "unknown: the journal could not be read", e.into()))?;
    if j.rolled_back || j.rollback_started || j.cleaned_up || j.cleanup_started {
        let why = if j.rolled_back || j.rollback_started {
            "was (or is being) rolled back: run the rollback again to finish it"
        } else {
            "is finished and its old tree removed (or being removed)"
        };
        return Err(stopped_early(
            journal,
            &j.describe_state(),
            MigrateError::Failed(format!("this migration {why}: start a new one with a new journal")),
        ));
    }
    let mut j = j;
    // What the operator allows now widens what the journal allowed.
    let s = &mut j.setup;
    let widened = (req.allow_drift && !s.allow_drift) || (req.update && !s.update) || req.max_rounds > s.max_rounds;
    s.allow_drift |= req.allow_drift;
    s.update |= req.update;
    s.max_rounds = s.max_rounds.max(req.max_rounds);
    s.live |= req.live;
    if req.restore_level.is_some() {
        s.restore_level = req.restore_level;
    }
    if widened {
        let note =
            format!("resumed with allow_drift {}, update {}, max_rounds {}", s.allow_drift, s.update, s.max_rounds);
        j.notes.insert("resume".into(), note);
    }
    Runner::new(j, req, ctx)?.run().await
}

struct Runner<'a> {
    j: Journal,
    req: &'a MigrateRequest,
    ctx: &'a Context<'a>,
    client: MetaClient,
    trees: Trees,
    skipped: Vec<Step>,
    /// Steps done by this run (not found done in the journal).
    this_run: Vec<Step>,
    /// The live mirror (`--live`), from before blind to the final sync.
    mirror: Option<sync::Mirror>,
    /// ZooKeeper sessions for the checks, by connect string, kept between
    /// them (a new session is a transaction on the ensemble).
    sessions: procedure::Sessions,
}

type StepResult = Result<String, MigrateError>;

impl<'a> Runner<'a> {
    fn new(j: Journal, req: &'a MigrateRequest, ctx: &'a Context<'a>) -> Result<Runner<'a>, Box<Stopped>> {
        let s = &j.setup;
        let bad = |e: String| {
            Box::new(Stopped {
                step: Step::FollowersStopped,
                error: MigrateError::Failed(format!(
                    "the journal {} does not hold a usable setup: {e}",
                    j.path().display()
                )),
                state: j.describe_state(),
                journal: j.path().to_path_buf(),
            })
        };
        let client = MetaClient::new(&s.metas.join(","), req.meta_timeout).map_err(|e| bad(e.to_string()))?;
        let tree = |hosts: &str, access: &zkrepl::zk::secure::Access| {
            Tree::new(hosts, &s.root).map(|t| t.with_access(access.clone())).map_err(|e| bad(e.to_string()))
        };
        let trees = Trees {
            src: tree(&s.src_hosts, &req.zk_access.old)?,
            dst: tree(&s.dst_hosts, &req.zk_access.new)?,
            timeouts: req.timeouts,
            read: req.read,
        };
        Ok(Runner {
            j,
            req,
            ctx,
            client,
            trees,
            skipped: Vec::new(),
            this_run: Vec::new(),
            mirror: None,
            sessions: Default::default(),
        })
    }

    fn say(&self, e: Event) {
        self.ctx.observer.event(e);
    }

    /// A session on `hosts` for a check, kept for the next one; synced,
    /// so it reads what the ensemble committed before the call.
    async fn zk(&self, hosts: &str) -> Result<zk::Client, String> {
        self.zk_or_why(hosts).await.map_err(String::from)
    }

    /// [`Runner::zk`], telling an ensemble that does not answer from one
    /// that refuses the session.
    async fn zk_or_why(&self, hosts: &str) -> Result<zk::Client, crate::zk::ConnectError> {
        let (side, access) = self.req.zk_access.of(hosts, &self.j.setup.dst_hosts);
        self.sessions.get(hosts, side, access, self.req.timeouts.connect).await
    }

    fn stopped(&self, step: Step, error: MigrateError) -> Box<Stopped> {
        Box::new(Stopped { step, error, state: self.j.describe_state(), journal: self.j.path().to_path_buf() })
    }

    async fn run(mut self) -> Result<Report, Box<Stopped>> {
        for step in Step::ALL {
            if self.j.is_done(step) && !self.redo(step).await {
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
                r = async { self.guard(step).await?; self.step(step).await } => r,
                _ = cancel.cancelled() => Err(MigrateError::Interrupted),
            };
            match r {
                Ok(note) => {
                    self.this_run.push(step);
                    self.j.mark(step, StepState::Done, &note).map_err(|e| self.stopped(step, e.into()))?;
                    self.say(Event::StepDone { step, note });
                }
                Err(error) => {
                    let note = error.to_string();
                    let _ = self.j.mark(step, StepState::Failed, &note);
                    return Err(self.stopped(step, error));
                }
            }
        }
        self.j.finished = true;
        self.j.save().map_err(|e| self.stopped(Step::FollowersStarted, e.into()))?;
        let j = &self.j;
        Ok(Report {
            journal: j.path().to_path_buf(),
            leader: j.setup.leader.clone(),
            dst_hosts: j.setup.dst_hosts.clone(),
            root: j.setup.root.clone(),
            blind_window_seconds: j.window.seconds(),
            parts: j.window.parts.clone(),
            timeline: j.window.timeline(),
            step_seconds: j.step_seconds(),
            notes: j.notes.clone(),
            level: j.recorded_level,
            skipped: self.skipped,
        })
    }

    /// A step done earlier that must be done again: blind, when the leader
    /// still runs on the old ensemble and has come back at another level.
    async fn redo(&mut self, step: Step) -> bool {
        if step != Step::Blind || self.j.is_done(Step::LeaderStopped) {
            return false;
        }
        match self.client.query_level(&self.j.setup.leader).await {
            Ok(Level::Blind) => false,
            Ok(other) => {
                // It restarted: a new session holds its lock node now.
                self.say(Event::Warning(format!("the leader is at {other} again: setting blind again")));
                self.j.leader_session = None;
                true
            }
            Err(_) => false,
        }
    }

    /// What must still hold when a step runs, whatever a resumed run finds
    /// done: once the leader is stopped, nothing may run on the old
    /// ensemble (a follower restarted by a supervisor would lead there and
    /// write what the copy no longer carries).
    async fn guard(&mut self, step: Step) -> Result<(), MigrateError> {
        let r = match step {
            // Once the rewrite began, a meta may serve on the new ensemble.
            Step::FinalSync => self.old_quiet(true, false).await,
            Step::ConfigsRewritten => self.old_quiet(!self.j.switched, false).await,
            Step::LeaderStarted | Step::FollowersStarted => self.old_quiet(false, false).await,
            _ => Ok(()),
        };
        r.map_err(MigrateError::Failed)?;
        // A final sync done in an earlier run: the old tree must still be
        // what it carried (a meta that ran on it meanwhile wrote there).
        let before_start = !self.j.steps.iter().any(|r| r.step == Step::LeaderStarted);
        if matches!(step, Step::ConfigsRewritten | Step::LeaderStarted)
            && before_start
            && !self.this_run.contains(&Step::FinalSync)
            && self.j.is_done(Step::FinalSync)
        {
            let now = sync::digest(&self.trees, &self.ctx.cancel).await?;
            if now.is_none() || now != self.j.digests.final_source {
                self.j.mark(Step::FinalSync, StepState::Failed, "the old tree changed after the final sync")?;
                return Err(MigrateError::Failed(
                    "the old tree changed after the final sync (something ran on the old ensemble): resume, and the final sync runs again".to_string(),
                ));
            }
        }
        Ok(())
    }

    /// No meta in the election on the old ensemble and, when `all_down`,
    /// no meta answering at all. `lenient`: an old ensemble that does not
    /// answer is no evidence of anything (while waiting on something else).
    async fn old_quiet(&self, all_down: bool, lenient: bool) -> Result<(), String> {
        let s = &self.j.setup;
        let c = match self.zk_or_why(&s.src_hosts).await {
            Ok(c) => c,
            // Not answering is no evidence; refusing the session is an
            // answer that hides the election.
            Err(e) if lenient && e.unreachable => return Ok(()),
            Err(e) => return Err(e.message),
        };
        // The stopped leader's own node may outlive it (a crash: until its
        // session expires); it was proven unable to write.
        let proven = self.j.leader_session.filter(|_| self.j.is_done(Step::LeaderStopped));
        let holders: Vec<String> = checks::holders(&c, &s.lock_path)
            .await?
            .iter()
            .filter(|n| Some(n.owner) != proven)
            .map(checks::LockNode::describe)
            .collect();
        if !holders.is_empty() {
            return Err(format!(
                "a meta is in the leader election on the OLD ensemble {} ({}): stop it (a supervisor restarting it? its config still names the old ensemble); then resume",
                s.src_hosts,
                holders.join(", ")
            ));
        }
        if all_down && let Some(m) = self.answering(&s.metas).await {
            return Err(format!("{m} answers again while every meta must be stopped: stop it, then resume"));
        }
        Ok(())
    }

    /// The first of `metas` that answers at all (not down).
    async fn answering(&self, metas: &[String]) -> Option<String> {
        for m in metas {
            if !matches!(self.client.role_of(m).await.0, Role::Down { .. }) {
                return Some(m.clone());
            }
        }
        None
    }

    async fn step(&mut self, step: Step) -> StepResult {
        match step {
            Step::FollowersStopped => self.stop_followers().await,
            Step::Blind => self.blind().await,
            Step::Copied => self.copy().await,
            Step::LeaderStopped => self.stop_leader().await,
            Step::FinalSync => self.final_sync().await,
            Step::ConfigsRewritten => self.rewrite_configs().await,
            Step::LeaderStarted => self.start_leader().await,
            Step::FollowersStarted => self.start_followers().await,
        }
    }

    fn env(&self, hook: Hook) -> HookEnv {
        let s = &self.j.setup;
        let configs: Vec<String> = s.configs.iter().map(|c| c.path.display().to_string()).collect();
        let vars = [
            ("ZKREPL_HOOK", hook.option().trim_start_matches("--").to_string()),
            ("ZKREPL_LEADER", s.leader.clone()),
            ("ZKREPL_FOLLOWERS", s.followers.join(",")),
            ("ZKREPL_OLD_HOSTS", s.src_hosts.clone()),
            ("ZKREPL_NEW_HOSTS", s.dst_hosts.clone()),
            ("ZKREPL_ROOT", s.root.clone()),
            ("ZKREPL_CONFIGS", configs.join(",")),
            ("ZKREPL_JOURNAL", self.j.path().display().to_string()),
        ];
        HookEnv { vars: vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect() }
    }

    /// Runs `hook`, or, without one, tells the operator `manual` and
    /// returns: the caller then waits for the condition either way.
    async fn hook_or_manual(&self, step: Step, hook: Hook, manual: String) -> Result<(), MigrateError> {
        let command = self.j.setup.hooks.get(hook);
        procedure::hook_or_manual(self.ctx, step, hook, command, &self.env(hook), manual, self.req.wait).await
    }

    /// Polls `cond` until it says done, for at most the request's wait.
    async fn wait_until<F, Fut>(&self, what: &str, every: Duration, cond: F) -> Result<String, MigrateError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<String>, String>>,
    {
        self.wait_unless(what, every, cond, || async { Ok(()) }).await
    }

    /// Like [`Runner::wait_until`], failing at once when `stop` fails.
    async fn wait_unless<F, Fut, G, Gut>(
        &self,
        what: &str,
        every: Duration,
        cond: F,
        stop: G,
    ) -> Result<String, MigrateError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<String>, String>>,
        G: FnMut() -> Gut,
        Gut: Future<Output = Result<(), String>>,
    {
        procedure::wait_unless(self.ctx, self.req.wait, what, every, cond, stop).await
    }

    // ---- step 1 ----

    async fn stop_followers(&mut self) -> StepResult {
        let followers = self.j.setup.followers.clone();
        if let Ok(Some(done)) = self.followers_down().await {
            return Ok(done);
        }
        let list = followers.join(", ");
        self.hook_or_manual(
            Step::FollowersStopped,
            Hook::StopFollowers,
            format!("Stop the follower meta servers ({list}); only the leader {} stays up.", self.j.setup.leader),
        )
        .await?;
        self.wait_until("the followers are down and out of the leader election", Duration::from_millis(200), || {
            self.followers_down()
        })
        .await
    }

    /// `Some` once no follower answers and the leader election holds only
    /// the leader's node.
    async fn followers_down(&self) -> Result<Option<String>, String> {
        let s = &self.j.setup;
        if let Some(f) = self.answering(&s.followers).await {
            return Err(format!("{f} still answers"));
        }
        let c = self.zk(&s.src_hosts).await?;
        let holders = checks::holders(&c, &s.lock_path).await?;
        if holders.is_empty() {
            return Err(format!(
                "no meta holds a node in the leader election under {}: not even the leader",
                s.lock_path
            ));
        }
        if holders.len() > 1 {
            return Err(format!(
                "{} metas hold a node in the leader election ({}); a stopped meta's session ends within {} ms",
                holders.len(),
                holders.iter().map(|n| format!("{} {}", n.name, n.data)).collect::<Vec<_>>().join(", "),
                s.session_timeout_ms
            ));
        }
        let n = s.followers.len();
        Ok(Some(if n == 0 { "no followers".to_string() } else { format!("{n} follower(s) down") }))
    }

    // ---- step 2 ----

    async fn blind(&mut self) -> StepResult {
        let leader = self.j.setup.leader.clone();
        if self.j.setup.live {
            // The full copy and the follow, while the cluster runs at its
            // level: not in the window.
            let c = self.live_catch_up().await?;
            self.say(Event::Note(format!(
                "live mirror of {} caught up ({} changed paths applied meanwhile, last catch-up {:.3} s)",
                self.j.setup.root, c.applied, c.seconds
            )));
        }
        if self.j.leader_session.is_none() {
            // The one session in the election is the leader's (the
            // followers are out): the session whose end proves it stopped.
            let s = &self.j.setup;
            let c = self.zk(&s.src_hosts).await.map_err(MigrateError::Failed)?;
            let holders = checks::holders(&c, &s.lock_path).await.map_err(MigrateError::Failed)?;
            if holders.len() != 1 {
                return Err(MigrateError::Failed(format!(
                    "{} metas hold a node in the leader election under {}, where only the leader should",
                    holders.len(),
                    s.lock_path
                )));
            }
            self.j.leader_session = Some(holders[0].owner);
            self.j.save()?;
        }
        if self.j.recorded_level.is_none() {
            // Recorded before it is changed: a rollback restores it.
            let level = match self.client.query_level(&leader).await? {
                l @ (Level::Blind | Level::Stopped) => self.j.setup.restore_level.ok_or_else(|| {
                    MigrateError::Failed(format!(
                        "the leader is at {l}: give --restore-level LEVEL, the level to restore afterwards"
                    ))
                })?,
                l => l,
            };
            self.j.recorded_level = Some(level);
            self.j.save()?;
        }
        if self.j.window.blind_at_ms.is_none() {
            self.j.window.blind_at_ms = Some(journal::now_ms());
            self.j.save()?;
        }
        self.client.control_meta(&leader, Level::Blind).await?;
        let now = self.client.query_level(&leader).await?;
        if now != Level::Blind {
            return Err(MigrateError::Failed(format!(
                "the leader {leader} reads back level {now} after blind was set"
            )));
        }
        let was = self.j.recorded_level.map(|l| l.to_string()).unwrap_or_default();
        Ok(format!("{leader} at blind (was {was})"))
    }

    // ---- step 3 ----

    fn credential(&mut self) -> Result<RunCredential, MigrateError> {
        if let Some(c) = &self.j.credential {
            return Ok(RunCredential::from_credential(c)?);
        }
        let c = RunCredential::generate();
        self.j.credential = Some(c.credential().to_string());
        self.j.save()?;
        Ok(c)
    }

    async fn round(&mut self, mode: Mode) -> Result<sync::Round, MigrateError> {
        let credential = self.credential()?;
        let observer = self.ctx.observer;
        let on_progress = move |what: &'static str, p: &Arc<Progress>| {
            observer.event(Event::Working { what, progress: p.clone() });
        };
        Ok(sync::round(&self.trees, mode, &credential, &self.ctx.cancel, &on_progress).await?)
    }

    /// The live mirror (started when missing: a resumed run starts a new
    /// one, whose full copy converges on what is there).
    fn mirror(&mut self) -> Result<&mut sync::Mirror, MigrateError> {
        if self.mirror.is_none() {
            let credential = self.credential()?;
            let m = sync::Mirror::start(&self.trees, &credential, &self.ctx.cancel);
            self.say(Event::Working { what: "live mirror", progress: m.progress.clone() });
            self.mirror = Some(m);
        }
        Ok(self.mirror.as_mut().expect("started"))
    }

    fn mirror_notes(&self) {
        for n in self.mirror.as_ref().map(|m| m.take_notes()).unwrap_or_default() {
            self.say(Event::Note(format!("live mirror: {n}")));
        }
    }

    async fn live_catch_up(&mut self) -> Result<zkrepl::sync::CatchUp, MigrateError> {
        let r = self.mirror()?.catch_up().await;
        self.mirror_notes();
        if r.is_err() {
            self.mirror = None;
        }
        let c = r?;
        // Found now, while the leader runs, not after it is stopped.
        if c.unreadable > 0 {
            return Err(MigrateError::Failed(format!(
                "{} changed node(s) under the root could not be read on the old ensemble (no READ for zkrepl's session): they cannot be copied: make them readable to it (their ACL), then resume",
                c.unreadable
            )));
        }
        Ok(c)
    }

    /// Step 3 with `--live`: every change made before blind took hold is
    /// on the new ensemble.
    async fn copy_live(&mut self) -> StepResult {
        let c = self.live_catch_up().await?;
        self.j.window.add("catch-up", c.seconds);
        self.j.save()?;
        self.check_partitions().await?;
        Ok(format!("the live mirror caught up in blind: {} changed paths applied in {:.3} s", c.applied, c.seconds))
    }

    async fn copy(&mut self) -> StepResult {
        if self.j.setup.live {
            return self.copy_live().await;
        }
        let started_before = self.j.steps.iter().filter(|r| r.step == Step::Copied).count() > 1;
        let t = Instant::now();
        let before = sync::digest(&self.trees, &self.ctx.cancel).await?;
        self.j.digests.source_before = before.clone();
        self.j.save()?;
        self.j.window.add("digest", t.elapsed().as_secs_f64());
        // A fresh copy refuses a destination with a tree; one resumed, or
        // asked to update, converges onto what is there.
        let mut mode = if self.j.setup.update || started_before { Mode::Update } else { Mode::Fresh };
        let mut prev = before;
        let rounds = self.j.setup.max_rounds;
        let mut prev_diffs = u64::MAX;
        let mut ran = 0;
        for n in 0..=rounds {
            let r = self.round(mode).await?;
            ran = n + 1;
            let part = if n == 0 { "copy" } else { "re-sync" };
            self.j.window.add(part, r.copy_seconds);
            self.j.window.add("verify", r.verify_seconds);
            let src = r.report.src_digest.clone();
            let unchanged = src.is_some() && src == prev;
            if r.equal() && unchanged {
                self.j.digests.verified_source = src;
                self.j.digests.verified_destination = r.report.dst_digest.clone();
                self.j.notes.insert("rounds".into(), ran.to_string());
                self.j.save()?;
                self.check_partitions().await?;
                return Ok(format!(
                    "{} nodes copied and verified equal{}",
                    r.report.src_nodes,
                    if n > 0 { format!(" after {n} re-sync(s)") } else { String::new() }
                ));
            }
            let diffs = r.differences.listed.len() as u64 + r.differences.unlisted;
            let changed = if r.equal() { "changed during the round".to_string() } else { r.listing(5).join(", ") };
            self.say(Event::Note(format!("the source changed during round {ran} ({diffs} differences): {changed}")));
            prev = src;
            mode = Mode::Mirror;
            // A writer that goes on at its own pace leaves about as much
            // behind each round: more rounds only lengthen the blind window.
            if n > 0 && diffs > 0 && diffs * 2 > prev_diffs {
                self.say(Event::Note("not converging: no more re-sync rounds".to_string()));
                break;
            }
            prev_diffs = diffs;
        }
        if self.j.setup.allow_drift {
            self.j.notes.insert("rounds".into(), format!("{ran} (still changing)"));
            self.j.save()?;
            self.check_partitions().await?;
            self.say(Event::Warning(
                "the source still changes in blind (--allow-drift): the final sync after the leader stops catches the rest"
                    .to_string(),
            ));
            return Ok(format!("copied; still changing after {} re-sync(s)", ran - 1));
        }
        Err(MigrateError::Failed(format!(
            "the source kept changing during {ran} rounds while the leader was blind: something blind does not stop writes (duplication, bulk load, backup, split, app envs): pause it and resume, or resume with --allow-drift"
        )))
    }

    async fn check_partitions(&mut self) -> Result<(), MigrateError> {
        let t = Instant::now();
        let r = self.missing_partitions().await;
        self.j.window.add("partition check", t.elapsed().as_secs_f64());
        r
    }

    async fn missing_partitions(&self) -> Result<(), MigrateError> {
        let s = &self.j.setup;
        let missing = self.partitions_missing_on(&s.dst_hosts).await?;
        if missing.is_empty() {
            return Ok(());
        }
        let on_src = self.partitions_missing_on(&s.src_hosts).await.unwrap_or_default();
        let also = if on_src.is_empty() { "" } else { "; missing on the source too" };
        Err(partitions_error(&missing, &format!("missing on the destination{also}"), "there"))
    }

    /// Every app and partition list_apps named, on the old tree.
    async fn partitions_on_old(&self) -> Result<(), MigrateError> {
        let missing = self.partitions_missing_on(&self.j.setup.src_hosts).await?;
        if missing.is_empty() {
            return Ok(());
        }
        Err(partitions_error(&missing, "missing on the old tree after the leader stopped", "on its copy"))
    }

    /// The apps and partitions list_apps named that `hosts` lacks.
    async fn partitions_missing_on(&self, hosts: &str) -> Result<Vec<String>, MigrateError> {
        let s = &self.j.setup;
        let c = self.zk(hosts).await.map_err(MigrateError::Failed)?;
        checks::missing_partitions_on(&c, hosts, &s.root, &s.apps).await.map_err(MigrateError::Failed)
    }

    // ---- step 4 ----

    async fn stop_leader(&mut self) -> StepResult {
        let s = self.j.setup.clone();
        let t = Instant::now();
        let session = self.j.leader_session;
        // Stopped already, and proven: nothing to do. Not answering but
        // still connected (a stop cut short): stopping again is safe.
        if !matches!(self.leader_gone(session).await, Ok(Some(_))) {
            self.j.window.mark("stop hook called");
            self.hook_or_manual(
                Step::LeaderStopped,
                Hook::StopLeader,
                format!("Stop the leader meta server {} (it is at level blind).", s.leader),
            )
            .await?;
            self.j.window.mark("stop hook returned");
        }
        let proof = self
            .wait_until(
                "the old leader no longer answers and its ZooKeeper connection is closed",
                Duration::from_millis(100),
                || self.leader_gone(session),
            )
            .await?;
        self.j.window.mark("stop proven");
        self.j.window.add("stop", t.elapsed().as_secs_f64());
        self.j.notes.insert("stop proof".into(), proof.clone());
        self.j.save()?;
        Ok(proof)
    }

    /// `Some(proof)` once the leader does not answer and cannot write: its
    /// lock node is gone (its session ended), or its port refuses
    /// connections (the process is gone) and, twice a second apart, no
    /// member of the old ensemble lists a connection of its session
    /// (`cons`). Meanwhile no other meta may have taken the election.
    async fn leader_gone(&self, session: Option<i64>) -> Result<Option<String>, String> {
        let s = &self.j.setup;
        let refused = match self.client.cluster_info_at(&s.leader).await {
            Err(crate::Error::Refused { .. }) => true,
            Err(e) if e.is_down() => false,
            _ => return Err(format!("{} still answers", s.leader)),
        };
        if let Some(f) = self.answering(&s.followers).await {
            return Err(format!("{f} answers again: a follower must stay stopped"));
        }
        let c = self.zk(&s.src_hosts).await?;
        let nodes = checks::holders(&c, &s.lock_path).await?;
        let others: Vec<String> = nodes.iter().filter(|n| Some(n.owner) != session).map(|n| n.name.clone()).collect();
        if !others.is_empty() {
            return Err(format!(
                "another meta joined the leader election on the old ensemble ({}): stop it",
                others.join(", ")
            ));
        }
        let Some(sid) = session else {
            return if nodes.is_empty() {
                Ok(Some("no meta holds a node in the leader election".to_string()))
            } else {
                Err("a meta still holds a node in the leader election".to_string())
            };
        };
        if !nodes.iter().any(|n| n.owner == sid) {
            return Ok(Some(format!("its lock node is gone: session 0x{sid:x} ended")));
        }
        if !refused {
            return Err(format!(
                "{} does not answer, but its port does not refuse connections either (hung?), and its session 0x{sid:x} still holds the lock: waiting for the session to end (up to {} ms)",
                s.leader, s.session_timeout_ms
            ));
        }
        // The meta connects only to its hosts_list, which is the cluster's.
        let members: Vec<String> = checks::host_set(&s.src_hosts).into_iter().collect();
        for round in 0..2 {
            if round > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            match checks::connected_sessions(&members, Duration::from_secs(2)).await {
                Some(live) if !live.contains(&sid) => {}
                Some(_) => return Err(format!("its session 0x{sid:x} is still connected")),
                None => {
                    return Err(format!(
                        "its lock node (session 0x{sid:x}) is still there, and not every member lists its connections (cons not allowed by 4lw.commands.whitelist): waiting for the session to end, up to {} ms",
                        s.session_timeout_ms
                    ));
                }
            }
        }
        // Still so after the second round: the port refusing, no one else
        // in the election.
        if !matches!(self.client.cluster_info_at(&s.leader).await, Err(crate::Error::Refused { .. })) {
            return Err(format!("{}'s port answers again", s.leader));
        }
        let again = checks::holders(&c, &s.lock_path).await?;
        if again.iter().any(|n| n.owner != sid) {
            return Err("another meta joined the leader election on the old ensemble".to_string());
        }
        Ok(Some(format!(
            "its port refuses connections and no member of {} ({}) lists a connection of its session 0x{sid:x} (cons, twice a second apart); the session itself ends within {} ms",
            s.src_hosts,
            members.join(","),
            s.session_timeout_ms
        )))
    }

    // ---- step 5 ----

    /// Step 5 with `--live`: the mirror's end: a last catch-up, then a
    /// verify (data, ACLs, sequence counters) between two marks with no
    /// change on the old tree between them. ACLs are read again only where
    /// a node's stat shows them set since they were last read.
    async fn final_live(&mut self) -> StepResult {
        let t = Instant::now();
        // Where the watch stands before the checks read the old tree.
        let before = self.live_catch_up().await?;
        let mirror = self.mirror.take().expect("started");
        // The old tree stands still now (the leader is stopped): what holds
        // for it holds for its copy once the verify proves the two equal,
        // so it is checked beside the verify, not after it.
        let src = self.j.setup.src_hosts.clone();
        let checks = async {
            let t = Instant::now();
            let (partitions, unlocked) = tokio::join!(self.partitions_on_old(), self.check_apps_unlocked(&src));
            (partitions.and(unlocked), t.elapsed().as_secs_f64())
        };
        let (r, (mut checked, check_seconds)) = tokio::join!(mirror.finish(), checks);
        let r = r?;
        // The old tree changed after the checks began (as far as the watch
        // tells; the verify's round took it in): they are repeated on the
        // copy, which nothing writes now and which the verify proved equal.
        let still = (r.final_events, r.final_watch_resets) == (before.events, before.watch_resets);
        if r.settled && !still {
            self.say(Event::Note(
                "the old tree changed while it was checked: checking the new tree's partitions and apps lock instead"
                    .to_string(),
            ));
            let dst = self.j.setup.dst_hosts.clone();
            let (partitions, unlocked) = tokio::join!(self.missing_partitions(), self.check_apps_unlocked(&dst));
            checked = partitions.and(unlocked);
        }
        let Some(v) = r.verify.as_ref() else {
            return Err(MigrateError::Failed("the live mirror ended without its verify".to_string()));
        };
        if !r.settled {
            return Err(MigrateError::Failed(format!(
                "the old tree still changed (or differed) after the leader stopped, through {} rounds of catch-up and verify ({:?}): something else writes to it; find and stop it, then resume",
                r.end_rounds, v.counts
            )));
        }
        self.j.digests.final_source = v.src_digest.clone();
        self.j.digests.final_destination = v.dst_digest.clone();
        self.j.window.add("final sync", t.elapsed().as_secs_f64());
        self.j.notes.insert(
            "final checks".into(),
            format!("partitions and apps lock checked on the old tree beside the verify, {check_seconds:.3} s"),
        );
        self.j.save()?;
        checked?;
        Ok(format!(
            "{} nodes equal after the leader stopped (catch-up and verify, {} round(s); {} ACLs taken from earlier reads, {} read)",
            v.src_nodes, r.end_rounds, r.status.acls_remembered, r.status.acls_read
        ))
    }

    async fn final_sync(&mut self) -> StepResult {
        if self.j.setup.live {
            return self.final_live().await;
        }
        let t = Instant::now();
        let rounds = self.j.setup.max_rounds;
        for n in 0..=rounds {
            let r = self.round(Mode::Mirror).await?;
            // A verify is not a snapshot: a write behind its walk passes
            // unseen. The source digested once more, unchanged, proves the
            // tree stood still through the verify.
            let again = if r.equal() { sync::digest(&self.trees, &self.ctx.cancel).await? } else { None };
            if r.equal() && again.is_some() && again == r.report.src_digest {
                self.j.digests.final_source = r.report.src_digest.clone();
                self.j.digests.final_destination = r.report.dst_digest.clone();
                self.j.window.add("final sync", t.elapsed().as_secs_f64());
                self.j.save()?;
                self.check_partitions().await?;
                let dst = self.j.setup.dst_hosts.clone();
                self.check_apps_unlocked(&dst).await?;
                return Ok(format!(
                    "{} nodes equal after the leader stopped ({} written by the final sync)",
                    r.report.src_nodes, r.written
                ));
            }
            let what = if r.equal() { "it changed during the verify".to_string() } else { r.listing(5).join(", ") };
            self.say(Event::Warning(format!(
                "the old tree changed after the leader stopped (round {}): {what}",
                n + 1
            )));
        }
        Err(MigrateError::Failed(
            "the old tree keeps changing with the leader and followers stopped: something else writes to it; find and stop it, then resume"
                .to_string(),
        ))
    }

    /// A leader stopped mid-update leaves `apps` = `lock`, and a meta that
    /// starts on it aborts: say so before the configs point at it.
    async fn check_apps_unlocked(&self, hosts: &str) -> Result<(), MigrateError> {
        let s = &self.j.setup;
        let apps = crate::zk::join(&s.root, "apps");
        let c = self.zk(hosts).await.map_err(MigrateError::Failed)?;
        match c.get_data(&apps).await {
            Ok((d, _)) if d == b"lock" => Err(MigrateError::Failed(format!(
                "{apps} holds \"lock\": the leader stopped mid-update, and a meta starting on it aborts; it was copied as the old ensemble holds it: check the old cluster's state before going on"
            ))),
            Ok(_) => Ok(()),
            Err(e) => Err(MigrateError::Failed(format!("reading {apps} on {hosts}: {e}"))),
        }
    }

    // ---- step 6 ----

    async fn rewrite_configs(&mut self) -> StepResult {
        let t = Instant::now();
        let dst = self.j.setup.dst_hosts.clone();
        let mut changed = 0;
        // Recorded before the first file is touched: a rollback then
        // restores every config, even after a rewrite cut short.
        self.j.switched = true;
        self.j.save()?;
        for rec in self.j.setup.configs.clone() {
            let file = ConfigFile::read(&rec.path)?;
            if file.get("zookeeper", "hosts_list") == Some(dst.as_str()) {
                continue;
            }
            crate::config::backup(&rec.path, &rec.backup)?;
            let bytes = file.with_value("zookeeper", "hosts_list", &dst)?;
            crate::config::write_atomic(&rec.path, &bytes)
                .map_err(|e| MigrateError::Failed(format!("writing {}: {e}", rec.path.display())))?;
            changed += 1;
        }
        self.j.window.add("start", t.elapsed().as_secs_f64());
        self.j.save()?;
        let backup = self.j.setup.configs.first().map(|c| c.backup.display().to_string()).unwrap_or_default();
        Ok(format!("{changed} of {} config(s) rewritten (backups such as {backup})", self.j.setup.configs.len()))
    }

    // ---- step 7 ----

    async fn start_leader(&mut self) -> StepResult {
        let s = self.j.setup.clone();
        let t = Instant::now();
        // Started only when it is down: one starting (not serving yet) is
        // waited for, one on the old ensemble is an error.
        match self.client.role_of(&s.leader).await {
            (Role::Leader, Some(info))
                if !checks::same_hosts(info.get("zookeeper_hosts").unwrap_or(""), &s.dst_hosts) =>
            {
                return Err(MigrateError::Failed(format!(
                    "{} serves on {} (its config was not rewritten?): stop it, check its config names {}, then resume",
                    s.leader,
                    info.get("zookeeper_hosts").unwrap_or(""),
                    s.dst_hosts
                )));
            }
            _ => {}
        }
        if matches!(self.client.role_of(&s.leader).await.0, Role::Down { .. }) {
            self.j.window.mark("start hook called");
            self.hook_or_manual(
                Step::LeaderStarted,
                Hook::StartLeader,
                format!("Start the leader meta server {} (its config now names {}).", s.leader, s.dst_hosts),
            )
            .await?;
            self.j.window.mark("start hook returned");
        }
        self.wait_unless(
            "the leader serves on the new ensemble",
            Duration::from_millis(100),
            || self.serving_on_new(),
            || self.old_quiet(false, true),
        )
        .await?;
        if self.j.window.serving_at_ms.is_none() {
            self.j.window.serving_at_ms = Some(journal::now_ms());
        }
        self.j.window.add("start", t.elapsed().as_secs_f64());
        self.j.save()?;
        // A restarted meta comes back at meta_function_level_on_start.
        let level = self.j.recorded_level.unwrap_or(Level::Steady);
        self.client.control_meta(&s.leader, level).await?;
        let now = self.client.query_level(&s.leader).await?;
        if now != level {
            return Err(MigrateError::Failed(format!("the leader reads back level {now} after {level} was restored")));
        }
        let alive = self
            .wait_until("the replica servers are back", Duration::from_millis(200), || async {
                let nodes = self.client.list_nodes(&s.leader).await.map_err(|e| e.to_string())?;
                let alive = nodes.iter().filter(|n| n.status == crate::messages::NS_ALIVE).count();
                if alive >= s.alive_nodes {
                    Ok(Some(alive))
                } else {
                    Err(format!("{alive} of {} replica servers alive", s.alive_nodes))
                }
                .map(|v| v.map(|a| a.to_string()))
            })
            .await?;
        let reported = self
            .client
            .cluster_info_at(&s.leader)
            .await
            .ok()
            .and_then(|i| i.get("meta_function_level").map(str::to_string))
            .unwrap_or_default();
        if reported != level.name() {
            self.say(Event::Warning(format!(
                "cluster_info reports level {reported} while {level} is set (freezed: too few replica servers alive for the meta)"
            )));
        }
        Ok(format!(
            "{} serves on {} at level {level} (reported {reported}), {alive} replica servers alive",
            s.leader, s.dst_hosts
        ))
    }

    /// `Some` once the leader answers cluster_info naming the new hosts.
    async fn serving_on_new(&self) -> Result<Option<String>, String> {
        let s = &self.j.setup;
        match self.client.role_of(&s.leader).await {
            (Role::Leader, Some(info)) => {
                let hosts = info.get("zookeeper_hosts").unwrap_or("");
                if checks::same_hosts(hosts, &s.dst_hosts) {
                    Ok(Some(format!("{} serves on {hosts}", s.leader)))
                } else {
                    Err(format!("{} serves on {hosts}", s.leader))
                }
            }
            (role, _) => Err(format!("{}: {role:?}", s.leader)),
        }
    }

    // ---- step 8 ----

    async fn start_followers(&mut self) -> StepResult {
        let s = self.j.setup.clone();
        let down_before: Vec<&String> = s.followers.iter().filter(|f| !s.followers_up.contains(f)).collect();
        if !down_before.is_empty() {
            self.say(Event::Warning(format!(
                "not started, as they were down before the migration: {}",
                down_before.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        if s.followers_up.is_empty() {
            return Ok("no followers to start".to_string());
        }
        let mut any_down = false;
        for f in &s.followers_up {
            any_down |= matches!(self.client.role_of(f).await.0, Role::Down { .. });
        }
        if any_down {
            self.hook_or_manual(
                Step::FollowersStarted,
                Hook::StartFollowers,
                format!(
                    "Start the follower meta servers ({}); their configs now name {}.",
                    s.followers_up.join(", "),
                    s.dst_hosts
                ),
            )
            .await?;
        }
        self.wait_unless(
            "every follower answers on the new ensemble",
            Duration::from_millis(200),
            || self.followers_on_new(),
            || self.old_quiet(false, true),
        )
        .await
    }

    async fn followers_on_new(&self) -> Result<Option<String>, String> {
        let s = &self.j.setup;
        for f in &s.followers_up {
            match self.client.role_of(f).await {
                (Role::Follower { .. }, _) => {}
                (role, _) => return Err(format!("{f}: {role:?}")),
            }
        }
        let c = self.zk(&s.dst_hosts).await?;
        let held = checks::holders(&c, &s.lock_path).await?.len();
        let want = 1 + s.followers_up.len();
        if held < want {
            return Err(format!("{held} of {want} metas in the leader election on the new ensemble"));
        }
        Ok(Some(format!(
            "{} follower(s) answer; {held} metas in the election on {}",
            s.followers_up.len(),
            s.dst_hosts
        )))
    }
}
