//! Test trees, generated fast (through the batching writer) and
//! deterministically: the same shape, sizes and seed give the same tree.
//!
//! Shapes: `pegasus` (the layout a Pegasus meta server keeps: apps with
//! app_info JSON, partitions with partition_configuration JSON, duplication,
//! backup and bulk-load nodes, and an ephemeral-sequential leader lock),
//! `wide` (one parent, N children), `deep` (a chain N levels deep) and
//! `large` (N nodes near 1 MiB).

use std::time::Instant;

use zookeeper_client as zk;

use crate::error::{Error, Result, Side};
use crate::node::open_acl;
use crate::write::{NodeKind, Op, Writer, WriterOptions};
use crate::zk::path;
use crate::zk::session::Session;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Pegasus,
    Wide,
    Deep,
    Large,
}

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
                1 + 1
                    + apps
                    + apps * self.partitions as u64
                    + dup_apps * (2 + self.partitions as u64)
                    + 2
                    + 1
                    + 1
                    + 3
            }
            Shape::Wide | Shape::Large => 1 + self.nodes,
            Shape::Deep => 1 + self.nodes,
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
    format!(
        "10.{}.{}.{}:34801",
        rng.below(256),
        rng.below(256),
        1 + rng.below(254)
    )
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

/// Generates a tree under `root` (which must not exist yet; its ancestors
/// are created). Ephemerals live as long as `session`.
pub async fn generate(session: &Session, root: &str, opts: &GenOptions) -> Result<GenSummary> {
    path::validate(root)?;
    if root == "/" {
        return Err(Error::Usage(
            "generate under a new root path, not /".to_string(),
        ));
    }
    let (_, c) = session.client();
    if c.check_stat(root)
        .await
        .map_err(|e| Error::zk(Side::Destination, "stat", root, e))?
        .is_some()
    {
        return Err(Error::Usage(format!(
            "{root} already exists: choose a new root (or delete it first)"
        )));
    }
    let started = Instant::now();
    for dir in path::ancestors(root) {
        match c
            .create(
                dir,
                &[],
                &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
            )
            .await
        {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(Error::zk(Side::Destination, "create", dir, e)),
        }
    }
    let mut w = Writer::new(session, opts.writer);
    let mut rng = Rng::new(opts.seed);
    let mut nodes = 0u64;
    let mut bytes = 0u64;
    let acl = open_acl();
    let mut put = async |w: &mut Writer<'_>, p: String, data: Vec<u8>| -> Result<()> {
        nodes += 1;
        bytes += data.len() as u64;
        w.push(Op::Create {
            path: p,
            data,
            acl: acl.clone(),
            kind: NodeKind::Persistent,
        })
        .await
    };
    let j = |rel: &str| path::join(root, rel);
    match opts.shape {
        Shape::Pegasus => {
            put(&mut w, j(""), Vec::new()).await?;
            put(&mut w, j("/apps"), b"unlock".to_vec()).await?;
            for app in 1..=opts.apps {
                let app_path = format!("/apps/{app}");
                put(
                    &mut w,
                    j(&app_path),
                    app_info(app, opts.partitions, &mut rng).into_bytes(),
                )
                .await?;
                for p in 0..opts.partitions {
                    let data = partition_config(app, p, &mut rng, opts.data_bytes);
                    put(&mut w, j(&format!("{app_path}/{p}")), data).await?;
                }
                if app % 10 == 1 {
                    put(&mut w, j(&format!("{app_path}/duplication")), Vec::new()).await?;
                    let dup = format!("{app_path}/duplication/{}", 1_600_000_000 + app);
                    let info = format!(
                        r#"{{"remote":"target_cluster","status":"DS_LOG","create_timestamp_ms":{}}}"#,
                        1_600_000_000_000u64 + rng.below(1 << 30)
                    );
                    put(&mut w, j(&dup), info.into_bytes()).await?;
                    for p in 0..opts.partitions {
                        put(
                            &mut w,
                            j(&format!("{dup}/{p}")),
                            rng.below(10_000_000).to_string().into_bytes(),
                        )
                        .await?;
                    }
                }
            }
            put(&mut w, j("/backup"), Vec::new()).await?;
            put(&mut w, j("/backup/daily"), br#"{"policy_name":"daily","backup_provider_type":"hdfs","backup_interval_seconds":86400,"app_ids":[1],"backup_history_count_to_keep":3,"start_time":"02:00"}"#.to_vec()).await?;
            put(&mut w, j("/bulk_load"), Vec::new()).await?;
            put(&mut w, j("/ranger_policy_meta_root"), Vec::new()).await?;
            put(&mut w, j("/lock"), Vec::new()).await?;
            put(&mut w, j("/lock/meta"), Vec::new()).await?;
            put(&mut w, j("/lock/meta/dsn.meta.server.leader"), Vec::new()).await?;
        }
        Shape::Wide => {
            put(&mut w, j(""), Vec::new()).await?;
            let n = opts.data_bytes.unwrap_or(100);
            for i in 0..opts.nodes {
                put(&mut w, j(&format!("/n{i:08}")), rng.bytes(n)).await?;
            }
        }
        Shape::Deep => {
            put(&mut w, j(""), Vec::new()).await?;
            let n = opts.data_bytes.unwrap_or(100);
            let mut rel = String::new();
            for i in 0..opts.nodes {
                rel.push_str(&format!("/d{i}"));
                put(&mut w, j(&rel), rng.bytes(n)).await?;
            }
        }
        Shape::Large => {
            put(&mut w, j(""), Vec::new()).await?;
            let n = opts.data_bytes.unwrap_or(1_000_000);
            for i in 0..opts.nodes {
                put(&mut w, j(&format!("/big{i:06}")), rng.bytes(n)).await?;
            }
        }
    }
    w.flush().await?;
    let mut ephemerals = 0;
    if opts.shape == Shape::Pegasus && opts.leader_lock {
        let lock = j("/lock/meta/dsn.meta.server.leader/LOCKNODE");
        let (_, c) = session.client();
        c.create(
            &lock,
            b"10.0.0.1:34601",
            &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .map_err(|e| Error::zk(Side::Destination, "create", &lock, e))?;
        ephemerals = 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(GenSummary {
        shape: opts.shape,
        root: root.to_string(),
        nodes,
        bytes,
        ephemerals,
        seconds,
        nodes_per_sec: nodes as f64 / seconds.max(1e-9),
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
    fn pegasus_json_is_valid() {
        let mut r = Rng::new(1);
        let a: serde_json::Value = serde_json::from_str(&app_info(3, 8, &mut r)).unwrap();
        assert_eq!(a["app_id"], 3);
        let p: serde_json::Value =
            serde_json::from_slice(&partition_config(3, 5, &mut r, Some(400))).unwrap();
        assert_eq!(p["pid"], "3.5");
        assert!(partition_config(1, 1, &mut r, Some(400)).len() >= 400);
    }
}
