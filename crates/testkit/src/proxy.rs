//! A fault-injection TCP proxy for the integration tests: put it between
//! zkrepl (or a test's client) and a ZooKeeper server on loopback, then cut,
//! refuse, stall, slow down or cut mid-request the connections through it.
//!
//! Every task it starts ends when the proxy is dropped: the accept task owns
//! the connection tasks (a `JoinSet`, aborted with it), the accept task is
//! aborted on drop, and each connection also watches a shutdown channel
//! whose sender the proxy holds. No loop outlives the proxy.
//!
//! "Reset" means an RST (zero linger, then close) sent both ways, as a
//! crashed peer or a middlebox dropping the flow would look: the client
//! sees ECONNRESET, the server sees its connection die.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Largest chunk read (and forwarded) at once.
const CHUNK: usize = 64 << 10;

struct Shared {
    /// Connections go to these in turn (one: a plain proxy; several: a
    /// balancer that spreads connections over servers).
    upstreams: Vec<SocketAddr>,
    next_upstream: AtomicU64,
    refuse: AtomicBool,
    delay_nanos: AtomicU64,
    /// Client->server bytes still allowed before every connection is reset.
    cut_after: Mutex<Option<u64>>,
    c2s: AtomicU64,
    s2c: AtomicU64,
    /// Raised to reset every connection accepted before the raise.
    generation: watch::Sender<u64>,
    stall: watch::Sender<bool>,
}

impl Shared {
    fn reset_all(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    fn delay(&self) -> Duration {
        Duration::from_nanos(self.delay_nanos.load(Ordering::Relaxed))
    }
}

/// A TCP proxy on 127.0.0.1 forwarding to one upstream address, with
/// switchable faults. Stops (every task, every connection) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    /// Dropped with the proxy: its receivers then see the channel closed.
    _shutdown: watch::Sender<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 on a free port and forwards to `upstream`.
    /// Must be called within a tokio runtime.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        FaultProxy::balance(vec![upstream]).await
    }

    /// Listens on 127.0.0.1 on a free port and sends each new connection to
    /// the next of `upstreams` in turn, as a TCP load balancer in front of
    /// several servers does. Must be called within a tokio runtime.
    pub async fn balance(upstreams: Vec<SocketAddr>) -> FaultProxy {
        assert!(!upstreams.is_empty(), "a proxy needs an upstream");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy listener");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstreams,
            next_upstream: AtomicU64::new(0),
            refuse: AtomicBool::new(false),
            delay_nanos: AtomicU64::new(0),
            cut_after: Mutex::new(None),
            c2s: AtomicU64::new(0),
            s2c: AtomicU64::new(0),
            generation: watch::channel(0).0,
            stall: watch::channel(false).0,
        });
        let (shutdown, shutdown_rx) = watch::channel(());
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), shutdown_rx));
        FaultProxy { addr, shared, accept, _shutdown: shutdown }
    }

    /// Starts a proxy to `127.0.0.1:port`.
    pub async fn to_port(port: u16) -> FaultProxy {
        FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], port))).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:port`, to give a client instead of the server's address.
    pub fn connect_string(&self) -> String {
        self.addr.to_string()
    }

    /// Resets every open connection now; new ones are still accepted.
    pub fn drop_connections(&self) {
        self.shared.reset_all();
    }

    /// Refuses (resets at once) new connections while set.
    pub fn set_refuse(&self, refuse: bool) {
        self.shared.refuse.store(refuse, Ordering::SeqCst);
    }

    /// Stops forwarding bytes both ways while set; connections stay open
    /// (and new ones are accepted, then stall too). A chunk already being
    /// written when this is called still goes through.
    pub fn set_stall(&self, stall: bool) {
        self.shared.stall.send_replace(stall);
    }

    /// Delays each forwarded chunk by `d` (zero: no delay).
    pub fn set_delay(&self, d: Duration) {
        self.shared.delay_nanos.store(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Resets every connection once `n` more bytes went client->server (over
    /// all connections): exactly `n` are forwarded, the rest of the chunk
    /// that crosses the mark is dropped. Lets a test cut a connection in the
    /// middle of a request. `n == 0` resets at once. One-shot: re-arm for
    /// another cut; a new call replaces a pending one.
    pub fn drop_after_client_bytes(&self, n: u64) {
        if n == 0 {
            *self.shared.cut_after.lock().unwrap() = None;
            self.shared.reset_all();
        } else {
            *self.shared.cut_after.lock().unwrap() = Some(n);
        }
    }

    /// Disarms [`FaultProxy::drop_after_client_bytes`].
    pub fn cancel_drop_after(&self) {
        *self.shared.cut_after.lock().unwrap() = None;
    }

    /// Bytes forwarded so far: (client->server, server->client).
    pub fn bytes_forwarded(&self) -> (u64, u64) {
        (self.shared.c2s.load(Ordering::SeqCst), self.shared.s2c.load(Ordering::SeqCst))
    }

    /// Clears every fault (refuse, stall, delay, pending cut).
    pub fn heal(&self) {
        self.set_refuse(false);
        self.set_stall(false);
        self.set_delay(Duration::ZERO);
        self.cancel_drop_after();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every
        // connection task; `_shutdown` is dropped right after, which ends
        // any connection task polled before the abort lands.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<()>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            // Err: the proxy was dropped.
            _ = shutdown.changed() => break,
            // Reap finished connections so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else {
                    // EMFILE and the like: back off briefly, then go on.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if shared.refuse.load(Ordering::SeqCst) {
                    reset(client);
                    continue;
                }
                let generation = *shared.generation.borrow();
                conns.spawn(connection(client, shared.clone(), generation, shutdown.clone()));
            }
        }
    }
    conns.abort_all();
}

/// Closes with an RST rather than a FIN.
fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

/// How one direction ended.
enum Pumped {
    /// EOF read and passed on (FIN): the other direction may go on.
    Eof,
    /// Error or cut: reset the connection.
    Reset,
}

async fn connection(client: TcpStream, shared: Arc<Shared>, generation: u64, mut shutdown: watch::Receiver<()>) {
    let _ = client.set_nodelay(true);
    let turn = shared.next_upstream.fetch_add(1, Ordering::SeqCst) as usize;
    let connect = TcpStream::connect(shared.upstreams[turn % shared.upstreams.len()]);
    let mut gen_rx = shared.generation.subscribe();
    let dropped = async {
        let _ = gen_rx.wait_for(|g| *g != generation).await;
    };
    tokio::pin!(dropped);
    let server = tokio::select! {
        s = connect => s,
        _ = &mut dropped => Err(std::io::ErrorKind::ConnectionReset.into()),
        _ = shutdown.changed() => Err(std::io::ErrorKind::ConnectionReset.into()),
    };
    let Ok(mut server) = server else {
        reset(client);
        return;
    };
    let _ = server.set_nodelay(true);
    let mut client = client;
    let graceful = {
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        let c2s = pump(&mut cr, &mut sw, &shared, true);
        let s2c = pump(&mut sr, &mut cw, &shared, false);
        let both = async {
            tokio::pin!(c2s, s2c);
            let (mut c_done, mut s_done) = (false, false);
            while !(c_done && s_done) {
                tokio::select! {
                    r = &mut c2s, if !c_done => match r {
                        Pumped::Eof => c_done = true,
                        Pumped::Reset => return false,
                    },
                    r = &mut s2c, if !s_done => match r {
                        Pumped::Eof => s_done = true,
                        Pumped::Reset => return false,
                    },
                }
            }
            true
        };
        tokio::select! {
            g = both => g,
            _ = &mut dropped => false,
            _ = shutdown.changed() => false,
        }
    };
    if !graceful {
        reset(client);
        reset(server);
    }
}

/// Forwards one direction until EOF, an error, or a cut.
async fn pump<R, W>(r: &mut R, w: &mut W, shared: &Shared, client_to_server: bool) -> Pumped
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    let mut stall = shared.stall.subscribe();
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => {
                let _ = w.shutdown().await;
                return Pumped::Eof;
            }
            Ok(n) => n,
            Err(_) => return Pumped::Reset,
        };
        // Hold the chunk while stalled (the sender's socket buffers fill up
        // behind it).
        if stall.wait_for(|s| !*s).await.is_err() {
            return Pumped::Reset;
        }
        let delay = shared.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (len, cut) = if client_to_server {
            let mut budget = shared.cut_after.lock().unwrap();
            match *budget {
                Some(left) if left <= n as u64 => {
                    *budget = None;
                    (left as usize, true)
                }
                Some(left) => {
                    *budget = Some(left - n as u64);
                    (n, false)
                }
                None => (n, false),
            }
        } else {
            (n, false)
        };
        if w.write_all(&buf[..len]).await.is_err() {
            return Pumped::Reset;
        }
        let _ = w.flush().await;
        let counter = if client_to_server { &shared.c2s } else { &shared.s2c };
        counter.fetch_add(len as u64, Ordering::SeqCst);
        if cut {
            shared.reset_all();
            return Pumped::Reset;
        }
    }
}
