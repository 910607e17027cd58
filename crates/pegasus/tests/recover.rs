//! `pegasus recover` against simulated metas over two real local ZooKeeper
//! servers: the cluster runs on the old one; the recovery rebuilds its
//! metadata on the new one from the replica servers' view. The metas run
//! in this process; the hooks stop and start them from their configs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use zkrepl_pegasus::migrate::{self, Context, Event, FnHooks, Hook, MigrateError};
use zkrepl_pegasus::recover::{self, RecoverRequest, Step};
use zkrepl_pegasus::{MetaClient, Role};
use zkrepl_testkit::pegasus::{ClusterSpec, Seed, SimCluster};
use zookeeper_client as zk;

mod common;
use common::{client, servers};

type Cluster = Arc<tokio::sync::Mutex<SimCluster>>;

/// Run once, before the first meta starts.
type BeforeStart = Arc<Mutex<Option<Box<dyn FnOnce() + Send>>>>;

/// Two metas over `root` on the old server, the leader moving partitions;
/// their configs with `[replication] config_sync_interval_ms = 400`, the
/// second without a `recover_from_replica_server` line, as most real
/// configs are.
async fn cluster(root: &str, edit: impl FnOnce(&mut ClusterSpec)) -> (Cluster, String, String, Vec<Vec<u8>>) {
    let (old, new) = servers().await;
    let mut seed = Seed::simple(2, 4);
    for a in &mut seed.apps {
        a.duplications.clear();
    }
    let mut spec = ClusterSpec::new(&old, root, 2, seed);
    spec.template.zookeeper_timeout_ms = 3000;
    edit(&mut spec);
    let c = SimCluster::start(spec).await.expect("start the cluster");
    let mut originals = Vec::new();
    for (i, p) in c.configs.iter().enumerate() {
        let mut text = std::fs::read_to_string(p).unwrap();
        text = text.replace("[replication]\n", "[replication]\nconfig_sync_interval_ms = 400 ; replicas sync\n");
        // Restarted at blind, a meta moves no partition: the new tree
        // stays as the recovery wrote it.
        text = text.replace("meta_function_level_on_start = steady", "meta_function_level_on_start = blind");
        if i == 1 {
            text = text.replace("recover_from_replica_server = false\n", "");
        }
        std::fs::write(p, &text).unwrap();
        originals.push(text.into_bytes());
    }
    (Arc::new(tokio::sync::Mutex::new(c)), old, new, originals)
}

/// Hooks that stop and start the in-process metas from their configs (0
/// led before); `fail` makes one hook fail once, `before_start` runs
/// before the first meta starts.
fn hooks(
    c: Cluster,
    fail: Arc<Mutex<Option<Hook>>>,
    before_start: BeforeStart,
) -> FnHooks<impl Fn(Hook) -> BoxFuture<'static, Result<(), String>> + Send + Sync> {
    FnHooks(move |hook: Hook| -> BoxFuture<'static, Result<(), String>> {
        let (c, fail, before_start) = (c.clone(), fail.clone(), before_start.clone());
        Box::pin(async move {
            if fail.lock().unwrap().take_if(|h| *h == hook).is_some() {
                return Err("exit status 3 (made to fail)".to_string());
            }
            let mut c = c.lock().await;
            let n = c.metas.len();
            match hook {
                Hook::StopMetas => {
                    for m in &mut c.metas {
                        m.stop().await;
                    }
                }
                Hook::StartMeta => {
                    if let Some(f) = before_start.lock().unwrap().take() {
                        f();
                    }
                    c.metas[0].restart_from_file().await.map_err(|e| e.to_string())?
                }
                Hook::StartMetas => {
                    for m in &mut c.metas[1..n] {
                        m.restart_from_file().await.map_err(|e| e.to_string())?;
                    }
                }
                other => return Err(format!("{other:?} is not a recovery's hook")),
            }
            Ok(())
        })
    })
}

fn plain_hooks(c: &Cluster) -> FnHooks<impl Fn(Hook) -> BoxFuture<'static, Result<(), String>> + Send + Sync> {
    hooks(c.clone(), Arc::new(Mutex::new(None)), Arc::new(Mutex::new(None)))
}

#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl migrate::Observer<Step> for Events {
    fn event(&self, e: Event<Step>) {
        self.0.lock().unwrap().push(format!("{e:?}"));
    }
}

/// Cancels `token` when an event matches.
struct CancelOn {
    token: zkrepl::CancellationToken,
    when: fn(&Event<Step>) -> bool,
}

impl migrate::Observer<Step> for CancelOn {
    fn event(&self, e: Event<Step>) {
        if (self.when)(&e) {
            self.token.cancel();
        }
    }
}

async fn request(c: &Cluster, new: &str, dir: &Path) -> RecoverRequest {
    let c = c.lock().await;
    let metas: Vec<String> = c.metas.iter().map(|m| m.addr().to_string()).collect();
    let mut r = RecoverRequest::new(&metas.join(","), new, c.configs.clone());
    r.journal = Some(dir.join("journal"));
    r.wait = Duration::from_secs(30);
    r.meta_timeout = Duration::from_secs(2);
    r
}

async fn run(req: &RecoverRequest, ctx: &Context<'_, Step>) -> Result<recover::Report, Box<migrate::Stopped<Step>>> {
    let plan = recover::prepare(req).await.expect("prepare");
    assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
    recover::execute(&plan, req, ctx).await
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

fn contents(configs: &[PathBuf]) -> Vec<Vec<u8>> {
    configs.iter().map(|p| read(p)).collect()
}

/// The bytes with the first `hosts_list` value replaced.
fn with_hosts(original: &[u8], old: &str, new: &str) -> Vec<u8> {
    let text = String::from_utf8(original.to_vec()).unwrap();
    text.replacen(&format!("hosts_list = {old}"), &format!("hosts_list = {new}"), 1).into_bytes()
}

/// `apps`, every `apps/<id>` and `apps/<id>/<pidx>` with its data, in order.
async fn apps_tree(c: &zk::Client, root: &str) -> Vec<(String, String)> {
    let apps = format!("{root}/apps");
    let text = |d: Vec<u8>| String::from_utf8_lossy(&d).into_owned();
    let mut out = vec![(apps.clone(), text(c.get_data(&apps).await.map(|(d, _)| d).unwrap_or_default()))];
    let mut ids = c.list_children(&apps).await.unwrap_or_default();
    ids.sort_by_key(|i| i.parse::<i64>().unwrap_or(i64::MAX));
    for id in ids {
        let app = format!("{apps}/{id}");
        out.push((app.clone(), text(c.get_data(&app).await.unwrap().0)));
        let mut parts: Vec<u32> = c.list_children(&app).await.unwrap().iter().filter_map(|p| p.parse().ok()).collect();
        parts.sort();
        for p in parts {
            let path = format!("{app}/{p}");
            out.push((path.clone(), text(c.get_data(&path).await.unwrap().0)));
        }
    }
    out
}

/// How each meta answers, and the hosts the leader names.
async fn roles(c: &Cluster) -> (Vec<Role>, Option<String>) {
    let c = c.lock().await;
    let metas: Vec<String> = c.metas.iter().map(|m| m.addr().to_string()).collect();
    let mc = MetaClient::new(&metas.join(","), Duration::from_secs(2)).unwrap();
    let mut out = Vec::new();
    let mut hosts = None;
    for m in &metas {
        let (role, info) = mc.role_of(m).await;
        if role == Role::Leader {
            hosts = info.and_then(|i| i.get("zookeeper_hosts").map(str::to_string));
        }
        out.push(role);
    }
    (out, hosts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovers_every_app_and_partition_on_the_new_ensemble_and_ends_as_configured_before() {
    let root = "/pegasus/recover-happy";
    let (c, old, new, originals) = cluster(root, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let req = request(&c, &new, dir.path()).await;
    let configs = c.lock().await.configs.clone();
    let plan = recover::prepare(&req).await.expect("prepare");
    assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
    assert_eq!(plan.setup.others_up.len(), 1);
    assert_eq!((plan.apps.len(), plan.nodes.len(), plan.setup.recovery_nodes.len()), (2, 3, 3));
    assert_eq!(plan.setup.config_sync_interval_ms, 400);
    assert_eq!(plan.setup.release_wait_ms, 1400);
    assert_eq!(plan.setup.configs[0].flag_before.as_deref(), Some("false"));
    assert_eq!(plan.setup.configs[1].flag_before, None);
    assert_eq!(contents(&configs), originals, "prepare changes nothing");

    let h = plain_hooks(&c);
    let events = Events::default();
    let ctx = Context { observer: &events, hooks: &h, cancel: Default::default() };
    // The old tree as the replica servers hold it: the leader's last writes.
    let report = recover::execute(&plan, &req, &ctx).await.expect("recover");
    let (oc, nc) = (client(&old).await, client(&new).await);
    let want = apps_tree(&oc, root).await;
    assert_eq!(want.len(), 1 + 2 + 8);
    assert_eq!(apps_tree(&nc, root).await, want, "every app and partition as the old tree holds them");
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    assert_eq!((report.apps, report.partitions, report.nodes_alive), (2, 8, 3));
    assert!(report.recovery_hint.contains("recovered 2 apps and 8 partitions"), "{}", report.recovery_hint);

    // The wait counted from every meta down to the start of the first.
    let j = recover::Journal::load(&dir.path().join("journal")).unwrap();
    assert!(j.finished);
    let waited = j.meta_start_ms.unwrap() - j.all_down_ms.unwrap();
    assert!(waited >= 1400, "waited {waited} ms, less than config_sync_interval_ms and its margin");

    // Saved beside the journal.
    let apps: serde_json::Value = serde_json::from_slice(&read(&j.setup.saved.apps)).unwrap();
    assert_eq!(apps.as_array().unwrap().len(), 2);
    assert_eq!(apps[0]["app_name"], "table_1");
    let nodes: serde_json::Value = serde_json::from_slice(&read(&j.setup.saved.nodes)).unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 3);
    let list = String::from_utf8(read(&j.setup.saved.node_list)).unwrap();
    assert_eq!(list.lines().count(), 3, "{list}");

    // Configs: byte-exact but for hosts_list (the added flag line gone again).
    for ((p, o), rec) in configs.iter().zip(&originals).zip(&j.setup.configs) {
        assert_eq!(read(p), with_hosts(o, &old, &new), "{}", p.display());
        assert_eq!(read(&rec.backup), *o, "the backup is the original");
    }
    // Both metas up on the new ensemble, the leader loading from it.
    let (roles, hosts) = roles(&c).await;
    assert_eq!(roles[0], Role::Leader, "{roles:?}");
    assert!(matches!(&roles[1], Role::Follower { .. }), "{roles:?}");
    assert_eq!(hosts.as_deref(), Some(new.as_str()));
    let cl = c.lock().await;
    assert!(!cl.metas[0].is_recovering() && !cl.metas[0].config().recover_from_replica_server);
    assert!(cl.metas[0].recreated_partitions().is_empty(), "nothing recreated empty");
    let log = events.0.lock().unwrap().join("\n");
    assert!(log.contains("meta: recovered 2 apps"), "the hint is told: {log}");
    drop(cl);
    // Not undone once the metadata was rebuilt: that would run on the old data.
    let plan = recover::plan_rollback(&dir.path().join("journal"), &req.zk_access, req.zk_timeout).await.unwrap();
    assert!(plan.refusals.iter().any(|r| r.contains("the recovery was accepted")), "{:?}", plan.refusals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unalive_replica_server_is_refused_unless_skipped() {
    let root = "/pegasus/recover-unalive";
    let (c, _old, new, originals) =
        cluster(root, |s| s.template.unalive_nodes = vec![s.template.replica_nodes[1].clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(&c, &new, dir.path()).await;
    let plan = recover::prepare(&req).await.expect("prepare");
    let down = &c.lock().await.metas[0].config().replica_nodes[1].clone();
    assert!(plan.refusals.iter().any(|r| r.contains("not ALIVE") && r.contains(down.as_str())), "{:?}", plan.refusals);
    let h = plain_hooks(&c);
    let ctx = Context { observer: &Events::default(), hooks: &h, cancel: Default::default() };
    let e = recover::execute(&plan, &req, &ctx).await.expect_err("refused");
    assert!(matches!(e.error, MigrateError::Refused(_)), "{}", e.error);
    assert!(!dir.path().join("journal").exists(), "no journal");
    assert_eq!(contents(&c.lock().await.configs), originals, "configs untouched");

    req.skip_bad_nodes = true;
    let plan = recover::prepare(&req).await.expect("prepare");
    assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
    assert_eq!(plan.setup.recovery_nodes.len(), 2);
    assert!(!plan.setup.recovery_nodes.contains(down));
    assert!(plan.warnings.iter().any(|w| w.contains(down.as_str())), "{:?}", plan.warnings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apps_already_on_the_new_ensemble_are_refused() {
    let root = "/pegasus/recover-occupied";
    let (c, old, new, originals) = cluster(root, |_| {}).await;
    let mut other = Seed::simple(1, 2);
    other.apps[0].duplications.clear();
    zkrepl_testkit::pegasus::seed(&new, root, &other).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let req = request(&c, &new, dir.path()).await;
    let plan = recover::prepare(&req).await.expect("prepare");
    assert!(
        plan.refusals.iter().any(|r| r.contains(&format!("{root}/apps already holds 1 app"))),
        "{:?}",
        plan.refusals
    );
    // The ensemble the cluster runs on, under a chroot: another root, the same servers.
    let mut same = req.clone();
    same.dst = format!("{old}/elsewhere");
    let plan = recover::prepare(&same).await.expect("prepare");
    assert!(plan.refusals.iter().any(|r| r.contains("is the one the cluster runs on")), "{:?}", plan.refusals);
    // A meta whose config is not given would start on the old ensemble.
    let mut one = req.clone();
    one.configs.truncate(1);
    let plan = recover::prepare(&one).await.expect("prepare");
    assert!(plan.refusals.iter().any(|r| r.contains("2 metas") && r.contains("1 config")), "{:?}", plan.refusals);
    assert_eq!(contents(&c.lock().await.configs), originals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_recovery_restores_the_configs_and_the_metas_on_the_old_ensemble() {
    let root = "/pegasus/recover-refused";
    let (c, old, new, originals) = cluster(root, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let req = request(&c, &new, dir.path()).await;
    // The first replica server is gone by the time the meta asks it.
    let leader_config = c.lock().await.configs[0].clone();
    let node = c.lock().await.metas[0].config().replica_nodes[0].clone();
    let edit: Box<dyn FnOnce() + Send> = Box::new(move || {
        let text = std::fs::read_to_string(&leader_config).unwrap();
        std::fs::write(&leader_config, text.replace("unalive_nodes = \n", &format!("unalive_nodes = {node}\n")))
            .unwrap();
    });
    let h = hooks(c.clone(), Arc::new(Mutex::new(None)), Arc::new(Mutex::new(Some(edit))));
    let events = Events::default();
    let ctx = Context { observer: &events, hooks: &h, cancel: Default::default() };
    let stopped = run(&req, &ctx).await.expect_err("the meta refuses");
    assert_eq!(stopped.step, Step::Recovered);
    let msg = stopped.error.to_string();
    assert!(msg.contains("ERR_TRY_AGAIN") && msg.contains("undone"), "{msg}");
    assert!(stopped.state.starts_with("restored"), "{}", stopped.state);
    assert_eq!(contents(&c.lock().await.configs), originals, "every config as it was");
    let (roles, hosts) = roles(&c).await;
    assert_eq!(roles[0], Role::Leader, "{roles:?}");
    assert!(matches!(&roles[1], Role::Follower { .. }), "{roles:?}");
    assert_eq!(hosts.as_deref(), Some(old.as_str()), "back on the old ensemble");
    assert!(client(&new).await.list_children(&format!("{root}/apps")).await.is_err(), "nothing recovered");
    // Undone: not resumable.
    let e = recover::resume(&dir.path().join("journal"), &req, &ctx).await.expect_err("refused");
    assert!(e.error.to_string().contains("undone"), "{}", e.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_recovery_resumes_where_it_stopped() {
    let root = "/pegasus/recover-resumed";
    let (c, old, new, originals) = cluster(root, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let req = request(&c, &new, dir.path()).await;
    let journal = dir.path().join("journal");
    let h = plain_hooks(&c);
    // Interrupted in the wait for the replica servers.
    let token = zkrepl::CancellationToken::new();
    let obs = CancelOn { token: token.clone(), when: |e| matches!(e, Event::StepStarted(Step::ReplicasReleased)) };
    let ctx = Context { observer: &obs, hooks: &h, cancel: token };
    let stopped = run(&req, &ctx).await.expect_err("interrupted");
    assert!(matches!(stopped.error, MigrateError::Interrupted), "{}", stopped.error);
    assert_eq!(stopped.step, Step::ReplicasReleased);
    // Meanwhile a meta joins the old election and leaves again (started
    // by hand on its old config, say): the replica servers may follow it.
    let oc = client(&old).await;
    let dir_ = format!("{root}/lock/dsn.meta.server.leader");
    let opts = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let (_, seq) = oc.create(&format!("{dir_}/LOCKNODE"), b"127.0.0.1:1", &opts).await.unwrap();
    oc.delete(&format!("{dir_}/LOCKNODE{seq}"), None).await.unwrap();
    let first_down = recover::Journal::load(&journal).unwrap().all_down_ms.unwrap();
    let ctx = Context { observer: &Events::default(), hooks: &h, cancel: Default::default() };
    let stopped = recover::resume(&journal, &req, &ctx).await.expect_err("the wait starts over");
    assert_eq!(stopped.step, Step::ReplicasReleased);
    assert!(stopped.error.to_string().contains("joined the leader election"), "{}", stopped.error);
    // Then after the recovery was accepted.
    let token = zkrepl::CancellationToken::new();
    let obs = CancelOn { token: token.clone(), when: |e| matches!(e, Event::StepDone { step: Step::Recovered, .. }) };
    let ctx = Context { observer: &obs, hooks: &h, cancel: token };
    let stopped = recover::resume(&journal, &req, &ctx).await.expect_err("interrupted again");
    assert!(matches!(stopped.error, MigrateError::Interrupted), "{}", stopped.error);
    assert_eq!(stopped.step, Step::Checked);
    let j = recover::Journal::load(&journal).unwrap();
    assert!(j.all_down_ms.unwrap() > first_down, "the metas were checked down again");
    assert!(j.meta_start_ms.unwrap() - j.all_down_ms.unwrap() >= 1400, "the wait was served in full");
    // And finished.
    let events = Events::default();
    let ctx = Context { observer: &events, hooks: &h, cancel: Default::default() };
    let report = recover::resume(&journal, &req, &ctx).await.expect("resumed");
    assert!(report.skipped.contains(&Step::Recovered) && report.skipped.contains(&Step::MetaStarted));
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    let (oc, nc) = (client(&old).await, client(&new).await);
    assert_eq!(apps_tree(&nc, root).await, apps_tree(&oc, root).await);
    let configs = c.lock().await.configs.clone();
    for (p, o) in configs.iter().zip(&originals) {
        assert_eq!(read(p), with_hosts(o, &old, &new));
    }
    assert_eq!(roles(&c).await.1.as_deref(), Some(new.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recovery_stopped_at_the_start_rolls_back() {
    let root = "/pegasus/recover-rollback";
    let (c, old, new, originals) = cluster(root, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let req = request(&c, &new, dir.path()).await;
    let journal = dir.path().join("journal");
    let h = hooks(c.clone(), Arc::new(Mutex::new(Some(Hook::StartMeta))), Arc::new(Mutex::new(None)));
    let events = Events::default();
    let ctx = Context { observer: &events, hooks: &h, cancel: Default::default() };
    let stopped = run(&req, &ctx).await.expect_err("the start hook fails");
    assert_eq!(stopped.step, Step::MetaStarted);
    assert!(matches!(stopped.error, MigrateError::Hook { hook: Hook::StartMeta, .. }), "{}", stopped.error);
    assert_ne!(contents(&c.lock().await.configs), originals, "the configs name the new ensemble");
    let plan = recover::plan_rollback(&journal, &req.zk_access, req.zk_timeout).await.unwrap();
    assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
    let r = recover::rollback(&journal, &req, &ctx).await.expect("rolled back");
    assert!(r.done.iter().any(|d| d.contains("2 config(s) restored")), "{:?}", r.done);
    assert_eq!(contents(&c.lock().await.configs), originals);
    let (roles, hosts) = roles(&c).await;
    assert_eq!(roles[0], Role::Leader);
    assert!(matches!(&roles[1], Role::Follower { .. }), "{roles:?}");
    assert_eq!(hosts.as_deref(), Some(old.as_str()));
    let again = recover::plan_rollback(&journal, &req.zk_access, req.zk_timeout).await.unwrap();
    assert!(again.refusals.iter().any(|r| r.contains("already")), "{:?}", again.refusals);
}
