//! `zkrepl sync` against real servers: changes of every kind while it
//! runs end equal; a connection cut does not silence it (the watch is
//! added again: changes after the cut arrive while it still runs); an ACL
//! change, which fires no event, is caught by the verify at the end (and a reconcile); the lag
//! limit fails loudly; `--metrics` serves what the status lines tell, and
//! an address in use stops it before it starts; under a bounded write load
//! the lag shows and the run still ends equal.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use zkrepl_testkit::load::{self, LoadSpec};
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

/// Every line still to come, each with when it was read (bounded: each
/// line within two minutes, and the run ends).
async fn rest(mut lines: Lines) -> Vec<(Instant, String)> {
    let mut out = Vec::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await {
        out.push((Instant::now(), line));
    }
    out
}

/// The exit status, the report (the pretty JSON after the status lines)
/// and stderr, once the run ends.
async fn end(mut child: Child, lines: &[(Instant, String)]) -> (i32, serde_json::Value, String) {
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait()).await.expect("sync ends").unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err).await;
    }
    let buf: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    let start = buf.rfind("\n{\n").map(|i| i + 1).unwrap_or(0);
    let report = serde_json::from_str(&buf[start..]).unwrap_or(serde_json::Value::Null);
    (status.code().unwrap_or(-1), report, err)
}

/// The rest of the output, the exit status and the report.
async fn finish(child: Child, lines: Lines) -> (i32, serde_json::Value, String) {
    let lines = rest(lines).await;
    end(child, &lines).await
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

    // An ACL change fires no event: the verify at the end finds it, a reconcile carries it.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_a_reconcile_still_ends_with_a_catch_up_and_a_verify() {
    let p = pair();
    let (src, dst) = (p.src.connect_string(), p.dst.connect_string());
    let root = unique_root("sync-sigint-reconcile");
    let c = connect(&src).await;
    let nodes: Vec<(String, Vec<u8>)> = (0..3000).map(|i| (format!("/n{i}"), b"v".to_vec())).collect();
    let refs: Vec<(&str, &[u8])> = nodes.iter().map(|(p, d)| (p.as_str(), d.as_slice())).collect();
    create_tree(&c, &root, &refs).await;
    // A reconcile due all the time: the signal lands in one.
    let mut child = spawn_sync(&src, &dst, &root, &["--reconcile-every", "1ms"]);
    let mut lines = until_following(&mut child).await;
    until_status(&mut lines, Duration::from_secs(60), |s| s["phase"] == "reconciling").await;
    c.set_data(&format!("{root}/n7"), b"changed", None).await.unwrap();
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let (code, report, err) = finish(child, lines).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["settled"], true, "{report}");
    assert_eq!(report["verify"]["counts"]["data_differs"], 0, "{report}");
    let d = connect(&dst).await;
    assert_eq!(d.get_data(&format!("{root}/n7")).await.unwrap().0, b"changed");
    assert_eq!(dump(&c, &root).await, dump(&d, &root).await);
}

/// A loopback port nothing listens on (as of now).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP GET: the status code, the Content-Type and the body (`None`
/// when nothing answers within a few seconds).
async fn http_get(addr: &str, path: &str) -> Option<(u16, String, String)> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await.ok()?.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.ok()?.ok()?;
    let text = String::from_utf8(buf).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let content_type = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-type").then(|| v.trim().to_string())
    })?;
    Some((code, content_type, body.to_string()))
}

/// The value of an unlabelled sample `name value` in a scrape.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_while_it_runs_and_follow_the_changes() {
    let p = pair();
    let (src, dst) = (p.src.connect_string(), p.dst.connect_string());
    let root = unique_root("sync-metrics");
    let c = connect(&src).await;
    create_tree(&c, &root, &[("/a", b"1")]).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = spawn_sync(&src, &dst, &root, &["--until-idle", "5s", "--metrics", &addr]);
    let lines = until_following(&mut child).await;
    // 30 data changes and 20 creates: 50 events at least.
    for i in 0..30 {
        c.set_data(&format!("{root}/a"), format!("v{i}").as_bytes(), None).await.unwrap();
    }
    for i in 0..20 {
        c.create(&format!("{root}/n{i}"), b"n", &open()).await.unwrap();
    }
    let mut scrape = None;
    let seen = eventually(Duration::from_secs(15), async || {
        if let Some(answer) = http_get(&addr, "/metrics").await {
            scrape = Some(answer);
        }
        scrape.as_ref().is_some_and(|(_, _, body)| {
            sample(body, "zkrepl_sync_events_total") >= Some(50.0)
                && sample(body, "zkrepl_sync_applied_paths_total") >= Some(21.0)
        })
    })
    .await;
    let (code, content_type, body) = scrape.expect("the metrics endpoint answered");
    assert!(seen, "the counters did not reach the changes made:\n{body}");
    assert_eq!(code, 200);
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    assert!(sample(&body, "zkrepl_sync_writes_total") >= Some(21.0), "{body}");
    for gauge in ["zkrepl_sync_pending_paths", "zkrepl_sync_lag_seconds", "zkrepl_sync_reconciles_total"] {
        assert!(sample(&body, gauge).is_some(), "{gauge} in\n{body}");
    }
    assert!(body.lines().any(|l| l == "zkrepl_sync_phase{phase=\"following\"} 1"), "{body}");
    assert!(body.contains("# TYPE zkrepl_sync_events_total counter"), "{body}");
    let (code, _, _) = http_get(&addr, "/").await.expect("an answer");
    assert_eq!(code, 404, "only /metrics is served");
    let (code, report, err) = finish(child, lines).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("serving metrics on http://{addr}/metrics")), "{err}");
    let events = report["status"]["events"].as_f64().unwrap();
    assert!(sample(&body, "zkrepl_sync_events_total") <= Some(events), "a scrape never runs ahead: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_address_in_use_stops_it_before_it_starts() {
    let p = pair();
    let (src, dst) = (p.src.connect_string(), p.dst.connect_string());
    let root = unique_root("sync-busy");
    let c = connect(&src).await;
    create_tree(&c, &root, &[("/x", b"1")]).await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let run = |metrics: &str| {
        zkrepl_async(args(&[
            "sync",
            "--src",
            &src,
            "--dst",
            &dst,
            "--root",
            &root,
            "--until-idle",
            "1s",
            "--metrics",
            metrics,
        ]))
    };
    let out = run(&addr).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(&format!("cannot serve --metrics on {addr}")) && err.contains("port is in use"), "{err}");
    assert!(!err.contains("watching"), "the sync did not start: {err}");
    let d = connect(&dst).await;
    assert!(d.check_stat(&root).await.unwrap().is_none(), "nothing written to the destination");
    // Not an address and a port: refused by the command line, exit 2 too.
    let out = run("localhost").await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--metrics"), "{}", stderr(&out));
    drop(busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_bounded_write_load_the_lag_shows_and_it_ends_equal() {
    let p = pair();
    let (src, dst) = (p.src.connect_string(), p.dst.connect_string());
    let root = unique_root("sync-load");
    let c = connect(&src).await;
    // 5000 ops at 625 a second over 200 keys, creates and deletes among
    // them: about 8 s, never more than 10.
    let spec = LoadSpec::new(&root, 625, 5000, Duration::from_secs(10));
    load::prepare(&c, &spec).await.unwrap();
    let mut child = spawn_sync(&src, &dst, &root, &["--until-idle", "3s"]);
    let lines = until_following(&mut child).await;
    let reader = tokio::spawn(rest(lines));
    let began = Instant::now();
    let done = load::run(&c, &spec).await.unwrap();
    let ended = Instant::now();
    assert!(done.ops >= 2000 && done.creates > 0 && done.deletes > 0, "{done:?}");
    let lines = reader.await.unwrap();
    let (code, report, err) = end(child, &lines).await;
    assert_eq!(code, 0, "{err}");

    // Every status line tells the lag, as numbers; while the load ran, at
    // least one showed the destination behind.
    let statuses: Vec<(Instant, Value)> = lines
        .iter()
        .filter_map(|(t, l)| Some((*t, serde_json::from_str::<Value>(l).ok()?.get("status")?.clone())))
        .collect();
    for (_, s) in &statuses {
        assert!(s["pending"].is_u64() && s["lag_seconds"].is_f64(), "{s}");
    }
    let during: Vec<&Value> = statuses.iter().filter(|(t, _)| (began..=ended).contains(t)).map(|(_, s)| s).collect();
    assert!(during.len() >= 3, "a status line a second while loading for {:.1}s: {during:?}", done.seconds);
    assert!(
        during.iter().any(|s| s["pending"].as_u64() > Some(0) || s["lag_seconds"].as_f64() > Some(0.0)),
        "no lag shown while loading: {during:?}"
    );
    assert!(report["status"]["events"].as_u64().unwrap() >= done.ops, "one event per op: {report} {done:?}");
    let v = &report["verify"];
    assert_equal_digests(v);
    for k in ["missing_on_dst", "extra_on_dst", "data_differs", "acl_differs", "unreadable", "changed"] {
        assert_eq!(v["counts"][k], 0, "{k}: {v}");
    }
    let d = connect(&dst).await;
    let (source, destination) = (dump(&c, &root).await, dump(&d, &root).await);
    let churn = (done.creates - done.deletes) as usize;
    assert_eq!(source.len(), 1 + 200 + 2 + churn, "root, keys, churn parent, marker, the churn left");
    assert_eq!(source, destination);
}
