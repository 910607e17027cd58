//! What a migration checks for itself rather than taking anyone's word:
//! who holds the leader lock, whether a meta's ZooKeeper connection is
//! still open, whether the destination is empty, whether every partition
//! node is there. All read-only.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zookeeper_client as zk;

use super::journal::AppRecord;
use crate::zk::{LEADER_LOCK, join};
use zkrepl::zk::secure::Access;

/// A session on one ensemble for the checks (see [`crate::zk::connect`]).
pub async fn connect(
    hosts: &str,
    side: zkrepl::Side,
    access: &Access,
    timeout: Duration,
) -> Result<zk::Client, crate::zk::ConnectError> {
    crate::zk::connect(hosts, side, access, timeout).await
}

/// The host:port entries of a connect string, lower-cased, without a chroot.
pub fn host_set(hosts: &str) -> BTreeSet<String> {
    let without_chroot = hosts.split('/').next().unwrap_or("");
    without_chroot.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect()
}

/// Two connect strings that name the same servers (in any order).
pub fn same_hosts(a: &str, b: &str) -> bool {
    host_set(a) == host_set(b) && chroot(a) == chroot(b)
}

fn chroot(hosts: &str) -> &str {
    hosts.find('/').map(|i| &hosts[i..]).unwrap_or("")
}

/// Whether two connect strings reach one ensemble: a member in common by
/// name or by address, or the root read through both being one node (same
/// creation zxid and time: a copy is created anew). `Some(why)` when they
/// do.
/// `a` is reached as the new ensemble and `b` as the old one.
pub async fn same_ensemble(
    a: &str,
    b: &str,
    root: &str,
    access: &crate::zk::ZkAccess,
    timeout: Duration,
) -> Result<Option<String>, String> {
    if let Some(h) = host_set(a).intersection(&host_set(b)).next() {
        return Ok(Some(format!("both name {h}")));
    }
    let resolve = |hosts: &str| {
        let hosts: Vec<String> = host_set(hosts).into_iter().collect();
        async move {
            let mut out = BTreeSet::new();
            for h in hosts {
                let h = if h.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
                    h
                } else {
                    format!("{h}:2181")
                };
                if let Ok(addrs) = tokio::net::lookup_host(h.as_str()).await {
                    out.extend(addrs);
                }
            }
            out
        }
    };
    let (ra, rb) = (resolve(a).await, resolve(b).await);
    if let Some(x) = ra.intersection(&rb).next() {
        return Ok(Some(format!("{a} and {b} both reach {x}")));
    }
    let (ca, cb) = (
        connect(a, zkrepl::Side::Destination, &access.new, timeout).await?,
        connect(b, zkrepl::Side::Source, &access.old, timeout).await?,
    );
    let read =
        |r: Result<Option<zk::Stat>, zk::Error>, hosts: &str| r.map_err(|e| format!("reading {root} on {hosts}: {e}"));
    let (sa, sb) = (read(ca.check_stat(root).await, a)?, read(cb.check_stat(root).await, b)?);
    if let (Some(x), Some(y)) = (sa, sb)
        && x.czxid == y.czxid
        && x.ctime == y.ctime
        && x.mzxid == y.mzxid
    {
        return Ok(Some(format!("{root} reads as the same node through both (czxid 0x{:x})", x.czxid)));
    }
    Ok(None)
}

/// One `LOCKNODE` under the leader lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockNode {
    pub name: String,
    pub data: String,
    /// The session that holds it (0: a persistent node).
    pub owner: i64,
}

impl LockNode {
    /// `name (data)`, for messages.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.name, self.data)
    }
}

/// The lock nodes a live session holds (ephemerals: a meta in the
/// election), lowest sequence first.
pub async fn holders(c: &zk::Client, lock_path: &str) -> Result<Vec<LockNode>, String> {
    Ok(lock_nodes(c, lock_path).await?.into_iter().filter(|n| n.owner != 0).collect())
}

/// The `LOCKNODE` children of `<lock_path>/dsn.meta.server.leader`, lowest
/// sequence (the leader's) first; empty when the path is missing.
pub async fn lock_nodes(c: &zk::Client, lock_path: &str) -> Result<Vec<LockNode>, String> {
    let dir = join(lock_path, LEADER_LOCK);
    let mut names = match c.list_children(&dir).await {
        Ok(n) => n,
        Err(zk::Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(format!("listing {dir}: {e}")),
    };
    names.retain(|n| n.starts_with("LOCKNODE"));
    // The sequence is the last ten digits, whatever prefix the name has
    // (compared as bytes: a name is not always ASCII).
    names.sort_by_key(|n| n.as_bytes()[n.len().saturating_sub(10)..].to_vec());
    let mut out = Vec::new();
    for name in names {
        let path = join(&dir, &name);
        match c.get_data(&path).await {
            Ok((d, stat)) => {
                out.push(LockNode { name, data: String::from_utf8_lossy(&d).into_owned(), owner: stat.ephemeral_owner })
            }
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(format!("reading {path}: {e}")),
        }
    }
    Ok(out)
}

/// The sessions connected to `members`, by the `cons` command of every
/// address each resolves to, asked at once (four-letter words must allow
/// it: `4lw.commands.whitelist`). `None` when some address did not tell
/// (or told more than is read): the answer would not cover every
/// connection.
pub async fn connected_sessions(members: &[String], timeout: Duration) -> Option<BTreeSet<i64>> {
    let mut addrs = Vec::new();
    for m in members {
        addrs.extend(tokio::net::lookup_host(m.as_str()).await.ok()?);
    }
    if addrs.is_empty() {
        return None;
    }
    let answers = futures::future::join_all(
        addrs.iter().map(|a| async move { tokio::time::timeout(timeout, four_letter(*a, "cons")).await }),
    )
    .await;
    let mut all = BTreeSet::new();
    for answer in answers {
        let text = answer.ok()?.ok()??;
        if text.contains("not executed") || text.contains("not in the whitelist") {
            return None;
        }
        for part in text.split(|c: char| c == ',' || c == '(' || c == ')' || c.is_whitespace()) {
            if let Some(hex) = part.strip_prefix("sid=0x")
                && let Ok(v) = u64::from_str_radix(hex, 16)
            {
                all.insert(v as i64);
            }
        }
    }
    Some(all)
}

/// The most of a `cons` answer read.
const CONS_LIMIT: u64 = 16 << 20;

/// A four-letter command's answer; `None` when it was longer than read.
async fn four_letter(addr: std::net::SocketAddr, cmd: &str) -> std::io::Result<Option<String>> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(cmd.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut limited = (&mut s).take(CONS_LIMIT + 1);
    limited.read_to_end(&mut buf).await?;
    if buf.len() as u64 > CONS_LIMIT {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}
/// What the destination holds at the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DstRoot {
    Missing,
    Empty,
    /// The root exists with this many children.
    Children(i32),
}

/// `root` on the new ensemble `hosts`.
pub async fn dst_root(hosts: &str, access: &Access, root: &str, timeout: Duration) -> Result<DstRoot, String> {
    let c = connect(hosts, zkrepl::Side::Destination, access, timeout).await?;
    match c.check_stat(root).await {
        Ok(None) => Ok(DstRoot::Missing),
        Ok(Some(s)) if s.num_children == 0 => Ok(DstRoot::Empty),
        Ok(Some(s)) => Ok(DstRoot::Children(s.num_children)),
        Err(e) => Err(format!("reading {root} on {hosts}: {e}")),
    }
}

/// App and partition nodes of `apps` missing under `<root>/apps` on
/// `hosts` (a missing partition would be recreated empty, ballot 0, when a
/// meta starts on it). One listing per app.
pub async fn missing_partitions(
    hosts: &str,
    root: &str,
    apps: &[AppRecord],
    access: &Access,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let c = connect(hosts, zkrepl::Side::Destination, access, timeout).await?;
    missing_partitions_on(&c, hosts, root, apps).await
}

/// [`missing_partitions`] through a session already open on `hosts`.
pub async fn missing_partitions_on(
    c: &zk::Client,
    hosts: &str,
    root: &str,
    apps: &[AppRecord],
) -> Result<Vec<String>, String> {
    let apps_path = join(root, "apps");
    // Owned values in the stream keep the future Send for any caller.
    let wanted: Vec<(String, i32)> =
        apps.iter().map(|a| (join(&apps_path, &a.app_id.to_string()), a.partition_count)).collect();
    let listed: Vec<(String, i32, Result<Vec<String>, zk::Error>)> = futures::stream::iter(wanted)
        .map(|(app, count)| async move {
            let r = c.list_children(&app).await;
            (app, count, r)
        })
        .buffered(64)
        .collect()
        .await;
    let mut missing = Vec::new();
    for (app, count, r) in listed {
        match r {
            Ok(children) => {
                let have: BTreeSet<&str> = children.iter().map(String::as_str).collect();
                for p in 0..count.max(0) {
                    if !have.contains(p.to_string().as_str()) {
                        missing.push(join(&app, &p.to_string()));
                    }
                }
            }
            Err(zk::Error::NoNode) => missing.push(app),
            Err(e) => return Err(format!("listing {app} on {hosts}: {e}")),
        }
    }
    Ok(missing)
}
