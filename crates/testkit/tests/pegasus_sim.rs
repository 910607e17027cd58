//! The simulated Pegasus meta server against a real local ZooKeeper. These
//! tests also state what the simulator does. The request writer and the
//! response reader here are byte-level and independent of the simulator's
//! codec.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkrepl_testkit::local::{LocalServer, ServerOptions};
use zkrepl_testkit::pegasus::{ClusterSpec, Level, MetaConfig, Seed, SimCluster, SimMeta, partition_json};
use zookeeper_client as zk;

static SERVER: OnceLock<LocalServer> = OnceLock::new();

/// One ZooKeeper for the file; every test works under its own root.
fn hosts() -> String {
    SERVER.get_or_init(|| LocalServer::start(&ServerOptions::default()).expect("start ZooKeeper")).connect_string()
}

async fn zk_hosts() -> String {
    tokio::task::spawn_blocking(hosts).await.unwrap()
}

async fn client() -> zk::Client {
    zk::Client::connect(&zk_hosts().await).await.expect("connect")
}

async fn cluster(root: &str, metas: usize, edit: impl FnOnce(&mut ClusterSpec)) -> SimCluster {
    let mut spec = ClusterSpec::new(&zk_hosts().await, root, metas, Seed::simple(2, 4));
    edit(&mut spec);
    SimCluster::start(spec).await.expect("start the cluster")
}

/// Polls `f` every 50 ms for at most `limit`.
async fn eventually(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let start = Instant::now();
    for _ in 0..1000 {
        if f().await {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

// ---- a minimal client: THFT v0 header + strict Thrift call ----

fn tstr(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as i32).to_be_bytes());
    b.extend_from_slice(s.as_bytes());
}

/// A request frame; `req` is the request struct's fields and STOP.
fn request(code: &str, req: &[u8], hdr_length: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0x8001_0001u32.to_be_bytes());
    tstr(&mut body, code);
    body.extend_from_slice(&7i32.to_be_bytes());
    body.extend_from_slice(&[12, 0, 1]);
    body.extend_from_slice(req);
    body.push(0);
    let mut f = b"THFT".to_vec();
    for v in [0u32, hdr_length, 0, body.len() as u32, 0, 0, 0, 5000, 0] {
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&0u64.to_be_bytes());
    f.extend_from_slice(&body);
    f
}

fn i32_field(id: i16, v: i32) -> Vec<u8> {
    let mut b = vec![8];
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&v.to_be_bytes());
    b.push(0);
    b
}

fn str_field(id: i16, s: &str) -> Vec<u8> {
    let mut b = vec![11];
    b.extend_from_slice(&id.to_be_bytes());
    tstr(&mut b, s);
    b.push(0);
    b
}

#[derive(Debug, Clone, PartialEq)]
enum V {
    I(i64),
    S(String),
    L(Vec<V>),
    M(Vec<(V, V)>),
    St(Vec<(i16, V)>),
}

impl V {
    fn field(&self, id: i16) -> &V {
        match self {
            V::St(f) => &f.iter().find(|(i, _)| *i == id).unwrap_or_else(|| panic!("no field {id} in {self:?}")).1,
            _ => panic!("not a struct"),
        }
    }
    fn s(&self) -> &str {
        if let V::S(s) = self { s } else { panic!("not a string: {self:?}") }
    }
    fn i(&self) -> i64 {
        if let V::I(x) = self { *x } else { panic!("not an int: {self:?}") }
    }
    fn l(&self) -> &[V] {
        if let V::L(x) = self { x } else { panic!("not a list: {self:?}") }
    }
}

struct R<'a>(&'a [u8]);

impl R<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn int(&mut self, n: usize) -> i64 {
        self.take(n).iter().fold(0i64, |a, b| a << 8 | *b as i64)
    }
    fn i16(&mut self) -> i16 {
        self.int(2) as u16 as i16
    }
    fn i32(&mut self) -> i32 {
        self.int(4) as u32 as i32
    }
    fn s(&mut self) -> String {
        let n = self.i32() as usize;
        String::from_utf8(self.take(n).to_vec()).unwrap()
    }
    /// A struct's fields. STRUCT fields 1, 2 and 3 have bare payloads in the
    /// responses read here: error_code (a string), rpc_address (an i64, in
    /// node_info) and host_port (string, i16 port, byte type).
    fn st(&mut self) -> V {
        let mut f = Vec::new();
        loop {
            let t = self.take(1)[0];
            if t == 0 {
                return V::St(f);
            }
            let id = self.i16();
            let v = match (t, id) {
                (12, 1) => V::S(self.s()),
                (12, 2) => V::I(self.int(8)),
                (12, 3) => {
                    let h = self.s();
                    let p = self.i16() as u16;
                    self.take(1);
                    V::S(format!("{h}:{p}"))
                }
                _ => self.val(t),
            };
            f.push((id, v));
        }
    }
    fn val(&mut self, t: u8) -> V {
        match t {
            2 | 3 => V::I(self.int(1)),
            8 => V::I(self.i32() as i64),
            10 => V::I(self.int(8)),
            11 => V::S(self.s()),
            12 => self.st(),
            13 => {
                let (k, v, n) = (self.take(1)[0], self.take(1)[0], self.i32());
                V::M((0..n).map(|_| (self.val(k), self.val(v))).collect())
            }
            15 => {
                let (e, n) = (self.take(1)[0], self.i32());
                V::L((0..n).map(|_| self.val(e)).collect())
            }
            _ => panic!("type {t}"),
        }
    }
}

/// Sends one call; returns the transport error and the response struct.
async fn call(addr: std::net::SocketAddr, code: &str, req: &[u8]) -> (String, Option<V>) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&request(code, req, 48)).await.unwrap();
    let mut len = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut len)).await.unwrap().unwrap();
    let n = i32::from_be_bytes(len) as usize;
    let mut rest = vec![0u8; n - 4];
    c.read_exact(&mut rest).await.unwrap();
    let mut r = R(&rest);
    let err = r.s();
    assert_eq!(r.i32() as u32, 0x8001_0002, "REPLY");
    assert_eq!(r.s(), format!("{code}_ACK"));
    assert_eq!(r.i32(), 7, "seqid echoed");
    if err != "ERR_OK" {
        assert!(r.0.is_empty());
        return (err, None);
    }
    assert_eq!(r.take(3), &[12, 0, 0], "result field 0, STRUCT");
    let v = r.st();
    assert_eq!(r.take(1), &[0], "result STOP");
    assert!(r.0.is_empty());
    (err, Some(v))
}

async fn ok(addr: std::net::SocketAddr, code: &str, req: &[u8]) -> V {
    let (e, v) = call(addr, code, req).await;
    assert_eq!(e, "ERR_OK");
    v.unwrap()
}

async fn control(addr: std::net::SocketAddr, level: i32) -> i64 {
    let v = ok(addr, "RPC_CM_CONTROL_META", &i32_field(1, level)).await;
    assert_eq!(v.field(1).s(), "ERR_OK");
    v.field(2).i()
}

async fn cluster_info(addr: std::net::SocketAddr) -> Vec<(String, String)> {
    let v = ok(addr, "RPC_CM_CLUSTER_INFO", &[0]).await;
    let keys = v.field(2).l().iter().map(|k| k.s().to_string());
    keys.zip(v.field(3).l().iter().map(|x| x.s().to_string())).collect()
}

/// One GET, read to the end of its Content-Length; the meta then keeps the
/// connection open, as the real one does.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..100 {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).expect("a Content-Length");
            if body.len() >= len.trim().parse::<usize>().unwrap() {
                break;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed before the answer was whole: {text}");
        out.extend_from_slice(&chunk[..n]);
    }
    let still_open = tokio::time::timeout(Duration::from_millis(300), c.read(&mut chunk)).await.is_err();
    assert!(still_open, "the connection stays open after the answer");
    String::from_utf8(out).unwrap()
}

async fn ballots(c: &zk::Client, root: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for app in 1..=2 {
        for p in 0..4 {
            let (d, _) = c.get_data(&format!("{root}/apps/{app}/{p}")).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&d).unwrap();
            out.push(v["ballot"].as_i64().unwrap());
        }
    }
    out
}

async fn progress(c: &zk::Client, root: &str) -> i64 {
    let (d, _) = c.get_data(&format!("{root}/apps/1/duplication/1700000001/0")).await.unwrap();
    String::from_utf8(d).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_metas_elect_one_leader_the_follower_forwards_and_a_stop_hands_over() {
    let mut cl = cluster("/sim/elect", 2, |_| {}).await;
    assert_eq!(cl.leader(), Some(0));
    let c = client().await;
    let dir = "/sim/elect/lock/dsn.meta.server.leader";
    let mut kids = c.list_children(dir).await.unwrap();
    kids.sort();
    assert_eq!(kids.len(), 2);
    assert!(kids.iter().all(|k| k.starts_with("LOCKNODE")));
    let (d, _) = c.get_data(&format!("{dir}/{}", kids[0])).await.unwrap();
    assert_eq!(String::from_utf8(d).unwrap(), cl.metas[0].addr().to_string());

    let follower = cl.metas[1].addr();
    let v = ok(follower, "RPC_CM_CLUSTER_INFO", &[0]).await;
    assert_eq!(v.field(1).s(), "ERR_FORWARD_TO_OTHERS");
    assert!(v.field(2).l().is_empty() && v.field(3).l().is_empty());
    let v = ok(follower, "RPC_CM_CONTROL_META", &i32_field(1, 10000)).await;
    assert_eq!((v.field(1).s(), v.field(2).i()), ("ERR_FORWARD_TO_OTHERS", 0));
    let v = ok(follower, "RPC_CM_LIST_APPS", &i32_field(1, 0)).await;
    assert_eq!(v.field(1).s(), "ERR_FORWARD_TO_OTHERS");

    cl.metas[0].stop().await;
    // Well within the 4 s session timeout: the closed session took its node.
    assert_eq!(c.list_children(dir).await.unwrap().len(), 1, "a clean stop removes the lock node at once");
    assert!(eventually(Duration::from_secs(2), async || cl.metas[1].is_leader()).await, "the follower takes over");
    let info = cluster_info(follower).await;
    assert_eq!(info[1], ("primary_meta_server".to_string(), follower.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_keeps_its_lock_node_until_the_session_expires() {
    let mut cl = cluster("/sim/kill", 2, |s| s.template.zookeeper_timeout_ms = 3000).await;
    let c = client().await;
    let dir = "/sim/kill/lock/dsn.meta.server.leader";
    let leader = cl.metas[0].addr();
    cl.metas[0].kill().await;
    assert!(TcpStream::connect(leader).await.is_err(), "a killed meta stops answering");
    assert_eq!(c.list_children(dir).await.unwrap().len(), 2, "its lock node outlives it");
    assert!(!cl.metas[1].is_leader());
    assert!(
        eventually(Duration::from_secs(20), async || cl.metas[1].is_leader()).await,
        "taken over after the timeout"
    );
    assert_eq!(c.list_children(dir).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_session_expires_stops_leading() {
    // A ZooKeeper of its own: this test freezes it.
    let server = tokio::task::spawn_blocking(|| LocalServer::start(&ServerOptions::default())).await.unwrap().unwrap();
    let mut spec = ClusterSpec::new(&server.connect_string(), "/sim/expire", 1, Seed::simple(1, 2));
    spec.template.zookeeper_timeout_ms = 2000;
    let cl = SimCluster::start(spec).await.unwrap();
    assert!(cl.metas[0].is_leader());
    server.pause();
    tokio::time::sleep(Duration::from_secs(5)).await;
    server.resume();
    assert!(eventually(Duration::from_secs(20), async || !cl.metas[0].is_leader()).await, "expired: no longer leads");
    assert!(cl.metas[0].failure().unwrap().contains("Expired"), "{:?}", cl.metas[0].failure());
    let v = ok(cl.metas[0].addr(), "RPC_CM_CONTROL_META", &i32_field(1, 10000)).await;
    assert_eq!(v.field(1).s(), "ERR_FORWARD_TO_OTHERS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_info_keys_in_order_and_freezed_when_too_few_nodes_are_alive() {
    let cl = cluster("/sim/info", 1, |s| s.template.cluster_name = "onebox".into()).await;
    let a = cl.metas[0].addr();
    let info = cluster_info(a).await;
    let keys: Vec<&str> = info.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "meta_servers",
            "primary_meta_server",
            "zookeeper_hosts",
            "zookeeper_root",
            "meta_function_level",
            "balance_operation_count",
            "primary_replica_count_stddev",
            "total_replica_count_stddev",
            "cluster_name"
        ]
    );
    assert_eq!(info[0].1, a.to_string());
    assert_eq!(info[1].1, a.to_string());
    assert_eq!(info[2].1, zk_hosts().await);
    assert_eq!(info[3].1, "/sim/info");
    assert_eq!(info[4].1, "steady");
    assert!(info[5].1.contains("\"total\": 0"), "{}", info[5].1);
    assert_eq!(info[8].1, "onebox");

    let mut cfg = cl.metas[0].config().clone();
    cfg.cluster_root = "/sim/info2".into();
    cfg.lock_path = "/sim/info2/lock".into();
    cfg.port = 0;
    cfg.unalive_nodes = vec![cfg.replica_nodes[0].clone()];
    let m = SimMeta::start(cfg).await.unwrap();
    assert_eq!(cluster_info(m.addr()).await[4].1, "freezed", "2 of 3 alive is below 3 nodes");
    assert_eq!(control(m.addr(), 10000).await, 400, "the stored level stays steady");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_meta_queries_sets_any_number_and_a_restart_forgets() {
    let mut cl = cluster("/sim/control", 1, |_| {}).await;
    let a = cl.metas[0].addr();
    assert_eq!(control(a, 10000).await, 400);
    assert_eq!(control(a, 200).await, 400);
    assert_eq!(control(a, 10000).await, 200);
    assert_eq!(cluster_info(a).await[4].1, "blind");
    assert_eq!(control(a, 12345).await, 200);
    assert_eq!(control(a, 10000).await, 12345, "stored unchecked, as the real meta does");
    cl.metas[0].restart().await.unwrap();
    assert_eq!(cl.metas[0].addr(), a);
    assert_eq!(control(a, 10000).await, 400, "back at meta_function_level_on_start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_nodes_and_list_apps() {
    let cl = cluster("/sim/list", 1, |s| {
        s.template.replica_nodes.push("127.0.0.1:40000".into());
        s.template.unalive_nodes = vec!["127.0.0.1:40000".into()];
    })
    .await;
    let a = cl.metas[0].addr();
    let v = ok(a, "RPC_CM_LIST_NODES", &i32_field(1, 0)).await;
    let nodes = v.field(2).l();
    assert_eq!(nodes.len(), 4);
    assert_eq!(nodes[0].field(1).i(), 1);
    assert_eq!(nodes[0].field(2).i(), (0x7f00_0001i64 << 32) | (34801 << 16) | 1);
    assert_eq!(nodes[0].field(3).s(), "127.0.0.1:34801");
    assert_eq!((nodes[3].field(1).i(), nodes[3].field(3).s()), (2, "127.0.0.1:40000"), "port above 32767");
    let v = ok(a, "RPC_CM_LIST_NODES", &i32_field(1, 1)).await;
    assert_eq!(v.field(2).l().len(), 3);

    let v = ok(a, "RPC_CM_LIST_APPS", &i32_field(1, 0)).await;
    let apps = v.field(2).l();
    assert_eq!(apps.len(), 2);
    assert_eq!(
        (apps[0].field(1).i(), apps[0].field(3).s(), apps[0].field(4).i(), apps[0].field(5).i()),
        (1, "table_1", 1, 4)
    );
    assert_eq!(apps[1].field(3).s(), "table_2");
    assert_eq!(apps[0].field(12).i(), 1, "table_1 is duplicating");

    let v = ok(a, "RPC_CM_QUERY_DUPLICATION", &str_field(1, "table_1")).await;
    assert_eq!((v.field(1).s(), v.field(3).i()), ("ERR_OK", 1));
    assert_eq!(v.field(4).l()[0].field(1).i(), 1_700_000_001);
    let v = ok(a, "RPC_CM_QUERY_DUPLICATION", &str_field(1, "nope")).await;
    assert_eq!(v.field(1).s(), "ERR_APP_NOT_EXIST");
    for code in ["RPC_CM_LIST_DUPLICATION", "RPC_CM_QUERY_BULK_LOAD_STATUS"] {
        assert_eq!(ok(a, code, &str_field(1, "table_1")).await.field(1).s(), "ERR_OK", "{code}");
    }
    assert_eq!(ok(a, "RPC_CM_QUERY_BACKUP_STATUS", &i32_field(1, 1)).await.field(1).s(), "ERR_INVALID_PARAMETERS");
    assert_eq!(ok(a, "RPC_CM_QUERY_PARTITION_SPLIT", &str_field(1, "table_1")).await.field(1).s(), "ERR_INVALID_STATE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_updates_while_steady_none_while_blind_duplication_progress_always() {
    let root = "/sim/updates";
    let cl = cluster(root, 1, |_| {}).await;
    let a = cl.metas[0].addr();
    let c = client().await;
    let start = ballots(&c, root).await;
    assert!(
        eventually(Duration::from_secs(10), async || ballots(&c, root).await.iter().sum::<i64>()
            > start.iter().sum::<i64>() + 1)
        .await,
        "steady: ballots go up"
    );
    control(a, 200).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (b0, p0) = (ballots(&c, root).await, progress(&c, root).await);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(ballots(&c, root).await, b0, "blind: no partition updates");
    assert!(progress(&c, root).await > p0, "blind: duplication progress still written");
    let (d, _) = c.get_data(&format!("{root}/apps")).await.unwrap();
    assert_eq!(d, b"unlock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_lock_refuses_start_and_a_missing_partition_comes_back_at_ballot_0() {
    let hosts = zk_hosts().await;
    let c = client().await;
    zkrepl_testkit::pegasus::seed(&hosts, "/sim/locked", &Seed::simple(1, 2)).await.unwrap();
    c.set_data("/sim/locked/apps", b"lock", None).await.unwrap();
    let cfg = MetaConfig::new(&hosts, "/sim/locked", "/sim/locked/lock");
    let e = SimMeta::start(cfg.clone()).await.err().expect("refused");
    assert!(e.to_string().contains("lock"), "{e}");
    assert!(c.list_children("/sim/locked/lock/dsn.meta.server.leader").await.unwrap().is_empty());

    c.set_data("/sim/locked/apps", b"unlock", None).await.unwrap();
    c.delete("/sim/locked/apps/1/1", None).await.unwrap();
    let mut cfg = cfg;
    cfg.level_on_start = Level::BLIND;
    let m = SimMeta::start(cfg).await.unwrap();
    assert!(m.is_leader());
    let (d, _) = c.get_data("/sim/locked/apps/1/1").await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&d).unwrap();
    assert_eq!(v, partition_json(1, 1, 0, None, &[]));
    assert_eq!((v["ballot"].as_i64(), v["primary"].as_str()), (Some(0), Some("invalid address")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_rpc_answers_handler_not_found() {
    let cl = cluster("/sim/old", 1, |s| s.template.disabled_rpcs = vec!["RPC_CM_QUERY_PARTITION_SPLIT".into()]).await;
    let a = cl.metas[0].addr();
    assert_eq!(
        call(a, "RPC_CM_QUERY_PARTITION_SPLIT", &str_field(1, "t")).await,
        ("ERR_HANDLER_NOT_FOUND".into(), None)
    );
    assert_eq!(call(a, "RPC_CM_NO_SUCH_THING", &[0]).await, ("ERR_HANDLER_NOT_FOUND".into(), None));
    assert_eq!(control(a, 10000).await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_meta_cluster_from_the_leader_and_a_307_from_the_follower() {
    let cl = cluster("/sim/http", 2, |_| {}).await;
    let (lead, follow) = (cl.metas[0].addr(), cl.metas[1].addr());
    let r = http_get(lead, "/meta/cluster").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let body: serde_json::Value = serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["primary_meta_server"], lead.to_string());
    assert_eq!(body["meta_function_level"], "steady");
    assert_eq!(body["zookeeper_root"], "/sim/http");
    assert!(body.get("cluster_name").is_none());
    let r = http_get(follow, "/meta/cluster").await;
    assert!(r.starts_with("HTTP/1.1 307"), "{r}");
    assert!(r.contains(&format!("Location: http://{lead}/meta/cluster\r\n")), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_header_length_drops_the_connection() {
    let cl = cluster("/sim/header", 1, |_| {}).await;
    let mut c = TcpStream::connect(cl.metas[0].addr()).await.unwrap();
    c.write_all(&request("RPC_CM_CLUSTER_INFO", &[0], 44)).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
}

async fn list_apps(addr: std::net::SocketAddr) -> Vec<String> {
    let v = ok(addr, "RPC_CM_LIST_APPS", &i32_field(1, 0)).await;
    v.field(2).l().iter().map(|a| a.field(3).s().to_string()).collect()
}

async fn lock_nodes(c: &zk::Client, lock_path: &str) -> Vec<String> {
    c.list_children(&format!("{lock_path}/dsn.meta.server.leader")).await.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_with_comments_crlf_and_repeated_keys_is_read_as_pegasus_reads_it() {
    let hosts = zk_hosts().await;
    zkrepl_testkit::pegasus::seed(&hosts, "/sim/ini", &Seed::simple(1, 2)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = [
        "; edited by hand",
        "[apps.meta]",
        "ports = 0",
        "[zookeeper]   # the ensemble",
        &format!("  hosts_list = {hosts} ; old was 127.0.0.1:1"),
        "hosts_list = 127.0.0.1:1",
        "#hosts_list = 127.0.0.1:2",
        "[meta_server]",
        "cluster_root = /sim/ini # moved in 2024",
        "distributed_lock_service_parameters = /sim/ini/lock, ignored",
        "meta_function_level_on_start = blind;steady",
        "meta_function_level_on_start = lively",
        "[replication]",
        "cluster_name = a^#b^;c",
        "",
    ]
    .join("\r\n");
    let path = dir.path().join("config.ini");
    std::fs::write(&path, &text).unwrap();
    let m = SimMeta::start_file(&path).await.unwrap();
    assert!(m.is_leader());
    let info = cluster_info(m.addr()).await;
    assert_eq!(info[2].1, hosts, "the comment cut, the first hosts_list kept");
    assert_eq!(info[3].1, "/sim/ini");
    assert_eq!(info[4].1, "blind");
    assert_eq!(info[8].1, "a#b;c", "^# and ^; are literal");
    assert_eq!(list_apps(m.addr()).await, ["table_1"]);

    let twice = dir.path().join("twice.ini");
    std::fs::write(&twice, format!("{text}[zookeeper]\r\ntimeout_ms = 1\r\n")).unwrap();
    let e = SimMeta::start_file(&twice).await.err().expect("a section defined twice is refused");
    assert!(e.to_string().contains("already defined"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_file_moves_a_meta_onto_the_zookeeper_its_rewritten_config_names() {
    let old = zk_hosts().await;
    let server = tokio::task::spawn_blocking(|| LocalServer::start(&ServerOptions::default())).await.unwrap().unwrap();
    let new = server.connect_string();
    assert_ne!(old, new);
    let root = "/sim/move";
    let mut cl = cluster(root, 1, |_| {}).await;
    // What a copy would have put on the new ensemble (told apart here by a third app).
    zkrepl_testkit::pegasus::seed(&new, root, &Seed::simple(3, 4)).await.unwrap();
    let a = cl.metas[0].addr();
    assert_eq!(cluster_info(a).await[2].1, old);
    assert_eq!(list_apps(a).await.len(), 2);
    assert_eq!(cl.metas[0].config_file(), Some(cl.configs[0].as_path()));

    let text = std::fs::read_to_string(&cl.configs[0]).unwrap();
    let line = format!("hosts_list = {old}\n");
    assert!(text.contains(&line));
    std::fs::write(&cl.configs[0], text.replace(&line, &format!("hosts_list = {new} ; was {old}\n"))).unwrap();
    cl.metas[0].restart_from_file().await.unwrap();

    assert_eq!(cl.metas[0].addr(), a, "the same port");
    assert!(cl.metas[0].is_leader());
    let info = cluster_info(a).await;
    assert_eq!((info[2].1.as_str(), info[3].1.as_str()), (new.as_str(), root));
    assert_eq!(list_apps(a).await, ["table_1", "table_2", "table_3"], "loaded from the new ensemble");
    let (oc, nc) = (client().await, zk::Client::connect(&new).await.unwrap());
    assert!(lock_nodes(&oc, "/sim/move/lock").await.is_empty(), "nothing left on the old ensemble");
    assert_eq!(lock_nodes(&nc, "/sim/move/lock").await.len(), 1);

    // A second time, from the same (remembered) file.
    cl.metas[0].restart_from_file().await.unwrap();
    assert_eq!(cluster_info(a).await[2].1, new);
    // A meta not started from a file has none to read.
    let mut cfg = cl.metas[0].config().clone();
    (cfg.port, cfg.cluster_root, cfg.lock_path) = (0, "/sim/move2".into(), "/sim/move2/lock".into());
    let mut m = SimMeta::start(cfg).await.unwrap();
    assert!(m.restart_from_file().await.is_err());
    assert!(m.is_leader(), "and it keeps running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_deleted_before_a_takeover_is_reported_recreated() {
    let root = "/sim/recreate";
    let mut cl = cluster(root, 2, |_| {}).await;
    assert!(cl.metas[0].recreated_partitions().is_empty());
    assert!(cl.metas[1].recreated_partitions().is_empty(), "a follower has loaded nothing");
    assert!(cl.metas[1].loaded_progress().is_empty());
    let c = client().await;
    c.delete(&format!("{root}/apps/2/3"), None).await.unwrap();
    cl.metas[0].stop().await;
    assert!(eventually(Duration::from_secs(5), async || cl.metas[1].is_leader()).await);
    assert_eq!(cl.metas[1].recreated_partitions(), [(2, 3)]);
    let (d, _) = c.get_data(&format!("{root}/apps/2/3")).await.unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&d).unwrap(), partition_json(2, 3, 0, None, &[]));
    let loaded = cl.metas[1].loaded_progress();
    assert_eq!(loaded.keys().copied().collect::<Vec<_>>(), (0..4).map(|p| (1, 1_700_000_001, p)).collect::<Vec<_>>());
    assert!(loaded.values().all(|v| *v >= 100), "{loaded:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_written_at_blind_a_few_nodes_a_tick_round_robin() {
    let root = "/sim/blindprogress";
    let cl = cluster(root, 1, |s| {
        s.template.level_on_start = Level::BLIND;
        s.template.progress_per_tick = 3;
    })
    .await;
    let m = &cl.metas[0];
    let loaded = m.loaded_progress();
    assert_eq!(loaded.len(), 4);
    assert!(loaded.values().all(|v| *v == 100), "as seeded: {loaded:?}");
    let c = client().await;
    let start = ballots(&c, root).await;
    assert!(
        eventually(Duration::from_secs(10), async || m.written_progress().values().all(|v| *v >= 103)
            && m.written_progress().len() == 4)
        .await,
        "{:?}",
        m.written_progress()
    );
    let w = m.written_progress();
    let (lo, hi) = (w.values().min().unwrap(), w.values().max().unwrap());
    assert!(hi - lo <= 1, "3 of 4 a tick, round-robin: {w:?}");
    for ((app, dup, p), v) in &w {
        let (d, _) = c.get_data(&format!("{root}/apps/{app}/duplication/{dup}/{p}")).await.unwrap();
        let now: i64 = String::from_utf8(d).unwrap().parse().unwrap();
        assert!(now >= *v, "the node holds what was written, or a later value");
    }
    assert_eq!(ballots(&c, root).await, start, "blind: no partition updates");
    assert_eq!(control(m.addr(), 10000).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_writes_its_pid_file_and_stops_cleanly_on_sigterm_and_sigint() {
    use tokio::io::AsyncBufReadExt;
    let hosts = zk_hosts().await;
    let root = "/sim/bin";
    zkrepl_testkit::pegasus::seed(&hosts, root, &Seed::simple(1, 2)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = MetaConfig::new(&hosts, root, "/sim/bin/lock");
    // Long enough that a lock node gone at once was removed by a clean stop.
    cfg.zookeeper_timeout_ms = 30_000;
    cfg.update_interval_ms = 100;
    let ini = dir.path().join("config.ini");
    std::fs::write(&ini, cfg.to_ini()).unwrap();
    let c = client().await;
    for sig in ["-TERM", "-INT"] {
        let pid_file = dir.path().join("meta.pid");
        let log = std::fs::File::create(dir.path().join("meta.log")).unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pegasus-sim"))
            .arg("meta")
            .arg("--config")
            .arg(&ini)
            .arg("--pid-file")
            .arg(&pid_file)
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), out.next_line()).await.unwrap().unwrap().unwrap();
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!((words.len(), words[0], words[2]), (3, "meta", "leader"), "{line}");
        let addr: std::net::SocketAddr = words[1].parse().unwrap();
        assert!(addr.ip().is_loopback());
        assert!(eventually(Duration::from_secs(5), async || pid_file.exists()).await, "the pid file is written");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        assert_eq!(pid.trim().parse::<u32>().unwrap(), child.id().unwrap());
        assert_eq!(cluster_info(addr).await[3].1, root, "serving");
        assert_eq!(lock_nodes(&c, "/sim/bin/lock").await.len(), 1);

        let kill = std::process::Command::new("kill").arg(sig).arg(pid.trim()).status().unwrap();
        assert!(kill.success());
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("exits").unwrap();
        assert!(status.success(), "{sig}: {status:?}");
        assert!(lock_nodes(&c, "/sim/bin/lock").await.is_empty(), "{sig}: the lock node is gone at once");
        assert!(!pid_file.exists(), "{sig}: the pid file is removed");
        let (d, _) = c.get_data(&format!("{root}/apps")).await.unwrap();
        assert_eq!(d, b"unlock");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pegasus_shaped_tree_from_treegen_loads_pipelined() {
    use zkrepl_testkit::treegen::{GenOptions, Shape, generate_at};
    let hosts = zk_hosts().await;
    let root = "/sim/treegen";
    let opts =
        GenOptions { shape: Shape::Pegasus, apps: 10, partitions: 1000, leader_lock: false, ..Default::default() };
    let tree = zkrepl::Tree::new(&hosts, root).unwrap();
    let (summary, _session) = generate_at(&tree, &zkrepl::Timeouts::default(), &opts).await.unwrap();
    assert!(summary.nodes > 11_000);
    let mut cfg = MetaConfig::new(&hosts, root, "/sim/treegen/lock/meta");
    cfg.level_on_start = Level::BLIND;
    let started = Instant::now();
    let m = SimMeta::start(cfg).await.unwrap();
    let took = started.elapsed();
    assert!(m.is_leader());
    assert!(took < Duration::from_secs(20), "loaded in {took:?}");
    assert_eq!(list_apps(m.addr()).await.len(), 10);
    assert!(m.recreated_partitions().is_empty());
    let loaded = m.loaded_progress();
    assert_eq!(loaded.len(), 1000, "one duplication (app 1) with a node per partition");
    assert!(loaded.keys().all(|(app, dup, _)| (*app, *dup) == (1, 1_600_000_001)));
}

/// A START_RECOVERY request struct: the nodes' rpc_addresses (a list typed
/// STRUCT of bare i64s), skip_bad_nodes and skip_lost_partitions false.
fn recovery_request(nodes: &[&str]) -> Vec<u8> {
    let mut b = vec![15, 0, 1, 12];
    b.extend_from_slice(&(nodes.len() as i32).to_be_bytes());
    for n in nodes {
        let a: std::net::SocketAddrV4 = n.parse().unwrap();
        let v = (u32::from(*a.ip()) as i64) << 32 | (a.port() as i64) << 16 | 1;
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(&[2, 0, 2, 0, 2, 0, 3, 0, 0]);
    b
}

fn sim_command(args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_pegasus-sim"));
    c.args(args).kill_on_drop(true);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_with_the_recovery_flag_refuses_apps_and_rebuilds_from_the_replica_state_file() {
    use tokio::io::AsyncBufReadExt;
    let old = zk_hosts().await;
    let root = "/sim/binrecover";
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("replicas.json");
    let s = state.to_str().unwrap();
    let out =
        sim_command(&["seed", "--zk", &old, "--root", root, "--apps", "2", "--partitions", "3", "--replica-state", s])
            .output()
            .await
            .unwrap();
    assert!(out.status.success(), "{out:?}");

    let mut cfg = MetaConfig::new(&old, root, "/sim/binrecover/lock");
    cfg.recover_from_replica_server = true;
    cfg.replica_state = Some(state.clone());
    cfg.level_on_start = Level::BLIND;
    let ini = dir.path().join("meta.ini");
    std::fs::write(&ini, cfg.to_ini()).unwrap();
    let run = sim_command(&["meta", "--config", ini.to_str().unwrap()]).output();
    let out = tokio::time::timeout(Duration::from_secs(30), run).await.expect("exits at once").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr
            .contains("holds 2 apps while [meta_server] recover_from_replica_server = true: the meta refuses to start"),
        "{stderr}"
    );

    // On an empty ZooKeeper it waits for the recovery, and rebuilds from the file.
    let server = tokio::task::spawn_blocking(|| LocalServer::start(&ServerOptions::default())).await.unwrap().unwrap();
    cfg.zookeeper_hosts = server.connect_string();
    std::fs::write(&ini, cfg.to_ini()).unwrap();
    let mut child = sim_command(&["meta", "--config", ini.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
    let addr: std::net::SocketAddr = line.split(' ').nth(1).unwrap().parse().unwrap();
    let v = ok(addr, "RPC_CM_LIST_APPS", &i32_field(1, 0)).await;
    assert_eq!(v.field(1).s(), "ERR_UNDER_RECOVERY");
    assert_eq!(ok(addr, "RPC_CM_LIST_NODES", &i32_field(1, 0)).await.field(2).l().len(), 3);
    let nodes = ["127.0.0.1:34801", "127.0.0.1:34802", "127.0.0.1:34803"];
    let v = ok(addr, "RPC_CM_START_RECOVERY", &recovery_request(&nodes)).await;
    assert_eq!(v.field(1).s(), "ERR_OK", "{v:?}");
    assert!(v.field(2).s().starts_with("recovered 2 apps and 6 partitions"), "{v:?}");
    assert_eq!(list_apps(addr).await, ["table_1", "table_2"]);
    let (oc, nc) = (client().await, zk::Client::connect(&server.connect_string()).await.unwrap());
    for path in ["apps", "apps/1", "apps/1/0", "apps/1/2", "apps/2", "apps/2/1"] {
        let p = format!("{root}/{path}");
        assert_eq!(nc.get_data(&p).await.unwrap().0, oc.get_data(&p).await.unwrap().0, "{p}");
    }
    assert!(nc.list_children(&format!("{root}/apps/2")).await.unwrap().len() == 3);
    let v = ok(addr, "RPC_CM_START_RECOVERY", &recovery_request(&nodes)).await;
    assert_eq!(v.field(1).s(), "ERR_SERVICE_ALREADY_RUNNING");
    child.kill().await.unwrap();
}
