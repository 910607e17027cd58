//! `zkrepl sync` against real servers: changes of every kind while it
//! runs end equal; a connection cut does not silence it (the watch is
//! added again: changes after the cut arrive while it still runs); an ACL
//! change, which fires no event, is caught by the last reconcile; the lag
//! limit fails loudly.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use zkrepl_testkit::proxy::FaultProxy;
use zookeeper_client as zk;

fn spawn_sync(src: &str, dst: &str, root: &str, extra: &[&str]) -> Child {
    let mut a = vec!["sync", "--src", src, "--dst", dst, "--root", root, "--json"];
    a.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_zkrepl"))
        .args(&a)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start zkrepl sync")
}

/// Waits (bounded) until `f` holds.
async fn eventually(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Waits for the sync to follow (its first status line past the copy).
async fn until_following(child: &mut Child) -> tokio::io::Lines<BufReader<tokio::process::ChildStdout>> {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await else { break };
        if line.contains("\"following\"") {
            return lines;
        }
    }
    panic!("sync never started following");
}

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// Reads status lines until one satisfies `f` (bounded); that status.
async fn until_status(lines: &mut Lines, limit: Duration, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let Ok(Ok(Some(line))) = tokio::time::timeout(limit, lines.next_line()).await else { break };
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && f(&v["status"])
        {
            return v["status"].clone();
        }
    }
    panic!("no status line as expected within {limit:?}");
}

/// The last JSON line (the report) and the exit status.
async fn finish(
    mut child: Child,
    mut lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> (i32, serde_json::Value, String) {
    let mut last = String::new();
    let mut buf = String::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await {
        buf.push_str(&line);
        buf.push('\n');
        last = line;
    }
    let _ = last;
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait()).await.expect("sync ends").unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = e.read_to_string(&mut err).await;
    }
    // The report is the pretty JSON after the status lines.
    let start = buf.rfind("\n{\n").map(|i| i + 1).unwrap_or(0);
    let report = serde_json::from_str(&buf[start..]).unwrap_or(serde_json::Value::Null);
    (status.code().unwrap_or(-1), report, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_of_every_kind_while_syncing_end_equal() {
    let p = pair();
    let (src, dst) = (p.src.connect_string(), p.dst.connect_string());
    let root = unique_root("sync-kinds");
    let c = connect(&src).await;
    create_tree(&c, &root, &[("/a", b"1"), ("/a/b", b"2"), ("/gone", b"x"), ("/gone/deep", b"y")]).await;
    let mut child = spawn_sync(&src, &dst, &root, &["--until-idle", "3s"]);
    let lines = until_following(&mut child).await;

    // Data changes at a rate (bounded), a subtree deleted and recreated, a
    // parent with thousands of children churning, sequential children.
    for i in 0..300 {
        c.set_data(&format!("{root}/a/b"), format!("v{i}").as_bytes(), None).await.unwrap();
    }
    c.delete(&format!("{root}/gone/deep"), None).await.unwrap();
    c.delete(&format!("{root}/gone"), None).await.unwrap();
    c.create(&format!("{root}/gone"), b"back", &open()).await.unwrap();
    c.create(&format!("{root}/gone/new"), b"n", &open()).await.unwrap();
    c.create(&format!("{root}/wide"), b"", &open()).await.unwrap();
    for i in 0..2000 {
        c.create(&format!("{root}/wide/c{i:05}"), b"w", &open()).await.unwrap();
    }
    for i in (0..2000).step_by(2) {
        c.delete(&format!("{root}/wide/c{i:05}"), None).await.unwrap();
    }
    c.create(&format!("{root}/q"), b"", &open()).await.unwrap();
    let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    for _ in 0..50 {
        c.create(&format!("{root}/q/item-"), b"s", &seq).await.unwrap();
    }
    // Applied while it runs, not only by the last reconcile.
    let d = connect(&dst).await;
    let wide = format!("{root}/wide");
    assert!(
        eventually(Duration::from_secs(30), async || d.list_children(&wide).await.map(|k| k.len()) == Ok(1000)).await,
        "the churned parent reached the destination while syncing"
    );
    let (code, report, err) = finish(child, lines).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["verify"]["counts"]["missing_on_dst"], 0, "{report}");
    assert!(report["status"]["events"].as_u64().unwrap() > 3000, "{report}");
    assert_eq!(dump(&c, &root).await, dump(&d, &root).await);
    let (_, s) = c.get_data(&format!("{root}/q")).await.unwrap();
    let (_, t) = d.get_data(&format!("{root}/q")).await.unwrap();
    assert!(t.cversion >= s.cversion, "the sequence counter kept: {} < {}", t.cversion, s.cversion);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_does_not_silence_it_and_an_acl_change_is_caught_at_the_end() {
    let p = pair();
    let (src, dst) = (p.src.connect_string(), p.dst.connect_string());
    let proxy = FaultProxy::to_port(p.src.port).await;
    let root = unique_root("sync-cut");
    let c = connect(&src).await;
    create_tree(&c, &root, &[("/x", b"1")]).await;
    let mut child = spawn_sync(&proxy.connect_string(), &dst, &root, &["--until-idle", "8s", "--timeout", "20s"]);
    let lines = until_following(&mut child).await;
    let d = connect(&dst).await;
    c.create(&format!("{root}/before"), b"b", &open()).await.unwrap();
    let before = format!("{root}/before");
    assert!(eventually(Duration::from_secs(10), async || d.check_stat(&before).await.ok().flatten().is_some()).await);

    // Cut every connection; the sessions survive (reconnect well within
    // their timeout) but the watch is gone unless added again.
    proxy.drop_connections();
    // Once the watch is back and the gap reconciled, a change can only
    // arrive through the watch (no other reconcile is due for minutes).
    let mut lines = lines;
    let back = until_status(&mut lines, Duration::from_secs(20), |s| {
        s["watch_resets"].as_u64() >= Some(1) && s["reconciles"].as_u64() >= Some(1) && s["phase"] == "following"
    })
    .await;
    c.create(&format!("{root}/after"), b"a", &open()).await.unwrap();
    let after = format!("{root}/after");
    let seen = eventually(Duration::from_secs(6), async || d.check_stat(&after).await.ok().flatten().is_some()).await;
    assert!(seen, "a change after the cut reached the destination while sync still ran");
    let now = until_status(&mut lines, Duration::from_secs(5), |_| true).await;
    assert_eq!(now["reconciles"], back["reconciles"], "it came through the watch, not a reconcile");

    // An ACL change fires no event: the last reconcile carries it.
    let read_only = vec![zk::Acl::new(zk::Permission::READ | zk::Permission::WRITE, zk::AuthId::anyone())];
    c.set_acl(&format!("{root}/x"), &read_only, None).await.unwrap();
    let (code, report, err) = finish(child, lines).await;
    assert_eq!(code, 0, "{err}");
    assert!(report["status"]["watch_resets"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["verify"]["counts"]["acl_differs"], 0, "{report}");
    let (acl, _) = d.get_acl(&format!("{root}/x")).await.unwrap();
    assert_eq!(acl, read_only);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_limit_fails_loudly() {
    let p = pair();
    let src = p.src.connect_string();
    let proxy = FaultProxy::to_port(p.dst.port).await;
    let root = unique_root("sync-lag");
    let c = connect(&src).await;
    create_tree(&c, &root, &[("/x", b"1")]).await;
    let mut child = spawn_sync(&src, &proxy.connect_string(), &root, &["--max-lag", "2s", "--timeout", "30s"]);
    let lines = until_following(&mut child).await;
    // The destination stalls (and stays stalled): changes pile up; the
    // limit is noticed while a batch hangs in flight.
    proxy.set_stall(true);
    let stalled = Instant::now();
    for i in 0..20 {
        c.set_data(&format!("{root}/x"), format!("{i}").as_bytes(), None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    assert!(done.is_ok(), "sync failed on the lag while the destination stayed stalled");
    assert!(stalled.elapsed() < Duration::from_secs(15));
    proxy.set_stall(false);
    let (code, _, err) = finish(child, lines).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("behind the source") && err.contains("limit of 2.0s"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_source_session_gets_a_new_session_and_a_new_watch() {
    let p = pair();
    let (src, dst) = (p.src.connect_string(), p.dst.connect_string());
    let proxy = FaultProxy::to_port(p.src.port).await;
    let root = unique_root("sync-expiry");
    let c = connect(&src).await;
    create_tree(&c, &root, &[("/x", b"1")]).await;
    let mut child = spawn_sync(
        &proxy.connect_string(),
        &dst,
        &root,
        &["--until-idle", "20s", "--session-timeout", "3s", "--timeout", "30s", "--retry-timeout", "60s"],
    );
    let lines = until_following(&mut child).await;
    // Away longer than the session timeout: the server ends the sessions,
    // and the watch with them.
    proxy.set_refuse(true);
    proxy.drop_connections();
    tokio::time::sleep(Duration::from_secs(7)).await;
    proxy.set_refuse(false);
    let mut lines = lines;
    let back = until_status(&mut lines, Duration::from_secs(30), |s| {
        s["watch_resets"].as_u64() >= Some(1) && s["reconciles"].as_u64() >= Some(1) && s["phase"] == "following"
    })
    .await;
    c.create(&format!("{root}/later"), b"l", &open()).await.unwrap();
    let d = connect(&dst).await;
    let later = format!("{root}/later");
    let seen = eventually(Duration::from_secs(8), async || d.check_stat(&later).await.ok().flatten().is_some()).await;
    let running = child.try_wait().unwrap().is_none();
    if !(seen && running) {
        let (code, report, err) = finish(child, lines).await;
        panic!("a change after the expiry did not reach the destination while sync ran ({code}): {err} {report}");
    }
    let now = until_status(&mut lines, Duration::from_secs(5), |_| true).await;
    assert_eq!(now["reconciles"], back["reconciles"], "it came through the new watch, not a reconcile");
    let (code, report, err) = finish(child, lines).await;
    assert_eq!(code, 0, "{err}");
    assert!(report["status"]["watch_resets"].as_u64().unwrap() >= 1, "{report}");
    assert!(err.contains("session ended") || err.contains("reconnected"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_after_what_is_in_flight_and_verifies() {
    let p = pair();
    let (src, dst) = (p.src.connect_string(), p.dst.connect_string());
    let root = unique_root("sync-sigint");
    let c = connect(&src).await;
    create_tree(&c, &root, &[("/x", b"1")]).await;
    let mut child = spawn_sync(&src, &dst, &root, &[]);
    let lines = until_following(&mut child).await;
    for i in 0..100 {
        c.create(&format!("{root}/n{i}"), b"v", &open()).await.unwrap();
    }
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let (code, report, err) = finish(child, lines).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["verify"]["counts"]["missing_on_dst"], 0, "{report}");
    let d = connect(&dst).await;
    assert_eq!(dump(&c, &root).await, dump(&d, &root).await);
}
