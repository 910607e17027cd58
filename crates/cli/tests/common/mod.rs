//! The test harness shared by every integration test: real ZooKeeper
//! servers on loopback ports (see `zkrepl_testkit::local`), started once per test
//! binary and shared; each test works under its own root.
//!
//! Servers are killed when the test process exits, however it exits.
#![allow(dead_code)]

pub mod sim;

use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use zkrepl_testkit::local::{LocalServer, ServerOptions};
use zookeeper_client as zk;

/// A source and a destination server, both with TTL nodes enabled and a fast
/// container reaper (so a test can tell a node's kind by its behaviour).
pub struct Pair {
    pub src: LocalServer,
    pub dst: LocalServer,
}

pub fn test_server_options() -> ServerOptions {
    ServerOptions { extended_types: true, container_check_ms: Some(500), heap_mb: 768, ..ServerOptions::default() }
}

/// Starts a pair (both servers at once).
pub fn start_pair() -> Pair {
    let opts = test_server_options();
    let (src, dst) = std::thread::scope(|s| {
        let a = s.spawn(|| LocalServer::start(&opts));
        let b = s.spawn(|| LocalServer::start(&opts));
        (a.join().unwrap(), b.join().unwrap())
    });
    Pair { src: src.expect("source server"), dst: dst.expect("destination server") }
}

/// The pair shared by the tests of this binary.
pub fn pair() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(start_pair)
}

/// A pair of the test's own (every node of both servers can be watched).
pub async fn own_pair() -> Pair {
    tokio::task::spawn_blocking(start_pair).await.unwrap()
}

/// Arguments as owned strings.
pub fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A root no other test uses.
pub fn unique_root(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("/t-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub async fn connect(hosts: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(hosts)
        .await
        .unwrap_or_else(|e| panic!("connect {hosts}: {e}"))
}

pub async fn connect_auth(hosts: &str, user_pw: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_auth("digest", user_pw.as_bytes())
        .connect(hosts)
        .await
        .unwrap_or_else(|e| panic!("connect {hosts}: {e}"))
}

pub fn open() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

/// Creates `root` and the given relative nodes (parents first) with data.
pub async fn create_tree(c: &zk::Client, root: &str, nodes: &[(&str, &[u8])]) {
    c.mkdir(root, &open()).await.unwrap_or_else(|e| panic!("mkdir {root}: {e}"));
    for (rel, data) in nodes {
        let p = format!("{root}{rel}");
        c.create(&p, data, &open()).await.unwrap_or_else(|e| panic!("create {p}: {e}"));
    }
}

/// Runs the zkrepl binary.
pub fn zkrepl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zkrepl")).args(args).output().expect("run zkrepl")
}

/// Runs zkrepl off the async runtime's threads.
pub async fn zkrepl_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        zkrepl(&refs)
    })
    .await
    .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit code, with both streams in the panic message when asserted.
#[track_caller]
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "exit status\n--- stdout\n{}\n--- stderr\n{}", stdout(o), stderr(o));
}

/// Parses stdout as JSON.
#[track_caller]
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\n{}", stdout(o), stderr(o)))
}

/// Both Merkle digests of a verify report are there (neither side was left
/// incomplete) and equal.
#[track_caller]
pub fn assert_equal_digests(report: &serde_json::Value) {
    assert!(report["src_digest"].is_string(), "no source digest: {report}");
    assert!(report["dst_digest"].is_string(), "no destination digest: {report}");
    assert_eq!(report["src_digest"], report["dst_digest"], "{report}");
}

/// Every node under `root` as (relative path, data, canonical ACL), sorted:
/// an independent reading of a tree (single requests, no zkrepl code). A
/// node deleted while the tree is read is left out (a tree still being
/// written then reads as it partly was, and compares unequal).
pub async fn dump(c: &zk::Client, root: &str) -> Vec<(String, Vec<u8>, Vec<String>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_string()];
    while let Some(p) = stack.pop() {
        let (data, stat) = match c.get_data(&p).await {
            Ok(found) => found,
            Err(zk::Error::NoNode) if p != root => continue,
            Err(e) => panic!("get {p}: {e}"),
        };
        if stat.ephemeral_owner != 0 {
            continue;
        }
        let acl = match c.get_acl(&p).await {
            Ok((acl, _)) => acl,
            Err(zk::Error::NoNode) if p != root => continue,
            Err(e) => panic!("getACL {p}: {e}"),
        };
        let mut acl: Vec<String> =
            acl.iter().map(|a| format!("{}:{}:{}", a.auth_id().scheme(), a.auth_id().id(), a.permission())).collect();
        acl.sort();
        let rel = p.strip_prefix(root).unwrap_or("").to_string();
        out.push((rel, data, acl));
        let children = match c.list_children(&p).await {
            Ok(children) => children,
            Err(zk::Error::NoNode) if p != root => Vec::new(),
            Err(e) => panic!("list {p}: {e}"),
        };
        for child in children {
            if p == "/" && child == "zookeeper" {
                continue;
            }
            stack.push(if p == "/" { format!("/{child}") } else { format!("{p}/{child}") });
        }
    }
    out.sort();
    out
}

/// Every node of the server with its full stat: changes whenever anything
/// is written (data, children, ACL), and only then.
pub async fn stats(c: &zk::Client) -> Vec<(String, zk::Stat)> {
    stats_under(c, "/").await
}

/// Every node's full stat beneath `top` (itself included): what a test on
/// a server shared with other tests may compare.
pub async fn stats_under(c: &zk::Client, top: &str) -> Vec<(String, zk::Stat)> {
    let mut out = Vec::new();
    let mut stack = vec![top.to_string()];
    while let Some(p) = stack.pop() {
        let Some(stat) = c.check_stat(&p).await.unwrap() else { continue };
        out.push((p.clone(), stat));
        for child in c.list_children(&p).await.unwrap_or_default() {
            stack.push(if p == "/" { format!("/{child}") } else { format!("{p}/{child}") });
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `zkrepl <cmd> --src <pair source> --dst <pair destination> --root <root> <extra...>`
pub async fn on_pair(cmd: &str, root: &str, extra: &[&str]) -> Output {
    let p = pair();
    let mut a: Vec<String> = [cmd, "--src", &p.src.connect_string(), "--dst", &p.dst.connect_string(), "--root", root]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    zkrepl_async(a).await
}
