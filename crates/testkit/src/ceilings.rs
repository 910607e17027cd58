//! Raw ceilings of a server, measured with the bare client and ideal
//! batching, so that zkrepl's own figures can be given as ratios to what the
//! same servers do in the same run: multi-create of precomputed nodes,
//! multiRead getData, and pipelined getACL over several sessions.

use std::time::Instant;

use futures::StreamExt;
use zookeeper_client as zk;

use zkrepl::error::{Error, Result, Side};
use zkrepl::zk::path;
use zkrepl::zk::session::{ConnectOptions, Session, SessionPool};
use zkrepl::zk::target::Hosts;

/// Operations done and how fast.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Rate {
    pub ops: u64,
    pub seconds: f64,
    pub per_sec: f64,
}

impl Rate {
    fn new(ops: u64, started: Instant) -> Rate {
        let seconds = started.elapsed().as_secs_f64();
        Rate { ops, seconds, per_sec: ops as f64 / seconds.max(1e-9) }
    }
}

/// `n` sessions to `hosts` for raw measurements (one member, synced), with
/// a session timeout long enough for a loaded machine.
pub async fn sessions(hosts: &str, n: usize) -> Result<SessionPool> {
    let mut o = ConnectOptions::new(Side::Source, Hosts::parse(hosts)?);
    o.session_timeout = std::time::Duration::from_secs(30);
    SessionPool::connect(o, n).await
}

/// One session to `hosts` (a tree generator's).
pub async fn session(hosts: &str) -> Result<std::sync::Arc<Session>> {
    let opts = ConnectOptions::new(Side::Source, Hosts::parse(hosts)?);
    Ok(std::sync::Arc::new(Session::connect(std::sync::Arc::new(opts)).await?))
}

/// Creates `path` and its missing ancestors, empty and open.
pub async fn create_path(session: &Session, path: &str) -> Result<()> {
    zkrepl::write::create_ancestors(session, &format!("{path}/child")).await
}

fn zk_err(op: &'static str, path: &str, e: impl Into<zk::Error>) -> Error {
    Error::zk(Side::Destination, op, path, e.into())
}

/// Creates `nodes` (relative paths, parents first) under `root` with
/// multi() batches of `batch` ops, `window` in flight on one session.
pub async fn multi_create(
    session: &Session,
    root: &str,
    nodes: &[(String, Vec<u8>)],
    batch: usize,
    window: usize,
) -> Result<Rate> {
    zkrepl::write::create_ancestors(session, root).await?;
    let (_, client) = session.client();
    let client = &client;
    let paths: Vec<String> = nodes.iter().map(|(rel, _)| path::join(root, rel)).collect();
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    // Batches of `batch` ops, or fewer when their bytes would pass half of
    // jute.maxbuffer (long paths, large data).
    let mut starts = vec![0];
    let mut bytes = 0;
    for (i, (p, (_, data))) in paths.iter().zip(nodes).enumerate() {
        let b = 60 + p.len() + data.len();
        let last = *starts.last().unwrap();
        if i > last && (i - last >= batch.max(1) || bytes + b > 512 << 10) {
            starts.push(i);
            bytes = 0;
        }
        bytes += b;
    }
    starts.push(nodes.len());
    let started = Instant::now();
    // Each request is sent when the map closure runs, in order.
    let mut results = futures::stream::iter(starts.windows(2).map(|w| (w[0], w[1])))
        .map(|(start, end)| {
            let mut w = client.new_multi_writer();
            for i in start..end {
                w.add_create(&paths[i], &nodes[i].1, &opts).expect("valid path");
            }
            let f = w.commit();
            let first = &paths[start];
            async move { f.await.map_err(|e| zk_err("multi create", first, e)) }
        })
        .buffered(window.max(1));
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(Rate::new(nodes.len() as u64, started))
}

/// Reads `paths` with multiRead getData batches of `batch`, `window` in
/// flight on one session.
pub async fn multi_read(client: &zk::Client, paths: &[String], batch: usize, window: usize) -> Result<Rate> {
    // Batches of `batch` paths, fewer when the paths are long.
    let mut chunks: Vec<&[String]> = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, p) in paths.iter().enumerate() {
        if i > start && (i - start >= batch.max(1) || bytes + p.len() + 14 > 512 << 10) {
            chunks.push(&paths[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += p.len() + 14;
    }
    chunks.push(&paths[start..]);
    let started = Instant::now();
    let mut results = futures::stream::iter(chunks)
        .map(|chunk| {
            let mut r = client.new_multi_reader();
            for p in chunk {
                r.add_get_data(p).expect("valid path");
            }
            r.commit()
        })
        .buffer_unordered(window.max(1));
    while let Some(r) = results.next().await {
        r.map_err(|e| zk_err("multiRead", &paths[0], e))?;
    }
    Ok(Rate::new(paths.len() as u64, started))
}

/// getACL of every path, spread over `clients` (one session each), up to
/// `window` requests in flight per session.
pub async fn get_acl(clients: &[zk::Client], paths: &[String], window: usize) -> Result<Rate> {
    let started = Instant::now();
    let n = clients.len().max(1);
    let per_session = clients.iter().enumerate().map(|(k, c)| async move {
        let mut s = futures::stream::iter(paths.iter().skip(k).step_by(n))
            .map(|p| c.get_acl(p))
            .buffer_unordered(window.max(1));
        while let Some(r) = s.next().await {
            r.map_err(|e| zk_err("getACL", "(bench)", e))?;
        }
        Ok::<(), Error>(())
    });
    futures::future::try_join_all(per_session).await?;
    Ok(Rate::new(paths.len() as u64, started))
}

/// Deletes `rels` under `root`, children first (the reverse of a
/// parent-first list), in multi() batches.
pub async fn multi_delete(
    client: &zk::Client,
    root: &str,
    rels: &[String],
    batch: usize,
    window: usize,
) -> Result<Rate> {
    let paths: Vec<String> = rels.iter().rev().map(|rel| path::join(root, rel)).collect();
    let started = Instant::now();
    let mut results = futures::stream::iter(paths.chunks(batch.max(1)))
        .map(|chunk| {
            let mut w = client.new_multi_writer();
            for p in chunk {
                w.add_delete(p, None).expect("valid path");
            }
            w.commit()
        })
        .buffered(window.max(1));
    while let Some(r) = results.next().await {
        r.map_err(|e| zk_err("multi delete", root, e))?;
    }
    Ok(Rate::new(paths.len() as u64, started))
}

/// Creates and deletes child `name` of `parent` `count` times, `pairs` pairs
/// to a multi(), `window` in flight: the raw cost of raising a sequence
/// counter by `count`.
pub async fn multi_pad(client: &zk::Client, parent: &str, count: u64, pairs: usize, window: usize) -> Result<Rate> {
    let child = path::child(parent, "raw-pad");
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let started = Instant::now();
    let batches = count.div_ceil(pairs.max(1) as u64);
    let mut results = futures::stream::iter(0..batches)
        .map(|b| {
            let n = (count - b * pairs as u64).min(pairs as u64);
            let mut w = client.new_multi_writer();
            for _ in 0..n {
                w.add_create(&child, &[], &opts).expect("valid path");
                w.add_delete(&child, None).expect("valid path");
            }
            w.commit()
        })
        .buffered(window.max(1));
    while let Some(r) = results.next().await {
        r.map_err(|e| zk_err("multi pad", parent, e))?;
    }
    Ok(Rate::new(count, started))
}
