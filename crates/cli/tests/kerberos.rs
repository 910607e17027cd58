//! SASL GSSAPI (Kerberos) against a KDC on loopback (MIT krb5, a realm of
//! the test's own): a server whose principal is `zookeeper/localhost`, a
//! client `alice` with a keytab. Built with the `gssapi` feature only (it
//! needs the system's Kerberos library); `scripts/test.sh` turns it on
//! where libkrb5-dev, libclang and the KDC are installed.
#![cfg(feature = "gssapi")]

mod common;

use std::time::Duration;

use common::*;
use zkrepl_testkit::kerberos::{self, Kdc, REALM};
use zkrepl_testkit::local::{LocalServer, ServerOptions};
use zkrepl_testkit::secure::SaslServer;
use zookeeper_client as zk;

#[tokio::test(flavor = "multi_thread")]
async fn copy_and_verify_with_kerberos() {
    assert!(
        kerberos::available(),
        "the gssapi feature is on, so the KDC must be installed (krb5-kdc, krb5-admin-server)"
    );
    let dir = tempfile::tempdir().unwrap();
    let kdc = Kdc::start(dir.path()).expect("a KDC on loopback");
    let server_keytab = kdc.principal("zookeeper/localhost").unwrap();
    let alice = kdc.principal("alice").unwrap();
    let jaas = kdc.server_jaas("zookeeper/localhost", &server_keytab).unwrap();
    let opts = ServerOptions {
        sasl: Some(SaslServer { users: Vec::new(), jaas: Some(jaas), required: false }),
        properties: vec![("java.security.krb5.conf".into(), kdc.krb5_conf.display().to_string())],
        ..test_server_options()
    };
    let krb_src = tokio::task::spawn_blocking(move || LocalServer::start(&opts)).await.unwrap().expect("server");

    // A node only alice's principal may read, and children.
    let root = unique_root("krb");
    let id = format!("alice@{REALM}");
    {
        let c = connect(&krb_src.connect_string()).await;
        c.mkdir(&root, &open()).await.unwrap();
        let acl = [zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("sasl", &id))];
        let only = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&acl));
        c.create(&format!("{root}/alice"), b"a", &open()).await.unwrap();
        for i in 0..5 {
            c.create(&format!("{root}/alice/c{i}"), b"secret", &only).await.unwrap();
        }
        c.set_acl(&format!("{root}/alice"), &acl, None).await.unwrap();
    }
    let env = [
        ("KRB5_CONFIG", kdc.krb5_conf.display().to_string()),
        ("KRB5_CLIENT_KTNAME", alice.display().to_string()),
        ("KRB5CCNAME", format!("FILE:{}", dir.path().join("alice.ccache").display())),
    ];
    let run = |a: Vec<String>| {
        let env = env.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_zkrepl")).args(&a).envs(env).output().unwrap()
        })
    };
    let src = krb_src.connect_string();
    let copy_root = format!("{root}-copy");
    // Source and destination: two roots of the same ensemble, both sides
    // alice by her keytab.
    let both = |cmd: &str, extra: &[&str]| {
        let mut a = args(&[cmd, "--src", &src, "--dst", &src, "--root", &root, "--dst-root", &copy_root, "-q"]);
        a.extend(args(&["--src-sasl", "gssapi", "--src-sasl-host", "localhost"]));
        a.extend(args(&["--dst-sasl", "gssapi", "--dst-sasl-host", "localhost"]));
        a.extend(args(extra));
        a
    };

    // Without Kerberos on the source the node is closed.
    let mut a = args(&["copy", "--src", &src, "--dst", &src, "--root", &root, "--dst-root", &format!("{root}-no")]);
    a.extend(args(&["-q", "--timeout", "20s"]));
    let out = run(a).await.unwrap();
    assert_exit(&out, 2);
    assert!(stderr(&out).contains(&format!("{root}/alice")), "{}", stderr(&out));

    let out = tokio::time::timeout(Duration::from_secs(120), run(both("copy", &["--json"]))).await.unwrap().unwrap();
    assert_exit(&out, 0);
    assert_eq!(json(&out)["created"].as_u64(), Some(7), "{}", stdout(&out));
    // The copy is closed to a session without the principal, as the
    // source is; verify (which compares ACLs) proves it is alice's.
    let plain = connect(&src).await;
    assert_eq!(plain.get_data(&format!("{copy_root}/alice/c1")).await.unwrap_err(), zk::Error::NoAuth);
    let out = run(both("verify", &["--json"])).await.unwrap();
    assert_exit(&out, 0);
    assert_equal_digests(&json(&out));

    // A principal the KDC does not know: told at once.
    let mut d = args(&["digest", "--zk", &src, "--root", &root, "--sasl", "gssapi", "--sasl-host", "nosuchhost"]);
    d.extend(args(&["--timeout", "60s"]));
    let started = std::time::Instant::now();
    let out = run(d).await.unwrap();
    assert_exit(&out, 2);
    assert!(started.elapsed() < Duration::from_secs(30), "told at once: {:?}", started.elapsed());
    let e = stderr(&out);
    assert!(e.contains("Kerberos to the source ZooKeeper") && e.contains("zookeeper/nosuchhost"), "{e}");
    assert!(e.contains("--sasl-host"), "{e}");
    drop(krb_src);
}
