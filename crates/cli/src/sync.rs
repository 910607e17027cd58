//! `zkrepl sync`: a live mirror of a subtree, kept converged until idle,
//! interrupted, or too far behind.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use zkrepl::sync::{self, SyncObserver, SyncRequest, SyncStatus};

use crate::args::{Connection, Endpoints, ReadTuning, WriteTuning};
use crate::common::print_json;
use crate::metrics::{MetricsServer, Recording, SyncMetrics};
use crate::outcome::{Exit, Outcome};

#[derive(Args, Debug)]
#[command(after_long_help = SYNC_HELP)]
pub struct SyncArgs {
    #[command(flatten)]
    pub endpoints: Endpoints,

    /// Stop once caught up and no change came for this long (a DURATION: 500ms, 5s, 1m); without it, sync runs until interrupted
    #[arg(long, value_name = "DURATION", value_parser = crate::args::timeout)]
    pub until_idle: Option<Duration>,

    /// Fail (exit 2) when the oldest change not yet applied is older than this
    #[arg(long, value_name = "DURATION", value_parser = crate::args::timeout)]
    pub max_lag: Option<Duration>,

    /// Reconcile (a mirror pass: catches ACL changes, which no watch reports) this often
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::args::timeout)]
    pub reconcile_every: Duration,

    /// Refuse a reconcile that would delete more than N destination nodes
    #[arg(long, value_name = "N")]
    pub max_delete: Option<u64>,

    /// Do not verify at the end
    #[arg(long)]
    pub no_verify: bool,

    /// Print status lines and the final report as JSON lines on stdout
    #[arg(long)]
    pub json: bool,

    /// Serve Prometheus metrics over HTTP on ADDR (an IP address and a port: 127.0.0.1:9464; 0.0.0.0:9464 for every interface); GET /metrics gives the figures of the status lines, as of the last one
    ///
    /// Counters: zkrepl_sync_events_total (watch events), zkrepl_sync_applied_paths_total,
    /// zkrepl_sync_writes_total, zkrepl_sync_reconciles_total, zkrepl_sync_watch_resets_total (the
    /// watch added again after a reconnect or an expiry), zkrepl_sync_unreadable_nodes_total.
    /// Gauges: zkrepl_sync_pending_paths, zkrepl_sync_lag_seconds (age of the oldest change not
    /// applied), zkrepl_sync_running_seconds, and zkrepl_sync_phase{phase="..."} (1 for the current
    /// phase). Any other path answers 404. There is no authentication: serve on loopback or a
    /// trusted network. The address is bound before either ensemble is connected: one in use
    /// stops the sync before it starts (exit 2).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,

    #[command(flatten)]
    pub read: ReadTuning,

    #[command(flatten)]
    pub write: WriteTuning,

    #[command(flatten)]
    pub connection: Connection,
}

const SYNC_HELP: &str = "A persistent recursive watch is set on the source root before a full copy (a mirror: \
the destination root ends up holding exactly what the source holds, ephemerals left out); every change is then \
applied by re-reading the source node. After a reconnect the watch is added again and the tree reconciled (the \
server does not replay what was missed); ACL changes, which fire no event, are caught by the reconciles \
(--reconcile-every) and by the verify at the end. Passes after the first read again only the ACLs whose node \
stat shows them set since (or the node created again). The end catches up with every change committed so far, \
then verifies; a verify that differs is followed by a reconcile and another round (three at most). The lag (paths pending, age of the oldest) goes to stderr every second \
(--json: JSON lines on stdout), and with --metrics to Prometheus over HTTP. Ctrl-C or SIGTERM stops after what is in flight, then catches up and verifies.\n\n\
Examples:\n  zkrepl sync --src old:2181 --dst new:2181 --root /pegasus/c1\n  \
zkrepl sync --src old:2181 --dst new:2181 --root /app --until-idle 10s --max-lag 30s --json\n  \
zkrepl sync --src old:2181 --dst new:2181 --root /app --metrics 127.0.0.1:9464\n\n\
Exit status: 0 stopped and verified equal, 1 the final verify found differences, 2 error (or --max-lag \
exceeded, or the --metrics address cannot be served), 130 interrupted before the end.";

struct Printer {
    json: bool,
}

impl SyncObserver for Printer {
    fn status(&self, s: &SyncStatus) {
        if self.json {
            print_json_line(&serde_json::json!({ "status": s }));
        } else {
            eprintln!(
                "sync: {} {} pending, lag {:.1}s, {} events, {} applied, {} writes, {} reconciles, {} watch resets",
                s.phase, s.pending, s.lag_seconds, s.events, s.applied, s.writes, s.reconciles, s.watch_resets
            );
        }
    }

    fn note(&self, msg: &str) {
        eprintln!("sync: {msg}");
    }
}

fn print_json_line<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string(v).expect("serializable"));
}

pub async fn run(a: SyncArgs) -> zkrepl::Result<Outcome> {
    let (src, dst) = a.endpoints.resolve()?;
    let mut req = SyncRequest::new(src, dst);
    req.timeouts = a.connection.timeouts();
    req.read = a.read.settings();
    req.writer = a.write.writer_options();
    req.until_idle = a.until_idle;
    req.max_lag = a.max_lag;
    req.reconcile_every = Some(a.reconcile_every);
    req.max_delete = a.max_delete;
    req.verify = !a.no_verify;
    let progress = Arc::new(zkrepl::Progress::new());
    crate::common::watch_signals(progress.clone());
    let printer = Printer { json: a.json };
    let report = match a.metrics {
        Some(addr) => {
            let metrics = Arc::new(SyncMetrics::new());
            let server = MetricsServer::bind(addr, metrics.clone()).await?;
            printer.note(&format!("serving metrics on http://{}/metrics", server.addr()));
            sync::run(&req, &progress, &Recording { metrics: &metrics, inner: &printer }).await?
        }
        None => sync::run(&req, &progress, &printer).await?,
    };
    let equal = report.verify.as_ref().is_none_or(|v| v.equal());
    if a.json {
        print_json(&report);
    } else {
        let s = &report.status;
        println!(
            "synced {} events ({} paths applied, {} writes, {} reconciles, {} watch resets) in {:.1}s",
            s.events, s.applied, s.writes, s.reconciles, s.watch_resets, s.seconds
        );
        if let Some(v) = &report.verify {
            let verdict = match (v.equal(), report.settled) {
                (true, true) => "EQUAL (the source did not change during it)".to_string(),
                (true, false) => "EQUAL (the source changed during it)".to_string(),
                (false, _) => format!("DIFFERENT ({:?})", v.counts),
            };
            println!("verify: {} nodes per side, {verdict}", v.src_nodes);
        }
        println!("ACLs: {} taken from earlier reads (stat unchanged), {} read", s.acls_remembered, s.acls_read);
        if let Some(a) = &report.copy.acl_sources {
            println!("the first copy, with the snapshot:");
            for line in crate::common::acl_source_lines("source", a) {
                println!("{line}");
            }
        }
    }
    let exit = if !equal {
        Exit::Differences
    } else if progress.is_cancelled() && a.until_idle.is_some() {
        Exit::Interrupted
    } else {
        Exit::Ok
    };
    Ok(Outcome { exit })
}
