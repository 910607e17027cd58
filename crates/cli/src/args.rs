//! Command-line arguments shared by several commands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};

use zkrepl::copy::kinds::parse_duration;
use zkrepl::zk::secure::{Access, Sasl, Tls};
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

    #[command(flatten, next_help_heading = "Source TLS and SASL")]
    pub src_secure: SrcSecure,

    #[command(flatten, next_help_heading = "Destination TLS and SASL")]
    pub dst_secure: DstSecure,
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
        let src_access = self.src_secure.access(&self.src_auth)?;
        let dst_access = self.dst_secure.access(&self.dst_auth)?;
        Ok((
            Tree { hosts: src_hosts, root: src_root, access: src_access, snapshot: self.snapshot.clone() },
            Tree { hosts: dst_hosts, root: dst_root, access: dst_access, snapshot: self.dst_snapshot.clone() },
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

    #[command(flatten, next_help_heading = "TLS and SASL")]
    pub secure: OneSecure,
}

impl OneTree {
    pub fn resolve(&self) -> zkrepl::Result<Tree> {
        Ok(Tree::new(&self.zk, &self.root)?.with_access(self.secure.access(&self.auth)?))
    }
}

/// How the Pegasus commands reach ZooKeeper: the ensemble the cluster runs
/// on (the old one, a migration's source: `--src-*`) and the one it moves
/// to (`--dst-*`).
#[derive(Args, Debug, Clone, Default)]
pub struct ZkSecurity {
    /// Credentials for the cluster's (old) ensemble, scheme:credential (e.g. digest:user:password); repeatable
    #[arg(long, value_name = "SCHEME:CRED")]
    pub src_auth: Vec<String>,

    /// Credentials for the new ensemble; repeatable
    #[arg(long, value_name = "SCHEME:CRED")]
    pub dst_auth: Vec<String>,

    #[command(flatten, next_help_heading = "The cluster's (old) ensemble: TLS and SASL")]
    pub src_secure: SrcSecure,

    #[command(flatten, next_help_heading = "The new ensemble: TLS and SASL")]
    pub dst_secure: DstSecure,
}

impl ZkSecurity {
    pub fn zk_access(&self) -> zkrepl::Result<zkrepl_pegasus::zk::ZkAccess> {
        Ok(zkrepl_pegasus::zk::ZkAccess {
            old: self.src_secure.access(&self.src_auth)?,
            new: self.dst_secure.access(&self.dst_auth)?,
        })
    }
}

/// How `pegasus status` reaches the cluster's ensemble.
#[derive(Args, Debug, Clone, Default)]
pub struct ClusterZkSecurity {
    /// Credentials for the cluster's ensemble, scheme:credential; repeatable
    #[arg(long, value_name = "SCHEME:CRED")]
    pub src_auth: Vec<String>,

    #[command(flatten, next_help_heading = "The cluster's ensemble: TLS and SASL")]
    pub src_secure: SrcSecure,
}

/// A SASL mechanism on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SaslArg {
    /// User and password (the servers' JAAS Server section lists the users)
    #[value(name = "digest-md5")]
    DigestMd5,
    /// Kerberos: the ticket from the environment (KRB5CCNAME, or a keytab in KRB5_CLIENT_KTNAME)
    Gssapi,
}

/// TLS and SASL options of one ensemble as given, whatever their prefix.
pub struct SecureArgs<'a> {
    /// `--src-`, `--dst-` or `--`: how the options are spelled.
    pub prefix: &'static str,
    pub tls_ca: Option<&'a Path>,
    pub tls_cert: Option<&'a Path>,
    pub tls_key: Option<&'a Path>,
    pub tls_server_name: Option<&'a str>,
    pub sasl: Option<SaslArg>,
    pub sasl_user: Option<&'a str>,
    pub sasl_password_file: Option<&'a Path>,
    pub sasl_password_env: Option<&'a str>,
    pub sasl_service: &'a str,
    pub sasl_host: Option<&'a str>,
}

impl SecureArgs<'_> {
    /// The credentials, TLS and SASL these options and `auth` describe,
    /// files read and checked.
    pub fn access(&self, auth: &[String]) -> zkrepl::Result<Access> {
        let p = self.prefix;
        let auth = auth.iter().map(|a| Auth::parse(a)).collect::<zkrepl::Result<Vec<_>>>()?;
        let tls = match self.tls_ca {
            None => None,
            Some(ca) => {
                let identity = match (self.tls_cert, self.tls_key) {
                    (Some(c), Some(k)) => Some((c, k)),
                    (None, None) => None,
                    _ => return Err(usage(&format!("give both {p}tls-cert and {p}tls-key, or neither"))),
                };
                Some(Tls::load(ca, identity, self.tls_server_name)?)
            }
        };
        let mechanism = match (self.sasl, self.sasl_user) {
            (Some(m), _) => Some(m),
            (None, Some(_)) => Some(SaslArg::DigestMd5),
            (None, None) => None,
        };
        let sasl = match mechanism {
            None => {
                if self.sasl_password_file.is_some() || self.sasl_password_env.is_some() {
                    return Err(usage(&format!("a SASL password needs {p}sasl-user")));
                }
                None
            }
            Some(SaslArg::DigestMd5) => {
                if self.sasl_host.is_some() {
                    return Err(usage(&format!("{p}sasl-host is for GSSAPI (Kerberos): give {p}sasl gssapi")));
                }
                let user = self.sasl_user.ok_or_else(|| usage(&format!("{p}sasl digest-md5 needs {p}sasl-user")))?;
                Some(Sasl::DigestMd5 { user: user.to_string(), password: self.password()? })
            }
            Some(SaslArg::Gssapi) => {
                if self.sasl_user.is_some() || self.sasl_password_file.is_some() || self.sasl_password_env.is_some() {
                    return Err(usage(&format!(
                        "{p}sasl gssapi takes the principal from the Kerberos ticket: drop {p}sasl-user and the password"
                    )));
                }
                Some(Sasl::Gssapi { service: self.sasl_service.to_string(), host: self.sasl_host.map(str::to_string) })
            }
        };
        Ok(Access { auth, tls, sasl })
    }

    /// The SASL password: from a file (one trailing line break dropped) or
    /// an environment variable, never from the command line itself.
    fn password(&self) -> zkrepl::Result<String> {
        let p = self.prefix;
        match (self.sasl_password_file, self.sasl_password_env) {
            (Some(f), None) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| usage(&format!("cannot read the SASL password file {}: {e}", f.display())))?;
                let pw = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
                if pw.is_empty() {
                    return Err(usage(&format!("the SASL password file {} is empty", f.display())));
                }
                Ok(pw.to_string())
            }
            (None, Some(var)) => match std::env::var(var) {
                Ok(pw) if !pw.is_empty() => Ok(pw),
                Ok(_) => Err(usage(&format!("the environment variable {var} ({p}sasl-password-env) is empty"))),
                Err(_) => Err(usage(&format!("the environment variable {var} ({p}sasl-password-env) is not set"))),
            },
            (None, None) => Err(usage(&format!(
                "{p}sasl-user needs its password from {p}sasl-password-file FILE or {p}sasl-password-env VAR (not on the command line, where other users see it)"
            ))),
            (Some(_), Some(_)) => Err(usage(&format!("give {p}sasl-password-file or {p}sasl-password-env, not both"))),
        }
    }
}

/// The TLS and SASL options of one ensemble, spelled with a prefix.
macro_rules! secure_args {
    ($name:ident, $p:literal, $of:literal) => {
        #[derive(Args, Debug, Clone, Default)]
        pub struct $name {
            #[arg(long = concat!($p, "tls-ca"), id = concat!($p, "tls-ca"), value_name = "PEM",
                help = concat!("TLS to ", $of, ": the CA certificates (PEM) the servers' certificates must chain to. Turns TLS on: give the servers' secure client port"))]
            pub tls_ca: Option<PathBuf>,

            #[arg(long = concat!($p, "tls-cert"), id = concat!($p, "tls-cert"), value_name = "PEM",
                requires = concat!($p, "tls-ca"), requires = concat!($p, "tls-key"),
                help = "A client certificate (PEM) to present; the servers know the session as x509:<its subject>")]
            pub tls_cert: Option<PathBuf>,

            #[arg(long = concat!($p, "tls-key"), id = concat!($p, "tls-key"), value_name = "PEM",
                requires = concat!($p, "tls-cert"), help = "The client certificate's private key (PEM)")]
            pub tls_key: Option<PathBuf>,

            #[arg(long = concat!($p, "tls-server-name"), id = concat!($p, "tls-server-name"), value_name = "NAME",
                requires = concat!($p, "tls-ca"),
                help = "The name every server's certificate must hold, when the hosts are reached by another (an IP address, a tunnel)")]
            pub tls_server_name: Option<String>,

            #[arg(long = concat!($p, "sasl"), id = concat!($p, "sasl"), value_name = "MECHANISM",
                help = concat!("SASL to ", $of, " [default: digest-md5 when a SASL user is given]"))]
            pub sasl: Option<SaslArg>,

            #[arg(long = concat!($p, "sasl-user"), id = concat!($p, "sasl-user"), value_name = "USER",
                help = "SASL DIGEST-MD5 user (the session is then sasl:USER)")]
            pub sasl_user: Option<String>,

            #[arg(long = concat!($p, "sasl-password-file"), id = concat!($p, "sasl-password-file"), value_name = "FILE",
                help = "A file holding the SASL password (one trailing line break is dropped)")]
            pub sasl_password_file: Option<PathBuf>,

            #[arg(long = concat!($p, "sasl-password-env"), id = concat!($p, "sasl-password-env"), value_name = "VAR",
                help = "An environment variable holding the SASL password")]
            pub sasl_password_env: Option<String>,

            #[arg(long = concat!($p, "sasl-service"), id = concat!($p, "sasl-service"), value_name = "NAME",
                default_value = "zookeeper", help = "GSSAPI: the servers' service name (principal NAME/host@REALM)")]
            pub sasl_service: String,

            #[arg(long = concat!($p, "sasl-host"), id = concat!($p, "sasl-host"), value_name = "HOST",
                help = "GSSAPI: the host part of the servers' principal [default: the host connected to]")]
            pub sasl_host: Option<String>,
        }

        impl $name {
            /// These options, with `auth`, as an [`Access`].
            pub fn access(&self, auth: &[String]) -> zkrepl::Result<Access> {
                SecureArgs {
                    prefix: concat!("--", $p),
                    tls_ca: self.tls_ca.as_deref(),
                    tls_cert: self.tls_cert.as_deref(),
                    tls_key: self.tls_key.as_deref(),
                    tls_server_name: self.tls_server_name.as_deref(),
                    sasl: self.sasl,
                    sasl_user: self.sasl_user.as_deref(),
                    sasl_password_file: self.sasl_password_file.as_deref(),
                    sasl_password_env: self.sasl_password_env.as_deref(),
                    sasl_service: &self.sasl_service,
                    sasl_host: self.sasl_host.as_deref(),
                }
                .access(auth)
            }
        }
    };
}

secure_args!(SrcSecure, "src-", "the source");
secure_args!(DstSecure, "dst-", "the destination");
secure_args!(OneSecure, "", "the ensemble");

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
