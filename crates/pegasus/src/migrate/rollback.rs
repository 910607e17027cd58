//! `pegasus rollback`: puts a cluster back on its old ensemble from a
//! migration's journal, wherever the migration stopped: the metas stopped
//! if they run on the new ensemble, the configs restored from their
//! backups, the leader started on the old ensemble, the recorded level
//! restored, the followers started. Refused once the old tree was removed.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::checks;
use super::{Context, Event, Hook, Hooks, Journal, MigrateError, MigrateRequest, Runner, Step};
use crate::client::Role;
use crate::config::ConfigFile;

/// A rollback as asked.
#[derive(Debug, Clone)]
pub struct RollbackRequest {
    pub journal: PathBuf,
    /// Hooks given now replace the journal's.
    pub hooks: Hooks,
    pub wait: Duration,
    pub meta_timeout: Duration,
    pub timeouts: zkrepl::Timeouts,
    pub read: zkrepl::ReadSettings,
    /// How to reach the old and the new ensemble (credentials, TLS, SASL).
    pub zk_access: crate::zk::ZkAccess,
}

impl RollbackRequest {
    pub fn new(journal: PathBuf) -> RollbackRequest {
        let m = MigrateRequest::new("", "", Vec::new());
        RollbackRequest {
            journal,
            hooks: Hooks::default(),
            wait: m.wait,
            meta_timeout: m.meta_timeout,
            timeouts: m.timeouts,
            read: m.read,
            zk_access: m.zk_access,
        }
    }

    fn as_migrate(&self) -> MigrateRequest {
        let mut m = MigrateRequest::new("", "", Vec::new());
        m.wait = self.wait;
        m.meta_timeout = self.meta_timeout;
        m.zk_access = self.zk_access.clone();
        m.timeouts = self.timeouts;
        m.read = self.read;
        m
    }
}

/// What a rollback will do, for the operator to confirm.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackPlan {
    pub journal: PathBuf,
    pub state: String,
    pub actions: Vec<String>,
    pub warnings: Vec<String>,
    /// Reasons not to roll back; empty when it can.
    pub refusals: Vec<String>,
}

/// What a rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    pub journal: PathBuf,
    pub done: Vec<String>,
}

fn load(req: &RollbackRequest) -> Result<Journal, MigrateError> {
    let mut j = Journal::load(&req.journal)?;
    if j.cleaned_up || j.cleanup_started {
        return Err(MigrateError::Failed(
            "the old tree was removed (cleanup-old ran): there is nothing to roll back to".to_string(),
        ));
    }
    j.setup.hooks = j.setup.hooks.overridden_by(&req.hooks);
    Ok(j)
}

/// Reads the journal and the cluster; changes nothing.
pub async fn plan_rollback(req: &RollbackRequest) -> Result<RollbackPlan, MigrateError> {
    let j = load(req)?;
    let s = &j.setup;
    let mut actions = Vec::new();
    let mut warnings = Vec::new();
    let mut refusals = Vec::new();
    // The old tree must still be the one the cluster left (unless this
    // rollback began earlier and started the leader on it already).
    if let Some(proven) = j.digests.final_source.as_ref().filter(|_| !j.rollback_started) {
        let tree = zkrepl::Tree::new(&s.src_hosts, &s.root)?.with_access(req.zk_access.old.clone());
        let mut d = zkrepl::digest::DigestRequest::new(tree);
        d.timeouts = req.timeouts;
        d.read = req.read;
        match zkrepl::digest::run(&d, &zkrepl::Progress::new()).await {
            Ok(r) if r.digest.as_ref() == Some(proven) => {}
            Ok(r) => refusals.push(format!(
                "the old tree changed since the leader left it ({} nodes now, another digest): something wrote to the old ensemble, so it is not the cluster's state any more",
                r.nodes
            )),
            Err(e) => refusals.push(format!("cannot digest the old tree to tell that it is intact: {e}")),
        }
    }
    for rec in &s.configs {
        let (Ok(now), Ok(before)) = (std::fs::read(&rec.path), std::fs::read(&rec.backup)) else { continue };
        let Ok(file) = ConfigFile::parse(&rec.backup, before.clone()) else { continue };
        let rewritten = file.with_value("zookeeper", "hosts_list", &s.dst_hosts).unwrap_or_default();
        if now != before && now != rewritten {
            warnings.push(format!(
                "{} was changed since the migration rewrote it: restoring its backup discards those changes",
                rec.path.display()
            ));
        }
    }
    if j.switched {
        actions.push(format!("stop the metas if they run on the new ensemble {}", s.dst_hosts));
        actions.push(format!("restore {} config file(s) from their backups", s.configs.len()));
        // What the new ensemble holds now, against what was verified.
        let tree = zkrepl::Tree::new(&s.dst_hosts, &s.root)?.with_access(req.zk_access.new.clone());
        let mut d = zkrepl::digest::DigestRequest::new(tree);
        d.timeouts = req.timeouts;
        d.read = req.read;
        match zkrepl::digest::run(&d, &zkrepl::Progress::new()).await {
            Ok(r) if r.digest.is_some() && r.digest == j.digests.final_destination => {}
            Ok(r) => warnings.push(format!(
                "the new ensemble's tree changed since the switch ({} nodes now): those changes are lost by going back",
                r.nodes
            )),
            Err(e) => warnings.push(format!("cannot digest the new ensemble's tree to tell what would be lost: {e}")),
        }
    }
    if j.is_done(Step::LeaderStopped) || j.switched {
        actions.push(format!("start the leader {} on the old ensemble {}", s.leader, s.src_hosts));
    }
    if let Some(l) = j.recorded_level {
        actions.push(format!("restore the leader's level to {l}"));
    }
    if j.state(Step::FollowersStopped).is_some() && !s.followers_up.is_empty() {
        actions.push(format!("start the followers ({})", s.followers_up.join(", ")));
    }
    if actions.is_empty() {
        actions.push("nothing to undo: the migration changed nothing yet".to_string());
    }
    Ok(RollbackPlan { journal: req.journal.clone(), state: j.describe_state(), actions, warnings, refusals })
}

/// Rolls back; each action checks first whether it is needed, so a
/// rollback interrupted and run again converges.
pub async fn rollback(req: &RollbackRequest, ctx: &Context<'_>) -> Result<RollbackReport, MigrateError> {
    let plan = plan_rollback(req).await?;
    if !plan.refusals.is_empty() {
        return Err(MigrateError::Refused(plan.refusals));
    }
    let _lock = super::JournalLock::acquire(&req.journal)?;
    let j = load(req)?;
    let m = req.as_migrate();
    let mut r = Runner::new(j, &m, ctx).map_err(|s| s.error)?;
    let mut done = Vec::new();
    let s = r.j.setup.clone();
    // Recorded before the first action: the migration cannot be resumed
    // any more, this rollback can be run again.
    r.j.rollback_started = true;
    r.j.save()?;

    if r.j.switched {
        // Metas on the new ensemble write there: stop them first.
        // Stopped unless its port refuses (a hung meta times out, and its
        // session, alive, would still lead on the new ensemble).
        let refused = matches!(r.client.cluster_info_at(&s.leader).await, Err(crate::Error::Refused { .. }));
        if !refused {
            r.hook_or_manual(
                Step::LeaderStopped,
                Hook::StopLeader,
                format!("Stop the leader meta server {}.", s.leader),
            )
            .await?;
            r.wait_until("the leader is down", Duration::from_millis(100), || async {
                match r.client.role_of(&s.leader).await.0 {
                    Role::Down { .. } => Ok(Some("down".to_string())),
                    other => Err(format!("{}: {other:?}", s.leader)),
                }
            })
            .await?;
            done.push(format!("stopped the leader {}", s.leader));
        }
        let up: Vec<String> = futures::future::join_all(s.followers.iter().map(|f| r.client.role_of(f)))
            .await
            .into_iter()
            .zip(&s.followers)
            .filter(|((role, _), _)| !matches!(role, Role::Down { .. }))
            .map(|(_, f)| f.clone())
            .collect();
        if !up.is_empty() {
            r.hook_or_manual(
                Step::FollowersStopped,
                Hook::StopFollowers,
                format!("Stop the follower meta servers ({}).", up.join(", ")),
            )
            .await?;
            r.wait_until("the followers are down", Duration::from_millis(200), || async {
                for f in &up {
                    if !matches!(r.client.role_of(f).await.0, Role::Down { .. }) {
                        return Err(format!("{f} still answers"));
                    }
                }
                Ok(Some("down".to_string()))
            })
            .await?;
            done.push(format!("stopped the followers ({})", up.join(", ")));
        }
        // No meta may still hold the election on the new ensemble (a hung
        // one, its session not ended) when the leader starts on the old.
        r.wait_until("no meta is in the leader election on the new ensemble", Duration::from_millis(200), || async {
            let c = match checks::connect(
                &s.dst_hosts,
                zkrepl::Side::Destination,
                &r.req.zk_access.new,
                r.req.timeouts.connect,
            )
            .await
            {
                Ok(c) => c,
                // An ensemble that does not answer holds no one's lead; one
                // that refuses the session (credentials, TLS) may, unseen.
                Err(e) if e.unreachable => return Ok(Some(format!("the new ensemble does not answer ({e})"))),
                Err(e) => return Err(format!("cannot read the leader election on the new ensemble: {e}")),
            };
            let held = checks::holders(&c, &s.lock_path).await?.len();
            if held == 0 { Ok(Some("none".to_string())) } else { Err(format!("{held} metas still hold a node there")) }
        })
        .await?;
        let mut restored = 0;
        for rec in &s.configs {
            let original = match std::fs::read(&rec.backup) {
                Ok(b) => b,
                // Never backed up, so never rewritten (the backup comes
                // first): fine while it still names the old ensemble.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let file = ConfigFile::read(&rec.path)?;
                    if file.get("zookeeper", "hosts_list").is_some_and(|h| checks::same_hosts(h, &s.src_hosts)) {
                        continue;
                    }
                    return Err(MigrateError::Failed(format!(
                        "{} does not name the old ensemble and its backup {} is missing",
                        rec.path.display(),
                        rec.backup.display()
                    )));
                }
                Err(e) => {
                    return Err(MigrateError::Failed(format!("cannot read the backup {}: {e}", rec.backup.display())));
                }
            };
            // Checked before it is written back: the backup is a config.
            ConfigFile::parse(&rec.backup, original.clone())?;
            let now = std::fs::read(&rec.path).unwrap_or_default();
            if now != original {
                crate::config::write_atomic(&rec.path, &original)
                    .map_err(|e| MigrateError::Failed(format!("writing {}: {e}", rec.path.display())))?;
                restored += 1;
            }
        }
        r.j.switched = false;
        r.j.notes.insert("rollback".into(), "configs restored".into());
        r.j.save()?;
        done.push(format!("restored {restored} config file(s)"));
    }

    // The leader on the old ensemble.
    let on_old = || async {
        match r.client.role_of(&s.leader).await {
            (Role::Leader, Some(info))
                if checks::same_hosts(info.get("zookeeper_hosts").unwrap_or(""), &s.src_hosts) =>
            {
                Ok(Some(format!("{} serves on {}", s.leader, s.src_hosts)))
            }
            (role, _) => Err(format!("{}: {role:?}", s.leader)),
        }
    };
    if on_old().await.is_err() {
        r.hook_or_manual(
            Step::LeaderStarted,
            Hook::StartLeader,
            format!(
                "Start the leader meta server {} (its config names the old ensemble {} again).",
                s.leader, s.src_hosts
            ),
        )
        .await?;
        r.wait_until("the leader serves on the old ensemble", Duration::from_millis(100), on_old).await?;
        done.push(format!("started the leader {} on {}", s.leader, s.src_hosts));
    }
    if let Some(level) = r.j.recorded_level {
        let now = r.client.query_level(&s.leader).await?;
        if now != level {
            r.client.control_meta(&s.leader, level).await?;
            let back = r.client.query_level(&s.leader).await?;
            if back != level {
                return Err(MigrateError::Failed(format!("the leader reads back level {back} after {level} was set")));
            }
        }
        done.push(format!("level {level}"));
    }
    if r.j.state(Step::FollowersStopped).is_some() && !s.followers_up.is_empty() {
        let answering = || async {
            for f in &s.followers_up {
                if !matches!(r.client.role_of(f).await.0, Role::Follower { .. }) {
                    return Err(format!("{f} does not answer as a follower"));
                }
            }
            Ok(Some("followers up".to_string()))
        };
        if answering().await.is_err() {
            r.hook_or_manual(
                Step::FollowersStarted,
                Hook::StartFollowers,
                format!("Start the follower meta servers ({}).", s.followers_up.join(", ")),
            )
            .await?;
            r.wait_until("the followers answer", Duration::from_millis(200), answering).await?;
            done.push(format!("started the followers ({})", s.followers_up.join(", ")));
        }
    }
    r.j.rolled_back = true;
    r.j.save()?;
    r.say(Event::Note(r.j.describe_state()));
    Ok(RollbackReport { journal: req.journal.clone(), done })
}
