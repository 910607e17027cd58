//! RPC_CM_START_RECOVERY: a meta started with `[meta_server]
//! recover_from_replica_server = true` rebuilds `apps`, `apps/<id>` and
//! `apps/<id>/<pidx>` in its (empty) ZooKeeper from what the given replica
//! servers hold ([`super::Replicas`]), then serves as it would have after a
//! load.
//!
//! The rules, as the real meta applies them: a given node that is not an
//! alive replica server cannot be asked (ERR_TRY_AGAIN unless
//! `skip_bad_nodes`); a partition none of whose replicas is on a node asked
//! is lost (ERR_TRY_AGAIN unless `skip_lost_partitions`, which recreates it
//! empty); an app no node asked holds is not known. Each finding is a line
//! of the hint. Accepted once, before any app is loaded; afterwards
//! ERR_SERVICE_ALREADY_RUNNING. An empty node list is refused
//! (ERR_INVALID_PARAMETERS), where the real meta would start with nothing.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use zookeeper_client as zkc;

use super::config::MetaConfig;
use super::replicas::{ReplicaApp, holders};
use super::wire::{self, Call, T_STRING, Writer};
use super::zk::{self, App};
use super::{Shared, zk::partition_json};

pub const RPC_CM_START_RECOVERY: &str = "RPC_CM_START_RECOVERY";

/// What a recovery would write, and the hint to answer with.
#[derive(Debug)]
pub(crate) struct Plan {
    pub apps: Vec<App>,
    pub hint: String,
}

/// The nodes a request names: the host_ports when given, else the
/// rpc_addresses as `ip:port`; each once, in order.
fn requested_nodes(call: &Call) -> Vec<String> {
    let mut out: Vec<String> = match call.host_ports(4).filter(|h| !h.is_empty()) {
        Some(hps) => hps.iter().map(|(h, p)| format!("{h}:{p}")).collect(),
        None => (call.addrs(1).unwrap_or(&[]).iter())
            .map(|a| {
                let a = *a as u64;
                format!("{}:{}", Ipv4Addr::from((a >> 32) as u32), (a >> 16) & 0xffff)
            })
            .collect(),
    };
    let mut seen = BTreeSet::new();
    out.retain(|n| seen.insert(n.clone()));
    out
}

/// Decides what to rebuild from `view` when `nodes` are asked; an error is
/// the code and hint to answer.
pub(crate) fn plan(
    cfg: &MetaConfig,
    view: &[ReplicaApp],
    nodes: &[String],
    skip_bad_nodes: bool,
    skip_lost_partitions: bool,
) -> Result<Plan, (&'static str, String)> {
    if nodes.is_empty() {
        return Err(("ERR_INVALID_PARAMETERS", "ERROR: no replica server given to recover from\n".to_string()));
    }
    let mut hint = String::new();
    let (mut asked, mut bad) = (BTreeSet::new(), 0);
    for n in nodes {
        let why = if !cfg.replica_nodes.contains(n) {
            Some("it is not a replica server of this cluster")
        } else if cfg.unalive_nodes.contains(n) {
            Some("it does not answer")
        } else {
            None
        };
        match why {
            None => {
                asked.insert(n.as_str());
            }
            Some(why) => {
                bad += 1;
                let then =
                    if skip_bad_nodes { "skipped (skip_bad_nodes)" } else { "set skip_bad_nodes to go on without it" };
                let level = if skip_bad_nodes { "WARNING" } else { "ERROR" };
                hint.push_str(&format!("{level}: cannot collect apps and replicas from node {n}: {why}; {then}\n"));
            }
        }
    }
    if bad > 0 && !skip_bad_nodes {
        return Err(("ERR_TRY_AGAIN", hint));
    }
    let (mut apps, mut lost, mut partitions) = (Vec::new(), 0, 0);
    for a in view {
        let collected: Vec<usize> =
            a.partitions.iter().map(|p| holders(p).iter().filter(|h| asked.contains(h.as_str())).count()).collect();
        if collected.iter().all(|c| *c == 0) {
            hint.push_str(&format!(
                "WARNING: app {}({}) has no replica on the nodes given: it is not recovered\n",
                a.name(),
                a.id
            ));
            lost += collected.len();
            continue;
        }
        let mut parts = Vec::with_capacity(a.partitions.len());
        for (i, (p, c)) in a.partitions.iter().zip(&collected).enumerate() {
            let total = holders(p).len();
            if *c == 0 {
                lost += 1;
                if skip_lost_partitions {
                    hint.push_str(&format!(
                        "WARNING: partition {}.{i} has no replica on the nodes given: recreated empty\n",
                        a.id
                    ));
                } else {
                    hint.push_str(&format!(
                        "ERROR: partition {}.{i} has no replica on the nodes given; set skip_lost_partitions to recreate it empty\n",
                        a.id
                    ));
                }
                parts.push(partition_json(a.id, i as u32, 0, None, &[]));
                continue;
            }
            if *c < total {
                hint.push_str(&format!(
                    "WARNING: partition {}.{i}: {c} of its {total} replicas on the nodes given, it may have lost data\n",
                    a.id
                ));
            }
            partitions += 1;
            parts.push(p.clone());
        }
        apps.push(App { id: a.id, info: a.info.clone(), partitions: parts, dups: Vec::new() });
    }
    if lost > 0 && !skip_lost_partitions {
        return Err(("ERR_TRY_AGAIN", hint));
    }
    let summary =
        format!("recovered {} apps and {partitions} partitions from {} replica servers\n", apps.len(), asked.len());
    Ok(Plan { apps, hint: summary + &hint })
}

/// The reply frame to a START_RECOVERY call.
pub(crate) async fn answer(call: &Call, s: &Shared, c: &zkc::Client) -> Vec<u8> {
    let (err, hint) = recover(call, s, c).await;
    let mut w = Writer::new();
    w.error_code(1, err).field(T_STRING, 2).string(&hint).stop();
    wire::reply_frame(&call.name, call.seqid, "ERR_OK", Some(&w.buf))
}

async fn recover(call: &Call, s: &Shared, c: &zkc::Client) -> (&'static str, String) {
    if !s.leader.load(Ordering::SeqCst) {
        return ("ERR_FORWARD_TO_OTHERS", String::new());
    }
    // One recovery at a time; a clean stop waits for the writes to end.
    let _guard = s.writing.lock().await;
    if !s.recovering.load(Ordering::SeqCst) {
        let why = if s.cfg.recover_from_replica_server {
            "the meta server has recovered and serves"
        } else {
            "the meta server serves the apps it loaded ([meta_server] recover_from_replica_server = false)"
        };
        return ("ERR_SERVICE_ALREADY_RUNNING", format!("{why}\n"));
    }
    let view = match s.replicas.apps() {
        Ok(v) => v,
        Err(e) => return ("ERR_TRY_AGAIN", format!("ERROR: the replica servers' view: {e}\n")),
    };
    let nodes = requested_nodes(call);
    let skip_bad = call.bool(2).unwrap_or(false);
    let skip_lost = call.bool(3).unwrap_or(false);
    let plan = match plan(&s.cfg, &view, &nodes, skip_bad, skip_lost) {
        Ok(p) => p,
        Err((code, hint)) => return (code, hint),
    };
    if let Err(e) = zk::write_recovered(c, &s.cfg, &plan.apps).await {
        return ("ERR_ZOOKEEPER_OPERATION", format!("ERROR: writing the recovered apps: {e}\n"));
    }
    *s.apps.lock().expect("apps lock") = plan.apps;
    s.recovering.store(false, Ordering::SeqCst);
    ("ERR_OK", plan.hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pegasus::{Replicas, Seed};

    fn setup(nodes: usize) -> (MetaConfig, Vec<ReplicaApp>) {
        let mut seed = Seed::simple(2, 6);
        seed.replica_nodes = (1..=nodes).map(|i| format!("127.0.0.1:{}", 34800 + i)).collect();
        let mut cfg = MetaConfig::new("h:1", "/r", "/r/lock");
        cfg.replica_nodes = seed.replica_nodes.clone();
        (cfg, Replicas::from_seed(&seed).apps().unwrap())
    }

    #[test]
    fn every_node_given_rebuilds_the_view_as_it_is() {
        let (cfg, view) = setup(3);
        let p = plan(&cfg, &view, &cfg.replica_nodes, false, false).unwrap();
        assert_eq!(p.apps.len(), 2);
        for (a, v) in p.apps.iter().zip(&view) {
            assert_eq!((a.id, &a.info, &a.partitions), (v.id, &v.info, &v.partitions));
        }
        assert_eq!(p.hint, "recovered 2 apps and 12 partitions from 3 replica servers\n");
    }

    #[test]
    fn a_node_left_out_warns_and_a_lost_partition_is_an_error_unless_skipped() {
        let (cfg, view) = setup(6);
        // Every partition is on 3 of the 6 nodes: without node 1 none is lost.
        let p = plan(&cfg, &view, &cfg.replica_nodes[1..], false, false).unwrap();
        assert!(p.hint.contains("WARNING: partition 1.0: 2 of its 3 replicas"), "{}", p.hint);
        // Partition 0 of each app lives on nodes 1, 2 and 3 only.
        let (code, hint) = plan(&cfg, &view, &cfg.replica_nodes[3..], false, false).unwrap_err();
        assert_eq!(code, "ERR_TRY_AGAIN");
        assert!(hint.contains("ERROR: partition 1.0 has no replica"), "{hint}");
        let p = plan(&cfg, &view, &cfg.replica_nodes[3..], false, true).unwrap();
        assert_eq!(p.apps[0].partitions[0], partition_json(1, 0, 0, None, &[]), "recreated empty");
        assert_eq!(p.apps[0].partitions[3], view[0].partitions[3]);
    }

    #[test]
    fn a_bad_node_is_an_error_unless_skipped_and_no_node_is_refused() {
        let (mut cfg, view) = setup(3);
        cfg.unalive_nodes = vec![cfg.replica_nodes[2].clone()];
        let (code, hint) = plan(&cfg, &view, &cfg.replica_nodes, false, false).unwrap_err();
        assert_eq!(code, "ERR_TRY_AGAIN");
        assert!(hint.contains("node 127.0.0.1:34803: it does not answer"), "{hint}");
        let p = plan(&cfg, &view, &cfg.replica_nodes, true, false).unwrap();
        assert!(p.hint.contains("from 2 replica servers") && p.hint.contains("skipped"), "{}", p.hint);
        let (code, _) = plan(&cfg, &view, &["10.9.9.9:1".to_string()], false, false).unwrap_err();
        assert_eq!(code, "ERR_TRY_AGAIN", "not a replica server");
        assert_eq!(plan(&cfg, &view, &[], true, true).unwrap_err().0, "ERR_INVALID_PARAMETERS");
    }
}
