//! One tree, one history: reads of a 3-member source ensemble stay
//! consistent while one member lags behind the leader.
//!
//! Member 0 reaches the leader through proxies; stalling them freezes what
//! that member serves (as a follower in a long GC pause or on a slow disk
//! would) while it keeps answering its clients. The lag starts after the
//! readers' sessions are up: a session created on a lagging member waits
//! until the member has caught up, which would hide the lag. The readers
//! then run a mirror copy and a verify, as a migration's re-sync does with
//! sessions it opened earlier, while other nodes churn. A node that exists
//! on the source for the whole operation must never be deleted from the
//! destination, left out of it, or reported missing or extra.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use zkrepl::copy::{self, CopyOptions, Mode};
use zkrepl::error::Side;
use zkrepl::internals::{ReadOptions, TreeReader, VerifyOptions, copy_on, run_credential, verify_on};
use zkrepl::progress::Progress;
use zkrepl::verify::{self, DiffClass};
use zkrepl::zk::session::{ConnectOptions, Session, SessionPool};
use zkrepl::zk::target::Hosts;
use zkrepl_testkit::lagging::{Lagging, STALL};
use zkrepl_testkit::proxy::FaultProxy;
use zookeeper_client as zk;

const PARENTS: usize = 8;

async fn pool(side: Side, hosts: &str, sessions: usize, auth: Vec<zkrepl::zk::target::Auth>) -> SessionPool {
    let mut o = ConnectOptions::new(side, Hosts::parse(hosts).unwrap());
    o.access.auth = auth;
    SessionPool::connect(o, sessions).await.unwrap()
}

async fn reader(side: Side, hosts: &str, root: &str) -> TreeReader {
    TreeReader::open(pool(side, hosts, 8, Vec::new()).await, root, ReadOptions::default()).await.unwrap()
}

async fn create_all(c: &zk::Client, paths: &[String]) {
    for p in paths {
        c.create(p, p.as_bytes(), &open()).await.unwrap();
    }
}

/// Source and destination readers and the writer, opened before the lag.
struct Run {
    root: String,
    src: TreeReader,
    dst: TreeReader,
    writer: Arc<Session>,
    run: zkrepl::RunCredential,
    opts: CopyOptions,
}

impl Run {
    async fn open(lag: &Lagging, lagging_first: bool) -> Run {
        let root = unique_root("lag");
        let c = lag.leader().await;
        let mut tree = vec![root.clone(), format!("{root}/churn")];
        for p in 0..PARENTS {
            tree.push(format!("{root}/p{p}"));
            tree.extend((0..10).map(|k| format!("{root}/p{p}/c{k}")));
        }
        create_all(&c, &tree).await;
        let dst_hosts = pair().dst.connect_string();
        let run = run_credential();
        let writer = Session::connect(Arc::new({
            let mut o = ConnectOptions::new(Side::Destination, Hosts::parse(&dst_hosts).unwrap());
            o.access.auth = vec![run.auth().clone()];
            o
        }))
        .await
        .unwrap();
        let writer = Arc::new(writer);
        let src = reader(Side::Source, &lag.hosts(lagging_first), &root).await;
        let dst = reader(Side::Destination, &dst_hosts, &root).await;
        Run { root, src, dst, writer, run, opts: CopyOptions::default() }
    }

    async fn copy(&self, mode: Mode) -> copy::CopySummary {
        let mut opts = self.opts.clone();
        opts.mode = mode;
        copy_on(&self.src, &self.dst, &self.writer, &opts, &self.run, &Arc::new(Progress::new())).await.unwrap()
    }

    /// `n` new children of every parent, named `tag-k`.
    fn new_nodes(&self, tag: &str, n: usize) -> Vec<String> {
        (0..PARENTS)
            .flat_map(|p| (0..n).map(move |k| (p, k)))
            .map(|(p, k)| format!("{}/p{p}/{tag}-{k}", self.root))
            .collect()
    }
}

/// Creates and deletes nodes under `<root>/churn` through the leader until
/// `until` (bounded in count too).
fn churn(c: zk::Client, root: String, until: Instant) -> tokio::task::JoinHandle<usize> {
    static ROUND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let round = ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tokio::spawn(async move {
        let mut n = 0;
        while Instant::now() < until && n < 400 {
            let p = format!("{root}/churn/r{round}-{n}");
            c.create(&p, b"x", &open()).await.unwrap();
            if n % 2 == 0 {
                c.delete(&p, None).await.unwrap();
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        n
    })
}

async fn missing(c: &zk::Client, paths: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for p in paths {
        if c.check_stat(p).await.unwrap().is_none() {
            out.push(p.clone());
        }
    }
    out
}

/// Runs `op` while member 0 lags (thawed [`STALL`] after it began) and
/// nodes churn.
async fn while_lagging<T>(lag: &Lagging, root: &str, op: impl std::future::Future<Output = T>) -> T {
    let c = lag.leader().await;
    let churning = churn(c, root.to_string(), Instant::now() + STALL);
    let (out, ()) = tokio::join!(op, lag.thaw());
    churning.await.unwrap();
    out
}

async fn scenario(lag: &Lagging, lagging_first: bool) {
    let run = Run::open(lag, lagging_first).await;
    run.copy(Mode::Fresh).await;
    let leader = lag.leader().await;
    let dst = zk::Client::connect(&pair().dst.connect_string()).await.unwrap();

    // A re-sync with --mirror: written through the leader (and, for `kept`,
    // already on the destination, as an earlier round would have left
    // them) after the sessions were up and the member began to lag, before
    // the copy starts.
    let on_member_0 = lag.lag().await;
    let kept = run.new_nodes("kept", 3);
    let added = run.new_nodes("added", 3);
    create_all(&leader, &kept).await;
    create_all(&dst, &kept).await;
    create_all(&leader, &added).await;
    Lagging::assert_lags(&on_member_0, &added[added.len() - 1]).await;
    let summary = while_lagging(lag, &run.root, run.copy(Mode::Mirror)).await;
    let gone = missing(&dst, &kept).await;
    assert!(gone.is_empty(), "mirror deleted nodes the source had all along: {gone:?} ({summary:?})");
    let left_out = missing(&dst, &added).await;
    assert!(left_out.is_empty(), "copy left out nodes written before it started: {left_out:?}");

    // A verify with the same readers, the member lagging again: nodes on
    // both sides for the whole verify are neither missing nor extra.
    let on_member_0 = lag.lag().await;
    let both = run.new_nodes("both", 3);
    create_all(&leader, &both).await;
    create_all(&dst, &both).await;
    Lagging::assert_lags(&on_member_0, &both[both.len() - 1]).await;
    let mut found = Vec::new();
    let mut sink = |d: verify::Difference| found.push(d);
    let (opts, progress) = (VerifyOptions::default(), Progress::new());
    let verifying = verify_on(&run.src, &run.dst, &opts, &progress, &mut sink);
    let report = while_lagging(lag, &run.root, verifying).await.unwrap();
    let stable: Vec<_> = found
        .iter()
        .filter(|d| !d.path.starts_with("/churn"))
        .filter(|d| matches!(d.class, DiffClass::MissingOnDst | DiffClass::ExtraOnDst | DiffClass::Changed))
        .collect();
    assert!(stable.is_empty(), "verify reported nodes both sides had all along: {stable:?}");
    // The root, the churn parent, and each parent with its 10 + 9 children.
    let stable_nodes = 2 + PARENTS * (1 + 10 + 9);
    assert!(report.compared as usize >= stable_nodes, "compared {} of {stable_nodes}", report.compared);
}

/// The member a tree's sessions are pinned to dies: every session moves to
/// another member together and the copy goes on. So do the sessions of a
/// pool that renews one session (whose own member refuses it) and of one
/// asked to check its member (a watch's connection dropped).
async fn pinned_member_killed(lag: &mut Lagging) {
    let servers = &lag.ensemble.servers;
    let f = (1..servers.len()).find(|&i| servers[i].mode() == "follower").expect("a second follower");
    let mut order: Vec<String> = vec![servers[f].connect_string()];
    order.extend((0..servers.len()).filter(|&i| i != f).map(|i| servers[i].connect_string()));
    let hosts = order.join(",");
    let root = unique_root("move");
    let c = lag.leader().await;
    let mut tree = vec![root.clone()];
    for p in 0..PARENTS {
        tree.push(format!("{root}/p{p}"));
        tree.extend((0..10).map(|k| format!("{root}/p{p}/c{k}")));
    }
    create_all(&c, &tree).await;
    let src = reader(Side::Source, &hosts, &root).await;
    assert_eq!(src.pool().member(), order[0], "sessions pinned to the first member given");
    let dst_hosts = pair().dst.connect_string();
    let dst = reader(Side::Destination, &dst_hosts, &root).await;
    let run = run_credential();
    let mut o = ConnectOptions::new(Side::Destination, Hosts::parse(&dst_hosts).unwrap());
    o.access.auth = vec![run.auth().clone()];
    let writer = Session::connect(Arc::new(o)).await.unwrap();
    // Pools that learn of the loss otherwise: a session whose own renewal
    // the member refuses, a connection seen to drop (a watch's).
    let renewed = pool(Side::Source, &hosts, 2, Vec::new()).await;
    let checked = pool(Side::Source, &hosts, 2, Vec::new()).await;
    assert!(!checked.check_member().await.unwrap(), "a member that is up is kept");

    lag.ensemble.servers[f].kill();
    let opts = CopyOptions::default();
    let summary = tokio::time::timeout(
        Duration::from_secs(60),
        copy_on(&src, &dst, &Arc::new(writer), &opts, &run, &Arc::new(Progress::new())),
    )
    .await
    .expect("copy finished in time")
    .unwrap();
    assert_eq!(summary.created as usize, tree.len());
    assert_eq!(src.pool().moves(), 1, "all sessions moved once");
    assert_eq!(summary.member_moves, 1, "the summary says so");
    assert_ne!(src.pool().member(), order[0]);
    // Renewed alone, the session would keep trying the member it is pinned to.
    let (generation, _) = renewed.get(0).client();
    renewed.revive(0, generation).await.unwrap();
    assert_eq!((renewed.moves(), renewed.get(1).client().0), (1, 1), "every session moved, not the one alone");
    assert_ne!(renewed.member(), order[0]);
    assert!(checked.check_member().await.unwrap(), "a member that refuses connections is left");
    assert_eq!(checked.moves(), 1);
    assert_ne!(checked.member(), order[0]);
    let check = reader(Side::Source, &lag.hosts(false), &root).await;
    let mut found = verify::FirstDifferences::new(20);
    let report = verify_on(&check, &dst, &VerifyOptions::default(), &Progress::new(), &mut found).await.unwrap();
    assert!(report.equal(), "{report:?} {:?}", found.listed);
    lag.ensemble.servers[f].restart().unwrap();
}

/// Behind one connect-string entry that spreads connections over two
/// members (a load balancer), sessions cannot be pinned to one member. A
/// node that a lagging member answers NoNode for is still not taken as
/// gone: it is read again on one session after a sync.
async fn a_nonode_from_a_lagging_member_is_confirmed(lag: &Lagging) {
    let servers = &lag.ensemble.servers;
    let addr = |i: usize| std::net::SocketAddr::from(([127, 0, 0, 1], servers[i].port));
    let up = (1..servers.len()).find(|&i| servers[i].is_running()).expect("another member");
    let balancer = FaultProxy::balance(vec![addr(up), addr(0)]).await;
    let root = unique_root("balanced");
    let c = lag.leader().await;
    create_all(&c, &[root.clone(), format!("{root}/churn")]).await;
    // Two sessions: one on each member.
    let src = TreeReader::open(
        pool(Side::Source, &balancer.connect_string(), 2, Vec::new()).await,
        &root,
        ReadOptions::default(),
    )
    .await
    .unwrap();
    let on_member_0 = lag.lag().await;
    let node = format!("{root}/x");
    create_all(&c, &[node.clone(), format!("{node}/child")]).await;
    Lagging::assert_lags(&on_member_0, &node).await;
    let reads = async {
        for _ in 0..4 {
            let slots = src.read(&["/x"]).await.unwrap();
            assert!(matches!(&slots[..], [zkrepl::node::Slot::Node(_)]), "{slots:?}");
            let listed = src.list(&["/x"], &[1]).await.unwrap();
            assert!(matches!(&listed[..], [zkrepl::internals::Listing::Names(n)] if n == &["child"]), "{listed:?}");
        }
    };
    while_lagging(lag, &root, reads).await;
    assert!(src.unconfirmed_vanishes() > 0, "no read landed on the lagging member: the test proved nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stay_consistent_while_a_member_lags() {
    let mut lag = Lagging::start(&test_server_options()).await;
    // Pinned to the lagging member (its sync waits for it to catch up),
    // then to an up-to-date one.
    scenario(&lag, true).await;
    scenario(&lag, false).await;
    a_nonode_from_a_lagging_member_is_confirmed(&lag).await;
    pinned_member_killed(&mut lag).await;
}
