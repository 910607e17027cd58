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

/// A session on one ensemble for the checks, failing fast when it is down.
pub async fn connect(hosts: &str, timeout: Duration) -> Result<zk::Client, String> {
    let connect = zk::Client::connector()
        .with_session_timeout(timeout.max(Duration::from_secs(4)))
        .with_connection_timeout(timeout)
        .with_fail_eagerly();
    match tokio::time::timeout(timeout, connect.connect(hosts)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("cannot connect to ZooKeeper {hosts}: {e}")),
        Err(_) => Err(format!("ZooKeeper {hosts} did not answer within {}s", timeout.as_secs_f64())),
    }
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
pub async fn same_ensemble(a: &str, b: &str, root: &str, timeout: Duration) -> Result<Option<String>, String> {
    if let Some(h) = host_set(a).intersection(&host_set(b)).next() {
        return Ok(Some(format!("both name {h}")));
    }
    let resolve = |hosts: &str| {
        let hosts: Vec<String> = host_set(hosts).into_iter().collect();
        async move {
            let mut out = BTreeSet::new();
            for h in hosts {
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
    let (ca, cb) = (connect(a, timeout).await?, connect(b, timeout).await?);
    let (sa, sb) = (ca.check_stat(root).await, cb.check_stat(root).await);
    if let (Ok(Some(x)), Ok(Some(y))) = (sa, sb)
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

/// Every member's client address: the connect string's, and those the
/// ensemble's own configuration lists (`/zookeeper/config`, 3.5 and later:
/// `server.N=host:quorum:election[:role];[clientaddr:]clientport`), so a
/// member left out of the connect string is asked too.
pub async fn members(c: &zk::Client, hosts: &str) -> Vec<String> {
    let mut all = host_set(hosts);
    if let Ok((data, _)) = c.get_data("/zookeeper/config").await {
        for line in String::from_utf8_lossy(&data).lines() {
            let Some((key, value)) = line.split_once('=') else { continue };
            if !key.trim().starts_with("server.") {
                continue;
            }
            let host = value.split(':').next().unwrap_or("").trim();
            let Some((_, client)) = value.split_once(';') else { continue };
            let client = client.trim();
            let addr = match client.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && h != "0.0.0.0" && h != "[::]" => format!("{h}:{p}"),
                Some((_, p)) => format!("{host}:{p}"),
                None => format!("{host}:{client}"),
            };
            all.insert(addr.to_ascii_lowercase());
        }
    }
    all.into_iter().collect()
}

/// The sessions connected to `members`, by the `cons` command of each,
/// asked at once (four-letter words must allow it:
/// `4lw.commands.whitelist`). `None` when some member did not tell: the
/// answer would not cover every connection.
pub async fn connected_sessions(members: &[String], timeout: Duration) -> Option<BTreeSet<i64>> {
    let answers = futures::future::join_all(
        members.iter().map(|m| async move { tokio::time::timeout(timeout, four_letter(m, "cons")).await }),
    )
    .await;
    let mut all = BTreeSet::new();
    for answer in answers {
        let text = answer.ok()?.ok()?;
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

async fn four_letter(member: &str, cmd: &str) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(member).await?;
    s.write_all(cmd.as_bytes()).await?;
    let mut buf = Vec::new();
    // Bounded: a member with a million connections is not read whole.
    let mut limited = (&mut s).take(16 << 20);
    limited.read_to_end(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// What the destination holds at the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DstRoot {
    Missing,
    Empty,
    /// The root exists with this many children.
    Children(i32),
}

pub async fn dst_root(hosts: &str, root: &str, timeout: Duration) -> Result<DstRoot, String> {
    let c = connect(hosts, timeout).await?;
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
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let c = connect(hosts, timeout).await?;
    let apps_path = join(root, "apps");
    let c = &c;
    // Owned values in the stream keep the future Send for any caller.
    let wanted: Vec<(String, i32)> =
        apps.iter().map(|a| (join(&apps_path, &a.app_id.to_string()), a.partition_count)).collect();
    let listed: Vec<(String, i32, Result<Vec<String>, zk::Error>)> = futures::stream::iter(wanted)
        .map(|(app, count)| async move {
            let r = c.list_children(&app).await;
            (app, count, r)
        })
        .buffered(16)
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
