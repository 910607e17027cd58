//! The demo's second part: two simulated Pegasus meta servers over the
//! generated tree, moved to a third local server with the migration the
//! `pegasus migrate` command runs (here its hooks stop and start the
//! in-process metas), then on to the second server with `--live`: the two
//! blind windows of the same cluster and tree, side by side.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use zkrepl_pegasus::migrate::{self, Context, Event, FnHooks, Hook, MigrateRequest, checks};
use zkrepl_testkit::pegasus::{ClusterSpec, MetaConfig, SimCluster};

fn failed(what: &str, e: impl std::fmt::Display) -> zkrepl::Error {
    zkrepl::Error::Usage(format!("demo: {what}: {e}"))
}

/// Waits (bounded) until the generator's leader-lock ephemeral is gone,
/// so the simulated metas hold the election alone.
async fn lock_free(hosts: &str, lock_path: &str) -> zkrepl::Result<()> {
    let c = checks::connect(hosts, zkrepl::Side::Source, &Default::default(), Duration::from_secs(10))
        .await
        .map_err(|e| failed("connect", e))?;
    for _ in 0..100 {
        match checks::lock_nodes(&c, lock_path).await {
            Ok(nodes) if nodes.is_empty() => return Ok(()),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Err(failed("the generator's leader lock", "still held after 10 s"))
}

/// Migrates the cluster over `root` on `old` to `new`, then with `--live`
/// from `new` to `last` (which may hold an older copy of the tree); the
/// reports as JSON.
pub async fn run(old: &str, new: &str, last: &str, root: &str, quiet: bool) -> zkrepl::Result<Value> {
    let lock = format!("{root}/lock/meta");
    lock_free(old, &lock).await?;
    let mut template = MetaConfig::new(old, root, &lock);
    template.zookeeper_timeout_ms = 10_000;
    template.update_interval_ms = 100;
    let spec = ClusterSpec {
        zookeeper_hosts: old.to_string(),
        cluster_root: root.to_string(),
        lock_path: lock,
        metas: 2,
        seed: None,
        template,
    };
    let cluster = SimCluster::start(spec).await.map_err(|e| failed("start the simulated metas", e))?;
    let metas: Vec<String> = cluster.metas.iter().map(|m| m.addr().to_string()).collect();
    let configs = cluster.configs.clone();
    let cluster = Arc::new(tokio::sync::Mutex::new(cluster));
    let c = cluster.clone();
    let hooks = FnHooks(move |hook: Hook| -> BoxFuture<'static, Result<(), String>> {
        let c = c.clone();
        Box::pin(async move {
            let mut c = c.lock().await;
            let (leader, followers) = c.metas.split_at_mut(1);
            match hook {
                Hook::StopFollowers => {
                    for m in followers {
                        m.stop().await;
                    }
                }
                Hook::StopLeader => leader[0].stop().await,
                Hook::StartLeader => leader[0].restart_from_file().await.map_err(|e| e.to_string())?,
                Hook::StartFollowers => {
                    for m in followers {
                        m.restart_from_file().await.map_err(|e| e.to_string())?;
                    }
                }
                Hook::StopMetas | Hook::StartMeta | Hook::StartMetas => {
                    return Err(format!("{hook:?} is not a migration's hook"));
                }
            }
            Ok(())
        })
    });
    let observer = move |e: Event| {
        if quiet {
            return;
        }
        match e {
            Event::StepStarted(s) => eprintln!("demo:   [{}/8] {}", s.number(), s.describe()),
            Event::StepDone { note, .. } => eprintln!("demo:         {note}"),
            _ => {}
        }
    };
    let ctx = Context { observer: &observer, hooks: &hooks, cancel: Default::default() };
    let mut out = Vec::new();
    for (to, live) in [(new, false), (last, true)] {
        if !quiet {
            eprintln!("demo: pegasus migrate to {to}{}", if live { " --live" } else { "" });
        }
        let mut req = MigrateRequest::new(&metas.join(","), to, configs.clone());
        // The journal beside the metas' configs, in the cluster's temporary
        // directory (removed with it), one per migration.
        req.journal = configs[0].parent().map(|d| d.join(format!("zkrepl-migrate-{}.journal", out.len() + 1)));
        // The tree's duplications keep writing progress in blind: without
        // --live the final sync after the leader stops catches it; with it,
        // the mirror follows it.
        req.allow_drift = !live;
        req.live = live;
        // The last server holds the demo's first copy of the tree.
        req.update = live;
        req.wait = Duration::from_secs(120);
        let plan = migrate::prepare(&req, &hooks).await.map_err(|e| failed("prepare the migration", e))?;
        let report =
            migrate::execute(&plan, &req, &ctx).await.map_err(|e| failed("migrate", format!("{e} ({})", e.state)))?;
        let c = cluster.lock().await;
        let on_new = c.metas.iter().all(|m| m.config().zookeeper_hosts == to);
        let leading = c.metas[0].is_leader() && !c.metas[1].is_leader();
        let recreated = c.metas[0].recreated_partitions().len();
        let parts: Vec<String> = report.parts_in_order().iter().map(|(k, v)| format!("{k} {v:.2}s")).collect();
        out.push(json!({
            "live": live,
            "parts_in_order": parts,
            "report": report,
            "metas_on_new_ensemble": on_new,
            "leader_restored": leading,
            "partitions_recreated": recreated,
            "level": c.metas[0].level().name(),
        }));
    }
    Ok(Value::Array(out))
}
