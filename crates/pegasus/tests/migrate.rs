//! `pegasus migrate`, rollback and cleanup-old against simulated metas over
//! two real local ZooKeeper servers (the old ensemble and the new one).
//! The metas run in this process; the hooks stop and start them.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use zkrepl_pegasus::migrate::{
    self, CleanupRequest, Context, Event, FnHooks, Hook, MigrateError, MigrateRequest, RollbackRequest, Step,
};
use zkrepl_pegasus::{Level, MetaClient};
use zkrepl_testkit::pegasus::{ClusterSpec, Seed, SimCluster};
use zookeeper_client as zk;

mod common;
use common::{client, servers};

/// Two metas over `root` on the old server, 200 ms updates, one
/// duplication (its progress written at every level).
async fn cluster(
    root: &str,
    edit: impl FnOnce(&mut ClusterSpec),
) -> (Arc<tokio::sync::Mutex<SimCluster>>, String, String) {
    let (old, new) = servers().await;
    let mut spec = ClusterSpec::new(&old, root, 2, Seed::simple(2, 4));
    spec.template.zookeeper_timeout_ms = 3000;
    edit(&mut spec);
    let c = SimCluster::start(spec).await.expect("start the cluster");
    (Arc::new(tokio::sync::Mutex::new(c)), old, new)
}

/// Hooks that stop and start the in-process metas (0 leads); `fail` makes
/// one hook fail once.
fn hooks(
    c: Arc<tokio::sync::Mutex<SimCluster>>,
    fail: Arc<Mutex<Option<Hook>>>,
) -> FnHooks<impl Fn(Hook) -> BoxFuture<'static, Result<(), String>> + Send + Sync> {
    FnHooks(move |hook: Hook| -> BoxFuture<'static, Result<(), String>> {
        let c = c.clone();
        let fail = fail.clone();
        Box::pin(async move {
            if fail.lock().unwrap().take_if(|h| *h == hook).is_some() {
                return Err("exit status 3 (made to fail)".to_string());
            }
            let mut c = c.lock().await;
            let n = c.metas.len();
            match hook {
                Hook::StopFollowers => {
                    for m in &mut c.metas[1..n] {
                        m.stop().await;
                    }
                }
                Hook::StopLeader => c.metas[0].stop().await,
                Hook::StartLeader => c.metas[0].restart_from_file().await.map_err(|e| e.to_string())?,
                Hook::StartFollowers => {
                    for m in &mut c.metas[1..n] {
                        m.restart_from_file().await.map_err(|e| e.to_string())?;
                    }
                }
                Hook::StopMetas | Hook::StartMeta | Hook::StartMetas => {
                    return Err(format!("{hook:?} is not a migration's hook"));
                }
            }
            Ok(())
        })
    })
}

/// No hooks: every step is the operator's.
struct NoHooks;

impl migrate::HookRunner for NoHooks {
    fn has(&self, _: Hook) -> bool {
        false
    }

    fn run<'a>(&'a self, _: Hook, _: &'a migrate::HookEnv) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Err("no hooks".to_string()) })
    }
}

struct Events(Mutex<Vec<String>>);

impl migrate::Observer for Events {
    fn event(&self, e: Event) {
        self.0.lock().unwrap().push(format!("{e:?}"));
    }
}

async fn request(c: &Arc<tokio::sync::Mutex<SimCluster>>, new: &str, dir: &Path) -> MigrateRequest {
    let c = c.lock().await;
    let metas: Vec<String> = c.metas.iter().map(|m| m.addr().to_string()).collect();
    let mut r = MigrateRequest::new(&metas.join(","), new, c.configs.clone());
    r.journal = Some(dir.join("journal"));
    r.allow_drift = true;
    r.wait = Duration::from_secs(30);
    r.meta_timeout = Duration::from_secs(2);
    r
}

/// Prepares `req` and runs it with `hooks` until it ends or stops (a
/// refusal is a stop too).
async fn run_with(
    req: &MigrateRequest,
    hooks: &dyn migrate::HookRunner,
) -> Result<migrate::Report, Box<migrate::Stopped>> {
    let plan = migrate::prepare(req, hooks).await.expect("prepare");
    let events = Events(Mutex::new(Vec::new()));
    let ctx = Context { observer: &events, hooks, cancel: Default::default() };
    migrate::execute(&plan, req, &ctx).await
}

/// `run_with` the in-process hooks.
async fn run_all(
    c: &Arc<tokio::sync::Mutex<SimCluster>>,
    req: &MigrateRequest,
) -> Result<migrate::Report, Box<migrate::Stopped>> {
    run_with(req, &hooks(c.clone(), Arc::new(Mutex::new(None)))).await
}

/// Every config's bytes.
fn contents(configs: &[std::path::PathBuf]) -> Vec<Vec<u8>> {
    configs.iter().map(|p| read(p)).collect()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// The bytes with the first `hosts_list` value replaced.
fn with_hosts(original: &[u8], old: &str, new: &str) -> Vec<u8> {
    let text = String::from_utf8(original.to_vec()).unwrap();
    text.replacen(&format!("hosts_list = {old}"), &format!("hosts_list = {new}"), 1).into_bytes()
}

async fn data(c: &zk::Client, path: &str) -> Option<Vec<u8>> {
    c.get_data(path).await.ok().map(|(d, _)| d)
}

/// Every progress value under the root, by path.
async fn progress(c: &zk::Client, root: &str) -> Vec<(String, Vec<u8>)> {
    let dir = format!("{root}/apps/1/duplication/1700000001");
    let mut out = Vec::new();
    for p in 0..4 {
        let path = format!("{dir}/{p}");
        out.push((path.clone(), data(c, &path).await.unwrap_or_default()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrates_and_the_restarted_leader_finds_the_last_progress_the_old_one_wrote() {
    let root = "/pegasus/happy";
    let (c, old, new) = cluster(root, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    // Configs in an operator's style: comments, CRLF, odd spacing and a
    // second hosts_list the meta ignores (the first wins).
    let configs = c.lock().await.configs.clone();
    let mut originals = Vec::new();
    for (i, p) in configs.iter().enumerate() {
        let text = String::from_utf8(read(p)).unwrap();
        let mut styled = format!("; meta {i} ; managed by hand\r\n# hosts below\r\n");
        for line in text.lines() {
            styled.push_str(line);
            if line.starts_with("[zookeeper]") {
                styled.push_str("   ; the ensemble");
            }
            styled.push_str("\r\n");
            if line.starts_with("hosts_list") {
                styled.push_str("hosts_list =\tignored:1\r\n");
            }
        }
        std::fs::write(p, &styled).unwrap();
        originals.push(styled.into_bytes());
    }
    let req = request(&c, &new, dir.path()).await;
    let h = hooks(c.clone(), Arc::new(Mutex::new(None)));
    let plan = migrate::prepare(&req, &h).await.expect("prepare");
    assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
    assert_eq!(plan.followers_alive.len(), 1);
    assert!(plan.in_progress.iter().any(|a| a.contains("duplication")), "{:?}", plan.in_progress);

    let events = Events(Mutex::new(Vec::new()));
    let ctx = Context { observer: &events, hooks: &h, cancel: Default::default() };
    let report = migrate::execute(&plan, &req, &ctx).await.expect("migrate");
    let window = report.blind_window_seconds.expect("a blind window");
    assert!(window > 0.0 && window < 60.0, "{window}");
    for part in ["copy", "verify", "stop", "final sync", "start"] {
        assert!(report.parts.contains_key(part), "{part} missing from {:?}", report.parts);
    }

    // Configs: byte-identical but the first hosts_list value.
    let j = migrate::Journal::load(&dir.path().join("journal")).unwrap();
    for ((p, o), rec) in configs.iter().zip(&originals).zip(&j.setup.configs) {
        assert_eq!(read(p), with_hosts(o, &old, &new), "{}", p.display());
        assert_eq!(&rec.path, p);
        assert_eq!(read(&rec.backup), *o, "the backup is the original");
    }
    let cl = c.lock().await;
    let (leader, follower) = (&cl.metas[0], &cl.metas[1]);
    assert!(leader.is_leader() && !follower.is_leader());
    assert_eq!(leader.config().zookeeper_hosts, new);
    assert_eq!(follower.config().zookeeper_hosts, new);
    assert_eq!(leader.level().0, 400, "level restored to steady");
    assert!(leader.recreated_partitions().is_empty(), "{:?}", leader.recreated_partitions());
    // The progress the old leader last wrote is what the new one loaded:
    // the old tree is as the old leader left it (untouched since).
    let oc = client(&old).await;
    let last: Vec<i64> =
        progress(&oc, root).await.iter().map(|(_, d)| String::from_utf8_lossy(d).parse().unwrap()).collect();
    let loaded: Vec<i64> = leader.loaded_progress().values().copied().collect();
    assert_eq!(loaded, last, "the restarted leader finds the old leader's last progress");
    assert!(last.iter().all(|v| *v > 100), "progress advanced during the migration: {last:?}");
    let j = migrate::Journal::load(&dir.path().join("journal")).unwrap();
    assert!(j.finished && j.switched && j.recorded_level == Some(Level::Steady));
    assert!(j.notes.get("stop proof").is_some_and(|p| p.contains("lock node is gone")), "{:?}", j.notes);
    drop(cl);

    // cleanup-old: the cluster is off the old ensemble; the new one has
    // written since (steady), the old tree is the one verified.
    let creq = CleanupRequest::from_journal(dir.path().join("journal"));
    let cplan = migrate::plan_cleanup(&creq).await.expect("plan cleanup");
    assert!(cplan.refusals.is_empty(), "{:?}", cplan.refusals);
    let r = migrate::cleanup_old(&cplan, &creq, &Arc::new(zkrepl::Progress::new())).await.expect("cleanup");
    assert_eq!(Some(r.deleted), cplan.nodes);
    assert!(oc.check_stat(root).await.unwrap().is_none(), "the old tree is gone");
    let nc = client(&new).await;
    assert!(nc.check_stat(&format!("{root}/apps/2/3")).await.unwrap().is_some(), "the new tree stays");
    // Rollback refuses once the old tree is gone.
    let rb = migrate::rollback::plan_rollback(&RollbackRequest::new(dir.path().join("journal"))).await;
    assert!(matches!(rb, Err(MigrateError::Failed(m)) if m.contains("cleanup-old")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_mirrors_before_blind_and_the_window_holds_only_catch_ups_the_stop_and_the_proof() {
    let root = "/pegasus/live";
    let (c, old, new) = cluster(root, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(&c, &new, dir.path()).await;
    // Duplication writes progress throughout, blind or not: the mirror
    // follows it, no --allow-drift needed.
    req.allow_drift = false;
    req.live = true;
    let h = hooks(c.clone(), Arc::new(Mutex::new(None)));
    let plan = migrate::prepare(&req, &h).await.expect("prepare");
    assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
    assert!(plan.warnings.iter().any(|w| w.contains("live mirror follows")), "{:?}", plan.warnings);
    let events = Events(Mutex::new(Vec::new()));
    let ctx = Context { observer: &events, hooks: &h, cancel: Default::default() };
    let report = migrate::execute(&plan, &req, &ctx).await.expect("migrate");

    // The copy and its verifies ran before blind: not in the window.
    for part in ["catch-up", "stop", "final sync", "start"] {
        assert!(report.parts.contains_key(part), "{part} missing from {:?}", report.parts);
    }
    for part in ["digest", "copy", "verify", "re-sync"] {
        assert!(!report.parts.contains_key(part), "{part} in the window: {:?}", report.parts);
    }
    let moment = |name: &str| report.timeline.iter().find(|(k, _)| k.starts_with(name)).map(|(_, v)| *v);
    for name in ["blind to the stop hook", "stop hook", "stop proven to the start hook", "start hook", "working time"] {
        assert!(moment(name).is_some(), "{name} missing from {:?}", report.timeline);
    }
    let working = moment("working time").unwrap();
    let window = report.blind_window_seconds.expect("a blind window");
    assert!(working <= window, "{working} of {window}");

    let cl = c.lock().await;
    let leader = &cl.metas[0];
    assert!(leader.is_leader() && leader.config().zookeeper_hosts == new);
    assert_eq!(leader.level().0, 400, "level restored to steady");
    assert!(leader.recreated_partitions().is_empty(), "{:?}", leader.recreated_partitions());
    // What the old leader wrote last, in blind and up to its stop, is what
    // the restarted one loaded.
    let oc = client(&old).await;
    let last: Vec<i64> =
        progress(&oc, root).await.iter().map(|(_, d)| String::from_utf8_lossy(d).parse().unwrap()).collect();
    let loaded: Vec<i64> = leader.loaded_progress().values().copied().collect();
    assert_eq!(loaded, last, "the restarted leader finds the old leader's last progress");
    let j = migrate::Journal::load(&dir.path().join("journal")).unwrap();
    assert!(j.finished && j.setup.live);
    let final_note = j.steps.iter().rev().find(|r| r.step == Step::FinalSync).map(|r| r.note.clone()).unwrap();
    assert!(final_note.contains("catch-up and verify"), "{final_note}");
    assert!(j.digests.final_source.is_some() && j.digests.final_source == j.digests.final_destination);
    drop(cl);

    // The old tree is the one proven at the switch: cleanup-old may go.
    let creq = CleanupRequest::from_journal(dir.path().join("journal"));
    let cplan = migrate::plan_cleanup(&creq).await.expect("plan cleanup");
    assert!(cplan.refusals.is_empty(), "{:?}", cplan.refusals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_killed_at_the_mirror_steps_and_resumed() {
    // A resumed run has no mirror: it starts a new one (its full copy
    // converges on what is there) and goes on.
    killed_at_each(&[Step::Blind, Step::Copied, Step::LeaderStopped, Step::FinalSync], "live-killed", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_stops_before_the_switch_when_the_old_tree_keeps_changing_after_the_stop() {
    let root = "/pegasus/live-drift";
    let (c, old, new) = cluster(root, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(&c, &new, dir.path()).await;
    req.live = true;
    let oc = client(&old).await;
    oc.create(&format!("{root}/stray"), b"0", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))
        .await
        .unwrap();
    // Something other than the metas writes the old tree once the leader
    // is stopped: as fast as it can, for at most 15 s or 100k writes.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let inner = hooks(c.clone(), Arc::new(Mutex::new(None)));
    let (o, d) = (old.clone(), done.clone());
    let stray = format!("{root}/stray");
    let h = FnHooks(move |hook: Hook| -> BoxFuture<'static, Result<(), String>> {
        let run = (inner.0)(hook);
        let (o, d, stray) = (o.clone(), d.clone(), stray.clone());
        Box::pin(async move {
            let r = run.await;
            if hook == Hook::StopLeader {
                let w = client(&o).await;
                tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    for i in 0..100_000u32 {
                        if d.load(std::sync::atomic::Ordering::Relaxed) || started.elapsed() > Duration::from_secs(15) {
                            break;
                        }
                        let _ = w.set_data(&stray, i.to_string().as_bytes(), None).await;
                    }
                });
            }
            r
        })
    });
    let configs = c.lock().await.configs.clone();
    let before = contents(&configs);
    let stopped = run_with(&req, &h).await.expect_err("the old tree keeps changing");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(stopped.step, Step::FinalSync, "{}", stopped.error);
    assert!(stopped.error.to_string().contains("still changed"), "{}", stopped.error);
    assert_eq!(contents(&configs), before, "no config touched");
    let j = migrate::Journal::load(&dir.path().join("journal")).unwrap();
    assert!(!j.switched && j.digests.final_source.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refuses_before_changing_anything() {
    // A follower up and no hook to stop it; a destination with a tree.
    let root = "/pegasus/refuse";
    let (c, old, new) = cluster(root, |_| {}).await;
    let nc = client(&new).await;
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    nc.mkdir(&format!("{root}/apps"), &open).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let configs = c.lock().await.configs.clone();
    let before = contents(&configs);
    let mut req = request(&c, &new, dir.path()).await;
    req.allow_drift = false;
    let plan = migrate::prepare(&req, &NoHooks).await.expect("prepare");
    let all = plan.refusals.join("\n");
    assert!(all.contains("follower metas still answer"), "{all}");
    assert!(all.contains("already holds a tree"), "{all}");
    assert!(all.contains("blind does not stop duplication"), "{all}");
    // The current ensemble as the destination.
    let same = request(&c, &old, dir.path()).await;
    let p = migrate::prepare(&same, &NoHooks).await.unwrap();
    assert!(p.refusals.iter().any(|r| r.contains("is the ensemble the cluster runs on")), "{:?}", p.refusals);

    let h = hooks(c.clone(), Arc::new(Mutex::new(None)));
    let events = Events(Mutex::new(Vec::new()));
    let ctx = Context { observer: &events, hooks: &h, cancel: Default::default() };
    let stopped = migrate::execute(&plan, &req, &ctx).await.expect_err("refused");
    assert!(matches!(stopped.error, MigrateError::Refused(_)));
    // Nothing changed: level, configs, metas, no journal.
    let cl = c.lock().await;
    assert_eq!(cl.metas[0].level().0, 400);
    assert!(cl.metas[1].addr().port() > 0 && !cl.metas[1].is_leader());
    for (p, b) in configs.iter().zip(&before) {
        assert_eq!(&read(p), b);
    }
    assert!(!dir.path().join("journal").exists());
    drop(cl);

    // apps = lock (a meta stopped mid-update) is refused.
    let (c2, old2, _) = cluster("/pegasus/locked", |s| {
        s.metas = 1;
        s.template.lock_apps_while_updating = false;
    })
    .await;
    client(&old2).await.set_data("/pegasus/locked/apps", b"lock", None).await.unwrap();
    let req = request(&c2, &new, dir.path()).await;
    let p = migrate::prepare(&req, &NoHooks).await.unwrap();
    assert!(p.refusals.iter().any(|r| r.contains("holds \"lock\"")), "{:?}", p.refusals);
    client(&old2).await.set_data("/pegasus/locked/apps", b"unlock", None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_hook_stops_with_the_state_then_resume_finishes() {
    let root = "/pegasus/hookfail";
    let (c, _old, new) = cluster(root, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let req = request(&c, &new, dir.path()).await;
    let fail = Arc::new(Mutex::new(Some(Hook::StopLeader)));
    let h = hooks(c.clone(), fail.clone());
    let stopped = run_with(&req, &h).await.expect_err("the hook fails");
    let events = Events(Mutex::new(Vec::new()));
    let ctx = Context { observer: &events, hooks: &h, cancel: Default::default() };
    assert_eq!(stopped.step, Step::LeaderStopped);
    assert!(matches!(stopped.error, MigrateError::Hook { hook: Hook::StopLeader, .. }), "{}", stopped.error);
    assert!(
        stopped.state.contains("level blind") && stopped.state.contains("configs are unchanged"),
        "{}",
        stopped.state
    );
    assert_eq!(c.lock().await.metas[0].level().0, 200, "still blind");

    let report = migrate::resume(&dir.path().join("journal"), &req, &ctx).await.expect("resumed");
    assert!(report.skipped.contains(&Step::Copied));
    let cl = c.lock().await;
    assert_eq!(cl.metas[0].config().zookeeper_hosts, new);
    assert_eq!(cl.metas[0].level().0, 400);
}

/// Runs a migration and aborts it (as a kill would) `delay` after `step`
/// starts, then resumes it from the journal.
async fn killed_at(step: Step, delay: Duration, root: &str, live: bool) {
    let (c, old, new) = cluster(root, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(&c, &new, dir.path()).await;
    req.live = live;
    let plan = migrate::prepare(&req, &hooks(c.clone(), Arc::new(Mutex::new(None)))).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Step>();
    let task = {
        let (c, req, plan) = (c.clone(), req.clone(), plan.clone());
        tokio::spawn(async move {
            let h = hooks(c, Arc::new(Mutex::new(None)));
            let obs = move |e: Event| {
                if let Event::StepStarted(s) = e {
                    let _ = tx.send(s);
                }
            };
            let ctx = Context { observer: &obs, hooks: &h, cancel: Default::default() };
            migrate::execute(&plan, &req, &ctx).await.map(|_| ())
        })
    };
    while let Some(s) = rx.recv().await {
        if s == step {
            tokio::time::sleep(delay).await;
            task.abort();
            break;
        }
    }
    let _ = task.await;
    let h = hooks(c.clone(), Arc::new(Mutex::new(None)));
    let events = Events(Mutex::new(Vec::new()));
    let ctx = Context { observer: &events, hooks: &h, cancel: Default::default() };
    let report = migrate::resume(&dir.path().join("journal"), &req, &ctx)
        .await
        .unwrap_or_else(|e| panic!("resume after a kill at {step:?}: {e} ({})", e.state));
    assert!(report.blind_window_seconds.is_some());
    let j = migrate::Journal::load(&dir.path().join("journal")).unwrap();
    assert_eq!(j.recorded_level, Some(Level::Steady), "killed at {step:?}: the level before blind is kept");
    assert!(j.finished);
    let cl = c.lock().await;
    assert!(cl.metas[0].is_leader(), "killed at {step:?}");
    assert_eq!(cl.metas[0].config().zookeeper_hosts, new, "killed at {step:?}");
    assert_eq!(cl.metas[1].config().zookeeper_hosts, new, "killed at {step:?}");
    assert_eq!(cl.metas[0].level().0, 400, "killed at {step:?}");
    assert!(cl.metas[0].recreated_partitions().is_empty(), "killed at {step:?}");
    let nc = client(&new).await;
    let oc = client(&old).await;
    // The restarted leader loaded the values the old one last wrote (the
    // old tree is as it left it).
    let last: Vec<i64> =
        progress(&oc, root).await.iter().map(|(_, d)| String::from_utf8_lossy(d).parse().unwrap()).collect();
    let loaded: Vec<i64> = cl.metas[0].loaded_progress().values().copied().collect();
    assert_eq!(loaded, last, "killed at {step:?}");
    let _ = nc;
}

/// [`killed_at`] each of `steps`, at once and 30 ms in.
async fn killed_at_each(steps: &[Step], name: &str, live: bool) {
    for (i, step) in steps.iter().enumerate() {
        for (k, delay) in [0, 30].into_iter().enumerate() {
            killed_at(*step, Duration::from_millis(delay), &format!("/pegasus/{name}{i}-{k}"), live).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_at_each_step_and_resumed() {
    killed_at_each(&Step::ALL, "killed", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_after_the_switch_and_cleanup_refused_until_migrated() {
    let root = "/pegasus/rollback";
    let (c, old, new) = cluster(root, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let configs = c.lock().await.configs.clone();
    let before = contents(&configs);
    let req = request(&c, &new, dir.path()).await;
    let h = hooks(c.clone(), Arc::new(Mutex::new(None)));
    let events = Events(Mutex::new(Vec::new()));
    let ctx = Context { observer: &events, hooks: &h, cancel: Default::default() };

    // Stopped after the copy (its stop hook fails, the leader untouched):
    // cleanup-old refuses (not finished, the cluster still on the old
    // ensemble).
    let stopped = run_with(&req, &hooks(c.clone(), Arc::new(Mutex::new(Some(Hook::StopLeader))))).await;
    assert_eq!(stopped.expect_err("the stop hook fails").step, Step::LeaderStopped);
    let creq = CleanupRequest::from_journal(dir.path().join("journal"));
    let cplan = migrate::plan_cleanup(&creq).await.unwrap();
    let all = cplan.refusals.join("\n");
    assert!(all.contains("not finished") && all.contains("still runs on"), "{all}");
    assert!(migrate::cleanup_old(&cplan, &creq, &Arc::new(zkrepl::Progress::new())).await.is_err());
    assert!(client(&old).await.check_stat(root).await.unwrap().is_some());

    // Finish it, then roll back: configs byte-exact, leader on the old
    // ensemble at its old level, the follower back.
    migrate::resume(&dir.path().join("journal"), &req, &ctx).await.expect("resume");
    let rreq = RollbackRequest::new(dir.path().join("journal"));
    let rplan = migrate::rollback::plan_rollback(&rreq).await.unwrap();
    assert!(rplan.warnings.iter().any(|w| w.contains("changed since the switch")), "{:?}", rplan.warnings);
    migrate::rollback(&rreq, &ctx).await.expect("rollback");
    for (p, b) in configs.iter().zip(&before) {
        assert_eq!(&read(p), b, "{} restored", p.display());
    }
    let cl = c.lock().await;
    assert!(cl.metas[0].is_leader());
    assert_eq!(cl.metas[0].config().zookeeper_hosts, old);
    assert_eq!(cl.metas[1].config().zookeeper_hosts, old);
    assert_eq!(cl.metas[0].level().0, 400);
    let info = MetaClient::new(&cl.metas[0].addr().to_string(), Duration::from_secs(2)).unwrap();
    let leader = info.find_leader().await.unwrap();
    assert_eq!(leader.info.get("zookeeper_hosts"), Some(old.as_str()));
    drop(cl);
    // Rolled back: cleanup-old refuses, resume refuses.
    let cplan = migrate::plan_cleanup(&creq).await.unwrap();
    assert!(cplan.refusals.iter().any(|r| r.contains("rolled back")), "{:?}", cplan.refusals);
    assert!(migrate::resume(&dir.path().join("journal"), &req, &ctx).await.is_err());
}

/// Hooks for some steps only; the others are the operator's, played here
/// by the observer: on the Manual event it does the step after a while.
struct Partial {
    cluster: Arc<tokio::sync::Mutex<SimCluster>>,
    with: Vec<Hook>,
}

impl migrate::HookRunner for Partial {
    fn has(&self, hook: Hook) -> bool {
        self.with.contains(&hook)
    }

    fn run<'a>(&'a self, hook: Hook, env: &'a migrate::HookEnv) -> BoxFuture<'a, Result<(), String>> {
        let h = hooks(self.cluster.clone(), Arc::new(Mutex::new(None)));
        Box::pin(async move { migrate::HookRunner::run(&h, hook, env).await })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_hooks_it_says_what_to_do_and_waits_until_it_sees_it_done() {
    let root = "/pegasus/manual";
    let (c, _old, new) = cluster(root, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let req = request(&c, &new, dir.path()).await;
    let runner = Partial { cluster: c.clone(), with: vec![Hook::StopFollowers, Hook::StartFollowers] };
    let plan = migrate::prepare(&req, &runner).await.unwrap();
    assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let observer = {
        let (c, asked) = (c.clone(), asked.clone());
        move |e: Event| {
            if let Event::Manual { step, instructions } = e {
                asked.lock().unwrap().push((step, instructions));
                let c = c.clone();
                // The operator takes a moment; zkrepl must wait for it.
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    let mut c = c.lock().await;
                    match step {
                        Step::LeaderStopped => c.metas[0].stop().await,
                        Step::LeaderStarted => c.metas[0].restart_from_file().await.unwrap(),
                        other => panic!("not a manual step here: {other:?}"),
                    }
                });
            }
        }
    };
    let ctx = Context { observer: &observer, hooks: &runner, cancel: Default::default() };
    let report = migrate::execute(&plan, &req, &ctx).await.expect("migrate by hand");
    let asked = asked.lock().unwrap().clone();
    let steps: Vec<Step> = asked.iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, vec![Step::LeaderStopped, Step::LeaderStarted]);
    let leader = c.lock().await.metas[0].addr().to_string();
    assert!(asked[0].1.contains(&format!("Stop the leader meta server {leader}")), "{}", asked[0].1);
    assert!(asked[1].1.contains(&new) && asked[1].1.contains("--start-leader"), "{}", asked[1].1);
    assert!(report.parts["stop"] >= 0.6, "it waited for the operator: {:?}", report.parts);
    assert_eq!(c.lock().await.metas[0].config().zookeeper_hosts, new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn configs_that_do_not_match_the_cluster_and_a_partition_missing_on_the_source() {
    let root = "/pegasus/configs";
    let (c, old, new) = cluster(root, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let original = String::from_utf8(read(&c.lock().await.configs[0])).unwrap();
    let other_root = dir.path().join("other-root.ini");
    std::fs::write(&other_root, original.replace(&format!("cluster_root = {root}"), "cluster_root = /elsewhere"))
        .unwrap();
    let no_hosts = dir.path().join("no-hosts.ini");
    std::fs::write(&no_hosts, original.replace(&format!("hosts_list = {old}"), "")).unwrap();
    let mut req = request(&c, &new, dir.path()).await;
    req.configs.push(other_root.clone());
    req.configs.push(no_hosts.clone());
    let h = hooks(c.clone(), Arc::new(Mutex::new(None)));
    let plan = migrate::prepare(&req, &h).await.unwrap();
    let all = plan.refusals.join("\n");
    assert!(all.contains("other-root.ini: [meta_server] cluster_root = /elsewhere"), "{all}");
    assert!(all.contains("no-hosts.ini has no [zookeeper] hosts_list"), "{all}");

    // A partition node list_apps names is missing on the source: the copy
    // is equal, and the migration stops before the leader is stopped.
    client(&old).await.delete(&format!("{root}/apps/2/3"), None).await.unwrap();
    let req = request(&c, &new, dir.path()).await;
    let stopped = run_with(&req, &h).await.expect_err("a partition is missing");
    assert_eq!(stopped.step, Step::Copied);
    let msg = stopped.error.to_string();
    assert!(msg.contains(&format!("{root}/apps/2/3")) && msg.contains("missing on the source too"), "{msg}");
    assert!(c.lock().await.metas[0].is_leader(), "the leader still runs");
}

/// Runs a migration with `hooks` until it stops; the error.
async fn run_until_stopped(
    c: &Arc<tokio::sync::Mutex<SimCluster>>,
    req: &MigrateRequest,
    fail: Option<Hook>,
    on_done: impl Fn(Step) + Send + Sync,
) -> Box<migrate::Stopped> {
    let h = hooks(c.clone(), Arc::new(Mutex::new(fail)));
    let plan = migrate::prepare(req, &h).await.unwrap();
    assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
    let obs = move |e: Event| {
        if let Event::StepDone { step, .. } = e {
            on_done(step);
        }
    };
    let ctx = Context { observer: &obs, hooks: &h, cancel: Default::default() };
    migrate::execute(&plan, req, &ctx).await.expect_err("it stops")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_config_rewrite_cut_short_is_rolled_back_whole() {
    let root = "/pegasus/partial";
    let (c, old, new) = cluster(root, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let configs = c.lock().await.configs.clone();
    let before = contents(&configs);
    let req = request(&c, &new, dir.path()).await;
    // The second config's backup name is taken by another file: its rewrite
    // fails after the first config was rewritten.
    let h = hooks(c.clone(), Arc::new(Mutex::new(None)));
    let plan = migrate::prepare(&req, &h).await.unwrap();
    std::fs::write(&plan.setup.configs[1].backup, b"someone else's file").unwrap();
    let events = Events(Mutex::new(Vec::new()));
    let ctx = Context { observer: &events, hooks: &h, cancel: Default::default() };
    let stopped = migrate::execute(&plan, &req, &ctx).await.expect_err("the second backup is refused");
    assert_eq!(stopped.step, Step::ConfigsRewritten, "{stopped}");
    assert_eq!(read(&configs[0]), with_hosts(&before[0], &old, &new), "the first was rewritten");
    assert_eq!(read(&configs[1]), before[1], "the second was not");

    std::fs::remove_file(&plan.setup.configs[1].backup).unwrap();
    let rreq = RollbackRequest::new(dir.path().join("journal"));
    migrate::rollback(&rreq, &ctx).await.expect("rollback");
    for (p, b) in configs.iter().zip(&before) {
        assert_eq!(&read(p), b, "{} restored", p.display());
    }
    let cl = c.lock().await;
    assert!(cl.metas[0].is_leader());
    assert_eq!(cl.metas[0].config().zookeeper_hosts, old);
    assert_eq!(cl.metas[0].level().0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_restarted_on_the_old_ensemble_stops_the_migration_before_the_switch() {
    let root = "/pegasus/restarted";
    let (c, _old, new) = cluster(root, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let configs = c.lock().await.configs.clone();
    let before = contents(&configs);
    let req = request(&c, &new, dir.path()).await;
    // A supervisor restarts the follower as soon as the leader is stopped:
    // it takes the lead on the old ensemble.
    let cc = c.clone();
    let stopped = run_until_stopped(&c, &req, None, move |step| {
        if step == Step::LeaderStopped {
            let cc = cc.clone();
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    cc.lock().await.metas[1].restart_from_file().await.unwrap();
                })
            });
        }
    })
    .await;
    assert_eq!(stopped.step, Step::FinalSync, "{stopped}");
    assert!(stopped.error.to_string().contains("leader election on the OLD ensemble"), "{}", stopped.error);
    for (p, b) in configs.iter().zip(&before) {
        assert_eq!(&read(p), b, "no config rewritten");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_lock_path_and_a_leader_already_blind_are_refused() {
    let root = "/pegasus/lockpath";
    let (c, _old, new) = cluster(root, |s| s.template.level_on_start = zkrepl_testkit::pegasus::Level::BLIND).await;
    let dir = tempfile::tempdir().unwrap();
    let h = hooks(c.clone(), Arc::new(Mutex::new(None)));
    // Copies of the configs naming another lock path.
    let mut req = request(&c, &new, dir.path()).await;
    req.configs = req
        .configs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let text = String::from_utf8(read(p)).unwrap();
            let q = dir.path().join(format!("m{i}.ini"));
            std::fs::write(&q, text.replace(&format!("{root}/lock"), "/nowhere/lock")).unwrap();
            q
        })
        .collect();
    let plan = migrate::prepare(&req, &h).await.unwrap();
    let all = plan.refusals.join("\n");
    assert!(all.contains("no leader lock at /nowhere/lock"), "{all}");
    assert!(all.contains("already at blind") && all.contains("--restore-level"), "{all}");

    // With the right configs and the level to restore, it goes through.
    let mut req = request(&c, &new, dir.path()).await;
    req.restore_level = Some(Level::Steady);
    run_with(&req, &h).await.expect("migrate");
    assert_eq!(c.lock().await.metas[0].level().0, 400, "the level given is restored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_cleanup_converges_and_rollback_is_refused_once_it_began() {
    let root = "/pegasus/cleanup";
    let (c, old, new) = cluster(root, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let req = request(&c, &new, dir.path()).await;
    run_all(&c, &req).await.expect("migrate");

    // A cleanup that began and was cut short: part of the old tree gone.
    let journal = dir.path().join("journal");
    let mut j = migrate::Journal::load(&journal).unwrap();
    j.cleanup_started = true;
    j.save().unwrap();
    let oc = client(&old).await;
    oc.delete(&format!("{root}/apps/2/3"), None).await.unwrap();
    let rb = migrate::rollback::plan_rollback(&RollbackRequest::new(journal.clone())).await;
    assert!(matches!(rb, Err(MigrateError::Failed(ref m)) if m.contains("cleanup-old")), "{rb:?}");

    let creq = CleanupRequest::from_journal(journal.clone());
    let cplan = migrate::plan_cleanup(&creq).await.unwrap();
    assert!(cplan.refusals.is_empty(), "{:?}", cplan.refusals);
    migrate::cleanup_old(&cplan, &creq, &Arc::new(zkrepl::Progress::new())).await.expect("cleanup resumed");
    assert!(oc.check_stat(root).await.unwrap().is_none());
    // Once more: nothing left, and that is done too.
    let cplan = migrate::plan_cleanup(&creq).await.unwrap();
    assert!(cplan.refusals.is_empty() && cplan.nodes == Some(0), "{:?}", cplan.refusals);
    migrate::cleanup_old(&cplan, &creq, &Arc::new(zkrepl::Progress::new())).await.expect("nothing to do");
    assert!(migrate::Journal::load(&journal).unwrap().cleaned_up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cleanup_by_hand_refuses_the_ensemble_in_use_under_another_name() {
    let root = "/pegasus/byname";
    let (c, old, _new) = cluster(root, |_| {}).await;
    let metas: Vec<String> = c.lock().await.metas.iter().map(|m| m.addr().to_string()).collect();
    // The cluster runs on 127.0.0.1:PORT; the operator names it localhost:PORT.
    let port = old.rsplit(':').next().unwrap();
    let mut creq = CleanupRequest::from_journal(std::path::PathBuf::new());
    creq.journal = None;
    creq.zk = Some(format!("localhost:{port}"));
    creq.root = Some(root.to_string());
    creq.metas = Some(metas.join(","));
    let cplan = migrate::plan_cleanup(&creq).await.unwrap();
    assert!(cplan.refusals.iter().any(|r| r.contains("still runs on the old ensemble")), "{:?}", cplan.refusals);
    assert!(migrate::cleanup_old(&cplan, &creq, &Arc::new(zkrepl::Progress::new())).await.is_err());
    assert!(client(&old).await.check_stat(root).await.unwrap().is_some(), "nothing deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_leader_is_proven_gone_by_its_connections_before_its_session_expires() {
    let root = "/pegasus/crash";
    // A long session timeout: waiting for the lock node to go would take it.
    let (c, old, new) = cluster(root, |s| s.template.zookeeper_timeout_ms = 20_000).await;
    let dir = tempfile::tempdir().unwrap();
    let req = request(&c, &new, dir.path()).await;
    let cc = c.clone();
    let crash = FnHooks(move |hook: Hook| -> BoxFuture<'static, Result<(), String>> {
        let cc = cc.clone();
        Box::pin(async move {
            if hook == Hook::StopLeader {
                cc.lock().await.metas[0].kill().await;
                Ok(())
            } else {
                let h = hooks(cc, Arc::new(Mutex::new(None)));
                migrate::HookRunner::run(&h, hook, &migrate::HookEnv::default()).await
            }
        })
    });
    let started = std::time::Instant::now();
    let report = run_with(&req, &crash).await.expect("migrate");
    let proof = &report.notes["stop proof"];
    assert!(proof.contains("refuses connections") && proof.contains("cons"), "{proof}");
    assert!(report.parts["stop"] < 10.0, "not the 20 s session timeout: {:?}", report.parts);
    assert!(started.elapsed() < Duration::from_secs(60));
    // The crashed leader's lock node outlives it on the old ensemble.
    let oc = client(&old).await;
    let kids = oc.list_children(&format!("{root}/lock/dsn.meta.server.leader")).await.unwrap();
    assert!(kids.iter().any(|k| k.starts_with("LOCKNODE")), "{kids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cons_lists_a_connected_session_and_not_a_closed_one() {
    let (old, _) = servers().await;
    let c = migrate::checks::connect(&old, zkrepl::Side::Source, &Default::default(), Duration::from_secs(5))
        .await
        .unwrap();
    let sid = c.session_id().0;
    let members = vec![old.clone()];
    let live = migrate::checks::connected_sessions(&members, Duration::from_secs(2)).await.expect("cons allowed");
    assert!(live.contains(&sid), "0x{sid:x} not in {live:x?}");
    drop(c);
    let mut gone = false;
    for _ in 0..50 {
        let live = migrate::checks::connected_sessions(&members, Duration::from_secs(2)).await.unwrap();
        if !live.contains(&sid) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "a closed session is no longer listed");
}
