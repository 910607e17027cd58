//! The engine driven through its entry points alone, as a migration or a
//! live sync would: copy, verify and digest from request values, typed
//! failures, cancellation by token, and a cancelled copy finished by a
//! second call with the credential the first one returned.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use zkrepl::copy::{self, CopyRequest, Mode};
use zkrepl::digest::{self, DigestRequest};
use zkrepl::verify::{self, FirstDifferences, VerifyRequest};
use zkrepl::zk::target::{Auth, digest_id};
use zkrepl::{Error, Progress, Side, Tree};
use zkrepl_testkit::local::{LocalServer, ServerOptions};
use zookeeper_client as zk;

const OWNER: &str = "owner:secret";

fn start_pair() -> (LocalServer, LocalServer) {
    let opts = ServerOptions::default();
    std::thread::scope(|s| {
        let a = s.spawn(|| LocalServer::start(&opts).expect("source server"));
        let b = s.spawn(|| LocalServer::start(&opts).expect("destination server"));
        (a.join().unwrap(), b.join().unwrap())
    })
}

async fn client(server: &LocalServer, auth: Option<&str>) -> zk::Client {
    let connector = zk::Client::connector().with_session_timeout(Duration::from_secs(10));
    let connector = match auth {
        Some(a) => connector.with_auth("digest", a.as_bytes()),
        None => connector,
    };
    connector.connect(&server.connect_string()).await.expect("connect")
}

fn owner_auth() -> Auth {
    Auth::parse(&format!("digest:{OWNER}")).unwrap()
}

/// `digest:owner:ALL` and `world:anyone:READ`: anyone reads the node, only
/// the owner creates beneath it or changes its ACL. A copy without the
/// owner's credential writes the children under its temporary grant, and
/// only that grant lets a later call set the node's final ACL.
fn restrictive() -> Vec<zk::Acl> {
    vec![
        zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", &digest_id(OWNER))),
        zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone()),
    ]
}

/// `/root` with a restrictive `/root/locked` holding `n` open children and
/// an open `/root/open` with a few.
async fn source_tree(c: &zk::Client, root: &str, n: usize) {
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    if let Some(parent) = root.rsplit_once('/').map(|(p, _)| p).filter(|p| !p.is_empty()) {
        c.mkdir(parent, &open).await.or_else(|e| if e == zk::Error::NodeExists { Ok(()) } else { Err(e) }).unwrap();
    }
    c.create(root, b"top", &open).await.unwrap();
    c.create(&format!("{root}/open"), b"o", &open).await.unwrap();
    for i in 0..5 {
        c.create(&format!("{root}/open/n{i}"), format!("{i}").as_bytes(), &open).await.unwrap();
    }
    let locked = restrictive();
    let closed = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&locked));
    c.create(&format!("{root}/locked"), b"l", &closed).await.unwrap();
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..n {
        let (c, path, open) = (c.clone(), format!("{root}/locked/c{i:05}"), open.clone());
        pending.push(async move { c.create(&path, &[7u8; 64], &open).await.map(|_| ()) });
        if pending.len() >= 200 {
            futures::StreamExt::next(&mut pending).await.unwrap().unwrap();
        }
    }
    while let Some(r) = futures::StreamExt::next(&mut pending).await {
        r.unwrap();
    }
}

/// A verify of the copy with the owner's credential on both sides, so that
/// the digest ACLs are shown (ZooKeeper masks them without ADMIN).
async fn verify_as_owner(src: &LocalServer, dst: &LocalServer, root: &str) -> verify::VerifyReport {
    let src_tree = Tree::new(&src.connect_string(), root).unwrap().with_auth(owner_auth());
    let dst_tree = Tree::new(&dst.connect_string(), root).unwrap().with_auth(owner_auth());
    let req = VerifyRequest::new(src_tree, dst_tree);
    let mut first = FirstDifferences::new(20);
    let report = verify::run(&req, &Progress::new(), &mut first).await.expect("verify");
    assert!(report.equal(), "{report:?} {:?}", first.listed);
    report
}

fn spawnable<T: Send + 'static>(_: &T) {}

/// A driver spawns operations on tasks of their own: each entry point's
/// future is `Send` (and `'static` when it owns what it borrows).
#[test]
fn every_entry_point_can_run_in_a_task_of_its_own() {
    fn tree(root: &str) -> Tree {
        Tree::new("127.0.0.1:1", root).unwrap()
    }
    let copying = async {
        let req = CopyRequest::new(tree("/a"), tree("/b"));
        copy::run(&req, &Arc::new(Progress::new())).await.map(|_| ())
    };
    spawnable(&copying);
    let verifying = async {
        let mut first = FirstDifferences::new(20);
        verify::run(&VerifyRequest::new(tree("/a"), tree("/b")), &Progress::new(), &mut first).await.map(|_| ())
    };
    spawnable(&verifying);
    let digesting = async { digest::run(&DigestRequest::new(tree("/a")), &Progress::new()).await.map(|_| ()) };
    spawnable(&digesting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_verify_and_digest_through_the_entry_points() {
    let (src, dst) = tokio::task::spawn_blocking(start_pair).await.unwrap();
    let root = "/api/whole";
    source_tree(&client(&src, Some(OWNER)).await, root, 300).await;
    // The source's restrictive ACL is read with the owner's credential;
    // the destination has none of it.
    let src_tree = Tree::new(&src.connect_string(), root).unwrap().with_auth(owner_auth());
    let dst_tree = Tree::new(&dst.connect_string(), root).unwrap();
    let req = CopyRequest::new(src_tree.clone(), dst_tree.clone());
    let progress = Arc::new(Progress::new());
    let summary = copy::run(&req, &progress).await.expect("copy");
    let total = 1 + 1 + 5 + 1 + 300;
    assert_eq!(summary.created, total);
    assert_eq!(summary.nodes_read, total);
    assert_eq!(progress.read.load(Ordering::Relaxed), total, "progress counted every node read");
    assert!(progress.written.load(Ordering::Relaxed) >= total, "and every write applied");

    // The temporary grant is gone: the destination's ACLs are the source's.
    let owner = client(&dst, Some(OWNER)).await;
    let (acl, _) = owner.get_acl(&format!("{root}/locked")).await.unwrap();
    assert_eq!(acl, restrictive());

    let report = verify_as_owner(&src, &dst, root).await;
    assert_eq!(report.compared, total);

    // Both trees digest the same, and the digests are the verify's.
    let digest_of = |tree: &Tree| {
        let req = DigestRequest::new(tree.clone().with_auth(owner_auth()));
        async move { digest::run(&req, &Progress::new()).await.expect("digest") }
    };
    let (a, b) =
        futures::join!(digest_of(&src_tree), digest_of(&Tree { access: Default::default(), ..dst_tree.clone() }));
    assert_eq!(a.nodes, total);
    assert!(a.digest.is_some() && a.digest == b.digest, "{a:?} {b:?}");
    assert_eq!(a.digest, report.src_digest);

    // A second fresh copy is refused by type, with the path and no
    // command-line vocabulary in the message.
    let again = copy::run(&req, &Arc::new(Progress::new())).await.expect_err("the root has children now");
    match &again.error {
        Error::DestinationNotEmpty { path, children } => assert_eq!((path.as_str(), *children), (root, 2)),
        e => panic!("{e:?}"),
    }
    assert_eq!(again.error.side(), Some(Side::Destination));
    assert_eq!(again.applied, 0);
    assert!(!again.to_string().contains("--"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_roots_are_refused_unless_allowed() {
    let (src, _dst) = tokio::task::spawn_blocking(start_pair).await.unwrap();
    let c = client(&src, Some(OWNER)).await;
    source_tree(&c, "/api/overlap", 3).await;
    // The same server behind a proxy, on a port of its own: only the nodes'
    // identity tells.
    let proxy = zkrepl_testkit::proxy::FaultProxy::to_port(src.port).await;
    let alias = format!("127.0.0.1:{}", proxy.addr().port());
    let src_tree = Tree::new(&src.connect_string(), "/api/overlap").unwrap().with_auth(owner_auth());
    for dst_root in ["/api/overlap", "/api/overlap/open/inside", "/api"] {
        let req = CopyRequest::new(src_tree.clone(), Tree::new(&alias, dst_root).unwrap());
        let f = copy::run(&req, &Arc::new(Progress::new())).await.expect_err("overlap");
        assert!(matches!(f.error, Error::Overlap { .. }), "{dst_root}: {:?}", f.error);
        assert_eq!(f.applied, 0);
    }
    assert!(c.check_stat("/api/overlap/open/inside").await.unwrap().is_none(), "nothing written");
    // Allowed explicitly, a dry run into the tree's own parent plans, and
    // still writes nothing.
    let mut req = CopyRequest::new(src_tree, Tree::new(&alias, "/api").unwrap());
    req.allow_overlap = true;
    req.options.mode = Mode::Update;
    req.options.dry_run = true;
    let summary = copy::run(&req, &Arc::new(Progress::new())).await.expect("allowed");
    assert!(summary.dry_run && summary.plan.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_copy_is_finished_by_a_second_call_with_its_credential() {
    let (src, dst) = tokio::task::spawn_blocking(start_pair).await.unwrap();
    let root = "/api/cancelled";
    let n = 6000;
    source_tree(&client(&src, Some(OWNER)).await, root, n).await;
    let src_tree = Tree::new(&src.connect_string(), root).unwrap().with_auth(owner_auth());
    let dst_tree = Tree::new(&dst.connect_string(), root).unwrap();
    let mut req = CopyRequest::new(src_tree, dst_tree);
    // Small transactions: many land before the walk ends.
    req.options.writer.limits.max_ops = 50;

    // Cancelled by its token once the first writes have landed.
    let token = zkrepl::CancellationToken::new();
    let progress = Arc::new(Progress::with_cancel(token.child_token()));
    let watcher = {
        let (progress, token) = (progress.clone(), token.clone());
        tokio::spawn(async move {
            let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
            // The first transaction (the root and its children first) has landed.
            while progress.written.load(Ordering::Relaxed) < 50 && tokio::time::Instant::now() < give_up {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            token.cancel();
        })
    };
    let failure = copy::run(&req, &progress).await.expect_err("cancelled");
    watcher.await.unwrap();
    assert!(failure.cancelled(), "{:?}", failure.error);
    assert!(failure.applied > 0 && failure.applied < 1 + 1 + 5 + 1 + n as u64, "{}", failure.applied);
    assert!(failure.temporary_acls >= 1, "the restrictive parent waits for its final ACL");

    // The restrictive node carries the grant to this copy's own identity,
    // never to world:anyone.
    let owner = client(&dst, Some(OWNER)).await;
    let (acl, _) = owner.get_acl(&format!("{root}/locked")).await.unwrap();
    let (scheme, id) = failure.credential.acl_id();
    assert!(
        acl.iter()
            .any(|a| a.auth_id().scheme() == scheme && a.auth_id().id() == id && a.permission() == zk::Permission::ALL),
        "{acl:?}"
    );
    assert_eq!(acl.len(), restrictive().len() + 1, "the real ACL and the grant, nothing for anyone else: {acl:?}");
    assert!(!format!("{:?}", failure.credential).contains(failure.credential.credential().split(':').nth(1).unwrap()));

    // Without that credential a later copy cannot finish the job: the node
    // grants nothing to a new identity.
    let mut fresh_identity = req.clone();
    fresh_identity.options.mode = Mode::Update;
    let refused = copy::run(&fresh_identity, &Arc::new(Progress::new())).await.expect_err("needs the credential");
    assert!(
        matches!(&refused.error, Error::NoAuth { side: Side::Destination, path, .. } if path.starts_with(&format!("{root}/locked"))),
        "{:?}",
        refused.error
    );

    // The second call: the same request, resumed with the credential.
    let resumed = req.resume(&failure);
    assert_eq!(resumed.options.mode, Mode::Update);
    let summary = copy::run(&resumed, &Arc::new(Progress::new())).await.expect("resumed copy");
    assert!(summary.created > 0 && summary.created < 1 + 1 + 5 + 1 + n as u64, "{summary:?}");
    let (acl, _) = owner.get_acl(&format!("{root}/locked")).await.unwrap();
    assert_eq!(acl, restrictive(), "the grant is gone");
    let report = verify_as_owner(&src, &dst, root).await;
    assert_eq!(report.compared, 1 + 1 + 5 + 1 + n as u64);
}
