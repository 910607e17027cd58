//! The writer: applies a stream of operations to the destination in order,
//! as multi() transactions with several in flight on one session.
//!
//! One session serves its requests in order, so a transaction holding a
//! parent is applied before a later one holding its children. A request is
//! put on the wire when it is submitted (see `Writer::submit`), never later.
//!
//! A transaction is atomic. When one fails (an operation refused) or its
//! outcome is unknown (connection lost, session expired), the writer waits
//! for the ones in flight behind it, then reconciles every failed one, in
//! order, operation by operation: create, or compare and set what differs
//! when the node exists; delete unless already gone. Running the same stream
//! again therefore converges to the same tree.
//!
//! The writer owns its session and progress, so it may live in a task of
//! its own and serve more than one run (see [`Writer::applied`]).

pub(crate) mod batch;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use zookeeper_client as zk;

pub use self::batch::{BatchLimits, Op};
use self::batch::{Batcher, Transaction};
use crate::error::{Error, Result, Side, is_session_lost, is_transient};
use crate::node::NodeKind;
use crate::node::acl_equal;
use crate::zk::session::Session;

#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    pub limits: BatchLimits,
    /// Transactions in flight.
    pub window: usize,
    /// Largest request the destination accepts (its jute.maxbuffer).
    pub max_request_bytes: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { limits: BatchLimits::default(), window: 8, max_request_bytes: 0xfffff }
    }
}

/// What the writer did. Operations (and `bytes`) are counted only once the
/// transaction holding them has landed, or they were reconciled one by one:
/// never while queued or in flight. `transactions` counts every transaction
/// answered, the failed ones too.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WriteCounters {
    pub created: u64,
    pub data_set: u64,
    pub acl_set: u64,
    pub deleted: u64,
    pub padded: u64,
    /// Creates that found the node already there (from an earlier attempt).
    pub existed: u64,
    pub transactions: u64,
    pub bytes: u64,
    /// Transactions that failed or whose outcome was unknown, reconciled op
    /// by op.
    pub reconciled: u64,
    /// Creates found already done whose node this session may not read.
    pub unverified: u64,
    #[serde(skip)]
    latency: Latency,
}

/// Transaction latencies in a histogram of fixed size: 1 µs to an hour at
/// two significant figures (a value is off by at most 1%), however many
/// transactions a run makes. Longer ones count as an hour.
#[derive(Clone, Debug)]
struct Latency(hdrhistogram::Histogram<u64>);

impl Latency {
    const MAX_US: u64 = 3_600_000_000;

    fn record(&mut self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).clamp(1, Self::MAX_US);
        self.0.saturating_record(us);
    }
}

impl Default for Latency {
    fn default() -> Self {
        Latency(hdrhistogram::Histogram::new_with_bounds(1, Self::MAX_US, 2).expect("valid histogram bounds"))
    }
}

impl WriteCounters {
    /// Latency percentile of transactions, in milliseconds (0 without any).
    pub fn latency_ms(&self, pct: f64) -> f64 {
        let h = &self.latency.0;
        if h.is_empty() {
            return 0.0;
        }
        h.value_at_quantile(pct / 100.0) as f64 / 1000.0
    }

    /// Records one transaction's round trip.
    fn record_latency(&mut self, elapsed: Duration) {
        self.latency.record(elapsed);
    }

    fn count(&mut self, op: &Op) {
        match op {
            Op::Create { .. } => self.created += 1,
            Op::SetData { .. } => self.data_set += 1,
            Op::SetAcl { .. } => self.acl_set += 1,
            Op::Delete { .. } => self.deleted += 1,
            Op::Pad { .. } => self.padded += 1,
        }
    }
}

enum Failure {
    /// Refused by the server; nothing of it was applied.
    Refused { index: usize, error: zk::Error },
    /// Outcome unknown.
    Unknown(zk::Error),
}

struct Outcome {
    batch: Transaction,
    result: Result<(), Failure>,
    elapsed: Duration,
}

type InFlight = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Applies operations in order; see the module documentation.
///
/// It holds its session and progress, so it can be moved into a spawned
/// task and handed back when that task ends.
pub struct Writer {
    session: Arc<Session>,
    opts: WriterOptions,
    batcher: Batcher,
    inflight: FuturesOrdered<InFlight>,
    failed: Vec<Transaction>,
    counters: WriteCounters,
    /// Operations known to have landed.
    applied: u64,
    progress: Option<Arc<crate::progress::Progress>>,
}

impl Writer {
    pub fn new(session: Arc<Session>, mut opts: WriterOptions) -> Writer {
        // A transaction never exceeds what the destination accepts, so an op
        // too large for it travels alone and is refused by name.
        opts.limits.max_bytes = opts.limits.max_bytes.min(opts.max_request_bytes);
        Writer {
            session,
            batcher: Batcher::new(opts.limits),
            opts,
            inflight: FuturesOrdered::new(),
            failed: Vec::new(),
            counters: WriteCounters::default(),
            applied: 0,
            progress: None,
        }
    }

    /// Reports applied operations to `progress`.
    pub fn with_progress(mut self, progress: Arc<crate::progress::Progress>) -> Writer {
        self.progress = Some(progress);
        self
    }

    /// The session it writes through.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// What was applied so far; see [`WriteCounters`].
    pub fn counters(&self) -> &WriteCounters {
        &self.counters
    }

    /// Operations pushed so far that are known to have landed: their
    /// transaction succeeded, or they were reconciled one by one after it
    /// failed. Queued and in-flight operations are not counted, nor the ones
    /// [`Writer::land`] dropped. Once [`Writer::flush`] returns `Ok`, it is
    /// every operation pushed.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Queues an operation; may wait for room in the window.
    pub async fn push(&mut self, op: Op) -> Result<()> {
        for batch in self.batcher.push(op) {
            self.submit(batch).await?;
        }
        Ok(())
    }

    /// Sends what is queued and returns only once everything pushed so far
    /// has landed (failed transactions reconciled). The writer may be used
    /// again afterwards.
    pub async fn flush(&mut self) -> Result<()> {
        if let Some(batch) = self.batcher.finish() {
            self.submit(batch).await?;
        }
        while !self.inflight.is_empty() {
            self.reap_one().await;
        }
        self.reconcile_failed().await
    }

    /// After an error or a stop: lets what is in flight land (and repairs
    /// it), drops what was queued but not sent.
    pub async fn land(&mut self) -> Result<()> {
        let _ = self.batcher.finish();
        while !self.inflight.is_empty() {
            self.reap_one().await;
        }
        self.reconcile_failed().await
    }

    /// Puts a batch on the wire now (its first poll sends the request), then
    /// makes room in the window.
    async fn submit(&mut self, batch: Transaction) -> Result<()> {
        if batch.bytes > self.opts.max_request_bytes {
            // Land (and repair) what went before, so the counts are true.
            while !self.inflight.is_empty() {
                self.reap_one().await;
            }
            self.reconcile_failed().await?;
            return Err(Error::NodeTooLarge {
                path: batch.ops[0].path().to_string(),
                size: batch.bytes,
                limit: self.opts.max_request_bytes,
            });
        }
        while self.inflight.len() >= self.opts.window.max(1) {
            self.reap_one().await;
        }
        if !self.failed.is_empty() {
            // Something failed: let everything in flight land, then repair in
            // order before sending anything that may depend on it.
            while !self.inflight.is_empty() {
                self.reap_one().await;
            }
            self.reconcile_failed().await?;
        }
        let (_, client) = self.session.client();
        let mut fut: InFlight = Box::pin(send(client, batch));
        match futures::poll!(fut.as_mut()) {
            Poll::Ready(outcome) => self.inflight.push_back(Box::pin(std::future::ready(outcome))),
            Poll::Pending => self.inflight.push_back(fut),
        }
        Ok(())
    }

    async fn reap_one(&mut self) {
        let Some(outcome) = self.inflight.next().await else {
            return;
        };
        self.counters.record_latency(outcome.elapsed);
        self.counters.transactions += 1;
        match outcome.result {
            Ok(()) => {
                self.counters.bytes += outcome.batch.bytes as u64;
                for op in &outcome.batch.ops {
                    self.counters.count(op);
                }
                self.applied += outcome.batch.ops.len() as u64;
                if let Some(p) = &self.progress {
                    p.add_written(outcome.batch.ops.len() as u64, outcome.batch.bytes as u64);
                }
            }
            Err(failure) => {
                match &failure {
                    Failure::Refused { index, error } => tracing::debug!(
                        path = outcome.batch.ops.get(*index).map(|o| o.path()),
                        %error,
                        "transaction refused; reconciling it op by op"
                    ),
                    Failure::Unknown(error) => {
                        tracing::debug!(%error, "transaction outcome unknown; reconciling it op by op")
                    }
                }
                self.failed.push(outcome.batch);
            }
        }
    }

    async fn reconcile_failed(&mut self) -> Result<()> {
        for batch in std::mem::take(&mut self.failed) {
            self.counters.reconciled += 1;
            for op in &batch.ops {
                reconcile(&self.session, op, &mut self.counters).await?;
                self.applied += 1;
                if let Some(p) = &self.progress {
                    p.add_written(1, op.single_bytes() as u64);
                }
            }
        }
        Ok(())
    }
}

/// Creates the missing ancestors of `path` (empty, OPEN ACL): the one
/// write a copy makes outside its root.
pub async fn create_ancestors(session: &Session, path: &str) -> Result<()> {
    for dir in crate::zk::path::ancestors(path) {
        let r = session
            .retry(|c| async move {
                c.create(dir, &[], &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())).await.map(drop)
            })
            .await?;
        match r {
            Ok(()) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(Error::zk(Side::Destination, "create ancestor", dir, e)),
        }
    }
    Ok(())
}

/// Sends one batch; the request leaves on the first poll.
async fn send(client: zk::Client, batch: Transaction) -> Outcome {
    let started = Instant::now();
    let result =
        if batch.is_single() { single(&client, &batch.ops[0]).await } else { multi(&client, &batch.ops).await };
    Outcome { batch, result, elapsed: started.elapsed() }
}

fn create_options<'x>(acl: &'x [zk::Acl], kind: NodeKind) -> zk::CreateOptions<'x> {
    match kind {
        NodeKind::Persistent => zk::CreateMode::Persistent.with_acls(zk::Acls::new(acl)),
        NodeKind::Container => zk::CreateMode::Container.with_acls(zk::Acls::new(acl)),
        NodeKind::Ttl(ttl) => zk::CreateMode::Persistent.with_acls(zk::Acls::new(acl)).with_ttl(ttl),
    }
}

fn unknown_or_refused(e: zk::Error) -> Failure {
    if is_transient(&e) || is_session_lost(&e) { Failure::Unknown(e) } else { Failure::Refused { index: 0, error: e } }
}

async fn single(client: &zk::Client, op: &Op) -> Result<(), Failure> {
    let r = match op {
        Op::Create { path, data, acl, kind } => client.create(path, data, &create_options(acl, *kind)).await.map(drop),
        Op::SetData { path, data } => client.set_data(path, data, None).await.map(drop),
        Op::SetAcl { path, acl } => client.set_acl(path, acl, None).await.map(drop),
        Op::Delete { path } => client.delete(path, None).await,
        Op::Pad { .. } => return multi(client, std::slice::from_ref(op)).await,
    };
    r.map_err(unknown_or_refused)
}

async fn multi(client: &zk::Client, ops: &[Op]) -> Result<(), Failure> {
    let open = crate::node::open_acl();
    let mut w = client.new_multi_writer();
    for op in ops {
        let added = match op {
            Op::Create { path, data, acl, kind } => w.add_create(path, data, &create_options(acl, *kind)),
            Op::SetData { path, data } => w.add_set_data(path, data, None),
            Op::Delete { path } => w.add_delete(path, None),
            Op::Pad { parent, name, .. } => {
                let child = crate::zk::path::child(parent, name);
                w.add_create(&child, &[], &create_options(&open, NodeKind::Persistent))
                    .and_then(|_| w.add_delete(&child, None))
            }
            Op::SetAcl { .. } => unreachable!("setACL is never batched"),
        };
        if let Err(e) = added {
            return Err(Failure::Refused { index: 0, error: e });
        }
    }
    match w.commit().await {
        Ok(_) => Ok(()),
        Err(zk::MultiWriteError::OperationFailed { index, source }) => Err(Failure::Refused { index, error: source }),
        Err(zk::MultiWriteError::RequestFailed { source }) => Err(unknown_or_refused(source)),
    }
}

/// Applies one op so that the node ends as the op says, whatever happened
/// to it before (an earlier attempt may or may not have landed).
async fn reconcile(session: &Session, op: &Op, counters: &mut WriteCounters) -> Result<()> {
    let side = Side::Destination;
    let fail = |what: &'static str, e: zk::Error| match (op, &e) {
        (Op::Create { kind: NodeKind::Ttl(_), path, .. }, zk::Error::Unimplemented) => {
            Error::TtlUnsupported { path: path.clone() }
        }
        _ => Error::zk(side, what, op.path(), e),
    };
    match op {
        Op::Create { path, data, acl, kind } => {
            let created = session
                .retry(|c| async move { c.create(path, data, &create_options(acl, *kind)).await.map(drop) })
                .await?;
            match created {
                Ok(()) => counters.created += 1,
                Err(zk::Error::NodeExists) => {
                    counters.existed += 1;
                    let current = session
                        .retry(|c| async move {
                            let (d, _) = c.get_data(path).await?;
                            let (a, _) = c.get_acl(path).await?;
                            Ok((d, a))
                        })
                        .await?;
                    let current = match current {
                        Ok(c) => c,
                        // Its ACL keeps this session out: most likely our own
                        // create that landed unseen. It cannot be compared;
                        // verify (with credentials) tells.
                        Err(zk::Error::NoAuth) => {
                            tracing::warn!(path = %path, "exists but may not be read here; left as it is");
                            counters.unverified += 1;
                            return Ok(());
                        }
                        Err(e) => return Err(fail("read", e)),
                    };
                    if current.0 != *data {
                        set_data(session, path, data).await?.map_err(|e| fail("setData", e))?;
                        counters.data_set += 1;
                    }
                    if !acl_equal(&current.1, acl) {
                        set_acl(session, path, acl).await?.map_err(|e| fail("setACL", e))?;
                        counters.acl_set += 1;
                    }
                }
                Err(e) => return Err(fail("create", e)),
            }
        }
        Op::SetData { path, data } => {
            set_data(session, path, data).await?.map_err(|e| fail("setData", e))?;
            counters.data_set += 1;
        }
        Op::SetAcl { path, acl } => {
            set_acl(session, path, acl).await?.map_err(|e| fail("setACL", e))?;
            counters.acl_set += 1;
        }
        Op::Delete { path } => match session.retry(|c| async move { c.delete(path, None).await }).await? {
            Ok(()) => counters.deleted += 1,
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(fail("delete", e)),
        },
        Op::Pad { parent, name, target } => {
            // Redo only what is missing: each attempt first reads where the
            // counter stands, so a pad that landed unseen is not repeated.
            let r = session
                .retry(|c| async move {
                    if let Some(stat) = c.check_stat(parent).await?
                        && crate::node::next_sequence(&stat) >= *target
                    {
                        return Ok(());
                    }
                    match multi(&c, std::slice::from_ref(op)).await {
                        Ok(()) => Ok(()),
                        Err(Failure::Refused { error, .. }) | Err(Failure::Unknown(error)) => Err(error),
                    }
                })
                .await?;
            match r {
                Ok(()) => counters.padded += 1,
                Err(e) => {
                    return Err(Error::zk(side, "pad the sequence counter of", &format!("{parent} (child {name})"), e));
                }
            }
        }
    }
    Ok(())
}

async fn set_data(session: &Session, path: &str, data: &[u8]) -> Result<Result<(), zk::Error>> {
    session.retry(|c| async move { c.set_data(path, data, None).await.map(drop) }).await
}

async fn set_acl(session: &Session, path: &str, acl: &[zk::Acl]) -> Result<Result<(), zk::Error>> {
    session.retry(|c| async move { c.set_acl(path, acl, None).await.map(drop) }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[track_caller]
    fn near(got: f64, want: f64) {
        assert!((got - want).abs() <= want * 0.01, "got {got} ms, want {want} ms within 1%");
    }

    #[test]
    fn a_writer_may_move_into_a_task() {
        fn movable<T: Send + 'static>() {}
        movable::<Writer>();
    }

    #[test]
    fn latency_percentiles_of_known_inputs() {
        let mut c = WriteCounters::default();
        assert_eq!(c.latency_ms(50.0), 0.0, "no transactions, no latency");
        // 1 ms, 2 ms, ... 1000 ms, recorded in a shuffled order.
        for i in 0..1000u64 {
            c.record_latency(ms(i * 617 % 1000 + 1));
        }
        near(c.latency_ms(50.0), 500.0);
        near(c.latency_ms(99.0), 990.0);
        near(c.latency_ms(100.0), 1000.0);
        near(c.latency_ms(0.0), 1.0);

        // One slow transaction among many fast ones shows at the top only.
        let mut c = WriteCounters::default();
        for _ in 0..999 {
            c.record_latency(Duration::from_micros(150));
        }
        c.record_latency(Duration::from_secs(7));
        near(c.latency_ms(50.0), 0.150);
        near(c.latency_ms(99.0), 0.150);
        near(c.latency_ms(100.0), 7000.0);

        // Beyond the range: counted as the longest it holds, not dropped.
        let mut c = WriteCounters::default();
        c.record_latency(Duration::from_secs(10 * 3600));
        c.record_latency(Duration::ZERO);
        near(c.latency_ms(100.0), 3_600_000.0);
        near(c.latency_ms(0.0), 0.001);
    }

    #[test]
    fn latencies_past_the_top_are_counted_as_an_hour_and_percentiles_hold() {
        let mut c = WriteCounters::default();
        c.record_latency(ms(1));
        let size = c.latency.0.distinct_values();
        // 1 µs to 1 s, then as many far past the top bound (2 h to the
        // longest duration there is), interleaved.
        for i in 1..=1_000_000u64 {
            c.record_latency(Duration::from_micros(i));
            let past = match i % 3 {
                0 => Duration::from_secs(2 * 3600),
                1 => Duration::from_secs(1 << 40),
                _ => Duration::MAX,
            };
            c.record_latency(past);
        }
        assert_eq!(c.latency.0.len(), 2_000_001, "every record counted, those past the top too");
        near(c.latency_ms(25.0), 500.0);
        near(c.latency_ms(50.0), 1000.0);
        near(c.latency_ms(50.1), 3_600_000.0);
        near(c.latency_ms(99.0), 3_600_000.0);
        near(c.latency_ms(100.0), 3_600_000.0);
        near(c.latency_ms(0.0), 0.001);
        // No counter was added for them: as many as after one record.
        assert_eq!(c.latency.0.distinct_values(), size, "the histogram did not grow");
        assert!(size * std::mem::size_of::<u64>() < 64 * 1024, "{size} counters");
    }
}
