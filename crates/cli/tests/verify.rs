//! `zkrepl verify` and `zkrepl digest` against real ZooKeeper servers.

mod common;

use common::*;
use serde_json::Value;
use zookeeper_client as zk;

async fn verify(root: &str, extra: &[&str]) -> std::process::Output {
    on_pair("verify", root, &[&["--json"], extra].concat()).await
}

async fn copy_fresh(root: &str) {
    let out = on_pair("copy", root, &["-q"]).await;
    assert_exit(&out, 0);
}

fn classes(report: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["class"].as_str().unwrap().to_string(), d["path"].as_str().unwrap().to_string()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn equal_trees_exit_zero_with_equal_digests() {
    let p = pair();
    let root = unique_root("equal");
    let src = connect(&p.src.connect_string()).await;
    create_tree(&src, &root, &[("/a", b"1"), ("/a/b", b"\0\x01binary"), ("/empty", b"")]).await;
    copy_fresh(&root).await;
    let out = verify(&root, &[]).await;
    assert_exit(&out, 0);
    let r = json(&out);
    assert_eq!(r["compared"], 4);
    assert_eq!(r["src_nodes"], 4);
    assert!(r["src_digest"].is_string());
    assert_eq!(r["src_digest"], r["dst_digest"]);
    assert_eq!(r["differences"].as_array().unwrap().len(), 0);

    // The human report says so too.
    let human = on_pair("verify", &root, &[]).await;
    assert_exit(&human, 0);
    assert!(stdout(&human).contains("EQUAL"), "{}", stdout(&human));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_planted_difference_is_reported_with_its_path_and_class() {
    let p = pair();
    let root = unique_root("planted");
    let src = connect(&p.src.connect_string()).await;
    let dst = connect(&p.dst.connect_string()).await;
    create_tree(
        &src,
        &root,
        &[("/same", b"s"), ("/data", b"before"), ("/acl", b"a"), ("/gone", b"g"), ("/gone/sub", b"x")],
    )
    .await;
    copy_fresh(&root).await;
    dst.set_data(&format!("{root}/data"), b"after", None).await.unwrap();
    dst.set_acl(&format!("{root}/acl"), &[zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())], None)
        .await
        .unwrap();
    dst.delete(&format!("{root}/gone/sub"), None).await.unwrap();
    dst.delete(&format!("{root}/gone"), None).await.unwrap();
    dst.create(&format!("{root}/extra"), b"e", &open()).await.unwrap();
    dst.create(&format!("{root}/extra/deep"), b"e", &open()).await.unwrap();

    let out = verify(&root, &[]).await;
    assert_exit(&out, 1);
    let r = json(&out);
    assert_eq!(
        classes(&r),
        vec![
            ("acl_differs".to_string(), "/acl".to_string()),
            ("data_differs".to_string(), "/data".to_string()),
            ("extra_on_dst".to_string(), "/extra".to_string()),
            ("extra_on_dst".to_string(), "/extra/deep".to_string()),
            ("missing_on_dst".to_string(), "/gone".to_string()),
            ("missing_on_dst".to_string(), "/gone/sub".to_string()),
        ]
    );
    let c = &r["counts"];
    assert_eq!((c["missing_on_dst"].as_u64(), c["extra_on_dst"].as_u64()), (Some(2), Some(2)));
    assert!(r["src_digest"].is_string() && r["dst_digest"].is_string(), "{r}");
    assert_ne!(r["src_digest"], r["dst_digest"]);

    // The human report: one path per line, with its symbol.
    let human = on_pair("verify", &root, &["--limit", "3"]).await;
    assert_exit(&human, 1);
    let text = stdout(&human);
    assert!(text.contains("DIFFERENT"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with(['-', '+', '*'])).count(), 3, "{text}");
    assert!(text.contains("and 3 more"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn acl_only_differences_count_unless_acls_are_skipped() {
    let p = pair();
    let root = unique_root("aclonly");
    let src = connect(&p.src.connect_string()).await;
    let dst = connect(&p.dst.connect_string()).await;
    create_tree(&src, &root, &[("/n", b"1")]).await;
    copy_fresh(&root).await;
    let acl = [
        zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone()),
        zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("ip", "10.1.2.3")),
    ];
    dst.set_acl(&format!("{root}/n"), &acl, None).await.unwrap();
    let out = verify(&root, &[]).await;
    assert_exit(&out, 1);
    assert_eq!(classes(&json(&out)), vec![("acl_differs".to_string(), "/n".to_string())]);
    let out = verify(&root, &["--no-acl"]).await;
    assert_exit(&out, 0);
    // The same entries in another order grant the same: equal.
    let reordered = [acl[1].clone(), acl[0].clone()];
    src.set_acl(&format!("{root}/n"), &reordered, None).await.unwrap();
    let out = verify(&root, &[]).await;
    assert_exit(&out, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hidden_digest_acl_is_not_taken_for_equal() {
    let p = pair();
    let root = unique_root("masked");
    let admin = connect_auth(&p.src.connect_string(), "m:pw").await;
    let id = zkrepl::zk::target::digest_id("m:pw");
    let acl = [
        zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone()),
        zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", &id)),
    ];
    create_tree(&admin, &root, &[]).await;
    admin.create(&format!("{root}/n"), b"1", &zk::CreateMode::Persistent.with_acls(zk::Acls::new(&acl))).await.unwrap();
    let auth = ["--src-auth", "digest:m:pw", "--dst-auth", "digest:m:pw"];
    let mut a = vec!["copy", "--src", &p.src.connect_string(), "--dst", &p.dst.connect_string(), "--root", &root, "-q"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    a.extend(auth.iter().map(|s| s.to_string()));
    assert_exit(&zkrepl_async(a).await, 0);
    // Without ADMIN the server shows `m:x` on both sides: not proof of anything.
    let out = verify(&root, &[]).await;
    assert_exit(&out, 2);
    assert!(classes(&json(&out)).contains(&("unreadable".to_string(), "/n".to_string())));
    let out = verify(&root, &auth).await;
    assert_exit(&out, 0);
    let out = verify(&root, &["--no-acl"]).await;
    assert_exit(&out, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ephemerals_are_ignored_unless_included() {
    let p = pair();
    let root = unique_root("eph");
    let src = connect(&p.src.connect_string()).await;
    create_tree(&src, &root, &[("/locks", b"")]).await;
    copy_fresh(&root).await;
    src.create(&format!("{root}/locks/me"), b"x", &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all()))
        .await
        .unwrap();
    let out = verify(&root, &[]).await;
    assert_exit(&out, 0);
    let r = json(&out);
    assert_eq!(r["ephemerals_ignored"], 1);
    // The ephemeral's creation moved the source's sequence counter: reported,
    // not a difference unless --strict-counters.
    assert_eq!(classes(&r), vec![("counter_behind".to_string(), "/locks".to_string())]);
    let out = verify(&root, &["--include-ephemeral"]).await;
    assert_exit(&out, 1);
    assert_eq!(
        classes(&json(&out)),
        vec![
            ("counter_behind".to_string(), "/locks".to_string()),
            ("missing_on_dst".to_string(), "/locks/me".to_string())
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_fan_out_and_a_node_near_one_mebibyte() {
    let p = pair();
    let root = unique_root("vbig");
    let src = connect(&p.src.connect_string()).await;
    let dst = connect(&p.dst.connect_string()).await;
    src.mkdir(&root, &open()).await.unwrap();
    let mut w = src.new_multi_writer();
    for i in 0..15_000 {
        w.add_create(&format!("{root}/c{i:05}"), &[b'x'; 16], &open()).unwrap();
        if i % 1000 == 999 {
            w.commit().await.unwrap();
        }
    }
    let big: Vec<u8> = (0..1_040_000u32).map(|i| (i * 7 % 256) as u8).collect();
    src.create(&format!("{root}/c07000/big"), &big, &open()).await.unwrap();
    copy_fresh(&root).await;
    let out = verify(&root, &[]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["compared"], 15_002);
    // One byte of the big node changes: found, and named.
    let mut changed = big.clone();
    changed[1_000_000] ^= 1;
    dst.set_data(&format!("{root}/c07000/big"), &changed, None).await.unwrap();
    let out = verify(&root, &[]).await;
    assert_exit(&out, 1);
    assert_eq!(classes(&json(&out)), vec![("data_differs".to_string(), "/c07000/big".to_string())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_nodes_mean_not_verified() {
    let p = pair();
    let root = unique_root("vauth");
    let owner = connect_auth(&p.src.connect_string(), "o:pw").await;
    create_tree(&owner, &root, &[]).await;
    let id = zkrepl::zk::target::digest_id("o:pw");
    let acl = [zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", &id))];
    owner
        .create(&format!("{root}/secret"), b"s", &zk::CreateMode::Persistent.with_acls(zk::Acls::new(&acl)))
        .await
        .unwrap();
    let out = on_pair("copy", &root, &["--src-auth", "digest:o:pw", "--dst-auth", "digest:o:pw", "-q"]).await;
    assert_exit(&out, 0);
    let out = verify(&root, &[]).await;
    assert_exit(&out, 2);
    let r = json(&out);
    assert!(classes(&r).contains(&("unreadable".to_string(), "/secret".to_string())), "{r}");
    let out = verify(&root, &["--src-auth", "digest:o:pw", "--dst-auth", "digest:o:pw"]).await;
    assert_exit(&out, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn digests_match_across_servers_and_change_with_one_byte() {
    let p = pair();
    let root = unique_root("digest");
    let src = connect(&p.src.connect_string()).await;
    let dst = connect(&p.dst.connect_string()).await;
    let nodes: Vec<(String, Vec<u8>)> =
        (0..50).map(|i| (format!("/n{i}"), format!("value {i}").into_bytes())).collect();
    let refs: Vec<(&str, &[u8])> = nodes.iter().map(|(a, b)| (a.as_str(), b.as_slice())).collect();
    // Built independently on each server, in different orders.
    create_tree(&src, &root, &refs).await;
    let mut reversed = refs.clone();
    reversed.reverse();
    create_tree(&dst, &root, &reversed).await;
    let digest = |hosts: String, root: String| async move {
        let out = zkrepl_async(args(&["digest", "--zk", &hosts, "--root", &root, "--json"])).await;
        assert_exit(&out, 0);
        let d = json(&out);
        assert!(d["digest"].is_string(), "{d}");
        d
    };
    let a = digest(p.src.connect_string(), root.clone()).await;
    let b = digest(p.dst.connect_string(), root.clone()).await;
    assert_eq!(a["nodes"], 51);
    assert_eq!(a["bytes"], b["bytes"]);
    assert_eq!(a["digest"], b["digest"]);
    assert!(a["max_mzxid"].as_i64().unwrap() > 0);

    dst.set_data(&format!("{root}/n7"), b"value 8", None).await.unwrap();
    let c = digest(p.dst.connect_string(), root.clone()).await;
    assert_ne!(a["digest"], c["digest"]);
    assert!(c["max_mzxid"].as_i64().unwrap() > b["max_mzxid"].as_i64().unwrap(), "a later change shows in the zxids");

    // Unchanged tree: the same digest later.
    let again = digest(p.src.connect_string(), root.clone()).await;
    assert_eq!(again["digest"], a["digest"]);
    assert_eq!(again["max_pzxid"], a["max_pzxid"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_roots() {
    let p = pair();
    let root = unique_root("vmissing");
    let src = connect(&p.src.connect_string()).await;
    create_tree(&src, &root, &[("/a", b"1")]).await;
    // Destination root absent: everything is missing.
    let out = verify(&root, &[]).await;
    assert_exit(&out, 1);
    assert_eq!(json(&out)["counts"]["missing_on_dst"], 2);
    // Source root absent: could not verify.
    let out = verify(&format!("{root}/nope"), &[]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

/// `parents` parents of `children` children each under `root` on the
/// source; returns every relative path, the root's (`/`) included.
async fn flat_tree(src: &zk::Client, root: &str, parents: usize, children: usize) -> Vec<String> {
    src.mkdir(root, &open()).await.unwrap();
    let mut rels = vec!["/".to_string()];
    let mut w = src.new_multi_writer();
    for p in 0..parents {
        rels.push(format!("/p{p:03}"));
        w.add_create(&format!("{root}/p{p:03}"), b"", &open()).unwrap();
        for c in 0..children {
            rels.push(format!("/p{p:03}/c{c:04}"));
            w.add_create(&format!("{root}/p{p:03}/c{c:04}"), b"v", &open()).unwrap();
        }
        w.commit().await.unwrap();
    }
    rels.sort();
    rels
}

#[tokio::test(flavor = "multi_thread")]
async fn against_an_empty_destination_every_missing_path_is_listed() {
    let p = pair();
    let root = unique_root("vempty");
    let src = connect(&p.src.connect_string()).await;
    let rels = flat_tree(&src, &root, 30, 100).await;
    let empty = format!("{root}-nothing-here");

    let out = on_pair("verify", &root, &["--dst-root", &empty, "--json", "-q"]).await;
    assert_exit(&out, 1);
    let r = json(&out);
    let listed = classes(&r);
    assert!(listed.iter().all(|(class, _)| class == "missing_on_dst"), "{listed:?}");
    assert_eq!(listed.into_iter().map(|(_, path)| path).collect::<Vec<_>>(), rels);
    assert_eq!(r["counts"]["missing_on_dst"], rels.len() as u64);
    assert_eq!(r["src_nodes"], rels.len() as u64);
    assert_eq!(r["dst_nodes"], 0);
    assert_eq!(r["unlisted"], 0);
    // The differences come first, one a line.
    let text = stdout(&out);
    assert!(text.starts_with("{\n  \"differences\": [\n    {\"class\":\"missing_on_dst\",\"path\":"), "{text:.200}");

    // The text report lists each one too, with its symbol.
    let out = on_pair("verify", &root, &["--dst-root", &empty, "--all"]).await;
    assert_exit(&out, 1);
    let text = stdout(&out);
    let mut paths: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("- ")).collect();
    paths.sort();
    assert_eq!(paths, rels, "{text:.400}");
    assert!(text.contains("DIFFERENT") && !text.contains("more (--all"), "{text:.400}");
}

#[tokio::test(flavor = "multi_thread")]
async fn differences_are_written_as_they_are_found() {
    let p = pair();
    let root = unique_root("vstream");
    let src = connect(&p.src.connect_string()).await;
    let rels = flat_tree(&src, &root, 20, 100).await;
    // A slow source: every chunk waits, and reads go one small batch at a
    // time, so the walk takes seconds.
    let proxy = zkrepl_testkit::proxy::FaultProxy::to_port(p.src.port).await;
    proxy.set_delay(std::time::Duration::from_millis(20));
    let a = args(&[
        "verify",
        "--src",
        &proxy.connect_string(),
        "--dst",
        &p.dst.connect_string(),
        "--root",
        &root,
        "--dst-root",
        &format!("{root}-nothing-here"),
        "--json",
        "-q",
        "--read-batch",
        "20",
        "--read-window",
        "1",
        "--read-sessions",
        "1",
    ]);
    let (first_output, exited, out) = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zkrepl"))
            .args(&a)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut out = Vec::new();
        let mut first = None;
        let mut buf = [0u8; 4096];
        loop {
            let n = stdout.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            first.get_or_insert_with(std::time::Instant::now);
            out.extend_from_slice(&buf[..n]);
        }
        let status = child.wait().unwrap();
        let exited = std::time::Instant::now();
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(status.code(), Some(1), "{err}");
        (first.expect("some output"), exited, out)
    })
    .await
    .unwrap();
    let early = exited - first_output;
    assert!(early > std::time::Duration::from_secs(1), "the first differences came only {early:?} before the end");
    let r: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(classes(&r).len(), rels.len());
    assert_eq!(r["counts"]["missing_on_dst"], rels.len() as u64);
}

/// stdout of a failed `verify --json` is one JSON document with an error.
#[track_caller]
fn error_document(out: &std::process::Output, says: &str) {
    assert_exit(out, 2);
    let r = json(out);
    let e = r["error"].as_str().unwrap_or_else(|| panic!("no error field: {r}"));
    assert!(e.contains(says), "{e}");
    assert_eq!(r["differences"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_verify_that_fails_before_any_difference_still_writes_a_document() {
    let p = pair();
    let root = unique_root("vjsonfail");
    // A source root that does not exist.
    let out = verify(&format!("{root}/nope"), &[]).await;
    error_document(&out, "does not exist");
    // A destination nothing listens on.
    let a = args(&[
        "verify",
        "--src",
        &p.src.connect_string(),
        "--dst",
        "127.0.0.1:1",
        "--root",
        "/",
        "--timeout",
        "1s",
        "--json",
    ]);
    error_document(&zkrepl_async(a).await, "cannot reach destination");
    // An argument refused after parsing.
    let a = args(&["verify", "--src", &p.src.connect_string(), "--dst", "x::y", "--root", "/", "--json"]);
    error_document(&zkrepl_async(a).await, "bad host entry");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_verify_interrupted_before_any_difference_still_writes_a_document() {
    let p = pair();
    let root = unique_root("vjsonint");
    let src = connect(&p.src.connect_string()).await;
    flat_tree(&src, &root, 20, 100).await;
    // The tree against itself, read slowly: no difference, and seconds of
    // walking to interrupt.
    let proxy = zkrepl_testkit::proxy::FaultProxy::to_port(p.src.port).await;
    proxy.set_delay(std::time::Duration::from_millis(20));
    let a = args(&[
        "verify",
        "--src",
        &proxy.connect_string(),
        "--dst",
        &p.src.connect_string(),
        "--root",
        &root,
        "--json",
        "--read-batch",
        "20",
        "--read-window",
        "1",
        "--read-sessions",
        "1",
    ]);
    let out = tokio::task::spawn_blocking(move || {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_zkrepl"))
            .args(&a)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_exit(&out, 130);
    let r = json(&out);
    assert_eq!(r["error"], "interrupted", "{r}");
    assert_eq!(r["differences"], serde_json::json!([]));
}
