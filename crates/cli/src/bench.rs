//! `zkrepl bench` and `zkrepl demo`.
//!
//! Both run zkrepl's own copy and verify as child processes (so each one's
//! peak memory is its own) against servers measured in the same run: every
//! figure comes with its ratio to a raw ceiling of the same servers. `bench
//! --sync` runs the engine's sync in this process, as `zkrepl sync` does,
//! against a fixed-rate write load: its figures are ratios to the write
//! rate the source achieved in the same run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use tokio::process::Command;

use clap::Args;
use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};
use zkrepl::sync::{SyncObserver, SyncRequest, SyncStatus};
use zkrepl_testkit::ceilings::{self, Rate};
use zkrepl_testkit::load::{self, LoadSpec};
use zkrepl_testkit::local::{LocalServer, ServerOptions};
use zkrepl_testkit::treegen::{self, GenOptions, Shape};

use crate::args::usage;
use crate::common::print_json;
use crate::outcome::{Exit, Outcome};
use crate::treegen::ShapeArg;

#[derive(Args, Debug)]
#[command(after_long_help = BENCH_HELP)]
pub struct BenchArgs {
    /// Source ensemble (default: start local servers)
    #[arg(long, value_name = "HOSTS", requires = "dst")]
    pub src: Option<String>,

    /// Destination ensemble (default: start local servers)
    #[arg(long, value_name = "HOSTS", requires = "src")]
    pub dst: Option<String>,

    /// Nodes in the tree (about: the pegasus shape rounds to whole apps)
    #[arg(long, default_value_t = 100_000)]
    pub nodes: u64,

    /// Tree shape
    #[arg(long, value_enum, default_value = "pegasus")]
    pub shape: ShapeArg,

    /// Bytes of data per node
    #[arg(long)]
    pub data_bytes: Option<usize>,

    /// Also sweep batch size, window and read sessions (one at a time)
    #[arg(long)]
    pub sweep: bool,

    /// Skip the verify runs
    #[arg(long)]
    pub no_verify: bool,

    /// Leave the generated trees in place (with --src/--dst)
    #[arg(long)]
    pub keep: bool,

    /// Print the results as JSON on stdout
    #[arg(long)]
    pub json: bool,

    /// Also copy with a snapshot of the source (written by restarting it after the tree is made) onto a fourth, fresh server, and verify against that server's own snapshot; local servers only
    #[arg(long, conflicts_with_all = ["src", "sync"])]
    pub snapshot: bool,

    /// Measure a live sync instead: zkrepl sync (in this process) while a bare client writes to the source at a fixed rate
    #[arg(long, conflicts_with_all = ["nodes", "shape", "data_bytes", "sweep"])]
    pub sync: bool,

    /// With --sync: writes a second the load aims at (on 1000 keys; one write in ten a create, one a delete)
    #[arg(long, value_name = "OPS", default_value_t = 2000, requires = "sync")]
    pub sync_rate: u32,

    /// With --sync: how long the load runs (it sends at most rate x duration writes, and none after this)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::args::timeout, requires = "sync")]
    pub sync_duration: Duration,
}

const BENCH_HELP: &str = "\
What it measures, in one run:
  raw ceilings   multi-create of the same nodes (batches of 500, 8 in flight, bare client) on a
                 fresh destination server; multiRead getData of the tree; pipelined getACL over
                 8 sessions
  copy           zkrepl copy onto a fresh server (cold) and again onto the same, warm server;
                 also with --acl open (no getACL reads)
  verify         zkrepl verify, with and without ACL comparison; and --json against an empty
                 destination root (every node a difference, streamed: its peak memory)
  --snapshot     also: the source restarted once the tree is made (so it writes a snapshot),
                 zkrepl copy --snapshot onto a fourth, fresh server, against the fresh
                 multi-create; then that server restarted too, and zkrepl verify with both
                 snapshots, against multiRead on both servers at once
  --sync         instead of the above: zkrepl sync while a bare client writes to the source at
                 --sync-rate for --sync-duration; the source's achieved write rate, and sync's
                 paths applied and events received per second while the load runs (ratios to that
                 write rate), its lag when the load stops, and how long it takes to catch up then
Every figure is also given as a ratio to the matching ceiling. Without --src/--dst it starts
three local servers (source, a destination for the raw ceiling, a destination for the copies),
so that cold figures compare like with like; two with --sync.

Examples:
  zkrepl bench
  zkrepl bench --nodes 1000000 --json
  zkrepl bench --shape wide --nodes 200000 --sweep
  zkrepl bench --sync --sync-rate 5000 --sync-duration 10s";

struct Servers {
    _local: Vec<LocalServer>,
    src: String,
    dst_raw: String,
    dst_copy: String,
    local: bool,
}

/// Restarts a local server (it writes a snapshot of what it loaded) and
/// returns its newest snapshot file once it serves again.
async fn snapshot_of(server: LocalServer) -> zkrepl::Result<(LocalServer, std::path::PathBuf)> {
    tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.restart().map_err(|e| zkrepl::Error::Usage(format!("restarting a local server: {e}")))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while server.mode().is_empty() {
            if std::time::Instant::now() > deadline {
                return Err(zkrepl::Error::Usage("a restarted local server did not serve within 120 s".into()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let file = server.snapshots().pop().ok_or_else(|| zkrepl::Error::Usage("no snapshot file written".into()))?;
        Ok((server, file))
    })
    .await
    .expect("restart task")
}

/// Heap for a server that holds `copies` copies of the tree, with room for
/// the collector (a server short of heap stalls in GC and drops sessions).
/// Data of half a MiB or more is a humongous object to the collector, one
/// that takes twice its size; and the server keeps its last 500 transactions
/// in memory besides the tree.
fn heap_for(nodes: u64, bytes_per_node: usize, copies: u64) -> u32 {
    let held = if bytes_per_node >= 512 << 10 { 2.0 * bytes_per_node as f64 } else { bytes_per_node as f64 };
    let tree = (copies * nodes) as f64 * (held + 600.0);
    let recent = (copies * nodes).min(500) as f64 * held;
    let mb = (tree + recent) * 2.0 / (1 << 20) as f64;
    (mb as u32).clamp(768, 12 * 1024)
}

async fn start_local(heaps_mb: &[u32]) -> zkrepl::Result<Vec<LocalServer>> {
    let starts = heaps_mb.iter().map(|&heap_mb| {
        let o = ServerOptions { heap_mb, ..ServerOptions::default() };
        tokio::task::spawn_blocking(move || LocalServer::start(&o))
    });
    futures::future::join_all(starts).await.into_iter().map(|r| r.expect("server start task")).collect()
}

/// Runs this binary with `args` and parses its JSON output. Async, so the
/// sessions this process holds keep being served meanwhile.
async fn child(args: Vec<String>) -> zkrepl::Result<Value> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).args(&args).output().await?;
    if !matches!(out.status.code(), Some(0) | Some(1)) {
        return Err(zkrepl::Error::Usage(format!(
            "zkrepl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| zkrepl::Error::Usage(format!("bad JSON from zkrepl: {e}")))
}

/// Runs this binary's `verify --json` and reads its report as it streams
/// in: the differences are counted, not kept (there may be millions), and
/// the other fields are returned with `differences_streamed`, their number.
async fn child_verify_counting(args: Vec<String>) -> zkrepl::Result<Value> {
    let exe = std::env::current_exe()?;
    let read = move || -> zkrepl::Result<Value> {
        let mut c = std::process::Command::new(exe)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let stdout = std::io::BufReader::new(c.stdout.take().expect("piped stdout"));
        let parsed = Streamed::deserialize(&mut serde_json::Deserializer::from_reader(stdout));
        let out = c.wait_with_output()?;
        if !matches!(out.status.code(), Some(0) | Some(1)) {
            return Err(zkrepl::Error::Usage(format!(
                "zkrepl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let Streamed { mut fields, differences } =
            parsed.map_err(|e| zkrepl::Error::Usage(format!("bad JSON from zkrepl verify: {e}")))?;
        fields.insert("differences_streamed".into(), differences.into());
        Ok(Value::Object(fields))
    };
    tokio::task::spawn_blocking(read).await.expect("the verify reader")
}

/// A verify report read with its `differences` counted, not kept.
struct Streamed {
    fields: serde_json::Map<String, Value>,
    differences: u64,
}

impl<'de> Deserialize<'de> for Streamed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Streamed, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Streamed;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a verify report")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Streamed, A::Error> {
                let mut r = Streamed { fields: serde_json::Map::new(), differences: 0 };
                while let Some(k) = m.next_key::<String>()? {
                    if k == "differences" {
                        r.differences = m.next_value::<Counted>()?.0;
                    } else {
                        r.fields.insert(k, m.next_value()?);
                    }
                }
                Ok(r)
            }
        }
        d.deserialize_map(Fields)
    }
}

/// The length of a JSON array, its elements skipped.
struct Counted(u64);

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Counted, D::Error> {
        struct Elements;
        impl<'de> Visitor<'de> for Elements {
            type Value = Counted;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Counted, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Counted(n))
            }
        }
        d.deserialize_seq(Elements)
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn gen_options(shape: Shape, nodes: u64, data_bytes: Option<usize>) -> GenOptions {
    let partitions = 250u32;
    // A pegasus app holds 1 + partitions nodes, one in ten a duplication too.
    let per_app = 1.0 + partitions as f64 * 1.1 + 0.2;
    GenOptions {
        shape,
        apps: ((nodes as f64 / per_app).round() as u32).max(1),
        partitions,
        nodes,
        data_bytes,
        ..GenOptions::default()
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn rate_of(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

pub async fn run(args: BenchArgs) -> zkrepl::Result<Outcome> {
    let shape: Shape = args.shape.into();
    let spec = gen_options(shape, args.nodes, args.data_bytes);
    let n = spec.node_count();
    let say = |msg: &str| {
        if !args.json {
            eprintln!("bench: {msg}");
        }
    };
    let mut servers = match (&args.src, &args.dst) {
        (Some(src), Some(dst)) => {
            Servers { _local: Vec::new(), src: src.clone(), dst_raw: dst.clone(), dst_copy: dst.clone(), local: false }
        }
        _ if args.sync => {
            say("starting 2 local ZooKeeper servers (source, destination)");
            let mut v = start_local(&[768, 768]).await?;
            let (d, s) = (v.pop().unwrap(), v.pop().unwrap());
            let (src, dst) = (s.connect_string(), d.connect_string());
            Servers { src, dst_raw: dst.clone(), dst_copy: dst, _local: vec![s, d], local: true }
        }
        _ => {
            let per_node = args.data_bytes.unwrap_or(if shape == Shape::Large { 1_000_000 } else { 300 });
            say("starting 3 local ZooKeeper servers (source, raw-ceiling destination, copy destination)");
            // Source: the tree; raw destination: three raw copies; copy
            // destination: three copies (sweep copies are removed again).
            let mut heaps = vec![heap_for(n, per_node, 1), heap_for(n, per_node, 3), heap_for(n, per_node, 3)];
            if args.snapshot {
                say("and a fourth, for the copy with a snapshot");
                heaps.push(heap_for(n, per_node, 1));
            }
            let mut v = start_local(&heaps).await?;
            let snap = if args.snapshot { v.pop() } else { None };
            let (c, r, s) = (v.pop().unwrap(), v.pop().unwrap(), v.pop().unwrap());
            let mut local = vec![s, r, c];
            local.extend(snap);
            Servers {
                src: local[0].connect_string(),
                dst_raw: local[1].connect_string(),
                dst_copy: local[2].connect_string(),
                _local: local,
                local: true,
            }
        }
    };
    if args.sync {
        return bench_sync(&args, &servers).await;
    }
    if shape == Shape::Counter {
        return bench_counter(&args, &servers, &spec).await;
    }
    let tag = format!("{:?}-{}-s{}", shape, n, spec.seed).to_lowercase();
    let root = format!("/zkrepl-bench/{tag}");

    // The source tree.
    let src_session = ceilings::session(&servers.src).await?;
    let gen_rate = {
        let (_, c) = src_session.client();
        if c.check_stat(&root).await.ok().flatten().is_some() {
            say(&format!("reusing {root} on the source"));
            None
        } else {
            say(&format!("generating {n} nodes ({shape:?}) under {root}"));
            Some(treegen::generate(&src_session, &root, &spec).await?)
        }
    };
    // The source's snapshot, written by a restart once the tree is there.
    let mut src_snapshot = None;
    if args.snapshot {
        say("restarting the source so it writes a snapshot of the tree");
        let (server, file) = snapshot_of(servers._local.remove(0)).await?;
        servers._local.insert(0, server);
        src_snapshot = Some(file);
    }
    let nodes: Vec<(String, Vec<u8>)> = treegen::nodes(&spec).collect();
    let paths: Vec<String> = nodes.iter().map(|(rel, _)| zkrepl::zk::path::join(&root, rel)).collect();
    let bytes: u64 = nodes.iter().map(|(_, d)| d.len() as u64).sum();

    // Raw ceilings.
    say("raw ceilings: multi-create (fresh server), multiRead, getACL");
    let raw_pool = ceilings::sessions(&servers.dst_raw, 1).await?;
    let (_, raw_client) = raw_pool.get(0).client();
    let raw_cold = ceilings::multi_create(raw_pool.get(0), "/zkrepl-bench/raw-1", &nodes, 500, 8).await?;
    let src_pool = ceilings::sessions(&servers.src, 8).await?;
    let src_clients = src_pool.clients().clients;
    let multi_read = ceilings::multi_read(&src_clients[0], &paths, 1000, 8).await?;
    let get_acl = ceilings::get_acl(&src_clients, &paths, 1000).await?;

    // Copies.
    say("copy onto the fresh copy destination (cold)");
    let copy = |dst_root: &str, extra: &[&str]| {
        let mut a = s(&["copy", "--src", &servers.src, "--dst", &servers.dst_copy, "--root", &root]);
        a.extend(s(&["--dst-root", dst_root, "--json", "-q"]));
        a.extend(s(extra));
        child(a)
    };
    let cold = copy("/zkrepl-bench/copy-1", &[]).await?;
    say("copy again onto the same server (warm), and raw ceiling again (warm)");
    let warm = copy("/zkrepl-bench/copy-2", &[]).await?;
    let raw_warm = ceilings::multi_create(raw_pool.get(0), "/zkrepl-bench/raw-2", &nodes, 500, 8).await?;
    let open = copy("/zkrepl-bench/copy-3", &["--acl", "open"]).await?;
    // With the source's snapshot, in place of the --acl open copy: the
    // server as it was for that one.
    let mut warm_snap = Value::Null;
    if let Some(file) = &src_snapshot {
        say("copy again with the source's snapshot, in place of the --acl open copy (warm)");
        let rels: Vec<String> = nodes.iter().map(|(r, _)| r.clone()).collect();
        let pool = ceilings::sessions(&servers.dst_copy, 1).await?;
        let (_, cc) = pool.get(0).client();
        ceilings::multi_delete(&cc, "/zkrepl-bench/copy-3", &rels, 1000, 8).await?;
        warm_snap = copy("/zkrepl-bench/copy-3", &["--snapshot", &file.display().to_string()]).await?;
    }

    // The same raw work run the way zkrepl runs it: both servers at once
    // (they share this machine's cores).
    say("raw ceilings with both servers busy at once");
    let copy_paths: Vec<String> =
        nodes.iter().map(|(rel, _)| zkrepl::zk::path::join("/zkrepl-bench/copy-1", rel)).collect();
    let copy_pool = ceilings::sessions(&servers.dst_copy, 8).await?;
    let copy_clients = copy_pool.clients().clients;
    let both = |a: Rate, b: Rate| {
        let seconds = a.seconds.max(b.seconds);
        Rate { ops: a.ops, seconds, per_sec: a.ops as f64 / seconds.max(1e-9) }
    };
    let (a, b) = futures::try_join!(
        ceilings::multi_read(&src_clients[0], &paths, 1000, 8),
        ceilings::multi_read(&copy_clients[0], &copy_paths, 1000, 8)
    )?;
    let multi_read_both = both(a, b);
    let (a, b) = futures::try_join!(
        ceilings::get_acl(&src_clients, &paths, 1000),
        ceilings::get_acl(&copy_clients, &copy_paths, 1000)
    )?;
    let get_acl_both = both(a, b);
    let (a, b) = futures::try_join!(
        ceilings::get_acl(&src_clients, &paths, 1000),
        ceilings::multi_create(raw_pool.get(0), "/zkrepl-bench/raw-3", &nodes, 500, 8)
    )?;
    let acl_and_create = both(a, b);

    let mut sweep = Vec::new();
    if args.sweep {
        let mut k = 4;
        let runs: Vec<(&str, Vec<&str>)> = vec![
            ("batch_ops", vec!["100", "250", "500", "1000", "2000"]),
            ("window", vec!["1", "2", "4", "8", "16"]),
            ("read_sessions", vec!["1", "2", "4", "8", "16"]),
        ];
        for (param, values) in runs {
            for v in values {
                let flag = format!("--{}", param.replace('_', "-"));
                let flag = if param == "batch_ops" { "--batch-ops".to_string() } else { flag };
                say(&format!("sweep: {flag} {v}"));
                let dst_root = format!("/zkrepl-bench/copy-{k}");
                let r = copy(&dst_root, &[&flag, v]).await?;
                k += 1;
                // Keep the server's heap flat: each sweep copy goes again.
                let rels: Vec<String> = nodes.iter().map(|(r, _)| r.clone()).collect();
                let sweep_pool = ceilings::sessions(&servers.dst_copy, 1).await?;
                let (_, sc) = sweep_pool.get(0).client();
                ceilings::multi_delete(&sc, &dst_root, &rels, 1000, 8).await?;
                sweep.push(json!({ "param": param, "value": v, "nodes_per_sec": r["nodes_per_sec"], "latency_p99_ms": r["latency_p99_ms"] }));
            }
        }
    }

    // Verifies.
    let mut verify_acl = Value::Null;
    let mut verify_noacl = Value::Null;
    let mut verify_empty = Value::Null;
    if !args.no_verify {
        say("verify (with and without ACLs)");
        let v = |extra: &[&str]| {
            let mut a = s(&["verify", "--src", &servers.src, "--dst", &servers.dst_copy, "--root", &root]);
            a.extend(s(&["--dst-root", "/zkrepl-bench/copy-1", "--json", "-q"]));
            a.extend(s(extra));
            child(a)
        };
        verify_acl = v(&[]).await?;
        verify_noacl = v(&["--no-acl"]).await?;
        say("verify --json against an empty destination root (every node missing)");
        verify_empty = child_verify_counting(s(&[
            "verify",
            "--src",
            &servers.src,
            "--dst",
            &servers.dst_copy,
            "--root",
            &root,
            "--dst-root",
            "/zkrepl-bench/absent",
            "--json",
            "-q",
        ]))
        .await?;
    }

    // The copy with the source's snapshot: onto the fourth server (as fresh
    // as the raw ceiling's), and onto the warm copy destination; then the
    // fourth restarted (its own snapshot) and verifies with and without
    // the snapshots, against multiRead on both servers at once measured
    // right before them.
    let mut with_snapshot = Value::Null;
    if let Some(file) = &src_snapshot {
        let fourth = servers._local[3].connect_string();
        let file = file.display().to_string();
        say("copy with the source's snapshot onto the fourth, fresh server, and onto the warm one");
        let mut a = s(&["copy", "--src", &servers.src, "--dst", &fourth, "--root", &root, "--json", "-q"]);
        a.extend(s(&["--snapshot", &file]));
        let cold_snap = child(a).await?;

        say("restarting the fourth server (a snapshot of the copy), then verify with and without the snapshots");
        let (server, dst_file) = snapshot_of(servers._local.remove(3)).await?;
        servers._local.insert(3, server);
        let dst_file = dst_file.display().to_string();
        let pool = ceilings::sessions(&fourth, 1).await?;
        let fourth_clients = pool.clients().clients;
        // A pass to load the restarted server's code paths, not counted.
        ceilings::multi_read(&fourth_clients[0], &paths, 1000, 8).await?;
        let (a, b) = futures::try_join!(
            ceilings::multi_read(&src_clients[0], &paths, 1000, 8),
            ceilings::multi_read(&fourth_clients[0], &paths, 1000, 8)
        )?;
        let read_both = both(a, b);
        let verify_with = |extra: &[&str]| {
            let mut a = s(&["verify", "--src", &servers.src, "--dst", &fourth, "--root", &root, "--json", "-q"]);
            a.extend(s(extra));
            child(a)
        };
        let verified = verify_with(&["--snapshot", &file, "--dst-snapshot", &dst_file]).await?;
        let no_acl = verify_with(&["--no-acl"]).await?;
        let live = verify_with(&[]).await?;
        let per_side = |v: &Value| rate_of(v, "nodes_per_sec_per_side");
        with_snapshot = json!({
            "copy_cold": cold_snap,
            "copy_cold_ratio_to_raw_create_cold": ratio(rate_of(&cold_snap, "nodes_per_sec"), raw_cold.per_sec),
            "copy_warm": warm_snap,
            "copy_warm_ratio_to_raw_create_warm": ratio(rate_of(&warm_snap, "nodes_per_sec"), raw_warm.per_sec),
            "multi_read_both_servers": read_both,
            "verify": verified,
            "verify_no_acl": no_acl,
            "verify_live_acl": live,
            "verify_ratio_to_multi_read_both": ratio(per_side(&verified), read_both.per_sec),
            "verify_no_acl_ratio_to_multi_read_both": ratio(per_side(&no_acl), read_both.per_sec),
            "verify_live_acl_ratio_to_multi_read_both": ratio(per_side(&live), read_both.per_sec),
        });
    }

    // Clean up what was written to servers we did not start.
    if !servers.local && !args.keep {
        say("removing the generated trees");
        let rels: Vec<String> = nodes.iter().map(|(r, _)| r.clone()).collect();
        // The leader lock is an ephemeral (of this process's session, unless
        // the tree was reused): it goes first, or its parent cannot.
        let (_, sc) = src_session.client();
        let lock = zkrepl::zk::path::join(&root, treegen::LEADER_PARENT);
        for child in sc.list_children(&lock).await.unwrap_or_default() {
            let _ = sc.delete(&format!("{lock}/{child}"), None).await;
        }
        ceilings::multi_delete(&sc, &root, &rels, 1000, 8).await?;
        let dst = ceilings::sessions(&servers.dst_copy, 1).await?;
        let (_, dc) = dst.get(0).client();
        let mut k = 1;
        loop {
            let r = format!("/zkrepl-bench/copy-{k}");
            if dc.check_stat(&r).await.ok().flatten().is_none() {
                break;
            }
            ceilings::multi_delete(&dc, &r, &rels, 1000, 8).await?;
            k += 1;
        }
        for r in ["/zkrepl-bench/raw-1", "/zkrepl-bench/raw-2", "/zkrepl-bench/raw-3"] {
            ceilings::multi_delete(&raw_client, r, &rels, 1000, 8).await?;
        }
        // The common parent, where nothing else was left in it.
        for c in [&sc, &dc, &raw_client] {
            let _ = c.delete("/zkrepl-bench", None).await;
        }
    }

    let report = json!({
        "tree": { "shape": shape, "nodes": n, "bytes": bytes, "root": root },
        "servers": if servers.local { "3 local standalone servers, started fresh for this run" } else { "given by --src/--dst (raw ceiling and copies share the destination)" },
        "gen": gen_rate,
        "raw": {
            "multi_create_cold": raw_cold, "multi_create_warm": raw_warm, "multi_read": multi_read, "get_acl_8_sessions": get_acl,
            "multi_read_both_servers": multi_read_both, "get_acl_both_servers": get_acl_both,
            "get_acl_source_with_multi_create_destination": acl_and_create,
        },
        "copy": {
            "cold": cold, "warm": warm, "acl_open_warm": open,
            "cold_ratio_to_raw_create_cold": ratio(rate_of(&cold, "nodes_per_sec"), raw_cold.per_sec),
            "warm_ratio_to_raw_create_warm": ratio(rate_of(&warm, "nodes_per_sec"), raw_warm.per_sec),
            "acl_open_ratio_to_raw_create_warm": ratio(rate_of(&open, "nodes_per_sec"), raw_warm.per_sec),
            "warm_ratio_to_get_acl": ratio(rate_of(&warm, "nodes_per_sec"), get_acl.per_sec),
            "warm_ratio_to_get_acl_with_create": ratio(rate_of(&warm, "nodes_per_sec"), acl_and_create.per_sec),
        },
        "verify": {
            "acl": verify_acl, "no_acl": verify_noacl, "empty_destination": verify_empty,
            "acl_ratio_to_get_acl": ratio(rate_of(&verify_acl, "nodes_per_sec_per_side"), get_acl.per_sec),
            "no_acl_ratio_to_multi_read": ratio(rate_of(&verify_noacl, "nodes_per_sec_per_side"), multi_read.per_sec),
            "acl_ratio_to_get_acl_both": ratio(rate_of(&verify_acl, "nodes_per_sec_per_side"), get_acl_both.per_sec),
            "no_acl_ratio_to_multi_read_both": ratio(rate_of(&verify_noacl, "nodes_per_sec_per_side"), multi_read_both.per_sec),
        },
        "sweep": sweep,
        "snapshot": with_snapshot,
    });
    if args.json {
        print_json(&report);
    } else {
        print_bench(&report, n, bytes);
    }
    Ok(Outcome { exit: Exit::Ok })
}

/// A parent whose sequence counter is `--nodes`: how long the copy takes to
/// raise the destination's, against create-and-delete pairs sent raw.
async fn bench_counter(args: &BenchArgs, servers: &Servers, spec: &GenOptions) -> zkrepl::Result<Outcome> {
    let root = format!("/zkrepl-bench/counter-{}", spec.nodes);
    let session = ceilings::session(&servers.src).await?;
    let (_, c) = session.client();
    if c.check_stat(&root).await.ok().flatten().is_none() {
        treegen::generate(&session, &root, spec).await?;
    }
    let copy =
        child(s(&["copy", "--src", &servers.src, "--dst", &servers.dst_copy, "--root", &root, "--json", "-q"])).await?;
    let raw_pool = ceilings::sessions(&servers.dst_raw, 1).await?;
    let (_, rc) = raw_pool.get(0).client();
    let parent = "/zkrepl-bench/raw-counter";
    // The parent and its ancestors: those of a path beneath it.
    ceilings::create_path(raw_pool.get(0), parent).await?;
    let pads = spec.nodes.saturating_sub(treegen::COUNTER_KEPT);
    let raw = ceilings::multi_pad(&rc, parent, pads, 500, 8).await?;
    let copy_secs = rate_of(&copy, "seconds");
    let report = json!({
        "counter": spec.nodes, "padding_ops": copy["padding_ops"], "copy_seconds": copy_secs,
        "padded_parents": copy["padded_parents"],
        "raw_pairs": raw, "copy_pads_per_sec": pads as f64 / copy_secs.max(1e-9),
        "ratio_to_raw": ratio(pads as f64 / copy_secs.max(1e-9), raw.per_sec),
    });
    if args.json {
        print_json(&report);
    } else {
        println!("sequence counter of {} creations (10 children left) copied in {:.2} s:", spec.nodes, copy_secs);
        println!(
            "  {} padding ops = {:.0} create+delete pairs/s; raw pairs (500 per multi, 8 in flight) {:.0}/s: {:.0}%",
            copy["padding_ops"],
            pads as f64 / copy_secs.max(1e-9),
            raw.per_sec,
            100.0 * ratio(pads as f64 / copy_secs.max(1e-9), raw.per_sec)
        );
    }
    Ok(Outcome { exit: Exit::Ok })
}

/// One status of the sync bench, with when it came and how many writes
/// the source had acknowledged by then.
#[derive(Clone)]
struct Sample {
    at: Instant,
    acked: u64,
    status: SyncStatus,
}

/// What the sync bench's observer keeps: every status as a [`Sample`].
struct Samples {
    samples: Mutex<Vec<Sample>>,
    acked: Arc<AtomicU64>,
    quiet: bool,
}

impl Samples {
    fn phase(&self) -> Option<&'static str> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).last().map(|s| s.status.phase)
    }
}

impl SyncObserver for Samples {
    fn status(&self, s: &SyncStatus) {
        let sample = Sample { at: Instant::now(), acked: self.acked.load(Ordering::Relaxed), status: s.clone() };
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).push(sample);
    }

    fn note(&self, msg: &str) {
        if !self.quiet {
            eprintln!("bench: sync: {msg}");
        }
    }
}

/// A live sync under a fixed-rate write load: how fast the source took the
/// writes, how fast sync applied them while they came (its status lines,
/// once a second), how far behind it was when the load stopped, and how
/// long it then took to catch up (a marker written after the last write
/// of the load, until the destination holds it).
async fn bench_sync(args: &BenchArgs, servers: &Servers) -> zkrepl::Result<Outcome> {
    let say = |msg: &str| {
        if !args.json {
            eprintln!("bench: {msg}");
        }
    };
    let root = "/zkrepl-bench/sync-load";
    let rate = args.sync_rate.max(1);
    let ops = (f64::from(rate) * args.sync_duration.as_secs_f64()).round() as u64;
    let mut spec = LoadSpec::new(root, rate, ops, args.sync_duration);
    spec.keys = 1000;
    // Enough in flight that the loader, not the source, is rarely the limit.
    spec.window = 256;
    let remove = |hosts: String| async move {
        let mut r = zkrepl::remove::RemoveRequest::new(zkrepl::Tree::new(&hosts, root)?);
        r.missing_ok = true;
        zkrepl::remove::run(&r, &Arc::new(zkrepl::Progress::new())).await
    };
    // A tree of an earlier run (--keep) goes first: the load starts afresh.
    remove(servers.src.clone()).await?;
    let loader = ceilings::session(&servers.src).await?;
    let (_, client) = loader.client();
    load::prepare(&client, &spec).await?;
    let watcher = ceilings::session(&servers.dst_copy).await?;
    let (_, dst_client) = watcher.client();

    let mut req = SyncRequest::new(zkrepl::Tree::new(&servers.src, root)?, zkrepl::Tree::new(&servers.dst_copy, root)?);
    req.until_idle = Some(Duration::from_secs(2));
    let progress = Arc::new(zkrepl::Progress::new());
    let samples = Samples { samples: Mutex::default(), acked: spec.acked.clone(), quiet: args.json };
    say(&format!(
        "zkrepl sync of {root} ({} keys) while the source takes {rate} writes/s for {:.1} s",
        spec.keys,
        args.sync_duration.as_secs_f64()
    ));
    let under_load = async {
        // The load starts once sync follows (its first status past the copy).
        let ready = Instant::now() + Duration::from_secs(300);
        while samples.phase() != Some("following") {
            if Instant::now() >= ready {
                return Err(usage("the sync did not start following within 5 minutes"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let began = Instant::now();
        let done = load::run(&client, &spec).await?;
        let ended = Instant::now();
        load::mark(&client, &spec, b"end").await?;
        let limit = Instant::now() + Duration::from_secs(120);
        loop {
            if matches!(dst_client.get_data(&spec.marker()).await, Ok((data, _)) if data == b"end") {
                break;
            }
            if Instant::now() >= limit {
                return Err(usage("the destination did not catch up within 2 minutes of the load's end"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok((began, done, ended, Instant::now()))
    };
    let (report, (began, done, ended, caught_up)) =
        futures::try_join!(zkrepl::sync::run(&req, &progress, &samples), under_load)?;

    // Rates over the span between the first and the last status of the
    // load: the source's writes and sync's work over the same seconds.
    let all = samples.samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let during: Vec<&Sample> = all.iter().filter(|s| (began..=ended).contains(&s.at)).collect();
    let rates = match (during.first(), during.last()) {
        (Some(a), Some(b)) if b.at > a.at => {
            let secs = b.at.duration_since(a.at).as_secs_f64();
            let per_sec = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
            let (s0, s1) = (&a.status, &b.status);
            json!({
                "seconds": secs,
                "statuses": during.len(),
                "source_writes_per_sec": per_sec(a.acked, b.acked),
                "events_per_sec": per_sec(s0.events, s1.events),
                "applied_per_sec": per_sec(s0.applied, s1.applied),
                "writes_per_sec": per_sec(s0.writes, s1.writes),
                "max_pending": during.iter().map(|s| s.status.pending).max(),
                "max_lag_seconds": during.iter().map(|s| s.status.lag_seconds).fold(0.0, f64::max),
            })
        }
        _ => json!({ "statuses": during.len() }),
    };
    let at_end = all.iter().rfind(|s| s.at <= ended).map(|s| s.status.clone());
    let equal = report.verify.as_ref().is_some_and(|v| v.equal());
    if !servers.local && !args.keep {
        say("removing the trees");
        remove(servers.src.clone()).await?;
        remove(servers.dst_copy.clone()).await?;
        for hosts in [&servers.src, &servers.dst_copy] {
            let pool = ceilings::sessions(hosts, 1).await?;
            let (_, c) = pool.get(0).client();
            let _ = c.delete("/zkrepl-bench", None).await;
        }
    }
    let r = json!({
        "sync_load": {
            "servers": if servers.local { "2 local standalone servers, started fresh for this run" } else { "given by --src/--dst" },
            "root": root,
            "keys": spec.keys,
            "load": done,
            "during_load": rates,
            "applied_ratio_to_source_writes": ratio(rate_of(&rates, "applied_per_sec"), rate_of(&rates, "source_writes_per_sec")),
            "events_ratio_to_source_writes": ratio(rate_of(&rates, "events_per_sec"), rate_of(&rates, "source_writes_per_sec")),
            "at_load_end": at_end.map(|s| json!({ "pending": s.pending, "lag_seconds": s.lag_seconds })),
            "catch_up_seconds": caught_up.duration_since(ended).as_secs_f64(),
            "final": report.status,
            "verify_equal": equal,
        }
    });
    if args.json {
        print_json(&r);
    } else {
        print_sync_bench(&r["sync_load"]);
    }
    Ok(Outcome { exit: if equal { Exit::Ok } else { Exit::Differences } })
}

fn print_sync_bench(r: &Value) {
    let (l, d) = (&r["load"], &r["during_load"]);
    println!(
        "source under load: {} writes ({} set data, {} creates, {} deletes) in {:.2} s = {:.0} writes/s (aimed at {:.0}/s)",
        l["ops"],
        l["set_data"],
        l["creates"],
        l["deletes"],
        rate_of(l, "seconds"),
        rate_of(l, "per_sec"),
        rate_of(l, "target_per_sec")
    );
    println!(
        "zkrepl sync while the load ran ({} status lines over {:.1} s, the source took {:.0} writes/s in them):",
        d["statuses"],
        rate_of(d, "seconds"),
        rate_of(d, "source_writes_per_sec")
    );
    println!(
        "  paths applied   {:>9.0}/s = {:>3.0}% of the source's write rate",
        rate_of(d, "applied_per_sec"),
        100.0 * rate_of(r, "applied_ratio_to_source_writes")
    );
    println!(
        "  events received {:>9.0}/s = {:>3.0}% of the source's write rate",
        rate_of(d, "events_per_sec"),
        100.0 * rate_of(r, "events_ratio_to_source_writes")
    );
    println!(
        "  behind at most {} paths, {:.3} s; when the load stopped {} paths, {:.3} s; caught up {:.3} s after it",
        d["max_pending"],
        rate_of(d, "max_lag_seconds"),
        r["at_load_end"]["pending"],
        rate_of(&r["at_load_end"], "lag_seconds"),
        rate_of(r, "catch_up_seconds")
    );
    println!("  verify at the end: {}", if r["verify_equal"] == true { "EQUAL" } else { "DIFFERENT" });
}

fn print_bench(r: &Value, n: u64, bytes: u64) {
    let c = &r["copy"];
    let raw = &r["raw"];
    let per = |k: &str| rate_of(&raw[k], "per_sec");
    let rss = |v: &Value| v["peak_rss_bytes"].as_u64().map(|b| ByteSize(b).to_string()).unwrap_or_else(|| "?".into());
    println!("tree: {n} nodes, {} ({})", ByteSize(bytes), r["servers"].as_str().unwrap_or(""));
    println!("raw ceilings (bare client, ideal batching, same servers, this run):");
    for (label, key, unit) in [
        ("multi-create, fresh server", "multi_create_cold", "nodes/s"),
        ("multi-create, warm server", "multi_create_warm", "nodes/s"),
        ("multiRead getData, one server", "multi_read", "reads/s"),
        ("multiRead getData, both servers at once", "multi_read_both_servers", "reads/s per server"),
        ("getACL over 8 sessions, one server", "get_acl_8_sessions", "reads/s"),
        ("getACL over 8 sessions, both servers at once", "get_acl_both_servers", "reads/s per server"),
        ("getACL on source while multi-create on dest.", "get_acl_source_with_multi_create_destination", "nodes/s"),
    ] {
        println!("  {label:<46} {:>9.0} {unit}", per(key));
    }
    println!("zkrepl copy:");
    for (label, key, ratio_key, base) in [
        ("cold (fresh server)", "cold", "cold_ratio_to_raw_create_cold", "fresh multi-create"),
        ("warm", "warm", "warm_ratio_to_raw_create_warm", "warm multi-create"),
        ("warm, --acl open", "acl_open_warm", "acl_open_ratio_to_raw_create_warm", "warm multi-create"),
    ] {
        let v = &c[key];
        println!(
            "  {label:<20} {:>9.0} nodes/s {:>6.2} MB/s = {:>3.0}% of {base}; p50 {:.0} ms p99 {:.0} ms; peak RSS {}",
            rate_of(v, "nodes_per_sec"),
            rate_of(v, "bytes_read") / rate_of(v, "seconds").max(1e-9) / 1e6,
            100.0 * rate_of(c, ratio_key),
            rate_of(v, "latency_p50_ms"),
            rate_of(v, "latency_p99_ms"),
            rss(v)
        );
    }
    println!(
        "  warm copy = {:.0}% of getACL alone, {:.0}% of getACL with multi-create at once (one getACL per node: no batched form)",
        100.0 * rate_of(c, "warm_ratio_to_get_acl"),
        100.0 * rate_of(c, "warm_ratio_to_get_acl_with_create")
    );
    let v = &r["verify"];
    if !v["acl"].is_null() {
        println!("zkrepl verify (both trees read at once):");
        println!(
            "  with ACLs      {:>9.0} nodes/s per side = {:.0}% of getACL on both servers at once; peak RSS {}",
            rate_of(&v["acl"], "nodes_per_sec_per_side"),
            100.0 * rate_of(v, "acl_ratio_to_get_acl_both"),
            rss(&v["acl"])
        );
        println!(
            "  without ACLs   {:>9.0} nodes/s per side = {:.0}% of multiRead on both servers at once ({:.0}% of one server alone)",
            rate_of(&v["no_acl"], "nodes_per_sec_per_side"),
            100.0 * rate_of(v, "no_acl_ratio_to_multi_read_both"),
            100.0 * rate_of(v, "no_acl_ratio_to_multi_read")
        );
        let e = &v["empty_destination"];
        println!(
            "  --json against an empty destination: {} differences streamed ({} missing counted) in {:.2} s; peak RSS {}",
            e["differences_streamed"],
            e["counts"]["missing_on_dst"],
            rate_of(e, "seconds"),
            rss(e)
        );
    }
    let w = &r["snapshot"];
    if !w.is_null() {
        println!("with a snapshot of the source (and, for the verify, of the destination):");
        for (label, key, ratio_key, base, plain) in [
            (
                "copy, fresh server",
                "copy_cold",
                "copy_cold_ratio_to_raw_create_cold",
                "fresh",
                "cold_ratio_to_raw_create_cold",
            ),
            (
                "copy, warm server",
                "copy_warm",
                "copy_warm_ratio_to_raw_create_warm",
                "warm",
                "warm_ratio_to_raw_create_warm",
            ),
        ] {
            let v = &w[key];
            let a = &v["acl_sources"];
            println!(
                "  {label:<18} {:>9.0} nodes/s = {:>3.0}% of {base} multi-create (without: {:.0}%); ACLs {} from the snapshot, {} read live; snapshot read in {:.2} s; peak RSS {}",
                rate_of(v, "nodes_per_sec"),
                100.0 * rate_of(w, ratio_key),
                100.0 * rate_of(c, plain),
                a["from_snapshot"],
                a["read"],
                rate_of(a, "load_seconds"),
                rss(v)
            );
        }
        println!(
            "  multiRead getData, both servers at once: {:.0} reads/s per server",
            rate_of(&w["multi_read_both_servers"], "per_sec")
        );
        for (label, key, ratio_key) in [
            ("verify, snapshots", "verify", "verify_ratio_to_multi_read_both"),
            ("verify, --no-acl", "verify_no_acl", "verify_no_acl_ratio_to_multi_read_both"),
            ("verify, live ACLs", "verify_live_acl", "verify_live_acl_ratio_to_multi_read_both"),
        ] {
            println!(
                "  {label:<18} {:>9.0} nodes/s per side = {:>3.0}% of multiRead on both servers at once; peak RSS {}",
                rate_of(&w[key], "nodes_per_sec_per_side"),
                100.0 * rate_of(w, ratio_key),
                rss(&w[key])
            );
        }
    }
    if let Some(sw) = r["sweep"].as_array().filter(|a| !a.is_empty()) {
        println!("sweep (warm copies, one parameter at a time):");
        for x in sw {
            println!(
                "  {:<14} {:>6}  {:>9.0} nodes/s  p99 {:.0} ms",
                x["param"].as_str().unwrap_or(""),
                x["value"].as_str().unwrap_or(""),
                x["nodes_per_sec"].as_f64().unwrap_or(0.0),
                x["latency_p99_ms"].as_f64().unwrap_or(0.0)
            );
        }
    }
}

#[derive(Args, Debug)]
#[command(
    after_long_help = "Starts three local ZooKeeper servers (needs java and the ZooKeeper jars: apt-get install zookeeper, or ZK_HOME), generates a Pegasus-shaped tree on the first, copies it to the second with zkrepl copy --verify, prints the summary and throughput, then migrates a simulated Pegasus cluster (two in-process meta servers) over the tree to the third server with the pegasus migrate procedure and on to the second with --live, prints both blind windows, and stops the servers."
)]
pub struct DemoArgs {
    /// Nodes in the generated tree
    #[arg(long, default_value_t = 100_000)]
    pub nodes: u64,

    /// Print the results as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// Whether a verify report (JSON) shows two equal trees: every class of
/// difference counted and at zero (a node changed during the verify is a
/// difference too; counters behind are not, as without --strict-counters),
/// and both digests there and equal.
fn verified_equal(v: &Value) -> bool {
    const CLASSES: [&str; 6] =
        ["missing_on_dst", "extra_on_dst", "data_differs", "acl_differs", "unreadable", "changed"];
    let zero = |k: &str| v["counts"].get(k).and_then(Value::as_u64) == Some(0);
    CLASSES.into_iter().all(zero) && v["src_digest"].is_string() && v["src_digest"] == v["dst_digest"]
}

pub async fn demo(args: DemoArgs) -> zkrepl::Result<Outcome> {
    let spec = gen_options(Shape::Pegasus, args.nodes, None);
    let n = spec.node_count();
    if n < 10 {
        return Err(usage("--nodes must be at least 10"));
    }
    let note = |m: &str| {
        if !args.json {
            eprintln!("demo: {m}");
        }
    };
    // Ctrl-C: stop now; the local servers go with this process.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("demo: interrupted");
            std::process::exit(130);
        }
    });
    note("starting three local ZooKeeper servers");
    let mut servers = start_local(&[heap_for(n, 300, 1), heap_for(n, 300, 2), heap_for(n, 300, 1)]).await?;
    let (new, dst, src) = (servers.pop().unwrap(), servers.pop().unwrap(), servers.pop().unwrap());
    let root = "/pegasus/demo";
    note(&format!("generating a Pegasus-shaped tree of {n} nodes under {root} on {}", src.connect_string()));
    let session = ceilings::session(&src.connect_string()).await?;
    let generated = treegen::generate(&session, root, &spec).await?;
    note(&format!("copying to {} with zkrepl copy --verify", dst.connect_string()));
    let result = child(s(&[
        "copy",
        "--src",
        &src.connect_string(),
        "--dst",
        &dst.connect_string(),
        "--root",
        root,
        "--verify",
        "--json",
        "-q",
    ]))
    .await?;
    note("measuring the raw ceilings of the same servers (now warm)");
    let nodes: Vec<(String, Vec<u8>)> = treegen::nodes(&spec).collect();
    let paths: Vec<String> = nodes.iter().map(|(rel, _)| zkrepl::zk::path::join(root, rel)).collect();
    let (dst_hosts, src_hosts) = (dst.connect_string(), src.connect_string());
    let (dst_pool, src_pool) =
        futures::try_join!(ceilings::sessions(&dst_hosts, 1), ceilings::sessions(&src_hosts, 8))?;
    let src_clients = src_pool.clients().clients;
    // What binds a copy that keeps ACLs: one getACL per node on the source
    // while the destination creates; and the writes alone.
    let (acl, create) = futures::try_join!(
        ceilings::get_acl(&src_clients, &paths, 1000),
        ceilings::multi_create(dst_pool.get(0), "/zkrepl-demo/raw-1", &nodes, 500, 8)
    )?;
    let both = nodes.len() as f64 / acl.seconds.max(create.seconds).max(1e-9);
    let raw = ceilings::multi_create(dst_pool.get(0), "/zkrepl-demo/raw-2", &nodes, 500, 8).await?;
    let copy = &result["copy"];
    let verify = &result["verify"];
    let equal = verified_equal(verify);
    if args.json {
        print_json(&json!({
            "generated": generated, "copy": copy, "verify": verify,
            "raw_multi_create_warm": raw, "raw_get_acl_with_multi_create_per_sec": both,
        }));
    } else {
        println!("zkrepl demo: Pegasus-shaped tree, {n} nodes, copied between two local ZooKeeper servers");
        println!(
            "  copied     {} nodes in {:.2} s = {:.0} nodes/s (ACLs preserved; {} ephemeral leader lock skipped)",
            copy["created"],
            rate_of(copy, "seconds"),
            rate_of(copy, "nodes_per_sec"),
            copy["skipped_ephemerals"]
        );
        println!(
            "  verified   {} nodes per side in {:.2} s: {}; digest {}",
            verify["src_nodes"],
            rate_of(verify, "seconds"),
            if equal { "EQUAL" } else { "DIFFERENT" },
            verify["src_digest"].as_str().unwrap_or("?")
        );
        println!(
            "  raw ceilings of the same servers: getACL of every node on the source while the destination creates them, {:.0} nodes/s (copy = {:.0}% of it: one getACL per node, no batched form); multi-create alone {:.0} nodes/s",
            both,
            100.0 * ratio(rate_of(copy, "nodes_per_sec"), both),
            raw.per_sec
        );
        println!(
            "  peak memory of the copy: {}",
            copy["peak_rss_bytes"].as_u64().map(|b| ByteSize(b).to_string()).unwrap_or_default()
        );
    }
    // The generator's session holds the tree's leader lock: gone before
    // the simulated metas hold their election.
    drop(session);
    note(&format!(
        "migrating a simulated Pegasus cluster (2 meta servers over {root}) to a third server {} with the pegasus migrate procedure",
        new.connect_string()
    ));
    let migrated =
        crate::demo_migrate::run(&src.connect_string(), &new.connect_string(), &dst.connect_string(), root, args.json)
            .await?;
    let runs = migrated.as_array().cloned().unwrap_or_default();
    let ok = !runs.is_empty()
        && runs.iter().all(|m| {
            m["metas_on_new_ensemble"] == true && m["leader_restored"] == true && m["partitions_recreated"] == 0
        });
    if args.json {
        print_json(&json!({ "pegasus_migrate": migrated }));
    } else {
        for m in &runs {
            let r = &m["report"];
            let parts: Vec<&str> = m["parts_in_order"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let moments: Vec<String> = r["timeline"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| format!("{} {:.3} s", p[0].as_str().unwrap_or("?"), p[1].as_f64().unwrap_or(f64::NAN)))
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "  migrated   the simulated cluster to {}{}: blind window {:.2} s ({}); leader and follower on the new ensemble, level {}, {} partitions recreated",
                r["dst_hosts"].as_str().unwrap_or("?"),
                if m["live"] == true { " with --live" } else { "" },
                r["blind_window_seconds"].as_f64().unwrap_or(f64::NAN),
                parts.join(", "),
                m["level"].as_str().unwrap_or("?"),
                m["partitions_recreated"]
            );
            println!("             moments: {}", moments.join(", "));
        }
    }
    Ok(Outcome { exit: if equal && ok { Exit::Ok } else { Exit::Differences } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(changes: &[(&str, u64)], src: Value, dst: Value) -> Value {
        let mut counts = json!({
            "missing_on_dst": 0, "extra_on_dst": 0, "data_differs": 0, "acl_differs": 0,
            "counter_behind": 0, "unreadable": 0, "changed": 0,
        });
        for (k, n) in changes {
            counts[*k] = json!(n);
        }
        json!({ "counts": counts, "src_digest": src, "dst_digest": dst })
    }

    #[test]
    fn the_demo_calls_equal_only_what_verify_proved_equal() {
        let d = || json!("ab12");
        assert!(verified_equal(&report(&[], d(), d())));
        assert!(verified_equal(&report(&[("counter_behind", 3)], d(), d())), "not a difference by default");
        for class in ["missing_on_dst", "extra_on_dst", "data_differs", "acl_differs", "unreadable", "changed"] {
            assert!(!verified_equal(&report(&[(class, 1)], d(), d())), "{class}");
        }
        assert!(!verified_equal(&report(&[], d(), json!("cd34"))), "other digests");
        assert!(!verified_equal(&report(&[], Value::Null, Value::Null)), "no digests: not proven");
        assert!(!verified_equal(&json!({ "src_digest": "ab12", "dst_digest": "ab12" })), "no counts");
        assert!(
            !verified_equal(&json!({ "counts": {}, "src_digest": "ab12", "dst_digest": "ab12" })),
            "counts missing"
        );
    }
}
