//! A write load on a source at a fixed rate, bounded in count and in time:
//! what a live sync is tested and measured against. Op `i` is always the
//! same write, so a run is told by its spec.
//!
//! Of every ten ops, one creates a node under `<root>/churn`, one deletes
//! the one created [`KEPT`] rounds before (once there is one), and the
//! others set data on `<root>/k<n>`, the keys in turn (a key is written
//! again only after every other one). Creates and deletes go on all the
//! time; the last [`KEPT`] created are left.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use zookeeper_client as zk;

use zkrepl::error::{Error, Result, Side};

/// Churn nodes alive at once (and left at the end).
pub const KEPT: u64 = 20;

/// How late a timer may fire: an op due just before the time bound is
/// still sent when the bound has passed by less than this.
const TIMER_SLACK: Duration = Duration::from_millis(10);

/// What to write, how fast, and when to stop.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// The tree written: `<root>/k<n>` and `<root>/churn/c<n>`.
    pub root: String,
    /// Keys whose data is set in turn.
    pub keys: u32,
    /// Ops a second, the schedule (a server that cannot keep up makes the
    /// achieved rate lower: [`LoadReport::per_sec`]).
    pub rate: u32,
    /// At most this many ops...
    pub ops: u64,
    /// ...due within this long (op `i` is due `i / rate` after the start;
    /// one due earlier but not sent by then, the window being full, is not
    /// sent at all).
    pub max_time: Duration,
    /// Requests in flight at most.
    pub window: usize,
    /// Ops the source has acknowledged so far: read it while the load runs
    /// to measure the write rate over any span.
    pub acked: Arc<AtomicU64>,
}

impl LoadSpec {
    pub fn new(root: &str, rate: u32, ops: u64, max_time: Duration) -> LoadSpec {
        LoadSpec { root: root.to_string(), keys: 200, rate, ops, max_time, window: 64, acked: Arc::default() }
    }

    fn key(&self, n: u64) -> String {
        format!("{}/k{n:05}", self.root)
    }

    fn churn(&self, n: u64) -> String {
        format!("{}/churn/c{n:08}", self.root)
    }

    /// `<root>/marker`, set by [`mark`] after a load: a mirror that holds
    /// its new value holds every write before it.
    pub fn marker(&self) -> String {
        format!("{}/marker", self.root)
    }
}

/// What a load did.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct LoadReport {
    /// Ops the source acknowledged.
    pub ops: u64,
    pub set_data: u64,
    pub creates: u64,
    pub deletes: u64,
    /// From the first op sent to the last acknowledged.
    pub seconds: f64,
    /// The source's achieved write rate.
    pub per_sec: f64,
    pub target_per_sec: f64,
    /// Every op of the spec was sent (not cut short by the time bound).
    pub complete: bool,
}

fn zk_err(op: &'static str, path: &str, e: zk::Error) -> Error {
    Error::zk(Side::Source, op, path, e)
}

/// Creates the root (and its missing ancestors), the keys, the churn
/// parent and the marker, open. The root must not exist yet.
pub async fn prepare(client: &zk::Client, spec: &LoadSpec) -> Result<()> {
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client.mkdir(&spec.root, &open).await.map_err(|e| zk_err("create", &spec.root, e))?;
    let mut paths: Vec<String> = (0..u64::from(spec.keys)).map(|n| spec.key(n)).collect();
    paths.push(format!("{}/churn", spec.root));
    paths.push(spec.marker());
    for chunk in paths.chunks(500) {
        let mut w = client.new_multi_writer();
        for p in chunk {
            w.add_create(p, b"0", &open).expect("valid path");
        }
        w.commit().await.map_err(|e| zk_err("multi create", &chunk[0], e.into()))?;
    }
    Ok(())
}

/// Runs the load on one session (so the source applies the ops in the
/// order they are sent: a churn node is created before it is deleted).
/// Stops sending at `spec.ops` or `spec.max_time`, whichever comes first,
/// then waits for what is in flight.
pub async fn run(client: &zk::Client, spec: &LoadSpec) -> Result<LoadReport> {
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let open = &open;
    let mut r = LoadReport { target_per_sec: f64::from(spec.rate), ..LoadReport::default() };
    let rate = f64::from(spec.rate.max(1));
    let window = spec.window.max(1);
    let mut in_flight: FuturesUnordered<BoxFuture<'_, Result<()>>> = FuturesUnordered::new();
    // Op `i` is due `i / rate` after the start; only those due before the
    // time bound are sent, and none once it has passed (by more than a
    // timer's lateness).
    let last = spec.ops.min((spec.max_time.as_secs_f64() * rate).ceil() as u64);
    let started = Instant::now();
    let stop_at = started + spec.max_time + TIMER_SLACK;
    let mut next = 0u64;
    while next < last && Instant::now() < stop_at {
        // Every op whose time has come, as the window allows.
        let due = ((started.elapsed().as_secs_f64() * rate) as u64 + 1).min(last);
        while next < due && in_flight.len() < window {
            let (round, i) = (next / 10, next);
            // Each request is sent when first polled, in the order pushed.
            let op: BoxFuture<'_, Result<()>> = match next % 10 {
                0 => {
                    r.creates += 1;
                    let p = spec.churn(round);
                    Box::pin(async move {
                        client.create(&p, b"c", open).await.map(|_| ()).map_err(|e| zk_err("create", &p, e))
                    })
                }
                5 if round >= KEPT => {
                    r.deletes += 1;
                    let p = spec.churn(round - KEPT);
                    Box::pin(async move { client.delete(&p, None).await.map_err(|e| zk_err("delete", &p, e)) })
                }
                _ => {
                    r.set_data += 1;
                    let p = spec.key(i % u64::from(spec.keys.max(1)));
                    Box::pin(async move {
                        let data = i.to_string();
                        client
                            .set_data(&p, data.as_bytes(), None)
                            .await
                            .map(|_| ())
                            .map_err(|e| zk_err("set data", &p, e))
                    })
                }
            };
            in_flight.push(op);
            next += 1;
        }
        if next == last {
            break;
        }
        let next_at = started + Duration::from_secs_f64(next as f64 / rate);
        tokio::select! {
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                done?;
                r.ops += 1;
                spec.acked.fetch_add(1, Ordering::Relaxed);
            }
            _ = tokio::time::sleep_until(next_at.into()), if in_flight.len() < window => {}
        }
    }
    // What was sent lands (each request ends within the session timeout).
    while let Some(done) = in_flight.next().await {
        done?;
        r.ops += 1;
        spec.acked.fetch_add(1, Ordering::Relaxed);
    }
    r.seconds = started.elapsed().as_secs_f64();
    r.per_sec = r.ops as f64 / r.seconds.max(1e-9);
    r.complete = next == spec.ops;
    Ok(r)
}

/// Sets the marker's data (on the load's session: after every write sent
/// before it).
pub async fn mark(client: &zk::Client, spec: &LoadSpec, data: &[u8]) -> Result<()> {
    let p = spec.marker();
    client.set_data(&p, data, None).await.map(|_| ()).map_err(|e| zk_err("set data", &p, e))
}
