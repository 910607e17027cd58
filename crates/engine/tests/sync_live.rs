//! A sync driven through its control: a catch-up returns only once every
//! change committed before it is on the destination (no polling), parents'
//! sequence counters follow between reconciles, ACLs are read again only
//! where the stat shows them set since, and the end proves the trees equal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use zkrepl::sync::{self, SyncObserver, SyncRequest, SyncStatus};
use zkrepl::{Progress, Tree};
use zkrepl_testkit::local::{LocalServer, ServerOptions};
use zkrepl_testkit::proxy::FaultProxy;
use zookeeper_client as zk;

async fn client(server: &LocalServer) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&server.connect_string())
        .await
        .expect("connect")
}

#[derive(Default)]
struct Notes(Mutex<Vec<String>>);

impl SyncObserver for Notes {
    fn status(&self, _: &SyncStatus) {}
    fn note(&self, msg: &str) {
        self.0.lock().unwrap().push(msg.to_string());
    }
}

fn next_sequence(stat: &zk::Stat) -> i64 {
    zkrepl::node::next_sequence(stat)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_carries_every_change_made_before_it_and_the_end_proves_equality() {
    let (a, b) = (
        LocalServer::start(&ServerOptions::default()).unwrap(),
        LocalServer::start(&ServerOptions::default()).unwrap(),
    );
    let (s, d) = (client(&a).await, client(&b).await);
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    s.create("/live", b"r", &open).await.unwrap();
    s.create("/live/lock", b"", &open).await.unwrap();
    for i in 0..200 {
        s.create(&format!("/live/n{i}"), b"0", &open).await.unwrap();
    }

    // The sync reads the source through a proxy that can delay what it
    // forwards: its events then come well after the changes are made.
    let proxy = FaultProxy::to_port(a.port).await;
    let mut req = SyncRequest::new(
        Tree::new(&proxy.connect_string(), "/live").unwrap(),
        Tree::new(&b.connect_string(), "/live").unwrap(),
    );
    // No reconcile while following: what is checked below is the follow.
    req.reconcile_every = None;
    let (control, commands) = sync::control();
    let notes = Arc::new(Notes::default());
    let progress = Arc::new(Progress::new());
    let run = {
        let (req, notes, progress) = (req.clone(), notes.clone(), progress.clone());
        tokio::spawn(async move { sync::run_controlled(&req, &progress, &*notes, commands).await })
    };
    let first = control.catch_up().await.expect("the sync runs");
    assert!(first.seconds < 60.0);
    assert_eq!(d.get_data("/live/n199").await.unwrap().0, b"0", "the full copy is done at the first catch-up");
    proxy.set_delay(Duration::from_millis(150));

    for round in 1..=3u32 {
        // A burst of changes, then at once a catch-up: each value must be
        // the last one written, read as soon as the catch-up returns.
        for k in 0..50u32 {
            s.set_data(&format!("/live/n{}", k % 10), format!("{round}.{k}").as_bytes(), None).await.unwrap();
        }
        s.create(&format!("/live/new{round}"), b"n", &open).await.unwrap();
        s.delete(&format!("/live/n{}", 100 + round), None).await.unwrap();
        // Ephemeral sequential children (never copied) move the parent's
        // counter; so do children created and deleted before sync reads them.
        let seq = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
        for _ in 0..3 {
            s.create("/live/lock/LOCKNODE", b"", &seq).await.unwrap();
        }
        s.create("/live/lock/tmp", b"", &open).await.unwrap();
        s.delete("/live/lock/tmp", None).await.unwrap();
        let caught = control.catch_up().await.expect("the sync runs");
        for k in 40..50u32 {
            let want = format!("{round}.{k}");
            assert_eq!(d.get_data(&format!("/live/n{}", k % 10)).await.unwrap().0, want.as_bytes(), "round {round}");
        }
        assert!(d.check_stat(&format!("/live/new{round}")).await.unwrap().is_some(), "round {round}: created");
        assert!(d.check_stat(&format!("/live/n{}", 100 + round)).await.unwrap().is_none(), "round {round}: deleted");
        let (src_lock, dst_lock) =
            (s.check_stat("/live/lock").await.unwrap().unwrap(), d.check_stat("/live/lock").await.unwrap().unwrap());
        assert_eq!(next_sequence(&dst_lock), next_sequence(&src_lock), "round {round}: the lock's counter follows");
        assert_eq!(dst_lock.num_children, 0, "no ephemeral copied");
        // The root's counter moves with the created and deleted children:
        // equal, neither behind nor ahead.
        let (src_root, dst_root) =
            (s.check_stat("/live").await.unwrap().unwrap(), d.check_stat("/live").await.unwrap().unwrap());
        assert_eq!(next_sequence(&dst_root), next_sequence(&src_root), "round {round}: the root's counter");
        assert!(caught.applied > 0, "round {round}: {caught:?}");
    }

    // An ACL set while following fires no event: the end's verify sees the
    // stat's ACL version moved, reads it again, and the reconcile copies it.
    proxy.set_delay(Duration::ZERO);
    let read_only = vec![zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())];
    s.set_acl("/live/n50", &read_only, None).await.unwrap();
    control.finish();
    let report = run.await.unwrap().expect("sync");
    assert!(report.settled, "{:?}", notes.0.lock().unwrap());
    let v = report.verify.as_ref().expect("a verify");
    assert!(v.equal() && v.strict_counters, "{v:?}");
    assert_eq!(d.get_acl("/live/n50").await.unwrap().0, read_only);
    assert_eq!(report.status.reconciles, 1, "one reconcile, for the ACL: {:?}", notes.0.lock().unwrap());
    // Every pass after the first copy took ACLs from the memo but for the
    // nodes created or changed since.
    assert!(report.status.acls_remembered > 400, "{:?}", report.status);
    assert!(report.status.acls_read < report.status.acls_remembered, "{:?}", report.status);
}

#[derive(Default)]
struct Phases(Mutex<Vec<String>>);

impl SyncObserver for Phases {
    fn status(&self, s: &SyncStatus) {
        self.0.lock().unwrap().push(s.phase.to_string());
    }
    fn note(&self, _: &str) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_keeps_coming_during_a_long_copy() {
    let (a, b) = (
        LocalServer::start(&ServerOptions::default()).unwrap(),
        LocalServer::start(&ServerOptions::default()).unwrap(),
    );
    let s = client(&a).await;
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    s.create("/slow", b"r", &open).await.unwrap();
    for i in 0..5 {
        s.create(&format!("/slow/a{i}"), b"x", &open).await.unwrap();
        for j in 0..5 {
            s.create(&format!("/slow/a{i}/b{j}"), b"y", &open).await.unwrap();
        }
    }
    // Every round trip to the source takes 0.2 s: the copy takes seconds.
    let proxy = FaultProxy::to_port(a.port).await;
    proxy.set_delay(Duration::from_millis(100));
    let mut req = SyncRequest::new(
        Tree::new(&proxy.connect_string(), "/slow").unwrap(),
        Tree::new(&b.connect_string(), "/slow").unwrap(),
    );
    req.until_idle = Some(Duration::from_millis(200));
    let phases = Phases::default();
    let report = sync::run(&req, &Arc::new(Progress::new()), &phases).await.expect("sync");
    assert!(report.settled);
    let seen = phases.0.lock().unwrap().clone();
    let copying = seen.iter().filter(|p| *p == "copying").count();
    assert!(copying >= 2, "a status every second while copying: {seen:?}");
}
