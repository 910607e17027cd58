//! What the Pegasus tests share: two local ZooKeeper servers per test
//! binary (the old ensemble and the new one), each test under its own root.

use std::sync::OnceLock;

use zkrepl_testkit::local::{LocalServer, ServerOptions};
use zookeeper_client as zk;

static OLD: OnceLock<LocalServer> = OnceLock::new();
static NEW: OnceLock<LocalServer> = OnceLock::new();

/// The old and the new server's connect strings, started on first use.
pub async fn servers() -> (String, String) {
    tokio::task::spawn_blocking(|| {
        let start = || LocalServer::start(&ServerOptions::default()).expect("start ZooKeeper");
        (OLD.get_or_init(start).connect_string(), NEW.get_or_init(start).connect_string())
    })
    .await
    .unwrap()
}

pub async fn client(hosts: &str) -> zk::Client {
    zk::Client::connect(hosts).await.expect("connect")
}
