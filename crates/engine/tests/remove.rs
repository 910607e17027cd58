//! Removing a tree through the entry point: children before parents, in
//! batches, nothing outside the root touched, and refusals (an ephemeral,
//! a limit, the server's root) before anything is deleted.

use std::sync::Arc;
use std::time::Duration;

use zkrepl::remove::{self, RemoveRequest};
use zkrepl::{Error, Progress, Tree};
use zkrepl_testkit::local::{LocalServer, ServerOptions};
use zookeeper_client as zk;

async fn client(server: &LocalServer) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&server.connect_string())
        .await
        .expect("connect")
}

/// `root` with `fanout` children of `fanout` children each, and a sibling
/// `root-kept` (a prefix of the name, not beneath it) that must survive.
async fn tree(c: &zk::Client, root: &str, fanout: usize) {
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    c.create(root, b"r", &open).await.unwrap();
    c.create(&format!("{root}-kept"), b"k", &open).await.unwrap();
    for i in 0..fanout {
        let a = format!("{root}/a{i}");
        c.create(&a, b"x", &open).await.unwrap();
        for j in 0..fanout {
            c.create(&format!("{a}/b{j}"), b"y", &open).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removes_the_tree_children_first_and_nothing_else() {
    let server = LocalServer::start(&ServerOptions::default()).expect("server");
    let c = client(&server).await;
    tree(&c, "/old", 40).await;
    let req = RemoveRequest::new(Tree::new(&server.connect_string(), "/old").unwrap());

    let mut dry = req.clone();
    dry.dry_run = true;
    let r = remove::run(&dry, &Arc::new(Progress::new())).await.expect("dry run");
    assert_eq!((r.nodes, r.deleted), (1 + 40 + 1600, 0));
    assert!(c.check_stat("/old/a0/b0").await.unwrap().is_some(), "a dry run deletes nothing");

    let mut limited = req.clone();
    limited.max_delete = Some(100);
    match remove::run(&limited, &Arc::new(Progress::new())).await {
        Err(Error::DeleteLimit { deletes: 1641, limit: 100, .. }) => {}
        other => panic!("expected the delete limit, got {other:?}"),
    }
    assert!(c.check_stat("/old/a0/b0").await.unwrap().is_some(), "a refusal deletes nothing");

    let r = remove::run(&req, &Arc::new(Progress::new())).await.expect("remove");
    assert_eq!(r.deleted, 1641);
    assert!(r.transactions < 100, "batched: {} transactions for 1641 deletes", r.transactions);
    assert!(c.check_stat("/old").await.unwrap().is_none());
    assert_eq!(c.get_data("/old-kept").await.unwrap().0, b"k");
    assert!(c.check_stat("/zookeeper").await.unwrap().is_some());

    // Run again on what is gone: the root is missing, said so.
    assert!(matches!(remove::run(&req, &Arc::new(Progress::new())).await, Err(Error::NoRoot { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_the_root_when_asked_and_refuses_ephemerals_and_slash() {
    let server = LocalServer::start(&ServerOptions::default()).expect("server");
    let c = client(&server).await;
    tree(&c, "/t", 3).await;
    let mut req = RemoveRequest::new(Tree::new(&server.connect_string(), "/t").unwrap());
    req.include_root = false;

    let holder = client(&server).await;
    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    holder.create("/t/a1/lease", b"", &eph).await.unwrap();
    let e = remove::run(&req, &Arc::new(Progress::new())).await.expect_err("an ephemeral stops it");
    assert!(e.to_string().contains("/a1/lease") && e.to_string().contains("ephemeral"), "{e}");
    assert!(c.check_stat("/t/a0/b0").await.unwrap().is_some(), "refused before deleting anything");
    drop(holder);
    // The holder's session ends when its client drops: wait for the lease to go.
    for _ in 0..100 {
        if c.check_stat("/t/a1/lease").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let r = remove::run(&req, &Arc::new(Progress::new())).await.expect("remove beneath the root");
    assert_eq!(r.deleted, 3 + 9);
    assert_eq!(c.get_data("/t").await.unwrap().0, b"r", "the root stays");
    assert!(c.list_children("/t").await.unwrap().is_empty());

    let slash = RemoveRequest::new(Tree::new(&server.connect_string(), "/").unwrap());
    assert!(matches!(remove::run(&slash, &Arc::new(Progress::new())).await, Err(Error::Usage(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_cut_short_converges_when_run_again() {
    let server = LocalServer::start(&ServerOptions::default()).expect("server");
    let c = client(&server).await;
    tree(&c, "/cut", 60).await;
    let mut req = RemoveRequest::new(Tree::new(&server.connect_string(), "/cut").unwrap());
    // Small transactions, one at a time: the cut lands mid-way.
    req.writer.limits.max_ops = 20;
    req.writer.window = 1;
    let progress = Arc::new(Progress::new());
    let p = progress.clone();
    let watcher = tokio::spawn(async move {
        for _ in 0..2000 {
            if p.written.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                p.cancel();
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let first = remove::run(&req, &progress).await;
    watcher.await.unwrap();
    assert!(matches!(first, Err(Error::Interrupted)), "cut short: {first:?}");
    let left = c.list_children("/cut").await.unwrap().len();
    assert!(c.check_stat("/cut").await.unwrap().is_some() && left > 0, "part of the tree is left");
    let r = remove::run(&req, &Arc::new(Progress::new())).await.expect("run again");
    assert!(r.deleted > 0 && r.deleted < 1 + 60 + 3600, "{} deleted the second time", r.deleted);
    assert!(c.check_stat("/cut").await.unwrap().is_none());
    assert_eq!(c.get_data("/cut-kept").await.unwrap().0, b"k");
}
