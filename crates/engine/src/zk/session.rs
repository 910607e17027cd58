//! Sessions that survive expiry: a [`Session`] hands out the current client
//! and replaces it with a freshly connected one (credentials re-sent) when
//! the old session is gone. A [`SessionPool`] spreads single requests (getACL
//! has no batched form) over several sessions, since one session's requests
//! are served in order by one server thread, and keeps them all on one
//! ensemble member (see [`SessionPool`]).
//!
//! Every session handed out has been synced (`sync`: its member caught up
//! with the leader) after it was connected, so a replacement session never
//! shows less than the one it replaces did.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use zookeeper_client as zk;

use super::secure::{self, Access};
use super::target::Hosts;
use crate::error::{Error, Result, Side, is_permanent, is_session_lost, is_transient};

/// How to reach one tree's ensemble.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub side: Side,
    pub hosts: Hosts,
    /// Credentials, TLS and SASL.
    pub access: Access,
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
            access: Access::default(),
            connect_timeout: Duration::from_secs(10),
            session_timeout: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a connection attempt failed.
enum Refused {
    /// No retry changes it.
    Final(Error),
    /// Try again (or another member).
    Again(String),
}

/// Whether a session is opened for the first time, or replaced.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    First,
    Replacing,
}

/// One attempt to open a session on `hosts`, within `limit`. A failure
/// that a TLS handshake of our own explains (an untrusted certificate, a
/// plain port given TLS and the reverse) is final when the session is
/// opened first; when one is replaced mid-run it is only told, and tried
/// again (a connection cut in the middle of a check looks like a port that
/// does not speak TLS).
async fn connect_attempt(
    opts: &ConnectOptions,
    hosts: &Hosts,
    limit: Duration,
    stage: Stage,
) -> Result<zk::Client, Refused> {
    let connector = opts.access.connector(opts.session_timeout).map_err(Refused::Final)?;
    let tls_problem = |(member, problem): (String, secure::TlsProblem)| match stage {
        Stage::First => Refused::Final(Error::Tls { side: opts.side, member, problem }),
        Stage::Replacing => Refused::Again(format!("{member} {problem}")),
    };
    // With a server name given, the client checks the chain only: it is
    // given only the members whose certificate was just checked for the
    // name (fail closed).
    let all = hosts;
    let mut hosts = hosts.clone();
    let mut failed = None;
    if let Some(tls) = opts.access.tls.as_ref().filter(|t| t.server_name().is_some()) {
        match secure::check_names(tls, &hosts.hosts, limit).await {
            secure::NameCheck::Problem(member, problem) => return Err(tls_problem((member, problem))),
            secure::NameCheck::Checked(members) if members.is_empty() => {
                failed = Some("no member passed the TLS name check".to_string());
            }
            secure::NameCheck::Checked(members) => hosts.hosts = members,
        }
    }
    let failed = match failed {
        Some(why) => why,
        None => match tokio::time::timeout(limit, opts.access.connect(connector, &hosts.connect_string())).await {
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(zk::Error::AuthFailed)) => {
                return Err(Refused::Final(Error::AuthRejected {
                    side: opts.side,
                    hosts: hosts.host_list(),
                    schemes: opts.access.describe(),
                }));
            }
            Ok(Err(e)) if is_permanent(&e) => {
                return Err(Refused::Final(Error::ConnectFailed {
                    side: opts.side,
                    hosts: hosts.host_list(),
                    source: e,
                }));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        },
    };
    if let Some(found) = secure::diagnose(&opts.access, &all.hosts, limit).await {
        return Err(tls_problem(found));
    }
    match secure::kerberos_problem(&opts.access, &all.hosts).await {
        Some((member, principal, reason)) => match stage {
            Stage::First => Err(Refused::Final(Error::Kerberos { side: opts.side, member, principal, reason })),
            Stage::Replacing => Err(Refused::Again(format!("Kerberos to {member} ({principal}): {reason}"))),
        },
        None => Err(Refused::Again(failed)),
    }
}

/// Opens a session on `hosts`, trying until `limit` (every host may refuse
/// for a while: a restarting ensemble), a short pause between attempts.
/// What no retry can change (bad credentials, a refused argument) fails at
/// once.
async fn connect_once(opts: &ConnectOptions, hosts: &Hosts, limit: Duration, stage: Stage) -> Result<zk::Client> {
    let deadline = Instant::now() + limit;
    let mut last = String::from("no attempt");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match connect_attempt(opts, hosts, left, stage).await {
            Ok(client) => return Ok(client),
            Err(Refused::Final(e)) => return Err(e),
            Err(Refused::Again(reason)) => last = reason,
        }
        tokio::time::sleep(Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    Err(Error::Unreachable { side: opts.side, hosts: hosts.host_list(), timeout: limit, reason: last })
}

/// Makes `client`'s member catch up with the leader: requests sent after
/// this returns see every change committed before it was called. Bounded by
/// the session timeout (a member that cannot catch up within it is treated
/// as unreachable).
pub(crate) async fn sync_client(opts: &ConnectOptions, client: &zk::Client) -> Result<(), zk::Error> {
    match tokio::time::timeout(opts.session_timeout, client.sync("/")).await {
        Ok(r) => r,
        Err(_) => Err(zk::Error::Timeout),
    }
}

/// [`connect_once`], then [`sync_client`].
async fn connect_synced(opts: &ConnectOptions, hosts: &Hosts, limit: Duration, stage: Stage) -> Result<zk::Client> {
    let client = connect_once(opts, hosts, limit, stage).await?;
    sync_client(opts, &client).await.map_err(|e| Error::zk(opts.side, "sync", "/", e))?;
    Ok(client)
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
    /// Locked also while a pool swaps all its clients, so a snapshot of the
    /// clients is always of one member.
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
        let client = connect_synced(&opts, &opts.hosts, opts.connect_timeout, Stage::First).await?;
        Ok(Session { opts, pin: None, current: Mutex::new((0, client)), renewals: AtomicUsize::new(0) })
    }

    /// [`Session::connect`] for a session that replaces one lost mid-run
    /// (a driver's own cache): what a TLS or Kerberos check finds is told
    /// in the error, but retried until the connect timeout, not final (a
    /// member going down can look like a port that does not speak TLS).
    pub async fn reconnect(opts: Arc<ConnectOptions>) -> Result<Session> {
        let client = connect_synced(&opts, &opts.hosts, opts.connect_timeout, Stage::Replacing).await?;
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

    /// Puts `client` in place of the client of generation `generation` (any
    /// generation when `None`); false when another caller replaced it first.
    fn replace(&self, generation: Option<u64>, client: zk::Client) -> bool {
        let mut guard = self.current.lock().unwrap();
        if generation.is_some_and(|g| g != guard.0) {
            return false;
        }
        *guard = (guard.0 + 1, client);
        self.renewals.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Replaces the client of generation `generation` with a new, synced
    /// session; a no-op when another caller already did. A pinned session
    /// reconnects to its pool's member only, and gives up sooner: its pool
    /// then moves (which replaces every client, so a renewal that finishes
    /// after a move is dropped).
    pub async fn renew(&self, generation: u64) -> Result<()> {
        if self.client().0 != generation {
            return Ok(());
        }
        let (hosts, limit) = match &self.pin {
            Some(pin) => (pin.member_hosts(pin.state().member), PINNED_RECONNECT.min(self.opts.connect_timeout)),
            None => (self.opts.hosts.clone(), self.opts.connect_timeout),
        };
        let client = connect_synced(&self.opts, &hosts, limit, Stage::Replacing)
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
    /// connection problem: transient errors and lost sessions (replaced) are
    /// retried for up to `retry_timeout`.
    pub async fn retry<T, F, Fut>(&self, mut op: F) -> Result<Result<T, zk::Error>>
    where
        F: FnMut(zk::Client) -> Fut,
        Fut: Future<Output = Result<T, zk::Error>>,
    {
        let mut backoff = Backoff::new(&self.opts);
        loop {
            let (generation, client) = self.client();
            match op(client).await {
                Err(e) if is_session_lost(&e) => {
                    self.renew(generation).await?;
                    backoff.wait(&e).await?;
                }
                Err(e) if is_transient(&e) => backoff.wait(&e).await?,
                other => return Ok(other),
            }
        }
    }
}

/// How long a pinned session tries to reconnect to its member, and how long
/// one attempt on one member may take when the pool looks for a member,
/// before the next is tried.
const PINNED_RECONNECT: Duration = Duration::from_secs(2);

/// How requests failing with connection problems are retried: after pauses
/// doubling from 20 ms to 1 s, for up to the `retry_timeout` of a side.
pub(crate) struct Backoff<'a> {
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

/// The clients of a pool at one moment, all of one member.
pub struct Clients {
    /// The pool's move count when taken: answers are kept only while the
    /// pool is still on the same member.
    pub epoch: u64,
    pub generations: Vec<u64>,
    pub clients: Vec<zk::Client>,
}

/// Several sessions to one ensemble, all pinned to one member.
///
/// The member is the first of the connect string that accepts a session
/// (list a follower first to keep the load off the leader); each session's
/// client is given that member alone. Each session is synced when it is
/// opened or replaced, and [`SessionPool::sync`] syncs them all. When the
/// member goes away (its port refuses, a session cannot be renewed there,
/// or it cannot catch up within the session timeout), every session moves
/// to the next member together, each synced before it is used, and answers
/// still arriving from the old member are dropped.
pub struct SessionPool {
    sessions: Vec<Session>,
    pin: Arc<Pin>,
    opts: Arc<ConnectOptions>,
    moves: AtomicUsize,
}

impl SessionPool {
    /// Opens `size` sessions (at least one), all on the first member of the
    /// connect string that accepts them, each synced.
    pub async fn connect(opts: ConnectOptions, size: usize) -> Result<SessionPool> {
        let opts = Arc::new(opts);
        let pin = Arc::new(Pin {
            hosts: opts.hosts.clone(),
            state: Mutex::new(PinState { member: 0, epoch: 0 }),
            moving: tokio::sync::Mutex::new(()),
        });
        let (member, clients) = open_on_some_member(&opts, &pin, 0, size.max(1), Stage::First).await?;
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

    /// The current clients, all of one member, with the pool's epoch.
    pub fn clients(&self) -> Clients {
        let state = self.pin.state.lock().unwrap();
        let (generations, clients) = self.sessions.iter().map(|s| s.client()).unzip();
        Clients { epoch: state.epoch, generations, clients }
    }

    /// Makes every session's member catch up with the leader: every read
    /// issued after this returns includes every change committed before it
    /// was called. A member that cannot catch up within the session timeout
    /// is left for another.
    pub async fn sync(&self) -> Result<()> {
        let opts = &self.opts;
        self.run(|clients| async move {
            futures::future::try_join_all(clients.iter().map(|c| sync_client(opts, c))).await.map(drop)
        })
        .await?
        .map_err(|e| Error::zk(self.side(), "sync", "/", e))
    }

    /// Runs an idempotent request on the first session (see
    /// [`SessionPool::run`]).
    pub async fn retry<T, F, Fut>(&self, mut op: F) -> Result<Result<T, zk::Error>>
    where
        F: FnMut(zk::Client) -> Fut,
        Fut: Future<Output = Result<T, zk::Error>>,
    {
        self.run(|clients| op(clients[0].clone())).await
    }

    /// Runs an idempotent attempt with the pool's clients until it gives an
    /// answer that is not a connection problem, for up to `retry_timeout`:
    /// lost sessions are replaced, an unreachable or stuck member is left
    /// for another, and an answer that arrives after the pool moved is
    /// dropped and asked again (it came from a member the pool has left, and
    /// may be older than what the new member already showed).
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<Result<T, zk::Error>>
    where
        F: FnMut(Vec<zk::Client>) -> Fut,
        Fut: Future<Output = Result<T, zk::Error>>,
    {
        let mut backoff = Backoff::new(&self.opts);
        loop {
            let now = self.clients();
            match attempt(now.clients.clone()).await {
                Err(e) if is_session_lost(&e) => self.recover(&now).await?,
                Err(e) if is_transient(&e) => {
                    if matches!(e, zk::Error::Timeout) || !self.member_reachable(&now).await {
                        tracing::warn!(side = %self.side(), member = %self.member(), error = %e, "leaving the member");
                        self.move_member(now.epoch).await?;
                    }
                }
                Ok(_) if self.pin.state().epoch != now.epoch => continue,
                other => return Ok(other),
            }
            backoff.wait(&zk::Error::ConnectionLoss).await?;
        }
    }

    /// Whether the member of `now` still accepts connections (always true
    /// when there is no other member to go to).
    async fn member_reachable(&self, now: &Clients) -> bool {
        if self.pin.hosts.hosts.len() == 1 || self.pin.state().epoch != now.epoch {
            return true;
        }
        let addrs = self.pin.member_hosts(self.pin.state().member).socket_addrs().await;
        if addrs.is_empty() {
            return true;
        }
        matches!(
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addrs.as_slice())).await,
            Ok(Ok(_))
        )
    }

    /// Moves every session to another member (synced) when the pool's
    /// member no longer accepts connections, as [`SessionPool::run`] does
    /// after a request fails: for a caller that learns of a lost connection
    /// before any request fails (a watch; requests sent meanwhile are held
    /// until the session is back or the request times out). Whether it
    /// moved.
    pub async fn check_member(&self) -> Result<bool> {
        let now = self.clients();
        if self.member_reachable(&now).await {
            return Ok(false);
        }
        tracing::warn!(side = %self.side(), member = %self.member(), "the member refuses connections: leaving it");
        self.move_member(now.epoch).await?;
        Ok(true)
    }

    /// Replaces the client of session `i` of generation `generation`, whose
    /// session ended, as [`SessionPool::run`] replaces a lost one: on the
    /// pool's member, or, when that member does not take it (it is gone),
    /// by moving every session to another member (synced). A session renewed
    /// alone would keep trying the member it is pinned to. A no-op when the
    /// client was replaced already.
    pub async fn revive(&self, i: usize, generation: u64) -> Result<()> {
        let epoch = self.pin.state().epoch;
        if self.get(i).renew(generation).await.is_err() {
            return self.move_member(epoch).await;
        }
        Ok(())
    }

    /// Replaces the sessions of `now` that are gone: on the same member, or,
    /// when that fails, all of them on another member.
    async fn recover(&self, now: &Clients) -> Result<()> {
        for (s, g) in self.sessions.iter().zip(&now.generations) {
            if s.renew(*g).await.is_err() {
                return self.move_member(now.epoch).await;
            }
        }
        Ok(())
    }

    /// Moves every session to another member (the next in the connect
    /// string that accepts sessions, the current one last), each synced
    /// before any of them is used. A no-op when the pool already moved since
    /// `epoch`.
    async fn move_member(&self, epoch: u64) -> Result<()> {
        let _moving = self.pin.moving.lock().await;
        let state = self.pin.state();
        if state.epoch != epoch {
            return Ok(());
        }
        let next = (state.member + 1) % self.pin.hosts.hosts.len();
        let (member, clients) = open_on_some_member(&self.opts, &self.pin, next, self.sessions.len(), Stage::Replacing)
            .await
            .map_err(|e| Error::SessionLost { side: self.side(), reason: e.to_string() })?;
        {
            // Under the state lock: a snapshot of the clients is of one
            // member, and a renewal that finishes after this is dropped
            // (every generation changes here).
            let mut guard = self.pin.state.lock().unwrap();
            *guard = PinState { member, epoch: epoch + 1 };
            for (s, c) in self.sessions.iter().zip(clients) {
                s.replace(None, c);
            }
        }
        self.moves.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(side = %self.side(), member = %self.pin.hosts.hosts[member], "reads moved to another member (synced first)");
        Ok(())
    }
}

/// Opens `size` synced sessions on one member, trying the members in
/// connect-string order from `first` on (wrapping; one attempt each per
/// round), until the connect timeout.
async fn open_on_some_member(
    opts: &ConnectOptions,
    pin: &Pin,
    first: usize,
    size: usize,
    stage: Stage,
) -> Result<(usize, Vec<zk::Client>)> {
    let n = pin.hosts.hosts.len();
    if n == 1 {
        let hosts = pin.member_hosts(0);
        let opened =
            futures::future::try_join_all((0..size).map(|_| connect_synced(opts, &hosts, opts.connect_timeout, stage)));
        return Ok((0, opened.await?));
    }
    let deadline = Instant::now() + opts.connect_timeout;
    let mut last = String::from("no attempt");
    // A short try on each member first, so a dead one costs little; longer
    // ones each round after, so a slow link still gets its sessions.
    let mut per_try = PINNED_RECONNECT;
    // Members that gave a TLS or Kerberos problem (each counted once).
    let mut member_finals: Vec<usize> = Vec::new();
    while Instant::now() < deadline {
        for k in 0..n {
            let member = (first + k) % n;
            let hosts = pin.member_hosts(member);
            let limit = deadline.saturating_duration_since(Instant::now()).min(per_try);
            let one = || async {
                let client = connect_attempt(opts, &hosts, limit, stage).await?;
                sync_client(opts, &client).await.map_err(|e| Refused::Again(format!("sync: {e}")))?;
                Ok::<_, Refused>(client)
            };
            match futures::future::try_join_all((0..size).map(|_| one())).await {
                Ok(clients) => return Ok((member, clients)),
                // A TLS or Kerberos problem is one member's: the next may
                // do; it is final once every member said one.
                Err(Refused::Final(e @ (Error::Tls { .. } | Error::Kerberos { .. }))) => {
                    last = format!("{}: {e}", pin.hosts.hosts[member]);
                    if !member_finals.contains(&member) {
                        member_finals.push(member);
                    }
                    if member_finals.len() == n {
                        return Err(e);
                    }
                }
                Err(Refused::Final(e)) => return Err(e),
                Err(Refused::Again(reason)) => last = format!("{}: {reason}", pin.hosts.hosts[member]),
            }
        }
        per_try *= 2;
        tokio::time::sleep(Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    Err(Error::Unreachable {
        side: opts.side,
        hosts: pin.hosts.host_list(),
        timeout: opts.connect_timeout,
        reason: last,
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
        let e = connect_once(&opts, &hosts, Duration::from_secs(10), Stage::First).await.expect_err("refused");
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert!(matches!(e, Error::ConnectFailed { .. }), "{e:?}");
        assert!(e.to_string().contains("invalid address"), "{e}");
    }
}
