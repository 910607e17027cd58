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

async fn session_through(proxy: &FaultProxy) -> Session {
    let mut o = ConnectOptions::new(Side::Destination, Hosts::parse(&proxy.connect_string()).unwrap());
    o.session_timeout = Duration::from_secs(20);
    Session::connect(Arc::new(o)).await.unwrap()
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
    let mut w = Writer::new(&session, WriterOptions::default());
    for k in 1..=5 {
        w.push(Op::Pad { parent: root.clone(), name: "pad".into(), target: k }).await.unwrap();
    }
    let (r, ()) = tokio::join!(w.flush(), lose_replies(&proxy));
    r.unwrap();
    let st = dst.check_stat(&root).await.unwrap().unwrap();
    assert_eq!(next_sequence(&st), 5, "exactly five creations, whatever the replies did");
    assert_eq!(st.num_children, 0, "nothing left behind");
    assert_eq!(w.counters().padded, 5);
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
    let mut w = Writer::new(&session, WriterOptions::default());
    for i in 0..3 {
        let path = format!("{root}/n{i}");
        w.push(Op::Create { path, data: b"d".to_vec(), acl: acl.clone(), kind: NodeKind::Persistent }).await.unwrap();
    }
    let (r, ()) = tokio::join!(w.flush(), lose_replies(&proxy));
    r.unwrap();
    assert!(w.counters().unverified >= 1, "the creates were found done, unreadable: {:?}", w.counters());
    let mut children = dst.list_children(&root).await.unwrap();
    children.sort();
    assert_eq!(children, vec!["n0", "n1", "n2"]);
    let owner = connect_auth(&p.dst.connect_string(), "other:pw").await;
    assert_eq!(owner.get_data(&format!("{root}/n1")).await.unwrap().0, b"d");
}
