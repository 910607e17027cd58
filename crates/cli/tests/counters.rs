//! Sequence counters: a copied parent hands out sequential numbers at least
//! as high as the source would.

mod common;

use common::*;
use zookeeper_client as zk;

async fn copy(root: &str, extra: &[&str]) -> std::process::Output {
    on_pair("copy", root, &[&["--json", "-q"], extra].concat()).await
}

/// A queue whose parent handed out 60 numbers, 10 of them still there.
async fn queue(c: &zk::Client, root: &str) -> String {
    create_tree(c, root, &[("/queue", b"")]).await;
    let q = format!("{root}/queue");
    let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let mut made = Vec::new();
    for _ in 0..60 {
        let (_, n) = c.create(&format!("{q}/item-"), b"x", &seq).await.unwrap();
        made.push(format!("{q}/item-{n}"));
    }
    for p in &made[..50] {
        c.delete(p, None).await.unwrap();
    }
    q
}

async fn next_number(c: &zk::Client, parent: &str) -> i64 {
    let seq = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let (_, n) = c.create(&format!("{parent}/probe-"), b"", &seq).await.unwrap();
    n.into_i64()
}

#[tokio::test(flavor = "multi_thread")]
async fn sequential_numbers_continue_after_the_copy_and_a_rerun_pads_nothing() {
    let p = pair();
    let root = unique_root("seq");
    let src = connect(&p.src.connect_string()).await;
    let dst = connect(&p.dst.connect_string()).await;
    let q = queue(&src, &root).await;
    let src_stat = src.check_stat(&q).await.unwrap().unwrap();
    // 60 creations, 10 children left: clients see 2 * 60 - 10.
    assert_eq!((src_stat.cversion, zkrepl::node::next_sequence(&src_stat)), (110, 60));

    let out = copy(&root, &[]).await;
    assert_exit(&out, 0);
    let s = json(&out);
    assert_eq!(s["padded_parents"], 1);
    // 10 children copied, 50 more creations (each a create and a delete).
    assert_eq!(s["padding_ops"], 100);
    let dst_stat = dst.check_stat(&q).await.unwrap().unwrap();
    assert_eq!((dst_stat.cversion, dst_stat.num_children), (src_stat.cversion, src_stat.num_children));
    assert_eq!((dst_stat.cversion, dst_stat.num_children), (110, 10));
    assert_eq!(dst.list_children(&q).await.unwrap().len(), 10, "padding leaves nothing behind");

    // The verify is clean, counters included.
    let out = on_pair("verify", &root, &["--json", "--strict-counters"]).await;
    assert_exit(&out, 0);

    // A re-run pads nothing more.
    let out = copy(&root, &["--update"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["padding_ops"], 0);

    // New sequential nodes on the destination get numbers the source never gave.
    let got = next_number(&dst, &q).await;
    let from_source = next_number(&src, &q).await;
    assert_eq!(from_source, 60);
    assert!(got >= from_source, "destination handed out {got}, the source's next is {from_source}");
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_can_be_left_alone_and_verify_reports_them() {
    let p = pair();
    let root = unique_root("noseq");
    let src = connect(&p.src.connect_string()).await;
    let dst = connect(&p.dst.connect_string()).await;
    let q = queue(&src, &root).await;
    let out = copy(&root, &["--no-sequence-counters"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["padding_ops"], 0);
    let behind = dst.check_stat(&q).await.unwrap().unwrap();
    assert_eq!(zkrepl::node::next_sequence(&behind), 10, "10 creations only");

    let verify = |strict: bool| {
        let mut a = args(&[
            "verify",
            "--src",
            &p.src.connect_string(),
            "--dst",
            &p.dst.connect_string(),
            "--root",
            &root,
            "--json",
        ]);
        if strict {
            a.push("--strict-counters".to_string());
        }
        zkrepl_async(a)
    };
    let out = verify(false).await;
    assert_exit(&out, 0);
    let r = json(&out);
    assert_eq!(r["counts"]["counter_behind"], 1);
    assert_eq!(r["differences"][0]["path"], "/queue");
    let out = verify(true).await;
    assert_exit(&out, 1);

    // --update raises it later.
    let out = copy(&root, &["--update"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["padded_parents"], 1);
    assert_eq!(zkrepl::node::next_sequence(&dst.check_stat(&q).await.unwrap().unwrap()), 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restrictive_parent_is_padded_before_its_acl_is_set() {
    let p = pair();
    let root = unique_root("seqacl");
    let owner = connect_auth(&p.src.connect_string(), "q:pw").await;
    let q = queue(&owner, &root).await;
    // Everyone may read; only the owner may create or delete.
    let id = zkrepl::zk::target::digest_id("q:pw");
    let acl = [
        zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone()),
        zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", &id)),
    ];
    owner.set_acl(&q, &acl, None).await.unwrap();
    for item in owner.list_children(&q).await.unwrap() {
        owner.delete(&format!("{q}/{item}"), None).await.unwrap();
    }
    // No children left, but a counter of 60 creations to carry. Reading a
    // digest ACL needs ADMIN: the source credentials are required.
    let out = copy(&root, &[]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("hides the digest ACL") && stderr(&out).contains(&q), "{}", stderr(&out));
    let out = copy(&root, &["--src-auth", "digest:q:pw"]).await;
    assert_exit(&out, 0);
    let dst = connect(&p.dst.connect_string()).await;
    let stat = dst.check_stat(&q).await.unwrap().unwrap();
    assert_eq!((stat.num_children, zkrepl::node::next_sequence(&stat)), (0, 60));
    // Read with ADMIN, or the server masks the digest id.
    let owner_dst = connect_auth(&p.dst.connect_string(), "q:pw").await;
    assert_eq!(owner_dst.get_acl(&q).await.unwrap().0, acl.to_vec(), "the ACL is the source's in the end");
}

#[tokio::test(flavor = "multi_thread")]
async fn padding_needs_delete_too_and_gets_it_for_the_copy() {
    // Everyone may create and read, only the owner may delete: padding
    // (create and delete) still works, and the ACL ends as the source's.
    let p = pair();
    let root = unique_root("seqdel");
    let owner = connect_auth(&p.src.connect_string(), "d:pw").await;
    let q = queue(&owner, &root).await;
    let id = zkrepl::zk::target::digest_id("d:pw");
    let acl = [
        zk::Acl::new(zk::Permission::READ | zk::Permission::CREATE, zk::AuthId::anyone()),
        zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", &id)),
    ];
    owner.set_acl(&q, &acl, None).await.unwrap();
    let out = copy(&root, &["--src-auth", "digest:d:pw"]).await;
    assert_exit(&out, 0);
    let dst = connect_auth(&p.dst.connect_string(), "d:pw").await;
    let stat = dst.check_stat(&q).await.unwrap().unwrap();
    assert_eq!(zkrepl::node::next_sequence(&stat), 60);
    assert_eq!(dst.get_acl(&q).await.unwrap().0, acl.to_vec());
}

/// `zkrepl gen --shape counter` of `nodes` creations under `root`.
async fn gen_counter(hosts: &str, root: &str, nodes: u32) {
    let generated = zkrepl_async(args(&[
        "gen",
        "--zk",
        hosts,
        "--root",
        root,
        "--shape",
        "counter",
        "--nodes",
        &nodes.to_string(),
        "-q",
    ]))
    .await;
    assert_exit(&generated, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_pad_refuses_before_writing_and_dry_runs_show_the_pads() {
    let p = pair();
    let root = unique_root("maxpad");
    gen_counter(&p.src.connect_string(), &root, 60).await;
    let dst = connect(&p.dst.connect_string()).await;
    let q = format!("{root}/queue");
    // 60 creations, 10 children kept: a copy needs 50 pads.

    // A dry run shows the pads it would write, and that the limit refuses them.
    let out = copy(&root, &["--dry-run", "--max-pad", "49"]).await;
    assert_exit(&out, 0);
    let s = json(&out);
    assert_eq!(
        (s["pads"].as_u64(), s["padding_ops"].as_u64(), s["padded_parents"].as_u64()),
        (Some(50), Some(100), Some(1))
    );
    assert_eq!(s["pad_limit_exceeded"], true);
    assert!(stderr(&out).contains("would refuse"), "{}", stderr(&out));
    let text = on_pair("copy", &root, &["--dry-run"]).await;
    assert_exit(&text, 0);
    assert!(stdout(&text).contains("would write 50 pads"), "{}", stdout(&text));

    // Over the limit: nothing at all is written, not even the root.
    let out = copy(&root, &["--max-pad", "49"]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("50 counter pads") && err.contains("--max-pad 49") && err.contains("nothing was written"),
        "{err}"
    );
    assert!(dst.check_stat(&root).await.unwrap().is_none(), "nothing written");

    // Onto a destination whose counter is behind (copied without pads), the
    // refusal leaves every node as it was.
    let out = copy(&root, &["--no-sequence-counters"]).await;
    assert_exit(&out, 0);
    let before = stats(&dst).await.into_iter().filter(|(p, _)| p.starts_with(&root)).collect::<Vec<_>>();
    assert_eq!(before.len(), 12);
    let out = copy(&root, &["--update", "--max-pad", "10"]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("50 counter pads") && stderr(&out).contains("--max-pad 10"), "{}", stderr(&out));
    let after = stats(&dst).await.into_iter().filter(|(p, _)| p.starts_with(&root)).collect::<Vec<_>>();
    assert_eq!(after, before, "no node changed in any way");

    // Within the limit it pads, and the summary says how long that took.
    let out = on_pair("copy", &root, &["--update", "--max-pad", "50"]).await;
    assert_exit(&out, 0);
    let text = stdout(&out);
    let line = text.lines().find(|l| l.contains("seq. counters")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("50 pads") && line.contains(" s)"), "{line}");
    assert_eq!(zkrepl::node::next_sequence(&dst.check_stat(&q).await.unwrap().unwrap()), 60);
    let out = copy(&root, &["--update"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["pads"], 0, "nothing left to pad");
}

#[tokio::test(flavor = "multi_thread")]
async fn pads_of_a_server_root_are_predicted_exactly_and_max_pad_refuses_before_writing() {
    // The server's `/`: its /zookeeper is a child no creation counted and
    // the walk leaves out; an ephemeral child is listed and not copied.
    let Pair { src: a, dst: b } = own_pair().await;
    let src = connect(&a.connect_string()).await;
    let dst = connect(&b.connect_string()).await;
    src.create("/e", b"", &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())).await.unwrap();
    src.create("/p", b"", &open()).await.unwrap();
    let whole = |extra: &[&str]| {
        let mut v = args(&[
            "copy",
            "--src",
            &a.connect_string(),
            "--dst",
            &b.connect_string(),
            "--root",
            "/",
            "--dst-root",
            "/backup",
            "--json",
            "-q",
        ]);
        v.extend(args(extra));
        zkrepl_async(v)
    };
    let out = whole(&["--dry-run"]).await;
    assert_exit(&out, 0);
    assert_eq!((json(&out)["pads"].as_u64(), json(&out)["padded_parents"].as_u64()), (Some(1), Some(1)));

    let before = stats(&dst).await;
    let out = whole(&["--max-pad", "0"]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("1 counter pads") && err.contains("nothing was written"), "{err}");
    assert_eq!(stats(&dst).await, before, "no node written");

    let out = whole(&["--max-pad", "1"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["pads"], 1, "as predicted");
    let s = src.check_stat("/").await.unwrap().unwrap();
    let d = dst.check_stat("/backup").await.unwrap().unwrap();
    assert_eq!(zkrepl::node::next_sequence(&d), zkrepl::node::next_sequence(&s));
    assert_eq!(dst.list_children("/backup").await.unwrap(), ["p"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_while_padding_ends_the_run_and_a_rerun_finishes_the_counter() {
    let p = pair();
    let root = unique_root("padstop");
    gen_counter(&p.src.connect_string(), &root, 20000).await;
    let q = format!("{root}/queue");
    let dst = connect(&p.dst.connect_string()).await;
    let a = args(&[
        "copy",
        "--src",
        &p.src.connect_string(),
        "--dst",
        &p.dst.connect_string(),
        "--root",
        &root,
        "--window",
        "1",
    ]);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_zkrepl"))
        .args(&a)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn zkrepl");
    // Padding has begun once the counter passes the 10 children copied.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let n = match dst.check_stat(&q).await.unwrap() {
            Some(s) => zkrepl::node::next_sequence(&s),
            None => 0,
        };
        if n > 100 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "padding never started");
        assert!(child.try_wait().unwrap().is_none(), "the copy ended before padding");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    assert_exit(&out, 130);
    assert!(stderr(&out).contains("interrupted after") && stderr(&out).contains("--update"), "{}", stderr(&out));
    let partial = zkrepl::node::next_sequence(&dst.check_stat(&q).await.unwrap().unwrap());
    assert!(partial < 20000, "stopped before the last pad ({partial})");

    let out = copy(&root, &["--update"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["pads"].as_i64(), Some(20000 - partial), "the re-run pads the rest");
    assert_eq!(zkrepl::node::next_sequence(&dst.check_stat(&q).await.unwrap().unwrap()), 20000);
}
