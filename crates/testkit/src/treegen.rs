//! Test trees, generated fast (through the batching writer) and
//! deterministically: the same shape, sizes and seed give the same tree.
//!
//! Shapes: `pegasus` (the layout a Pegasus meta server keeps: apps with
//! app_info JSON, partitions with partition_configuration JSON, duplication,
//! backup and bulk-load nodes, and an ephemeral-sequential leader lock),
//! `wide` (one parent, N children), `deep` (a chain N levels deep) and
//! `large` (N nodes near 1 MiB).

use std::sync::Arc;
use std::time::Instant;

use zookeeper_client as zk;

use zkrepl::error::{Error, Result, Side};
use zkrepl::node::NodeKind;
use zkrepl::node::open_acl;
use zkrepl::write::{Op, Writer, WriterOptions};
use zkrepl::zk::path;
use zkrepl::zk::session::Session;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Pegasus,
    Wide,
    Deep,
    Large,
    /// A queue: `/queue` whose children were created `nodes` times (its
    /// sequence counter), the last 10 still there.
    Counter,
}

/// Children left under the counter shape's queue.
pub const COUNTER_KEPT: u64 = 10;

#[derive(Clone, Debug)]
pub struct GenOptions {
    pub shape: Shape,
    /// Pegasus: number of apps.
    pub apps: u32,
    /// Pegasus: partitions per app.
    pub partitions: u32,
    /// Wide, deep, large: number of nodes.
    pub nodes: u64,
    /// Data bytes per node (pegasus: partition JSON padded to at least this).
    pub data_bytes: Option<usize>,
    pub seed: u64,
    /// Create the ephemeral leader lock (pegasus); it lives as long as the
    /// session passed to [`generate`].
    pub leader_lock: bool,
    pub writer: WriterOptions,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            shape: Shape::Pegasus,
            apps: 100,
            partitions: 1000,
            nodes: 10_000,
            data_bytes: None,
            seed: 1,
            leader_lock: true,
            writer: WriterOptions::default(),
        }
    }
}

impl GenOptions {
    /// Nodes the tree will have (root included, ephemerals not).
    pub fn node_count(&self) -> u64 {
        match self.shape {
            Shape::Pegasus => {
                let apps = self.apps as u64;
                let dup_apps = apps.div_ceil(10);
                // root, apps, apps/<id>, apps/<id>/<p>, duplication for every
                // tenth app (dir, one dup, its partitions), backup (+1 policy),
                // bulk_load, ranger_policy_meta_root, lock path (3 levels).
                1 + 1 + apps + apps * self.partitions as u64 + dup_apps * (2 + self.partitions as u64) + 2 + 1 + 1 + 3
            }
            Shape::Wide | Shape::Large => 1 + self.nodes,
            Shape::Deep => 1 + self.nodes,
            Shape::Counter => 2 + COUNTER_KEPT.min(self.nodes),
        }
    }
}

/// A small deterministic generator (splitmix64): the trees must not change
/// when a dependency's random number generator does.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

fn host(rng: &mut Rng) -> String {
    format!("10.{}.{}.{}:34801", rng.below(256), rng.below(256), 1 + rng.below(254))
}

fn app_info(id: u32, partitions: u32, rng: &mut Rng) -> String {
    format!(
        concat!(
            r#"{{"status":"app_status::AS_AVAILABLE","app_type":"pegasus","app_name":"table_{:04}","app_id":{},"#,
            r#""partition_count":{},"envs":{{"replica.slow_query_threshold":"{}","rocksdb.usage_scenario":"normal"}},"#,
            r#""is_stateful":true,"max_replica_count":3,"expire_second":0,"create_second":{},"drop_second":0,"#,
            r#""duplicating":false,"init_partition_count":{},"is_bulk_loading":false,"atomic_idempotent":false}}"#
        ),
        id,
        id,
        partitions,
        20 + rng.below(980),
        1_600_000_000 + rng.below(100_000_000),
        partitions
    )
}

fn partition_config(app: u32, pidx: u32, rng: &mut Rng, min_bytes: Option<usize>) -> Vec<u8> {
    let (p, s1, s2) = (host(rng), host(rng), host(rng));
    let mut s = format!(
        concat!(
            r#"{{"pid":"{}.{}","ballot":{},"max_replica_count":3,"primary":"{}","secondaries":["{}","{}"],"#,
            r#""last_drops":[],"last_committed_decree":{},"partition_flags":0,"hp_primary":"{}","#,
            r#""hp_secondaries":["{}","{}"],"hp_last_drops":[]}}"#
        ),
        app,
        pidx,
        1 + rng.below(40),
        p,
        s1,
        s2,
        rng.below(10_000_000),
        p,
        s1,
        s2
    );
    if let Some(n) = min_bytes {
        while s.len() < n {
            s.push(' ');
        }
    }
    s.into_bytes()
}

/// What [`generate`] made.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GenSummary {
    pub shape: Shape,
    pub root: String,
    pub nodes: u64,
    pub bytes: u64,
    pub ephemerals: u64,
    pub seconds: f64,
    pub nodes_per_sec: f64,
}

/// The nodes of a tree, parents first, as (path relative to the root, data),
/// generated lazily: memory stays at one app's worth of nodes.
pub fn nodes(opts: &GenOptions) -> Box<dyn Iterator<Item = (String, Vec<u8>)>> {
    let rng = std::rc::Rc::new(std::cell::RefCell::new(Rng::new(opts.seed)));
    let root = std::iter::once((String::new(), Vec::new()));
    match opts.shape {
        Shape::Pegasus => {
            let (apps, partitions, min_bytes) = (opts.apps, opts.partitions, opts.data_bytes);
            let r = rng.clone();
            let per_app = (1..=apps).flat_map(move |app| {
                let mut rng = r.borrow_mut();
                let rng = &mut *rng;
                let app_path = format!("/apps/{app}");
                let mut v = Vec::with_capacity(partitions as usize * 2 + 3);
                v.push((app_path.clone(), app_info(app, partitions, rng).into_bytes()));
                for p in 0..partitions {
                    v.push((format!("{app_path}/{p}"), partition_config(app, p, rng, min_bytes)));
                }
                if app % 10 == 1 {
                    v.push((format!("{app_path}/duplication"), Vec::new()));
                    let dup = format!("{app_path}/duplication/{}", 1_600_000_000 + app);
                    let info = format!(
                        r#"{{"remote":"target_cluster","status":"DS_LOG","create_timestamp_ms":{}}}"#,
                        1_600_000_000_000u64 + rng.below(1 << 30)
                    );
                    v.push((dup.clone(), info.into_bytes()));
                    for p in 0..partitions {
                        v.push((format!("{dup}/{p}"), rng.below(10_000_000).to_string().into_bytes()));
                    }
                }
                v
            });
            let backup = br#"{"policy_name":"daily","backup_provider_type":"hdfs","backup_interval_seconds":86400,"app_ids":[1],"backup_history_count_to_keep":3,"start_time":"02:00"}"#;
            let tail = vec![
                ("/backup".to_string(), Vec::new()),
                ("/backup/daily".to_string(), backup.to_vec()),
                ("/bulk_load".to_string(), Vec::new()),
                ("/ranger_policy_meta_root".to_string(), Vec::new()),
                ("/lock".to_string(), Vec::new()),
                ("/lock/meta".to_string(), Vec::new()),
                (LEADER_PARENT.to_string(), Vec::new()),
            ];
            Box::new(root.chain(std::iter::once(("/apps".to_string(), b"unlock".to_vec()))).chain(per_app).chain(tail))
        }
        Shape::Wide | Shape::Large => {
            let (prefix, n) = if opts.shape == Shape::Wide {
                ("/n", opts.data_bytes.unwrap_or(100))
            } else {
                ("/big", opts.data_bytes.unwrap_or(1_000_000))
            };
            let r = rng.clone();
            Box::new(root.chain((0..opts.nodes).map(move |i| (format!("{prefix}{i:08}"), r.borrow_mut().bytes(n)))))
        }
        Shape::Counter => {
            let n = opts.nodes;
            let kept = COUNTER_KEPT.min(n);
            let items = (n - kept..n).map(|i| (format!("/queue/item-{i:010}"), b"x".to_vec()));
            Box::new(root.chain(std::iter::once(("/queue".to_string(), Vec::new()))).chain(items))
        }
        Shape::Deep => {
            let n = opts.data_bytes.unwrap_or(100);
            let r = rng.clone();
            let mut rel = String::new();
            Box::new(root.chain((0..opts.nodes).map(move |i| {
                rel.push_str(&format!("/d{i}"));
                (rel.clone(), r.borrow_mut().bytes(n))
            })))
        }
    }
}

/// Where the Pegasus shape's ephemeral leader lock lives, relative to the root.
pub const LEADER_PARENT: &str = "/lock/meta/dsn.meta.server.leader";

/// Generates `opts`'s tree at `tree` (its root, with its credentials) on a
/// session of its own, returned: the tree's ephemerals (the leader lock)
/// live as long as it.
pub async fn generate_at(
    tree: &zkrepl::Tree,
    timeouts: &zkrepl::Timeouts,
    opts: &GenOptions,
) -> Result<(GenSummary, std::sync::Arc<Session>)> {
    let connect = tree.connect_options(Side::Destination, timeouts);
    let session = std::sync::Arc::new(Session::connect(std::sync::Arc::new(connect)).await?);
    let summary = generate(&session, &tree.root, opts).await?;
    Ok((summary, session))
}

/// Generates a tree under `root` (which must not exist yet; its ancestors
/// are created). Ephemerals live as long as `session`.
pub async fn generate(session: &Arc<Session>, root: &str, opts: &GenOptions) -> Result<GenSummary> {
    path::validate(root)?;
    if root == "/" {
        return Err(Error::Usage("generate under a new root path, not /".to_string()));
    }
    let (_, c) = session.client();
    if c.check_stat(root).await.map_err(|e| Error::zk(Side::Destination, "stat", root, e))?.is_some() {
        return Err(Error::Usage(format!("{root} already exists: choose a new root (or delete it first)")));
    }
    let started = Instant::now();
    zkrepl::write::create_ancestors(session, root).await?;
    let mut w = Writer::new(session.clone(), opts.writer);
    let (mut count, mut bytes) = (0u64, 0u64);
    let acl = open_acl();
    // The iterator is not Send (it shares its generator): take it in chunks.
    let mut it = nodes(opts);
    if opts.shape == Shape::Counter {
        // The queue first, then all but the last children created and
        // deleted again (one transaction each pair), then the last ones.
        for (rel, data) in it.by_ref().take(2) {
            count += 1;
            w.push(Op::Create { path: path::join(root, &rel), data, acl: acl.clone(), kind: NodeKind::Persistent })
                .await?;
        }
        let parent = path::join(root, "/queue");
        for k in 1..=opts.nodes.saturating_sub(COUNTER_KEPT) {
            w.push(Op::Pad { parent: parent.clone(), name: "gone".to_string(), target: k as i64 }).await?;
        }
    }
    loop {
        let chunk: Vec<(String, Vec<u8>)> = it.by_ref().take(1000).collect();
        if chunk.is_empty() {
            break;
        }
        for (rel, data) in chunk {
            count += 1;
            bytes += data.len() as u64;
            w.push(Op::Create { path: path::join(root, &rel), data, acl: acl.clone(), kind: NodeKind::Persistent })
                .await?;
        }
    }
    w.flush().await?;
    let mut ephemerals = 0;
    if opts.shape == Shape::Pegasus && opts.leader_lock {
        let lock = format!("{}/LOCKNODE", path::join(root, LEADER_PARENT));
        let (_, c) = session.client();
        c.create(&lock, b"10.0.0.1:34601", &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()))
            .await
            .map_err(|e| Error::zk(Side::Destination, "create", &lock, e))?;
        ephemerals = 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(GenSummary {
        shape: opts.shape,
        root: root.to_string(),
        nodes: count,
        bytes,
        ephemerals,
        seconds,
        nodes_per_sec: count as f64 / seconds.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(a.bytes(33), b.bytes(33));
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
    }

    #[test]
    fn node_lists_match_their_counts_and_put_parents_first() {
        for shape in [Shape::Pegasus, Shape::Wide, Shape::Deep, Shape::Large, Shape::Counter] {
            let o =
                GenOptions { shape, apps: 12, partitions: 7, nodes: 30, data_bytes: Some(10), ..GenOptions::default() };
            let list: Vec<(String, Vec<u8>)> = nodes(&o).collect();
            assert_eq!(list.len() as u64, o.node_count(), "{shape:?}");
            let mut seen = std::collections::HashSet::new();
            for (rel, _) in &list {
                if let Some(parent) = zkrepl::zk::path::rel_parent(rel) {
                    assert!(seen.contains(parent), "{shape:?}: {rel} before its parent");
                }
                seen.insert(rel.clone());
            }
            let again: Vec<(String, Vec<u8>)> = nodes(&o).collect();
            assert_eq!(list, again, "deterministic");
        }
    }

    #[test]
    fn pegasus_json_is_valid() {
        let mut r = Rng::new(1);
        let a: serde_json::Value = serde_json::from_str(&app_info(3, 8, &mut r)).unwrap();
        assert_eq!(a["app_id"], 3);
        let p: serde_json::Value = serde_json::from_slice(&partition_config(3, 5, &mut r, Some(400))).unwrap();
        assert_eq!(p["pid"], "3.5");
        assert!(partition_config(1, 1, &mut r, Some(400)).len() >= 400);
    }
}
