//! Unit tests on hand-made snapshots (real ones are tested in
//! tests/snapshot.rs).

use std::io::Write;

use super::*;

/// Writes Jute the way ZooKeeper's BinaryOutputArchive does.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn int(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn long(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn string(&mut self, s: &str) -> &mut Self {
        self.int(s.len() as i32);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn buffer(&mut self, b: &[u8]) -> &mut Self {
        self.int(b.len() as i32);
        self.0.extend_from_slice(b);
        self
    }
    fn seal(&mut self) -> &mut Self {
        let sum = adler2::adler32_slice(&self.0);
        self.long(sum as i64).string("/")
    }
}

struct Node {
    path: &'static str,
    data: Vec<u8>,
    owner: i64,
    mzxid: i64,
}

fn node(path: &'static str, data: &[u8], owner: i64, mzxid: i64) -> Node {
    Node { path, data: data.to_vec(), owner, mzxid }
}

const TTL_OWNER: i64 = 0xff00_0000_0001_5f90u64 as i64; // 90 000 ms
const SESSION: i64 = 0x0100_0012_3456_0000;

fn sample_nodes() -> Vec<Node> {
    vec![
        node("", b"", 0, 0),
        node("/zookeeper", b"", 0, 0),
        node("/app", b"hello", 0, 3),
        node("/app/locks", b"", CONTAINER_OWNER, 4),
        node("/app/locks/l1", &[7u8; 70_000], SESSION, 9),
        node("/app/cache", b"x", TTL_OWNER, 5),
        node("/other", b"", CONTAINER_OWNER, 6),
    ]
}

/// A complete snapshot; `digest` adds the 3.6+ digest and its seal.
fn snapshot(nodes: &[Node], digest: bool) -> Vec<u8> {
    snapshot_with(nodes, digest, None)
}

/// `last` adds 3.9's last processed zxid and its seal.
fn snapshot_with(nodes: &[Node], digest: bool, last: Option<i64>) -> Vec<u8> {
    let mut o = Out::default();
    o.0.extend_from_slice(b"ZKSN");
    o.int(2).long(-1);
    o.int(2).long(SESSION).int(30_000).long(0x42).int(10_000);
    // ACL cache: one list with two ACLs.
    o.int(1).long(1).int(2);
    o.int(31).string("world").string("anyone");
    o.int(1).string("digest").string("u:hash");
    for n in nodes {
        o.string(n.path).buffer(&n.data).long(if n.path.is_empty() { -1 } else { 1 });
        o.long(1).long(n.mzxid).long(1000).long(2000);
        o.int(0).int(2).int(0).long(n.owner).long(n.mzxid + 1);
    }
    o.string("/").seal();
    if digest {
        o.long(0x99).int(2).long(0x1234_5678).seal();
    }
    if let Some(z) = last {
        o.long(z).seal();
    }
    o.0
}

/// Bytes of a seal, of the digest with its seal, of the last zxid with its.
const SEAL: usize = 8 + 4 + 1;
const DIGEST: usize = 8 + 4 + 8 + SEAL;
const LAST: usize = 8 + SEAL;

#[test]
fn digest_and_last_zxid_in_any_combination() {
    let dir = tempfile::tempdir().unwrap();
    for digest in [false, true] {
        for last in [None, Some(0x77)] {
            let f = write_file(&dir, "snapshot.3", &snapshot_with(&sample_nodes(), digest, last));
            let h = for_each_node(&f, |_| Ok(())).unwrap();
            assert_eq!(h.digest.is_some(), digest);
            assert_eq!(h.last_processed_zxid, last);
            assert_eq!(h.checksums_verified, 1 + digest as u32 + last.is_some() as u32);
            assert_eq!(h.trailing_bytes, 0);
            let i = info(&f, "/").unwrap();
            assert_eq!(i.last_zxid, if last.is_some() { 0x77 } else { 10 });
            assert_eq!(i.last_processed_zxid, last);
            // A flipped byte after the first seal is caught too.
            let mut b = std::fs::read(&f).unwrap();
            let n = b.len();
            b[n - SEAL - 2] ^= 4;
            std::fs::write(&f, &b).unwrap();
            snapshot_err(info(&f, "/").unwrap_err());
        }
    }
}

fn write_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn kinds_from_ephemeral_owner() {
    use SnapKind::*;
    assert_eq!(SnapKind::from_ephemeral_owner(0), Persistent);
    assert_eq!(SnapKind::from_ephemeral_owner(i64::MIN), Container);
    assert_eq!(SnapKind::from_ephemeral_owner(0xff00_0000_0000_0001u64 as i64), Ttl(Duration::from_millis(1)));
    assert_eq!(
        SnapKind::from_ephemeral_owner(0xff00_00ff_ffff_ffffu64 as i64),
        Ttl(Duration::from_millis(0xff_ffff_ffff))
    );
    assert_eq!(SnapKind::from_ephemeral_owner(TTL_OWNER), Ttl(Duration::from_secs(90)));
    assert_eq!(SnapKind::from_ephemeral_owner(SESSION), Ephemeral(SESSION));
    // Server ids >= 128 give negative session ids.
    let neg = 0x8100_0012_3456_0000u64 as i64;
    assert_eq!(SnapKind::from_ephemeral_owner(neg), Ephemeral(neg));
    // Extended marker with an unknown type, or TTL 0: not a TTL node.
    let other = 0xff00_0100_0000_0005u64 as i64;
    assert_eq!(SnapKind::from_ephemeral_owner(other), Ephemeral(other));
    let zero = 0xff00_0000_0000_0000u64 as i64;
    assert_eq!(SnapKind::from_ephemeral_owner(zero), Ephemeral(zero));

    assert_eq!(Container.node_kind(), Some(NodeKind::Container));
    assert_eq!(Ttl(Duration::from_secs(1)).node_kind(), Some(NodeKind::Ttl(Duration::from_secs(1))));
    assert_eq!(Persistent.node_kind(), None);
    assert_eq!(Ephemeral(5).node_kind(), None);
}

#[test]
fn zxid_in_file_names() {
    assert_eq!(zxid_from_name(Path::new("/d/snapshot.1a")), Some(0x1a));
    assert_eq!(zxid_from_name(Path::new("snapshot.100000003.gz")), Some(0x1_0000_0003));
    assert_eq!(zxid_from_name(Path::new("snapshot.ff.snappy")), Some(0xff));
    assert_eq!(zxid_from_name(Path::new("snapshot")), None);
    assert_eq!(zxid_from_name(Path::new("log.1a")), None);
    assert_eq!(zxid_from_name(Path::new("snapshot.xyz")), None);
}

#[test]
fn reads_nodes_kinds_and_info_in_every_compression() {
    let dir = tempfile::tempdir().unwrap();
    let plain = snapshot(&sample_nodes(), true);
    let files = [
        (write_file(&dir, "snapshot.a", &plain), Compression::None),
        (write_file(&dir, "snapshot.a.gz", &gzip(&plain)), Compression::Gzip),
        (write_file(&dir, "snapshot.a.snappy", &stream::snappy_java(&plain, 32 * 1024)), Compression::Snappy),
        // Told by content, not by name.
        (write_file(&dir, "renamed", &gzip(&plain)), Compression::Gzip),
    ];
    for (file, compression) in &files {
        let mut seen = Vec::new();
        let h = for_each_node(file, |n| {
            seen.push((n.path, n.kind, n.data_len, n.mzxid, n.pzxid));
            Ok(())
        })
        .unwrap();
        assert_eq!(h.compression, *compression);
        assert_eq!(h.version, 2);
        assert_eq!(h.dbid, -1);
        assert_eq!(h.sessions, 2);
        assert_eq!(h.acl_lists, 1);
        assert_eq!(h.nodes, 7);
        assert_eq!(h.checksums_verified, 2);
        assert_eq!(h.digest, Some(SnapshotDigest { zxid: 0x99, version: 2, value: 0x1234_5678 }));
        assert_eq!(h.stream_bytes, plain.len() as u64);
        assert_eq!(h.trailing_bytes, 0);
        assert_eq!(seen[0].0, "/");
        assert_eq!(seen[4], ("/app/locks/l1".to_string(), SnapKind::Ephemeral(SESSION), 70_000, 9, 10));

        let kinds = read_kinds(file, "/").unwrap();
        assert_eq!(
            kinds,
            HashMap::from([
                ("/app/locks".to_string(), NodeKind::Container),
                ("/other".to_string(), NodeKind::Container),
                ("/app/cache".to_string(), NodeKind::Ttl(Duration::from_secs(90))),
            ])
        );
        let kinds = read_kinds(file, "/app").unwrap();
        assert_eq!(kinds.len(), 2);
        assert!(read_kinds(file, "/ap").unwrap().is_empty(), "prefix is not a parent");

        let i = info(file, "/app").unwrap();
        assert_eq!(i.nodes_total, 7);
        assert_eq!(i.nodes, 4);
        assert_eq!(i.kinds, KindCounts { persistent: 1, ephemeral: 1, container: 1, ttl: 1 });
        assert_eq!(i.data_bytes, 70_006);
        assert_eq!(i.containers, vec!["/app/locks".to_string()]);
        assert_eq!(i.ttl_nodes, vec![TtlNode { path: "/app/cache".to_string(), ttl_ms: 90_000 }]);
        assert_eq!((i.max_mzxid, i.max_pzxid), (9, 10));
        assert_eq!(i.file_zxid, zxid_from_name(file));
        assert_eq!(i.last_zxid, 10);
        assert!(i.checksum_verified);
        assert_eq!(i.checksums, 2);
    }
}

#[test]
fn older_files_without_digest() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_file(&dir, "snapshot.5", &snapshot(&sample_nodes(), false));
    let h = for_each_node(&f, |_| Ok(())).unwrap();
    assert_eq!(h.digest, None);
    assert_eq!(h.checksums_verified, 1);
    let i = info(&f, "/").unwrap();
    assert_eq!(i.last_zxid, 10);
    assert_eq!(i.kinds.persistent, 3);
}

#[test]
fn callback_errors_stop_the_read() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_file(&dir, "snapshot.5", &snapshot(&sample_nodes(), true));
    let mut n = 0;
    let e = for_each_node(&f, |_| {
        n += 1;
        if n == 3 { Err(Error::Interrupted) } else { Ok(()) }
    })
    .unwrap_err();
    assert!(matches!(e, Error::Interrupted));
    assert_eq!(n, 3);
}

fn snapshot_err(e: Error) -> String {
    match e {
        Error::Snapshot(m) => m,
        other => panic!("not a snapshot error: {other:?}"),
    }
}

#[test]
fn every_truncation_is_an_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let full = snapshot_with(&sample_nodes(), true, Some(0x77));
    let f = dir.path().join("snapshot.7");
    // Cut right after the first or second seal, a file is complete as an
    // older ZooKeeper (or one with the digest or last zxid off) writes it.
    let complete = [full.len() - LAST - DIGEST, full.len() - LAST];
    for len in
        (0..full.len()).filter(|l| *l < 200 || l % 97 == 0 || full.len() - l < 100).filter(|l| !complete.contains(l))
    {
        std::fs::write(&f, &full[..len]).unwrap();
        let m = snapshot_err(info(&f, "/").unwrap_err());
        assert!(m.starts_with(&format!("snapshot {}: ", f.display())), "{m}");
        if len >= 1 {
            assert!(m.contains(&format!("offset {len}")), "len {len}: {m}");
            assert!(m.contains("truncated"), "len {len}: {m}");
        }
    }
    // Cut exactly after the last node: the checksum is missing.
    let end_of_nodes = full.len() - LAST - DIGEST - SEAL;
    std::fs::write(&f, &full[..end_of_nodes]).unwrap();
    let m = snapshot_err(info(&f, "/").unwrap_err());
    assert_eq!(m, format!("snapshot {}: truncated at offset {end_of_nodes} while reading the checksum", f.display()));
    // Cut in the middle of the digest.
    std::fs::write(&f, &full[..full.len() - LAST - 20]).unwrap();
    let m = snapshot_err(info(&f, "/").unwrap_err());
    assert!(m.contains("tree digest"), "{m}");

    // Truncated compressed files.
    for (name, bytes) in [("snapshot.7.gz", gzip(&full)), ("snapshot.7.snappy", stream::snappy_java(&full, 32 * 1024))]
    {
        let f = dir.path().join(name);
        for cut in [1, 9, 30, bytes.len() / 2, bytes.len() - 3] {
            std::fs::write(&f, &bytes[..bytes.len() - cut]).unwrap();
            let m = snapshot_err(info(&f, "/").unwrap_err());
            assert!(m.starts_with(&format!("snapshot {}: ", f.display())), "{m}");
            assert!(m.contains("offset"), "{m}");
        }
    }
}

#[test]
fn every_flipped_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = sample_nodes();
    nodes[4].data = vec![7u8; 300]; // keep the loop quick
    let full = snapshot_with(&nodes, true, Some(0x77));
    let f = dir.path().join("snapshot.8");
    for i in 0..full.len() {
        let mut b = full.clone();
        b[i] ^= 0x10;
        std::fs::write(&f, &b).unwrap();
        let e = info(&f, "/");
        let m = snapshot_err(e.expect_err(&format!("flip at {i} went unnoticed")));
        assert!(m.starts_with(&format!("snapshot {}: ", f.display())), "{m}");
    }
    // A flip in node data is a checksum mismatch, at the seal's offset.
    let mut b = full.clone();
    let at = full.windows(3).position(|w| w == b"hel").unwrap();
    b[at] ^= 1;
    std::fs::write(&f, &b).unwrap();
    let m = snapshot_err(info(&f, "/").unwrap_err());
    let seal_at = full.len() - LAST - DIGEST - SEAL;
    assert!(m.contains(&format!("invalid checksum at offset {seal_at}: the file records")), "{m}");
    assert!(m.contains("corrupted"), "{m}");
    // In a compressed file too (gzip's own CRC may speak first).
    std::fs::write(&f, gzip(&b)).unwrap();
    snapshot_err(info(&f, "/").unwrap_err());
}

#[test]
fn corrupted_lengths_do_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let full = snapshot(&sample_nodes(), true);
    // The data length of /app/locks/l1 (70 000 bytes) set to i32::MAX.
    let at = full.windows(4).position(|w| w == 70_000i32.to_be_bytes()).unwrap();
    let mut b = full.clone();
    b[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
    let f = write_file(&dir, "snapshot.9", &b);
    let m = snapshot_err(info(&f, "/").unwrap_err());
    assert!(m.contains("truncated") && m.contains("node data"), "{m}");
    // A path length of i32::MAX.
    let at = full.windows(4).position(|w| w == b"/app").unwrap() - 4;
    let mut b = full.clone();
    b[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
    std::fs::write(&f, &b).unwrap();
    let m = snapshot_err(info(&f, "/").unwrap_err());
    assert!(m.contains("unreasonable"), "{m}");
    // A session count of i32::MAX: bounded by the stream.
    let mut b = full;
    b[16..20].copy_from_slice(&i32::MAX.to_be_bytes());
    std::fs::write(&f, &b).unwrap();
    snapshot_err(info(&f, "/").unwrap_err());
}

#[test]
fn foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("text", b"hello, this is not a snapshot\n".to_vec()),
        ("one", vec![0x00]),
        ("log.1", {
            // A transaction log header: "ZKLG".
            let mut v = b"ZKLG".to_vec();
            v.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
            v
        }),
        ("snapshot.1.gz", gzip(b"plain text, gzipped")),
        ("snapshot.1.snappy", stream::snappy_java(b"not jute at all", 1024)),
    ];
    for (name, bytes) in cases {
        let f = write_file(&dir, name, &bytes);
        let m = snapshot_err(info(&f, "/").unwrap_err());
        assert!(m.starts_with(&format!("snapshot {}: ", f.display())), "{m}");
        assert!(m.contains("not a ZooKeeper snapshot"), "{name}: {m}");
    }
    let missing = dir.path().join("nope");
    let m = snapshot_err(info(&missing, "/").unwrap_err());
    assert!(m.contains("cannot open"), "{m}");
}

#[test]
fn bad_roots_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_file(&dir, "snapshot.1", &snapshot(&sample_nodes(), true));
    assert!(matches!(read_kinds(&f, "app"), Err(Error::InvalidPath { .. })));
    assert!(matches!(info(&f, "/app/"), Err(Error::InvalidPath { .. })));
}

#[test]
fn structural_nonsense_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A relative node path.
    let mut nodes = sample_nodes();
    nodes[2].path = "app";
    let f = write_file(&dir, "snapshot.1", &snapshot(&nodes, true));
    let m = snapshot_err(info(&f, "/").unwrap_err());
    assert!(m.contains("is not absolute"), "{m}");
    // No root first.
    let nodes = sample_nodes().into_iter().skip(1).collect::<Vec<_>>();
    std::fs::write(&f, snapshot(&nodes, true)).unwrap();
    let m = snapshot_err(info(&f, "/").unwrap_err());
    assert!(m.contains("before the root"), "{m}");
    // Trailing bytes after the last seal are tolerated (as ZooKeeper does).
    let mut b = snapshot_with(&sample_nodes(), true, Some(0x77));
    b.extend_from_slice(b"junk");
    std::fs::write(&f, &b).unwrap();
    let h = for_each_node(&f, |_| Ok(())).unwrap();
    assert_eq!(h.trailing_bytes, 4);
}
