//! `zkrepl pegasus status` and `set-level` against a simulated Pegasus
//! cluster: meta servers that speak the real wire protocol over TCP and keep
//! their state in a real ZooKeeper (the test kit's `SimCluster`).

mod common;

use common::*;
use serde_json::Value;
use zkrepl_testkit::pegasus::{ClusterSpec, Level, Seed, SimCluster};

async fn cluster(root: &str, metas: usize, edit: impl FnOnce(&mut ClusterSpec)) -> SimCluster {
    let mut spec = ClusterSpec::new(&pair().src.connect_string(), root, metas, Seed::simple(2, 4));
    edit(&mut spec);
    SimCluster::start(spec).await.expect("start the simulated cluster")
}

fn addr(c: &SimCluster, i: usize) -> String {
    c.metas[i].addr().to_string()
}

async fn pegasus(args: &[&str]) -> std::process::Output {
    let mut a = vec!["pegasus".to_string()];
    a.extend(args.iter().map(|s| s.to_string()));
    zkrepl_async(a).await
}

fn role_of<'a>(status: &'a Value, meta: &str) -> &'a str {
    status["metas"].as_array().unwrap().iter().find(|m| m["meta"] == meta).map_or("absent", |m| {
        m["role"].as_str().or_else(|| m["role"].as_object().and_then(|o| o.keys().next()).map(String::as_str)).unwrap()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_two_meta_cluster_from_either_meta() {
    let root = unique_root("pegasus-status");
    let c = cluster(&root, 2, |_| {}).await;
    let (leader, follower) = (addr(&c, 0), addr(&c, 1));
    assert_eq!(c.leader(), Some(0));
    for metas in [leader.clone(), follower.clone(), format!("{follower},{leader}")] {
        let out = pegasus(&["status", "--meta", &metas, "--json"]).await;
        assert_exit(&out, 0);
        let s = json(&out);
        assert_eq!(s["leader"], leader.as_str(), "--meta {metas}: {s}");
        assert_eq!(s["zookeeper_root"], root.as_str());
        assert_eq!(s["zookeeper_hosts"], pair().src.connect_string().as_str());
        assert_eq!(s["stored_level"]["known"], "steady");
        assert_eq!(s["reported_level"], "steady");
        let apps = s["apps"]["known"].as_array().expect("apps known");
        assert_eq!(apps.len(), 2, "{s}");
        assert!(apps.iter().all(|a| a["partition_count"] == 4), "{s}");
        assert_eq!(s["nodes"]["known"]["alive"].as_array().unwrap().len(), 3);
        // Read from ZooKeeper itself: the apps node and both metas' lock nodes.
        assert_eq!(s["zookeeper"]["apps"]["known"], "unlock", "{}", s["zookeeper"]);
        let locks = s["zookeeper"]["lock_nodes"]["known"].as_array().expect("lock nodes");
        assert_eq!(locks.len(), 2, "{}", s["zookeeper"]);
        if metas.contains(&follower) {
            assert!(role_of(&s, &follower).starts_with("follower"), "{s}");
        }
        assert_eq!(role_of(&s, &leader), "leader", "{s}");
        // The seeded duplication shows as work in progress.
        assert!(s["in_progress"].to_string().contains("table_1"), "{}", s["in_progress"]);
    }
    let text = stdout(&pegasus(&["status", "--meta", &follower]).await);
    assert!(text.contains(&format!("{leader}          leader")) || text.contains("leader (named by"), "{text}");
    assert!(text.contains("steady") && text.contains(&root), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_level_changes_the_leader_and_checks_it_took() {
    let root = unique_root("pegasus-level");
    let c = cluster(&root, 2, |_| {}).await;
    let metas = format!("{},{}", addr(&c, 1), addr(&c, 0));
    let out = pegasus(&["set-level", "--meta", &metas, "blind"]).await;
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("steady -> blind"), "{}", stdout(&out));
    assert_eq!(c.metas[0].level(), Level::BLIND, "the leader holds the new level");
    let s = json(&pegasus(&["status", "--meta", &metas, "--json"]).await);
    assert_eq!((s["stored_level"]["known"].as_str(), s["reported_level"].as_str()), (Some("blind"), Some("blind")));
    let out = pegasus(&["set-level", "--meta", &metas, "steady", "--json"]).await;
    assert_exit(&out, 0);
    let j = json(&out);
    assert_eq!((j["old"].as_str(), j["new"].as_str()), (Some("blind"), Some("steady")), "{j}");
    assert_eq!(c.metas[0].level(), Level::STEADY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_level_is_refused_before_anything_is_sent() {
    let root = unique_root("pegasus-badlevel");
    let c = cluster(&root, 1, |_| {}).await;
    for bad in ["frozen", "fl_blind", "invalid", "300", ""] {
        let out = pegasus(&["set-level", "--meta", &addr(&c, 0), bad]).await;
        assert_exit(&out, 2);
        assert!(stderr(&out).contains("stopped, blind, freezed, steady, lively"), "{bad}: {}", stderr(&out));
    }
    assert_eq!(c.metas[0].level(), Level::STEADY, "the meta's level is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meta_that_is_down_is_reported_and_a_non_meta_port_is_named() {
    let root = unique_root("pegasus-down");
    let mut c = cluster(&root, 2, |_| {}).await;
    let (leader, follower) = (addr(&c, 0), addr(&c, 1));
    // A stopped follower, as during a migration: reported down, not an error.
    c.metas[1].stop().await;
    let out = pegasus(&["status", "--meta", &format!("{leader},{follower}"), "--json"]).await;
    assert_exit(&out, 0);
    let s = json(&out);
    assert_eq!(s["leader"], leader.as_str());
    assert!(role_of(&s, &follower).starts_with("down"), "{s}");

    // A ZooKeeper port is not a meta server: one line naming it.
    let zk_port = pair().src.connect_string();
    let out = pegasus(&["status", "--meta", &zk_port]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(&zk_port) && err.contains("not a Pegasus meta server"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Only metas that are down: an error, saying so.
    let out = pegasus(&["status", "--meta", &follower, "--timeout", "2s"]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains(&follower), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_followers_only_finds_the_leader_or_says_every_meta_follows() {
    let root = unique_root("pegasus-followers");
    let mut c = cluster(&root, 3, |_| {}).await;
    let (leader, f1, f2) = (addr(&c, 0), addr(&c, 1), addr(&c, 2));
    // The followers name the leader: status reaches it.
    let out = pegasus(&["status", "--meta", &format!("{f1},{f2}"), "--json"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["leader"], leader.as_str());
    // The leader crashes: its lock node stays until its session expires, so
    // the followers still follow it, and no given meta leads.
    c.metas[0].kill().await;
    let out = pegasus(&["status", "--meta", &format!("{f1},{f2}"), "--timeout", "2s"]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(&f1) && err.contains(&f2), "names both metas: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_an_older_meta_lacks_is_unknown_not_a_failure() {
    let root = unique_root("pegasus-older");
    let c = cluster(&root, 1, |s| {
        s.template.disabled_rpcs = vec!["RPC_CM_QUERY_BULK_LOAD_STATUS".into(), "RPC_CM_LIST_DUPLICATION".into()]
    })
    .await;
    let out = pegasus(&["status", "--meta", &addr(&c, 0), "--json"]).await;
    assert_exit(&out, 0);
    let s = json(&out);
    let unknown = s["unknown"].to_string();
    assert!(unknown.contains("bulk load"), "bulk load reported unknown: {unknown}");
    // Without the list of duplications, each app is asked on its own.
    assert!(!unknown.contains("duplication"), "{unknown}");
    assert!(s["in_progress"].to_string().contains("table_1: duplication"), "{}", s["in_progress"]);
    assert_eq!(s["stored_level"]["known"], "steady", "the rest is still read: {s}");
    let text = stdout(&pegasus(&["status", "--meta", &addr(&c, 0)]).await);
    assert!(text.contains("unknown"), "{text}");
}
