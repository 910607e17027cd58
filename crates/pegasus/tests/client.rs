//! The client against what it may meet on a meta server's address: nothing
//! listening, a listener that never answers, a real ZooKeeper port, cut or
//! oversized replies, followers and leaders answering canned replies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use zkrepl_pegasus::Query;
use zkrepl_pegasus::messages as m;
use zkrepl_pegasus::thrift::{Writer, ttype};
use zkrepl_pegasus::zk::{self as pzk, AppsNode};
use zkrepl_pegasus::{Error, MetaClient, Role};
use zkrepl_testkit::local::{LocalServer, ServerOptions, four_letter};
use zookeeper_client as zk;

const SHORT: Duration = Duration::from_millis(500);

/// A port where nothing listens.
async fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a.to_string()
}

/// What a canned listener does with one request.
type Answer = Arc<dyn Fn(Request) -> Vec<u8> + Send + Sync>;

enum Request {
    Rpc { code: String, seqid: i32 },
    Http,
}

/// Listens on a free port; each connection gets one request read and the
/// answer's bytes written back, then is closed.
async fn canned(answer: Answer) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 4];
                if s.read_exact(&mut head).await.is_err() {
                    return;
                }
                let req = if &head == b"GET " {
                    let mut buf = vec![0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    Request::Http
                } else {
                    let mut rest = [0u8; 44];
                    s.read_exact(&mut rest).await.unwrap();
                    let len = u32::from_be_bytes(rest[12..16].try_into().unwrap()) as usize;
                    let mut body = vec![0u8; len];
                    s.read_exact(&mut body).await.unwrap();
                    let n = u32::from_be_bytes(body[4..8].try_into().unwrap()) as usize;
                    let code = String::from_utf8(body[8..8 + n].to_vec()).unwrap();
                    let seqid = i32::from_be_bytes(body[8 + n..12 + n].try_into().unwrap());
                    Request::Rpc { code, seqid }
                };
                let _ = s.write_all(&answer(req)).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// A reply frame: length, transport error, MessageBegin, result { 0: response }.
fn reply(code: &str, seqid: i32, transport: &str, response: Option<&dyn Fn(&mut Writer)>) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(transport);
    w.message_begin(&format!("{code}_ACK"), 2, seqid);
    if let Some(r) = response {
        w.field(ttype::STRUCT, 0);
        r(&mut w);
        w.stop();
    }
    let body = w.into_bytes();
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn cluster_info(err: &str, entries: &[(&str, &str)]) -> impl Fn(&mut Writer) {
    let err = err.to_string();
    let entries: Vec<(String, String)> = entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |w| {
        zkrepl_pegasus::thrift::write_error_code(w, 1, &err);
        w.field(ttype::LIST, 2);
        w.list_begin(ttype::STRING, entries.len());
        entries.iter().for_each(|(k, _)| w.string(k));
        w.field(ttype::LIST, 3);
        w.list_begin(ttype::STRING, entries.len());
        entries.iter().for_each(|(_, v)| w.string(v));
        w.stop();
    }
}

/// A follower: ERR_FORWARD_TO_OTHERS with empty lists; on HTTP, 307 to `leader`.
fn follower(leader: Option<String>) -> Answer {
    Arc::new(move |req| match req {
        Request::Rpc { code, seqid } => {
            reply(&code, seqid, "ERR_OK", Some(&cluster_info("ERR_FORWARD_TO_OTHERS", &[])))
        }
        Request::Http => match &leader {
            Some(l) => format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{l}/meta/cluster\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
            None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        },
    })
}

/// A leader that answers cluster_info and nothing else (ERR_HANDLER_NOT_FOUND).
fn leader() -> Answer {
    Arc::new(|req| match req {
        Request::Rpc { code, seqid } if code == m::RPC_CM_CLUSTER_INFO => reply(
            &code,
            seqid,
            "ERR_OK",
            Some(&cluster_info("ERR_OK", &[("primary_meta_server", "self"), ("zookeeper_root", "/pegasus/c1")])),
        ),
        Request::Rpc { code, seqid } => reply(&code, seqid, "ERR_HANDLER_NOT_FOUND", None),
        Request::Http => b"HTTP/1.1 500 x\r\n\r\n".to_vec(),
    })
}

#[tokio::test]
async fn a_closed_port_is_a_meta_that_is_down() {
    let meta = closed_port().await;
    let client = MetaClient::new(&meta, SHORT).unwrap();
    let e = client.cluster_info_at(&meta).await.unwrap_err();
    assert!(matches!(e, Error::Refused { .. }) && e.is_down(), "{e:?}");
    assert!(e.to_string().contains(&meta), "{e}");
    let e = client.find_leader().await.unwrap_err();
    assert!(e.to_string().starts_with("no meta reachable") && e.to_string().contains(&meta), "{e}");
}

#[tokio::test]
async fn a_listener_that_never_answers_times_out() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let meta = l.local_addr().unwrap().to_string();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            conns.push(s);
        }
    });
    let client = MetaClient::new(&meta, SHORT).unwrap();
    let started = Instant::now();
    let e = client.cluster_info_at(&meta).await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(e.to_string(), format!("meta server {meta} did not answer within 500ms"));
    held.abort();
}

/// A ZooKeeper port is not taken for a meta; the cluster's ZooKeeper state is
/// read from the same server.
#[test]
fn a_zookeeper_port_is_not_a_meta_server_and_its_state_is_read() {
    let zk = LocalServer::start(&ServerOptions::default()).expect("ZooKeeper server");
    assert_eq!(four_letter(zk.port, "ruok"), "imok");
    let meta = zk.connect_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        zookeeper_state(&meta).await;
        let client = MetaClient::new(&meta, Duration::from_secs(5)).unwrap();
        let e = client.cluster_info_at(&meta).await.unwrap_err();
        assert!(matches!(e, Error::NotAMeta { .. }), "{e:?}");
        assert!(e.to_string().contains(&format!("{meta} is not a Pegasus meta server")), "{e}");
        let e = client.find_leader().await.unwrap_err();
        assert!(e.to_string().contains("not a Pegasus meta server"), "{e}");
    });
}

#[tokio::test]
async fn cut_oversized_and_text_replies_are_refused_naming_the_meta() {
    let cut = canned(Arc::new(|_| {
        let mut v = 100i32.to_be_bytes().to_vec();
        v.extend_from_slice(&[0u8; 30]);
        v
    }))
    .await;
    let huge = canned(Arc::new(|_| vec![0x02, 0, 0, 0, 0, 0, 0, 6])).await;
    let text = canned(Arc::new(|_| b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec())).await;
    let short = canned(Arc::new(|_| vec![0, 0])).await;
    let client = MetaClient::new(&format!("{cut},{huge},{text},{short}"), SHORT).unwrap();

    let e = client.cluster_info_at(&cut).await.unwrap_err();
    assert!(matches!(e, Error::Truncated { got: 34, expected: 100, .. }), "{e:?}");
    assert!(e.to_string().contains(&cut), "{e}");
    let e = client.cluster_info_at(&huge).await.unwrap_err();
    assert!(matches!(e, Error::Oversized { len: 0x0200_0000, .. }), "{e:?}");
    assert!(e.to_string().contains(&huge), "{e}");
    for meta in [&text, &short] {
        let e = client.cluster_info_at(meta).await.unwrap_err();
        assert!(matches!(e, Error::NotAMeta { .. }), "{meta}: {e:?}");
    }
}

#[tokio::test]
async fn the_leader_is_the_meta_that_answers_and_the_others_say_how_they_answered() {
    let f = canned(follower(None)).await;
    let l = canned(leader()).await;
    let down = closed_port().await;
    let client = MetaClient::new(&format!("{f},{down},{l}"), SHORT).unwrap();
    let found = client.find_leader().await.unwrap();
    assert_eq!(found.meta, l);
    assert_eq!(found.info.get("zookeeper_root"), Some("/pegasus/c1"));
    let roles: Vec<_> = found.answers.iter().map(|a| (a.meta.clone(), a.role.clone())).collect();
    assert_eq!(roles[0], (f.clone(), Role::Follower { code: "ERR_FORWARD_TO_OTHERS".into() }));
    assert!(matches!(&roles[1].1, Role::Down { reason } if reason.contains("refused")), "{roles:?}");
    assert_eq!(roles[2], (l.clone(), Role::Leader));
}

#[tokio::test]
async fn a_follower_s_redirect_leads_to_a_leader_not_given() {
    let l = canned(leader()).await;
    let f = canned(follower(Some(l.clone()))).await;
    let client = MetaClient::new(&f, SHORT).unwrap();
    let found = client.find_leader().await.unwrap();
    assert_eq!(found.meta, l);
    assert_eq!(found.answers[1].named_by.as_deref(), Some(f.as_str()));
}

#[tokio::test]
async fn only_followers_is_an_error_that_says_so() {
    let a = canned(follower(None)).await;
    let b = canned(follower(None)).await;
    let client = MetaClient::new(&format!("{a},{b}"), SHORT).unwrap();
    let e = client.find_leader().await.unwrap_err();
    assert!(matches!(e, Error::AllFollowers { .. }), "{e:?}");
    assert!(e.to_string().starts_with("every meta answered as a follower"), "{e}");
    assert!(e.to_string().contains(&a) && e.to_string().contains(&b), "{e}");
}

#[tokio::test]
async fn an_rpc_the_meta_does_not_serve_is_unknown_in_the_status() {
    let l = canned(leader()).await;
    let client = MetaClient::new(&l, SHORT).unwrap();
    let e = client.query_level(&l).await.unwrap_err();
    assert!(e.is_handler_not_found(), "{e:?}");
    let status = zkrepl_pegasus::cluster_status(&client, &Default::default()).await.unwrap();
    assert!(matches!(&status.stored_level, zkrepl_pegasus::Query::Unknown(why) if why.contains("not served")));
    assert!(status.apps.known().is_none());
    assert_eq!(status.zookeeper_root.as_deref(), Some("/pegasus/c1"));
}

async fn zookeeper_state(hosts: &str) {
    let c = zk::Client::connector().connect(hosts).await.unwrap();
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let eph = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    c.mkdir("/pegasus/c1/lock/dsn.meta.server.leader", &open).await.unwrap();
    let s =
        pzk::read_state(hosts, &Default::default(), "/pegasus/c1", &pzk::default_lock_path("/pegasus/c1"), SHORT * 4)
            .await;
    assert_eq!(s.apps, Query::Known(AppsNode::Missing));
    assert_eq!(s.lock_nodes, Query::Known(Some(Vec::new())));

    c.create("/pegasus/c1/apps", b"lock", &open).await.unwrap();
    let prefix = "/pegasus/c1/lock/dsn.meta.server.leader/LOCKNODE";
    c.create(prefix, b"10.0.0.1:34601", &eph).await.unwrap();
    c.create(prefix, b"10.0.0.2:34601", &eph).await.unwrap();
    let s = pzk::read_state(hosts, &Default::default(), "/pegasus/c1/", "/pegasus/c1/lock", SHORT * 4).await;
    assert_eq!(s.apps_path, "/pegasus/c1/apps");
    assert_eq!(s.apps, Query::Known(AppsNode::Lock));
    let nodes = s.lock_nodes.known().cloned().flatten().expect("lock nodes");
    let seen: Vec<_> = nodes.iter().map(|n| (n.name.as_str(), n.data.as_str(), n.ephemeral)).collect();
    assert_eq!(seen, [("LOCKNODE0000000000", "10.0.0.1:34601", true), ("LOCKNODE0000000001", "10.0.0.2:34601", true)]);

    c.set_data("/pegasus/c1/apps", b"unlock", None).await.unwrap();
    let s = pzk::read_state(hosts, &Default::default(), "/pegasus/c1", "/elsewhere", SHORT * 4).await;
    assert_eq!(s.apps, Query::Known(AppsNode::Unlock));
    assert_eq!(s.lock_nodes, Query::Known(None));

    let s = pzk::read_state("127.0.0.1:1", &Default::default(), "/pegasus/c1", "/x", SHORT).await;
    assert!(matches!(&s.apps, Query::Unknown(why) if why.contains("127.0.0.1:1")), "{:?}", s.apps);
}

/// A leader answering every status query with canned responses: steady
/// stored, freezed reported, one replica server down, one app with a
/// running duplication and nothing else running.
fn full_leader() -> Answer {
    use zkrepl_pegasus::thrift::write_error_code as err;
    Arc::new(|req| {
        let Request::Rpc { code, seqid } = req else { return b"HTTP/1.1 500 x\r\n\r\n".to_vec() };
        let ok = |f: &dyn Fn(&mut Writer)| reply(&code, seqid, "ERR_OK", Some(f));
        match code.as_str() {
            m::RPC_CM_CLUSTER_INFO => ok(&cluster_info(
                "ERR_OK",
                &[("zookeeper_hosts", ""), ("zookeeper_root", "/pegasus/c1"), ("meta_function_level", "freezed")],
            )),
            m::RPC_CM_CONTROL_META => ok(&|w| {
                err(w, 1, "ERR_OK");
                w.field(ttype::I32, 2);
                w.i32(400);
                w.stop();
            }),
            m::RPC_CM_LIST_NODES => ok(&|w| {
                err(w, 1, "ERR_OK");
                w.field(ttype::LIST, 2);
                w.list_begin(ttype::STRUCT, 2);
                for (status, last) in [(1, 1u8), (2, 2)] {
                    w.field(ttype::I32, 1);
                    w.i32(status);
                    w.field(ttype::STRUCT, 2); // rpc_address: a struct with a bare i64
                    w.i64(((0x7f00_0000u64 | last as u64) << 32 | 34801 << 16 | 1) as i64);
                    w.stop();
                }
                w.stop();
            }),
            m::RPC_CM_LIST_APPS => ok(&|w| {
                err(w, 1, "ERR_OK");
                w.field(ttype::LIST, 2);
                w.list_begin(ttype::STRUCT, 1);
                w.field(ttype::I32, 1);
                w.i32(1);
                w.field(ttype::STRING, 3);
                w.string("temp");
                w.field(ttype::I32, 4);
                w.i32(2);
                w.field(ttype::I32, 5);
                w.i32(8);
                w.stop();
                w.stop();
            }),
            m::RPC_CM_QUERY_DUPLICATION => ok(&|w| {
                err(w, 1, "ERR_OK");
                w.field(ttype::LIST, 4);
                w.list_begin(ttype::STRUCT, 1);
                w.field(ttype::I32, 1);
                w.i32(7);
                w.field(ttype::I32, 2);
                w.i32(3); // DS_LOG
                w.stop();
                w.stop();
            }),
            m::RPC_CM_QUERY_BULK_LOAD_STATUS => ok(&|w| {
                err(w, 1, "ERR_OK");
                w.field(ttype::I32, 3);
                w.i32(4); // succeed, the last one
                w.field(ttype::BOOL, 8);
                w.bool(false);
                w.stop();
            }),
            m::RPC_CM_QUERY_BACKUP_STATUS => ok(&|w| {
                err(w, 1, "ERR_INVALID_PARAMETERS");
                w.stop();
            }),
            m::RPC_CM_QUERY_PARTITION_SPLIT => ok(&|w| {
                err(w, 1, "ERR_INVALID_STATE");
                w.stop();
            }),
            _ => reply(&code, seqid, "ERR_HANDLER_NOT_FOUND", None),
        }
    })
}

#[tokio::test]
async fn the_status_reads_levels_nodes_apps_and_what_runs() {
    let l = canned(full_leader()).await;
    let client = MetaClient::new(&l, SHORT).unwrap();
    let s = zkrepl_pegasus::cluster_status(&client, &Default::default()).await.unwrap();
    assert_eq!(s.stored_level, Query::Known(zkrepl_pegasus::Level::Steady));
    assert_eq!(s.reported_level.as_deref(), Some("freezed"));
    assert!(s.levels_differ());
    let nodes = s.nodes.known().unwrap();
    assert_eq!(
        (nodes.alive.as_slice(), nodes.unalive.as_slice()),
        (&["127.0.0.1:34801".to_string()][..], &["127.0.0.2:34801".to_string()][..])
    );
    let apps = s.apps.known().unwrap();
    assert_eq!((apps[0].app_name.as_str(), apps[0].partition_count), ("temp", 8));
    // RPC_CM_LIST_DUPLICATION is not served: the app was asked on its own.
    assert_eq!(
        apps[0].activity(),
        [("duplication", Some(true)), ("bulk load", Some(false)), ("backup", Some(false)), ("split", Some(false))]
    );
    assert!(s.zookeeper.is_none(), "cluster_info named no ZooKeeper hosts");
}

#[tokio::test]
async fn a_level_that_does_not_read_back_is_an_error_with_both_levels() {
    // The canned leader's level stays steady whatever is set.
    let l = canned(full_leader()).await;
    let client = MetaClient::new(&l, SHORT).unwrap();
    let e = client.set_level(zkrepl_pegasus::Level::Blind).await.unwrap_err();
    assert!(matches!(e, Error::LevelNotTaken { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("meta server {l}: the level was steady, was set to blind, and reads back as steady")
    );
    assert!(client.set_level(zkrepl_pegasus::Level::Steady).await.is_ok());
}
