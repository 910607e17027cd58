//! `zkrepl verify` and `zkrepl digest`.

use bytesize::ByteSize;
use std::io::{IsTerminal, Write};

use clap::Args;
use indicatif::ProgressBar;
use zkrepl::digest::DigestRequest;
use zkrepl::verify::{self, DiffSink, Difference, FirstDifferences, Verdict, VerifyReport, VerifyRequest};

use crate::args::{Connection, Endpoints, OneTree, Output, ReadTuning};
use zkrepl::{CancellationToken, Progress};

use crate::common::{ProgressView, before_quit, print_json, watch_signals};
use crate::outcome::{Exit, Flags, Outcome, hint};

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

    /// List every differing path, each printed as it is found (default: the first --limit)
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
Report: one differing path per line, printed as it is found, then a summary:
  - only in the source   + only in the destination   * data or ACL differs
  < sequence counter behind   ! could not read   ~ changed during verify
With --json: one JSON document whose \"differences\" array is written element by element
(one a line) as they are found; the counts, digests and timings follow it, once the walk ends.
Neither output holds the differences in memory. A verify that fails or is interrupted (Ctrl-C,
SIGTERM) still writes one whole JSON document, with an \"error\" field; a second Ctrl-C quits at
once, leaving what was written so far.

Examples:
  zkrepl verify --src zk1:2181 --dst new1:2181 --root /pegasus/c1
  zkrepl verify --src old:2181 --dst new:2181 --root /app --dst-root /app-copy --all --json

Exit status: 0 equal, 1 differences, 2 could not verify (error, or a node could not be read).";

/// Paths listed after a copy's summary.
const COPY_VERIFY_LISTED: usize = 20;

/// Runs `req`; `sink` gets each difference as it is found, and the
/// progress bar (when one is drawn) so that what it prints does not cross
/// the bar.
/// `cancel` stops it (a copy's token, for the verify after it); without
/// one, interrupts do.
pub async fn verify_between(
    req: &VerifyRequest,
    quiet: bool,
    cancel: Option<CancellationToken>,
    sink: &mut dyn Sink,
) -> zkrepl::Result<VerifyReport> {
    let given = cancel.is_some();
    let progress = std::sync::Arc::new(Progress::with_cancel(cancel.unwrap_or_default()));
    if !given {
        watch_signals(progress.clone());
    }
    let view = ProgressView::start(progress.clone(), quiet);
    sink.set_bar(view.bar());
    let result = verify::run(req, &progress, sink.as_diff_sink()).await;
    view.finish();
    result
}

/// A verify right after a copy, with its first differences (printed after
/// the copy's summary).
pub struct CopyVerify {
    pub report: VerifyReport,
    pub first: FirstDifferences,
}

impl serde::Serialize for CopyVerify {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Both<'a> {
            #[serde(flatten)]
            report: &'a VerifyReport,
            #[serde(flatten)]
            first: &'a FirstDifferences,
        }
        Both { report: &self.report, first: &self.first }.serialize(s)
    }
}

/// Verify right after a copy (see [`zkrepl::copy::CopyRequest::verify_request`]).
pub async fn run_verify_after_copy(
    req: &VerifyRequest,
    quiet: bool,
    cancel: CancellationToken,
) -> zkrepl::Result<CopyVerify> {
    let mut first = FirstDifferences::new(COPY_VERIFY_LISTED);
    let report = verify_between(req, quiet, Some(cancel), &mut first).await?;
    Ok(CopyVerify { report, first })
}

/// A difference sink of the command line.
pub trait Sink {
    /// The progress bar being drawn, if any.
    fn set_bar(&mut self, _bar: Option<ProgressBar>) {}
    fn as_diff_sink(&mut self) -> &mut dyn DiffSink;
}

impl Sink for FirstDifferences {
    fn as_diff_sink(&mut self) -> &mut dyn DiffSink {
        self
    }
}

/// Lines on stdout, written as they come. When stdout and the progress bar
/// share a terminal, the bar is hidden while a line is written.
/// What is buffered is written out before a second interrupt ends the
/// process.
struct Lines {
    out: std::sync::Arc<std::sync::Mutex<std::io::BufWriter<std::io::Stdout>>>,
    bar: Option<ProgressBar>,
}

impl Lines {
    fn new() -> Lines {
        let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::BufWriter::new(std::io::stdout())));
        let buffered = out.clone();
        before_quit(move || {
            if let Ok(mut w) = buffered.try_lock() {
                let _ = w.flush();
            }
        });
        Lines { out, bar: None }
    }

    fn write(&mut self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let out = &mut *out;
        let result = match &self.bar {
            Some(bar) => bar.suspend(|| out.write_all(text.as_bytes()).and_then(|()| out.flush())),
            None => out.write_all(text.as_bytes()),
        };
        result.unwrap_or_else(|e| output_failed(e));
    }

    fn flush(&mut self) {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).flush().unwrap_or_else(|e| output_failed(e));
    }
}

/// stdout is gone: a reader that stopped early (`| head`) ends the run
/// quietly, as other command-line tools do; any other failure is an error.
fn output_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(141);
    }
    eprintln!("zkrepl: error: writing the report: {e}");
    std::process::exit(Exit::Error as i32);
}

/// The text report: a header, then each differing path as it is found (the
/// first `limit`), then the summary.
struct TextReport {
    lines: Lines,
    header: String,
    started: bool,
    limit: usize,
    listed: u64,
    unlisted: u64,
    quiet: bool,
}

impl TextReport {
    fn start(&mut self) {
        if !self.started {
            self.started = true;
            let header = std::mem::take(&mut self.header);
            self.lines.write(&header);
        }
    }

    fn finish(&mut self, r: &VerifyReport) {
        if self.quiet {
            return;
        }
        self.start();
        self.lines.write(&summary(r));
        if self.unlisted > 0 {
            self.lines.write(&format!("... and {} more (--all lists every one)\n", self.unlisted));
        }
        self.lines.flush();
    }
}

impl DiffSink for TextReport {
    fn difference(&mut self, d: Difference) {
        if self.quiet {
            return;
        }
        if self.listed >= self.limit as u64 {
            self.unlisted += 1;
            return;
        }
        self.start();
        self.listed += 1;
        self.lines.write(&difference_line(&d));
    }
}

impl Sink for TextReport {
    fn set_bar(&mut self, bar: Option<ProgressBar>) {
        self.lines.bar = bar.filter(|_| std::io::stdout().is_terminal());
    }

    fn as_diff_sink(&mut self) -> &mut dyn DiffSink {
        self
    }
}

/// The JSON report, streamed: `{"differences": [` opens it at the first
/// difference, each difference follows on a line of its own as it is found,
/// and the other fields of the report close it once the walk is done. A
/// verify that fails or is interrupted, before its first difference or
/// after, writes or closes the document with an `"error"` field, so stdout
/// is one whole JSON document (unless a second interrupt ends the process
/// at once).
struct JsonReport {
    lines: Lines,
    opened: bool,
    any: bool,
}

impl JsonReport {
    fn open(&mut self) {
        if !self.opened {
            self.opened = true;
            self.lines.write("{\n  \"differences\": [");
        }
    }

    /// Closes the document with the fields of `rest`, an object, in its
    /// own order.
    fn finish<T: serde::Serialize>(&mut self, rest: &T) {
        self.open();
        self.lines.write(if self.any { "\n  ],\n  \"unlisted\": 0" } else { "],\n  \"unlisted\": 0" });
        let rest = serde_json::to_string_pretty(rest).expect("serializable");
        let fields = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')).expect("an object").trim_end();
        if !fields.trim().is_empty() {
            self.lines.write(",");
            self.lines.write(fields);
        }
        self.lines.write("\n}\n");
        self.lines.flush();
    }

    fn failed(&mut self, e: &zkrepl::Error) {
        self.finish(&serde_json::json!({ "error": e.to_string(), "hint": hint(e, Flags::Pair) }));
    }
}

impl DiffSink for JsonReport {
    fn difference(&mut self, d: Difference) {
        self.open();
        let line = serde_json::to_string(&d).expect("serializable");
        self.lines.write(if self.any { ",\n    " } else { "\n    " });
        self.lines.write(&line);
        self.any = true;
    }
}

impl Sink for JsonReport {
    fn set_bar(&mut self, bar: Option<ProgressBar>) {
        self.lines.bar = bar.filter(|_| std::io::stdout().is_terminal());
    }

    fn as_diff_sink(&mut self) -> &mut dyn DiffSink {
        self
    }
}

pub async fn run(args: VerifyArgs) -> zkrepl::Result<Outcome> {
    let mut json = JsonReport { lines: Lines::new(), opened: false, any: false };
    let snapshots = args.endpoints.snapshot.is_some() || args.endpoints.dst_snapshot.is_some();
    let resolved = if args.no_acl && snapshots {
        Err(crate::args::usage(
            "--snapshot and --dst-snapshot give ACLs, which --no-acl does not read: give one or the other",
        ))
    } else {
        args.endpoints.resolve()
    };
    let (src, dst) = match resolved {
        Ok(both) => both,
        Err(e) => {
            if args.output.json {
                json.failed(&e);
            }
            return Err(e);
        }
    };
    let header =
        format!("verify {}{} against {}{}\n", src.hosts.host_list(), src.root, dst.hosts.host_list(), dst.root);
    let mut req = VerifyRequest::new(src, dst);
    req.timeouts = args.connection.timeouts();
    req.read = args.read.settings();
    req.acl = !args.no_acl;
    req.include_ephemeral = args.include_ephemeral;
    req.strict_counters = args.strict_counters;
    let mut text = TextReport {
        lines: Lines::new(),
        header,
        started: false,
        limit: if args.all { usize::MAX } else { args.limit },
        listed: 0,
        unlisted: 0,
        quiet: args.output.quiet,
    };
    let sink: &mut dyn Sink = if args.output.json { &mut json } else { &mut text };
    let result = verify_between(&req, args.output.quiet, None, sink).await;
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            if args.output.json {
                json.failed(&e);
            }
            return Err(e);
        }
    };
    if args.output.json {
        json.finish(&report);
    } else {
        text.finish(&report);
    }
    Ok(Outcome {
        exit: match report.verdict() {
            Verdict::Equal => Exit::Ok,
            Verdict::Different => Exit::Differences,
            Verdict::Incomplete => Exit::Error,
        },
    })
}

fn difference_line(d: &Difference) -> String {
    if d.detail.is_empty() {
        format!("{} {}\n", d.class.symbol(), d.path)
    } else {
        format!("{} {}  ({})\n", d.class.symbol(), d.path, d.detail)
    }
}

/// A copy's verify: the summary, then its first differences.
pub fn print_report(v: &CopyVerify) {
    print!("{}", summary(&v.report));
    for d in &v.first.listed {
        print!("{}", difference_line(d));
    }
    if v.first.unlisted > 0 {
        println!("... and {} more (verify --all lists every one)", v.first.unlisted);
    }
}

/// The summary block of a verify report.
fn summary(r: &VerifyReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    macro_rules! line {
        ($($t:tt)*) => { writeln!(s, $($t)*).expect("a String takes every write") };
    }
    let verdict = match r.verdict() {
        Verdict::Equal => "EQUAL",
        Verdict::Different => "DIFFERENT",
        Verdict::Incomplete => "NOT VERIFIED (unreadable nodes)",
    };
    line!("  result          {verdict}");
    line!("  source          {:>10} nodes ({})", r.src_nodes, ByteSize(r.src_bytes));
    line!("  destination     {:>10} nodes ({})", r.dst_nodes, ByteSize(r.dst_bytes));
    line!("  compared        {:>10}   (data{})", r.compared, if r.acl_compared { " and ACL" } else { " only" });
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
            line!("  {label:<16}{n:>10}");
        }
    }
    if c.unreadable > 0 {
        line!(
            "  (unreadable: pass --src-auth / --dst-auth digest:USER:PASSWORD of an id allowed to read them, with ADMIN where ACLs are hidden)"
        );
    }
    if r.ephemerals_ignored > 0 {
        line!("  ephemerals      {:>10}   (ignored)", r.ephemerals_ignored);
    }
    for (side, a) in [("source", &r.src_acl_sources), ("dest.", &r.dst_acl_sources)] {
        for l in a.iter().flat_map(|a| crate::common::acl_source_lines(side, a)) {
            line!("{l}");
        }
    }
    line!("  source digest   {}", r.src_digest.as_deref().unwrap_or("(incomplete)"));
    line!("  dest. digest    {}", r.dst_digest.as_deref().unwrap_or("(incomplete)"));
    line!("  time            {:>10.2} s ({:.0} nodes/s per side)", r.seconds, r.nodes_per_sec_per_side);
    s
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
    let tree = args.tree.resolve()?;
    let mut req = DigestRequest::new(tree);
    req.timeouts = args.connection.timeouts();
    req.read = args.read.settings();
    req.acl = !args.no_acl;
    req.include_ephemeral = args.include_ephemeral;
    let progress = std::sync::Arc::new(Progress::new());
    watch_signals(progress.clone());
    let view = ProgressView::start(progress.clone(), args.output.quiet);
    let d = zkrepl::digest::run(&req, &progress).await;
    view.finish();
    let d = d?;
    if args.output.json {
        print_json(&d);
    } else if !args.output.quiet {
        println!("digest   {}", d.digest.as_deref().unwrap_or("(incomplete: unreadable nodes)"));
        println!("root     {}{}", req.tree.hosts.host_list(), d.root);
        println!(
            "nodes    {} ({}), ACL {}",
            d.nodes,
            ByteSize(d.bytes),
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
            println!(
                "(pass an identity allowed to read them: --auth digest:user:password, --sasl-user, or --tls-cert and --tls-key; or --no-acl for hidden ACLs)"
            );
        }
    }
    Ok(Outcome { exit: if d.digest.is_some() { Exit::Ok } else { Exit::Error } })
}
