//! `zkrepl sync --metrics ADDR`: the sync's status as Prometheus metrics
//! over HTTP. Every figure comes from the status the engine hands its
//! observer (at least once a second while it follows), so a scrape shows
//! what the status lines show, at most a status old, and nothing is
//! counted on the side.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use zkrepl::sync::{SyncObserver, SyncStatus};

/// The label set of the phase gauge: `phase="following"`.
type PhaseLabel = Vec<(&'static str, &'static str)>;

/// The sync's counters and gauges, and the registry that encodes them.
pub struct SyncMetrics {
    registry: Registry,
    events: Counter,
    applied: Counter,
    writes: Counter,
    reconciles: Counter,
    watch_resets: Counter,
    unreadable: Counter,
    pending: Gauge,
    lag: Gauge<f64, AtomicU64>,
    running: Gauge<f64, AtomicU64>,
    phase: Family<PhaseLabel, Gauge>,
    last_phase: Mutex<&'static str>,
}

impl Default for SyncMetrics {
    fn default() -> SyncMetrics {
        SyncMetrics::new()
    }
}

impl SyncMetrics {
    pub fn new() -> SyncMetrics {
        let mut m = SyncMetrics {
            registry: Registry::with_prefix("zkrepl_sync"),
            events: Counter::default(),
            applied: Counter::default(),
            writes: Counter::default(),
            reconciles: Counter::default(),
            watch_resets: Counter::default(),
            unreadable: Counter::default(),
            pending: Gauge::default(),
            lag: Gauge::default(),
            running: Gauge::default(),
            phase: Family::default(),
            last_phase: Mutex::new(""),
        };
        for (name, help, c) in [
            ("events", "Change events received from the source's persistent recursive watch", &m.events),
            ("applied_paths", "Changed paths re-read on both sides and applied", &m.applied),
            ("writes", "Writes sent to the destination for changes (creates, data, ACLs, deletes)", &m.writes),
            ("reconciles", "Reconciles run (mirror passes: after gaps, periodically, at the end)", &m.reconciles),
            (
                "watch_resets",
                "Times the watch was added again (after a reconnect, or on a new session after an expiry)",
                &m.watch_resets,
            ),
            ("unreadable_nodes", "Changed nodes this session could not read on the source", &m.unreadable),
        ] {
            m.registry.register(name, help, c.clone());
        }
        m.registry.register("pending_paths", "Paths changed on the source and not applied yet", m.pending.clone());
        m.registry.register_with_unit("lag", "Age of the oldest change not applied yet", Unit::Seconds, m.lag.clone());
        m.registry.register_with_unit("running", "Time since the sync started", Unit::Seconds, m.running.clone());
        m.registry.register(
            "phase",
            "The phase the sync is in (1; phases it has left are 0): connecting, copying, following, reconciling, catching up, verifying, done",
            m.phase.clone(),
        );
        m
    }

    /// Takes in a status. The engine's figures are totals: each counter is
    /// raised to its total (never lowered).
    pub fn update(&self, s: &SyncStatus) {
        for (c, total) in [
            (&self.events, s.events),
            (&self.applied, s.applied),
            (&self.writes, s.writes),
            (&self.reconciles, s.reconciles),
            (&self.watch_resets, s.watch_resets),
            (&self.unreadable, s.unreadable),
        ] {
            c.inc_by(total.saturating_sub(c.get()));
        }
        self.pending.set(i64::try_from(s.pending).unwrap_or(i64::MAX));
        self.lag.set(s.lag_seconds);
        self.running.set(s.seconds);
        let mut last = self.last_phase.lock().unwrap_or_else(|e| e.into_inner());
        if !last.is_empty() && *last != s.phase {
            self.phase.get_or_create(&vec![("phase", *last)]).set(0);
        }
        self.phase.get_or_create(&vec![("phase", s.phase)]).set(1);
        *last = s.phase;
    }

    /// The metrics in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// An observer that keeps the metrics with every status, then tells the
/// observer it wraps.
pub struct Recording<'a> {
    pub metrics: &'a SyncMetrics,
    pub inner: &'a dyn SyncObserver,
}

impl SyncObserver for Recording<'_> {
    fn status(&self, s: &SyncStatus) {
        self.metrics.update(s);
        self.inner.status(s);
    }

    fn note(&self, msg: &str) {
        self.inner.note(msg);
    }
}

/// Scrapes served at once; further connections wait in the listen backlog.
const CONNECTIONS: usize = 16;
/// How long a client may take to send its request head, and its most bytes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_HEAD_BYTES: usize = 8 << 10;

/// The HTTP endpoint: `GET /metrics`, anything else 404. Bound before the
/// sync starts (an address in use is refused up front), served until
/// dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    pub async fn bind(addr: SocketAddr, metrics: Arc<SyncMetrics>) -> zkrepl::Result<MetricsServer> {
        let refused = |e: std::io::Error| {
            let what = match e.kind() {
                std::io::ErrorKind::AddrInUse => "the port is in use; choose another",
                std::io::ErrorKind::AddrNotAvailable => "no interface of this machine has that address",
                std::io::ErrorKind::PermissionDenied => "ports below 1024 need privileges; choose another",
                _ => "choose another address or port",
            };
            zkrepl::Error::Usage(format!("cannot serve --metrics on {addr}: {e}; {what}"))
        };
        let listener = TcpListener::bind(addr).await.map_err(refused)?;
        let addr = listener.local_addr().map_err(refused)?;
        Ok(MetricsServer { addr, task: tokio::spawn(serve(listener, metrics)) })
    }

    /// The address bound (the port chosen, for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, metrics: Arc<SyncMetrics>) {
    let limit = Arc::new(Semaphore::new(CONNECTIONS));
    loop {
        let permit = limit.clone().acquire_owned().await.expect("the semaphore is never closed");
        match listener.accept().await {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, respond(stream, &metrics)).await;
                    drop(permit);
                });
            }
            // Out of file descriptors, or a connection reset before it was
            // taken: the next one may do.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Reads one request head and answers it; the connection is then closed.
async fn respond(mut stream: TcpStream, metrics: &SyncMetrics) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > REQUEST_HEAD_BYTES {
            break;
        }
    }
    let line = String::from_utf8_lossy(head.split(|&b| b == b'\n').next().unwrap_or_default()).into_owned();
    let (status, content_type, body) = match route(&line) {
        Route::Metrics => ("200 OK", prometheus_text::CONTENT_TYPE, metrics.encode()),
        Route::NotFound => {
            ("404 Not Found", "text/plain; charset=utf-8", "not found: the metrics are at /metrics\n".into())
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
}

/// `GET /metrics` (a query string aside) is the only page.
fn route(request_line: &str) -> Route {
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split('?').next().unwrap_or(t));
    match (method, path) {
        (Some("GET"), Some("/metrics")) => Route::Metrics,
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(route("GET /metrics HTTP/1.1\r"), Route::Metrics);
        assert_eq!(route("GET /metrics?x=1 HTTP/1.0"), Route::Metrics);
        for other in ["GET / HTTP/1.1", "POST /metrics HTTP/1.1", "GET /metricsx HTTP/1.1", "", "GET"] {
            assert_eq!(route(other), Route::NotFound, "{other:?}");
        }
    }

    #[test]
    fn counters_follow_the_totals_and_one_phase_is_current() {
        let m = SyncMetrics::new();
        let mut s = SyncStatus::default();
        s.phase = "copying";
        m.update(&s);
        (s.phase, s.events, s.applied, s.pending, s.lag_seconds) = ("following", 7, 5, 2, 0.25);
        m.update(&s);
        m.update(&s);
        let text = m.encode();
        for line in [
            "zkrepl_sync_events_total 7",
            "zkrepl_sync_applied_paths_total 5",
            "zkrepl_sync_pending_paths 2",
            "zkrepl_sync_lag_seconds 0.25",
            "zkrepl_sync_phase{phase=\"following\"} 1",
            "zkrepl_sync_phase{phase=\"copying\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
