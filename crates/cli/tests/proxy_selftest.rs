//! Tests of the fault-injection proxy itself (tests/common/proxy.rs): first
//! over plain TCP against a counting upstream, then with a real ZooKeeper
//! server and a zookeeper_client session through it.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zkrepl_testkit::proxy::FaultProxy;
use zookeeper_client as zk;

/// Fails the test instead of hanging.
async fn within<F: Future>(limit: Duration, what: &str, f: F) -> F::Output {
    tokio::time::timeout(limit, f).await.unwrap_or_else(|_| panic!("{what}: not done within {limit:?}"))
}

/// An upstream that echoes what it receives and reports, per connection,
/// how many bytes it read before EOF or reset.
async fn echo_upstream() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<u64>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut total = 0u64;
                while let Ok(n) = s.read(&mut buf).await {
                    total += n as u64;
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = tx.send(total);
            });
        }
    });
    (addr, rx)
}

/// Reads until EOF or error; returns the bytes read and whether it ended in
/// an error (a reset) rather than EOF.
async fn drain(s: &mut TcpStream) -> (u64, bool) {
    let mut buf = vec![0u8; 8192];
    let mut total = 0u64;
    loop {
        match s.read(&mut buf).await {
            Ok(0) => return (total, false),
            Ok(n) => total += n as u64,
            Err(_) => return (total, true),
        }
    }
}

#[tokio::test]
async fn forwards_counts_and_cuts_after_exactly_n_client_bytes() {
    let (up, mut got) = echo_upstream().await;
    let proxy = FaultProxy::start(up).await;

    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut back = [0u8; 5];
    within(Duration::from_secs(5), "echo", s.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"hello");
    assert_eq!(proxy.bytes_forwarded(), (5, 5));

    // The cut: exactly 1234 more bytes reach the upstream, then both sides
    // are reset.
    proxy.drop_after_client_bytes(1234);
    let payload = vec![7u8; 10_000];
    // The write may itself fail once the reset arrives.
    let _ = s.write_all(&payload).await;
    let (_, reset) = within(Duration::from_secs(5), "client side reset", drain(&mut s)).await;
    assert!(reset, "the client side must see a reset, not EOF");
    let upstream_total = within(Duration::from_secs(5), "upstream done", got.recv()).await.unwrap();
    assert_eq!(upstream_total, 5 + 1234);
    assert_eq!(proxy.bytes_forwarded().0, 5 + 1234);

    // New connections work, and the cut was one-shot.
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(&payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    within(Duration::from_secs(5), "echo after cut", s.read_exact(&mut back)).await.unwrap();
    assert_eq!(back, payload);
}

#[tokio::test]
async fn stall_holds_bytes_refuse_and_drop_reset() {
    let (up, _got) = echo_upstream().await;
    let proxy = FaultProxy::start(up).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();

    proxy.set_stall(true);
    s.write_all(b"stalled").await.unwrap();
    let mut back = [0u8; 7];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut back)).await.is_err(),
        "nothing may come back while stalled"
    );
    assert_eq!(proxy.bytes_forwarded(), (0, 0));
    proxy.set_stall(false);
    within(Duration::from_secs(5), "echo after stall", s.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"stalled");

    // Delay: a round trip crosses the proxy twice.
    proxy.set_delay(Duration::from_millis(150));
    let t = Instant::now();
    s.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    within(Duration::from_secs(5), "delayed echo", s.read_exact(&mut one)).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
    proxy.set_delay(Duration::ZERO);

    // Drop: open connections are reset.
    proxy.drop_connections();
    let (_, reset) = within(Duration::from_secs(5), "reset", drain(&mut s)).await;
    assert!(reset);

    // Refuse: new connections are reset at once, until cleared.
    proxy.set_refuse(true);
    let mut r = TcpStream::connect(proxy.addr()).await.unwrap();
    let (n, _) = within(Duration::from_secs(5), "refused", drain(&mut r)).await;
    assert_eq!(n, 0);
    proxy.set_refuse(false);
    let mut ok = TcpStream::connect(proxy.addr()).await.unwrap();
    ok.write_all(b"again").await.unwrap();
    let mut back = [0u8; 5];
    within(Duration::from_secs(5), "echo after refuse", ok.read_exact(&mut back)).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_proxy_ends_its_tasks_and_connections() {
    let (up, _got) = echo_upstream().await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let proxy = FaultProxy::start(up).await;
    let addr = proxy.addr();
    let mut conns = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        within(Duration::from_secs(5), "echo", s.read_exact(&mut b)).await.unwrap();
        conns.push(s);
    }
    // One stalled connection too: it must end as well.
    proxy.set_stall(true);
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(b"held").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(metrics.num_alive_tasks() > baseline);

    drop(proxy);
    conns.push(stalled);
    for s in &mut conns {
        within(Duration::from_secs(5), "connection ends", drain(s)).await;
    }
    within(Duration::from_secs(5), "proxy tasks end", async {
        // The echo upstream's own per-connection tasks end on the resets too.
        while metrics.num_alive_tasks() > baseline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(TcpStream::connect(addr).await.is_err(), "the listener must be closed");
}

// ---- with a real ZooKeeper server ----

async fn connect_with_timeout(hosts: &str, session_timeout: Duration) -> zk::Client {
    within(
        Duration::from_secs(20),
        "connect",
        zk::Client::connector().with_session_timeout(session_timeout).connect(hosts),
    )
    .await
    .unwrap_or_else(|e| panic!("connect {hosts}: {e}"))
}

/// How zookeeper_client reports a lost connection: `ConnectionLoss`, or
/// `Custom` wrapping the I/O error or the "no response" timeout (zkrepl's
/// `is_transient` treats both as transient).
fn is_connection_error(e: &zk::Error) -> bool {
    matches!(e, zk::Error::ConnectionLoss | zk::Error::Custom(_))
}

/// Retries `get_data` until it succeeds (the client reconnected).
async fn get_when_back(c: &zk::Client, path: &str, limit: Duration) -> Vec<u8> {
    within(limit, "reconnect", async {
        loop {
            match c.get_data(path).await {
                Ok((d, _)) => return d,
                Err(e) if is_connection_error(&e) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => panic!("get {path}: {e}"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_through_the_proxy_survives_dropped_connections() {
    let p = pair();
    let proxy = FaultProxy::to_port(p.src.port).await;
    let root = unique_root("proxy-drop");
    let c = connect(&proxy.connect_string()).await;
    create_tree(&c, &root, &[("/a", b"one")]).await;
    let a = format!("{root}/a");
    assert_eq!(c.get_data(&a).await.unwrap().0, b"one");
    let (up, down) = proxy.bytes_forwarded();
    assert!(up > 0 && down > 0);
    let session = c.session_id();
    let mut state = c.state_watcher();

    proxy.drop_connections();
    // The client sees the reset (Disconnected, then SyncConnected again: the
    // watcher may report only the latest).
    within(Duration::from_secs(10), "a state change", state.changed()).await;
    assert_eq!(get_when_back(&c, &a, Duration::from_secs(20)).await, b"one");
    assert_eq!(c.session_id(), session, "the same session resumed");
    assert_eq!(c.state(), zk::SessionState::SyncConnected);

    // Writes go on over the new connection.
    c.set_data(&a, b"two", None).await.unwrap();
    let direct = connect(&p.src.connect_string()).await;
    assert_eq!(direct.get_data(&a).await.unwrap().0, b"two");

    // Refused reconnects: the client keeps failing until the proxy lets it.
    assert_eq!(state.state(), zk::SessionState::SyncConnected, "changes so far consumed");
    proxy.set_refuse(true);
    proxy.drop_connections();
    let s = within(Duration::from_secs(10), "disconnect seen", state.changed()).await;
    assert_eq!(s, zk::SessionState::Disconnected);
    // Refused, the client cannot get back: a request waits (the client
    // queues it until it reconnects or its session times out).
    assert!(tokio::time::timeout(Duration::from_millis(1500), c.get_data(&a)).await.is_err());
    assert_eq!(c.state(), zk::SessionState::Disconnected);
    proxy.set_refuse(false);
    assert_eq!(get_when_back(&c, &a, Duration::from_secs(20)).await, b"two");
    assert_eq!(c.session_id(), session);
}

#[tokio::test(flavor = "multi_thread")]
async fn stall_makes_requests_time_out_and_heals() {
    let p = pair();
    let proxy = FaultProxy::to_port(p.src.port).await;
    let root = unique_root("proxy-stall");
    // Negotiated 6 s: the client gives a silent connection up after 2/5 of
    // it (2.4 s); the server keeps the session for 6 s.
    let c = connect_with_timeout(&proxy.connect_string(), Duration::from_secs(6)).await;
    create_tree(&c, &root, &[]).await;
    let session = c.session_id();

    proxy.set_stall(true);
    let started = Instant::now();
    // A request sent into the stall gets no answer...
    assert!(
        tokio::time::timeout(Duration::from_millis(1000), c.get_data(&root)).await.is_err(),
        "a request must not complete through a stalled proxy"
    );
    // (A chunk that was already being written when the stall was set, say a
    // ping, has landed by now.)
    let forwarded = proxy.bytes_forwarded();
    // ...and the client fails it once it deems the connection dead.
    let r = within(Duration::from_secs(10), "client gives up", c.get_data(&root)).await;
    assert!(r.as_ref().is_err_and(is_connection_error), "expected a connection error, got {r:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert_eq!(proxy.bytes_forwarded(), forwarded, "nothing forwarded while stalled");

    proxy.set_stall(false);
    get_when_back(&c, &root, Duration::from_secs(20)).await;
    assert_eq!(c.session_id(), session, "healed before the session expired");
}

/// Creates every path in one multi().
async fn create_all(
    c: &zk::Client,
    paths: &[String],
    data: &[u8],
) -> Result<Vec<zk::MultiWriteResult>, zk::MultiWriteError> {
    let mut w = c.new_multi_writer();
    for p in paths {
        w.add_create(p, data, &open()).unwrap();
    }
    w.commit().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_in_the_middle_of_a_multi_applies_none_of_it() {
    let p = pair();
    let proxy = FaultProxy::to_port(p.src.port).await;
    let root = unique_root("proxy-cut");
    let c = connect(&proxy.connect_string()).await;
    create_tree(&c, &root, &[]).await;
    let data = vec![b'x'; 300];
    let paths: Vec<String> = (0..50).map(|i| format!("{root}/n{i}")).collect();

    // The request is about 50 x 350 bytes: cut it after 2000. Refuse the
    // reconnection for a while, so that the count is the cut request's alone.
    proxy.set_refuse(true);
    let before = proxy.bytes_forwarded().0;
    proxy.drop_after_client_bytes(2000);
    let r = within(Duration::from_secs(15), "cut multi", create_all(&c, &paths, &data)).await;
    assert!(
        matches!(&r, Err(zk::MultiWriteError::RequestFailed { source }) if is_connection_error(source)),
        "expected a connection error for the whole request, got {r:?}"
    );
    assert_eq!(proxy.bytes_forwarded().0 - before, 2000);
    proxy.set_refuse(false);

    let direct = connect(&p.src.connect_string()).await;
    assert!(direct.list_children(&root).await.unwrap().is_empty(), "a half-received multi() must apply nothing");

    // The client reconnects and the same transaction goes through whole.
    get_when_back(&c, &root, Duration::from_secs(20)).await;
    within(Duration::from_secs(15), "multi", create_all(&c, &paths, &data)).await.unwrap();
    assert_eq!(direct.list_children(&root).await.unwrap().len(), 50);
}
