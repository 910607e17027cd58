//! Sessions that survive expiry: a [`Session`] hands out the current client
//! and replaces it with a freshly connected one (credentials re-sent) when
//! the old session is gone. A [`SessionPool`] spreads single requests (getACL
//! has no batched form) over several sessions, since one session's requests
//! are served in order by one server thread.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use zookeeper_client as zk;

use super::target::{Auth, Hosts};
use crate::error::{Error, Result, Side, is_session_lost, is_transient};

/// How to reach one tree's ensemble.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub side: Side,
    pub hosts: Hosts,
    pub auth: Vec<Auth>,
    /// How long to keep trying to (re)connect before giving up.
    pub connect_timeout: Duration,
    /// Session timeout asked of the server.
    pub session_timeout: Duration,
    /// How long a request may keep failing with connection loss before the
    /// operation is abandoned.
    pub retry_timeout: Duration,
}

impl ConnectOptions {
    pub fn new(side: Side, hosts: Hosts) -> ConnectOptions {
        ConnectOptions {
            side,
            hosts,
            auth: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            session_timeout: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(60),
        }
    }
}

async fn connect_once(opts: &ConnectOptions) -> Result<zk::Client> {
    let mut connector = zk::Client::connector().with_session_timeout(opts.session_timeout).with_fail_eagerly();
    for a in &opts.auth {
        connector = connector.with_auth(&a.scheme, a.credential.as_bytes());
    }
    let connect_string = opts.hosts.connect_string();
    let deadline = Instant::now() + opts.connect_timeout;
    let mut last = String::from("no attempt");
    // Every host may refuse for a while (a restarting ensemble): keep trying
    // until the deadline, a short pause between rounds.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, connector.clone().connect(&connect_string)).await {
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(zk::Error::AuthFailed)) => {
                let schemes: Vec<&str> = opts.auth.iter().map(|a| a.scheme.as_str()).collect();
                return Err(Error::Usage(format!(
                    "the {} ZooKeeper at {} rejected the credentials of {} (scheme {}); the usual form is digest:user:password",
                    opts.side,
                    opts.hosts.host_list(),
                    opts.side.auth_flag(),
                    schemes.join(", ")
                )));
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    Err(Error::Unreachable {
        side: opts.side,
        hosts: opts.hosts.host_list(),
        timeout: opts.connect_timeout,
        reason: last,
    })
}

/// A ZooKeeper session that is replaced by a new one when it expires.
pub struct Session {
    opts: Arc<ConnectOptions>,
    current: Mutex<(u64, zk::Client)>,
    renewals: AtomicUsize,
}

impl Session {
    pub async fn connect(opts: Arc<ConnectOptions>) -> Result<Session> {
        let client = connect_once(&opts).await?;
        Ok(Session { opts, current: Mutex::new((0, client)), renewals: AtomicUsize::new(0) })
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// The current client and its generation (pass it to [`Session::renew`]).
    pub fn client(&self) -> (u64, zk::Client) {
        let guard = self.current.lock().unwrap();
        (guard.0, guard.1.clone())
    }

    /// Replaces the client of generation `generation` with a new session;
    /// a no-op when another caller already did.
    pub async fn renew(&self, generation: u64) -> Result<()> {
        if self.client().0 != generation {
            return Ok(());
        }
        let client = connect_once(&self.opts)
            .await
            .map_err(|e| Error::SessionLost { side: self.opts.side, reason: e.to_string() })?;
        let mut guard = self.current.lock().unwrap();
        if guard.0 == generation {
            tracing::warn!(side = %self.opts.side, "session lost; continuing on a new session");
            *guard = (generation + 1, client);
            self.renewals.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// How many times the session was replaced.
    pub fn renewals(&self) -> usize {
        self.renewals.load(Ordering::Relaxed)
    }

    /// Runs an idempotent request until it gives an answer that is not a
    /// connection problem: transient errors are retried for up to
    /// `retry_timeout`, a lost session is replaced.
    pub async fn retry<T, F, Fut>(&self, mut op: F) -> Result<Result<T, zk::Error>>
    where
        F: FnMut(zk::Client) -> Fut,
        Fut: Future<Output = Result<T, zk::Error>>,
    {
        let mut backoff = Backoff::new(&self.opts);
        loop {
            let (generation, client) = self.client();
            match op(client).await {
                Err(e) if is_session_lost(&e) => self.renew(generation).await?,
                Err(e) if is_transient(&e) => backoff.wait(&e).await?,
                other => return Ok(other),
            }
        }
    }
}

/// How requests failing with connection problems are retried: after pauses
/// doubling from 20 ms to 1 s, for up to the `retry_timeout` of a side.
pub struct Backoff<'a> {
    opts: &'a ConnectOptions,
    started: Instant,
    pause: Duration,
}

impl<'a> Backoff<'a> {
    pub fn new(opts: &'a ConnectOptions) -> Backoff<'a> {
        Backoff { opts, started: Instant::now(), pause: Duration::from_millis(20) }
    }

    /// Waits before the next attempt after `e`; gives up once the retry
    /// timeout has passed.
    pub async fn wait(&mut self, e: &zk::Error) -> Result<()> {
        if self.started.elapsed() > self.opts.retry_timeout {
            return Err(Error::SessionLost {
                side: self.opts.side,
                reason: format!("requests kept failing for {:?}: {e}", self.opts.retry_timeout),
            });
        }
        tracing::debug!(side = %self.opts.side, error = %e, "retrying after a connection problem");
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_secs(1));
        Ok(())
    }
}

/// Several sessions to one ensemble (the reader spreads requests over them).
pub struct SessionPool {
    sessions: Vec<Session>,
}

impl SessionPool {
    /// Opens `size` sessions (at least one) concurrently.
    pub async fn connect(opts: ConnectOptions, size: usize) -> Result<SessionPool> {
        let opts = Arc::new(opts);
        let first = Session::connect(opts.clone()).await?;
        let rest = futures::future::try_join_all((1..size.max(1)).map(|_| Session::connect(opts.clone()))).await?;
        let mut sessions = vec![first];
        sessions.extend(rest);
        Ok(SessionPool { sessions })
    }

    /// Session `i` modulo the pool size.
    pub fn get(&self, i: usize) -> &Session {
        &self.sessions[i % self.sessions.len()]
    }

    pub fn options(&self) -> &ConnectOptions {
        self.sessions[0].options()
    }

    pub fn side(&self) -> Side {
        self.options().side
    }

    pub fn renewals(&self) -> usize {
        self.sessions.iter().map(|s| s.renewals()).sum()
    }

    /// Renews every session whose client is of an expired session.
    pub async fn renew_all(&self, generations: &[u64]) -> Result<()> {
        for (s, g) in self.sessions.iter().zip(generations) {
            s.renew(*g).await?;
        }
        Ok(())
    }

    /// Current clients and their generations, one per session.
    pub fn clients(&self) -> (Vec<u64>, Vec<zk::Client>) {
        self.sessions.iter().map(|s| s.client()).unzip()
    }
}
