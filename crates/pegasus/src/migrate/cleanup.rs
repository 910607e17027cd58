//! `pegasus cleanup-old`: removes the old tree once nothing can need it:
//! the cluster no longer runs on the old ensemble, no meta holds a node in
//! the leader election there, and the new tree is proven a copy of it.
//! The only write zkrepl ever makes to a migration's source.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{Journal, MigrateError, checks};
use crate::client::MetaClient;

/// A cleanup as asked: from a journal, or from the old ensemble, root and
/// metas given by hand.
#[derive(Debug, Clone)]
pub struct CleanupRequest {
    pub journal: Option<PathBuf>,
    pub zk: Option<String>,
    pub root: Option<String>,
    pub metas: Option<String>,
    pub lock_path: Option<String>,
    /// The new ensemble (by hand: what cluster_info names when not given).
    pub new_hosts: Option<String>,
    pub meta_timeout: Duration,
    pub timeouts: zkrepl::Timeouts,
    pub read: zkrepl::ReadSettings,
    /// How to reach the old and the new ensemble (credentials, TLS, SASL).
    pub zk_access: crate::zk::ZkAccess,
}

impl CleanupRequest {
    pub fn from_journal(journal: PathBuf) -> CleanupRequest {
        CleanupRequest {
            journal: Some(journal),
            zk: None,
            root: None,
            metas: None,
            lock_path: None,
            new_hosts: None,
            meta_timeout: Duration::from_secs(5),
            timeouts: zkrepl::Timeouts::default(),
            read: zkrepl::ReadSettings::default(),
            zk_access: Default::default(),
        }
    }
}

/// What the checks found.
#[derive(Debug, Clone, Serialize)]
pub struct CleanupPlan {
    pub old_hosts: String,
    pub new_hosts: String,
    pub root: String,
    /// Nodes that would be deleted (`None`: the count itself was refused).
    pub nodes: Option<u64>,
    pub checks: Vec<String>,
    pub refusals: Vec<String>,
    #[serde(skip)]
    journal: Option<Journal>,
}

/// Runs every check; deletes nothing.
pub async fn plan_cleanup(req: &CleanupRequest) -> Result<CleanupPlan, MigrateError> {
    let journal = match &req.journal {
        Some(p) => Some(Journal::load(p)?),
        None => None,
    };
    let (old_hosts, root, metas, lock_path) = match &journal {
        Some(j) => {
            (j.setup.src_hosts.clone(), j.setup.root.clone(), j.setup.metas.join(","), j.setup.lock_path.clone())
        }
        None => {
            let need = |v: &Option<String>, what: &str| {
                v.clone().ok_or_else(|| MigrateError::Failed(format!("without --journal, give {what}")))
            };
            let root = need(&req.root, "--root")?;
            let lock = req.lock_path.clone().unwrap_or_else(|| crate::zk::default_lock_path(&root));
            (need(&req.zk, "--zk")?, root, need(&req.metas, "--meta")?, lock)
        }
    };
    let mut checks_passed = Vec::new();
    let mut refusals = Vec::new();
    // A cleanup that began deleting: the old tree is partly gone, so it can
    // no longer be compared; the checks that nothing uses it still run.
    let resumed = journal.as_ref().is_some_and(|j| j.cleanup_started);
    if let Some(j) = &journal {
        if j.rolled_back {
            refusals.push("the migration was rolled back: the cluster uses the old tree".to_string());
        } else if !j.finished {
            refusals.push(format!("the migration is not finished ({})", j.describe_state()));
        }
    }

    // The cluster no longer names the old ensemble: by address, and by
    // the tree itself (the same root read through both names is one tree).
    let client = MetaClient::new(&metas, req.meta_timeout)?;
    let mut new_hosts = req.new_hosts.clone().or(journal.as_ref().map(|j| j.setup.dst_hosts.clone()));
    match client.find_leader().await {
        Ok(leader) => {
            let hosts = leader.info.get("zookeeper_hosts").unwrap_or("").to_string();
            match checks::same_ensemble(&hosts, &old_hosts, &root, &req.zk_access, req.timeouts.connect).await {
                Ok(None) => {
                    checks_passed.push(format!("the leader {} runs on {hosts}, not on {old_hosts}", leader.meta))
                }
                Ok(Some(why)) => {
                    refusals.push(format!("the leader {} still runs on the old ensemble: {why}", leader.meta))
                }
                Err(e) => refusals.push(format!("cannot tell whether {hosts} is the old ensemble: {e}")),
            }
            new_hosts.get_or_insert(hosts);
        }
        Err(e) => refusals.push(format!("cannot tell which ensemble the cluster uses: {e}")),
    }
    let new_hosts = new_hosts.unwrap_or_default();
    // By hand, the lock path is the operator's word: the cluster's own
    // election must be there on the new ensemble, or it is the wrong one
    // (and an empty one on the old ensemble would prove nothing).
    if journal.is_none() && !new_hosts.is_empty() {
        let held = match checks::connect(
            &new_hosts,
            zkrepl::Side::Destination,
            &req.zk_access.new,
            req.timeouts.connect,
        )
        .await
        {
            Ok(c) => checks::holders(&c, &lock_path).await.map(|n| n.len()),
            Err(e) => Err(e.message),
        };
        match held {
            Ok(0) => refusals.push(format!(
                "no meta holds the leader lock at {lock_path} on the new ensemble {new_hosts}: the lock path is not the cluster's (give --lock-path)"
            )),
            Ok(_) => {}
            Err(e) => refusals.push(e),
        }
    }
    if !lock_path.starts_with(&format!("{}/", root.trim_end_matches('/'))) {
        checks_passed.push(format!("the leader lock {lock_path} lies outside {root}: it is left on the old ensemble"));
    }

    // No meta in the election on the old ensemble.
    match checks::connect(&old_hosts, zkrepl::Side::Source, &req.zk_access.old, req.timeouts.connect).await {
        Ok(c) => match checks::holders(&c, &lock_path).await {
            Ok(nodes) if !nodes.is_empty() => refusals.push(format!(
                "a meta holds a node in the leader election on the old ensemble ({})",
                nodes.iter().map(checks::LockNode::describe).collect::<Vec<_>>().join(", ")
            )),
            Ok(_) => checks_passed.push(format!("no meta in the leader election under {lock_path} on {old_hosts}")),
            Err(e) => refusals.push(e),
        },
        Err(e) => refusals.push(e.message),
    }

    // The new tree is a copy of the old one.
    let tree = |h: &str, access: &zkrepl::zk::secure::Access| {
        zkrepl::Tree::new(h, &root).map(|t| t.with_access(access.clone()))
    };
    if resumed {
        checks_passed
            .push("a cleanup begun earlier: the old tree is partly removed, it is not compared again".to_string());
    } else if !new_hosts.is_empty() && refusals.is_empty() {
        let mut v = zkrepl::verify::VerifyRequest::new(
            tree(&old_hosts, &req.zk_access.old)?,
            tree(&new_hosts, &req.zk_access.new)?,
        );
        v.timeouts = req.timeouts;
        v.read = req.read;
        let mut first = zkrepl::verify::FirstDifferences::new(5);
        let report = zkrepl::verify::run(&v, &zkrepl::Progress::new(), &mut first).await?;
        if report.equal() {
            checks_passed.push(format!("the new tree verifies equal to the old one ({} nodes)", report.src_nodes));
        } else {
            let proven = journal.as_ref().and_then(|j| j.digests.final_source.clone());
            let d = report.counts;
            let changed = d.missing_on_dst + d.extra_on_dst + d.data_differs + d.acl_differs;
            if proven.is_some() && report.src_digest == proven {
                checks_passed.push(format!(
                    "the old tree is the one verified equal at the switch (digest {}); {changed} node(s) changed on the new ensemble since",
                    short(proven.as_deref())
                ));
            } else {
                let listed: Vec<String> =
                    first.listed.iter().map(|x| format!("{} {}", x.class.symbol(), x.path)).collect();
                refusals.push(format!(
                    "the new tree differs from the old one ({changed} node(s): {}){}",
                    listed.join(", "),
                    if journal.is_some() {
                        " and the old tree changed since the migration verified it"
                    } else {
                        "; with --journal, changes the new cluster made since the switch are told apart"
                    }
                ));
            }
        }
    }
    let mut dry = zkrepl::remove::RemoveRequest::new(tree(&old_hosts, &req.zk_access.old)?);
    dry.dry_run = true;
    dry.missing_ok = resumed;
    dry.timeouts = req.timeouts;
    dry.read = req.read;
    let nodes = match zkrepl::remove::run(&dry, &Arc::new(zkrepl::Progress::new())).await {
        Ok(r) => Some(r.nodes),
        Err(zkrepl::Error::NoRoot { .. }) => {
            refusals.push(format!("{root} is already gone from {old_hosts}"));
            None
        }
        Err(e) => {
            refusals.push(e.to_string());
            None
        }
    };
    Ok(CleanupPlan { old_hosts, new_hosts, root, nodes, checks: checks_passed, refusals, journal })
}

fn short(d: Option<&str>) -> &str {
    d.map(|d| &d[..d.len().min(12)]).unwrap_or("-")
}

/// Deletes the old tree of a plan whose checks all passed.
pub async fn cleanup_old(
    plan: &CleanupPlan,
    req: &CleanupRequest,
    progress: &Arc<zkrepl::Progress>,
) -> Result<zkrepl::remove::RemoveReport, MigrateError> {
    if !plan.refusals.is_empty() {
        return Err(MigrateError::Refused(plan.refusals.clone()));
    }
    let _lock = match &req.journal {
        Some(p) => Some(super::JournalLock::acquire(p)?),
        None => None,
    };
    // A confirmation can take a while: what may have changed meanwhile
    // (a meta started on the old ensemble) is checked again.
    let again = plan_cleanup(req).await?;
    if !again.refusals.is_empty() {
        return Err(MigrateError::Refused(again.refusals));
    }
    let mut journal = again.journal.clone();
    if let Some(j) = journal.as_mut() {
        j.cleanup_started = true;
        j.save()?;
    }
    let mut r = zkrepl::remove::RemoveRequest::new(
        zkrepl::Tree::new(&plan.old_hosts, &plan.root)?.with_access(req.zk_access.old.clone()),
    );
    r.timeouts = req.timeouts;
    r.read = req.read;
    // Begun earlier and finished then: nothing left is done too.
    r.missing_ok = journal.as_ref().is_some_and(|j| j.cleanup_started);
    let report = match zkrepl::remove::run(&r, progress).await {
        Ok(report) => report,
        // Begun earlier and finished then: nothing left.
        Err(e) => return Err(e.into()),
    };
    if let Some(j) = journal.as_mut() {
        j.cleaned_up = true;
        j.save()?;
    }
    Ok(report)
}
