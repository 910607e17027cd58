//! `zkrepl copy`.

use bytesize::ByteSize;
use std::sync::Arc;

use clap::Args;
use zkrepl::copy::kinds::KindRules;
use zkrepl::copy::{self, AclMode, CopyFailure, CopyOptions, CopyRequest, CopySummary, Mode};
use zkrepl::{Progress, Tree};

use crate::args::{AclArg, Connection, Endpoints, Output, ReadTuning, WriteTuning};
use crate::common::{ProgressView, print_json, watch_signals};
use crate::outcome::{Exit, Outcome};
use crate::outcome::{Flags, hint, print_error};
use crate::verify::run_verify_after_copy;

#[derive(Args, Debug)]
#[command(after_long_help = COPY_EXAMPLES)]
pub struct CopyArgs {
    #[command(flatten)]
    pub endpoints: Endpoints,

    /// The destination root may exist with children: create missing nodes, set changed data and ACLs, keep extra nodes
    #[arg(long, conflicts_with = "mirror")]
    pub update: bool,

    /// Like --update, and also delete destination nodes the source lacks (only under the destination root)
    #[arg(long)]
    pub mirror: bool,

    /// With --mirror: refuse (delete nothing) if more than N nodes would be deleted
    #[arg(long, value_name = "N", requires = "mirror")]
    pub max_delete: Option<u64>,

    /// Show what would be created, updated and deleted; write nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// ACLs to write
    #[arg(long, value_enum, default_value = "preserve")]
    pub acl: AclArg,

    /// Create source nodes matching GLOB as containers (GLOB matches source paths; * stays within a name, ** crosses names); repeatable
    #[arg(long, value_name = "GLOB")]
    pub container: Vec<String>,

    /// Create source nodes matching GLOB as TTL nodes, e.g. '/app/cache/*=1h'; repeatable
    ///
    /// DURATION as for --timeout (500ms, 90s, 10m, 2h, 7d, 1h30m), from 1ms to 2^40 - 1 ms (about 34
    /// years: ZooKeeper's longest TTL).
    #[arg(long, value_name = "GLOB=DURATION")]
    pub ttl: Vec<String>,

    /// Do not raise destination parents' sequence counters (child versions) to the source's
    #[arg(long)]
    pub no_sequence_counters: bool,

    /// Refuse (write nothing) a copy that would need more than N counter pads (a pad is a create and a delete in one transaction: one more child creation on a destination parent)
    #[arg(long, value_name = "N", conflicts_with = "no_sequence_counters")]
    pub max_pad: Option<u64>,

    /// Verify the copy afterwards (data and ACL of every node); exit 1 if anything differs
    #[arg(long)]
    pub verify: bool,

    #[command(flatten)]
    pub read: ReadTuning,

    #[command(flatten)]
    pub write: WriteTuning,

    #[command(flatten)]
    pub connection: Connection,

    #[command(flatten)]
    pub output: Output,
}

const COPY_EXAMPLES: &str = "\
Examples:
  zkrepl copy --src zk1:2181,zk2:2181 --dst new1:2181 --root /pegasus/c1
  zkrepl copy --src old:2181 --dst new:2181 --root /app --dst-root /app-copy --verify
  zkrepl copy -s old:2181/app -t new:2181/app --update --dry-run
  zkrepl copy --src old:2181 --dst new:2181 --root / --mirror --max-delete 100
  zkrepl copy --src old:2181 --dst new:2181 --root /queues --max-pad 100000
  zkrepl copy --src old:2281 --dst new:2281 --root /app --src-tls-ca ca.pem --dst-tls-ca ca.pem \\
      --dst-tls-cert client.crt --dst-tls-key client.key     (TLS: the secure client ports)
  ZK_PW=... zkrepl copy --src old:2181 --dst new:2181 --root /app \\
      --src-sasl-user alice --src-sasl-password-env ZK_PW    (SASL DIGEST-MD5)

Exit status: 0 copied (and verified with --verify), 1 --verify found differences,
2 error (nothing half-done is left unexplained: re-running converges), 130 interrupted.";

impl CopyArgs {
    /// What the copy does.
    pub fn options(&self) -> zkrepl::Result<CopyOptions> {
        let mut kinds = KindRules::default();
        for g in &self.container {
            kinds.add_container(g)?;
        }
        for t in &self.ttl {
            kinds.add_ttl(t)?;
        }
        let mut o = CopyOptions::default();
        o.mode = if self.mirror {
            Mode::Mirror
        } else if self.update {
            Mode::Update
        } else {
            Mode::Fresh
        };
        o.dry_run = self.dry_run;
        o.acl = match self.acl {
            AclArg::Preserve => AclMode::Preserve,
            AclArg::Open => AclMode::Open,
        };
        o.kinds = kinds;
        o.writer = self.write.writer_options();
        o.max_delete = self.max_delete;
        o.max_pad = self.max_pad;
        o.sequence_counters = !self.no_sequence_counters;
        Ok(o)
    }

    /// The one request handed to the engine.
    pub async fn request(&self) -> zkrepl::Result<CopyRequest> {
        let (src, dst) = self.endpoints.resolve()?;
        let mut options = self.options()?;
        // Node kinds from --snapshot (--container/--ttl globs win over it).
        if let Some(file) = &self.endpoints.snapshot {
            options.kinds.set_snapshot_kinds(snapshot_kinds(file, &src).await?);
        }
        let mut req = CopyRequest::new(src, dst);
        req.timeouts = self.connection.timeouts();
        req.read = self.read.settings();
        req.options = options;
        Ok(req)
    }
}

/// Kinds of the source's containers and TTL nodes from a snapshot file, by
/// path inside the source chroot.
async fn snapshot_kinds(
    file: &std::path::Path,
    src: &Tree,
) -> zkrepl::Result<std::collections::HashMap<String, zkrepl::node::NodeKind>> {
    let file = file.to_path_buf();
    let abs_root = src.absolute_root();
    let chroot = src.hosts.chroot.clone();
    let kinds = tokio::task::spawn_blocking(move || zkrepl::snapshot::read_kinds(&file, &abs_root))
        .await
        .map_err(|e| zkrepl::Error::Usage(format!("reading the snapshot: {e}")))??;
    Ok(kinds
        .into_iter()
        .filter_map(|(p, k)| {
            if chroot == "/" {
                return Some((p, k));
            }
            let inner = p.strip_prefix(chroot.as_str())?;
            match inner {
                "" => Some(("/".to_string(), k)),
                i if i.starts_with('/') => Some((i.to_string(), k)),
                _ => None,
            }
        })
        .collect())
}

pub async fn run(args: CopyArgs) -> zkrepl::Result<Outcome> {
    let req = args.request().await?;
    let progress = Arc::new(Progress::new());
    watch_signals(progress.clone());
    let view = ProgressView::start(progress.clone(), args.output.quiet);
    let result = copy::run(&req, &progress).await;
    view.finish();
    let summary = match result {
        Ok(s) => s,
        Err(f) => return Ok(failed(&args, &req, &f, &progress)),
    };
    let mut verify_report = None;
    if args.verify && !args.dry_run {
        let cancel = progress.cancel_token().clone();
        verify_report = Some(run_verify_after_copy(&req.verify_request(), args.output.quiet, cancel).await?);
    }
    if summary.delete_limit_exceeded {
        eprintln!(
            "zkrepl: warning: the mirror would delete {} nodes, more than --max-delete {}: the real run would refuse and write nothing",
            summary.plan.as_ref().map_or(0, |p| p.deletes),
            args.max_delete.unwrap_or_default()
        );
    }
    if summary.pad_limit_exceeded {
        eprintln!(
            "zkrepl: warning: the copy would write {} counter pads, more than --max-pad {}: the real run would refuse and write nothing",
            summary.pads,
            args.max_pad.unwrap_or_default()
        );
    }
    if args.output.json {
        match &verify_report {
            Some(v) => print_json(&serde_json::json!({ "copy": summary, "verify": v })),
            None => print_json(&summary),
        }
    } else if !args.output.quiet {
        print_summary(&req.src, &req.dst, &summary);
        if let Some(v) = &verify_report {
            println!("verify");
            crate::verify::print_report(v);
        }
    }
    let exit = match verify_report.as_ref().map(|v| v.report.verdict()) {
        Some(zkrepl::verify::Verdict::Different) => Exit::Differences,
        Some(zkrepl::verify::Verdict::Incomplete) => Exit::Error,
        _ => Exit::Ok,
    };
    Ok(Outcome { exit })
}

/// Says what a copy that stopped early did and how to finish it.
fn failed(args: &CopyArgs, req: &CopyRequest, f: &CopyFailure, progress: &Progress) -> Outcome {
    let interrupted = f.cancelled();
    let again = match req.options.mode {
        Mode::Fresh => "the same command with --update",
        _ => "the same command",
    };
    let hint = hint(&f.error, Flags::Pair);
    if interrupted {
        let read = progress.read.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("zkrepl: interrupted after {read} nodes read and {} writes applied", f.applied);
    } else {
        print_error(&f.error, Flags::Pair);
    }
    if f.applied > 0 || interrupted {
        eprintln!("zkrepl: {} writes had been applied to the destination; {again} completes the copy", f.applied);
    }
    let credential = f.credential.credential();
    if f.temporary_acls > 0 {
        eprintln!(
            "zkrepl: {} nodes still carry this run's temporary grant instead of their final ACL (a one-time identity nobody else holds); {again}, adding --dst-auth digest:{credential}, sets them",
            f.temporary_acls
        );
    }
    if args.output.json {
        let run_auth = (f.temporary_acls > 0).then(|| format!("digest:{credential}"));
        print_json(&serde_json::json!({
            "error": f.error.to_string(), "hint": hint, "writes_applied": f.applied,
            "temporary_acls": f.temporary_acls, "run_auth": run_auth,
        }));
    }
    Outcome { exit: if interrupted { Exit::Interrupted } else { Exit::Error } }
}

pub fn print_summary(src: &Tree, dst: &Tree, s: &CopySummary) {
    let what = if s.dry_run { "would copy" } else { "copied" };
    println!(
        "{what} {}{} -> {}{} ({})",
        src.hosts.host_list(),
        src.root,
        dst.hosts.host_list(),
        dst.root,
        match s.mode {
            Mode::Fresh => "into an empty root",
            Mode::Update => "--update",
            Mode::Mirror => "--mirror",
        }
    );
    println!("  nodes read      {:>10}   ({})", s.nodes_read, ByteSize(s.bytes_read));
    println!("  created         {:>10}", s.created);
    println!("  data updated    {:>10}", s.data_updated);
    println!("  ACL updated     {:>10}", s.acl_updated);
    println!("  deleted         {:>10}", s.deleted);
    if s.unchanged > 0 {
        println!("  unchanged       {:>10}", s.unchanged);
    }
    println!("  ephemerals      {:>10}   (skipped)", s.skipped_ephemerals);
    if s.skipped_system > 0 {
        println!("  /zookeeper      {:>10}   (skipped: the server's own)", s.skipped_system);
    }
    if s.vanished > 0 {
        println!("  vanished        {:>10}   (deleted on the source during the copy)", s.vanished);
    }
    if s.kinds.containers + s.kinds.ttl > 0 {
        println!(
            "  kinds           {:>10} containers, {} TTL ({} from the snapshot)",
            s.kinds.containers, s.kinds.ttl, s.kinds.from_snapshot
        );
    }
    if s.padded_parents > 0 {
        let parents = if s.padded_parents == 1 { "parent" } else { "parents" };
        if s.dry_run {
            println!(
                "  seq. counters   {:>10} {parents} behind (would write {} pads, a create and a delete each: {} padding ops)",
                s.padded_parents, s.pads, s.padding_ops
            );
        } else {
            println!(
                "  seq. counters   {:>10} {parents} raised ({} pads, {} padding ops, in {:.2} s)",
                s.padded_parents, s.pads, s.padding_ops, s.padding_seconds
            );
        }
    }
    if !s.dry_run {
        println!(
            "  transactions    {:>10}   ({} reconciled op by op, latency p50 {:.1} ms, p99 {:.1} ms)",
            s.transactions, s.reconciled_transactions, s.latency_p50_ms, s.latency_p99_ms
        );
    }
    for line in s.acl_sources.iter().flat_map(|a| crate::common::acl_source_lines("source", a)) {
        println!("{line}");
    }
    println!("  time            {:>10.2} s ({:.0} nodes/s)", s.seconds, s.nodes_per_sec);
    if let Some(p) = &s.plan {
        for (label, list, n) in [
            ("create", &p.first_creates, p.creates),
            ("update", &p.first_updates, p.data_updates + p.acl_updates),
            ("delete", &p.first_deletes, p.deletes),
        ] {
            if n > 0 {
                println!("  would {label} {n}, first:");
                for path in list {
                    println!("    {path}");
                }
            }
        }
    }
}
