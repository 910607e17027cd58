//! Node kinds carried by a copy: read from a real server's snapshot file,
//! shown by the destination server's behaviour (it deletes emptied
//! containers and expired TTL nodes; clients cannot see kinds).

mod common;

use std::time::{Duration, Instant};

use common::*;
use zkrepl_testkit::local::{LocalServer, ServerOptions};
use zookeeper_client as zk;

async fn wait_gone(c: &zk::Client, paths: &[String], stay: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut left = Vec::new();
        for p in paths {
            if c.check_stat(p).await.unwrap().is_some() {
                left.push(p.clone());
            }
        }
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still there: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for p in stay {
        assert!(c.check_stat(p).await.unwrap().is_some(), "{p} should stay");
    }
}

async fn kinds_carried_over(compression: Option<&str>) {
    let p = pair();
    let opts = ServerOptions { snapshot_compression: compression.map(String::from), ..test_server_options() };
    // No reaping on the source: the kinds must survive until the snapshot.
    let opts = ServerOptions { container_check_ms: Some(600_000), ..opts };
    let mut src_server = tokio::task::spawn_blocking(move || LocalServer::start(&opts)).await.unwrap().unwrap();
    let root = "/app";
    {
        let c = connect(&src_server.connect_string()).await;
        create_tree(&c, root, &[("/locks", b""), ("/plain", b"p")]).await;
        let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
        let ttl = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()).with_ttl(Duration::from_millis(1500));
        c.create("/app/locks/c1", b"", &container).await.unwrap();
        c.create("/app/locks/c1/held", b"x", &open()).await.unwrap();
        c.create("/app/locks/c2", b"", &container).await.unwrap();
        c.create("/app/locks/c2/held", b"x", &open()).await.unwrap();
        c.create("/app/session-cache", b"v", &ttl).await.unwrap();
    }
    // A restart makes the server write a snapshot of everything it loaded.
    let server = tokio::task::spawn_blocking(move || {
        src_server.restart().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while src_server.mode().is_empty() {
            assert!(Instant::now() < deadline, "source did not come back");
            std::thread::sleep(Duration::from_millis(100));
        }
        src_server
    })
    .await
    .unwrap();
    let snapshot = server.snapshots().pop().expect("a snapshot file");
    if let Some(c) = compression {
        assert!(snapshot.to_string_lossy().ends_with(&format!(".{}", if c == "gz" { "gz" } else { "snappy" })));
    }
    // Created after the snapshot: no kind known, persistent.
    let c = connect(&server.connect_string()).await;
    c.create("/app/locks/late", b"", &zk::CreateMode::Container.with_acls(zk::Acls::anyone_all())).await.unwrap();
    c.create("/app/locks/late/x", b"", &open()).await.unwrap();

    let dst_root = unique_root("kinds");
    let out = zkrepl_async(
        [
            "copy",
            "--src",
            &server.connect_string(),
            "--dst",
            &p.dst.connect_string(),
            "--root",
            root,
            "--dst-root",
            &dst_root,
            "--kinds-from-snapshot",
            snapshot.to_str().unwrap(),
            "--json",
            "-q",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    assert_exit(&out, 0);
    let s = json(&out);
    assert_eq!((s["kinds"]["containers"].as_u64(), s["kinds"]["ttl"].as_u64()), (Some(2), Some(1)));
    assert_eq!(s["kinds"]["from_snapshot"], 3);

    let dst = connect(&p.dst.connect_string()).await;
    for held in ["c1/held", "c2/held", "late/x"] {
        dst.delete(&format!("{dst_root}/locks/{held}"), None).await.unwrap();
    }
    let gone: Vec<String> =
        ["/locks/c1", "/locks/c2", "/session-cache"].iter().map(|r| format!("{dst_root}{r}")).collect();
    let stay: Vec<String> = ["/locks", "/plain", "/locks/late"].iter().map(|r| format!("{dst_root}{r}")).collect();
    wait_gone(&dst, &gone, &stay).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kinds_from_a_plain_snapshot() {
    kinds_carried_over(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kinds_from_a_gzip_snapshot() {
    kinds_carried_over(Some("gz")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kinds_from_a_snappy_snapshot() {
    kinds_carried_over(Some("snappy")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_snapshot_is_refused_before_anything_is_written() {
    let p = pair();
    let src = connect(&p.src.connect_string()).await;
    let root = unique_root("badsnap");
    create_tree(&src, &root, &[("/a", b"1")]).await;
    let dir = std::env::temp_dir().join(format!("zkrepl-badsnap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("snapshot.100000001");
    std::fs::write(&file, b"ZKSN\0\0\0\x02 this is not a whole snapshot").unwrap();
    let out = zkrepl_async(
        ["copy", "--src", &p.src.connect_string(), "--dst", &p.dst.connect_string(), "--root", &root]
            .iter()
            .map(|s| s.to_string())
            .chain(["--kinds-from-snapshot".to_string(), file.display().to_string()])
            .collect(),
    )
    .await;
    std::fs::remove_dir_all(&dir).ok();
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("snapshot.100000001"), "{}", stderr(&out));
    let dst = connect(&p.dst.connect_string()).await;
    assert!(dst.check_stat(&root).await.unwrap().is_none());
}
