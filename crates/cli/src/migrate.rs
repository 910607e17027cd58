//! `zkrepl pegasus migrate | rollback | cleanup-old`: the command-line side
//! of moving a Pegasus cluster to a new ZooKeeper ensemble. The procedure
//! lives in `zkrepl_pegasus::migrate`; this prints its plan and events,
//! asks, and maps the outcome to an exit status.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use zkrepl::CancellationToken;
use zkrepl_pegasus::migrate::rollback::{RollbackPlan, RollbackReport, plan_rollback};
use zkrepl_pegasus::migrate::{
    self, CleanupRequest, Context, Event, Hooks, MigrateError, MigrateRequest, Plan, RollbackRequest, ShellHooks, Step,
    StepName, Stopped,
};

use crate::common::print_json;
use crate::outcome::{Exit, Outcome, print_error_line};

const MIGRATE_HELP: &str = "First it checks, changing nothing, and prints the plan: the leader, the followers \
(they must be down, or --stop-followers given), the configs (each with [zookeeper] hosts_list, the cluster's \
cluster_root), the leader lock, <root>/apps not locked, the destination empty (or --update) and not the current \
ensemble, and what blind does not stop (duplication, bulk load, backup, split: refused unless --allow-drift). \
Then, asked (or --yes), the steps, each written to the journal before and after it runs:\n  \
1. stop the followers (--stop-followers), check none answers or is in the leader election\n  \
2. record the level, set blind, read it back\n  \
3. digest the source root, copy it, verify, re-sync while it changed (--max-rounds); check every app and partition\n  \
4. stop the leader (--stop-leader), wait until it cannot write (its lock node gone, or its port refusing and no \
connection of its session on any member: cons)\n  \
5. sync its last writes, verify, digest the source again\n  \
6. rewrite [zookeeper] hosts_list in every --config (temp file and rename, every other byte kept, backup \
<config>.before-migrate-<time>)\n  \
7. start the leader (--start-leader), wait until cluster_info names the new hosts, restore the level, check the \
replica servers\n  \
8. start the followers (--start-followers), check each answers on the new ensemble\n\n\
With --live, the tree is mirrored before blind: a persistent watch on the root, a full copy and every change \
applied as it comes, while the cluster runs at its level. Step 3 then only catches up (every change committed \
before it is applied), and step 5 is a last catch-up and a verify (data, ACLs, sequence counters; ACLs read again \
only where a node's stat shows them set since) between two marks with no change on the old tree between them. \
Blind then lasts about a second on top of the hooks; duplication and the like may go on (they are followed). \
The report gives the window's moments: blind to the stop hook, the hook, the wait for the stop to be proven, the \
proof to the start hook.\n\n\
A step without a hook is the operator's: zkrepl prints what to do and waits (up to --wait) until it sees it done. \
Hooks run with sh -c, their output appended to <journal>.hooks.log, and get ZKREPL_HOOK, ZKREPL_LEADER, \
ZKREPL_FOLLOWERS, ZKREPL_OLD_HOSTS, ZKREPL_NEW_HOSTS, ZKREPL_ROOT, ZKREPL_CONFIGS and ZKREPL_JOURNAL.\n\n\
Examples:\n  \
zkrepl pegasus migrate --meta m1:34601,m2:34601 \\\n    \
--dst nzk1:2181,nzk2:2181,nzk3:2181 \\\n    \
--config /etc/pegasus/meta1.ini --config /etc/pegasus/meta2.ini \\\n    \
--stop-followers 'ssh m2 systemctl stop pegasus-meta' \\\n    \
--stop-leader 'ssh m1 systemctl stop pegasus-meta' \\\n    \
--start-leader 'ssh m1 systemctl start pegasus-meta' \\\n    \
--start-followers 'ssh m2 systemctl start pegasus-meta'\n  \
zkrepl pegasus migrate --resume --journal /etc/pegasus/zkrepl-migrate.journal\n  \
zkrepl pegasus rollback --journal /etc/pegasus/zkrepl-migrate.journal\n\n\
Exit status: 0 migrated, 2 refused or failed (the cluster's state and how to resume or roll back are printed), \
130 interrupted.";

/// Hook commands, shared by migrate and rollback.
#[derive(Args, Debug, Clone, Default)]
pub struct HookArgs {
    /// Shell command that stops every follower meta server
    #[arg(long, value_name = "CMD")]
    pub stop_followers: Option<String>,
    /// Shell command that stops the leader meta server
    #[arg(long, value_name = "CMD")]
    pub stop_leader: Option<String>,
    /// Shell command that starts the leader meta server (on the config as it then is)
    #[arg(long, value_name = "CMD")]
    pub start_leader: Option<String>,
    /// Shell command that starts the follower meta servers
    #[arg(long, value_name = "CMD")]
    pub start_followers: Option<String>,
    /// Kill a hook that has not finished within this long
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::args::timeout)]
    pub hook_timeout: Duration,
}

impl HookArgs {
    fn hooks(&self) -> Hooks {
        Hooks {
            stop_followers: self.stop_followers.clone(),
            stop_leader: self.stop_leader.clone(),
            start_leader: self.start_leader.clone(),
            start_followers: self.start_followers.clone(),
            ..Default::default()
        }
    }
}

/// Timeouts and output, shared by the three commands.
#[derive(Args, Debug, Clone)]
pub struct WaitArgs {
    /// Give up on a meta server call after this long
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::args::timeout)]
    pub timeout: Duration,
    /// Give up connecting to a ZooKeeper ensemble after this long
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::args::timeout)]
    pub zk_timeout: Duration,
    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the result as JSON on stdout (events stay on stderr)
    #[arg(long)]
    pub json: bool,
}

impl WaitArgs {
    fn timeouts(&self) -> zkrepl::Timeouts {
        zkrepl::Timeouts { connect: self.zk_timeout, ..Default::default() }
    }
}

/// How long to wait for what a hook or the operator does.
#[derive(Args, Debug, Clone)]
pub struct UntilArgs {
    /// Wait at most this long for a condition: a meta down, a meta serving, a step done by hand
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = crate::args::timeout)]
    pub wait: Duration,
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// Meta servers: host[:port],... (any of them; the configs' server_list is added)
    #[arg(long, value_name = "HOSTS", required_unless_present = "resume")]
    pub meta: Option<String>,
    /// The new ZooKeeper ensemble, as hosts_list takes it: host:port,...
    #[arg(long, value_name = "HOSTS", required_unless_present = "resume")]
    pub dst: Option<String>,
    /// A meta server's config file (repeat for each meta); its [zookeeper] hosts_list is rewritten
    #[arg(long, value_name = "FILE", required_unless_present = "resume")]
    pub config: Vec<PathBuf>,
    #[command(flatten)]
    pub hooks: HookArgs,
    /// The journal [default: zkrepl-migrate.journal beside the first --config]
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Continue the migration the journal records (re-checks what it finds, skips what is done)
    #[arg(long, requires = "journal")]
    pub resume: bool,
    /// Copy onto a destination root that already holds a tree
    #[arg(long)]
    pub update: bool,
    /// Go on although duplication, bulk load, backup or split runs (or cannot be told): the re-syncs and the final sync after the leader stops catch their writes
    #[arg(long)]
    pub allow_drift: bool,
    /// The leader-lock path when the configs do not name one ([meta_server] distributed_lock_service_parameters) [default: <root>/lock]
    #[arg(long, value_name = "PATH")]
    pub lock_path: Option<String>,
    /// Mirror the tree live before blind (watch, full copy, follow), so blind holds only catch-ups, the stop and a verify; see above
    #[arg(long)]
    pub live: bool,
    /// Re-sync rounds while the source changes during the copy, before giving up
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub max_rounds: u32,
    /// The level to restore afterwards when the leader is already at blind or stopped (an earlier migration stopped there)
    #[arg(long, value_name = "LEVEL", value_parser = crate::args::level)]
    pub restore_level: Option<zkrepl_pegasus::Level>,
    /// Print the plan and the checks; change nothing
    #[arg(long, conflicts_with = "resume")]
    pub dry_run: bool,
    #[command(flatten)]
    pub until: UntilArgs,
    #[command(flatten)]
    pub wait: WaitArgs,

    #[command(flatten)]
    pub zk: crate::args::ZkSecurity,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// The migration's (or recovery's) journal
    #[arg(long, value_name = "FILE")]
    pub journal: PathBuf,
    /// Hooks given here replace the journal's
    #[command(flatten)]
    pub hooks: HookArgs,
    /// A recovery's hooks, given here, replace its journal's
    #[command(flatten)]
    pub recover_hooks: crate::recover::RecoverHookArgs,
    #[command(flatten)]
    pub until: UntilArgs,
    #[command(flatten)]
    pub wait: WaitArgs,

    #[command(flatten)]
    pub zk: crate::args::ZkSecurity,
}

#[derive(Args, Debug)]
pub struct CleanupArgs {
    /// The migration's journal (or give --zk, --root and --meta)
    #[arg(long, value_name = "FILE", required_unless_present_all = ["zk", "root", "meta"])]
    pub journal: Option<PathBuf>,
    /// The old ensemble
    #[arg(long, value_name = "HOSTS", conflicts_with = "journal")]
    pub zk: Option<String>,
    /// The old cluster root (zookeeper_root)
    #[arg(long, value_name = "PATH", conflicts_with = "journal")]
    pub root: Option<String>,
    /// Meta servers, to ask which ensemble the cluster uses
    #[arg(long, value_name = "HOSTS", conflicts_with = "journal")]
    pub meta: Option<String>,
    /// The leader-lock path on the old ensemble [default: <root>/lock]
    #[arg(long, value_name = "PATH", conflicts_with = "journal")]
    pub lock_path: Option<String>,
    /// Run the checks and count; delete nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub wait: WaitArgs,

    #[command(flatten)]
    pub secure: crate::args::ZkSecurity,
}

pub const ROLLBACK_HELP: &str = "A recovery's journal (pegasus recover) is rolled back with its hooks \
(--stop-metas, --start-meta, --start-metas): every meta stopped, every config restored from its backup, the leader \
and then the others started on the old ensemble.\n\n\
A migration's: works from wherever the migration stopped: stops the metas if they run on the new \
ensemble (--stop-leader, --stop-followers, or the journal's hooks), restores every config from its backup, starts \
the leader on the old ensemble, restores the recorded level and starts the followers. The new ensemble is left as \
it is; a warning says when it changed since the switch (those changes are lost). Refused when the old tree is \
not the one the leader left, and once cleanup-old has begun.\n\n\
Exit status: 0 rolled back, 2 refused or failed, 130 interrupted.";

pub const CLEANUP_HELP: &str = "Deletes the old tree (children first, batched multi() deletes) only after checking \
that cluster_info no longer names the old ensemble, that no meta holds a node in the leader election there, and \
that the new tree verifies equal to the old one (with --journal: or that the old tree is still the one verified \
equal at the switch, the new cluster having written since). Asks unless --yes.\n\n\
Exit status: 0 removed (or, with --dry-run, all checks passed), 2 refused or failed.";

pub fn migrate_help() -> &'static str {
    MIGRATE_HELP
}

/// Prints events on stderr as they come; a copy or verify in progress
/// shows its counters on a terminal.
#[derive(Default)]
pub(crate) struct Printer {
    bar: std::sync::Mutex<Option<crate::common::ProgressView>>,
}

impl Printer {
    pub(crate) fn end_bar(&self) {
        if let Some(v) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            v.finish();
        }
    }
}

impl<S: StepName> migrate::Observer<S> for Printer {
    fn event(&self, e: Event<S>) {
        let n = S::count();
        if let Event::Working { progress, .. } = e {
            self.end_bar();
            *self.bar.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(crate::common::ProgressView::start(progress, false));
            return;
        }
        self.end_bar();
        match e {
            Event::StepStarted(s) => eprintln!("[{}/{n}] {}", s.number(), s.describe()),
            Event::StepDone { note, .. } => eprintln!("      done: {note}"),
            Event::StepSkipped { step, why } => {
                eprintln!("[{}/{n}] {}: skipped, {why}", step.number(), step.describe())
            }
            Event::Note(m) => eprintln!("      {m}"),
            Event::Warning(m) => eprintln!("      warning: {m}"),
            Event::Manual { instructions, .. } => eprintln!("      ACTION NEEDED: {instructions}"),
            Event::HookRunning { hook, command } => {
                eprintln!("      running {}: {}", hook.option(), command.unwrap_or_default())
            }
            Event::Working { .. } => {}
        }
    }
}

/// A token that the first Ctrl-C or SIGTERM cancels (the run stops at its
/// next safe point, the journal says where); a second one quits at once.
pub(crate) fn cancel_on_signals() -> CancellationToken {
    let progress = Arc::new(zkrepl::Progress::new());
    crate::common::watch_signals(progress.clone());
    progress.cancel_token().clone()
}

/// Asks on the terminal; without one, `--yes` is required.
pub(crate) fn confirm(question: &str, yes: bool) -> Result<(), String> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err("not a terminal to ask on: give --yes to go on".to_string());
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if matches!(line.trim(), "y" | "Y" | "yes" | "YES") { Ok(()) } else { Err("not confirmed".to_string()) }
}

pub(crate) fn fail(json: bool, msg: &str, hint: Option<&str>, exit: Exit) -> Outcome {
    if json {
        print_json(&serde_json::json!({ "error": msg, "hint": hint }));
    }
    print_error_line(&msg, hint);
    Outcome { exit }
}

fn print_plan(p: &Plan) {
    let s = &p.setup;
    eprintln!("migrate the Pegasus cluster of leader {}", s.leader);
    eprintln!("  from           {}  root {}", s.src_hosts, s.root);
    eprintln!("  to             {}  (root there: {})", s.dst_hosts, p.dst_root);
    eprintln!(
        "  level          {}{}",
        p.level,
        p.reported_level
            .as_deref()
            .filter(|r| *r != p.level.name())
            .map(|r| format!(" (reported {r})"))
            .unwrap_or_default()
    );
    eprintln!("  leader lock    {}", s.lock_path);
    let followers = if s.followers.is_empty() { "none".to_string() } else { s.followers.join(", ") };
    eprintln!("  followers      {followers}{}", if p.followers_alive.is_empty() { "" } else { " (some still up)" });
    eprintln!("  replicas       {} alive", s.alive_nodes);
    eprintln!(
        "  apps           {} ({} partitions)",
        s.apps.len(),
        s.apps.iter().map(|a| a.partition_count.max(0) as i64).sum::<i64>()
    );
    for c in &s.configs {
        eprintln!("  config         {} (hosts_list {})", c.path.display(), c.old_hosts);
    }
    eprintln!("  journal        {}", p.journal.display());
    for step in Step::ALL {
        let hook = match step {
            Step::FollowersStopped => s.hooks.stop_followers.as_deref(),
            Step::LeaderStopped => s.hooks.stop_leader.as_deref(),
            Step::LeaderStarted => s.hooks.start_leader.as_deref(),
            Step::FollowersStarted => s.hooks.start_followers.as_deref(),
            _ => None,
        };
        let by = match (step, hook) {
            (_, Some(cmd)) => format!(" (hook: {cmd})"),
            (Step::LeaderStopped | Step::LeaderStarted, None) => " (by hand: zkrepl waits for it)".to_string(),
            (Step::FollowersStarted, None) if !s.followers.is_empty() => " (by hand: zkrepl waits for it)".to_string(),
            _ => String::new(),
        };
        eprintln!("  {}. {}{by}", step.number(), step.describe());
    }
    if !p.in_progress.is_empty() {
        eprintln!("  in progress    {}", p.in_progress.join(", "));
    }
    if !p.unknown.is_empty() {
        eprintln!("  could not tell {}", p.unknown.join(", "));
    }
    for w in &p.warnings {
        eprintln!("  warning: {w}");
    }
    for r in &p.refusals {
        eprintln!("  REFUSED: {r}");
    }
}

fn request(a: &MigrateArgs) -> zkrepl::Result<MigrateRequest> {
    let mut r = MigrateRequest::new(a.meta.as_deref().unwrap_or(""), a.dst.as_deref().unwrap_or(""), a.config.clone());
    r.zk_access = a.zk.zk_access()?;
    r.hooks = a.hooks.hooks();
    r.journal = a.journal.clone();
    r.update = a.update;
    r.allow_drift = a.allow_drift;
    r.lock_path = a.lock_path.clone();
    r.max_rounds = a.max_rounds;
    r.live = a.live;
    r.restore_level = a.restore_level;
    r.wait = a.until.wait;
    r.meta_timeout = a.wait.timeout;
    r.timeouts = a.wait.timeouts();
    Ok(r)
}

fn stopped(json: bool, s: &Stopped) -> Outcome {
    let j = s.journal.display();
    let next =
        format!("resume: zkrepl pegasus migrate --resume --journal {j}; undo: zkrepl pegasus rollback --journal {j}");
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

pub async fn run_migrate(a: MigrateArgs) -> Outcome {
    let json = a.wait.json;
    let req = match request(&a) {
        Ok(r) => r,
        Err(e) => return fail(json, &e.to_string(), None, Exit::Error),
    };
    let cancel = cancel_on_signals();
    if a.resume {
        let journal = a.journal.clone().expect("--resume requires --journal");
        let log = hook_log(&journal);
        let j = match migrate::Journal::load(&journal) {
            Ok(j) => j,
            Err(e) => return fail(json, &e.to_string(), Some("--journal takes the file a migrate wrote"), Exit::Error),
        };
        let hooks = ShellHooks { hooks: j.setup.hooks.overridden_by(&req.hooks), log, timeout: a.hooks.hook_timeout };
        eprintln!("resuming the migration in {}: {}", journal.display(), j.describe_state());
        let printer = Printer::default();
        let ctx = Context { observer: &printer, hooks: &hooks, cancel };
        let r = migrate::resume(&journal, &req, &ctx).await;
        printer.end_bar();
        return finish(json, r);
    }
    let hooks =
        ShellHooks { hooks: req.hooks.clone(), log: hook_log(&req.journal_path()), timeout: a.hooks.hook_timeout };
    let plan = match migrate::prepare(&req, &hooks).await {
        Ok(p) => p,
        Err(e) => return fail(json, &e.to_string(), hint(&e), Exit::Error),
    };
    if json && (a.dry_run || !plan.refusals.is_empty()) {
        print_json(&plan);
    }
    print_plan(&plan);
    if let Some(done) = gate(json, !plan.refusals.is_empty(), a.dry_run, a.wait.yes, "migration", "nothing changed") {
        return done;
    }
    let printer = Printer::default();
    let ctx = Context { observer: &printer, hooks: &hooks, cancel };
    let r = migrate::execute(&plan, &req, &ctx).await;
    printer.end_bar();
    finish(json, r)
}

pub(crate) fn hook_log(journal: &std::path::Path) -> PathBuf {
    migrate::journal::beside(journal, ".hooks.log")
}

fn finish(json: bool, r: Result<migrate::Report, Box<Stopped>>) -> Outcome {
    match r {
        Ok(report) => {
            if json {
                print_json(&report);
            } else {
                let window = report.blind_window_seconds.map(|s| format!("{s:.2}s")).unwrap_or_else(|| "-".into());
                println!("migrated: the cluster runs on {} (root {})", report.dst_hosts, report.root);
                let parts: Vec<String> = report.parts_in_order().iter().map(|(k, v)| format!("{k} {v:.2}s")).collect();
                println!("blind window {window}: {}", parts.join(", "));
                let timeline: Vec<String> = report.timeline.iter().map(|(k, v)| format!("{k} {v:.3}s")).collect();
                if !timeline.is_empty() {
                    println!("moments: {}", timeline.join(", "));
                }
                for (k, v) in &report.notes {
                    println!("{k}: {v}");
                }
                println!(
                    "what remains: zkrepl pegasus cleanup-old --journal {} (deletes the old tree once nothing uses it)",
                    report.journal.display()
                );
            }
            Outcome { exit: Exit::Ok }
        }
        Err(s) => stopped(json, &s),
    }
}

fn hint(e: &MigrateError) -> Option<&'static str> {
    match e {
        MigrateError::Meta(zkrepl_pegasus::Error::NoMetaReachable { .. }) => {
            Some("check --meta (meta servers, not ZooKeeper) and that the leader runs")
        }
        MigrateError::Config(_) => Some("--config takes each meta server's config.ini"),
        _ => None,
    }
}

pub async fn run_rollback(a: RollbackArgs) -> Outcome {
    let json = a.wait.json;
    let recovery =
        migrate::journal::operation_of(&a.journal).is_ok_and(|o| o == zkrepl_pegasus::recover::journal::OPERATION);
    let (migrate_hooks, recover_hooks) = (a.hooks.hooks(), a.recover_hooks.hooks());
    if recovery && migrate_hooks != Hooks::default() {
        let msg = "this is a recovery's journal: its hooks are --stop-metas, --start-meta and --start-metas";
        return fail(json, msg, None, Exit::Error);
    }
    if !recovery && recover_hooks != Hooks::default() {
        let msg = "this is a migration's journal: its hooks are --stop-followers, --stop-leader, --start-leader and --start-followers";
        return fail(json, msg, None, Exit::Error);
    }
    let access = match a.zk.zk_access() {
        Ok(x) => x,
        Err(e) => return fail(json, &e.to_string(), None, Exit::Error),
    };
    if recovery {
        let hooks = &a.recover_hooks;
        return crate::recover::run_rollback(&a.journal, hooks, a.hooks.hook_timeout, &a.until, &a.wait, &access).await;
    }
    let mut req = RollbackRequest::new(a.journal.clone());
    req.zk_access = access;
    req.hooks = a.hooks.hooks();
    req.wait = a.until.wait;
    req.meta_timeout = a.wait.timeout;
    req.timeouts = a.wait.timeouts();
    let plan = match plan_rollback(&req).await {
        Ok(p) => p,
        Err(e) => return fail(json, &e.to_string(), None, Exit::Error),
    };
    if let Err(o) = rollback_gate(json, "migration", &plan, a.wait.yes) {
        return o;
    }
    let j = match migrate::Journal::load(&a.journal) {
        Ok(j) => j,
        Err(e) => return fail(json, &e.to_string(), None, Exit::Error),
    };
    let hooks = ShellHooks {
        hooks: j.setup.hooks.overridden_by(&req.hooks),
        log: hook_log(&a.journal),
        timeout: a.hooks.hook_timeout,
    };
    let printer = Printer::default();
    let ctx = Context { observer: &printer, hooks: &hooks, cancel: cancel_on_signals() };
    let r = migrate::rollback(&req, &ctx).await;
    printer.end_bar();
    rollback_outcome(json, r)
}

/// After a printed plan: the outcome when the procedure is not to run
/// (refused, a dry run, not confirmed), `None` when it is.
pub(crate) fn gate(json: bool, refused: bool, dry_run: bool, yes: bool, what: &str, dry: &str) -> Option<Outcome> {
    if refused {
        return Some(fail(false, "refused before changing anything", Some("see REFUSED above"), Exit::Error));
    }
    if dry_run {
        eprintln!("dry run: {dry}");
        return Some(Outcome { exit: Exit::Ok });
    }
    confirm(&format!("Go ahead with the {what}?"), yes).err().map(|why| fail(json, &why, None, Exit::Error))
}

/// Prints what a rollback will do; `Err` when it is refused or not
/// confirmed.
pub(crate) fn rollback_gate(json: bool, of: &str, plan: &RollbackPlan, yes: bool) -> Result<(), Outcome> {
    eprintln!("roll back the {of} in {}", plan.journal.display());
    eprintln!("  now: {}", plan.state);
    for a in &plan.actions {
        eprintln!("  - {a}");
    }
    for w in &plan.warnings {
        eprintln!("  warning: {w}");
    }
    for r in &plan.refusals {
        eprintln!("  REFUSED: {r}");
    }
    if !plan.refusals.is_empty() {
        return Err(fail(json, "refused: nothing changed", None, Exit::Error));
    }
    confirm("Roll back?", yes).map_err(|why| fail(json, &why, None, Exit::Error))
}

pub(crate) fn rollback_outcome(json: bool, r: Result<RollbackReport, MigrateError>) -> Outcome {
    match r {
        Ok(r) => {
            if json {
                print_json(&r);
            } else {
                println!("rolled back: {}", r.done.join("; "));
            }
            Outcome { exit: Exit::Ok }
        }
        Err(MigrateError::Interrupted) => fail(json, "interrupted", Some("run the rollback again"), Exit::Interrupted),
        Err(e) => fail(json, &e.to_string(), Some("fix the cause and run the rollback again"), Exit::Error),
    }
}

pub async fn run_cleanup(a: CleanupArgs) -> Outcome {
    let json = a.wait.json;
    let mut req = match &a.journal {
        Some(j) => CleanupRequest::from_journal(j.clone()),
        None => {
            let mut r = CleanupRequest::from_journal(PathBuf::new());
            r.journal = None;
            r.zk = a.zk.clone();
            r.root = a.root.clone();
            r.metas = a.meta.clone();
            r.lock_path = a.lock_path.clone();
            r
        }
    };
    req.meta_timeout = a.wait.timeout;
    req.timeouts = a.wait.timeouts();
    req.zk_access = match a.secure.zk_access() {
        Ok(x) => x,
        Err(e) => return fail(json, &e.to_string(), None, Exit::Error),
    };
    let plan = match migrate::plan_cleanup(&req).await {
        Ok(p) => p,
        Err(e) => return fail(json, &e.to_string(), None, Exit::Error),
    };
    if json && (a.dry_run || !plan.refusals.is_empty()) {
        print_json(&plan);
    }
    let count = plan.nodes.map(|n| format!("{n} nodes")).unwrap_or_else(|| "nodes not counted".to_string());
    eprintln!("remove {} on {} ({count})", plan.root, plan.old_hosts);
    for c in &plan.checks {
        eprintln!("  ok: {c}");
    }
    for r in &plan.refusals {
        eprintln!("  REFUSED: {r}");
    }
    if !plan.refusals.is_empty() {
        return fail(false, "refused: nothing deleted", None, Exit::Error);
    }
    if a.dry_run {
        eprintln!("dry run: nothing deleted");
        return Outcome { exit: Exit::Ok };
    }
    if let Err(why) = confirm(&format!("Delete {} ({count}) from {}?", plan.root, plan.old_hosts), a.wait.yes) {
        return fail(json, &why, None, Exit::Error);
    }
    let progress = Arc::new(zkrepl::Progress::new());
    crate::common::watch_signals(progress.clone());
    match migrate::cleanup_old(&plan, &req, &progress).await {
        Ok(r) => {
            if json {
                print_json(&r);
            } else {
                println!(
                    "removed {} from {}: {} nodes in {} transactions",
                    plan.root, plan.old_hosts, r.deleted, r.transactions
                );
            }
            Outcome { exit: Exit::Ok }
        }
        Err(MigrateError::Engine(zkrepl::Error::Interrupted)) => {
            fail(json, "interrupted", Some("run cleanup-old again: it converges"), Exit::Interrupted)
        }
        Err(e) => fail(json, &e.to_string(), None, Exit::Error),
    }
}
