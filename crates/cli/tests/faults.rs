//! Reliability under faults: servers killed, connections cut mid-request,
//! stalls past the session timeout, signals, a source changing underneath.
//! Each run either finishes correctly or fails clearly; a re-run converges;
//! verify is clean afterwards. Real servers and ensembles, loopback only,
//! every wait bounded.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use zkrepl_testkit::local::LocalEnsemble;
use zkrepl_testkit::proxy::FaultProxy;
use zookeeper_client as zk;

/// Starts zkrepl without waiting for it.
fn spawn(a: &[String]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_zkrepl"))
        .args(a)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn zkrepl")
}

async fn finish(child: tokio::process::Child, limit: Duration) -> std::process::Output {
    tokio::time::timeout(limit, child.wait_with_output()).await.expect("zkrepl finished in time").unwrap()
}

/// A Pegasus-shaped tree of about `apps * 275` nodes under `root`.
async fn generate(hosts: &str, root: &str, apps: u32) {
    let out = zkrepl_async(args(&[
        "gen",
        "--zk",
        hosts,
        "--root",
        root,
        "--apps",
        &apps.to_string(),
        "--partitions",
        "250",
        "-q",
    ]))
    .await;
    assert_exit(&out, 0);
}

/// Waits until `root` holds at least `n` nodes (bounded), while `child`
/// (the copy filling it) runs.
async fn wait_nodes(c: &zk::Client, root: &str, n: usize, child: &mut tokio::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = c.count_descendants_number(root).await.unwrap_or(0);
        if have >= n {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = e.read_to_string(&mut err).await;
            }
            panic!("zkrepl ended ({status}) before {root} reached {n} nodes (it has {have}): {err}");
        }
        assert!(Instant::now() < deadline, "{root} never reached {n} nodes (it has {have})");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn verify_equal(src: &str, dst: &str, root: &str, extra: &[&str]) {
    let mut a = args(&["verify", "--src", src, "--dst", dst, "--root", root, "--json", "--timeout", "30s"]);
    a.extend(args(extra));
    let out = zkrepl_async(a).await;
    assert_exit(&out, 0);
    assert_equal_digests(&json(&out));
}

/// A copy that was cut short: its exit is 0 (it recovered) or 2 (it said
/// why); a re-run with --update then converges.
async fn converge(out: std::process::Output, src: &str, dst: &str, root: &str) -> serde_json::Value {
    match out.status.code() {
        Some(0) => json(&out),
        Some(2) => {
            assert!(stderr(&out).contains("zkrepl: error:"), "a clear error: {}", stderr(&out));
            eprintln!("first run failed (re-running with --update): {}", stderr(&out));
            let again = zkrepl_async(args(&[
                "copy",
                "--src",
                src,
                "--dst",
                dst,
                "--root",
                root,
                "--update",
                "--json",
                "-q",
                "--timeout",
                "30s",
            ]))
            .await;
            assert_exit(&again, 0);
            json(&again)
        }
        other => panic!("unexpected exit {other:?}: {}", stderr(&out)),
    }
}

fn slow_copy(src: &str, dst: &str, root: &str) -> Vec<String> {
    args(&[
        "copy",
        "--src",
        src,
        "--dst",
        dst,
        "--root",
        root,
        "--json",
        "-q",
        "--batch-ops",
        "25",
        "--window",
        "2",
        "--timeout",
        "30s",
        "--session-timeout",
        "6s",
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn destination_leader_killed_mid_copy() {
    let p = pair();
    let root = unique_root("dstleader");
    generate(&p.src.connect_string(), &root, 24).await;
    let mut ens =
        tokio::task::spawn_blocking(|| LocalEnsemble::start(3, &test_server_options()).unwrap()).await.unwrap();
    let dst_hosts = ens.connect_string();
    let watcher = connect(&dst_hosts).await;

    let mut child = spawn(&slow_copy(&p.src.connect_string(), &dst_hosts, &root));
    wait_nodes(&watcher, &root, 1500, &mut child).await;
    let leader = ens.leader().expect("a leader");
    ens.servers[leader].kill();
    let out = finish(child, Duration::from_secs(120)).await;
    let summary = converge(out, &p.src.connect_string(), &dst_hosts, &root).await;
    assert!(summary["created"].as_u64().unwrap() > 0);
    let ens = tokio::task::spawn_blocking(move || {
        ens.wait_quorum(Duration::from_secs(60)).unwrap();
        ens
    })
    .await
    .unwrap();
    verify_equal(&p.src.connect_string(), &dst_hosts, &root, &[]).await;
    drop(ens);
}

#[tokio::test(flavor = "multi_thread")]
async fn source_follower_killed_mid_copy() {
    let p = pair();
    let mut ens =
        tokio::task::spawn_blocking(|| LocalEnsemble::start(3, &test_server_options()).unwrap()).await.unwrap();
    let src_hosts = ens.connect_string();
    let root = unique_root("srcfollower");
    generate(&src_hosts, &root, 24).await;
    let watcher = connect(&p.dst.connect_string()).await;

    let mut child = spawn(&slow_copy(&src_hosts, &p.dst.connect_string(), &root));
    wait_nodes(&watcher, &root, 1500, &mut child).await;
    let follower = ens.follower().expect("a follower");
    ens.servers[follower].kill();
    let out = finish(child, Duration::from_secs(120)).await;
    converge(out, &src_hosts, &p.dst.connect_string(), &root).await;
    verify_equal(&src_hosts, &p.dst.connect_string(), &root, &[]).await;
    drop(ens);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_cut_in_the_middle_of_multi_requests() {
    let p = pair();
    let root = unique_root("cut");
    generate(&p.src.connect_string(), &root, 24).await;
    let proxy = FaultProxy::to_port(p.dst.port).await;
    let a = args(&[
        "copy",
        "--src",
        &p.src.connect_string(),
        "--dst",
        &proxy.connect_string(),
        "--root",
        &root,
        "--json",
        "-q",
        "--timeout",
        "30s",
    ]);
    let child = spawn(&a);
    // Transactions are ~100-500 KB: cutting after an odd byte count lands
    // inside one. Cut three times.
    for cut in [350_001u64, 700_003, 1_100_007] {
        proxy.drop_after_client_bytes(cut);
        let deadline = Instant::now() + Duration::from_secs(60);
        while proxy.bytes_forwarded().0 < cut && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let out = finish(child, Duration::from_secs(120)).await;
    assert_exit(&out, 0);
    let s = json(&out);
    assert!(s["reconciled_transactions"].as_u64().unwrap() >= 1, "a cut transaction was reconciled: {s}");
    verify_equal(&p.src.connect_string(), &p.dst.connect_string(), &root, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stall_longer_than_the_session_timeout_renews_the_session() {
    let p = pair();
    let root = unique_root("stall");
    generate(&p.src.connect_string(), &root, 16).await;
    let proxy = FaultProxy::to_port(p.dst.port).await;
    let watcher = connect(&p.dst.connect_string()).await;
    let mut a = slow_copy(&p.src.connect_string(), &proxy.connect_string(), &root);
    let at = a.iter().position(|x| x == "--session-timeout").unwrap();
    a[at + 1] = "4s".to_string();
    let mut child = spawn(&a);
    wait_nodes(&watcher, &root, 500, &mut child).await;
    proxy.set_stall(true);
    // The server expires the session after 4 s; the client gives it up too.
    tokio::time::sleep(Duration::from_secs(9)).await;
    proxy.set_stall(false);
    proxy.heal();
    let out = finish(child, Duration::from_secs(120)).await;
    assert_exit(&out, 0);
    let s = json(&out);
    assert!(s["session_renewals"].as_u64().unwrap() >= 1, "the stall expired the session: {s}");
    verify_equal(&p.src.connect_string(), &p.dst.connect_string(), &root, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_goes_on_through_a_session_expiry() {
    let p = pair();
    let root = unique_root("vstall");
    generate(&p.src.connect_string(), &root, 16).await;
    let out = on_pair("copy", &root, &["-q"]).await;
    assert_exit(&out, 0);
    let proxy = FaultProxy::to_port(p.src.port).await;
    let a = args(&[
        "verify",
        "--src",
        &proxy.connect_string(),
        "--dst",
        &p.dst.connect_string(),
        "--root",
        &root,
        "--json",
        "--read-batch",
        "20",
        "--read-window",
        "1",
        "--session-timeout",
        "4s",
        "--timeout",
        "30s",
    ]);
    let child = spawn(&a);
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.bytes_forwarded().1 < 200_000 {
        assert!(Instant::now() < deadline, "verify made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.set_stall(true);
    tokio::time::sleep(Duration::from_secs(9)).await;
    proxy.set_stall(false);
    proxy.heal();
    let out = finish(child, Duration::from_secs(120)).await;
    assert_exit(&out, 0);
    let r = json(&out);
    assert!(r["session_renewals"].as_u64().unwrap() >= 1, "the stall expired a session: {r}");
    assert_equal_digests(&r);
}

async fn signal_mid_copy(signal: &str) {
    let p = pair();
    let root = unique_root(&format!("sig{signal}"));
    generate(&p.src.connect_string(), &root, 24).await;
    let watcher = connect(&p.dst.connect_string()).await;
    let mut a = slow_copy(&p.src.connect_string(), &p.dst.connect_string(), &root);
    a.retain(|x| x != "-q" && x != "--json");
    let mut child = spawn(&a);
    let pid = child.id().unwrap();
    wait_nodes(&watcher, &root, 800, &mut child).await;
    let sent = Instant::now();
    std::process::Command::new("kill").args([format!("-{signal}"), pid.to_string()]).status().unwrap();
    let out = finish(child, Duration::from_secs(60)).await;
    assert!(sent.elapsed() < Duration::from_secs(10), "stopped promptly ({:?})", sent.elapsed());
    assert_exit(&out, 130);
    let err = stderr(&out);
    assert!(err.contains("interrupted after") && err.contains("--update"), "says what was done: {err}");
    let partial = watcher.count_descendants_number(&root).await.unwrap();
    assert!(partial < 24 * 251, "stopped before the end ({partial} nodes)");
    let again = on_pair("copy", &root, &["--update", "-q"]).await;
    assert_exit(&again, 0);
    verify_equal(&p.src.connect_string(), &p.dst.connect_string(), &root, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_promptly_and_a_rerun_converges() {
    signal_mid_copy("INT").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_promptly_and_a_rerun_converges() {
    signal_mid_copy("TERM").await;
}

/// Changes the source while zkrepl reads it: deletes, creates, data changes.
async fn churn(c: zk::Client, root: String, rounds: usize) {
    for i in 0..rounds {
        let app = 1 + (i % 20);
        let _ = c.delete(&format!("{root}/apps/{app}/{}", 100 + i), None).await;
        let _ = c.create(&format!("{root}/apps/{app}/new-{i}"), b"new", &open()).await;
        let _ = c.set_data(&format!("{root}/apps/{app}/{}", i % 100), format!("changed {i}").as_bytes(), None).await;
        if i % 50 == 49 {
            // A whole subtree goes: its children vanish between list and read.
            let dup = format!("{root}/apps/{}/duplication", 1 + 10 * (i / 50));
            if let Ok(children) = c.list_children(&dup).await {
                for d in children {
                    let sub = format!("{dup}/{d}");
                    for leaf in c.list_children(&sub).await.unwrap_or_default() {
                        let _ = c.delete(&format!("{sub}/{leaf}"), None).await;
                    }
                    let _ = c.delete(&sub, None).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_changing_during_copy_and_verify_is_reported_not_a_crash() {
    let p = pair();
    let root = unique_root("churn");
    generate(&p.src.connect_string(), &root, 24).await;
    let (s, d) = (p.src.connect_string(), p.dst.connect_string());
    let changer = connect(&s).await;

    let child = spawn(&slow_copy(&s, &d, &root));
    let churned = tokio::spawn(churn(changer.clone(), root.clone(), 300));
    let out = finish(child, Duration::from_secs(120)).await;
    churned.await.unwrap();
    assert_exit(&out, 0);
    assert!(json(&out)["nodes_read"].as_u64().unwrap() > 1000);

    // Verify while it changes: equal or different, never an error or a crash.
    let mut v = args(&["verify", "--src", &s, "--dst", &d, "--root", &root, "--json", "--read-batch", "50"]);
    v.extend(args(&["--read-window", "1"]));
    let child = spawn(&v);
    let churned = tokio::spawn(churn(changer.clone(), root.clone(), 200));
    let out = finish(child, Duration::from_secs(120)).await;
    churned.await.unwrap();
    assert!(matches!(out.status.code(), Some(0) | Some(1)), "{:?}: {}", out.status, stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    // The exit status says what the report found: 1 exactly when some
    // difference (changed nodes included) was counted and listed.
    let r = json(&out);
    let counted: u64 = r["counts"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    let found = counted - r["counts"]["counter_behind"].as_u64().unwrap();
    assert_eq!(out.status.code() == Some(1), found > 0, "{r}");
    assert_eq!(r["differences"].as_array().unwrap().len() as u64, counted, "{r}");

    // Once the source is still, a mirror run makes the copy exact.
    let out = zkrepl_async(args(&["copy", "--src", &s, "--dst", &d, "--root", &root, "--mirror", "-q"])).await;
    assert_exit(&out, 0);
    verify_equal(&s, &d, &root, &["--strict-counters"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_link_on_both_sides_delays_but_does_not_break_the_copy() {
    let p = pair();
    let root = unique_root("slowlink");
    generate(&p.src.connect_string(), &root, 8).await;
    let src_proxy = FaultProxy::to_port(p.src.port).await;
    let dst_proxy = FaultProxy::to_port(p.dst.port).await;
    // Every chunk each way waits: round trips of tens of milliseconds.
    src_proxy.set_delay(Duration::from_millis(15));
    dst_proxy.set_delay(Duration::from_millis(15));
    let out = zkrepl_async(args(&[
        "copy",
        "--src",
        &src_proxy.connect_string(),
        "--dst",
        &dst_proxy.connect_string(),
        "--root",
        &root,
        "--json",
        "-q",
        "--timeout",
        "30s",
    ]))
    .await;
    assert_exit(&out, 0);
    let s = json(&out);
    assert_eq!(s["created"].as_u64().unwrap(), s["nodes_read"].as_u64().unwrap());
    assert!(s["seconds"].as_f64().unwrap() > 0.1, "the delay was felt: {s}");
    verify_equal(&p.src.connect_string(), &p.dst.connect_string(), &root, &[]).await;
}
