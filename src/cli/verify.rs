//! `zkrepl verify` and `zkrepl digest`.

use clap::Args;
use zkrepl::error::Side;
use zkrepl::read::walk::WalkOptions;
use zkrepl::verify::{self, Verdict, VerifyOptions, VerifyReport};

use super::args::{AclArg, Connection, Endpoints, Location, OneTree, Output, ReadTuning};
use zkrepl::progress::Progress;

use super::common::{ProgressView, human_bytes, open_reader, print_json, watch_signals};
use super::{Exit, Outcome};

#[derive(Args, Debug)]
#[command(after_long_help = VERIFY_EXAMPLES)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub endpoints: Endpoints,

    /// Do not read or compare ACLs (faster: ACLs cost one request per node)
    #[arg(long)]
    pub no_acl: bool,

    /// Compare ephemeral nodes too (ignored on both sides by default)
    #[arg(long)]
    pub include_ephemeral: bool,

    /// List every differing path (default: the first --limit)
    #[arg(long)]
    pub all: bool,

    /// How many differing paths to list
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,

    /// Count destination sequence counters behind the source's as differences
    #[arg(long)]
    pub strict_counters: bool,

    #[command(flatten)]
    pub read: ReadTuning,

    #[command(flatten)]
    pub connection: Connection,

    #[command(flatten)]
    pub output: Output,
}

const VERIFY_EXAMPLES: &str = "\
Report: a summary, then one differing path per line:
  - only in the source   + only in the destination   * data or ACL differs
  < sequence counter behind   ! could not read   ~ changed during verify

Examples:
  zkrepl verify --src zk1:2181 --dst new1:2181 --root /pegasus/c1
  zkrepl verify --src old:2181 --dst new:2181 --root /app --dst-root /app-copy --all --json

Exit status: 0 equal, 1 differences, 2 could not verify (error, or a node could not be read).";

/// Read settings for verify.
pub struct VerifyTuning {
    pub read: ReadTuning,
    pub include_ephemeral: bool,
    pub max_listed: usize,
    pub strict_counters: bool,
}

impl VerifyTuning {
    pub fn from_read(read: &ReadTuning) -> VerifyTuning {
        VerifyTuning { read: read.clone(), include_ephemeral: false, max_listed: 20, strict_counters: false }
    }

    fn options(&self) -> VerifyOptions {
        VerifyOptions {
            walk: WalkOptions { batch: self.read.read_batch, window: self.read.read_window, ..WalkOptions::default() },
            include_ephemeral: self.include_ephemeral,
            max_listed: self.max_listed,
            strict_counters: self.strict_counters,
        }
    }
}

pub async fn verify_between(
    src: &Location,
    dst: &Location,
    conn: &Connection,
    tuning: &VerifyTuning,
    acl: bool,
    quiet: bool,
    signals: bool,
) -> zkrepl::Result<VerifyReport> {
    let progress = std::sync::Arc::new(Progress::new());
    progress.set_phase("connecting");
    if signals {
        watch_signals(progress.clone());
    }
    let view = ProgressView::start(progress.clone(), quiet);
    let n = tuning.read.read_sessions;
    let result = async {
        let (s, d) = futures::try_join!(
            open_reader(Side::Source, src, conn, &tuning.read, acl, n),
            open_reader(Side::Destination, dst, conn, &tuning.read, acl, n),
        )?;
        verify::run(&s, &d, &tuning.options(), &progress).await
    }
    .await;
    view.finish();
    result
}

/// Verify right after a copy: ACLs are compared unless the copy replaced them.
pub async fn run_verify_after_copy(
    src: &Location,
    dst: &Location,
    conn: &Connection,
    tuning: &VerifyTuning,
    acl: AclArg,
    quiet: bool,
) -> zkrepl::Result<VerifyReport> {
    verify_between(src, dst, conn, tuning, matches!(acl, AclArg::Preserve), quiet, false).await
}

pub async fn run(args: VerifyArgs) -> zkrepl::Result<Outcome> {
    let (src, dst) = args.endpoints.resolve()?;
    let tuning = VerifyTuning {
        read: args.read.clone(),
        include_ephemeral: args.include_ephemeral,
        max_listed: if args.all || args.output.json { usize::MAX } else { args.limit },
        strict_counters: args.strict_counters,
    };
    let report = verify_between(&src, &dst, &args.connection, &tuning, !args.no_acl, args.output.quiet, true).await?;
    if args.output.json {
        print_json(&report);
    } else if !args.output.quiet {
        println!("verify {}{} against {}{}", src.hosts.host_list(), src.root, dst.hosts.host_list(), dst.root);
        print_report(&report, if args.all { usize::MAX } else { args.limit });
    }
    Ok(Outcome {
        exit: match report.verdict() {
            Verdict::Equal => Exit::Ok,
            Verdict::Different => Exit::Differences,
            Verdict::Incomplete => Exit::Error,
        },
    })
}

pub fn print_report(r: &VerifyReport, limit: usize) {
    let verdict = match r.verdict() {
        Verdict::Equal => "EQUAL",
        Verdict::Different => "DIFFERENT",
        Verdict::Incomplete => "NOT VERIFIED (unreadable nodes)",
    };
    println!("  result          {verdict}");
    println!("  source          {:>10} nodes ({})", r.src_nodes, human_bytes(r.src_bytes));
    println!("  destination     {:>10} nodes ({})", r.dst_nodes, human_bytes(r.dst_bytes));
    println!("  compared        {:>10}   (data{})", r.compared, if r.acl_compared { " and ACL" } else { " only" });
    let c = &r.counts;
    for (label, n) in [
        ("- missing on dst", c.missing_on_dst),
        ("+ extra on dst", c.extra_on_dst),
        ("* data differs", c.data_differs),
        ("* ACL differs", c.acl_differs),
        ("< counter behind", c.counter_behind),
        ("! unreadable", c.unreadable),
        ("~ changed", c.changed),
    ] {
        if n > 0 {
            println!("  {label:<16}{n:>10}");
        }
    }
    if r.ephemerals_ignored > 0 {
        println!("  ephemerals      {:>10}   (ignored)", r.ephemerals_ignored);
    }
    println!("  source digest   {}", r.src_digest.as_deref().unwrap_or("(incomplete)"));
    println!("  dest. digest    {}", r.dst_digest.as_deref().unwrap_or("(incomplete)"));
    println!("  time            {:>10.2} s ({:.0} nodes/s per side)", r.seconds, r.nodes_per_sec_per_side);
    for d in r.differences.iter().take(limit) {
        if d.detail.is_empty() {
            println!("{} {}", d.class.symbol(), d.path);
        } else {
            println!("{} {}  ({})", d.class.symbol(), d.path, d.detail);
        }
    }
    let hidden = r.unlisted + r.differences.len().saturating_sub(limit) as u64;
    if hidden > 0 {
        println!("... and {hidden} more (--all lists every one)");
    }
}

#[derive(Args, Debug)]
#[command(
    after_long_help = "A node's digest is BLAKE3 over its path relative to the root, its data, its ACL (canonical order)\nand its children's digests: equal root digests mean equal trees. Two digests of the same tree taken\nat different times tell whether it changed; the largest mzxid and pzxid say roughly when.\n\nExamples:\n  zkrepl digest --zk zk1:2181 --root /pegasus/c1\n  zkrepl digest --zk zk1:2181/chroot --root /app --auth digest:admin:secret --json\n\nExit status: 0 digest computed, 2 error or unreadable nodes (named, with what to do)."
)]
pub struct DigestArgs {
    #[command(flatten)]
    pub tree: OneTree,

    /// Leave ACLs out of the digest (faster)
    #[arg(long)]
    pub no_acl: bool,

    /// Include ephemeral nodes
    #[arg(long)]
    pub include_ephemeral: bool,

    #[command(flatten)]
    pub read: ReadTuning,

    #[command(flatten)]
    pub connection: Connection,

    #[command(flatten)]
    pub output: Output,
}

pub async fn run_digest(args: DigestArgs) -> zkrepl::Result<Outcome> {
    let loc = args.tree.resolve()?;
    let reader =
        open_reader(Side::Source, &loc, &args.connection, &args.read, !args.no_acl, args.read.read_sessions).await?;
    let walk = WalkOptions {
        batch: args.read.read_batch,
        window: args.read.read_window,
        include_ephemeral: args.include_ephemeral,
        ..WalkOptions::default()
    };
    let progress = std::sync::Arc::new(Progress::new());
    watch_signals(progress.clone());
    let view = ProgressView::start(progress.clone(), args.output.quiet);
    let d = verify::digest(&reader, &walk, &progress).await;
    view.finish();
    let d = d?;
    if args.output.json {
        print_json(&d);
    } else if !args.output.quiet {
        println!("digest   {}", d.digest.as_deref().unwrap_or("(incomplete: unreadable nodes)"));
        println!("root     {}{}", loc.hosts.host_list(), d.root);
        println!(
            "nodes    {} ({}), ACL {}",
            d.nodes,
            human_bytes(d.bytes),
            if d.acl_included { "included" } else { "not included" }
        );
        println!("mzxid    0x{:x} (largest)", d.max_mzxid);
        println!("pzxid    0x{:x} (largest)", d.max_pzxid);
        if d.vanished > 0 {
            println!("changed  {} nodes vanished while being read", d.vanished);
        }
        for (p, why) in &d.unreadable_paths {
            println!("! {p}  ({why})");
        }
        if !d.unreadable_paths.is_empty() {
            println!("(pass --auth digest:user:password of an id allowed to read them, or --no-acl for hidden ACLs)");
        }
    }
    Ok(Outcome { exit: if d.digest.is_some() { Exit::Ok } else { Exit::Error } })
}
