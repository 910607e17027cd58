//! Reading ZooKeeper snapshot files, to learn what the client protocol
//! hides: which nodes are containers and which are TTL nodes (over the wire
//! both look persistent, with ephemeralOwner 0).
//!
//! The file, once decompressed (see `stream`), is Jute-encoded (see
//! `jute`) as ZooKeeper 3.3 to 3.9 write it (`FileSnap`, `SnapStream`,
//! `SerializeUtils`, `DataTree`, `ReferenceCountedACLCache`, `DataNode`):
//!
//! 1. the file header: `int` magic `"ZKSN"`, `int` version (2), `long` dbid;
//! 2. the sessions: `int` count, then (`long` id, `int` timeout) each;
//! 3. the ACL cache: `int` count, then (`long` id, vector of ACL) each, an
//!    ACL being `int` perms, `string` scheme, `string` id;
//! 4. the nodes, parents before children, the root first with the empty
//!    path: (`string` path, `buffer` data, `long` ACL id, StatPersisted
//!    (`long` czxid, mzxid, ctime, mtime, `int` version, cversion, aversion,
//!    `long` ephemeralOwner, pzxid)) each, ended by the path `"/"`;
//! 5. the seal: `long` Adler-32 of every byte before it, then the string "/";
//! 6. from 3.6 on (when `zookeeper.digest.enabled`, the default), the tree
//!    digest (`long` zxid, `int` digest version, then a `long` digest, or a
//!    hex `string` for versions below 2), followed by another seal whose
//!    Adler-32 covers everything before it, earlier seals included;
//! 7. from 3.9 on (when `zookeeper.serializeLastProcessedZxid.enabled`, the
//!    default), the `long` last processed zxid, followed by another seal.
//!
//! Older files (or files written with those settings off) simply end
//! earlier. ZooKeeper itself refuses a file without the first seal, so a
//! missing checksum is reported as truncation; a file cut right after one of
//! the later seals cannot be told from a complete older one. The tree digest
//! is reported, not verified: a snapshot is fuzzy (taken while transactions
//! apply), so its nodes need not match the digest of the zxid it records.
//!
//! Nothing here holds node data: it is skipped as it streams by, so a
//! snapshot of any size is read in constant memory (apart from what the
//! caller keeps).

mod jute;
mod stream;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use self::jute::{JuteError, JuteReader};
pub use self::stream::Compression;
use crate::error::{Error, Result};
use crate::node::NodeKind;
use crate::zk::path;

/// A node's kind as its ephemeralOwner encodes it (ZooKeeper's
/// `EphemeralType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapKind {
    Persistent,
    /// Owned by this session. Session ids start with the id of the server
    /// that created them, so they are negative for server ids of 128 and up.
    Ephemeral(i64),
    Container,
    Ttl(Duration),
}

/// ephemeralOwner of every container.
pub const CONTAINER_OWNER: i64 = i64::MIN;
/// The high byte that marks an extended type (TTL is the only one).
const EXTENDED_MASK: u64 = 0xff00_0000_0000_0000;
/// The two bytes after it: which extended type (0 is TTL).
const EXTENDED_TYPE_MASK: u64 = 0x00ff_ff00_0000_0000;
/// The low five bytes: the TTL in milliseconds.
const TTL_MASK: u64 = 0x0000_00ff_ffff_ffff;

impl SnapKind {
    /// Decodes an ephemeralOwner as a server with
    /// `zookeeper.extendedTypesEnabled` does: 0 is persistent,
    /// `0x8000000000000000` a container, `0xFF 0000 <40-bit ms>` a TTL node
    /// (the TTL must be at least 1 ms), anything else the owning session.
    ///
    /// An `0xFF` high byte with another type, or a zero TTL, is read as a
    /// session (as a server without extended types would read it; with them
    /// it refuses such a snapshot). TTL nodes as ZooKeeper 3.5.3 encoded them
    /// (high bit set) are not recognized: only servers started with
    /// `zookeeper.emulate353TTLNodes` write those.
    pub fn from_ephemeral_owner(owner: i64) -> SnapKind {
        let bits = owner as u64;
        if owner == 0 {
            SnapKind::Persistent
        } else if owner == CONTAINER_OWNER {
            SnapKind::Container
        } else if bits & EXTENDED_MASK == EXTENDED_MASK && bits & EXTENDED_TYPE_MASK == 0 && bits & TTL_MASK != 0 {
            SnapKind::Ttl(Duration::from_millis(bits & TTL_MASK))
        } else {
            SnapKind::Ephemeral(owner)
        }
    }

    /// The kind a copy should be created as, for the kinds the client
    /// protocol cannot show (containers and TTL nodes); `None` otherwise.
    pub fn node_kind(self) -> Option<NodeKind> {
        match self {
            SnapKind::Container => Some(NodeKind::Container),
            SnapKind::Ttl(d) => Some(NodeKind::Ttl(d)),
            _ => None,
        }
    }
}

/// One node of a snapshot, without its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapNode {
    /// Absolute server path (`/` for the root).
    pub path: String,
    pub kind: SnapKind,
    pub ephemeral_owner: i64,
    pub data_len: usize,
    /// Key into the snapshot's ACL cache (-1 for the open ACL).
    pub acl_id: i64,
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub pzxid: i64,
}

/// The tree digest recorded after the nodes (ZooKeeper 3.6 and later).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotDigest {
    /// The zxid the digest belongs to.
    pub zxid: i64,
    pub version: i32,
    pub value: i64,
}

/// What a complete read of a snapshot found, apart from the nodes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotHeader {
    pub compression: Compression,
    /// The file header's format version (2).
    pub version: i32,
    pub dbid: i64,
    pub sessions: u64,
    /// Distinct ACLs in the snapshot's ACL cache.
    pub acl_lists: u64,
    pub nodes: u64,
    /// The checksum that was verified last (Adler-32).
    pub checksum: u32,
    /// How many seals were verified: 1, plus one for the digest and one for
    /// the last processed zxid when present.
    pub checksums_verified: u32,
    pub digest: Option<SnapshotDigest>,
    /// The server's last processed zxid when it wrote the snapshot
    /// (ZooKeeper 3.9 and later, `zookeeper.serializeLastProcessedZxid.enabled`).
    pub last_processed_zxid: Option<i64>,
    /// Uncompressed bytes read.
    pub stream_bytes: u64,
    /// Bytes after the last seal (ZooKeeper ignores them; none expected).
    pub trailing_bytes: u64,
}

/// How a read stopped early.
enum Stop {
    Format(JuteError),
    Caller(Error),
}

impl From<JuteError> for Stop {
    fn from(e: JuteError) -> Stop {
        Stop::Format(e)
    }
}

fn snapshot_error(file: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Snapshot(format!("snapshot {}: {msg}", file.display()))
}

/// Reads the snapshot at `file` from start to end, calling `f` with every
/// node in file order (parents before children), and returns what else it
/// found once every checksum has been verified.
///
/// Nodes reach `f` before the checksum at the end is verified: a caller
/// that must not act on a corrupted file collects first and acts only when
/// this returns `Ok` (as [`read_kinds`] does). An error from `f` stops the
/// read and is returned as is. Node data is skipped, never held.
pub fn for_each_node(file: &Path, f: impl FnMut(SnapNode) -> Result<()>) -> Result<SnapshotHeader> {
    for_each_acl_and_node(file, |_| Ok(()), f)
}

/// One list of a snapshot's ACL cache: the key nodes refer to it by, and
/// its entries as stored (permissions, scheme, id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapAcl {
    pub key: i64,
    pub entries: Vec<(i32, String, String)>,
}

/// [`for_each_node`], with every list of the ACL cache handed to `on_acl`
/// first (the cache comes before the nodes in the file).
pub fn for_each_acl_and_node(
    file: &Path,
    mut on_acl: impl FnMut(SnapAcl) -> Result<()>,
    mut f: impl FnMut(SnapNode) -> Result<()>,
) -> Result<SnapshotHeader> {
    let (compression, reader) = stream::open(file).map_err(|m| snapshot_error(file, m))?;
    let mut r = JuteReader::new(reader);
    match parse(&mut r, compression, &mut on_acl, &mut f) {
        Ok(h) => Ok(h),
        Err(Stop::Caller(e)) => Err(e),
        Err(Stop::Format(e)) => Err(snapshot_error(file, e)),
    }
}

fn parse<R: std::io::Read>(
    r: &mut JuteReader<R>,
    compression: Compression,
    on_acl: &mut impl FnMut(SnapAcl) -> Result<()>,
    f: &mut impl FnMut(SnapNode) -> Result<()>,
) -> std::result::Result<SnapshotHeader, Stop> {
    // 1. File header.
    let magic = r.read_int("the file header (magic)")?;
    if magic.to_be_bytes() != stream::SNAP_MAGIC {
        return Err(JuteError::invalid(
            0,
            "file header",
            format!(
                "not a ZooKeeper snapshot: its {} stream starts with 0x{:08x}, not \"ZKSN\"",
                match compression {
                    Compression::None => "uncompressed",
                    Compression::Gzip => "gzip",
                    Compression::Snappy => "snappy",
                },
                magic as u32
            ),
        )
        .into());
    }
    let version = r.read_int("the file header (version)")?;
    let dbid = r.read_long("the file header (dbid)")?;

    // 2. Sessions.
    let sessions = count(r, "session count")?;
    for _ in 0..sessions {
        r.read_long("a session id")?;
        r.read_int("a session timeout")?;
    }

    // 3. ACL cache.
    let acl_lists = count(r, "ACL cache size")?;
    for _ in 0..acl_lists {
        let key = r.read_long("an ACL cache key")?;
        let at = r.offset();
        let Some(n) = r.read_count("an ACL list")? else {
            return Err(JuteError::invalid(at, "ACL list", "null").into());
        };
        let mut entries = Vec::new();
        for _ in 0..n {
            let perms = r.read_int("ACL permissions")?;
            let scheme = r.read_string("an ACL scheme")?.unwrap_or_default();
            let id = r.read_string("an ACL id")?.unwrap_or_default();
            entries.push((perms, scheme, id));
        }
        on_acl(SnapAcl { key, entries }).map_err(Stop::Caller)?;
    }

    // 4. Nodes, ended by "/". Each pass consumes bytes: the stream bounds it.
    let mut nodes = 0u64;
    loop {
        let at = r.offset();
        let Some(p) = r.read_string("a node path")? else {
            return Err(JuteError::invalid(at, "node path", "null").into());
        };
        if p == "/" {
            break;
        }
        let path = if p.is_empty() {
            if nodes > 0 {
                return Err(JuteError::invalid(at, "node path", "a second root (empty path)").into());
            }
            "/".to_string()
        } else if !p.starts_with('/') {
            return Err(JuteError::invalid(at, "node path", format!("{:?} is not absolute", preview(&p))).into());
        } else if nodes == 0 {
            return Err(JuteError::invalid(at, "node path", format!("{:?} comes before the root", preview(&p))).into());
        } else {
            p
        };
        let data_len = r.skip_buffer("node data")?;
        let acl_id = r.read_long("a node's ACL key")?;
        let czxid = r.read_long("a node's czxid")?;
        let mzxid = r.read_long("a node's mzxid")?;
        let ctime = r.read_long("a node's ctime")?;
        let mtime = r.read_long("a node's mtime")?;
        let version = r.read_int("a node's version")?;
        let cversion = r.read_int("a node's cversion")?;
        let aversion = r.read_int("a node's aversion")?;
        let ephemeral_owner = r.read_long("a node's ephemeralOwner")?;
        let pzxid = r.read_long("a node's pzxid")?;
        nodes += 1;
        f(SnapNode {
            path,
            kind: SnapKind::from_ephemeral_owner(ephemeral_owner),
            ephemeral_owner,
            data_len,
            acl_id,
            czxid,
            mzxid,
            ctime,
            mtime,
            version,
            cversion,
            aversion,
            pzxid,
        })
        .map_err(Stop::Caller)?;
    }

    // 5. The seal.
    let mut checksum = seal(r, "checksum")?;
    let mut checksums_verified = 1;

    // 6. The digest (3.6+) and 7. the last processed zxid (3.9+), each with
    // its seal, when present. Either may be disabled, so what follows the
    // first seal is told apart by its second field: a digest version is at
    // least 1, while the high half of a seal's checksum (an Adler-32 in a
    // `long`) is always 0.
    let mut digest = None;
    let mut last_processed_zxid = None;
    if let Some(first) = r.read_long_or_eof("the tree digest (zxid)")? {
        let (computed, at) = (r.checksum(), r.offset());
        let second = r.read_int("the tree digest (version)")?;
        if second == 0 {
            let low = r.read_int("the checksum after the last processed zxid")?;
            let stored = low as u32 as i64;
            checksum = check_seal(r, "checksum after the last processed zxid", computed, at, stored)?;
            checksums_verified += 1;
            last_processed_zxid = Some(first);
        } else {
            let version = second;
            let value = if version < 2 {
                let at = r.offset();
                let s = r.read_string("the tree digest (hex)")?.unwrap_or_default();
                u64::from_str_radix(s.trim(), 16)
                    .map_err(|_| JuteError::invalid(at, "tree digest", format!("{:?} is not hex", preview(&s))))?
                    as i64
            } else {
                r.read_long("the tree digest")?
            };
            checksum = seal(r, "checksum after the digest")?;
            checksums_verified += 1;
            digest = Some(SnapshotDigest { zxid: first, version, value });
            if let Some(z) = r.read_long_or_eof("the last processed zxid")? {
                checksum = seal(r, "checksum after the last processed zxid")?;
                checksums_verified += 1;
                last_processed_zxid = Some(z);
            }
        }
    }
    let stream_bytes = r.offset();
    let trailing_bytes = r.drain("the end of the stream")?;
    Ok(SnapshotHeader {
        compression,
        version,
        dbid,
        sessions: sessions as u64,
        acl_lists: acl_lists as u64,
        nodes,
        checksum,
        checksums_verified,
        digest,
        last_processed_zxid,
        stream_bytes,
        trailing_bytes,
    })
}

/// A count that must be there and not negative.
fn count<R: std::io::Read>(r: &mut JuteReader<R>, what: &str) -> std::result::Result<u32, Stop> {
    let at = r.offset();
    match r.read_int(what)? {
        n if n < 0 => Err(JuteError::invalid(at, what, format!("negative count {n}")).into()),
        n => Ok(n as u32),
    }
}

/// Reads a seal (`long` checksum, string "/") and checks it against the
/// Adler-32 of everything before it.
fn seal<R: std::io::Read>(r: &mut JuteReader<R>, what: &str) -> std::result::Result<u32, Stop> {
    let (computed, at) = (r.checksum(), r.offset());
    let stored = r.read_long(&format!("the {what}"))?;
    check_seal(r, what, computed, at, stored)
}

/// The rest of a seal whose checksum (`stored`, read at `at`) was read:
/// reads the "/" marker and compares `stored` with `computed`, the Adler-32
/// of every byte before `at`.
fn check_seal<R: std::io::Read>(
    r: &mut JuteReader<R>,
    what: &str,
    computed: u32,
    at: u64,
    stored: i64,
) -> std::result::Result<u32, Stop> {
    let slash_at = r.offset();
    let slash = r.read_string(&format!("the {what}'s \"/\" marker"))?;
    if slash.as_deref() != Some("/") {
        return Err(JuteError::invalid(
            slash_at,
            &format!("{what}'s marker"),
            format!("expected \"/\", found {:?}", slash.as_deref().map(preview).unwrap_or_default()),
        )
        .into());
    }
    if stored != computed as i64 {
        return Err(JuteError::invalid(
            at,
            what,
            format!("the file records 0x{stored:x}, its bytes sum to 0x{computed:x} (the file is corrupted)"),
        )
        .into());
    }
    Ok(computed)
}

fn preview(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The zxid in a snapshot file's name (`snapshot.<hex zxid>[.gz|.snappy]`).
pub fn zxid_from_name(file: &Path) -> Option<i64> {
    let name = file.file_name()?.to_str()?;
    let mut parts = name.split('.');
    if parts.next()? != "snapshot" {
        return None;
    }
    u64::from_str_radix(parts.next()?, 16).ok().map(|z| z as i64)
}

/// The containers and TTL nodes at or under `root` ("/" for all), by
/// absolute server path. Other nodes are left out, so the map stays small.
/// Returns only once the whole file has been read and its checksums
/// verified.
pub fn read_kinds(file: &Path, root: &str) -> Result<HashMap<String, NodeKind>> {
    path::validate(root)?;
    let mut kinds = HashMap::new();
    for_each_node(file, |n| {
        if let Some(k) = n.kind.node_kind()
            && path::is_within(root, &n.path)
        {
            kinds.insert(n.path, k);
        }
        Ok(())
    })?;
    Ok(kinds)
}

/// Nodes of each kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KindCounts {
    pub persistent: u64,
    pub ephemeral: u64,
    pub container: u64,
    pub ttl: u64,
}

/// A TTL node and its TTL.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TtlNode {
    pub path: String,
    pub ttl_ms: u64,
}

/// A summary of a snapshot file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotInfo {
    pub file: String,
    pub file_bytes: u64,
    pub compression: Compression,
    /// The file header's format version.
    pub format_version: i32,
    pub dbid: i64,
    /// Uncompressed bytes.
    pub stream_bytes: u64,
    pub sessions: u64,
    pub acl_lists: u64,
    /// Every node in the file (the root and /zookeeper included).
    pub nodes_total: u64,
    /// What the counts, data bytes and lists below cover.
    pub root: String,
    /// Nodes at or under `root`.
    pub nodes: u64,
    pub kinds: KindCounts,
    pub data_bytes: u64,
    /// The zxid in the file name, when it follows ZooKeeper's naming.
    pub file_zxid: Option<i64>,
    /// Largest mzxid and pzxid of any node in the file.
    pub max_mzxid: i64,
    pub max_pzxid: i64,
    /// The server's last processed zxid, recorded by ZooKeeper 3.9 and later.
    pub last_processed_zxid: Option<i64>,
    /// The largest of the zxids above (ZooKeeper's SnapshotFormatter reports
    /// the largest of the first three). Every transaction up to the file
    /// name's zxid is in the snapshot; a snapshot is fuzzy (written while
    /// transactions apply), so some later ones may be too.
    pub last_zxid: i64,
    /// Always true in a returned summary: a mismatch is an error.
    pub checksum_verified: bool,
    /// Seals verified: 1, plus one each for the tree digest and the last
    /// processed zxid when present.
    pub checksums: u32,
    pub digest: Option<SnapshotDigest>,
    /// Containers at or under `root`, sorted.
    pub containers: Vec<String>,
    /// TTL nodes at or under `root`, sorted by path.
    pub ttl_nodes: Vec<TtlNode>,
}

/// Reads the whole snapshot and summarises it; counts and lists cover the
/// nodes at or under `root`.
pub fn info(file: &Path, root: &str) -> Result<SnapshotInfo> {
    path::validate(root)?;
    let file_bytes = std::fs::metadata(file).map_err(|e| snapshot_error(file, format!("cannot open: {e}")))?.len();
    let mut kinds = KindCounts::default();
    let mut nodes = 0u64;
    let mut data_bytes = 0u64;
    let (mut max_mzxid, mut max_pzxid) = (0i64, 0i64);
    let mut containers = Vec::new();
    let mut ttl_nodes = Vec::new();
    let header = for_each_node(file, |n| {
        max_mzxid = max_mzxid.max(n.mzxid);
        max_pzxid = max_pzxid.max(n.pzxid);
        if !path::is_within(root, &n.path) {
            return Ok(());
        }
        nodes += 1;
        data_bytes += n.data_len as u64;
        match n.kind {
            SnapKind::Persistent => kinds.persistent += 1,
            SnapKind::Ephemeral(_) => kinds.ephemeral += 1,
            SnapKind::Container => {
                kinds.container += 1;
                containers.push(n.path);
            }
            SnapKind::Ttl(d) => {
                kinds.ttl += 1;
                ttl_nodes.push(TtlNode { path: n.path, ttl_ms: d.as_millis() as u64 });
            }
        }
        Ok(())
    })?;
    containers.sort();
    ttl_nodes.sort_by(|a, b| a.path.cmp(&b.path));
    let file_zxid = zxid_from_name(file);
    Ok(SnapshotInfo {
        file: file.display().to_string(),
        file_bytes,
        compression: header.compression,
        format_version: header.version,
        dbid: header.dbid,
        stream_bytes: header.stream_bytes,
        sessions: header.sessions,
        acl_lists: header.acl_lists,
        nodes_total: header.nodes,
        root: root.to_string(),
        nodes,
        kinds,
        data_bytes,
        file_zxid,
        max_mzxid,
        max_pzxid,
        last_processed_zxid: header.last_processed_zxid,
        last_zxid: file_zxid.unwrap_or(0).max(max_mzxid).max(max_pzxid).max(header.last_processed_zxid.unwrap_or(0)),
        checksum_verified: true,
        checksums: header.checksums_verified,
        digest: header.digest,
        containers,
        ttl_nodes,
    })
}

#[cfg(test)]
mod tests;
