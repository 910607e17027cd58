//! The writer under lost replies: transactions that landed but whose answer
//! never came back are reconciled without being applied twice.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use zkrepl::error::Side;
use zkrepl::node::NodeKind;
use zkrepl::node::next_sequence;
use zkrepl::write::{Op, Writer, WriterOptions};
use zkrepl::zk::session::{ConnectOptions, Session};
use zkrepl::zk::target::Hosts;
use zkrepl_testkit::proxy::FaultProxy;
use zookeeper_client as zk;

async fn session_through(proxy: &FaultProxy) -> Arc<Session> {
    let mut o = ConnectOptions::new(Side::Destination, Hosts::parse(&proxy.connect_string()).unwrap());
    o.session_timeout = Duration::from_secs(20);
    Arc::new(Session::connect(Arc::new(o)).await.unwrap())
}

/// Holds every chunk 600 ms, then cuts the connections at 900 ms: the
/// requests reach the server (and are applied), their replies are lost.
async fn lose_replies(proxy: &FaultProxy) {
    tokio::time::sleep(Duration::from_millis(900)).await;
    proxy.drop_connections();
    proxy.set_delay(Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread")]
async fn pads_whose_reply_was_lost_are_not_applied_twice() {
    let p = pair();
    let dst = connect(&p.dst.connect_string()).await;
    let root = unique_root("wpad");
    create_tree(&dst, &root, &[]).await;
    let proxy = FaultProxy::to_port(p.dst.port).await;
    let session = session_through(&proxy).await;
    proxy.set_delay(Duration::from_millis(600));
    let mut w = Writer::new(session.clone(), WriterOptions::default());
    for k in 1..=5 {
        w.push(Op::Pad { parent: root.clone(), name: "pad".into(), target: k }).await.unwrap();
    }
    let (r, ()) = tokio::join!(w.flush(), lose_replies(&proxy));
    r.unwrap();
    let st = dst.check_stat(&root).await.unwrap().unwrap();
    assert_eq!(next_sequence(&st), 5, "exactly five creations, whatever the replies did");
    assert_eq!(st.num_children, 0, "nothing left behind");
    assert_eq!(w.counters().padded, 5);
    assert_eq!(w.applied(), 5, "each pad counted once as applied");
    assert!(w.counters().reconciled >= 1, "the reply was lost and the pads reconciled: {:?}", w.counters());
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_that_landed_unseen_and_cannot_be_read_back_are_left_alone() {
    let p = pair();
    let dst = connect(&p.dst.connect_string()).await;
    let root = unique_root("wunread");
    create_tree(&dst, &root, &[]).await;
    let proxy = FaultProxy::to_port(p.dst.port).await;
    let session = session_through(&proxy).await;
    proxy.set_delay(Duration::from_millis(600));
    // Nodes only another identity may read.
    let other = zkrepl::zk::target::digest_id("other:pw");
    let acl = vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", &other))];
    let mut w = Writer::new(session.clone(), WriterOptions::default());
    for i in 0..3 {
        let path = format!("{root}/n{i}");
        w.push(Op::Create { path, data: b"d".to_vec(), acl: acl.clone(), kind: NodeKind::Persistent }).await.unwrap();
    }
    let (r, ()) = tokio::join!(w.flush(), lose_replies(&proxy));
    r.unwrap();
    assert!(w.counters().unverified >= 1, "the creates were found done, unreadable: {:?}", w.counters());
    assert_eq!(w.applied(), 3);
    let mut children = dst.list_children(&root).await.unwrap();
    children.sort();
    assert_eq!(children, vec!["n0", "n1", "n2"]);
    let owner = connect_auth(&p.dst.connect_string(), "other:pw").await;
    assert_eq!(owner.get_data(&format!("{root}/n1")).await.unwrap().0, b"d");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_moved_into_a_task_comes_back_and_writes_again_on_the_same_session() {
    let p = pair();
    let dst = connect(&p.dst.connect_string()).await;
    let root = unique_root("wtask");
    create_tree(&dst, &root, &[]).await;
    let o = ConnectOptions::new(Side::Destination, Hosts::parse(&p.dst.connect_string()).unwrap());
    let session = Arc::new(Session::connect(Arc::new(o)).await.unwrap());
    let session_id = session.client().1.session_id();
    let progress = Arc::new(zkrepl::progress::Progress::new());
    let opts = WriterOptions { window: 4, ..WriterOptions::default() };
    let w = Writer::new(session.clone(), opts).with_progress(progress.clone());
    let open = zkrepl::node::open_acl();
    let node = |i: usize| format!("{root}/n{i}");

    // First run: ten nodes, each with a child, in a task of its own.
    let first: Vec<Op> = (0..10)
        .flat_map(|i| {
            let create = |path: String, data: &[u8]| Op::Create {
                path,
                data: data.to_vec(),
                acl: open.clone(),
                kind: NodeKind::Persistent,
            };
            [create(node(i), b"first"), create(format!("{}/c", node(i)), b"child")]
        })
        .collect();
    let task = tokio::spawn(async move {
        let mut w = w;
        for op in first {
            w.push(op).await?;
        }
        w.flush().await?;
        Ok::<_, zkrepl::Error>(w)
    });
    let mut w = task.await.unwrap().unwrap();
    assert_eq!(w.applied(), 20, "every create landed before flush returned");
    assert_eq!(w.counters().created, 20);
    assert_eq!(progress.written.load(std::sync::atomic::Ordering::Relaxed), 20);
    let mut children = dst.list_children(&root).await.unwrap();
    children.sort();
    assert_eq!(children, (0..10).map(|i| format!("n{i}")).collect::<Vec<_>>());

    // Second run, on the same writer: new data on n0..n4, n5..n9 deleted
    // (children first).
    let mut second = Vec::new();
    for i in 0..5 {
        second.push(Op::SetData { path: node(i), data: format!("second {i}").into_bytes() });
    }
    for i in 5..10 {
        second.push(Op::Delete { path: format!("{}/c", node(i)) });
        second.push(Op::Delete { path: node(i) });
    }
    let task = tokio::spawn(async move {
        for op in second {
            w.push(op).await?;
        }
        w.flush().await?;
        Ok::<_, zkrepl::Error>(w)
    });
    let w = task.await.unwrap().unwrap();

    assert_eq!(w.applied(), 35, "20 creates, 5 setData, 10 deletes");
    let c = w.counters();
    assert_eq!((c.created, c.data_set, c.deleted, c.existed, c.reconciled), (20, 5, 10, 0, 0), "{c:?}");
    assert_eq!(progress.written.load(std::sync::atomic::Ordering::Relaxed), 35);
    assert!(Arc::ptr_eq(w.session(), &session));
    assert_eq!(session.renewals(), 0);
    assert_eq!(session.client().1.session_id(), session_id, "one session throughout");

    let tree = dump(&dst, &root).await;
    let mut expect: Vec<(String, Vec<u8>)> = vec![(String::new(), Vec::new())];
    for i in 0..5 {
        expect.push((format!("/n{i}"), format!("second {i}").into_bytes()));
        expect.push((format!("/n{i}/c"), b"child".to_vec()));
    }
    expect.sort();
    let got: Vec<(String, Vec<u8>)> = tree.into_iter().map(|(rel, data, _)| (rel, data)).collect();
    assert_eq!(got, expect);
}
