//! `zkrepl copy` against real ZooKeeper servers.

mod common;

use common::*;
use zookeeper_client as zk;

fn copy_args(src: &str, dst: &str, root: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["copy", "--src", src, "--dst", dst, "--root", root, "-q"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_a_pegasus_shaped_tree_without_the_leader_lock() {
    let p = pair();
    let root = unique_root("pegasus");
    let src = connect(&p.src.connect_string()).await;
    let mut nodes: Vec<(String, Vec<u8>)> = vec![("/apps".into(), b"unlock".to_vec())];
    for app in 1..=3 {
        nodes.push((
            format!("/apps/{app}"),
            format!(r#"{{"app_id":{app},"partition_count":4}}"#).into_bytes(),
        ));
        for pidx in 0..4 {
            nodes.push((
                format!("/apps/{app}/{pidx}"),
                format!(r#"{{"pid":"{app}.{pidx}","ballot":3}}"#).into_bytes(),
            ));
        }
    }
    for rel in ["/lock", "/lock/dsn.meta.server.leader"] {
        nodes.push((rel.into(), Vec::new()));
    }
    let refs: Vec<(&str, &[u8])> = nodes
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_slice()))
        .collect();
    create_tree(&src, &root, &refs).await;
    let lock = format!("{root}/lock/dsn.meta.server.leader/LOCKNODE");
    src.create(
        &lock,
        b"127.0.0.1:34601",
        &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()),
    )
    .await
    .unwrap();

    let out = zkrepl_async(copy_args(
        &p.src.connect_string(),
        &p.dst.connect_string(),
        &root,
        &["--json"],
    ))
    .await;
    assert_exit(&out, 0);
    let s = json(&out);
    assert_eq!(s["created"], nodes.len() as u64 + 1, "root + nodes");
    assert_eq!(s["skipped_ephemerals"], 1);

    let dst = connect(&p.dst.connect_string()).await;
    assert_eq!(dump(&src, &root).await, dump(&dst, &root).await);
    let leader = dst
        .list_children(&format!("{root}/lock/dsn.meta.server.leader"))
        .await
        .unwrap();
    assert!(
        leader.is_empty(),
        "the ephemeral lock node must not be copied: {leader:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_a_non_empty_destination_without_update() {
    let p = pair();
    let root = unique_root("nonempty");
    let src = connect(&p.src.connect_string()).await;
    let dst = connect(&p.dst.connect_string()).await;
    create_tree(&src, &root, &[("/a", b"1")]).await;
    create_tree(&dst, &root, &[("/other", b"x")]).await;
    let out = zkrepl_async(copy_args(
        &p.src.connect_string(),
        &p.dst.connect_string(),
        &root,
        &[],
    ))
    .await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--update"), "{}", stderr(&out));
    assert!(
        dst.check_stat(&format!("{root}/a"))
            .await
            .unwrap()
            .is_none(),
        "nothing written"
    );
}
