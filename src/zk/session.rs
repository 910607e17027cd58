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
use crate::error::{Error, Result, Side, is_permanent, is_session_lost, is_transient};

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

async fn connect_once(opts: &ConnectOptions, hosts: &Hosts, limit: Duration) -> Result<zk::Client> {
    let mut connector = zk::Client::connector().with_session_timeout(opts.session_timeout).with_fail_eagerly();
    for a in &opts.auth {
        connector = connector.with_auth(&a.scheme, a.credential.as_bytes());
    }
    let connect_string = hosts.connect_string();
    let deadline = Instant::now() + limit;
    let mut last = String::from("no attempt");
    // Every host may refuse for a while (a restarting ensemble): keep trying
    // until the deadline, a short pause between rounds. What no retry can
    // change (bad credentials, bad arguments, TLS set-up) fails at once.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, connector.clone().connect(&connect_string)).await {
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(zk::Error::AuthFailed)) => {
                let schemes: Vec<&str> = opts.auth.iter().map(|a| a.scheme.as_str()).collect();
                return Err(Error::AuthRejected {
                    side: opts.side,
                    hosts: hosts.host_list(),
                    schemes: schemes.join(", "),
                });
            }
            Ok(Err(e)) if is_permanent(&e) => {
                return Err(Error::ConnectFailed { side: opts.side, hosts: hosts.host_list(), source: e });
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    Err(Error::Unreachable { side: opts.side, hosts: hosts.host_list(), timeout: limit, reason: last })
}

/// The ensemble member a [`SessionPool`]'s sessions all talk to.
///
/// ZooKeeper orders what one session sees, not what several sessions see:
/// members lag each other, so two sessions on two members can disagree
/// about which nodes exist. Pinning every session of one tree to one member
/// gives the tree one history that only moves forward. When that member
/// goes away, every session moves to another member together, and a `sync`
/// there (the member catches up with the leader) comes before any read.
struct Pin {
    /// Every member, as given.
    hosts: Hosts,
    state: Mutex<PinState>,
    /// Held while the sessions move to another member.
    moving: tokio::sync::Mutex<()>,
}

#[derive(Clone, Copy)]
struct PinState {
    /// Index in `hosts.hosts` of the member in use.
    member: usize,
    /// Raised on every move.
    epoch: u64,
}

impl Pin {
    fn state(&self) -> PinState {
        *self.state.lock().unwrap()
    }

    /// The connect string of one member, chroot kept.
    fn member_hosts(&self, member: usize) -> Hosts {
        Hosts { hosts: vec![self.hosts.hosts[member].clone()], chroot: self.hosts.chroot.clone() }
    }
}

/// A ZooKeeper session that is replaced by a new one when it expires.
pub struct Session {
    opts: Arc<ConnectOptions>,
    /// Set for the sessions of a pool: reconnect to the pool's member only.
    pin: Option<Arc<Pin>>,
    current: Mutex<(u64, zk::Client)>,
    renewals: AtomicUsize,
}

impl Session {
    /// Connects to any member of the ensemble (the client picks, and moves
    /// on its own when that member goes away): right for a single session,
    /// whose view ZooKeeper keeps ordered across members.
    pub async fn connect(opts: Arc<ConnectOptions>) -> Result<Session> {
        let client = connect_once(&opts, &opts.hosts, opts.connect_timeout).await?;
        Ok(Session { opts, pin: None, current: Mutex::new((0, client)), renewals: AtomicUsize::new(0) })
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// The current client and its generation (pass it to [`Session::renew`]).
    pub fn client(&self) -> (u64, zk::Client) {
        let guard = self.current.lock().unwrap();
        (guard.0, guard.1.clone())
    }

    /// Puts `client` in place of the client of generation `generation`;
    /// false when another caller replaced it first.
    fn replace(&self, generation: Option<u64>, client: zk::Client) -> bool {
        let mut guard = self.current.lock().unwrap();
        if generation.is_some_and(|g| g != guard.0) {
            return false;
        }
        *guard = (guard.0 + 1, client);
        self.renewals.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Replaces the client of generation `generation` with a new session;
    /// a no-op when another caller already did. A pinned session reconnects
    /// to its pool's member only, and gives up sooner: its pool then moves.
    pub async fn renew(&self, generation: u64) -> Result<()> {
        if self.client().0 != generation {
            return Ok(());
        }
        let (hosts, limit) = match &self.pin {
            Some(pin) => (pin.member_hosts(pin.state().member), PINNED_RECONNECT.min(self.opts.connect_timeout)),
            None => (self.opts.hosts.clone(), self.opts.connect_timeout),
        };
        let client = connect_once(&self.opts, &hosts, limit)
            .await
            .map_err(|e| Error::SessionLost { side: self.opts.side, reason: e.to_string() })?;
        if self.replace(Some(generation), client) {
            tracing::warn!(side = %self.opts.side, "session lost; continuing on a new session");
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

/// How long a pinned session tries to reconnect to its member before the
/// pool moves to another one.
const PINNED_RECONNECT: Duration = Duration::from_secs(2);

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

/// Several sessions to one ensemble, all on one member (see [`Pin`]); the
/// reader spreads single requests over them (getACL has no batched form,
/// and one session's requests are served in order by one server thread).
pub struct SessionPool {
    sessions: Vec<Session>,
    pin: Arc<Pin>,
    opts: Arc<ConnectOptions>,
    moves: AtomicUsize,
}

impl SessionPool {
    /// Opens `size` sessions (at least one), all on the first member of the
    /// connect string that accepts a session, then `sync`s that member.
    pub async fn connect(opts: ConnectOptions, size: usize) -> Result<SessionPool> {
        let opts = Arc::new(opts);
        let pin = Arc::new(Pin {
            hosts: opts.hosts.clone(),
            state: Mutex::new(PinState { member: 0, epoch: 0 }),
            moving: tokio::sync::Mutex::new(()),
        });
        let (member, clients) = open_on_some_member(&opts, &pin, 0, size.max(1), opts.connect_timeout).await?;
        pin.state.lock().unwrap().member = member;
        let sessions = clients
            .into_iter()
            .map(|client| Session {
                opts: opts.clone(),
                pin: Some(pin.clone()),
                current: Mutex::new((0, client)),
                renewals: AtomicUsize::new(0),
            })
            .collect();
        Ok(SessionPool { sessions, pin, opts, moves: AtomicUsize::new(0) })
    }

    /// Session `i` modulo the pool size.
    pub fn get(&self, i: usize) -> &Session {
        &self.sessions[i % self.sessions.len()]
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    pub fn side(&self) -> Side {
        self.opts.side
    }

    pub fn renewals(&self) -> usize {
        self.sessions.iter().map(|s| s.renewals()).sum()
    }

    /// How many times the sessions moved to another member.
    pub fn moves(&self) -> usize {
        self.moves.load(Ordering::Relaxed)
    }

    /// The member the sessions are on (`host:port`).
    pub fn member(&self) -> String {
        self.pin.hosts.hosts[self.pin.state().member].clone()
    }

    /// Makes the member catch up with the leader: every read issued after
    /// this returns includes every change committed before it was called.
    pub async fn sync(&self) -> Result<()> {
        self.retry(|c| async move { c.sync("/").await }).await?.map_err(|e| Error::zk(self.side(), "sync", "/", e))
    }

    /// Runs an idempotent request on the first session until it gives an
    /// answer that is not a connection problem (see [`SessionPool::recover`]).
    pub async fn retry<T, F, Fut>(&self, mut op: F) -> Result<Result<T, zk::Error>>
    where
        F: FnMut(zk::Client) -> Fut,
        Fut: Future<Output = Result<T, zk::Error>>,
    {
        let mut backoff = Backoff::new(&self.opts);
        loop {
            let (generations, clients) = self.clients();
            match op(clients[0].clone()).await {
                Err(e) if is_session_lost(&e) => self.recover(&generations).await?,
                Err(e) if is_transient(&e) => self.transient(&mut backoff, &e).await?,
                other => return Ok(other),
            }
        }
    }

    /// After a transient error: moves to another member at once when the
    /// member no longer accepts connections, else waits before a retry.
    pub async fn transient(&self, backoff: &mut Backoff<'_>, e: &zk::Error) -> Result<()> {
        if self.pin.hosts.hosts.len() > 1 && !self.member_reachable().await {
            tracing::warn!(side = %self.side(), member = %self.member(), "member unreachable; moving reads");
            return self.move_member(self.pin.state().epoch).await;
        }
        backoff.wait(e).await
    }

    async fn member_reachable(&self) -> bool {
        let addr = self.member();
        let addr = addr.trim_start_matches('[').replace("]:", ":");
        let target = match addr.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse::<u16>().unwrap_or(2181)),
            None => return true,
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect((target.0.as_str(), target.1)))
                .await,
            Ok(Ok(_))
        )
    }

    /// Replaces the sessions whose clients (of `generations`) are gone: on
    /// the same member, or, when it cannot be reached, all of them on
    /// another member.
    pub async fn recover(&self, generations: &[u64]) -> Result<()> {
        let epoch = self.pin.state().epoch;
        for (s, g) in self.sessions.iter().zip(generations) {
            if s.renew(*g).await.is_err() {
                return self.move_member(epoch).await;
            }
        }
        Ok(())
    }

    /// Moves every session to another member (the next in the connect
    /// string that accepts sessions, the current one last) and syncs it
    /// before any of them is used. A no-op when the sessions already moved
    /// since `epoch`.
    async fn move_member(&self, epoch: u64) -> Result<()> {
        let _moving = self.pin.moving.lock().await;
        let state = self.pin.state();
        if state.epoch != epoch {
            return Ok(());
        }
        let n = self.pin.hosts.hosts.len();
        let (member, clients) = open_on_some_member(
            &self.opts,
            &self.pin,
            (state.member + 1) % n,
            self.sessions.len(),
            self.opts.connect_timeout,
        )
        .await
        .map_err(|e| Error::SessionLost { side: self.side(), reason: e.to_string() })?;
        // Replaced whatever their generation: no session may stay behind on
        // the old member.
        for (s, c) in self.sessions.iter().zip(clients) {
            s.replace(None, c);
        }
        *self.pin.state.lock().unwrap() = PinState { member, epoch: epoch + 1 };
        self.moves.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(side = %self.side(), member = %self.pin.hosts.hosts[member], "reads moved to another member (synced first)");
        Ok(())
    }

    /// Current clients and their generations, one per session.
    pub fn clients(&self) -> (Vec<u64>, Vec<zk::Client>) {
        self.sessions.iter().map(|s| s.client()).unzip()
    }
}

/// Opens `size` sessions on one member, trying the members in connect-string
/// order from `first` on (wrapping), until `limit`; the member is synced
/// before the sessions are returned.
async fn open_on_some_member(
    opts: &ConnectOptions,
    pin: &Pin,
    first: usize,
    size: usize,
    limit: Duration,
) -> Result<(usize, Vec<zk::Client>)> {
    let n = pin.hosts.hosts.len();
    let deadline = Instant::now() + limit;
    let mut last = None;
    loop {
        for k in 0..n {
            let member = (first + k) % n;
            let hosts = pin.member_hosts(member);
            // One member alone: a short try, then the next.
            let left = deadline.saturating_duration_since(Instant::now());
            let per_member = if n == 1 { left } else { left.min(PINNED_RECONNECT) };
            let opened = async {
                let first = connect_once(opts, &hosts, per_member).await?;
                first.sync("/").await.map_err(|e| Error::zk(opts.side, "sync", "/", e))?;
                let rest =
                    futures::future::try_join_all((1..size).map(|_| connect_once(opts, &hosts, per_member))).await?;
                let mut clients = vec![first];
                clients.extend(rest);
                Ok::<_, Error>(clients)
            };
            match opened.await {
                Ok(clients) => return Ok((member, clients)),
                Err(e @ (Error::AuthRejected { .. } | Error::ConnectFailed { .. })) => return Err(e),
                Err(e) => last = Some(e),
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(match last {
        Some(Error::Unreachable { reason, .. }) => {
            Error::Unreachable { side: opts.side, hosts: pin.hosts.host_list(), timeout: limit, reason }
        }
        Some(e) => e,
        None => Error::Unreachable {
            side: opts.side,
            hosts: pin.hosts.host_list(),
            timeout: limit,
            reason: "no attempt".to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connect string the client itself refuses fails at once with the
    /// client's reason, not after the connect timeout as "unreachable".
    #[tokio::test]
    async fn a_refused_argument_is_not_retried() {
        let hosts = Hosts { hosts: vec!["127.0.0.1:2181".into(), "127.0.0.1:notaport".into()], chroot: "/".into() };
        let opts = ConnectOptions::new(Side::Source, hosts.clone());
        let started = Instant::now();
        let e = connect_once(&opts, &hosts, Duration::from_secs(10)).await.expect_err("refused");
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert!(matches!(e, Error::ConnectFailed { .. }), "{e:?}");
        assert!(e.to_string().contains("invalid address"), "{e}");
    }
}
