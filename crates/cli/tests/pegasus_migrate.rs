//! `zkrepl pegasus migrate` and `cleanup-old` end to end, as an operator
//! runs them: simulated metas as separate processes (`pegasus-sim meta`),
//! stopped and started by shell hooks, over a ~100k-node Pegasus tree on
//! one local ZooKeeper server, moved to another.

mod common;

use std::path::Path;
use std::time::Duration;

use common::sim::{assert_only_hosts_changed, start_all, start_cmd, stop_cmd, write_configs};
use common::*;
use zkrepl_testkit::pegasus::MetaConfig;
use zkrepl_testkit::treegen::{self, GenOptions, Shape};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrates_a_100k_node_cluster_with_shell_hooks_then_cleans_up_the_old_tree() {
    let p = own_pair().await;
    let (old, new) = (p.src.connect_string(), p.dst.connect_string());
    let root = "/pegasus/big";
    // 10 apps of 9000 partitions, one duplication (9000 progress nodes),
    // backup and bulk-load nodes: 99022 nodes.
    let spec =
        GenOptions { shape: Shape::Pegasus, apps: 10, partitions: 9000, leader_lock: false, ..GenOptions::default() };
    let session = zkrepl_testkit::ceilings::session(&old).await.unwrap();
    let generated = treegen::generate(&session, root, &spec).await.unwrap();
    assert!(generated.nodes > 99_000, "{}", generated.nodes);
    drop(session);

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut template = MetaConfig::new(&old, root, &format!("{root}/lock/meta"));
    template.zookeeper_timeout_ms = 10_000;
    template.update_interval_ms = 100;
    let (servers, configs, originals) =
        write_configs(d, 2, &template, |i, c| format!("; meta {} of the big cluster\n{}", i + 1, c.to_ini()));
    // The leader first (it loads the tree), then the follower.
    let (_metas, pids, logs) = start_all(d, &configs, Duration::from_secs(60));

    // The migration's command line: to `to`, with `extra` options, the
    // hooks stopping and starting the two meta processes.
    let migrate = |to: &str, journal: &Path, extra: &[&str]| {
        let (stop_followers, stop_leader) = (stop_cmd(&[&pids[1]]), stop_cmd(&[&pids[0]]));
        let (start_leader, start_followers) =
            (start_cmd(&configs[0], &pids[0], &logs[0]), start_cmd(&configs[1], &pids[1], &logs[1]));
        let mut a: Vec<String> =
            ["pegasus", "migrate", "--meta", &servers.join(","), "--dst", to].iter().map(|s| s.to_string()).collect();
        for c in &configs {
            a.extend(["--config".to_string(), c.display().to_string()]);
        }
        let journal = journal.display().to_string();
        for (k, v) in [
            ("--journal", &journal),
            ("--stop-followers", &stop_followers),
            ("--stop-leader", &stop_leader),
            ("--start-leader", &start_leader),
            ("--start-followers", &start_followers),
            ("--wait", &"60s".to_string()),
        ] {
            a.extend([k.to_string(), v.clone()]);
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend(["--yes".to_string(), "--json".to_string()]);
        a
    };
    let journal = d.join("migrate.journal");
    let out = zkrepl_async(migrate(&new, &journal, &["--allow-drift"])).await;
    assert_exit(&out, 0);
    let report = json(&out);
    eprintln!("{}\n{report}", stderr(&out));
    let window = report["blind_window_seconds"].as_f64().expect("the blind window");
    assert!(window > 0.0, "{report}");
    let err = stderr(&out);
    for step in ["[1/8]", "[4/8]", "[8/8]", "running --start-leader"] {
        assert!(err.contains(step), "{step} missing from: {err}");
    }

    // Configs: every byte as before but hosts_list.
    assert_only_hosts_changed(&configs, &originals, &old, &new);
    // The leader serves on the new ensemble at steady, the follower follows.
    let lock = format!("{root}/lock/meta");
    let st =
        zkrepl_async(args(&["pegasus", "status", "--meta", &servers.join(","), "--lock-path", &lock, "--json"])).await;
    assert_exit(&st, 0);
    let s = json(&st);
    assert_eq!(s["leader"], servers[0].as_str(), "{s}");
    assert_eq!(s["zookeeper_hosts"], new.as_str());
    assert_eq!(s["stored_level"]["known"], "steady");
    assert_eq!(
        s["zookeeper"]["lock_nodes"]["known"].as_array().map(Vec::len),
        Some(2),
        "both metas on the new ensemble: {s}"
    );
    assert!(std::fs::read_to_string(&logs[0]).unwrap().contains("leader"));

    // Every partition is on the new ensemble, none recreated empty (a
    // recreated one has ballot 0; the generated ones start at 1).
    let nc = connect(&new).await;
    for app in 1..=10 {
        let kids = nc.list_children(&format!("{root}/apps/{app}")).await.unwrap();
        assert_eq!(kids.iter().filter(|k| k.parse::<u32>().is_ok()).count(), 9000, "app {app}");
    }
    for p in [0, 4500, 8999] {
        let (d, _) = nc.get_data(&format!("{root}/apps/7/{p}")).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&d).unwrap();
        assert!(v["ballot"].as_i64().unwrap() > 0, "{v}");
    }

    // The old tree is as the leader left it: its digest is the final one.
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&journal).unwrap()).unwrap();
    let dg = zkrepl_async(args(&["digest", "--zk", &old, "--root", root, "--json"])).await;
    assert_exit(&dg, 0);
    assert_eq!(json(&dg)["digest"], j["digests"]["final_source"], "the old tree untouched since the switch");

    // cleanup-old: checks pass (the new cluster has written since), then
    // the old tree goes; the new one stays.
    let out =
        zkrepl_async(args(&["pegasus", "cleanup-old", "--journal", journal.to_str().unwrap(), "--yes", "--json"]))
            .await;
    assert_exit(&out, 0);
    assert!(json(&out)["deleted"].as_u64().is_some_and(|n| n > 99_000), "{}\n{}", stdout(&out), stderr(&out));
    let oc = connect(&old).await;
    assert!(oc.check_stat(root).await.unwrap().is_none());
    assert!(nc.check_stat(&format!("{root}/apps/10/8999")).await.unwrap().is_some());

    // And back to the first server with --live: mirrored while the cluster
    // runs, blind only for the catch-ups, the stop and the proof.
    let journal = d.join("migrate-live.journal");
    let out = zkrepl_async(migrate(&old, &journal, &["--live"])).await;
    assert_exit(&out, 0);
    let report = json(&out);
    eprintln!("{}\n{report}", stderr(&out));
    let parts = report["parts"].as_object().expect("parts");
    assert!(parts.contains_key("catch-up") && parts.contains_key("final sync"), "{report}");
    assert!(!parts.contains_key("copy") && !parts.contains_key("verify"), "the copy ran before blind: {report}");
    let moments: Vec<&str> =
        report["timeline"].as_array().expect("timeline").iter().filter_map(|m| m[0].as_str()).collect();
    assert!(moments.iter().any(|m| m.starts_with("working time")), "{report}");
    let st =
        zkrepl_async(args(&["pegasus", "status", "--meta", &servers.join(","), "--lock-path", &lock, "--json"])).await;
    assert_exit(&st, 0);
    let s = json(&st);
    assert_eq!(s["zookeeper_hosts"], old.as_str(), "{s}");
    assert_eq!(s["stored_level"]["known"], "steady");
    let oc = connect(&old).await;
    for app in [1, 10] {
        let kids = oc.list_children(&format!("{root}/apps/{app}")).await.unwrap();
        assert_eq!(kids.iter().filter(|k| k.parse::<u32>().is_ok()).count(), 9000, "app {app}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_without_hooks_while_a_follower_runs_and_explains() {
    let p = pair();
    let root = unique_root("pegasus-refuse");
    let spec = zkrepl_testkit::pegasus::ClusterSpec::new(
        &p.src.connect_string(),
        &root,
        2,
        zkrepl_testkit::pegasus::Seed::simple(1, 2),
    );
    let c = zkrepl_testkit::pegasus::SimCluster::start(spec).await.unwrap();
    let metas: Vec<String> = c.metas.iter().map(|m| m.addr().to_string()).collect();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let out = zkrepl_async(args(&[
        "pegasus",
        "migrate",
        "--meta",
        &metas.join(","),
        "--dst",
        &p.dst.connect_string(),
        "--config",
        c.configs[0].to_str().unwrap(),
        "--config",
        c.configs[1].to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
        "--yes",
    ]))
    .await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("REFUSED: follower metas still answer"), "{err}");
    assert!(err.contains("REFUSED: blind does not stop duplication"), "{err}");
    assert!(!journal.exists(), "nothing written before the refusal");
    // --dry-run prints the plan and changes nothing.
    let out = zkrepl_async(args(&[
        "pegasus",
        "migrate",
        "--meta",
        &metas.join(","),
        "--dst",
        &p.dst.connect_string(),
        "--config",
        c.configs[0].to_str().unwrap(),
        "--stop-followers",
        "true",
        "--allow-drift",
        "--dry-run",
    ]))
    .await;
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("dry run: nothing changed"), "{}", stderr(&out));
    assert_eq!(c.metas[0].level().0, 400);
}
