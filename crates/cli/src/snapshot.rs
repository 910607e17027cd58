//! `zkrepl snapshot-info`.

use bytesize::ByteSize;
use std::path::PathBuf;

use clap::Args;
use zkrepl::snapshot::{self, SnapshotInfo};

use crate::common::print_json;
use crate::outcome::{Exit, Outcome};

/// At most this many containers and TTL nodes are listed without --json.
const LISTED: usize = 50;

#[derive(Args, Debug)]
#[command(
    after_long_help = "Reads a snapshot file of a ZooKeeper server (dataDir/version-2/snapshot.<zxid>, plain, .gz or .snappy)\nfrom start to end, verifying its checksums, without holding node data in memory.\n\nExamples:\n  zkrepl snapshot-info /var/lib/zookeeper/version-2/snapshot.1a00000042\n  zkrepl snapshot-info snapshot.1a00000042.gz --root /app --json\n\nExit status: 0 read and verified, 2 unreadable, truncated, corrupted or not a snapshot."
)]
pub struct SnapshotInfoArgs {
    /// The snapshot file
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// Count and list only nodes at or under this server path
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub root: String,

    /// Print the summary as JSON on stdout (every container and TTL node listed)
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: SnapshotInfoArgs) -> zkrepl::Result<Outcome> {
    let SnapshotInfoArgs { path, root, json } = args;
    let info = tokio::task::spawn_blocking(move || snapshot::info(&path, &root))
        .await
        .map_err(|e| zkrepl::Error::Snapshot(format!("snapshot reader failed: {e}")))??;
    if json {
        print_json(&info);
    } else {
        print_summary(&info);
    }
    Ok(Outcome { exit: Exit::Ok })
}

fn print_summary(i: &SnapshotInfo) {
    let compression = match i.compression {
        snapshot::Compression::None => "uncompressed".to_string(),
        c => format!("{}, {} uncompressed", c.name(), ByteSize(i.stream_bytes)),
    };
    println!("snapshot     {} ({}, {compression})", i.file, ByteSize(i.file_bytes));
    let digest = match &i.digest {
        Some(d) => format!("; tree digest {:#x} at zxid {:#x}", d.value, d.zxid),
        None => "; no tree digest".to_string(),
    };
    println!(
        "format       version {}, dbid {}, checksum verified ({} seal{}){digest}",
        i.format_version,
        i.dbid,
        i.checksums,
        if i.checksums == 1 { "" } else { "s" }
    );
    let named = i.file_zxid.map(|z| format!("file name {z:#x}, ")).unwrap_or_default();
    let processed = i.last_processed_zxid.map(|z| format!(", last processed {z:#x}")).unwrap_or_default();
    println!(
        "last zxid    {:#x} ({named}largest mzxid {:#x}, pzxid {:#x}{processed})",
        i.last_zxid, i.max_mzxid, i.max_pzxid
    );
    println!("sessions     {}", i.sessions);
    println!("ACLs         {} distinct", i.acl_lists);
    if i.root == "/" {
        println!("nodes        {} ({} of data)", i.nodes, ByteSize(i.data_bytes));
    } else {
        println!(
            "nodes        {} at or under {} ({} of data), {} in the file",
            i.nodes,
            i.root,
            ByteSize(i.data_bytes),
            i.nodes_total
        );
    }
    let k = &i.kinds;
    for (label, n) in
        [("persistent", k.persistent), ("ephemeral", k.ephemeral), ("container", k.container), ("ttl", k.ttl)]
    {
        println!("  {label:<11}{n:>10}");
    }
    if !i.containers.is_empty() {
        println!("containers ({})", i.containers.len());
        for p in i.containers.iter().take(LISTED) {
            println!("  {p}");
        }
        more(i.containers.len());
    }
    if !i.ttl_nodes.is_empty() {
        println!("TTL nodes ({})", i.ttl_nodes.len());
        for t in i.ttl_nodes.iter().take(LISTED) {
            println!("  {}  ttl {} ms", t.path, t.ttl_ms);
        }
        more(i.ttl_nodes.len());
    }
}

fn more(n: usize) {
    if n > LISTED {
        println!("  ... and {} more (--json lists all)", n - LISTED);
    }
}
