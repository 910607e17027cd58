//! `zkrepl copy` against real ZooKeeper servers.

mod common;

use std::time::{Duration, Instant};

use common::*;
use zkrepl_testkit::local::{LocalServer, ServerOptions};
use zookeeper_client as zk;

/// `zkrepl copy --src <src> --dst <dst> --root <root> -q <extra...>`
async fn copy(src: &str, dst: &str, root: &str, extra: &[&str]) -> std::process::Output {
    let mut a = args(&["copy", "--src", src, "--dst", dst, "--root", root, "-q"]);
    a.extend(args(extra));
    zkrepl_async(a).await
}

async fn pair_clients() -> (&'static Pair, zk::Client, zk::Client) {
    let p = pair();
    (p, connect(&p.src.connect_string()).await, connect(&p.dst.connect_string()).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_a_pegasus_shaped_tree_without_the_leader_lock() {
    let (p, src, dst) = pair_clients().await;
    let root = unique_root("pegasus");
    let mut nodes: Vec<(String, Vec<u8>)> = vec![("/apps".into(), b"unlock".to_vec())];
    for app in 1..=3 {
        nodes.push((format!("/apps/{app}"), format!(r#"{{"app_id":{app},"partition_count":4}}"#).into_bytes()));
        for pidx in 0..4 {
            nodes.push((format!("/apps/{app}/{pidx}"), format!(r#"{{"pid":"{app}.{pidx}","ballot":3}}"#).into_bytes()));
        }
    }
    for rel in ["/lock", "/lock/dsn.meta.server.leader"] {
        nodes.push((rel.into(), Vec::new()));
    }
    let refs: Vec<(&str, &[u8])> = nodes.iter().map(|(a, b)| (a.as_str(), b.as_slice())).collect();
    create_tree(&src, &root, &refs).await;
    let lock = format!("{root}/lock/dsn.meta.server.leader/LOCKNODE");
    src.create(&lock, b"127.0.0.1:34601", &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()))
        .await
        .unwrap();

    let out = copy(&p.src.connect_string(), &p.dst.connect_string(), &root, &["--json"]).await;
    assert_exit(&out, 0);
    let s = json(&out);
    assert_eq!(s["created"], nodes.len() as u64 + 1, "root + nodes");
    assert_eq!(s["skipped_ephemerals"], 1);
    assert_eq!(s["nodes_read"], nodes.len() as u64 + 1);
    assert_eq!(dump(&src, &root).await, dump(&dst, &root).await);
    let leader = dst.list_children(&format!("{root}/lock/dsn.meta.server.leader")).await.unwrap();
    assert!(leader.is_empty(), "the ephemeral lock node must not be copied: {leader:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_odd_names_binary_empty_and_near_limit_data() {
    let (p, src, dst) = pair_clients().await;
    let root = unique_root("odd");
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let binary: Vec<u8> = vec![0, 0, 255, 1, 0, 128, 0];
    create_tree(
        &src,
        &root,
        &[
            ("/with space", b"s"),
            ("/with space/ünïcødé 日本語 ☃", b"u"),
            ("/punct !\"#$%&'()*+,-.:;<=>?@[\\]^_`{|}~", b"p"),
            ("/.dot", b""),
            ("/..dots", b""),
            ("/zookeeper", b"not the system node: only /zookeeper at the server root is special"),
            ("/empty", b""),
            ("/binary", &binary),
            ("/big", &big),
        ],
    )
    .await;
    let out = copy(&p.src.connect_string(), &p.dst.connect_string(), &root, &["--json"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["created"], 10);
    let (a, b) = (dump(&src, &root).await, dump(&dst, &root).await);
    assert_eq!(a.len(), 10);
    assert_eq!(a, b);
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_a_parent_with_ten_thousand_children() {
    let (p, src, dst) = pair_clients().await;
    let root = unique_root("fanout");
    src.mkdir(&root, &open()).await.unwrap();
    let mut w = src.new_multi_writer();
    for i in 0..12_000 {
        w.add_create(&format!("{root}/child-{i:05}"), format!("{i}").as_bytes(), &open()).unwrap();
        if i % 1000 == 999 {
            w.commit().await.unwrap();
        }
    }
    let out = copy(&p.src.connect_string(), &p.dst.connect_string(), &root, &["--json"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["created"], 12_001);
    assert_eq!(dst.list_children(&root).await.unwrap().len(), 12_000);
    assert_eq!(dst.get_data(&format!("{root}/child-11999")).await.unwrap().0, b"11999");
}

#[tokio::test(flavor = "multi_thread")]
async fn preserves_acls_and_still_copies_under_restrictive_ones() {
    let (p, _, dst) = pair_clients().await;
    let root = unique_root("acl");
    let admin = connect_auth(&p.src.connect_string(), "admin:secret").await;
    let admin_id = zkrepl::zk::target::digest_id("admin:secret");
    create_tree(&admin, &root, &[]).await;
    let read_only = [zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())];
    let mixed = [
        zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone()),
        zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", &admin_id)),
    ];
    // A read-only parent with children: a naive copy could not create them.
    admin
        .create(&format!("{root}/ro"), b"r", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))
        .await
        .unwrap();
    admin.create(&format!("{root}/ro/child"), b"c", &open()).await.unwrap();
    admin.set_acl(&format!("{root}/ro"), &read_only, None).await.unwrap();
    admin
        .create(&format!("{root}/mixed"), b"m", &zk::CreateMode::Persistent.with_acls(zk::Acls::new(&mixed)))
        .await
        .unwrap();

    // Digest ids are shown only to sessions with ADMIN: without the
    // source's credentials the copy refuses rather than write `admin:x`.
    let out = copy(&p.src.connect_string(), &p.dst.connect_string(), &root, &[]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(&format!("{root}/mixed")) && err.contains("--src-auth"), "{err}");
    // Nodes created before the error that wait for their final ACL hold a
    // grant to that run's one-time identity, which the error line gives.
    let mut auth = vec!["--src-auth", "digest:admin:secret", "--dst-auth", "digest:admin:secret"];
    let run_auth = err.split("--dst-auth ").nth(1).and_then(|r| r.split([',', ' ']).next()).map(str::to_string);
    if let Some(run_auth) = &run_auth {
        assert!(run_auth.starts_with("digest:zkrepl-"), "{err}");
        auth.extend(["--dst-auth", run_auth]);
    }
    let out = copy(&p.src.connect_string(), &p.dst.connect_string(), &root, &[&["--update"], &auth[..]].concat()).await;
    assert_exit(&out, 0);
    let admin_dst = connect_auth(&p.dst.connect_string(), "admin:secret").await;
    assert_eq!(dump(&admin, &root).await, dump(&admin_dst, &root).await, "data and ACLs equal");
    let (acl, _) = dst.get_acl(&format!("{root}/ro")).await.unwrap();
    assert_eq!(acl, read_only.to_vec(), "the restrictive ACL is set once the children are in");

    // --acl open writes OPEN_ACL_UNSAFE everywhere.
    let out = copy(
        &p.src.connect_string(),
        &p.dst.connect_string(),
        &root,
        &["--acl", "open", "--dst-root", &format!("{root}-open")],
    )
    .await;
    assert_exit(&out, 0);
    for rel in ["", "/ro", "/ro/child", "/mixed"] {
        let (acl, _) = dst.get_acl(&format!("{root}-open{rel}")).await.unwrap();
        assert_eq!(acl, vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::anyone())], "{rel}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn names_the_path_it_may_not_read() {
    let (p, src, _) = pair_clients().await;
    let root = unique_root("noauth");
    let admin = connect_auth(&p.src.connect_string(), "owner:pw").await;
    create_tree(&admin, &root, &[("/open", b"x")]).await;
    let id = zkrepl::zk::target::digest_id("owner:pw");
    let secret = [zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", &id))];
    admin
        .create(&format!("{root}/secret"), b"s", &zk::CreateMode::Persistent.with_acls(zk::Acls::new(&secret)))
        .await
        .unwrap();
    let _ = src;

    let out =
        copy(&p.src.connect_string(), &p.dst.connect_string(), &root, &["--dst-root", &format!("{root}-a")]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(&format!("{root}/secret")) && err.contains("--src-auth"), "{err}");

    // With the right credentials it copies.
    let out = copy(
        &p.src.connect_string(),
        &p.dst.connect_string(),
        &root,
        &["--dst-root", &format!("{root}-b"), "--src-auth", "digest:owner:pw", "--dst-auth", "digest:owner:pw"],
    )
    .await;
    assert_exit(&out, 0);
    // A wrong password is accepted at connect time by ZooKeeper and shows as NoAuth.
    let out = copy(
        &p.src.connect_string(),
        &p.dst.connect_string(),
        &root,
        &["--dst-root", &format!("{root}-c"), "--src-auth", "digest:owner:wrong"],
    )
    .await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains(&format!("{root}/secret")), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_containers_and_ttl_nodes_from_globs() {
    let (p, src, dst) = pair_clients().await;
    let root = unique_root("kinds");
    create_tree(
        &src,
        &root,
        &[
            ("/locks", b""),
            ("/locks/a", b""),
            ("/locks/a/held", b"x"),
            ("/cache", b""),
            ("/cache/item", b"v"),
            ("/keep", b"k"),
        ],
    )
    .await;
    let out = copy(
        &p.src.connect_string(),
        &p.dst.connect_string(),
        &root,
        &["--container", &format!("{root}/locks/*"), "--ttl", &format!("{root}/cache/*=1s"), "--json"],
    )
    .await;
    assert_exit(&out, 0);
    let s = json(&out);
    assert_eq!(s["kinds"]["containers"], 1);
    assert_eq!(s["kinds"]["ttl"], 1);
    // A container goes once its last child goes; a TTL node once its TTL
    // passes unchanged; persistent nodes stay. The test servers check every 500 ms.
    dst.delete(&format!("{root}/locks/a/held"), None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let container_gone = dst.check_stat(&format!("{root}/locks/a")).await.unwrap().is_none();
        let ttl_gone = dst.check_stat(&format!("{root}/cache/item")).await.unwrap().is_none();
        if container_gone && ttl_gone {
            break;
        }
        assert!(Instant::now() < deadline, "container gone: {container_gone}, ttl gone: {ttl_gone}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(dst.check_stat(&format!("{root}/keep")).await.unwrap().is_some());
    assert!(dst.check_stat(&format!("{root}/locks")).await.unwrap().is_some(), "persistent parent stays");
    assert!(src.check_stat(&format!("{root}/cache/item")).await.unwrap().is_some(), "source untouched");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_without_ttl_support_is_a_clear_error() {
    let (p, src, _) = pair_clients().await;
    let plain = tokio::task::spawn_blocking(|| LocalServer::start(&ServerOptions::default())).await.unwrap().unwrap();
    let root = unique_root("nottl");
    create_tree(&src, &root, &[("/t", b"x")]).await;
    let out = copy(&p.src.connect_string(), &plain.connect_string(), &root, &["--ttl", &format!("{root}/t=1h")]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("extendedTypesEnabled"), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("{root}/t")), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn update_and_mirror_converge_and_dry_run_writes_nothing() {
    let (p, src, dst) = pair_clients().await;
    let root = unique_root("modes");
    let (s, d) = (p.src.connect_string(), p.dst.connect_string());
    create_tree(&src, &root, &[("/same", b"1"), ("/changed", b"new"), ("/new", b"n"), ("/new/deep", b"d")]).await;
    create_tree(&dst, &root, &[("/same", b"1"), ("/changed", b"old"), ("/extra", b"e"), ("/extra/x", b"x")]).await;
    let before = dump(&dst, &root).await;

    // Not empty: refused without a mode.
    let out = copy(&s, &d, &root, &[]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--update"), "{}", stderr(&out));

    // Dry runs plan and write nothing.
    let out = copy(&s, &d, &root, &["--mirror", "--dry-run", "--json"]).await;
    assert_exit(&out, 0);
    let plan = &json(&out)["plan"];
    assert_eq!(plan["creates"], 2);
    assert_eq!(plan["data_updates"], 1);
    assert_eq!(plan["deletes"], 2);
    assert_eq!(plan["first_deletes"].as_array().unwrap().len(), 2);
    assert_eq!(dump(&dst, &root).await, before, "dry run wrote nothing");

    // --max-delete is a safety net: over the limit, nothing at all is
    // written (the deletions are counted before any write); a dry run shows
    // the plan and says the real run would refuse.
    let dst_stats = stats_under(&dst, &root).await;
    let out = copy(&s, &d, &root, &["--mirror", "--max-delete", "1"]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("--max-delete") && err.contains("nothing was written"), "{err}");
    assert_eq!(stats_under(&dst, &root).await, dst_stats, "nothing written");
    let out = copy(&s, &d, &root, &["--mirror", "--max-delete", "1", "--dry-run", "--json"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["plan"]["deletes"], 2);
    assert!(stderr(&out).contains("would refuse"), "{}", stderr(&out));

    // --update: creates and sets, keeps extras.
    let out = copy(&s, &d, &root, &["--update", "--json"]).await;
    assert_exit(&out, 0);
    let j = json(&out);
    assert_eq!((j["created"].as_u64(), j["data_updated"].as_u64(), j["deleted"].as_u64()), (Some(2), Some(1), Some(0)));
    assert_eq!(dst.get_data(&format!("{root}/changed")).await.unwrap().0, b"new");
    assert!(dst.check_stat(&format!("{root}/extra/x")).await.unwrap().is_some());

    // With a limit that allows it, the mirror goes ahead.
    let out = copy(&s, &d, &root, &["--mirror", "--max-delete", "2", "--dry-run"]).await;
    assert_exit(&out, 0);

    // --mirror deletes what the source lacks (children first), and a re-run does nothing.
    let out = copy(&s, &d, &root, &["--mirror", "--json"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["deleted"], 2);
    assert_eq!(dump(&src, &root).await, dump(&dst, &root).await);
    let out = copy(&s, &d, &root, &["--mirror", "--json"]).await;
    assert_exit(&out, 0);
    let j = json(&out);
    assert_eq!((j["created"].as_u64(), j["data_updated"].as_u64(), j["deleted"].as_u64()), (Some(0), Some(0), Some(0)));
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_to_another_root_creating_ancestors_and_with_zkcopy_syntax() {
    let (p, src, dst) = pair_clients().await;
    let root = unique_root("ancestors");
    create_tree(&src, &root, &[("/a", b"1")]).await;
    let target = format!("{root}-new/deeper/still");
    let out = copy(&p.src.connect_string(), &p.dst.connect_string(), &root, &["--dst-root", &target]).await;
    assert_exit(&out, 0);
    assert_eq!(dst.get_data(&format!("{target}/a")).await.unwrap().0, b"1");

    let target2 = format!("{root}-zkcopy");
    let out = zkrepl_async(args(&[
        "copy",
        "--source",
        &format!("{}{root}", p.src.connect_string()),
        "--target",
        &format!("{}{target2}", p.dst.connect_string()),
        "-q",
    ]))
    .await;
    assert_exit(&out, 0);
    assert_eq!(dump(&src, &root).await, dump(&dst, &target2).await);

    // A chroot on either side.
    let out = copy(
        &format!("{}{root}", p.src.connect_string()),
        &format!("{}{target2}", p.dst.connect_string()),
        "/a",
        &["--dst-root", "/a-again"],
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(dst.get_data(&format!("{target2}/a-again")).await.unwrap().0, b"1");
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_with_verify_reports_equality() {
    let (p, src, _) = pair_clients().await;
    let root = unique_root("withverify");
    create_tree(&src, &root, &[("/a", b"1"), ("/a/b", b"2")]).await;
    let out = copy(&p.src.connect_string(), &p.dst.connect_string(), &root, &["--verify", "--json"]).await;
    assert_exit(&out, 0);
    let j = json(&out);
    assert_eq!(j["verify"]["compared"], 3);
    assert_equal_digests(&j["verify"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_fails_clearly_and_writes_nothing() {
    let (p, src, dst) = pair_clients().await;
    let root = unique_root("bad");
    create_tree(&src, &root, &[("/a", b"1")]).await;
    let (s, d) = (p.src.connect_string(), p.dst.connect_string());
    let dead = format!("127.0.0.1:{}", zkrepl_testkit::local::free_port().unwrap());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (args(&["copy", "--src", &dead, "--dst", &d, "--root", &root, "--timeout", "2s"]), "cannot reach source"),
        (args(&["copy", "--src", &s, "--dst", &dead, "--root", &root, "--timeout", "2s"]), "cannot reach destination"),
        (args(&["copy", "--src", &s, "--dst", &d, "--root", &format!("{root}/missing")]), "does not exist"),
        // One ensemble on both sides: the missing source is what to fix first.
        (args(&["copy", "--src", &s, "--dst", &s, "--root", &format!("{root}/missing")]), "does not exist"),
        (
            args(&["copy", "--src", &s, "--dst", &s, "--root", &format!("{root}/missing"), "--dst-root", "/"]),
            "does not exist",
        ),
        (args(&["copy", "--src", &s, "--dst", &d, "--root", "relative/path"]), "must start with '/'"),
        (args(&["copy", "--src", &s, "--dst", &d, "--root", "/a//b"]), "invalid path"),
        (args(&["copy", "--src", "host:notaport", "--dst", &d, "--root", &root]), "bad port"),
        (args(&["copy", "--src", &s, "--dst", &d, "--root", &root, "--src-auth", "nocolon"]), "scheme:credential"),
        (args(&["copy", "--src", &s, "--dst", &s, "--root", &root]), "is the source root"),
        (
            args(&["copy", "--src", &s, "--dst", &s, "--root", &root, "--dst-root", &format!("{root}/a/inside")]),
            "inside the source root",
        ),
        (
            args(&[
                "copy",
                "--src",
                &s,
                "--dst",
                &s.replace("127.0.0.1", "localhost"),
                "--root",
                &root,
                "--dst-root",
                "/",
            ]),
            "contains the source root",
        ),
    ];
    for (a, expect) in cases {
        let started = Instant::now();
        let out = zkrepl_async(a.clone()).await;
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains(expect), "{a:?}: expected {expect:?} in {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(started.elapsed() < Duration::from_secs(15), "{a:?} took {:?}", started.elapsed());
    }
    assert!(dst.check_stat(&root).await.unwrap().is_none(), "nothing written");
    assert!(src.check_stat(&format!("{root}/a/inside")).await.unwrap().is_none(), "nothing written to the source");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_larger_than_the_destination_accepts_is_named() {
    let (p, src, _) = pair_clients().await;
    let small = tokio::task::spawn_blocking(|| {
        LocalServer::start(&ServerOptions { jute_maxbuffer: Some(100_000), ..ServerOptions::default() })
    })
    .await
    .unwrap()
    .unwrap();
    let root = unique_root("toolarge");
    let big = vec![7u8; 200_000];
    create_tree(&src, &root, &[("/ok", b"small"), ("/huge", &big)]).await;
    let out = copy(&p.src.connect_string(), &small.connect_string(), &root, &["--max-request-bytes", "100000"]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(&format!("{root}/huge")) && err.contains("jute.maxbuffer"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn root_slash_onto_a_fresh_ensemble_skips_only_the_system_zookeeper_node() {
    // A dedicated pair: the whole tree is copied, without --update: the
    // destination's own /zookeeper does not make it "not empty".
    let Pair { src: a, dst: b } = own_pair().await;
    let src = connect(&a.connect_string()).await;
    create_tree(&src, "/app", &[("/zookeeper", b"a child named zookeeper is copied"), ("/x", b"1")]).await;
    let whole = |extra: &[&str]| {
        let mut v = args(&["copy", "--src", &a.connect_string(), "--dst", &b.connect_string(), "--root", "/", "-q"]);
        v.extend(args(extra));
        zkrepl_async(v)
    };
    let out = whole(&["--json"]).await;
    assert_exit(&out, 0);
    let j = json(&out);
    assert!(j["skipped_system"].as_u64().unwrap() >= 1);
    assert_eq!(j["created"], 3, "/app and its two children: {j}");
    let dst = connect(&b.connect_string()).await;
    assert_eq!(dst.get_data("/app/zookeeper").await.unwrap().0, b"a child named zookeeper is copied");
    assert_eq!(dump(&src, "/").await, dump(&dst, "/").await);

    // Any other child still makes it not empty.
    let out = whole(&[]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("has 1 children") && stderr(&out).contains("--update"), "{}", stderr(&out));
    let out = whole(&["--update", "--json"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["created"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn never_writes_to_the_source_or_outside_the_destination_root() {
    let Pair { src: a, dst: b } = own_pair().await;
    let src = connect(&a.connect_string()).await;
    let dst = connect(&b.connect_string()).await;
    create_tree(&src, "/data", &[("/a", b"1"), ("/a/b", b"2"), ("/c", b"3")]).await;
    create_tree(&dst, "/other", &[("/keep", b"k")]).await;
    create_tree(&dst, "/target", &[("/stale", b"s")]).await;
    // Sessions opening and closing are transactions too: compare what a
    // write would change, every node's stat.
    let src_before = stats(&src).await;
    let other_before = dump(&dst, "/other").await;
    let root_children_before = dst.list_children("/").await.unwrap();
    let out = zkrepl_async(args(&[
        "copy",
        "--src",
        &a.connect_string(),
        "--dst",
        &b.connect_string(),
        "--root",
        "/data",
        "--dst-root",
        "/target",
        "--mirror",
        "--verify",
        "-q",
    ]))
    .await;
    assert_exit(&out, 0);
    assert_eq!(stats(&src).await, src_before, "no node of the source changed in any way");
    assert_eq!(dump(&dst, "/other").await, other_before);
    let mut after = dst.list_children("/").await.unwrap();
    let mut before = root_children_before;
    after.sort();
    before.sort();
    assert_eq!(after, before, "nothing created beside the destination root");
    assert!(dst.check_stat("/target/stale").await.unwrap().is_none(), "mirror deleted inside the root");
}

#[tokio::test(flavor = "multi_thread")]
async fn many_long_sibling_names_are_read_in_several_requests() {
    // 600 siblings with 2000-character names: one read batch of their
    // paths would be a 1.2 MB request, beyond the server's jute.maxbuffer.
    let (p, src, dst) = pair_clients().await;
    let root = unique_root("longnames");
    src.mkdir(&root, &open()).await.unwrap();
    let mut w = src.new_multi_writer();
    for i in 0..600 {
        let name = format!("{i:04}-{}", "n".repeat(1995));
        w.add_create(&format!("{root}/{name}"), format!("{i}").as_bytes(), &open()).unwrap();
        if i % 100 == 99 {
            w.commit().await.unwrap();
        }
    }
    let out = copy(&p.src.connect_string(), &p.dst.connect_string(), &root, &["--json", "--timeout", "20s"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["created"], 601);
    assert_eq!(dump(&src, &root).await, dump(&dst, &root).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_multi_read_the_same_copy_and_verify() {
    // Servers older than 3.6 have no multiRead: the pipelined path.
    let (p, src, dst) = pair_clients().await;
    let root = unique_root("nomultiread");
    let mut nodes: Vec<(String, Vec<u8>)> = Vec::new();
    for a in 0..20 {
        nodes.push((format!("/a{a}"), vec![a as u8; 100]));
        for b in 0..30 {
            nodes.push((format!("/a{a}/b{b}"), format!("{a}.{b}").into_bytes()));
        }
    }
    let refs: Vec<(&str, &[u8])> = nodes.iter().map(|(a, b)| (a.as_str(), b.as_slice())).collect();
    create_tree(&src, &root, &refs).await;
    for acl in ["preserve", "open"] {
        let target = format!("{root}-{acl}");
        let out = copy(
            &p.src.connect_string(),
            &p.dst.connect_string(),
            &root,
            &["--no-multi-read", "--acl", acl, "--dst-root", &target, "--json"],
        )
        .await;
        assert_exit(&out, 0);
        assert_eq!(json(&out)["created"], 621);
        assert_eq!(dump(&src, &root).await, dump(&dst, &target).await);
    }
    let out = on_pair("verify", &root, &["--dst-root", &format!("{root}-preserve"), "--no-multi-read", "--json"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["compared"], 621);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_ensemble_under_another_address_is_recognised() {
    // A proxy (as a VIP, an alias or another member would) hides that the
    // destination is the source itself.
    let (p, src, _) = pair_clients().await;
    let root = unique_root("alias");
    create_tree(&src, &root, &[("/a", b"1"), ("/b", b"2")]).await;
    let alias = zkrepl_testkit::proxy::FaultProxy::to_port(p.src.port).await;
    let own = |v: Vec<(String, zk::Stat)>| v.into_iter().filter(|(p, _)| p.starts_with(&root)).collect::<Vec<_>>();
    let before = own(stats(&src).await);
    for (dst_root, extra) in
        [(format!("{root}/b/copy"), vec![]), (root.clone(), vec!["--update"]), ("/".to_string(), vec!["--mirror"])]
    {
        let mut a = vec!["--dst-root", dst_root.as_str()];
        a.extend(extra);
        let out = copy(&p.src.connect_string(), &alias.connect_string(), &root, &a).await;
        assert_exit(&out, 2);
        assert!(stderr(&out).contains("same ensemble"), "{dst_root}: {}", stderr(&out));
    }
    assert_eq!(own(stats(&src).await), before, "nothing written to the source");
    // The whole tree copied onto itself from the server root, too.
    let out = copy(&p.src.connect_string(), &alias.connect_string(), "/", &["--dst-root", "/", "--update"]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("same ensemble"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn large_nodes_are_read_within_a_byte_budget() {
    // 60 nodes of 1 MB after 3000 small ones: reads are bounded in bytes,
    // not only in count, with ACL reads (sizes known first) and without
    // (the large siblings begin a read of their own, whose first chunk is
    // 16 nodes: a chunk sized for small nodes took all 60 MB in one reply).
    let (p, src, dst) = pair_clients().await;
    let root = unique_root("large");
    src.mkdir(&root, &open()).await.unwrap();
    let mut w = src.new_multi_writer();
    for i in 0..3000 {
        w.add_create(&format!("{root}/a{i:05}"), b"small", &open()).unwrap();
        if i % 1000 == 999 {
            w.commit().await.unwrap();
        }
    }
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    for i in 0..60 {
        src.create(&format!("{root}/b{i:03}"), &big, &open()).await.unwrap();
    }
    for (acl, target) in [("preserve", format!("{root}-a")), ("open", format!("{root}-b"))] {
        let out = copy(
            &p.src.connect_string(),
            &p.dst.connect_string(),
            &root,
            &["--acl", acl, "--dst-root", &target, "--json"],
        )
        .await;
        assert_exit(&out, 0);
        let s = json(&out);
        assert_eq!(s["created"], 3061);
        let rss = s["peak_rss_bytes"].as_u64().unwrap();
        assert!(rss < 150 << 20, "--acl {acl}: peak RSS {} MiB for a 63 MB tree", rss >> 20);
    }
    let out = on_pair("verify", &root, &["--dst-root", &format!("{root}-b"), "--no-acl", "--json"]).await;
    assert_exit(&out, 0);
    assert!(
        json(&out)["peak_rss_bytes"].as_u64().unwrap() < 150 << 20,
        "verify peak RSS {} MiB",
        json(&out)["peak_rss_bytes"].as_u64().unwrap() >> 20
    );
    let out =
        zkrepl_async(args(&["digest", "--zk", &p.src.connect_string(), "--root", &root, "--no-acl", "--json"])).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["nodes"], 3061);
    // The server is still serving.
    assert!(dst.check_stat(&format!("{root}-b/b059")).await.unwrap().is_some());
    assert_eq!(zkrepl_testkit::local::four_letter(p.src.port, "ruok"), "imok");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_copy_leaves_no_node_open_to_anyone() {
    let (p, src, dst) = pair_clients().await;
    let root = unique_root("nopen");
    let read_only = vec![zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())];
    create_tree(&src, &root, &[("/ro", b"secret"), ("/ro/child", b"c"), ("/a-big", &[7u8; 4000])]).await;
    src.set_acl(&format!("{root}/ro"), &read_only, None).await.unwrap();
    // /a-big is too large for the limit given: the copy fails after /ro was
    // created writable for it (siblings are taken in reverse name order).
    let out = copy(&p.src.connect_string(), &p.dst.connect_string(), &root, &["--max-request-bytes", "2000"]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    let (acl, _) = dst.get_acl(&format!("{root}/ro")).await.unwrap();
    for a in &acl {
        let world = a.auth_id().scheme() == "world";
        assert!(!world || a.permission() == zk::Permission::READ, "nobody else may write: {acl:?}");
    }
    // The error says how to finish: the same command with the run's identity.
    let run_auth = err.split("--dst-auth ").nth(1).and_then(|r| r.split([',', ' ']).next()).expect(&err).to_string();
    src.set_data(&format!("{root}/a-big"), b"small now", None).await.unwrap();
    let out =
        copy(&p.src.connect_string(), &p.dst.connect_string(), &root, &["--update", "--dst-auth", &run_auth]).await;
    assert_exit(&out, 0);
    let (acl, _) = dst.get_acl(&format!("{root}/ro")).await.unwrap();
    assert_eq!(acl, read_only, "the final ACL, and only it");
    assert_eq!(dump(&src, &root).await, dump(&dst, &root).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_deletes_beneath_a_node_before_making_it_read_only() {
    let (p, src, dst) = pair_clients().await;
    let root = unique_root("mirrorro");
    let read_only = vec![zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())];
    create_tree(&src, &root, &[("/x", b"x")]).await;
    src.set_acl(&format!("{root}/x"), &read_only, None).await.unwrap();
    create_tree(&dst, &root, &[("/x", b"x"), ("/x/extra", b"e")]).await;
    let out = copy(&p.src.connect_string(), &p.dst.connect_string(), &root, &["--mirror", "--json"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["deleted"], 1);
    assert!(dst.list_children(&format!("{root}/x")).await.unwrap().is_empty());
    assert_eq!(dst.get_acl(&format!("{root}/x")).await.unwrap().0, read_only);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_deletes_beneath_a_destination_only_node_that_denies_delete_or_refuses_by_name() {
    let (p, src, dst) = pair_clients().await;
    let (s, d) = (p.src.connect_string(), p.dst.connect_string());
    // Only the destination has /x, with a child; its ACL denies DELETE
    // (checked on the parent) but grants ADMIN: the copy grants itself
    // DELETE, and both go.
    let root = unique_root("mirrordel");
    create_tree(&src, &root, &[("/keep", b"k")]).await;
    create_tree(&dst, &root, &[("/keep", b"k"), ("/x", b""), ("/x/y", b"")]).await;
    let no_delete = zk::Permission::READ | zk::Permission::WRITE | zk::Permission::CREATE | zk::Permission::ADMIN;
    dst.set_acl(&format!("{root}/x"), &[zk::Acl::new(no_delete, zk::AuthId::anyone())], None).await.unwrap();
    let out = copy(&s, &d, &root, &["--mirror", "--json"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["deleted"], 2);
    assert!(dst.check_stat(&format!("{root}/x")).await.unwrap().is_none());

    // Without ADMIN either: refused by name, nothing deleted.
    let root = unique_root("mirrornodel");
    create_tree(&src, &root, &[("/keep", b"k")]).await;
    create_tree(&dst, &root, &[("/keep", b"k"), ("/gone", b""), ("/z", b""), ("/z/w", b"")]).await;
    let read_create = zk::Permission::READ | zk::Permission::CREATE;
    dst.set_acl(&format!("{root}/z"), &[zk::Acl::new(read_create, zk::AuthId::anyone())], None).await.unwrap();
    let out = copy(&s, &d, &root, &["--mirror"]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(&format!("{root}/z")) && err.contains("nothing was deleted"), "{err}");
    for n in ["/gone", "/z", "/z/w"] {
        assert!(dst.check_stat(&format!("{root}{n}")).await.unwrap().is_some(), "{n} kept");
    }
    // With --max-delete the deletions are counted first: refused before any write.
    // (Only beneath the root: other tests write to this server meanwhile.)
    let before = stats_under(&dst, &root).await;
    let out = copy(&s, &d, &root, &["--mirror", "--max-delete", "10"]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("nothing was written"), "{}", stderr(&out));
    assert_eq!(stats_under(&dst, &root).await, before);
}
