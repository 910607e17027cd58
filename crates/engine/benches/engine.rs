//! CPU-bound parts of the engine, without a ZooKeeper server:
//!
//! * `batcher`: planning 100k Pegasus-like creates into multi() batches with
//!   the default limits (byte sizing included), and the sizing alone;
//! * `merkle`: `MerkleBuilder` over a 100k-node two-level tree fed in the
//!   walker's order (parent, its listing, then its children);
//! * `encode`: the cost of building multi() requests: cloning ops into
//!   batches, and the real jute encoding by zookeeper_client's `MultiWriter`.
//!   A `MultiWriter` needs a connected client but encodes in `add_*`, before
//!   anything is sent, so the client here is connected to a stub server on
//!   loopback that only answers the handshake and pings. The stub also
//!   receives one real multi() at start-up, to check that the batcher's byte
//!   count equals the length of the request zookeeper_client puts on the
//!   wire.
//!
//! Run: `cargo bench --bench engine` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use zkrepl::internals::MerkleBuilder;
use zkrepl::internals::{Batcher, Transaction};
use zkrepl::node::NodeKind;
use zkrepl::write::{BatchLimits, Op};
use zkrepl_testkit::treegen::{self, GenOptions, Shape};
use zookeeper_client as zk;

const APPS: u32 = 100;
const PARTITIONS: u32 = 1000;
/// Partition config size, about what Pegasus stores.
const DATA_BYTES: usize = 300;

/// Partition configs as `zkrepl gen` makes them (deterministic, padded to
/// `DATA_BYTES`): `configs[app - 1][pidx]`.
fn partition_configs() -> Vec<Vec<Vec<u8>>> {
    let opts = GenOptions {
        shape: Shape::Pegasus,
        apps: APPS,
        partitions: PARTITIONS,
        data_bytes: Some(DATA_BYTES),
        ..GenOptions::default()
    };
    let mut configs = vec![Vec::with_capacity(PARTITIONS as usize); APPS as usize];
    for (rel, data) in treegen::nodes(&opts) {
        let mut names = rel.strip_prefix("/apps/").unwrap_or("").split('/');
        if let (Some(app), Some(pidx), None) = (names.next(), names.next(), names.next())
            && let (Ok(app), Ok(_)) = (app.parse::<usize>(), pidx.parse::<u32>())
        {
            configs[app - 1].push(data);
        }
    }
    configs
}

/// 100k creates: `/pegasus/c1/apps/<id>/<pidx>`, OPEN ACL.
fn pegasus_creates() -> Vec<Op> {
    let acl = zkrepl::node::open_acl();
    let mut ops = Vec::with_capacity((APPS * PARTITIONS) as usize);
    for (app, configs) in partition_configs().into_iter().enumerate() {
        for (pidx, data) in configs.into_iter().enumerate() {
            ops.push(Op::Create {
                path: format!("/pegasus/c1/apps/{}/{pidx}", app + 1),
                data,
                acl: acl.clone(),
                kind: NodeKind::Persistent,
            });
        }
    }
    ops
}

/// Every batch, in order, the default batcher makes of `ops`.
fn plan(ops: impl IntoIterator<Item = Op>) -> Vec<Transaction> {
    let mut b = Batcher::new(BatchLimits::default());
    let mut out = Vec::new();
    for op in ops {
        out.extend(b.push(op));
    }
    out.extend(b.finish());
    out
}

fn bench_batcher(c: &mut Criterion) {
    let ops = pegasus_creates();
    let mut g = c.benchmark_group("batcher");
    g.sample_size(20);
    g.throughput(Throughput::Elements(ops.len() as u64));
    // Ops are moved into the batcher as the copy does; the clone that feeds
    // each iteration is not timed, dropping the batches is.
    g.bench_function("plan_100k_creates", |b| {
        b.iter_batched(|| ops.clone(), |ops| plan(ops).len(), BatchSize::LargeInput)
    });
    g.bench_function("multi_bytes_100k", |b| b.iter(|| ops.iter().map(|o| black_box(o).multi_bytes()).sum::<usize>()));
    g.bench_function("single_bytes_100k", |b| {
        b.iter(|| ops.iter().map(|o| black_box(o).single_bytes()).sum::<usize>())
    });
    g.finish();
}

/// The tree as the walker delivers it: (rel, data, children), parents first.
struct Tree {
    root_data: Vec<u8>,
    apps: Vec<(String, Vec<u8>)>,
    partitions: Vec<Vec<(String, Vec<u8>)>>,
}

fn two_level_tree() -> Tree {
    let apps = (1..=APPS)
        .map(|a| (format!("/{a}"), format!(r#"{{"app_id":{a},"partition_count":{PARTITIONS}}}"#).into_bytes()))
        .collect();
    let partitions = partition_configs()
        .into_iter()
        .enumerate()
        .map(|(a, configs)| configs.into_iter().enumerate().map(|(p, d)| (format!("/{}/{p}", a + 1), d)).collect())
        .collect();
    Tree { root_data: b"unlock".to_vec(), apps, partitions }
}

/// Feeds the tree in the walker's order: a node, then (depth first, one
/// listing per expanded node) its listing and its children.
fn digest_tree(t: &Tree, acl: Option<&[zk::Acl]>) -> [u8; 32] {
    let mut m = MerkleBuilder::new();
    m.node("", &t.root_data, acl, true);
    m.listed("", t.apps.len());
    for (rel, data) in &t.apps {
        m.node(rel, data, acl, true);
    }
    for ((rel, _), children) in t.apps.iter().zip(&t.partitions) {
        m.listed(rel, children.len());
        for (child, data) in children {
            m.node(child, data, acl, false);
        }
    }
    m.root().expect("complete tree")
}

fn bench_merkle(c: &mut Criterion) {
    let tree = two_level_tree();
    let nodes = 1 + APPS as u64 + APPS as u64 * PARTITIONS as u64;
    let open = zkrepl::node::open_acl();
    let mut g = c.benchmark_group("merkle");
    g.sample_size(20);
    g.throughput(Throughput::Elements(nodes));
    g.bench_function("two_level_100k_noacl", |b| b.iter(|| digest_tree(black_box(&tree), None)));
    g.bench_function("two_level_100k_acl", |b| b.iter(|| digest_tree(black_box(&tree), Some(&open))));
    g.finish();
}

// ---- a stub server, enough for zookeeper_client to connect ----

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    if !(0..=64 << 20).contains(&len) {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body)?;
    Ok(body)
}

fn write_frame(s: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    let mut f = Vec::with_capacity(4 + body.len());
    f.extend_from_slice(&(body.len() as i32).to_be_bytes());
    f.extend_from_slice(body);
    s.write_all(&f)
}

/// Serves one client connection: accepts the session, answers pings, and
/// refuses every other request (reporting its length, as the server counts
/// it, on `lengths`). Ends when the client goes away.
fn stub_connection(mut s: TcpStream, lengths: mpsc::Sender<usize>) -> std::io::Result<()> {
    let connect = read_frame(&mut s)?;
    // ConnectRequest: protocol version, last zxid, timeout, ...
    let timeout = connect.get(12..16).map(|b| i32::from_be_bytes(b.try_into().unwrap())).unwrap_or(30_000);
    let mut resp = Vec::new();
    resp.extend_from_slice(&0i32.to_be_bytes()); // protocol version
    resp.extend_from_slice(&timeout.to_be_bytes());
    resp.extend_from_slice(&0x5eed_i64.to_be_bytes()); // session id
    resp.extend_from_slice(&16i32.to_be_bytes());
    resp.extend_from_slice(&[0u8; 16]); // password
    resp.push(0); // not read-only
    write_frame(&mut s, &resp)?;
    loop {
        let req = read_frame(&mut s)?;
        let xid = i32::from_be_bytes(req[0..4].try_into().unwrap());
        let op = i32::from_be_bytes(req[4..8].try_into().unwrap());
        let err: i32 = match (xid, op) {
            (-2, _) => 0,  // ping
            (_, -11) => 0, // closeSession
            _ => {
                let _ = lengths.send(req.len());
                -6 // ZUNIMPLEMENTED
            }
        };
        let mut reply = Vec::with_capacity(16);
        reply.extend_from_slice(&xid.to_be_bytes());
        reply.extend_from_slice(&0i64.to_be_bytes()); // zxid
        reply.extend_from_slice(&err.to_be_bytes());
        write_frame(&mut s, &reply)?;
        if op == -11 {
            return Ok(());
        }
    }
}

/// A stub listening on loopback; its thread ends with the bench process.
fn start_stub() -> (String, mpsc::Receiver<usize>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind stub");
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || stub_connection(s, tx));
        }
    });
    (addr, rx)
}

/// Encodes a batch as the writer does (it sends what `add_*` encoded).
fn encode<'c>(client: &'c zk::Client, batch: &Transaction) -> zk::MultiWriter<'c> {
    let open = zkrepl::node::open_acl();
    let mut w = client.new_multi_writer();
    for op in &batch.ops {
        match op {
            Op::Create { path, data, acl, kind } => {
                let opts = match kind {
                    NodeKind::Persistent => zk::CreateMode::Persistent.with_acls(zk::Acls::new(acl)),
                    NodeKind::Container => zk::CreateMode::Container.with_acls(zk::Acls::new(acl)),
                    NodeKind::Ttl(ttl) => zk::CreateMode::Persistent.with_acls(zk::Acls::new(acl)).with_ttl(*ttl),
                };
                w.add_create(path, data, &opts).unwrap();
            }
            Op::SetData { path, data } => w.add_set_data(path, data, None).unwrap(),
            Op::Delete { path } => w.add_delete(path, None).unwrap(),
            Op::Pad { parent, name, .. } => {
                let child = format!("{parent}/{name}");
                w.add_create(&child, &[], &zk::CreateMode::Persistent.with_acls(zk::Acls::new(&open))).unwrap();
                w.add_delete(&child, None).unwrap();
            }
            Op::SetAcl { .. } => unreachable!("setACL is never batched"),
        }
    }
    w
}

fn bench_encode(c: &mut Criterion) {
    let ops = pegasus_creates();
    let batches = plan(ops.clone());
    let mut g = c.benchmark_group("encode");
    g.sample_size(20);
    g.throughput(Throughput::Elements(ops.len() as u64));
    // What the copy pays when ops must stay around (e.g. for a retry): the
    // clone into batches and their planning.
    g.bench_function("clone_into_batches_100k", |b| b.iter(|| plan(ops.iter().cloned()).len()));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (addr, lengths) = start_stub();
    let client = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(10),
            zk::Client::connector().with_session_timeout(Duration::from_secs(30)).connect(&addr),
        )
        .await
        .expect("connect to the stub in time")
        .expect("connect to the stub")
    });
    // The batcher's count must be the length of the request on the wire.
    let first = &batches[0];
    let _ = rt.block_on(encode(&client, first).commit());
    let sent = lengths.recv_timeout(Duration::from_secs(10)).expect("the stub got the multi()");
    assert_eq!(sent, first.bytes, "Transaction::bytes must equal the encoded multi() request length");

    g.bench_function("multi_writer_100k", |b| {
        b.iter(|| {
            for batch in &batches {
                black_box(encode(&client, batch));
            }
        })
    });
    g.finish();
    drop(client);
    rt.shutdown_timeout(Duration::from_secs(1));
}

criterion_group! {
    name = benches;
    // Text reports only: no plotting back end is looked for.
    config = Criterion::default().without_plots();
    targets = bench_batcher, bench_merkle, bench_encode
}
criterion_main!(benches);
