//! Command-line arguments shared by several commands.

use std::time::Duration;

use clap::{Args, ValueEnum};

use zkrepl::copy::kinds::parse_duration;
use zkrepl::zk::target::{Auth, Hosts, parse_zkcopy_location};
use zkrepl::{ReadSettings, Timeouts, Tree};

/// The longest timeout: what the protocol carries for a session timeout (a
/// Java int of milliseconds), about 24.8 days.
pub const MAX_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// A timeout on the command line, 1 ms to [`MAX_TIMEOUT`].
pub fn timeout(s: &str) -> Result<Duration, String> {
    parse_duration(s, MAX_TIMEOUT).map_err(|e| e.to_string())
}

/// A Pegasus meta level that can be set (stopped, blind, freezed, steady,
/// lively), checked before anything is sent.
pub fn level(s: &str) -> Result<zkrepl_pegasus::Level, String> {
    s.parse::<zkrepl_pegasus::Level>().map_err(|e| e.to_string())
}

/// Where the source and destination trees are.
#[derive(Args, Debug, Clone)]
pub struct Endpoints {
    /// Source ensemble: connect string with optional chroot, e.g. zk1:2181,zk2:2181[/chroot]
    #[arg(long, value_name = "HOSTS", required_unless_present = "source")]
    pub src: Option<String>,

    /// Destination ensemble: connect string with optional chroot
    #[arg(long, value_name = "HOSTS", required_unless_present = "target")]
    pub dst: Option<String>,

    /// Root of the subtree on the source (the root node itself is included)
    #[arg(long, value_name = "PATH")]
    pub root: Option<String>,

    /// Root on the destination [default: same as --root]
    #[arg(long, value_name = "PATH")]
    pub dst_root: Option<String>,

    /// zkcopy style source: HOST:PORT[,HOST:PORT]/path (the path is the root)
    #[arg(short = 's', long, value_name = "HOSTS/PATH", conflicts_with_all = ["src", "root"])]
    pub source: Option<String>,

    /// zkcopy style destination: HOST:PORT[,HOST:PORT]/path
    #[arg(short = 't', long, value_name = "HOSTS/PATH", conflicts_with_all = ["dst", "dst_root"])]
    pub target: Option<String>,

    /// Credentials for the source, scheme:credential (e.g. digest:user:password); repeatable
    #[arg(long, value_name = "SCHEME:CRED")]
    pub src_auth: Vec<String>,

    /// Credentials for the destination; repeatable
    #[arg(long, value_name = "SCHEME:CRED")]
    pub dst_auth: Vec<String>,

    /// A snapshot file of the source ensemble (dataDir/version-2/snapshot.*, plain, .gz or .snappy):
    /// a node's ACL is taken from it where the live stat shows the same node and no setACL since,
    /// every other node's read live (copy also takes node kinds from it)
    #[arg(long, value_name = "PATH", alias = "kinds-from-snapshot")]
    pub snapshot: Option<std::path::PathBuf>,

    /// A snapshot file of the destination ensemble, for its ACLs likewise
    #[arg(long, value_name = "PATH")]
    pub dst_snapshot: Option<std::path::PathBuf>,
}

impl Endpoints {
    pub fn resolve(&self) -> zkrepl::Result<(Tree, Tree)> {
        let (src_hosts, src_root) = match (&self.source, &self.src) {
            (Some(s), _) => parse_zkcopy_location(s)?,
            (None, Some(h)) => (Hosts::parse(h)?, self.root.clone().ok_or_else(|| usage("--root is required"))?),
            (None, None) => {
                return Err(usage("give --src HOSTS --root PATH (or --source HOST:PORT/PATH)"));
            }
        };
        let (dst_hosts, dst_root) = match (&self.target, &self.dst) {
            (Some(t), _) => parse_zkcopy_location(t)?,
            (None, Some(h)) => (Hosts::parse(h)?, self.dst_root.clone().unwrap_or_else(|| src_root.clone())),
            (None, None) => return Err(usage("give --dst HOSTS (or --target HOST:PORT/PATH)")),
        };
        zkrepl::zk::path::validate(&src_root)?;
        zkrepl::zk::path::validate(&dst_root)?;
        let auth = |v: &[String]| v.iter().map(|a| Auth::parse(a)).collect::<zkrepl::Result<Vec<_>>>();
        Ok((
            Tree { hosts: src_hosts, root: src_root, auth: auth(&self.src_auth)?, snapshot: self.snapshot.clone() },
            Tree { hosts: dst_hosts, root: dst_root, auth: auth(&self.dst_auth)?, snapshot: self.dst_snapshot.clone() },
        ))
    }
}

pub fn usage(msg: &str) -> zkrepl::Error {
    zkrepl::Error::Usage(msg.to_string())
}

/// One tree (digest, gen).
#[derive(Args, Debug, Clone)]
pub struct OneTree {
    /// Ensemble: connect string with optional chroot
    #[arg(long, value_name = "HOSTS")]
    pub zk: String,

    /// Root of the tree
    #[arg(long, value_name = "PATH")]
    pub root: String,

    /// Credentials, scheme:credential; repeatable
    #[arg(long, value_name = "SCHEME:CRED")]
    pub auth: Vec<String>,
}

impl OneTree {
    pub fn resolve(&self) -> zkrepl::Result<Tree> {
        let mut tree = Tree::new(&self.zk, &self.root)?;
        for a in &self.auth {
            tree = tree.with_auth(Auth::parse(a)?);
        }
        Ok(tree)
    }
}

/// Connection behaviour.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Give up connecting (or reconnecting) after this long
    ///
    /// DURATION is a number and a unit, several may follow one another: 500ms, 30s, 10m, 2h, 7d,
    /// 1h30m, '1h 30m', 1.5h (units ms, s, m, h, d, w, or sec, min, hours...; whole milliseconds;
    /// any other unit, e.g. M, y, us, is refused).
    ///
    /// Timeouts go from 1ms to 24days 20h 31m 23s 647ms (2^31 - 1 ms, the longest session timeout
    /// ZooKeeper takes).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = timeout)]
    pub timeout: Duration,

    /// Session timeout asked of the servers (a DURATION, as for --timeout)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = timeout)]
    pub session_timeout: Duration,

    /// Give up an operation whose requests keep failing (connection lost) for this long (a DURATION, as for --timeout)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = timeout)]
    pub retry_timeout: Duration,
}

impl Connection {
    pub fn timeouts(&self) -> Timeouts {
        Timeouts { connect: self.timeout, session: self.session_timeout, retry: self.retry_timeout }
    }
}

/// Read tuning.
#[derive(Args, Debug, Clone)]
pub struct ReadTuning {
    /// Nodes per read request
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub read_batch: usize,

    /// Read requests in flight per tree
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub read_window: usize,

    /// Sessions per tree for reads (getACL has no batched form: more sessions, more ACL reads per second)
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub read_sessions: usize,

    /// Use pipelined single reads even if the server supports multiRead (ZooKeeper >= 3.6)
    #[arg(long)]
    pub no_multi_read: bool,
}

impl ReadTuning {
    pub fn settings(&self) -> ReadSettings {
        ReadSettings {
            sessions: self.read_sessions,
            batch: self.read_batch,
            window: self.read_window,
            multi_read: !self.no_multi_read,
        }
    }
}

/// Write tuning.
#[derive(Args, Debug, Clone)]
pub struct WriteTuning {
    /// Most operations in one multi() transaction
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub batch_ops: usize,

    /// Most bytes in one multi() transaction
    #[arg(long, value_name = "BYTES", default_value_t = 512 * 1024)]
    pub batch_bytes: usize,

    /// Transactions in flight
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub window: usize,

    /// Largest request the destination accepts: its jute.maxbuffer (default 0xfffff)
    #[arg(long, value_name = "BYTES", default_value_t = 0xfffff)]
    pub max_request_bytes: usize,
}

impl WriteTuning {
    pub fn writer_options(&self) -> zkrepl::write::WriterOptions {
        zkrepl::write::WriterOptions {
            limits: zkrepl::write::BatchLimits { max_ops: self.batch_ops.max(1), max_bytes: self.batch_bytes },
            window: self.window,
            max_request_bytes: self.max_request_bytes,
        }
    }
}

/// Output.
#[derive(Args, Debug, Clone)]
pub struct Output {
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,

    /// No progress bar and no summary (errors and --json still print)
    #[arg(short, long)]
    pub quiet: bool,
}

/// ACLs a copy writes.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AclArg {
    /// Write each node with the source's ACL
    Preserve,
    /// Write every node with OPEN_ACL_UNSAFE (world:anyone, all permissions)
    Open,
}
