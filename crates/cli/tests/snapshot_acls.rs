//! ACLs from a snapshot file (`--snapshot`): taken from it only where the
//! live stat shows the same node and no setACL since; every node created,
//! recreated or given another ACL after the snapshot is read live. Checked
//! against a real server's snapshot, and by a verify that reads every ACL
//! live.

mod common;

use std::time::{Duration, Instant};

use common::*;
use zkrepl_testkit::local::LocalServer;
use zookeeper_client as zk;

/// The test's own identity, which every ACL below grants ALL.
const OWNER: &str = "owner:secret";

fn owner_id() -> String {
    zkrepl::zk::target::Auth::parse(&format!("digest:{OWNER}")).unwrap().acl_id().unwrap().1
}

fn acl_of(kind: usize) -> Vec<zk::Acl> {
    match kind % 3 {
        0 => vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::anyone())],
        1 => vec![
            zk::Acl::new(zk::Permission::READ | zk::Permission::WRITE, zk::AuthId::anyone()),
            zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("ip", "127.0.0.1")),
        ],
        _ => vec![
            zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone()),
            zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", &owner_id())),
        ],
    }
}

async fn create(c: &zk::Client, path: &str, acl: &[zk::Acl]) {
    c.create(path, path.as_bytes(), &zk::CreateMode::Persistent.with_acls(zk::Acls::new(acl))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn acls_come_from_the_snapshot_only_where_the_live_stat_proves_them_current() {
    let p = pair();
    let opts = test_server_options();
    let server = tokio::task::spawn_blocking(move || LocalServer::start(&opts)).await.unwrap().unwrap();
    let root = unique_root("snapacl");
    {
        let c = connect_auth(&server.connect_string(), OWNER).await;
        c.mkdir(&root, &open()).await.unwrap();
        for d in 0..4 {
            create(&c, &format!("{root}/d{d}"), &acl_of(d)).await;
            for n in 0..15 {
                create(&c, &format!("{root}/d{d}/n{n}"), &acl_of(d + n)).await;
            }
        }
    }
    // A restart makes the server write a snapshot of what it loaded.
    let dir = tempfile::tempdir().unwrap();
    let (server, snapshot) = snapshot_of(server, dir.path().join("snapshot")).await;
    let src = server.connect_string();
    // After the snapshot: ACLs set, nodes recreated with other ACLs, new nodes.
    let c = connect_auth(&src, OWNER).await;
    for n in 0..5 {
        c.set_acl(&format!("{root}/d0/n{n}"), &acl_of(n + 1), None).await.unwrap();
        let path = format!("{root}/d1/n{n}");
        c.delete(&path, None).await.unwrap();
        create(&c, &path, &acl_of(n + 2)).await;
        create(&c, &format!("{root}/d2/new{n}"), &acl_of(n)).await;
    }
    let in_snapshot = 1 + 4 + 4 * 15;

    let dst = p.dst.connect_string();
    // ZooKeeper shows digest ids only to a session with ADMIN on the node.
    let owner = format!("digest:{OWNER}");
    let auth = ["--src-auth", owner.as_str(), "--dst-auth", owner.as_str()];
    let copy = |extra: &[&str]| {
        let mut a = args(&["copy", "--src", &src, "--dst", &dst, "--root", &root, "--json", "-q"]);
        a.extend(auth.iter().map(|s| s.to_string()));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let snap = snapshot.display().to_string();
    let out = zkrepl_async(copy(&["--snapshot", &snap])).await;
    assert_exit(&out, 0);
    let s = json(&out);
    let a = &s["acl_sources"];
    assert_eq!(a["snapshot_nodes"], in_snapshot, "{s}");
    assert_eq!(a["from_snapshot"], in_snapshot - 10, "every node unchanged since: {s}");
    assert_eq!(a["read"], 15, "set, recreated and new nodes read live: {s}");

    // Every ACL as the source has it now, read live on both sides.
    let mut live = args(&["verify", "--src", &src, "--dst", &dst, "--root", &root, "--json"]);
    live.extend(auth.iter().map(|s| s.to_string()));
    let out = zkrepl_async(live).await;
    assert_exit(&out, 0);
    let v = json(&out);
    assert_eq!(v["counts"]["acl_differs"], 0, "{v}");
    assert_eq!(v["compared"], in_snapshot + 5, "{v}");
    let dc = connect_auth(&dst, OWNER).await;
    let (acl, _) = dc.get_acl(&format!("{root}/d0/n0")).await.unwrap();
    assert_eq!(acl, acl_of(1), "the ACL set after the snapshot");
    let (acl, _) = dc.get_acl(&format!("{root}/d1/n0")).await.unwrap();
    assert_eq!(acl, acl_of(2), "the recreated node's ACL");

    // A sync takes its first copy's ACLs from the snapshot too.
    let mirror = format!("{root}-mirror");
    let mut sync = args(&["sync", "--src", &src, "--dst", &dst, "--root", &root, "--dst-root", &mirror]);
    sync.extend(["--snapshot", &snap, "--until-idle", "500ms", "--json"].iter().chain(&auth).map(|s| s.to_string()));
    let out = zkrepl_async(sync).await;
    assert_exit(&out, 0);
    // Status lines, then the report (the last document, over several lines).
    let text = stdout(&out);
    let at = text.rfind("\n{\n").map_or(0, |i| i + 1);
    let r: serde_json::Value = serde_json::from_str(&text[at..]).unwrap();
    assert_eq!(r["copy"]["acl_sources"]["from_snapshot"], in_snapshot - 10, "{r}");
    assert_eq!(r["copy"]["acl_sources"]["read"], 15, "{r}");

    // Verify with the snapshot on the source side; the source's snapshot
    // given for the destination (another ensemble, the same paths) vouches
    // for nothing there, and says so.
    let mut both = args(&["verify", "--src", &src, "--dst", &dst, "--root", &root]);
    both.extend(["--snapshot", &snap, "--dst-snapshot", &snap].iter().chain(&auth).map(|s| s.to_string()));
    let out = zkrepl_async(both).await;
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains(&format!("{} from the snapshot, 15 read live", in_snapshot - 10)), "{text}");
    assert!(text.contains("0 from the snapshot, 70 read live"), "{text}");
    assert!(text.contains("the snapshot vouched for no node"), "{text}");

    // A snapshot that is not one: refused before anything is read.
    let bad = std::env::temp_dir().join(format!("zkrepl-snapacl-{}", std::process::id()));
    std::fs::write(&bad, b"ZKSN\0\0\0\x02 cut short").unwrap();
    let out = zkrepl_async(args(&[
        "verify",
        "--src",
        &src,
        "--dst",
        &dst,
        "--root",
        &root,
        "--snapshot",
        bad.to_str().unwrap(),
    ]))
    .await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("snapshot"), "{}", stderr(&out));
    let _ = std::fs::remove_file(&bad);
}

/// Kills `server`, runs `meanwhile` (on its stopped data), starts it again
/// and waits until it serves.
async fn restarted(server: LocalServer, meanwhile: impl FnOnce(&LocalServer) + Send + 'static) -> LocalServer {
    tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.kill();
        meanwhile(&server);
        server.restart().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.mode().is_empty() {
            assert!(Instant::now() < deadline, "the server did not come back");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    })
    .await
    .unwrap()
}

/// Restarts `server` (it writes a snapshot of what it loaded) and returns
/// it with a copy of that snapshot, kept apart from its data directory.
async fn snapshot_of(server: LocalServer, keep: std::path::PathBuf) -> (LocalServer, std::path::PathBuf) {
    let server = restarted(server, |_| {}).await;
    let file = server.snapshots().pop().expect("a snapshot file");
    std::fs::copy(&file, &keep).unwrap();
    (server, keep)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_of_another_history_of_the_tree_is_refused_before_anything_is_written() {
    let p = pair();
    let opts = test_server_options();
    let server = tokio::task::spawn_blocking(move || LocalServer::start(&opts)).await.unwrap().unwrap();
    let root = unique_root("snaphist");
    let node = format!("{root}/x");
    let src = server.connect_string();
    let c = connect(&src).await;
    c.mkdir(&root, &open()).await.unwrap();
    create(&c, &node, &acl_of(0)).await;
    drop(c);
    let dir = tempfile::tempdir().unwrap();
    // Before the ACL is set, and after (its ACL version 1).
    let (server, before) = snapshot_of(server, dir.path().join("before")).await;
    let before_name = server.snapshots().pop().unwrap();
    connect(&src).await.set_acl(&node, &acl_of(1), None).await.unwrap();
    let (server, after) = snapshot_of(server, dir.path().join("after")).await;
    // The server restored from the first snapshot, then the ACL set to
    // another one: the same node, the same ACL version, another ACL.
    let data = server.snapshots().pop().unwrap().parent().unwrap().to_path_buf();
    let server = restarted(server, move |_| {
        for f in std::fs::read_dir(&data).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with("log.") || name.starts_with("snapshot.") {
                std::fs::remove_file(f.path()).unwrap();
            }
        }
        // Its name carries its zxid: the server loads the newest by name.
        let name = format!("snapshot.{:x}", zkrepl::snapshot::zxid_from_name(&before_name).unwrap_or(1));
        std::fs::copy(&before, data.join(name)).unwrap();
    })
    .await;
    let c = connect(&src).await;
    assert_eq!(c.get_acl(&node).await.unwrap().1.aversion, 0, "back as it was before the setACL");
    let other = vec![zk::Acl::new(zk::Permission::READ | zk::Permission::ADMIN, zk::AuthId::anyone())];
    c.set_acl(&node, &other, None).await.unwrap();
    let (_, stat) = c.get_acl(&node).await.unwrap();
    assert_eq!(stat.aversion, 1);

    let dst = p.dst.connect_string();
    let out = zkrepl_async(args(&[
        "copy",
        "--src",
        &src,
        "--dst",
        &dst,
        "--root",
        &root,
        "--snapshot",
        after.to_str().unwrap(),
    ]))
    .await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("another history of this tree"), "{}", stderr(&out));
    assert!(connect(&dst).await.check_stat(&root).await.unwrap().is_none(), "nothing written");
    // Without the snapshot the copy is right.
    let out = zkrepl_async(args(&["copy", "--src", &src, "--dst", &dst, "--root", &root, "-q"])).await;
    assert_exit(&out, 0);
    assert_eq!(connect(&dst).await.get_acl(&node).await.unwrap().0, other);
    drop(server);
}
