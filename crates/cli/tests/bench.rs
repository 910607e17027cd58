//! `zkrepl gen` and `zkrepl bench` (copy and verify, and `--sync`) against
//! real servers.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn gen_gives_the_same_tree_for_the_same_seed() {
    let p = pair();
    let (a, b, c) = (unique_root("gen-a"), unique_root("gen-b"), unique_root("gen-c"));
    let generate = |root: &str, seed: &str| {
        let mut v = args(&["gen", "--zk", &p.src.connect_string(), "--root", root, "--apps", "6"]);
        v.extend(args(&["--partitions", "20", "--seed", seed, "--json", "-q"]));
        zkrepl_async(v)
    };
    for (root, seed) in [(&a, "7"), (&b, "7"), (&c, "8")] {
        let out = generate(root, seed).await;
        assert_exit(&out, 0);
        assert_eq!(json(&out)["nodes"], 6 + 6 * 20 + 2 + 22 + 7, "root, apps, partitions, one duplication, the rest");
    }
    let digest = |root: String| async move {
        let out = zkrepl_async(args(&["digest", "--zk", &p.src.connect_string(), "--root", &root, "--json"])).await;
        assert_exit(&out, 0);
        json(&out)["digest"].clone()
    };
    let (da, db, dc) = (digest(a).await, digest(b).await, digest(c).await);
    assert_eq!(da, db, "same seed, same tree");
    assert_ne!(da, dc, "another seed, another tree");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_measures_against_ceilings_and_cleans_up() {
    let p = pair();
    let out = zkrepl_async(args(&[
        "bench",
        "--src",
        &p.src.connect_string(),
        "--dst",
        &p.dst.connect_string(),
        "--nodes",
        "3000",
        "--json",
    ]))
    .await;
    assert_exit(&out, 0);
    let r = json(&out);
    for k in ["multi_create_cold", "multi_read", "get_acl_8_sessions", "get_acl_source_with_multi_create_destination"] {
        assert!(r["raw"][k]["per_sec"].as_f64().unwrap() > 0.0, "{k}: {r}");
    }
    let n = r["tree"]["nodes"].as_u64().unwrap();
    assert!(n > 2500, "{r}");
    for k in ["cold", "warm", "acl_open_warm"] {
        assert_eq!(r["copy"][k]["created"], n, "{k}");
        assert!(r["copy"][k]["peak_rss_bytes"].as_u64().unwrap() > 0);
    }
    assert!(r["copy"]["warm_ratio_to_get_acl_with_create"].as_f64().unwrap() > 0.0);
    assert_equal_digests(&r["verify"]["acl"]);
    assert_equal_digests(&r["verify"]["no_acl"]);
    // Against an empty destination every node is a difference, each streamed.
    let e = &r["verify"]["empty_destination"];
    let missing = e["counts"]["missing_on_dst"].as_u64().unwrap();
    assert!(missing > 2500, "{e}");
    assert_eq!(e["src_nodes"], missing, "{e}");
    assert_eq!(e["differences_streamed"], missing, "{e}");
    assert!(e["peak_rss_bytes"].as_u64().unwrap() > 0, "{e}");
    // Servers it did not start are left as they were.
    let src = connect(&p.src.connect_string()).await;
    let dst = connect(&p.dst.connect_string()).await;
    for c in [&src, &dst] {
        let left = c.list_children("/zkrepl-bench").await.unwrap_or_default();
        assert!(left.is_empty(), "bench left {left:?}");
        assert!(c.check_stat("/zkrepl-bench").await.unwrap().is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_sync_measures_applies_against_the_sources_write_rate_and_cleans_up() {
    // Servers of its own: the other bench checks that the shared pair is
    // left without /zkrepl-bench.
    let p = own_pair().await;
    let (src, dst) = (p.src.connect_string(), p.dst.connect_string());
    let out = zkrepl_async(args(&[
        "bench",
        "--src",
        &src,
        "--dst",
        &dst,
        "--sync",
        "--sync-rate",
        "300",
        "--sync-duration",
        "4s",
        "--json",
    ]))
    .await;
    assert_exit(&out, 0);
    let r = &json(&out)["sync_load"];
    let load = &r["load"];
    assert!(load["ops"].as_u64().unwrap() > 600 && load["ops"].as_u64() <= Some(1200), "bounded by rate x time: {r}");
    assert!(load["per_sec"].as_f64().unwrap() > 150.0, "{r}");
    assert!(load["seconds"].as_f64().unwrap() < 6.0, "{r}");
    let during = &r["during_load"];
    assert!(during["statuses"].as_u64().unwrap() >= 2, "{r}");
    // At 300 writes a second sync keeps up: what arrives is applied.
    for k in ["applied_ratio_to_source_writes", "events_ratio_to_source_writes"] {
        let x = r[k].as_f64().unwrap();
        assert!(x > 0.5 && x < 1.5, "{k} = {x}: {r}");
    }
    assert!(r["catch_up_seconds"].as_f64().unwrap() >= 0.0, "{r}");
    assert!(r["final"]["events"].as_u64() >= load["ops"].as_u64(), "every write seen: {r}");
    assert_eq!(r["verify_equal"], true, "{r}");
    for hosts in [&src, &dst] {
        let c = connect(hosts).await;
        assert!(c.check_stat("/zkrepl-bench/sync-load").await.unwrap().is_none(), "bench left its tree on {hosts}");
    }
}
