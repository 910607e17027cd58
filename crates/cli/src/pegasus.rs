//! `zkrepl pegasus`: an Apache Pegasus cluster seen through its meta
//! servers (status, set-level), and moving it to a new ZooKeeper ensemble
//! (migrate, rollback, cleanup-old: see `migrate.rs`; recover: see
//! `recover.rs`).

use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;
use zkrepl_pegasus::status::{AppStatus, ClusterStatus, StatusOptions};
use zkrepl_pegasus::zk::{AppsNode, ZkState};
use zkrepl_pegasus::{Level, MetaClient, Query, Role};

use crate::common::print_json;
use crate::outcome::{Exit, Outcome, print_error_line};

#[derive(Args, Debug)]
pub struct PegasusArgs {
    #[command(subcommand)]
    pub command: PegasusCommand,
}

#[derive(Subcommand, Debug)]
pub enum PegasusCommand {
    /// Show how each meta server answers, the meta level, replica servers, apps, what runs on them, and the ZooKeeper state
    #[command(after_long_help = STATUS_HELP)]
    Status(StatusArgs),
    /// Set the leader's meta level (stopped, blind, freezed, steady, lively) and check that it took
    #[command(after_long_help = SET_LEVEL_HELP)]
    SetLevel(SetLevelArgs),
    /// Move the cluster to a new ZooKeeper ensemble: blind, copy, verify, stop the leader, final sync, rewrite the configs, restart; journaled and resumable
    #[command(after_long_help = crate::migrate::migrate_help())]
    Migrate(crate::migrate::MigrateArgs),
    /// Move the cluster to a new ZooKeeper by rebuilding its metadata from the replica servers (old ZooKeeper data lost or not trusted); journaled and resumable
    #[command(after_long_help = crate::recover::RECOVER_HELP)]
    Recover(crate::recover::RecoverArgs),
    /// Undo a migration or a recovery from its journal: configs (and level) restored, the metas back on the old ensemble
    #[command(after_long_help = crate::migrate::ROLLBACK_HELP)]
    Rollback(crate::migrate::RollbackArgs),
    /// Delete the old ensemble's tree once the cluster no longer uses it and the new tree is proven a copy
    #[command(name = "cleanup-old", after_long_help = crate::migrate::CLEANUP_HELP)]
    CleanupOld(crate::migrate::CleanupArgs),
}

const STATUS_HELP: &str = "The leader is the meta server that answers cluster_info; followers answer \
ERR_FORWARD_TO_OTHERS, and their HTTP port (the same port) names the leader, which is then asked even when \
not given. The stored level (control_meta) and the level cluster_info reports can differ: the leader reports \
freezed while too few replica servers are alive. The ZooKeeper hosts and root come from cluster_info; \
ZooKeeper is only read.\n\nExamples:\n  zkrepl pegasus status --meta m1:34601,m2:34601\n  \
zkrepl pegasus status --meta m1,m2 --lock-path /pegasus/c1/lock --json\n\n\
Exit status: 0 a leader answered (parts it could not tell are shown as unknown), 2 error.";

const SET_LEVEL_HELP: &str = "Reads the leader's level, sets LEVEL, reads it again and fails if it did not \
take. The meta server keeps the level in memory only: a restarted meta starts at \
[meta_server] meta_function_level_on_start.\n\nExamples:\n  zkrepl pegasus set-level --meta m1:34601,m2:34601 blind\n  \
zkrepl pegasus set-level --meta m1 steady --json\n\n\
Exit status: 0 set and read back, 2 error (the level did not take, no leader, an unknown LEVEL).";

/// The meta servers and how long to wait for each.
#[derive(Args, Debug, Clone)]
pub struct MetaArgs {
    /// Meta servers: host[:port],... (port 34601 when left out); any of them, the leader is found
    #[arg(long, value_name = "HOSTS")]
    pub meta: String,

    /// Give up on a meta server that has not answered a call within this long (a DURATION: 500ms, 5s, 1m)
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::args::timeout)]
    pub timeout: Duration,

    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub meta: MetaArgs,

    /// The leader-lock path ([meta_server] distributed_lock_service_parameters, its first argument)
    /// [default: <zookeeper_root>/lock, as in Pegasus's sample config]
    #[arg(long, value_name = "PATH")]
    pub lock_path: Option<String>,

    /// Do not read the cluster's ZooKeeper
    #[arg(long)]
    pub no_zookeeper: bool,

    #[command(flatten)]
    pub zk: crate::args::ClusterZkSecurity,
}

#[derive(Args, Debug)]
pub struct SetLevelArgs {
    #[command(flatten)]
    pub meta: MetaArgs,

    /// The level: stopped, blind, freezed, steady or lively
    #[arg(value_name = "LEVEL", value_parser = crate::args::level)]
    pub level: Level,
}

pub async fn run(args: PegasusArgs) -> Outcome {
    let (json, result) = match args.command {
        PegasusCommand::Status(a) => match a.zk.src_secure.access(&a.zk.src_auth) {
            Ok(access) => (a.meta.json, status(a, &access).await),
            Err(e) => return crate::migrate::fail(a.meta.json, &e.to_string(), None, Exit::Error),
        },
        PegasusCommand::SetLevel(a) => (a.meta.json, set_level(a).await),
        PegasusCommand::Migrate(a) => return crate::migrate::run_migrate(a).await,
        PegasusCommand::Recover(a) => return crate::recover::run_recover(a).await,
        PegasusCommand::Rollback(a) => return crate::migrate::run_rollback(a).await,
        PegasusCommand::CleanupOld(a) => return crate::migrate::run_cleanup(a).await,
    };
    match result {
        Ok(()) => Outcome { exit: Exit::Ok },
        Err(e) => {
            let hint = hint(&e);
            if json {
                print_json(&serde_json::json!({ "error": e.to_string(), "hint": hint }));
            }
            print_error_line(&e, hint.as_deref());
            Outcome { exit: Exit::Error }
        }
    }
}

/// What to do about an error, in this program's options.
fn hint(e: &zkrepl_pegasus::Error) -> Option<String> {
    use zkrepl_pegasus::Error as E;
    Some(match e {
        E::NoMetas | E::BadAddress { .. } => "--meta takes host[:port],... (port 34601 by default)".into(),
        E::AllFollowers { .. } => {
            "add the leader to --meta (a follower's HTTP port redirects to it), or wait for an election".into()
        }
        E::NoMetaReachable { .. } => {
            "check the addresses in --meta (meta servers, not ZooKeeper) and that the metas run, or allow longer with --timeout".into()
        }
        E::NotAMeta { .. } => "--meta takes meta server addresses (port 34601 by default), not ZooKeeper's".into(),
        E::Timeout { .. } | E::Refused { .. } | E::Unreachable { .. } => {
            "check the address and port, or allow longer with --timeout".into()
        }
        E::LevelNotTaken { .. } => "run `zkrepl pegasus status` to see the metas and the levels".into(),
        _ => return None,
    })
}

async fn status(args: StatusArgs, access: &zkrepl::zk::secure::Access) -> zkrepl_pegasus::Result<()> {
    let client = MetaClient::new(&args.meta.meta, args.meta.timeout)?;
    let opts = StatusOptions {
        zookeeper: !args.no_zookeeper,
        lock_path: args.lock_path.clone(),
        zookeeper_timeout: None,
        zookeeper_access: access.clone(),
    };
    let s = zkrepl_pegasus::cluster_status(&client, &opts).await?;
    if args.meta.json {
        #[derive(Serialize)]
        struct Doc<'a> {
            #[serde(flatten)]
            status: &'a ClusterStatus,
            levels_differ: bool,
            in_progress: Vec<String>,
            unknown: Vec<String>,
        }
        let (in_progress, unknown) = activity(&s);
        print_json(&Doc { status: &s, levels_differ: s.levels_differ(), in_progress, unknown });
    } else {
        print_status(&s);
    }
    Ok(())
}

/// "app: kind" for what runs, and for what could not be told.
fn activity(s: &ClusterStatus) -> (Vec<String>, Vec<String>) {
    let (mut running, mut unknown) = (Vec::new(), Vec::new());
    for a in s.apps.known().into_iter().flatten() {
        for (kind, state) in a.activity() {
            match state {
                Some(true) => running.push(format!("{}: {kind}", a.app_name)),
                Some(false) => {}
                None => unknown.push(format!("{}: {kind}", a.app_name)),
            }
        }
    }
    (running, unknown)
}

fn print_status(s: &ClusterStatus) {
    println!("metas");
    for a in &s.metas {
        let how = match &a.role {
            Role::Leader => "leader".to_string(),
            Role::Follower { code } if code == zkrepl_pegasus::client::ERR_FORWARD_TO_OTHERS => {
                format!("follower ({code})")
            }
            Role::Follower { code } => format!("not serving ({code})"),
            Role::Down { reason } => format!("down: {reason}"),
            Role::NotAMeta { reason } => format!("not a meta: {reason}"),
            Role::Failed { reason } => format!("failed: {reason}"),
        };
        let named = a.named_by.as_ref().map(|b| format!(" (named by {b})")).unwrap_or_default();
        println!("  {:<24} {how}{named}", a.meta);
    }
    println!(
        "cluster        {} (primary meta {})",
        s.cluster_name.as_deref().unwrap_or("-"),
        s.primary_meta_server.as_deref().unwrap_or("-")
    );
    let stored = match &s.stored_level {
        Query::Known(l) => l.to_string(),
        Query::Unknown(why) => format!("unknown ({why})"),
    };
    let reported = s.reported_level.as_deref().unwrap_or("-");
    if s.levels_differ() {
        let why = if reported == "freezed" { ": freezed because too few replica servers are alive" } else { "" };
        println!("level          stored {stored}, reported {reported} (they differ{why})");
    } else if matches!(s.stored_level, Query::Known(_)) && s.reported_level.is_some() {
        println!("level          {stored} (stored and reported)");
    } else {
        println!("level          stored {stored}, reported {reported}");
    }
    println!(
        "zookeeper      {} root {}",
        s.zookeeper_hosts.as_deref().unwrap_or("-"),
        s.zookeeper_root.as_deref().unwrap_or("-")
    );
    if let Some(z) = &s.zookeeper {
        print_zookeeper(z);
    }
    match &s.nodes {
        Query::Known(n) => {
            println!("replicas       {} alive, {} unalive", n.alive.len(), n.unalive.len());
            for u in &n.unalive {
                println!("  unalive      {u}");
            }
        }
        Query::Unknown(why) => println!("replicas       unknown ({why})"),
    }
    match &s.apps {
        Query::Known(apps) => {
            println!("apps ({})", apps.len());
            for a in apps {
                print_app(a);
            }
        }
        Query::Unknown(why) => println!("apps           unknown ({why})"),
    }
    let (running, unknown) = activity(s);
    if !running.is_empty() {
        println!("in progress    {} (pause them before a migration)", running.join(", "));
    }
    if !unknown.is_empty() {
        println!("could not tell {}", unknown.join(", "));
    }
}

fn print_zookeeper(z: &ZkState) {
    let apps = match &z.apps {
        Query::Known(AppsNode::Unlock) => "unlock".to_string(),
        Query::Known(AppsNode::Lock) => {
            "lock (a meta is, or stopped, mid-update; a meta that starts on it aborts)".into()
        }
        Query::Known(AppsNode::Missing) => "missing".to_string(),
        Query::Known(AppsNode::Other(d)) => format!("{d:?} (neither lock nor unlock)"),
        Query::Unknown(why) => format!("unknown ({why})"),
    };
    println!("  {:<12} {apps}", z.apps_path);
    match &z.lock_nodes {
        Query::Known(Some(nodes)) => {
            let locks: Vec<_> = nodes.iter().filter(|n| n.name.starts_with("LOCKNODE")).collect();
            println!(
                "  {:<12} {} LOCKNODE node{}",
                z.leader_lock_path,
                locks.len(),
                if locks.len() == 1 { "" } else { "s" }
            );
            for n in nodes {
                let kind = if n.ephemeral { "ephemeral" } else { "persistent: blocks elections" };
                println!("    {} {} ({kind})", n.name, n.data);
            }
        }
        Query::Known(None) => println!("  {:<12} missing (pass the lock path with --lock-path)", z.leader_lock_path),
        Query::Unknown(why) => println!("  {:<12} unknown ({why})", z.leader_lock_path),
    }
}

fn print_app(a: &AppStatus) {
    let part = |kind: &str, state: Option<bool>| match state {
        Some(true) => format!("{kind} in progress"),
        Some(false) => format!("no {kind}"),
        None => format!("{kind} unknown"),
    };
    let acts: Vec<String> = a.activity().into_iter().map(|(k, s)| part(k, s)).collect();
    println!(
        "  {:<20} id {:<4} {:>5} partitions  {:<10} {}",
        a.app_name,
        a.app_id,
        a.partition_count,
        a.status,
        acts.join(", ")
    );
}

async fn set_level(args: SetLevelArgs) -> zkrepl_pegasus::Result<()> {
    let client = MetaClient::new(&args.meta.meta, args.meta.timeout)?;
    let change = client.set_level(args.level).await?;
    if args.meta.json {
        print_json(&change);
    } else {
        println!("{}: level {} -> {}", change.meta, change.old, change.new);
        if let Some(r) = change.reported.as_deref().filter(|r| *r != change.new.name()) {
            println!("cluster_info reports {r} (freezed while too few replica servers are alive)");
        }
    }
    Ok(())
}
