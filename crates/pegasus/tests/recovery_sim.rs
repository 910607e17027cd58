//! `MetaClient::start_recovery` against simulated metas over two real
//! ZooKeeper servers: a cluster seeded on the old one, a meta with
//! `[meta_server] recover_from_replica_server = true` on the new, empty one,
//! rebuilding every app and partition from the replica servers' view.

use std::time::{Duration, Instant};

use zkrepl_pegasus::messages::{NS_ALIVE, NS_UNALIVE};
use zkrepl_pegasus::{Error, MetaClient, RecoveryRequest};
use zkrepl_testkit::pegasus::{ClusterSpec, Level, MetaConfig, Seed, SimCluster, SimError, SimMeta};
use zookeeper_client as zk;

mod common;
use common::{client, servers};

/// One meta on the old server over `seed`, its partitions updated every 100 ms.
async fn cluster(old: &str, root: &str, seed: Seed) -> SimCluster {
    let mut spec = ClusterSpec::new(old, root, 1, seed);
    spec.template.update_interval_ms = 100;
    SimCluster::start(spec).await.expect("start the cluster")
}

/// The config of `cl`'s meta, moved to `new` with the recovery flag, held
/// at blind so it writes nothing after the recovery.
fn recovery_config(cl: &SimCluster, new: &str) -> MetaConfig {
    let mut cfg = cl.metas[0].config().clone();
    cfg.zookeeper_hosts = new.to_string();
    cfg.port = 0;
    cfg.recover_from_replica_server = true;
    cfg.level_on_start = Level::BLIND;
    cfg
}

fn meta_client(m: &SimMeta) -> MetaClient {
    MetaClient::new(&m.addr().to_string(), Duration::from_secs(5)).unwrap()
}

/// Every node of `apps`, `apps/<id>` and `apps/<id>/<pidx>` under `root`,
/// with its data, in order.
async fn apps_tree(c: &zk::Client, root: &str) -> Vec<(String, Vec<u8>)> {
    let apps = format!("{root}/apps");
    let mut out = vec![(apps.clone(), c.get_data(&apps).await.map(|(d, _)| d).unwrap_or_default())];
    let mut ids = c.list_children(&apps).await.unwrap_or_default();
    ids.sort_by_key(|i| i.parse::<i64>().unwrap_or(i64::MAX));
    for id in ids {
        let app = format!("{apps}/{id}");
        out.push((app.clone(), c.get_data(&app).await.unwrap().0));
        let mut parts: Vec<u32> = c.list_children(&app).await.unwrap().iter().filter_map(|p| p.parse().ok()).collect();
        parts.sort();
        for p in parts {
            let path = format!("{app}/{p}");
            out.push((path.clone(), c.get_data(&path).await.unwrap().0));
        }
    }
    out
}

fn ballot_sum(tree: &[(String, Vec<u8>)]) -> i64 {
    (tree.iter().filter(|(p, _)| p.matches('/').count() == 5))
        .map(|(_, d)| serde_json::from_slice::<serde_json::Value>(d).unwrap()["ballot"].as_i64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_rebuilds_every_app_and_partition_the_replicas_hold() {
    let (old, new) = servers().await;
    let root = "/pegasus/recover";
    let mut cl = cluster(&old, root, Seed::simple(2, 4)).await;
    let (oc, nc) = (client(&old).await, client(&new).await);
    // The leader moves partitions: the replicas' view follows it.
    let seeded = ballot_sum(&apps_tree(&oc, root).await);
    let start = Instant::now();
    while ballot_sum(&apps_tree(&oc, root).await) < seeded + 3 {
        assert!(start.elapsed() < Duration::from_secs(10), "the leader updates partitions");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cl.metas[0].stop().await;
    let want = apps_tree(&oc, root).await;
    assert_eq!(want.len(), 1 + 2 + 8);
    assert!(ballot_sum(&want) > seeded);

    let m = SimMeta::start_with(recovery_config(&cl, &new), cl.replicas.clone()).await.unwrap();
    assert!(m.is_leader() && m.is_recovering());
    assert!(nc.list_children(&format!("{root}/apps")).await.is_err(), "nothing loaded, nothing created");
    let mc = meta_client(&m);
    let meta = m.addr().to_string();
    let nodes = mc.list_nodes(&meta).await.unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n.status == NS_ALIVE && n.hp_node.is_some()), "{nodes:?}");
    let e = mc.list_apps(&meta).await.unwrap_err();
    assert!(matches!(&e, Error::Handler { code, .. } if code == "ERR_UNDER_RECOVERY"), "{e}");
    assert_eq!(mc.find_leader().await.unwrap().meta, meta, "cluster_info is served");

    let reply = mc.start_recovery(&meta, &RecoveryRequest::alive(&nodes)).await.unwrap();
    assert_eq!(reply.err, "ERR_OK", "{}", reply.hint);
    assert!(reply.hint.contains("recovered 2 apps and 8 partitions from 3 replica servers"), "{}", reply.hint);
    assert!(!m.is_recovering());
    let got = apps_tree(&nc, root).await;
    assert_eq!(got[0].1, b"unlock");
    assert_eq!(got, want, "every app and partition as the old ZooKeeper holds it");
    let apps = mc.list_apps(&meta).await.unwrap();
    let names: Vec<(&str, i32, i32)> =
        apps.iter().map(|a| (a.app_name.as_str(), a.app_id, a.partition_count)).collect();
    assert_eq!(names, [("table_1", 1, 4), ("table_2", 2, 4)]);

    let again = mc.start_recovery(&meta, &RecoveryRequest::alive(&nodes)).await.unwrap();
    assert_eq!(again.err, "ERR_SERVICE_ALREADY_RUNNING");
    assert_eq!(apps_tree(&nc, root).await, want, "and nothing rewritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meta_started_normally_is_already_running_and_a_follower_forwards() {
    let (old, _) = servers().await;
    let mut spec = ClusterSpec::new(&old, "/pegasus/running", 2, Seed::simple(1, 2));
    spec.template.level_on_start = Level::BLIND;
    let cl = SimCluster::start(spec).await.unwrap();
    let (leader, follower) = (cl.metas[0].addr().to_string(), cl.metas[1].addr().to_string());
    let mc = MetaClient::new(&format!("{leader},{follower}"), Duration::from_secs(5)).unwrap();
    let req = RecoveryRequest::alive(&mc.list_nodes(&leader).await.unwrap());
    let r = mc.start_recovery(&leader, &req).await.unwrap();
    assert_eq!(r.err, "ERR_SERVICE_ALREADY_RUNNING", "{}", r.hint);
    let e = mc.start_recovery(&follower, &req).await.unwrap_err();
    assert!(matches!(&e, Error::Handler { code, .. } if code == "ERR_FORWARD_TO_OTHERS"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recovery_flag_over_a_zookeeper_holding_apps_refuses_to_start() {
    let (old, _) = servers().await;
    let root = "/pegasus/holding";
    let mut seed = Seed::simple(2, 2);
    seed.apps[0].duplications.clear();
    zkrepl_testkit::pegasus::seed(&old, root, &seed).await.unwrap();
    let mut cfg = MetaConfig::new(&old, root, &format!("{root}/lock"));
    cfg.recover_from_replica_server = true;
    let e = SimMeta::start(cfg.clone()).await.err().expect("refused");
    assert!(matches!(e, SimError::AppsExist { count: 2, .. }), "{e}");
    assert!(e.to_string().contains("recover_from_replica_server = true"), "{e}");
    let c = client(&old).await;
    assert!(c.list_children(&format!("{root}/lock/dsn.meta.server.leader")).await.unwrap().is_empty());
    // The same ZooKeeper without its apps is accepted.
    for id in ["1", "2"] {
        for p in ["0", "1"] {
            c.delete(&format!("{root}/apps/{id}/{p}"), None).await.unwrap();
        }
        c.delete(&format!("{root}/apps/{id}"), None).await.unwrap();
    }
    let m = SimMeta::start(cfg).await.unwrap();
    assert!(m.is_recovering());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_list_without_every_holder_of_a_partition_is_refused_until_skip_lost_partitions() {
    let (old, new) = servers().await;
    let root = "/pegasus/lost";
    let mut seed = Seed::simple(2, 6);
    // Six replica servers, each partition on three of them.
    seed.replica_nodes = (1..=6).map(|i| format!("127.0.0.1:{}", 34800 + i)).collect();
    let mut cl = cluster(&old, root, seed).await;
    cl.metas[0].stop().await;
    let want = apps_tree(&client(&old).await, root).await;
    let nc = client(&new).await;
    let m = SimMeta::start_with(recovery_config(&cl, &new), cl.replicas.clone()).await.unwrap();
    let (mc, meta) = (meta_client(&m), m.addr().to_string());
    let nodes = mc.list_nodes(&meta).await.unwrap();
    assert_eq!(nodes.len(), 6);

    // Without the first three nodes, some partitions have no replica left.
    let mut req = RecoveryRequest::alive(&nodes);
    req.nodes.drain(..3);
    let r = mc.start_recovery(&meta, &req).await.unwrap();
    assert_eq!(r.err, "ERR_TRY_AGAIN", "{}", r.hint);
    assert!(r.hint.contains("ERROR: partition 1.0 has no replica"), "{}", r.hint);
    assert!(r.hint.contains("skip_lost_partitions"), "{}", r.hint);
    assert!(m.is_recovering(), "still waiting");
    assert!(nc.list_children(&format!("{root}/apps")).await.is_err(), "nothing written");

    // Without one node, every partition keeps a replica.
    let mut req = RecoveryRequest::alive(&nodes);
    req.nodes.remove(0);
    let r = mc.start_recovery(&meta, &req).await.unwrap();
    assert_eq!(r.err, "ERR_OK", "{}", r.hint);
    assert!(r.hint.contains("WARNING: partition 1.0: 2 of its 3 replicas"), "{}", r.hint);
    assert_eq!(apps_tree(&nc, root).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unalive_node_is_refused_unless_skip_bad_nodes() {
    let (old, new) = servers().await;
    let root = "/pegasus/unalive";
    let mut cl = cluster(&old, root, Seed::simple(1, 3)).await;
    cl.metas[0].stop().await;
    let mut cfg = recovery_config(&cl, &new);
    cfg.unalive_nodes = vec![cfg.replica_nodes[2].clone()];
    let m = SimMeta::start_with(cfg, cl.replicas.clone()).await.unwrap();
    let (mc, meta) = (meta_client(&m), m.addr().to_string());
    let nodes = mc.list_nodes(&meta).await.unwrap();
    let status: Vec<i32> = nodes.iter().map(|n| n.status).collect();
    assert_eq!(status, [NS_ALIVE, NS_ALIVE, NS_UNALIVE], "list_nodes while recovering");
    let mut req = RecoveryRequest::alive(&nodes);
    req.nodes = nodes.clone();
    let r = mc.start_recovery(&meta, &req).await.unwrap();
    assert_eq!(r.err, "ERR_TRY_AGAIN", "{}", r.hint);
    assert!(r.hint.contains("127.0.0.1:34803: it does not answer"), "{}", r.hint);
    req.skip_bad_nodes = true;
    let r = mc.start_recovery(&meta, &req).await.unwrap();
    assert_eq!(r.err, "ERR_OK", "{}", r.hint);
    assert_eq!(apps_tree(&client(&new).await, root).await, apps_tree(&client(&old).await, root).await);
}
