//! Secure ensembles: copy, verify and digest over TLS (client certificates,
//! a server name given), over SASL DIGEST-MD5, and both at once through
//! connections cut mid-copy; nodes readable only by an x509 or a sasl
//! identity copied with their ACLs; a 3-node ensemble read over TLS with a
//! member down and one without TLS; a simulated Pegasus cluster moved
//! between servers whose one client port takes TLS and plain text; and
//! every bad input told at once, not after a timeout.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::sim::{assert_only_hosts_changed, start_all, start_cmd, stop_cmd, write_configs};
use common::*;
use zkrepl_testkit::local::{LocalEnsemble, LocalServer, ServerOptions};
use zkrepl_testkit::pegasus::MetaConfig;
use zkrepl_testkit::proxy::FaultProxy;
use zkrepl_testkit::secure::{ClientAuth, Pki, SaslServer};
use zkrepl_testkit::treegen::{self, GenOptions, Shape};
use zookeeper_client as zk;

const ALICE: (&str, &str) = ("alice", "alice-secret");
const BOB: (&str, &str) = ("bob", "bob-secret");

/// Two servers with a plain and a secure client port and SASL users: the
/// source asks every TLS client for a certificate, the destination takes
/// one when offered. The certificates live in `_dir`.
struct Secure {
    src: LocalServer,
    dst: LocalServer,
    pki: Pki,
    /// alice's password in a file.
    alice_pw: PathBuf,
    bob_pw: PathBuf,
    _dir: tempfile::TempDir,
}

fn secure() -> &'static Secure {
    static S: OnceLock<Secure> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path()).expect("certificates");
        let sasl = SaslServer {
            users: [ALICE, BOB].iter().map(|(u, p)| (u.to_string(), p.to_string())).collect(),
            jaas: None,
            required: false,
        };
        let opts =
            |auth| ServerOptions { tls: Some(pki.server(auth)), sasl: Some(sasl.clone()), ..test_server_options() };
        let (a, b) = (opts(ClientAuth::Need), opts(ClientAuth::Want));
        let (src, dst) = std::thread::scope(|s| {
            let src = s.spawn(|| LocalServer::start(&a));
            let dst = s.spawn(|| LocalServer::start(&b));
            (src.join().unwrap().expect("source server"), dst.join().unwrap().expect("destination server"))
        });
        let alice_pw = dir.path().join("alice.pw");
        std::fs::write(&alice_pw, format!("{}\n", ALICE.1)).unwrap();
        let bob_pw = dir.path().join("bob.pw");
        std::fs::write(&bob_pw, BOB.1).unwrap();
        Secure { src, dst, pki, alice_pw, bob_pw, _dir: dir }
    })
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// The TLS options of one side (`src` or `dst`), the client certificate
/// included, the server's name given (the hosts are 127.0.0.1).
fn tls_args(side: &str, s: &Secure) -> Vec<String> {
    args(&[
        &format!("--{side}-tls-ca"),
        &path(&s.pki.ca),
        &format!("--{side}-tls-cert"),
        &path(&s.pki.client.cert),
        &format!("--{side}-tls-key"),
        &path(&s.pki.client.key),
        &format!("--{side}-tls-server-name"),
        "zk.zkrepl.test",
    ])
}

fn sasl_args(side: &str, s: &Secure) -> Vec<String> {
    args(&[&format!("--{side}-sasl-user"), ALICE.0, &format!("--{side}-sasl-password-file"), &path(&s.alice_pw)])
}

/// A client of the test's own over TLS with the client certificate, and
/// SASL as `sasl` when given.
async fn tls_client(s: &Secure, server: &LocalServer, sasl: Option<(&str, &str)>) -> zk::Client {
    let ca = std::fs::read_to_string(&s.pki.ca).unwrap();
    let cert = std::fs::read_to_string(&s.pki.client.cert).unwrap();
    let key = std::fs::read_to_string(&s.pki.client.key).unwrap();
    let tls = zk::TlsOptions::new().with_pem_ca(&ca).unwrap().with_pem_identity(&cert, &key).unwrap();
    // SAFETY: a test's client, on loopback, reaching the server by address.
    let tls = unsafe { tls.with_no_hostname_verification() };
    let mut c = zk::Client::connector().with_session_timeout(Duration::from_secs(10)).with_tls(tls);
    if let Some((u, p)) = sasl {
        c = c.with_sasl(zk::SaslOptions::digest_md5(u.to_string(), p.to_string()));
    }
    c.secure_connect(&server.secure_connect_string()).await.expect("TLS connect")
}

/// The session's ids as the server says, of one scheme.
async fn ids(c: &zk::Client, scheme: &str) -> Vec<String> {
    c.list_auth_users().await.unwrap().iter().filter(|u| u.scheme() == scheme).map(|u| u.user().to_string()).collect()
}

/// `root` with open nodes, a node only the client certificate's x509 id
/// may touch, and one only sasl:alice may, each with children.
async fn seed(s: &Secure, root: &str) -> String {
    let c = tls_client(s, &s.src, Some(ALICE)).await;
    let x509 = ids(&c, "x509").await;
    assert_eq!(x509.len(), 1, "the client certificate gives one x509 id: {x509:?}");
    assert_eq!(ids(&c, "sasl").await, vec![ALICE.0.to_string()]);
    let x509 = x509[0].clone();
    assert!(x509.contains(&format!("CN={}", s.pki.client.cn)), "{x509}");
    c.mkdir(root, &open()).await.unwrap();
    for i in 0..20 {
        c.create(&format!("{root}/open{i}"), format!("v{i}").as_bytes(), &open()).await.unwrap();
    }
    for (name, scheme, id) in [("x509only", "x509", x509.as_str()), ("saslonly", "sasl", ALICE.0)] {
        let acl = [zk::Acl::new(zk::Permission::ALL, zk::AuthId::new(scheme, id))];
        let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&acl));
        c.create(&format!("{root}/{name}"), name.as_bytes(), &opts).await.unwrap();
        for i in 0..5 {
            c.create(&format!("{root}/{name}/c{i}"), b"secret", &opts).await.unwrap();
        }
    }
    x509
}

/// The ACL of `node` on `server`, read by a client holding both ids.
async fn acl_on(s: &Secure, server: &LocalServer, node: &str) -> Vec<zk::Acl> {
    tls_client(s, server, Some(ALICE)).await.get_acl(node).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_verify_and_digest_over_tls_with_client_certificates_and_sasl() {
    let s = secure();
    let root = unique_root("tls");
    let x509 = seed(s, &root).await;
    let (src, dst) = (s.src.secure_connect_string(), s.dst.secure_connect_string());
    let both = |cmd: &str| {
        let mut a = args(&[cmd, "--src", &src, "--dst", &dst, "--root", &root, "--json", "-q"]);
        for side in ["src", "dst"] {
            a.extend(tls_args(side, s));
            a.extend(sasl_args(side, s));
        }
        a
    };
    let out = zkrepl_async(both("copy")).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["created"].as_u64(), Some(1 + 20 + 2 * 6), "{}", stdout(&out));
    for (node, scheme, id) in [("x509only", "x509", x509.as_str()), ("saslonly", "sasl", ALICE.0)] {
        let want = vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::new(scheme, id))];
        for p in [format!("{root}/{node}"), format!("{root}/{node}/c3")] {
            assert_eq!(acl_on(s, &s.dst, &p).await, want, "{p} keeps its {scheme} ACL, and no temporary grant");
        }
    }
    let out = zkrepl_async(both("verify")).await;
    assert_exit(&out, 0);
    assert_equal_digests(&json(&out));

    // digest over TLS alone, of each side, and the two agree; the server
    // name checked by our own handshake reaches the right servers.
    let digest = |zk: &str| {
        let mut a = args(&["digest", "--zk", zk, "--root", &root, "--json"]);
        a.extend(
            [
                "--tls-ca",
                &path(&s.pki.ca),
                "--tls-cert",
                &path(&s.pki.client.cert),
                "--tls-key",
                &path(&s.pki.client.key),
            ]
            .map(String::from),
        );
        a.extend(args(&["--tls-server-name", "zk.zkrepl.test", "--sasl-user", ALICE.0]));
        a.extend(args(&["--sasl-password-file", &path(&s.alice_pw)]));
        a
    };
    let (a, b) = (zkrepl_async(digest(&src)).await, zkrepl_async(digest(&dst)).await);
    assert_exit(&a, 0);
    assert_exit(&b, 0);
    assert_eq!(json(&a)["digest"], json(&b)["digest"], "{}\n{}", stdout(&a), stdout(&b));
    assert_eq!(json(&a)["nodes"].as_u64(), Some(1 + 20 + 2 * 6));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_of_an_x509_or_sasl_identity_needs_that_identity_on_the_source() {
    let s = secure();
    let root = unique_root("noid");
    seed(s, &root).await;
    let (src, dst) = (s.src.secure_connect_string(), s.dst.secure_connect_string());
    let base = |extra: Vec<String>| {
        let mut a = args(&["copy", "--src", &src, "--dst", &dst, "--root", &root, "-q"]);
        a.extend(tls_args("dst", s));
        a.extend(sasl_args("dst", s));
        a.extend(extra);
        a
    };
    // TLS with the certificate but no SASL: the sasl node is closed.
    let out = zkrepl_async(base(tls_args("src", s))).await;
    assert_exit(&out, 2);
    let e = stderr(&out);
    assert!(e.contains("not authorized") && e.contains(&format!("{root}/saslonly")), "{e}");
    assert!(e.contains("--src-sasl-user") && e.contains("--src-tls-cert"), "the hint names the identities: {e}");
    // SASL as another user and a certificate the source knows as another
    // x509 id: the x509 node is closed.
    let mut other = args(&["--src-tls-ca", &path(&s.pki.ca), "--src-tls-server-name", "zk.zkrepl.test"]);
    other.extend(args(&[
        "--src-tls-cert",
        &path(&s.pki.other_client.cert),
        "--src-tls-key",
        &path(&s.pki.other_client.key),
    ]));
    other.extend(args(&["--src-sasl-user", ALICE.0, "--src-sasl-password-file", &path(&s.alice_pw)]));
    let out = zkrepl_async(base(other)).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains(&format!("{root}/x509only")), "{}", stderr(&out));
    // A refused read leaves at most a partial copy, which a re-run with
    // both identities finishes.
    let mut full = tls_args("src", s);
    full.extend(sasl_args("src", s));
    let mut again = base(full);
    again.push("--update".into());
    assert_exit(&zkrepl_async(again).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_sasl_survive_connections_cut_in_the_middle_of_a_copy() {
    let s = secure();
    let root = unique_root("cutsecure");
    seed(s, &root).await;
    {
        // Enough to read that the cuts land mid-copy.
        let c = tls_client(s, &s.src, Some(ALICE)).await;
        c.mkdir(&format!("{root}/bulk"), &open()).await.unwrap();
        let data = vec![7u8; 1024];
        for chunk in 0..20 {
            let mut m = c.new_multi_writer();
            for i in 0..100 {
                m.add_create(&format!("{root}/bulk/n{chunk}-{i}"), &data, &open()).unwrap();
            }
            m.commit().await.unwrap();
        }
    }
    let proxy = FaultProxy::to_port(s.src.secure_port.unwrap()).await;
    let mut a = args(&[
        "copy",
        "--src",
        &proxy.connect_string(),
        "--dst",
        &s.dst.secure_connect_string(),
        "--root",
        &root,
        "--json",
        "-q",
        "--timeout",
        "30s",
        "--read-batch",
        "50",
    ]);
    for side in ["src", "dst"] {
        a.extend(tls_args(side, s));
        a.extend(sasl_args(side, s));
    }
    let child = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_zkrepl")).args(&a).output().unwrap()
    });
    for cut in [20_001u64, 45_003, 80_007] {
        proxy.drop_after_client_bytes(cut);
        let deadline = Instant::now() + Duration::from_secs(60);
        while proxy.bytes_forwarded().0 < cut && Instant::now() < deadline && !child.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let cut_seen = proxy.bytes_forwarded().0;
    let out = tokio::time::timeout(Duration::from_secs(120), child).await.expect("the copy ends").unwrap();
    assert_exit(&out, 0);
    assert!(cut_seen > 80_007, "the copy read through the three cuts ({cut_seen} bytes sent)");
    assert_eq!(json(&out)["created"].as_u64(), Some(1 + 20 + 2 * 6 + 1 + 2000), "{}", stdout(&out));
    let mut v = args(&["verify", "--src", &s.src.secure_connect_string(), "--dst", &s.dst.secure_connect_string()]);
    v.extend(args(&["--root", &root, "--json", "-q"]));
    for side in ["src", "dst"] {
        v.extend(tls_args(side, s));
        v.extend(sasl_args(side, s));
    }
    let out = zkrepl_async(v).await;
    assert_exit(&out, 0);
    assert_equal_digests(&json(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ensemble_over_tls_with_a_member_down_and_one_without_tls() {
    let s = secure();
    let opts = ServerOptions { tls: Some(s.pki.server(ClientAuth::Need)), ..test_server_options() };
    let mut ens = tokio::task::spawn_blocking(move || LocalEnsemble::start(3, &opts).unwrap()).await.unwrap();
    let root = unique_root("tlsens");
    {
        let c = connect(&ens.connect_string()).await;
        c.mkdir(&root, &open()).await.unwrap();
        let mut m = c.new_multi_writer();
        for i in 0..300 {
            m.add_create(&format!("{root}/n{i:03}"), format!("v{i}").as_bytes(), &open()).unwrap();
        }
        m.commit().await.unwrap();
    }
    let tls_of = |ens: &LocalEnsemble, i: usize| ens.servers[i].secure_connect_string();
    let list = |members: &[String]| members.join(",");
    let copy_from = |src: String, tag: &'static str| {
        let root = root.clone();
        let mut a = args(&["copy", "--src", &src, "--dst", &s.dst.secure_connect_string(), "--root", &root]);
        a.extend(args(&["--dst-root", &format!("{root}-{tag}"), "--json", "-q", "--timeout", "20s"]));
        a.extend(tls_args("src", s));
        a.extend(tls_args("dst", s));
        zkrepl_async(a)
    };
    // Each run: a copy from `src` (members tried in their order, each
    // checked by name), then a verify of it against `live`, the members up.
    let run = |src: String, live: String, tag: &'static str| {
        let root = root.clone();
        let copied = copy_from(src, tag);
        async move {
            let out = copied.await;
            assert_exit(&out, 0);
            assert_eq!(json(&out)["created"].as_u64(), Some(301), "{tag}: {}", stdout(&out));
            let mut v = args(&["verify", "--src", &live, "--dst", &s.dst.secure_connect_string(), "--root", &root]);
            v.extend(args(&["--dst-root", &format!("{root}-{tag}"), "--json", "-q", "--timeout", "20s"]));
            v.extend(tls_args("src", s));
            v.extend(tls_args("dst", s));
            let out = zkrepl_async(v).await;
            assert_exit(&out, 0);
            assert_equal_digests(&json(&out));
        }
    };
    let all = list(&(0..3).map(|i| tls_of(&ens, i)).collect::<Vec<_>>());
    run(all.clone(), all, "all").await;
    // A follower down, and listed first: the pool passes over it.
    let down = ens.follower().expect("a follower");
    ens.servers[down].kill();
    let up: Vec<usize> = (0..3).filter(|&i| i != down).collect();
    let live = list(&[tls_of(&ens, up[0]), tls_of(&ens, up[1])]);
    run(list(&[tls_of(&ens, down), tls_of(&ens, up[0]), tls_of(&ens, up[1])]), live.clone(), "down").await;
    // First a member given by its plain port (its TLS problem is that
    // member's, not the ensemble's), then the dead one: the one TLS member
    // left serves alone.
    let mixed = list(&[ens.servers[up[0]].connect_string(), tls_of(&ens, down), tls_of(&ens, up[1])]);
    run(mixed, live, "mixed").await;
    // Every member that answers gives a TLS problem: refused, saying so.
    let plain = list(&[ens.servers[up[0]].connect_string(), ens.servers[up[1]].connect_string()]);
    let out = copy_from(plain, "plain").await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("does not speak TLS on that port"), "{}", stderr(&out));
    drop(ens);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_known_by_its_certificate_alone() {
    let s = secure();
    let root = unique_root("x509dst");
    let x509 = seed(s, &root).await;
    // Copies of a subtree onto the destination's TLS port as a session
    // whose one id is the certificate `client` (no SASL there).
    let copy_as = |sub: String, to: String, client: zkrepl_testkit::secure::ClientIdentity| async move {
        let dst = s.dst.secure_connect_string();
        let mut a = args(&["copy", "--src", &s.src.secure_connect_string(), "--dst", &dst, "--root", &sub]);
        a.extend(args(&["--dst-root", &to, "--json", "-q", "--dst-tls-ca", &path(&s.pki.ca)]));
        a.extend(args(&["--dst-tls-cert", &path(&client.cert), "--dst-tls-key", &path(&client.key)]));
        a.extend(args(&["--dst-tls-server-name", "zk.zkrepl.test"]));
        a.extend(tls_args("src", s));
        a.extend(sasl_args("src", s));
        let out = zkrepl_async(a).await;
        assert_exit(&out, 0);
        assert_eq!(json(&out)["created"].as_u64(), Some(6), "{}", stdout(&out));
    };
    let reader = tls_client(s, &s.dst, Some(ALICE)).await;
    // The x509 node, by a session holding that very certificate: its ACL
    // already lets the session write beneath, so each node is created with
    // it and never changed after (ACL version 0: no temporary grant), which
    // takes knowing the session's x509 id (whoAmI).
    let to = format!("{root}-x509");
    copy_as(format!("{root}/x509only"), to.clone(), s.pki.client.clone()).await;
    let want = vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("x509", &x509))];
    // The subtree's root is the node with children to write beneath it.
    let (acl, stat) = reader.get_acl(&to).await.unwrap();
    assert_eq!(acl, want);
    assert_eq!(stat.aversion, 0, "created with its ACL, no grant set and taken back");
    assert_eq!(reader.get_acl(&format!("{to}/c2")).await.unwrap().0, want);
    // The sasl node, by a session of another certificate: it cannot read
    // what it writes once alice's ACL is on, so it writes under a grant,
    // then sets alice's ACL and nothing else.
    let to = format!("{root}-sasl");
    copy_as(format!("{root}/saslonly"), to.clone(), s.pki.other_client.clone()).await;
    let want = vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("sasl", ALICE.0))];
    let (acl, stat) = reader.get_acl(&to).await.unwrap();
    assert_eq!(acl, want, "alice's ACL, and no grant left");
    assert!(stat.aversion > 0, "written under a grant, then given alice's ACL");
    assert_eq!(reader.get_acl(&format!("{to}/c2")).await.unwrap().0, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pegasus_cluster_moves_between_tls_ensembles_its_metas_reach_in_plain_text() {
    // Pegasus's metas speak plain text to ZooKeeper: ensembles that take TLS
    // and plain text on one port (client.portUnification) serve them as they
    // are and zkrepl over TLS, the client certificate checked.
    let s = secure();
    let unified = ServerOptions {
        tls: Some(s.pki.server(ClientAuth::Need)),
        properties: vec![("zookeeper.client.portUnification".to_string(), "true".to_string())],
        ..test_server_options()
    };
    let (old_zk, new_zk) = tokio::task::spawn_blocking(move || {
        std::thread::scope(|t| {
            let a = t.spawn(|| LocalServer::start(&unified).expect("old server"));
            let b = t.spawn(|| LocalServer::start(&unified).expect("new server"));
            (a.join().unwrap(), b.join().unwrap())
        })
    })
    .await
    .unwrap();
    let (old, new) = (old_zk.connect_string(), new_zk.connect_string());
    let root = unique_root("pegtls");
    let spec =
        GenOptions { shape: Shape::Pegasus, apps: 2, partitions: 8, leader_lock: false, ..GenOptions::default() };
    let session = zkrepl_testkit::ceilings::session(&old).await.unwrap();
    treegen::generate(&session, &root, &spec).await.unwrap();
    drop(session);

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut template = MetaConfig::new(&old, &root, &format!("{root}/lock/meta"));
    template.zookeeper_timeout_ms = 10_000;
    template.update_interval_ms = 100;
    let (servers, configs, originals) = write_configs(d, 2, &template, |_, c| c.to_ini());
    let (_metas, pids, logs) = start_all(d, &configs, Duration::from_secs(60));
    let lock = format!("{root}/lock/meta");
    let status = |extra: Vec<String>| {
        let mut a = args(&["pegasus", "status", "--meta", &servers.join(","), "--lock-path", &lock, "--json"]);
        a.extend(extra);
        zkrepl_async(a)
    };

    // Status reads the cluster's ZooKeeper over TLS; with a CA that does
    // not vouch for the servers, it says so.
    let st = status(tls_args("src", s)).await;
    assert_exit(&st, 0);
    assert_eq!(json(&st)["zookeeper"]["lock_nodes"]["known"].as_array().map(Vec::len), Some(2), "{}", stdout(&st));
    let mut foreign = tls_args("src", s);
    foreign[1] = path(&s.pki.foreign_ca);
    let st = status(foreign).await;
    assert!(
        stdout(&st).contains("does not vouch for") || stderr(&st).contains("does not vouch for"),
        "{}",
        stdout(&st)
    );

    // The migration, its ZooKeeper sessions given TLS on both ensembles
    // (a wrong CA on either is refused before anything changes, below);
    // the metas restarted by hooks, on the new ensemble.
    let journal = d.join("migrate.journal");
    let migrate = |src_ca: &str, dst_ca: &str| {
        let mut a = args(&["pegasus", "migrate", "--meta", &servers.join(","), "--dst", &new]);
        for c in &configs {
            a.extend(args(&["--config", &c.display().to_string()]));
        }
        a.extend(args(&["--journal", &journal.display().to_string(), "--wait", "60s", "--allow-drift"]));
        a.extend(args(&["--stop-followers", &stop_cmd(&[&pids[1]]), "--stop-leader", &stop_cmd(&[&pids[0]])]));
        a.extend(args(&["--start-leader", &start_cmd(&configs[0], &pids[0], &logs[0])]));
        a.extend(args(&["--start-followers", &start_cmd(&configs[1], &pids[1], &logs[1])]));
        for (side, ca) in [("src", src_ca), ("dst", dst_ca)] {
            let mut t = tls_args(side, s);
            t[1] = ca.to_string();
            a.extend(t);
        }
        a.extend(args(&["--yes", "--json"]));
        zkrepl_async(a)
    };
    // Either CA wrong: refused before anything changes, saying which side.
    let (ca, foreign) = (path(&s.pki.ca), path(&s.pki.foreign_ca));
    for (src_ca, dst_ca, side) in [(&foreign, &ca, "old"), (&ca, &foreign, "new")] {
        let out = migrate(src_ca, dst_ca).await;
        assert_exit(&out, 2);
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            said.contains("does not vouch for") && said.contains("refused before changing anything"),
            "{side}: {said}"
        );
        assert_only_hosts_changed(&configs, &originals, &old, &old);
        let v = json(&status(tls_args("src", s)).await);
        assert_eq!(v["reported_level"], "steady", "{side}: the cluster as it was: {v}");
        assert_eq!(v["zookeeper_hosts"], old.as_str(), "{v}");
    }
    let out = migrate(&ca, &ca).await;
    assert_exit(&out, 0);
    assert_only_hosts_changed(&configs, &originals, &old, &new);
    let st = status(tls_args("src", s)).await;
    assert_exit(&st, 0);
    let v = json(&st);
    assert_eq!(v["zookeeper_hosts"], new.as_str(), "{v}");
    assert_eq!(v["stored_level"]["known"], "steady", "{v}");
    assert_eq!(v["zookeeper"]["lock_nodes"]["known"].as_array().map(Vec::len), Some(2), "both metas on the new: {v}");

    // cleanup-old over TLS too: with a wrong CA for either ensemble it
    // deletes nothing; then the old tree goes, the new one stays.
    let cleanup = |src_ca: &str, dst_ca: &str| {
        let mut a = args(&["pegasus", "cleanup-old", "--journal", &journal.display().to_string(), "--yes", "--json"]);
        for (side, ca) in [("src", src_ca), ("dst", dst_ca)] {
            let mut t = tls_args(side, s);
            t[1] = ca.to_string();
            a.extend(t);
        }
        zkrepl_async(a)
    };
    for (src_ca, dst_ca, side) in [(&foreign, &ca, "old"), (&ca, &foreign, "new")] {
        let out = cleanup(src_ca, dst_ca).await;
        assert_exit(&out, 2);
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(said.contains("does not vouch for"), "{side}: {said}");
        assert!(connect(&old).await.check_stat(&format!("{root}/apps")).await.unwrap().is_some(), "{side}");
    }
    let out = cleanup(&ca, &ca).await;
    assert_exit(&out, 0);
    assert!(json(&out)["deleted"].as_u64().is_some_and(|n| n > 20), "{}", stdout(&out));
    assert!(connect(&old).await.check_stat(&root).await.unwrap().is_none());
    assert!(connect(&new).await.check_stat(&format!("{root}/apps/2")).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_digest_md5_over_plain_ports() {
    let s = secure();
    let root = unique_root("sasl");
    seed(s, &root).await;
    let (src, dst) = (s.src.connect_string(), s.dst.connect_string());
    // alice's password from the environment on the source, bob's from a
    // file on the destination: bob writes, and holds sasl:bob there.
    let mut a = args(&["copy", "--src", &src, "--dst", &dst, "--root", &root, "--json", "-q"]);
    a.extend(args(&["--src-sasl-user", ALICE.0, "--src-sasl-password-env", "ZKREPL_TEST_ALICE"]));
    a.extend(args(&[
        "--src-sasl",
        "digest-md5",
        "--dst-sasl-user",
        BOB.0,
        "--dst-sasl-password-file",
        &path(&s.bob_pw),
    ]));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_zkrepl"))
            .args(&a)
            .env("ZKREPL_TEST_ALICE", ALICE.1)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    // The x509 node is closed to a plain-text session.
    assert_exit(&out, 2);
    assert!(stderr(&out).contains(&format!("{root}/x509only")), "{}", stderr(&out));

    // The sasl node alone, which bob cannot read once it has alice's ACL:
    // the copy keeps a grant for bob's own id while it writes, then sets
    // alice's ACL.
    let (sub, copy) = (format!("{root}/saslonly"), format!("{root}-copy"));
    let subtree =
        |cmd: &str| args(&[cmd, "--src", &src, "--dst", &dst, "--root", &sub, "--dst-root", &copy, "--json", "-q"]);
    let mut a = subtree("copy");
    a.extend(sasl_args("src", s));
    a.extend(args(&["--dst-sasl-user", BOB.0, "--dst-sasl-password-file", &path(&s.bob_pw)]));
    let out = zkrepl_async(a).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["created"].as_u64(), Some(6), "{}", stdout(&out));
    let want = vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("sasl", ALICE.0))];
    assert_eq!(acl_on(s, &s.dst, &format!("{copy}/c2")).await, want);

    let mut v = subtree("verify");
    v.extend(sasl_args("src", s));
    v.extend(sasl_args("dst", s));
    let out = zkrepl_async(v).await;
    assert_exit(&out, 0);
    assert_equal_digests(&json(&out));
}

/// A digest of `/` on `zk` with `extra`: exit 2 and the message, within a
/// few seconds though the connect timeout is long.
async fn refused(zk: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut a = args(&["digest", "--zk", zk, "--root", "/", "--timeout", "60s"]);
    a.extend(args(extra));
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_zkrepl")).args(&a).envs(env).output().unwrap()
    })
    .await
    .unwrap();
    assert_exit(&out, 2);
    assert!(started.elapsed() < Duration::from_secs(20), "told at once, not after --timeout: {:?}", started.elapsed());
    stderr(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tls_and_sasl_inputs_are_told_at_once() {
    let s = secure();
    let (plain, tls) = (s.src.connect_string(), s.src.secure_connect_string());
    let (ca, cert, key) = (path(&s.pki.ca), path(&s.pki.client.cert), path(&s.pki.client.key));
    let name = ["--tls-server-name", "zk.zkrepl.test"];
    let with = |v: &[&str]| -> Vec<String> { args(v) };
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (with(&["--tls-ca", "/nonexistent/ca.pem"]), "cannot read the TLS CA file /nonexistent/ca.pem", ""),
        (with(&["--tls-ca", &path(&s.alice_pw)]), "holds no certificate", ""),
        (
            with(&["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &path(&s.pki.other_client.key)]),
            "does not go with the certificate",
            "",
        ),
        (with(&["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &cert]), "holds no private key", ""),
        (
            with(&["--tls-ca", &path(&s.pki.foreign_ca), "--tls-cert", &cert, "--tls-key", &key, name[0], name[1]]),
            "does not vouch for",
            "--tls-ca",
        ),
        (
            with(&["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key]),
            "is not for 127.0.0.1 (it names zk.zkrepl.test, localhost)",
            "--tls-server-name",
        ),
        (
            with(&["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key, name[0], "other.zkrepl.test"]),
            "is not for other.zkrepl.test",
            "--tls-server-name",
        ),
        (with(&["--tls-ca", &ca, name[0], name[1]]), "requires a client certificate", "--tls-cert"),
        (
            with(&[
                "--tls-ca",
                &ca,
                "--tls-cert",
                &path(&s.pki.foreign_client.cert),
                "--tls-key",
                &path(&s.pki.foreign_client.key),
                name[0],
                name[1],
            ]),
            "refused the client certificate",
            "--tls-cert",
        ),
        (
            with(&["--sasl-user", ALICE.0]),
            "needs its password from --sasl-password-file FILE or --sasl-password-env VAR",
            "",
        ),
        (
            with(&["--sasl-user", ALICE.0, "--sasl-password-env", "ZKREPL_TEST_UNSET"]),
            "ZKREPL_TEST_UNSET (--sasl-password-env) is not set",
            "",
        ),
        (
            with(&["--sasl-user", ALICE.0, "--sasl-password-file", "/nonexistent/pw"]),
            "cannot read the SASL password file",
            "",
        ),
        (with(&["--tls-cert", &cert]), "--tls-ca", ""),
    ];
    for (extra, says, hint) in &cases {
        let refs: Vec<&str> = extra.iter().map(String::as_str).collect();
        let e = refused(&tls, &refs, &[]).await;
        assert!(e.contains(says), "{extra:?}: {e}");
        assert!(e.contains(hint), "{extra:?}: the hint names {hint}: {e}");
    }
    // A plain-text port given TLS, and a TLS port given plain text.
    let e = refused(&plain, &["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key, name[0], name[1]], &[]).await;
    assert!(e.contains("does not speak TLS on that port") && e.contains("secureClientPort"), "{e}");
    let e = refused(&tls, &[], &[]).await;
    assert!(e.contains("speaks only TLS on that port") && e.contains("--tls-ca"), "{e}");
    let e = refused("tcp+tls://127.0.0.1:2281", &[], &[]).await;
    assert!(e.contains("scheme prefix"), "{e}");
    // A wrong SASL password, over either port.
    let wrong = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wrong.path(), "not-the-password").unwrap();
    let sasl = ["--sasl-user", ALICE.0, "--sasl-password-file", wrong.path().to_str().unwrap()];
    let e = refused(&plain, &sasl, &[]).await;
    assert!(e.contains("rejected the credentials (SASL DIGEST-MD5 as alice)") && e.contains("--sasl-user"), "{e}");
    let mut over_tls =
        vec!["--tls-ca", ca.as_str(), "--tls-cert", cert.as_str(), "--tls-key", key.as_str(), name[0], name[1]];
    over_tls.extend(sasl);
    let e = refused(&tls, &over_tls, &[]).await;
    assert!(e.contains("rejected the credentials"), "{e}");
    let e = refused(
        &plain,
        &["--sasl-user", ALICE.0, "--sasl-password-env", "ZKREPL_TEST_EMPTY"],
        &[("ZKREPL_TEST_EMPTY", "")],
    )
    .await;
    assert!(e.contains("is empty"), "{e}");
}
