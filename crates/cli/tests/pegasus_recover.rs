//! `zkrepl pegasus recover` end to end, as an operator runs it: simulated
//! metas as separate processes (`pegasus-sim meta`) sharing the replica
//! servers' view in a file, stopped and started by shell hooks; the
//! cluster's metadata rebuilt on a second local ZooKeeper server.

mod common;

use std::time::Duration;

use common::sim::{assert_only_hosts_changed, start_all, start_cmd, stop_cmd, write_configs};
use common::*;
use zkrepl_testkit::pegasus::{MetaConfig, Replicas, Seed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_a_cluster_onto_a_new_ensemble_with_shell_hooks() {
    let p = pair();
    let (old, new) = (p.src.connect_string(), p.dst.connect_string());
    let root = unique_root("pegasus-recover");
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let mut seed = Seed::simple(3, 8);
    for a in &mut seed.apps {
        a.duplications.clear();
    }
    zkrepl_testkit::pegasus::seed(&old, &root, &seed).await.unwrap();
    let state = d.join("replicas.json");
    Replicas::write_seed(&state, &seed).unwrap();

    let mut template = MetaConfig::new(&old, &root, &format!("{root}/lock"));
    template.zookeeper_timeout_ms = 4000;
    template.update_interval_ms = 100;
    template.replica_nodes = seed.replica_nodes.clone();
    template.replica_state = Some(state.clone());
    let (servers, configs, originals) = write_configs(d, 2, &template, |i, c| {
        format!("; meta {}\n{}", i + 1, c.to_ini())
            .replace("[replication]\n", "[replication]\nconfig_sync_interval_ms = 500\n")
    });
    let (_metas, pids, logs) = start_all(d, &configs, Duration::from_secs(30));

    let journal = d.join("recover.journal");
    let mut a: Vec<String> =
        ["pegasus", "recover", "--meta", &servers.join(","), "--dst", &new].iter().map(|s| s.to_string()).collect();
    for c in &configs {
        a.extend(["--config".to_string(), c.display().to_string()]);
    }
    let (stop, start_one, start_rest) = (
        stop_cmd(&[&pids[0], &pids[1]]),
        start_cmd(&configs[0], &pids[0], &logs[0]),
        start_cmd(&configs[1], &pids[1], &logs[1]),
    );
    for (k, v) in [
        ("--journal", journal.display().to_string()),
        ("--stop-metas", stop),
        ("--start-meta", start_one),
        ("--start-metas", start_rest),
        ("--wait", "60s".to_string()),
    ] {
        a.extend([k.to_string(), v]);
    }

    // A dry run: the plan and the lists, nothing changed.
    let mut dry = a.clone();
    dry.push("--dry-run".to_string());
    let out = zkrepl_async(dry).await;
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("table_3") && err.contains("ALIVE") && err.contains("9. restart every meta"), "{err}");
    assert!(!journal.exists());
    for (c, o) in configs.iter().zip(&originals) {
        assert_eq!(&std::fs::read_to_string(c).unwrap(), o);
    }

    a.extend(["--yes".to_string(), "--json".to_string()]);
    let out = zkrepl_async(a).await;
    let err = stderr(&out);
    assert_exit(&out, 0);
    let report = json(&out);
    eprintln!("{err}\n{report}");
    assert_eq!((report["apps"].as_u64(), report["partitions"].as_i64()), (Some(3), Some(24)), "{report}");
    assert_eq!(report["differences"].as_array().map(Vec::len), Some(0), "{report}");
    for line in ["[1/9]", "[6/9]", "[9/9]", "running --start-meta", "meta: recovered 3 apps and 24 partitions"] {
        assert!(err.contains(line), "{line} missing from: {err}");
    }
    // Configs: every byte as before but hosts_list.
    assert_only_hosts_changed(&configs, &originals, &old, &new);
    // Both metas on the new ensemble; every partition there.
    let lock = format!("{root}/lock");
    let st =
        zkrepl_async(args(&["pegasus", "status", "--meta", &servers.join(","), "--lock-path", &lock, "--json"])).await;
    assert_exit(&st, 0);
    let s = json(&st);
    assert_eq!(s["zookeeper_hosts"], new.as_str(), "{s}");
    assert_eq!(s["zookeeper"]["lock_nodes"]["known"].as_array().map(Vec::len), Some(2), "{s}");
    let nc = connect(&new).await;
    for app in 1..=3 {
        let kids = nc.list_children(&format!("{root}/apps/{app}")).await.unwrap();
        assert_eq!(kids.iter().filter(|k| k.parse::<u32>().is_ok()).count(), 8, "app {app}");
    }
    let saved = std::fs::read_to_string(zkrepl_pegasus::migrate::journal::beside(&journal, ".recovery-nodes")).unwrap();
    assert_eq!(saved.lines().collect::<Vec<_>>(), seed.replica_nodes);
}
