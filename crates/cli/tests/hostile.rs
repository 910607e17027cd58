//! Hostile trees copied exactly, then verified: every legal odd character in
//! names, binary data, a node at the server's size limit, a 1000-level chain,
//! a parent whose child list is larger than jute.maxbuffer, digest ACLs,
//! ephemeral and sequential nodes, containers and TTL nodes with children.
//!
//! Each tree is built on the source with the client crate directly, copied
//! with `zkrepl copy`, verified with `zkrepl verify`, and compared by an
//! independent reading of both trees (`dump`, or counts and spot checks).

mod common;

use std::collections::HashSet;
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;
use zookeeper_client as zk;

/// `zkrepl copy --src <src> --dst <dst> --root <root> --json -q <extra...>`
async fn copy_on(src: &str, dst: &str, root: &str, extra: &[&str]) -> Output {
    let mut a = args(&["copy", "--src", src, "--dst", dst, "--root", root, "--json", "-q"]);
    a.extend(args(extra));
    zkrepl_async(a).await
}

/// `zkrepl verify --src <src> --dst <dst> --root <root> --json -q <extra...>`
async fn verify_on(src: &str, dst: &str, root: &str, extra: &[&str]) -> Output {
    let mut a = args(&["verify", "--src", src, "--dst", dst, "--root", root, "--json", "-q"]);
    a.extend(args(extra));
    zkrepl_async(a).await
}

/// A copy between the shared pair.
async fn copy(root: &str, extra: &[&str]) -> Output {
    let p = pair();
    copy_on(&p.src.connect_string(), &p.dst.connect_string(), root, extra).await
}

/// A verify between the shared pair.
async fn verify(root: &str, extra: &[&str]) -> Output {
    let p = pair();
    verify_on(&p.src.connect_string(), &p.dst.connect_string(), root, extra).await
}

async fn pair_clients() -> (zk::Client, zk::Client) {
    let p = pair();
    (connect(&p.src.connect_string()).await, connect(&p.dst.connect_string()).await)
}

/// The (class, path) of every listed difference, sorted.
fn classes(report: &serde_json::Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = report["differences"]
        .as_array()
        .expect("a differences list")
        .iter()
        .map(|d| (d["class"].as_str().unwrap().to_string(), d["path"].as_str().unwrap().to_string()))
        .collect();
    v.sort();
    v
}

fn pair_of(class: &str, path: &str) -> (String, String) {
    (class.to_string(), path.to_string())
}

/// Asserts a JSON verify report of two equal trees of `nodes` nodes.
#[track_caller]
fn assert_equal_report(out: &Output, nodes: u64) {
    assert_exit(out, 0);
    let r = json(out);
    assert_eq!(r["compared"], nodes, "{r}");
    assert_eq!(r["src_nodes"], nodes, "{r}");
    assert_eq!(r["dst_nodes"], nodes, "{r}");
    assert!(r["src_digest"].is_string(), "{r}");
    assert_eq!(r["src_digest"], r["dst_digest"], "{r}");
}

/// Creates nodes in order (parents before children) with OPEN ACLs, in
/// multi() transactions of at most ~400 KB, all sent before any reply is
/// awaited: one session's requests are applied in the order sent, so a
/// transaction may create children of nodes created by an earlier one.
async fn create_batched(c: &zk::Client, nodes: &[(String, Vec<u8>)]) {
    const MAX_BYTES: usize = 400_000;
    let mut w = c.new_multi_writer();
    let mut pending = Vec::new();
    let mut bytes = 0;
    for (path, data) in nodes {
        // multi header 9, path, data, OPEN ACL 27, flags 4
        let op = 9 + 4 + path.len() + 4 + data.len() + 27 + 4;
        if bytes + op > MAX_BYTES && bytes > 0 {
            pending.push(w.commit());
            bytes = 0;
        }
        w.add_create(path, data, &open()).unwrap_or_else(|e| panic!("create {path}: {e}"));
        bytes += op;
    }
    pending.push(w.commit());
    for r in futures::future::join_all(pending).await {
        r.expect("a multi() of creates");
    }
}

/// `(root + rel, data)` pairs for [`create_batched`], the root first.
fn under(root: &str, root_data: &[u8], nodes: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    std::iter::once((root.to_string(), root_data.to_vec()))
        .chain(nodes.iter().map(|(rel, d)| (format!("{root}{rel}"), d.clone())))
        .collect()
}

// ---------------------------------------------------------------------------
// The trees. Each builder creates its tree on the source and returns how many
// persistent nodes it holds, the root included.

/// Names built from every legal odd character. Each node holds its relative
/// path as data, so a node copied under another name shows in its data.
fn odd_name_paths() -> Vec<String> {
    let printable: Vec<char> = (0x20u8..=0x7e).map(char::from).filter(|&c| c != '/').collect();
    assert_eq!(printable.len(), 94);
    // Every printable ASCII character but '/', in names of 12 (so each
    // stands next to others), and all of them in one name.
    let mut names: Vec<String> = printable.chunks(12).map(|c| c.iter().collect()).collect();
    names.push(printable.iter().collect());
    names.extend(
        [
            // Spaces alone, leading, trailing, inside; dots that are not `.` or `..`.
            " ",
            "   ",
            " lead",
            "trail ",
            "mid  dle",
            " both ",
            ".x",
            "..x",
            "x.",
            "x..",
            "...",
            ". .",
            "\\",
            "zookeeper",
            // Case only.
            "Case",
            "case",
            // Latin-1 supplement, from its first legal character (U+00A0, after
            // the C1 controls) to its last.
            "\u{a0}nbsp",
            "soft\u{ad}hyphen",
            "¡¿«»°±µ¶·×÷",
            "ÀÉÎÕÜàéîõüÿß",
            "\u{ff}",
            // CJK, Hangul (just below the surrogates), CJK compatibility (just
            // above the private use area).
            "日本語",
            "中文名字",
            "漢字 かな カナ",
            "한국어",
            "\u{d7ff}",
            "\u{f900}",
            // Combining marks: precomposed and decomposed forms are different
            // names (no normalization), a mark may even start a name.
            "\u{e9}",
            "e\u{301}",
            "\u{301}",
            "a\u{308}\u{332}\u{20dd}",
            // Format characters and the top of the allowed BMP.
            "\u{200b}zero-width",
            "line\u{2028}separator",
            "\u{202e}rtl",
            "\u{feff}bom",
            "\u{3000}ideographic space",
            "\u{fb01}ligature",
            "\u{fe0f}",
            "\u{ffe5}",
            "\u{ffef}",
        ]
        .map(String::from),
    );
    // A long name: ZooKeeper sets no limit on names but the request size.
    names.push("n".repeat(20_000));
    let mut paths: Vec<String> = names.iter().map(|n| format!("/{n}")).collect();
    // Siblings that sort around '/' (0x2F): '!' and ' ' sort before it, '0'
    // after, so a walk ordered by whole paths would interleave "a/c" between
    // them. Each has a child.
    for n in ["a", "a!", "a b", "a.", "a0", "a\u{e9}"] {
        paths.push(format!("/{n}"));
        paths.push(format!("/{n}/c"));
    }
    // Odd names below odd names.
    let mut deep = String::new();
    for n in [" lead", "trail ", "..x", "\u{301}", "日本語", "\u{ffef}", " "] {
        deep.push('/');
        deep.push_str(n);
        if !paths.contains(&deep) {
            paths.push(deep.clone());
        }
    }
    let unique: HashSet<&String> = paths.iter().collect();
    assert_eq!(unique.len(), paths.len(), "no name twice");
    paths
}

async fn build_odd_names(c: &zk::Client, root: &str) -> u64 {
    let nodes: Vec<(String, Vec<u8>)> = odd_name_paths().into_iter().map(|p| (p.clone(), p.into_bytes())).collect();
    let parent = root.rsplit_once('/').unwrap().0;
    if !parent.is_empty() {
        c.mkdir(parent, &open()).await.unwrap();
    }
    create_batched(c, &under(root, b"odd root", &nodes)).await;
    nodes.len() as u64 + 1
}

/// Data of every byte value, zero bytes, invalid UTF-8; empty data on a
/// parent (the root and `/empty-parent`) and on a leaf.
fn binary_nodes() -> Vec<(String, Vec<u8>)> {
    let all: Vec<u8> = (0..=255).collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..65_536)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as u8
        })
        .collect();
    let mut nodes: Vec<(String, Vec<u8>)> = vec![
        ("/all-bytes".into(), all.clone()),
        ("/all-bytes/reversed".into(), all.iter().rev().copied().collect()),
        ("/all-bytes/twice".into(), [all.clone(), all].concat()),
        ("/zeros".into(), vec![0; 4096]),
        ("/one-zero".into(), vec![0]),
        ("/empty-parent".into(), vec![]),
        ("/empty-parent/empty-leaf".into(), vec![]),
        ("/value".into(), b"value".to_vec()),
        ("/value-nul".into(), b"value\0".to_vec()),
        ("/nul-value".into(), b"\0value".to_vec()),
        ("/invalid-utf8".into(), vec![0xc0, 0x80, 0xff, 0xfe, 0xed, 0xa0, 0x80, 0xf8, 0x88]),
        ("/utf16".into(), "ZooKeeper".encode_utf16().flat_map(|u| u.to_le_bytes()).collect()),
        ("/json-escapes".into(), b"{\"k\":\"\\u0000\\n\"}\r\n\t\x1b[0m".to_vec()),
        ("/noise".into(), noise),
        ("/byte".into(), b"one node per byte value".to_vec()),
    ];
    for b in 0..=255u8 {
        nodes.push((format!("/byte/{b:02x}"), vec![b]));
    }
    nodes
}

async fn build_binary(c: &zk::Client, root: &str) -> u64 {
    let nodes = binary_nodes();
    create_batched(c, &under(root, b"", &nodes)).await;
    nodes.len() as u64 + 1
}

/// Bytes of a create request as the server counts them against
/// jute.maxbuffer (the 4-byte length prefix not included), OPEN ACL.
fn create_request_bytes(path: &str, data_len: usize) -> usize {
    let header = 4 + 4; // xid, op type
    let open_acl = 4 + 4 + (4 + "world".len()) + (4 + "anyone".len()); // = 27
    header + (4 + path.len()) + (4 + data_len) + open_acl + 4 /* flags */
}

/// The server's default jute.maxbuffer.
const MAX_REQUEST: usize = 0xfffff;

/// The largest data a plain create of `path` can carry.
fn max_data_len(path: &str) -> usize {
    MAX_REQUEST - create_request_bytes(path, 0)
}

fn max_data(path: &str) -> Vec<u8> {
    (0..max_data_len(path)).map(|i| (i % 253) as u8).collect()
}

/// A root holding one node, `/max`, as large as a create request may be.
async fn build_max_node(c: &zk::Client, root: &str) -> u64 {
    c.create(root, b"", &open()).await.unwrap();
    let path = format!("{root}/max");
    let data = max_data(&path);
    assert_eq!(create_request_bytes(&path, data.len()), MAX_REQUEST);
    c.create(&path, &data, &open()).await.unwrap_or_else(|e| panic!("create {} bytes: {e}", data.len()));
    2
}

/// `/d/d/.../d`, `depth` levels below the root, each holding its level.
fn chain_nodes(depth: usize) -> Vec<(String, Vec<u8>)> {
    let mut rel = String::new();
    (1..=depth)
        .map(|level| {
            rel.push_str("/d");
            (rel.clone(), format!("level {level}").into_bytes())
        })
        .collect()
}

async fn build_chain(c: &zk::Client, root: &str, depth: usize) -> u64 {
    create_batched(c, &under(root, b"level 0", &chain_nodes(depth))).await;
    depth as u64 + 1
}

/// A queue of persistent-sequential items (with gaps, and one with an empty
/// prefix) between ephemeral-sequential locks, and ephemeral members beside
/// a persistent one. Returns (persistent nodes, ephemeral nodes).
async fn build_sequential(c: &zk::Client, root: &str) -> (u64, u64) {
    create_tree(c, root, &[("/queue", b"q"), ("/members", b"m"), ("/members/static", b"s")]).await;
    let pseq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let eseq = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let mut items = Vec::new();
    for i in 0..10 {
        let (_, n) = c.create(&format!("{root}/queue/item-"), format!("item {i}").as_bytes(), &pseq).await.unwrap();
        items.push(format!("{root}/queue/item-{n}"));
        c.create(&format!("{root}/queue/lock-"), b"held", &eseq).await.unwrap();
    }
    for gap in [&items[2], &items[7]] {
        c.delete(gap, None).await.unwrap();
    }
    let (_, bare) = c.create(&format!("{root}/queue/"), b"no prefix", &pseq).await.unwrap();
    assert_eq!(bare.to_string(), "0000000020", "the name is the number alone");
    for host in ["host-1", "host-2"] {
        c.create(&format!("{root}/members/{host}"), b"alive", &eph).await.unwrap();
    }
    // root, queue, members, static, 8 items, the bare one; 10 locks, 2 hosts.
    (13, 12)
}

/// Persistent on the source; `/locks/c` is to become a container with a
/// grandchild, `/cache/t` a TTL node with a child.
async fn build_kinds(c: &zk::Client, root: &str) -> u64 {
    create_tree(
        c,
        root,
        &[
            ("/locks", b""),
            ("/locks/c", b""),
            ("/locks/c/sub", b""),
            ("/locks/c/sub/leaf", b"x"),
            ("/cache", b""),
            ("/cache/t", b"cached"),
            ("/cache/t/kid", b"k"),
        ],
    )
    .await;
    8
}

fn kind_flags(root: &str) -> Vec<String> {
    args(&["--container", &format!("{root}/locks/*"), "--ttl", &format!("{root}/cache/*=1s")])
}

/// Only `u:p` may do anything with `/secret` and `/secret/inner`.
async fn build_digest(owner: &zk::Client, root: &str) -> u64 {
    let id = zkrepl::zk::target::digest_id("u:p");
    let only_u = [zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("digest", &id))];
    let only_u = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&only_u));
    create_tree(owner, root, &[("/public", b"p")]).await;
    owner.create(&format!("{root}/secret"), b"s", &only_u).await.unwrap();
    owner.create(&format!("{root}/secret/inner"), b"i", &only_u).await.unwrap();
    4
}

/// `/rw-admin`: everyone may read it, only `u:p` has ADMIN (so only `u:p`
/// sees its digest id unmasked), nobody may create children (it has one).
async fn build_masked(owner: &zk::Client, root: &str) -> u64 {
    create_tree(owner, root, &[("/plain", b"p"), ("/rw-admin", b"r"), ("/rw-admin/child", b"c")]).await;
    owner.set_acl(&format!("{root}/rw-admin"), &masked_acl(), None).await.unwrap();
    4
}

fn masked_acl() -> Vec<zk::Acl> {
    let id = zkrepl::zk::target::digest_id("u:p");
    vec![
        zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone()),
        zk::Acl::new(zk::Permission::ADMIN, zk::AuthId::new("digest", &id)),
    ]
}

const AUTH: [&str; 4] = ["--src-auth", "digest:u:p", "--dst-auth", "digest:u:p"];

// ---------------------------------------------------------------------------
// 1. Names

#[tokio::test(flavor = "multi_thread")]
async fn names_with_every_legal_odd_character_are_copied_exactly() {
    let (src, dst) = pair_clients().await;
    // The root's own name is odd too: leading and trailing spaces, non-ASCII.
    let root = format!("{}/ r\u{f6}\u{f6}t \u{65e5} ", unique_root("names"));
    let nodes = build_odd_names(&src, &root).await;

    let out = copy(&root, &[]).await;
    assert_exit(&out, 0);
    let s = json(&out);
    assert_eq!(s["created"], nodes);
    assert_eq!(s["nodes_read"], nodes);
    assert_equal_report(&verify(&root, &[]).await, nodes);
    let (a, b) = (dump(&src, &root).await, dump(&dst, &root).await);
    assert_eq!(a.len() as u64, nodes);
    assert_eq!(a, b);
    for (rel, data, _) in &b {
        if !rel.is_empty() {
            assert_eq!(rel.as_bytes(), data.as_slice(), "each node holds its own relative path");
        }
    }
    // Precomposed and decomposed forms stayed two nodes.
    let kids = dst.list_children(&root).await.unwrap();
    assert!(kids.contains(&"\u{e9}".to_string()) && kids.contains(&"e\u{301}".to_string()), "{kids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zkcopy_style_root_may_end_with_a_space() {
    let p = pair();
    let (src, dst) = pair_clients().await;
    let base = unique_root("zkcopy-space");
    // Two trees whose roots differ only by a trailing space.
    create_tree(&src, &format!("{base}/a "), &[("/with-space", b"1")]).await;
    create_tree(&src, &format!("{base}/a"), &[("/without", b"2")]).await;
    let target = format!("{base}-copy");
    let out = zkrepl_async(args(&[
        "copy",
        "--source",
        &format!("{}{base}/a ", p.src.connect_string()),
        "--target",
        &format!("{}{target}", p.dst.connect_string()),
        "-q",
    ]))
    .await;
    assert_exit(&out, 0);
    assert_eq!(dst.list_children(&target).await.unwrap(), vec!["with-space".to_string()], "the right tree");
    assert_eq!(dump(&src, &format!("{base}/a ")).await, dump(&dst, &target).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chroot_may_end_with_a_space() {
    let p = pair();
    let (src, dst) = pair_clients().await;
    let base = unique_root("chroot-space");
    create_tree(&src, &format!("{base}/a "), &[("/with-space", b"1")]).await;
    create_tree(&src, &format!("{base}/a"), &[("/without", b"2")]).await;
    let target = format!("{base}-copy");
    let chrooted = format!("{}{base}/a ", p.src.connect_string());
    let out = copy_on(&chrooted, &p.dst.connect_string(), "/", &["--dst-root", &target]).await;
    assert_exit(&out, 0);
    assert_eq!(dst.list_children(&target).await.unwrap(), vec!["with-space".to_string()], "the right tree");
    assert_eq!(dump(&src, &format!("{base}/a ")).await, dump(&dst, &target).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn names_the_server_refuses_cannot_be_on_a_source() {
    let (src, _) = pair_clients().await;
    let root = unique_root("refused");
    create_tree(&src, &root, &[]).await;
    // Java strings are UTF-16: a character outside the BMP arrives as a
    // surrogate pair, which the server's path check (U+D800..U+F8FF)
    // refuses. The client lets it through: the refusal is the server's.
    let emoji = format!("{root}/party-\u{1f389}");
    match src.create(&emoji, b"x", &open()).await {
        Err(zk::Error::BadArguments(reason)) => assert_eq!(*reason, "server error", "refused by the server"),
        other => panic!("creating {emoji:?} should fail on the server: {other:?}"),
    }
    // "." and ".." are not names; ".x", "..x" and "x." are (the tree above).
    for name in [".", ".."] {
        let p = format!("{root}/{name}");
        assert!(src.create(&p, b"x", &open()).await.is_err(), "{p:?} was accepted");
    }
    assert_eq!(src.list_children(&root).await.unwrap(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// 2. Data

#[tokio::test(flavor = "multi_thread")]
async fn binary_and_empty_data_are_copied_byte_for_byte() {
    let (src, dst) = pair_clients().await;
    let root = unique_root("binary");
    let nodes = build_binary(&src, &root).await;

    let out = copy(&root, &[]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["created"], nodes);
    assert_equal_report(&verify(&root, &[]).await, nodes);
    assert_eq!(dump(&src, &root).await, dump(&dst, &root).await);
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(dst.get_data(&format!("{root}/all-bytes")).await.unwrap().0, all);
    assert_eq!(dst.get_data(&format!("{root}/byte/00")).await.unwrap().0, vec![0u8]);
    assert_eq!(dst.get_data(&format!("{root}/empty-parent")).await.unwrap().0, Vec::<u8>::new());

    // Verify compares bytes, not C strings: empty and one NUL differ, and
    // so do "value" and "value\0".
    dst.set_data(&format!("{root}/empty-parent/empty-leaf"), b"\0", None).await.unwrap();
    dst.set_data(&format!("{root}/value-nul"), b"value", None).await.unwrap();
    let out = verify(&root, &[]).await;
    assert_exit(&out, 1);
    assert_eq!(
        classes(&json(&out)),
        vec![pair_of("data_differs", "/empty-parent/empty-leaf"), pair_of("data_differs", "/value-nul")]
    );
}

// ---------------------------------------------------------------------------
// 3. Size limit

#[tokio::test(flavor = "multi_thread")]
async fn a_node_at_the_request_size_limit_is_copied() {
    let p = pair();
    let (src, dst) = pair_clients().await;
    let root = unique_root("max");
    build_max_node(&src, &root).await;
    let path = format!("{root}/max");
    let data = max_data(&path);

    // One byte more is refused: the server drops the connection.
    let probe = connect(&p.src.connect_string()).await;
    let over = format!("{root}/one");
    assert_eq!(over.len(), path.len());
    let too_big = vec![1u8; data.len() + 1];
    assert_eq!(create_request_bytes(&over, too_big.len()), MAX_REQUEST + 1);
    let refused = probe.create(&over, &too_big, &open()).await;
    assert!(matches!(refused, Err(zk::Error::ConnectionLoss)), "{refused:?}");
    assert!(src.check_stat(&over).await.unwrap().is_none());

    // A multi() around it would be 18 bytes too large: it must travel alone.
    let out = copy(&root, &[]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["created"], 2);
    assert_equal_report(&verify(&root, &[]).await, 2);
    let (got, stat) = dst.get_data(&path).await.unwrap();
    assert_eq!(stat.data_length as usize, data.len());
    assert!(got == data, "the data differs");

    // Under a longer destination root the same node no longer fits in a
    // request: refused before sending, naming the node.
    let longer = format!("{root}-longer");
    let out = copy(&root, &["--dst-root", &longer]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(&format!("{longer}/max")) && err.contains("jute.maxbuffer"), "{err}");
    assert!(dst.check_stat(&format!("{longer}/max")).await.unwrap().is_none());
}

// ---------------------------------------------------------------------------
// 4. Depth

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_level_chain_is_copied() {
    let (src, dst) = pair_clients().await;
    let root = unique_root("chain");
    let nodes = build_chain(&src, &root, 1000).await;

    let out = copy(&root, &[]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["created"], 1001);
    assert_equal_report(&verify(&root, &[]).await, 1001);
    let (a, b) = (dump(&src, &root).await, dump(&dst, &root).await);
    assert_eq!(a.len() as u64, nodes);
    assert_eq!(a, b);
    let deepest = format!("{root}{}", "/d".repeat(1000));
    let (data, stat) = dst.get_data(&deepest).await.unwrap();
    assert_eq!(data, b"level 1000");
    assert_eq!(stat.num_children, 0);
}

// ---------------------------------------------------------------------------
// 5. Width

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_thousand_children_beyond_jute_maxbuffer() {
    const N: usize = 200_000;
    let (src, dst) = pair_clients().await;
    let root = unique_root("wide");
    let started = Instant::now();
    let children: Vec<(String, Vec<u8>)> =
        (0..N).map(|i| (format!("/n{i:07}"), format!("v{i}").into_bytes())).collect();
    create_batched(&src, &under(&root, b"wide", &children)).await;
    let built = started.elapsed();
    // The child list alone: 4 + 200,000 x (4 + 8) bytes, over twice jute.maxbuffer.
    let names = src.list_children(&root).await.unwrap();
    assert_eq!(names.len(), N);
    assert!(4 + names.iter().map(|n| 4 + n.len()).sum::<usize>() > 2 * MAX_REQUEST);

    let t = Instant::now();
    let out = copy(&root, &["--dry-run"]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["plan"]["creates"], N as u64 + 1);
    assert!(dst.check_stat(&root).await.unwrap().is_none(), "the dry run wrote nothing");
    let dry = t.elapsed();

    let t = Instant::now();
    let out = copy(&root, &[]).await;
    assert_exit(&out, 0);
    let s = json(&out);
    assert_eq!(s["created"], N as u64 + 1);
    let copied = t.elapsed();

    let t = Instant::now();
    assert_equal_report(&verify(&root, &[]).await, N as u64 + 1);
    let verified = t.elapsed();

    let mut dst_names = dst.list_children(&root).await.unwrap();
    let mut src_names = names;
    dst_names.sort();
    src_names.sort();
    assert_eq!(dst_names, src_names);
    for i in [0, 123_457, N - 1] {
        let (data, _) = dst.get_data(&format!("{root}/n{i:07}")).await.unwrap();
        assert_eq!(data, format!("v{i}").into_bytes());
    }
    eprintln!(
        "200k children: built {built:?}, dry run {dry:?}, copy {copied:?} ({} transactions), verify {verified:?}, total {:?}",
        s["transactions"],
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 6. ACLs

#[tokio::test(flavor = "multi_thread")]
async fn digest_protected_nodes_need_credentials() {
    let p = pair();
    let root = unique_root("digest");
    let owner = connect_auth(&p.src.connect_string(), "u:p").await;
    let nodes = build_digest(&owner, &root).await;

    // Without credentials the source may not list /secret: the copy stops
    // and says which node and which flag.
    let out = copy(&root, &["--dst-root", &format!("{root}-noauth")]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(&format!("{root}/secret")) && err.contains("--src-auth"), "{err}");

    let out = copy(&root, &AUTH).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["created"], nodes);
    assert_equal_report(&verify(&root, &AUTH).await, nodes);
    let owner_dst = connect_auth(&p.dst.connect_string(), "u:p").await;
    assert_eq!(dump(&owner, &root).await, dump(&owner_dst, &root).await, "data and ACLs");
    // Without credentials, equality cannot be established.
    let out = verify(&root, &[]).await;
    assert_exit(&out, 2);
    assert!(classes(&json(&out)).contains(&pair_of("unreadable", "/secret")), "{}", stdout(&out));
    // Nobody else can read the copy either.
    let (_, dst) = pair_clients().await;
    assert_eq!(dst.get_data(&format!("{root}/secret")).await, Err(zk::Error::NoAuth));
}

#[tokio::test(flavor = "multi_thread")]
async fn masked_digest_acls_are_refused_and_reported_unreadable() {
    let p = pair();
    let root = unique_root("masked");
    let owner = connect_auth(&p.src.connect_string(), "u:p").await;
    let nodes = build_masked(&owner, &root).await;
    let (src, dst) = pair_clients().await;
    // Readable by all, but shown as `u:x` to sessions without ADMIN.
    let (seen, _) = src.get_acl(&format!("{root}/rw-admin")).await.unwrap();
    assert!(seen.iter().any(|a| a.auth_id().id() == "u:x"), "{seen:?}");

    // Copying `u:x` would lock everyone out: refused, naming the node.
    let refused = format!("{root}-refused");
    let out = copy(&root, &["--dst-root", &refused]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("hides the digest ACL") && err.contains(&format!("{root}/rw-admin")), "{err}");
    assert!(dst.check_stat(&format!("{refused}/rw-admin")).await.unwrap().is_none());

    // With ADMIN on both sides: copied exactly, child included.
    let out = copy(&root, &AUTH).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["created"], nodes);
    assert_equal_report(&verify(&root, &AUTH).await, nodes);
    let owner_dst = connect_auth(&p.dst.connect_string(), "u:p").await;
    assert_eq!(dump(&owner, &root).await, dump(&owner_dst, &root).await);
    assert_eq!(owner_dst.get_acl(&format!("{root}/rw-admin")).await.unwrap().0, masked_acl());

    // Verify without ADMIN sees `u:x` on both sides: not proof of equality.
    let out = verify(&root, &[]).await;
    assert_exit(&out, 2);
    assert_eq!(classes(&json(&out)), vec![pair_of("unreadable", "/rw-admin")]);
    assert_equal_report(&verify(&root, &["--no-acl"]).await, nodes);

    // --acl open copies without credentials, and says so in the ACLs.
    let opened = format!("{root}-open");
    let out = copy(&root, &["--acl", "open", "--dst-root", &opened]).await;
    assert_exit(&out, 0);
    assert_eq!(dst.get_acl(&format!("{opened}/rw-admin")).await.unwrap().0, open_acl());
    let out = verify(&root, &["--dst-root", &opened, "--no-acl"]).await;
    assert_equal_report(&out, nodes);
}

fn open_acl() -> Vec<zk::Acl> {
    vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::anyone())]
}

/// Every node under `root` with its stat: changes whenever anything there is
/// written (data, children, ACL), and only then.
async fn stats_under(c: &zk::Client, root: &str) -> Vec<(String, zk::Stat)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_string()];
    while let Some(p) = stack.pop() {
        let Some(stat) = c.check_stat(&p).await.unwrap() else { continue };
        out.push((p.clone(), stat));
        for child in c.list_children(&p).await.unwrap_or_default() {
            stack.push(format!("{p}/{child}"));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Copies `root` (whose ACLs deny this copy CREATE somewhere), then re-runs
/// the copy with --update and --mirror: an equal destination needs no
/// write, so none may happen, and none may be reported.
async fn rerun_writes_nothing(root: &str, nodes: u64, auth: &[&str]) {
    let p = pair();
    let dst = connect_auth(&p.dst.connect_string(), "u:p").await;
    let out = copy(root, auth).await;
    assert_exit(&out, 0);
    assert_equal_report(&verify(root, auth).await, nodes);
    let before = stats_under(&dst, root).await;
    for mode in ["--update", "--mirror"] {
        let out = copy(root, &[&[mode], auth].concat()).await;
        assert_exit(&out, 0);
        let j = json(&out);
        let changes = ["created", "data_updated", "acl_updated", "deleted", "padding_ops"].map(|k| j[k].as_u64());
        assert_eq!(changes, [Some(0); 5], "{mode}: {j}");
        assert_eq!(j["unchanged"], nodes);
        assert_eq!(changed_nodes(&before, &stats_under(&dst, root).await), Vec::<String>::new(), "{mode} wrote");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_over_a_read_only_parent_succeeds_and_writes_nothing() {
    let (src, _) = pair_clients().await;
    let root = unique_root("rerun-ro");
    // Everyone may read /ro; nobody may create beneath it or change its ACL.
    create_tree(&src, &root, &[("/ro", b"r"), ("/ro/child", b"c")]).await;
    let read_only = [zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())];
    src.set_acl(&format!("{root}/ro"), &read_only, None).await.unwrap();
    rerun_writes_nothing(&root, 3, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_over_an_admin_only_parent_writes_nothing() {
    let p = pair();
    let root = unique_root("rerun-admin");
    let owner = connect_auth(&p.src.connect_string(), "u:p").await;
    let nodes = build_masked(&owner, &root).await;
    rerun_writes_nothing(&root, nodes, &AUTH).await;
}

// ---------------------------------------------------------------------------
// 7. Ephemeral and sequential nodes

async fn persistent_children(c: &zk::Client, parent: &str) -> Vec<String> {
    let mut names = Vec::new();
    for name in c.list_children(parent).await.unwrap() {
        if c.check_stat(&format!("{parent}/{name}")).await.unwrap().unwrap().ephemeral_owner == 0 {
            names.push(name);
        }
    }
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn sequential_names_are_kept_and_ephemerals_skipped() {
    let (src, dst) = pair_clients().await;
    let root = unique_root("seq");
    let (persistent, ephemeral) = build_sequential(&src, &root).await;

    let out = copy(&root, &[]).await;
    assert_exit(&out, 0);
    let s = json(&out);
    assert_eq!(s["created"], persistent);
    assert_eq!(s["skipped_ephemerals"], ephemeral);
    assert_eq!(dump(&src, &root).await, dump(&dst, &root).await, "dump leaves ephemerals out");

    let queue = format!("{root}/queue");
    let mut on_dst = dst.list_children(&queue).await.unwrap();
    on_dst.sort();
    // Items get even numbers (locks the odd ones); items 2 and 7 were deleted.
    let mut expected: Vec<String> = [0, 1, 3, 4, 5, 6, 8, 9].iter().map(|i| format!("item-{:010}", 2 * i)).collect();
    expected.insert(0, "0000000020".to_string());
    assert_eq!(on_dst, expected, "exact names, gaps kept, no locks");
    assert_eq!(persistent_children(&src, &queue).await, expected);
    assert_eq!(dst.list_children(&format!("{root}/members")).await.unwrap(), vec!["static".to_string()]);

    // Verify ignores the source's ephemerals; the counters were carried, so
    // the destination hands out no number the source already gave out.
    let out = verify(&root, &["--strict-counters"]).await;
    assert_equal_report(&out, persistent);
    assert_eq!(json(&out)["ephemerals_ignored"], ephemeral);
    let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let (_, next) = dst.create(&format!("{queue}/item-"), b"new", &seq).await.unwrap();
    assert!(next.into_i64() >= 21, "{next}");
}

// ---------------------------------------------------------------------------
// 8. Containers and TTL nodes with children

async fn exists(c: &zk::Client, path: &str) -> bool {
    c.check_stat(path).await.unwrap().is_some()
}

async fn wait_gone(c: &zk::Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while exists(c, path).await {
        assert!(Instant::now() < deadline, "{path} still there");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_and_ttl_nodes_stay_while_they_have_children() {
    let (src, dst) = pair_clients().await;
    let root = unique_root("kinds");
    let nodes = build_kinds(&src, &root).await;
    let flags = kind_flags(&root);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();

    let out = copy(&root, &flags).await;
    assert_exit(&out, 0);
    let s = json(&out);
    assert_eq!(s["created"], nodes);
    assert_eq!((s["kinds"]["containers"].as_u64(), s["kinds"]["ttl"].as_u64()), (Some(1), Some(1)));
    assert_equal_report(&verify(&root, &[]).await, nodes);
    assert_eq!(dump(&src, &root).await, dump(&dst, &root).await);

    // Past the TTL and several reaper runs (every 500 ms): both stay, as
    // they have children.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let at = |rel: &str| format!("{root}{rel}");
    assert!(exists(&dst, &at("/locks/c")).await && exists(&dst, &at("/cache/t")).await);

    // A grandchild leaving does not empty the container.
    dst.delete(&at("/locks/c/sub/leaf"), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(exists(&dst, &at("/locks/c")).await, "the container still has /sub");
    // Emptied, both go; their persistent parents and the source stay.
    dst.delete(&at("/locks/c/sub"), None).await.unwrap();
    dst.delete(&at("/cache/t/kid"), None).await.unwrap();
    wait_gone(&dst, &at("/locks/c")).await;
    wait_gone(&dst, &at("/cache/t")).await;
    assert!(exists(&dst, &at("/locks")).await && exists(&dst, &at("/cache")).await);
    assert!(exists(&src, &at("/locks/c/sub/leaf")).await && exists(&src, &at("/cache/t/kid")).await);
}

/// The paths whose stat differs between two readings of a whole server
/// (added, removed or changed), with both stats.
fn changed_nodes(before: &[(String, zk::Stat)], after: &[(String, zk::Stat)]) -> Vec<String> {
    let old: std::collections::HashMap<&String, &zk::Stat> = before.iter().map(|(p, s)| (p, s)).collect();
    let new: std::collections::HashMap<&String, &zk::Stat> = after.iter().map(|(p, s)| (p, s)).collect();
    let mut out: Vec<String> = old
        .keys()
        .chain(new.keys())
        .collect::<HashSet<_>>()
        .into_iter()
        .filter(|p| old.get(*p) != new.get(*p))
        .map(|p| format!("{p:?}: {:?} -> {:?}", old.get(p), new.get(p)))
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------
// 9. Safety: on a pair of its own, so that every node of both servers can be
// watched.

#[tokio::test(flavor = "multi_thread")]
async fn dry_runs_write_nothing_and_copies_never_touch_the_source() {
    let Pair { src: a, dst: b } = own_pair().await;
    let (s, d) = (a.connect_string(), b.connect_string());
    // The owner of the digest trees sees everything; its session owns the ephemerals.
    let src = connect_auth(&s, "u:p").await;
    let dst = connect_auth(&d, "u:p").await;

    let mut trees: Vec<(String, u64, Vec<String>)> = Vec::new();
    let root = "/names/ odd root ".to_string();
    trees.push((root.clone(), build_odd_names(&src, &root).await, vec![]));
    for (name, build) in [("/binary", 0), ("/max", 1), ("/chain", 2), ("/seq", 3), ("/kinds", 4), ("/digest", 5)] {
        let root = name.to_string();
        let (nodes, flags) = match build {
            0 => (build_binary(&src, &root).await, vec![]),
            1 => (build_max_node(&src, &root).await, vec![]),
            2 => (build_chain(&src, &root, 1000).await, vec![]),
            3 => (build_sequential(&src, &root).await.0, vec![]),
            4 => (build_kinds(&src, &root).await, kind_flags(&root)),
            _ => (build_digest(&src, &root).await, args(&AUTH)),
        };
        trees.push((root, nodes, flags));
    }
    let root = "/masked".to_string();
    trees.push((root.clone(), build_masked(&src, &root).await, args(&AUTH)));

    let src_before = stats(&src).await;
    let dst_before = stats(&dst).await;
    for (root, nodes, flags) in &trees {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let out = copy_on(&s, &d, root, &[&["--dry-run"], &flags[..]].concat()).await;
        assert_exit(&out, 0);
        let j = json(&out);
        assert_eq!(j["dry_run"], true);
        assert_eq!(j["plan"]["creates"], *nodes, "{root}");
    }
    assert_eq!(changed_nodes(&dst_before, &stats(&dst).await), Vec::<String>::new(), "no dry run wrote anywhere");

    for (root, nodes, flags) in &trees {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let out = copy_on(&s, &d, root, &flags).await;
        assert_exit(&out, 0);
        assert_eq!(json(&out)["created"], *nodes, "{root}");
        let auth: Vec<&str> = if flags.contains(&"--src-auth") { AUTH.to_vec() } else { vec![] };
        assert_equal_report(&verify_on(&s, &d, root, &auth).await, *nodes);
        assert_eq!(dump(&src, root).await, dump(&dst, root).await, "{root}");
    }
    // Against an equal destination, a mirror run has nothing to do.
    for (root, nodes, flags) in &trees {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let out = copy_on(&s, &d, root, &[&["--mirror"], &flags[..]].concat()).await;
        assert_exit(&out, 0);
        let j = json(&out);
        let changes = ["created", "data_updated", "acl_updated", "deleted", "padding_ops"].map(|k| j[k].as_u64());
        assert_eq!(changes, [Some(0); 5], "{root}: {j}");
        assert_eq!(j["unchanged"], *nodes, "{root}");
    }
    assert_eq!(changed_nodes(&src_before, &stats(&src).await), Vec::<String>::new(), "no copy changed the source");
}
