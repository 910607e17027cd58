//! Reading snapshot files written by a real ZooKeeper server, in each of its
//! compression methods, and checking them against what was created and
//! against ZooKeeper's own SnapshotFormatter.
//!
//! A server takes a snapshot when it loads its data at startup
//! (`ZooKeeperServer.loadData` ends with `takeSnapshot()`, before it serves),
//! so each test creates a tree, restarts its server and reads the newest
//! snapshot: complete once the server serves again.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use zkrepl::Error;
use zkrepl::node::NodeKind;
use zkrepl::snapshot::{self, Compression, KindCounts, SnapKind, TtlNode};
use zkrepl_testkit::local::{LocalServer, ServerOptions, four_letter};
use zookeeper_client as zk;

const TTL1: Duration = Duration::from_secs(3600);
/// The largest TTL ZooKeeper accepts: 2^40 - 1 ms.
const TTL_MAX: Duration = Duration::from_millis(0xff_ffff_ffff);
const TTL3: Duration = Duration::from_secs(7 * 86_400);

/// A snapshot written by a real server, copied out of its data directory.
struct Fixture {
    _dir: tempfile::TempDir,
    /// The snapshot, under its original name.
    file: PathBuf,
    /// The server's transaction log: a real file that is not a snapshot.
    txn_log: PathBuf,
    root: String,
    session: i64,
    /// czxid and mzxid of every node created, by path.
    stats: HashMap<String, (i64, i64)>,
    last_zxid: i64,
}

fn wait_serving(s: &LocalServer) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if four_letter(s.port, "ruok") == "imok" && four_letter(s.port, "srvr").contains("Mode:") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the restarted server did not serve within 60 s");
}

fn open_acl() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

/// Starts a server with `compression`, creates the test tree, restarts the
/// server and copies the snapshot it took at startup.
async fn fixture(compression: Option<&str>) -> Fixture {
    let opts = ServerOptions {
        extended_types: true,
        // Far more than the test writes: only the startup snapshot is taken.
        snap_count: Some(100_000),
        snapshot_compression: compression.map(str::to_string),
        heap_mb: 256,
        ..test_server_options()
    };
    let mut server = tokio::task::spawn_blocking(move || LocalServer::start(&opts).expect("server")).await.unwrap();
    let c = connect(&server.connect_string()).await;
    let root = unique_root(&format!("snap-{}", compression.unwrap_or("none")));
    c.mkdir(&root, &open_acl()).await.unwrap();
    let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
    let ttl = |d: Duration| zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()).with_ttl(d);
    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let nodes: Vec<(&str, &[u8], zk::CreateOptions<'_>)> = vec![
        ("/p1", b"hello", open_acl()),
        ("/p1/p2", b"", open_acl()),
        ("/c1", b"container", container.clone()),
        ("/c1/a", b"a", open_acl()),
        ("/c1/cc", b"", container.clone()),
        ("/c1/cc/x", b"x", open_acl()),
        ("/c2", b"", container.clone()),
        ("/ttl1", b"t1", ttl(TTL1)),
        ("/p1/ttl2", b"", ttl(TTL_MAX)),
        ("/p1/ttl2/k", b"k", open_acl()),
        ("/ttl3", b"t3", ttl(TTL3)),
        ("/eph", b"mine", eph),
    ];
    let mut stats = HashMap::new();
    let (_, st) = c.get_data(&root).await.unwrap();
    stats.insert(root.clone(), (st.czxid, st.mzxid));
    for (rel, data, opts) in &nodes {
        let p = format!("{root}{rel}");
        let (st, _) = c.create(&p, data, opts).await.unwrap_or_else(|e| panic!("create {p}: {e}"));
        stats.insert(p, (st.czxid, st.mzxid));
    }
    let session = c.session_id().0;
    let last_zxid = stats.values().map(|s| s.1).max().unwrap();

    // Restart (the session stays alive: the server is killed, not told).
    let server = tokio::task::spawn_blocking(move || {
        server.restart().expect("restart");
        wait_serving(&server);
        server
    })
    .await
    .unwrap();
    let snaps = server.snapshots();
    let newest = snaps.last().expect("a snapshot after restart").clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(newest.file_name().unwrap());
    std::fs::copy(&newest, &file).unwrap();
    let log = std::fs::read_dir(server.dir.join("data").join("version-2"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("log.")))
        .expect("a transaction log");
    let txn_log = dir.path().join(log.file_name().unwrap());
    std::fs::copy(&log, &txn_log).unwrap();
    drop(c);
    drop(server);
    Fixture { _dir: dir, file, txn_log, root, session, stats, last_zxid }
}

/// `(path, ephemeralOwner)` of every node, per ZooKeeper's SnapshotFormatter,
/// and its node count.
fn formatter(file: &Path) -> (BTreeMap<String, i64>, u64) {
    let java = std::env::var("JAVA_HOME").map(|h| format!("{h}/bin/java")).unwrap_or_else(|_| "java".into());
    let out = std::process::Command::new(java)
        .args(["-cp", &zkrepl_testkit::local::classpath().unwrap(), "org.apache.zookeeper.server.SnapshotFormatter"])
        .arg(file)
        .output()
        .expect("run SnapshotFormatter");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "SnapshotFormatter failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let mut owners = BTreeMap::new();
    let mut count = None;
    let mut current: Option<String> = None;
    let mut after_rule = false;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("ZNode Details (count=").and_then(|r| r.strip_suffix("):")) {
            count = Some(n.parse::<u64>().unwrap());
        } else if line == "----" {
            after_rule = true;
            continue;
        } else if after_rule && line.starts_with('/') {
            current = Some(line.to_string());
        } else if let Some(hex) = line.trim().strip_prefix("ephemeralOwner = 0x") {
            let owner = u64::from_str_radix(hex, 16).unwrap() as i64;
            owners.insert(current.take().expect("owner after a path"), owner);
        }
        after_rule = false;
    }
    (owners, count.expect("a node count"))
}

fn snapshot_message(e: Error) -> String {
    match e {
        Error::Snapshot(m) => m,
        other => panic!("expected a snapshot error, got {other:?}"),
    }
}

/// Every check on one real snapshot.
async fn check(compression: Option<&str>, expect: Compression, suffix: &str) {
    let f = fixture(compression).await;
    let root = f.root.as_str();
    let file = f.file.as_path();
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("snapshot.") && name.ends_with(suffix), "{name}");
    let abs = |rel: &str| format!("{root}{rel}");

    // Kinds at or under the root: only containers and TTL nodes.
    let kinds = snapshot::read_kinds(file, root).unwrap();
    let want: HashMap<String, NodeKind> = HashMap::from([
        (abs("/c1"), NodeKind::Container),
        (abs("/c1/cc"), NodeKind::Container),
        (abs("/c2"), NodeKind::Container),
        (abs("/ttl1"), NodeKind::Ttl(TTL1)),
        (abs("/p1/ttl2"), NodeKind::Ttl(TTL_MAX)),
        (abs("/ttl3"), NodeKind::Ttl(TTL3)),
    ]);
    assert_eq!(kinds, want);
    assert_eq!(snapshot::read_kinds(file, "/").unwrap(), want, "nothing else on the server");
    let sub = snapshot::read_kinds(file, &abs("/p1")).unwrap();
    assert_eq!(sub, HashMap::from([(abs("/p1/ttl2"), NodeKind::Ttl(TTL_MAX))]));

    // The summary.
    let i = snapshot::info(file, root).unwrap();
    assert_eq!(i.compression, expect);
    assert_eq!(i.format_version, 2);
    assert_eq!(i.dbid, -1);
    assert_eq!(i.nodes, 13);
    assert_eq!(i.kinds, KindCounts { persistent: 6, ephemeral: 1, container: 3, ttl: 3 });
    assert_eq!(i.data_bytes, (5 + 9 + 1 + 1 + 2 + 1 + 2 + 4) as u64);
    assert_eq!(i.containers, vec![abs("/c1"), abs("/c1/cc"), abs("/c2")]);
    assert_eq!(
        i.ttl_nodes,
        vec![
            TtlNode { path: abs("/p1/ttl2"), ttl_ms: 0xff_ffff_ffff },
            TtlNode { path: abs("/ttl1"), ttl_ms: 3_600_000 },
            TtlNode { path: abs("/ttl3"), ttl_ms: 604_800_000 },
        ]
    );
    assert!(i.sessions >= 1, "the test's session is open");
    assert_eq!(i.file_zxid, Some(f.last_zxid), "the startup snapshot is named after the last transaction");
    assert_eq!(i.max_mzxid, f.last_zxid);
    assert!(i.last_zxid >= f.last_zxid);
    assert!(i.checksum_verified);
    // ZooKeeper 3.8 writes the tree digest and a second seal.
    assert_eq!(i.checksums, 2);
    assert!(i.digest.is_some());
    assert_eq!(i.file_bytes, std::fs::metadata(file).unwrap().len());
    if expect == Compression::None {
        assert_eq!(i.stream_bytes, i.file_bytes);
    }
    let all = snapshot::info(file, "/").unwrap();
    // Ours, plus the root, /zookeeper, /zookeeper/quota and /zookeeper/config.
    assert_eq!(all.nodes, all.nodes_total);
    assert_eq!(all.nodes_total, i.nodes + 4);

    // Every node, with its stat, against what the client saw.
    let mut owners = BTreeMap::new();
    // What the checks below looked at: each node the client saw, and each
    // node of a kind of its own.
    let mut checked = Vec::new();
    let mut kinds_checked = Vec::new();
    let h = snapshot::for_each_node(file, |n| {
        if let Some((czxid, mzxid)) = f.stats.get(&n.path) {
            assert_eq!((n.czxid, n.mzxid), (*czxid, *mzxid), "{}", n.path);
            checked.push(n.path.clone());
        }
        if [abs("/eph"), abs("/c1"), abs("/ttl1")].contains(&n.path) {
            kinds_checked.push(n.path.clone());
        }
        if n.path == abs("/eph") {
            assert_eq!(n.kind, SnapKind::Ephemeral(f.session));
            assert_eq!(n.data_len, 4);
        }
        if n.path == abs("/c1") {
            assert_eq!(n.kind, SnapKind::Container);
            assert_eq!(n.cversion, 2, "two children created");
        }
        if n.path == abs("/ttl1") {
            assert_eq!(n.ephemeral_owner, (0xff00_0000_0000_0000u64 | 3_600_000) as i64);
        }
        owners.insert(n.path, n.ephemeral_owner);
        Ok(())
    })
    .unwrap();
    assert_eq!(h.nodes, all.nodes_total);
    checked.sort();
    let mut seen: Vec<String> = f.stats.keys().cloned().collect();
    seen.sort();
    assert_eq!(checked, seen, "every node the client saw is in the snapshot, with its zxids");
    kinds_checked.sort();
    assert_eq!(kinds_checked, [abs("/c1"), abs("/eph"), abs("/ttl1")]);

    // ZooKeeper's own reader agrees on every path and ephemeralOwner.
    let (theirs, their_count) = formatter(file);
    assert_eq!(owners, theirs);
    // Its count is its map's size, which holds the root twice ("" and "/").
    assert_eq!(their_count, h.nodes + 1);

    // The binary.
    let out = zkrepl_async(vec!["snapshot-info".into(), file.display().to_string(), "--json".into()]).await;
    assert_exit(&out, 0);
    let j = json(&out);
    assert_eq!(j["compression"], expect.name());
    assert_eq!(j["kinds"]["container"], 3);
    assert_eq!(j["kinds"]["ttl"], 3);
    assert_eq!(j["kinds"]["ephemeral"], 1);
    assert_eq!(j["checksum_verified"], true);
    assert_eq!(j["last_zxid"], all.last_zxid);
    assert_eq!(j["containers"], serde_json::json!([abs("/c1"), abs("/c1/cc"), abs("/c2")]));
    assert_eq!(j["ttl_nodes"][0]["ttl_ms"], 0xff_ffff_ffffu64);
    let out = zkrepl_async(vec![
        "snapshot-info".into(),
        file.display().to_string(),
        "--root".into(),
        abs("/p1"),
        "--json".into(),
    ])
    .await;
    assert_exit(&out, 0);
    let j = json(&out);
    assert_eq!(j["nodes"], 4);
    assert_eq!(j["root"], abs("/p1"));
    let out =
        zkrepl_async(vec!["snapshot-info".into(), file.display().to_string(), "--root".into(), root.into()]).await;
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("checksum verified"), "{text}");
    assert!(text.contains(&abs("/c1/cc")) && text.contains(&abs("/p1/ttl2")), "{text}");

    damaged(&f).await;
}

/// A truncated copy, a flipped byte and foreign files: errors naming the
/// file, never panics, and exit status 2 from the binary.
async fn damaged(f: &Fixture) {
    let bytes = std::fs::read(&f.file).unwrap();
    let dir = f.file.parent().unwrap();
    let name = f.file.file_name().unwrap().to_str().unwrap().to_string();
    let cut = |n: usize| {
        let p = dir.join(format!("cut{n}-{name}"));
        std::fs::write(&p, &bytes[..n]).unwrap();
        p
    };
    for n in [bytes.len() / 2, bytes.len() - 1, bytes.len() - 14, 40, 3] {
        let p = cut(n);
        let m = snapshot_message(snapshot::info(&p, "/").unwrap_err());
        assert!(m.starts_with(&format!("snapshot {}: ", p.display())), "{m}");
        assert!(m.contains("offset"), "{m}");
        assert!(snapshot::read_kinds(&p, "/").is_err());
    }
    // A flipped byte in the middle of the file.
    for at in [bytes.len() / 2, bytes.len() / 3, bytes.len() - 30] {
        let mut b = bytes.clone();
        b[at] ^= 0x20;
        let p = dir.join(format!("flip{at}-{name}"));
        std::fs::write(&p, &b).unwrap();
        let m = snapshot_message(snapshot::read_kinds(&p, "/").unwrap_err());
        assert!(m.starts_with(&format!("snapshot {}: ", p.display())), "flip at {at}: {m}");
    }
    // Flipped in node data, of a plain file: a checksum mismatch.
    if !name.ends_with(".gz") && !name.ends_with(".snappy") {
        let at = bytes.windows(5).position(|w| w == b"hello").unwrap();
        let mut b = bytes.clone();
        b[at] = b'j';
        let p = dir.join(format!("data-{name}"));
        std::fs::write(&p, &b).unwrap();
        let m = snapshot_message(snapshot::info(&p, "/").unwrap_err());
        assert!(m.contains("invalid checksum at offset") && m.contains("corrupted"), "{m}");
        let out = zkrepl_async(vec!["snapshot-info".into(), p.display().to_string()]).await;
        assert_exit(&out, 2);
        assert!(stderr(&out).contains(&format!("snapshot {}", p.display())), "{}", stderr(&out));
    }
    // Not snapshots: the server's transaction log, random bytes.
    let m = snapshot_message(snapshot::info(&f.txn_log, "/").unwrap_err());
    assert!(m.contains("not a ZooKeeper snapshot"), "{m}");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let p = dir.join("random.bin");
    std::fs::write(&p, &random).unwrap();
    let m = snapshot_message(snapshot::info(&p, "/").unwrap_err());
    assert!(m.contains("not a ZooKeeper snapshot"), "{m}");
    let out = zkrepl_async(vec!["snapshot-info".into(), p.display().to_string(), "--json".into()]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("not a ZooKeeper snapshot"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_a_plain_snapshot() {
    check(None, Compression::None, "").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_a_gzip_snapshot() {
    check(Some("gz"), Compression::Gzip, ".gz").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_a_snappy_snapshot() {
    check(Some("snappy"), Compression::Snappy, ".snappy").await;
}
