//! `zkrepl pegasus recover`: the command-line side of moving a Pegasus
//! cluster to a new ZooKeeper by metadata recovery from the replica
//! servers. The procedure lives in `zkrepl_pegasus::recover`; this prints
//! its plan and events, asks, and maps the outcome to an exit status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use zkrepl_pegasus::migrate::{Context, Hooks, MigrateError, ShellHooks, StepName, Stopped};
use zkrepl_pegasus::recover::{self, Plan, RecoverRequest, Step};

use crate::common::print_json;
use crate::migrate::{
    Printer, UntilArgs, WaitArgs, cancel_on_signals, fail, gate, hook_log, rollback_gate, rollback_outcome,
};
use crate::outcome::{Exit, Outcome, print_error_line};

pub const RECOVER_HELP: &str = "Use it when the old ZooKeeper's data is lost or not trusted: the meta server \
rebuilds every app and partition from what the replica servers hold. When the old ZooKeeper is sound, \
`zkrepl pegasus migrate` copies it instead, proven complete, with a shorter outage.\n\n\
First it checks, changing nothing, and prints the plan: the leader, list_apps and list_nodes (refused when an app \
list is empty, when a replica server is not ALIVE unless --skip-bad-nodes, or when the new ensemble already holds \
apps under the cluster root: the meta aborts on them with the flag set), each config (its [zookeeper] hosts_list \
the cluster's, cluster_root the cluster's). Then, asked (or --yes), the steps, each written to the journal before \
and after it runs:\n  \
1. save list_apps and list_nodes as JSON and the recovery node list beside the journal \
(<journal>.apps.json, .nodes.json, .recovery-nodes)\n  \
2. rewrite every --config: [meta_server] recover_from_replica_server = true (added when missing) and \
[zookeeper] hosts_list = the new ensemble (temp file and rename, every other byte kept, backup \
<config>.before-recover-<time>)\n  \
3. stop every meta (--stop-metas), check none answers nor is in the leader election\n  \
4. wait until the replica servers have dropped them: [replication] config_sync_interval_ms of the configs \
(default 30s) and half of it again (at least 1s), counted from when every meta was seen down\n  \
5. start the old leader alone (--start-meta), wait until it leads on the new ensemble\n  \
6. send RPC_CM_START_RECOVERY with the saved ALIVE nodes (--skip-bad-nodes, --skip-lost-partitions) and print \
the meta's hint; if the meta refuses, the metas are stopped, the configs restored and the metas started again \
on the old ensemble\n  \
7. wait until every saved node is ALIVE again, compare list_apps with the saved one (names, ids, partition \
counts) and print the differences\n  \
8. set recover_from_replica_server back (the line removed again when it was added): each config ends as it was \
but for hosts_list\n  \
9. restart every meta, the leader first (--stop-metas, --start-meta, then --start-metas for the others that ran \
before), check the leader serves, the nodes are alive, every partition node is on the new ensemble and every \
meta is in its leader election\n\n\
A step without a hook is the operator's: zkrepl prints what to do and waits (up to --wait) until it sees it done. \
Hooks run with sh -c, their output appended to <journal>.hooks.log, and get ZKREPL_HOOK, ZKREPL_META (the meta \
to start first), ZKREPL_METAS (the metas to stop, or the others to start), ZKREPL_HOSTS (the ensemble they are \
to run on), ZKREPL_OLD_HOSTS, ZKREPL_NEW_HOSTS, ZKREPL_ROOT, ZKREPL_CONFIGS and ZKREPL_JOURNAL.\n\n\
Examples:\n  \
zkrepl pegasus recover --meta m1:34601,m2:34601 --dst nzk1:2181,nzk2:2181,nzk3:2181 \\\n    \
--config /etc/pegasus/meta1.ini --config /etc/pegasus/meta2.ini \\\n    \
--stop-metas 'for m in m1 m2; do ssh $m systemctl stop pegasus-meta; done' \\\n    \
--start-meta 'ssh m1 systemctl start pegasus-meta' \\\n    \
--start-metas 'ssh m2 systemctl start pegasus-meta'\n  \
zkrepl pegasus recover --resume --journal /etc/pegasus/zkrepl-recover.journal\n  \
zkrepl pegasus rollback --journal /etc/pegasus/zkrepl-recover.journal\n\n\
Exit status: 0 recovered with the same apps, 1 recovered but list_apps differs from before (printed), 2 refused \
or failed (the cluster's state and how to resume or roll back are printed), 130 interrupted.";

/// Hook commands of a recovery (and of its rollback).
#[derive(Args, Debug, Clone, Default)]
pub struct RecoverHookArgs {
    /// Shell command that stops every meta server
    #[arg(long, value_name = "CMD")]
    pub stop_metas: Option<String>,
    /// Shell command that starts one meta server, ZKREPL_META (on its config as it then is)
    #[arg(long, value_name = "CMD")]
    pub start_meta: Option<String>,
    /// Shell command that starts the other meta servers, ZKREPL_METAS
    #[arg(long, value_name = "CMD")]
    pub start_metas: Option<String>,
}

impl RecoverHookArgs {
    pub fn hooks(&self) -> Hooks {
        Hooks {
            stop_metas: self.stop_metas.clone(),
            start_meta: self.start_meta.clone(),
            start_metas: self.start_metas.clone(),
            ..Default::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// Meta servers: host[:port],... (any of them; the configs' server_list is added)
    #[arg(long, value_name = "HOSTS", required_unless_present = "resume")]
    pub meta: Option<String>,
    /// The new ZooKeeper ensemble, as hosts_list takes it: host:port,...
    #[arg(long, value_name = "HOSTS", required_unless_present = "resume")]
    pub dst: Option<String>,
    /// A meta server's config file (repeat for each meta)
    #[arg(long, value_name = "FILE", required_unless_present = "resume")]
    pub config: Vec<PathBuf>,
    #[command(flatten)]
    pub hooks: RecoverHookArgs,
    /// Kill a hook that has not finished within this long
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::args::timeout)]
    pub hook_timeout: Duration,
    /// The journal [default: zkrepl-recover.journal beside the first --config]
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Continue the recovery the journal records (re-checks what it finds, skips what is done)
    #[arg(long, requires = "journal")]
    pub resume: bool,
    /// Recover from the ALIVE replica servers when some are not (sent with skip_bad_nodes)
    #[arg(long)]
    pub skip_bad_nodes: bool,
    /// Let the meta recreate empty the partitions no replica server holds (their data is lost)
    #[arg(long)]
    pub skip_lost_partitions: bool,
    /// The leader-lock path when the configs do not name one [default: <root>/lock]
    #[arg(long, value_name = "PATH")]
    pub lock_path: Option<String>,
    /// Give up on the recovery call after this long (the meta asks every replica server, then writes every app, before it answers)
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::args::timeout)]
    pub recovery_timeout: Duration,
    /// Print the plan and the lists it would save; change nothing
    #[arg(long, conflicts_with = "resume")]
    pub dry_run: bool,
    #[command(flatten)]
    pub until: UntilArgs,
    #[command(flatten)]
    pub wait: WaitArgs,

    #[command(flatten)]
    pub zk: crate::args::ZkSecurity,
}

fn request(a: &RecoverArgs) -> zkrepl::Result<RecoverRequest> {
    let mut r = RecoverRequest::new(a.meta.as_deref().unwrap_or(""), a.dst.as_deref().unwrap_or(""), a.config.clone());
    r.zk_access = a.zk.zk_access()?;
    r.hooks = a.hooks.hooks();
    r.journal = a.journal.clone();
    r.skip_bad_nodes = a.skip_bad_nodes;
    r.skip_lost_partitions = a.skip_lost_partitions;
    r.lock_path = a.lock_path.clone();
    r.wait = a.until.wait;
    r.meta_timeout = a.wait.timeout;
    r.recovery_timeout = a.recovery_timeout;
    r.zk_timeout = a.wait.zk_timeout;
    Ok(r)
}

fn print_plan(p: &Plan) {
    let s = &p.setup;
    eprintln!("recover the Pegasus cluster of leader {} from its replica servers", s.leader);
    eprintln!("  now on         {}  root {}", s.src_hosts, s.root);
    eprintln!("  onto           {}  (apps there: {})", s.dst_hosts, p.dst_apps);
    let others = if s.others_up.is_empty() { "none up".to_string() } else { s.others_up.join(", ") };
    eprintln!("  other metas    {others}");
    eprintln!(
        "  apps           {} ({} partitions)",
        p.apps.len(),
        p.apps.iter().map(|a| a.partition_count.max(0) as i64).sum::<i64>()
    );
    for a in &p.apps {
        eprintln!(
            "    {:>5} {} {} partitions, {}",
            a.app_id,
            a.app_name,
            a.partition_count,
            zkrepl_pegasus::messages::app_status_name(a.status)
        );
    }
    eprintln!("  replica nodes  {} ({} to recover from)", p.nodes.len(), s.recovery_nodes.len());
    for n in &p.nodes {
        eprintln!("    {} {}", n.address, n.status);
    }
    for c in &s.configs {
        let flag = c
            .flag_before
            .as_deref()
            .map(|f| format!("recover_from_replica_server {f}"))
            .unwrap_or_else(|| "no recover_from_replica_server (added, then removed)".to_string());
        eprintln!("  config         {} (hosts_list {}; {flag})", c.path.display(), c.old_hosts);
    }
    eprintln!(
        "  replica wait   {:.1}s after every meta is down (config_sync_interval_ms {})",
        s.release_wait_ms as f64 / 1000.0,
        s.config_sync_interval_ms
    );
    eprintln!("  journal        {}", p.journal.display());
    let h = &s.hooks;
    let by =
        |cmd: Option<&str>| cmd.map(|c| format!(" (hook: {c})")).unwrap_or(" (by hand: zkrepl waits for it)".into());
    for step in Step::ALL {
        let how = match step {
            Step::MetasStopped => by(h.stop_metas.as_deref()),
            Step::MetaStarted => by(h.start_meta.as_deref()),
            Step::MetasRestarted => {
                let all = h.stop_metas.is_some() && h.start_meta.is_some();
                let all = all && (s.others_up.is_empty() || h.start_metas.is_some());
                if all { " (hooks)".to_string() } else { " (by hand where a hook is missing)".to_string() }
            }
            _ => String::new(),
        };
        eprintln!("  {}. {}{how}", step.number(), step.describe());
    }
    for w in &p.warnings {
        eprintln!("  warning: {w}");
    }
    for r in &p.refusals {
        eprintln!("  REFUSED: {r}");
    }
}

fn stopped(json: bool, s: &Stopped<Step>) -> Outcome {
    let j = s.journal.display();
    let next = if s.state.starts_with("restored") {
        "start a new recovery (with a new --journal) once the cause is fixed".to_string()
    } else if s.state.starts_with("being restored") {
        format!("finish the undo: zkrepl pegasus rollback --journal {j}")
    } else {
        format!("resume: zkrepl pegasus recover --resume --journal {j}; undo: zkrepl pegasus rollback --journal {j}")
    };
    let refused = matches!(s.error, MigrateError::Refused(_));
    if json {
        print_json(&serde_json::json!({
            "error": s.to_string(), "step": s.step, "state": s.state, "journal": s.journal,
            "next": if refused { None } else { Some(&next) },
        }));
    }
    print_error_line(&s, None);
    eprintln!("zkrepl: the cluster: {}", s.state);
    if !refused {
        eprintln!("zkrepl: {next}");
    }
    Outcome { exit: if matches!(s.error, MigrateError::Interrupted) { Exit::Interrupted } else { Exit::Error } }
}

fn finish(json: bool, r: Result<recover::Report, Box<Stopped<Step>>>) -> Outcome {
    let report = match r {
        Ok(r) => r,
        Err(s) => return stopped(json, &s),
    };
    if json {
        print_json(&report);
    } else {
        println!(
            "recovered: the cluster runs on {} (root {}): {} apps, {} partitions, {} replica servers",
            report.dst_hosts, report.root, report.apps, report.partitions, report.nodes_alive
        );
        for line in report.recovery_hint.lines().filter(|l| !l.trim().is_empty()) {
            println!("meta: {line}");
        }
        if report.differences.is_empty() {
            println!("list_apps: the same names, ids and partition counts as before");
        }
        for d in &report.differences {
            println!("DIFFERS: {d}");
        }
    }
    Outcome { exit: if report.differences.is_empty() { Exit::Ok } else { Exit::Differences } }
}

pub async fn run_recover(a: RecoverArgs) -> Outcome {
    let json = a.wait.json;
    let req = match request(&a) {
        Ok(r) => r,
        Err(e) => return fail(json, &e.to_string(), None, Exit::Error),
    };
    let cancel = cancel_on_signals();
    let printer = Printer::default();
    if a.resume {
        let journal = a.journal.clone().expect("--resume requires --journal");
        let j = match recover::Journal::load(&journal) {
            Ok(j) => j,
            Err(e) => return fail(json, &e.to_string(), Some("--journal takes the file a recover wrote"), Exit::Error),
        };
        let hooks = ShellHooks {
            hooks: j.setup.hooks.overridden_by(&req.hooks),
            log: hook_log(&journal),
            timeout: a.hook_timeout,
        };
        eprintln!("resuming the recovery in {}: {}", journal.display(), j.describe_state());
        let ctx = Context { observer: &printer, hooks: &hooks, cancel };
        let r = recover::resume(&journal, &req, &ctx).await;
        printer.end_bar();
        return finish(json, r);
    }
    let plan = match recover::prepare(&req).await {
        Ok(p) => p,
        Err(e) => return fail(json, &e.to_string(), hint(&e), Exit::Error),
    };
    if json && (a.dry_run || !plan.refusals.is_empty()) {
        print_json(&plan);
    }
    print_plan(&plan);
    let dry = "nothing changed, nothing saved";
    if let Some(done) = gate(json, !plan.refusals.is_empty(), a.dry_run, a.wait.yes, "recovery", dry) {
        return done;
    }
    let hooks = ShellHooks { hooks: req.hooks.clone(), log: hook_log(&plan.journal), timeout: a.hook_timeout };
    let ctx = Context { observer: &printer, hooks: &hooks, cancel };
    let r = recover::execute(&plan, &req, &ctx).await;
    printer.end_bar();
    finish(json, r)
}

fn hint(e: &MigrateError) -> Option<&'static str> {
    match e {
        MigrateError::Meta(zkrepl_pegasus::Error::NoMetaReachable { .. }) => Some(
            "check --meta (meta servers, not ZooKeeper) and that the leader runs: the recovery starts from what it lists",
        ),
        MigrateError::Config(_) => Some("--config takes each meta server's config.ini"),
        _ => None,
    }
}

/// `pegasus rollback` of a recovery's journal.
pub async fn run_rollback(
    journal: &Path,
    hooks: &RecoverHookArgs,
    hook_timeout: Duration,
    until: &UntilArgs,
    wait: &WaitArgs,
    access: &zkrepl_pegasus::zk::ZkAccess,
) -> Outcome {
    let json = wait.json;
    let plan = match recover::plan_rollback(journal, access, wait.zk_timeout).await {
        Ok(p) => p,
        Err(e) => return fail(json, &e.to_string(), None, Exit::Error),
    };
    if let Err(o) = rollback_gate(json, "recovery", &plan, wait.yes) {
        return o;
    }
    let j = match recover::Journal::load(journal) {
        Ok(j) => j,
        Err(e) => return fail(json, &e.to_string(), None, Exit::Error),
    };
    let mut req = RecoverRequest::new("", "", Vec::new());
    req.hooks = hooks.hooks();
    req.wait = until.wait;
    req.meta_timeout = wait.timeout;
    req.zk_timeout = wait.zk_timeout;
    req.zk_access = access.clone();
    let shell =
        ShellHooks { hooks: j.setup.hooks.overridden_by(&req.hooks), log: hook_log(journal), timeout: hook_timeout };
    let printer = Printer::default();
    let ctx = Context { observer: &printer, hooks: &shell, cancel: cancel_on_signals() };
    let r = recover::rollback(journal, &req, &ctx).await;
    printer.end_bar();
    rollback_outcome(json, r)
}
