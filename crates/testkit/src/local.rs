//! Local ZooKeeper servers on loopback, for the demo, the benchmarks and the
//! tests: standalone servers and 3-node ensembles on free ports, each in its
//! own temporary directory, stopped (and their directory removed) when
//! dropped or when this process exits, however it exits.
//!
//! Jars come from `$ZK_HOME` (a ZooKeeper binary release) or the Debian
//! `zookeeper` package (`/usr/share/java/zookeeper.jar`). Java comes from
//! `$JAVA_HOME` or `PATH`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use zkrepl::error::{Error, Result};

/// How to start a server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// `zookeeper.extendedTypesEnabled`: allows TTL nodes.
    pub extended_types: bool,
    /// `znode.container.checkIntervalMs`: how often emptied containers and
    /// expired TTL nodes are deleted.
    pub container_check_ms: Option<u64>,
    /// `jute.maxbuffer` of the server.
    pub jute_maxbuffer: Option<usize>,
    /// `snapCount`: transactions between snapshots.
    pub snap_count: Option<u64>,
    /// `zookeeper.snapshot.compression.method`: `gz` or `snappy`.
    pub snapshot_compression: Option<String>,
    /// JVM heap in MiB.
    pub heap_mb: u32,
    pub tick_ms: u32,
    /// Extra `-D` properties.
    pub properties: Vec<(String, String)>,
    /// A secure client port beside the plain one (standalone servers and
    /// ensemble members).
    pub tls: Option<crate::secure::TlsServer>,
    /// SASL DIGEST-MD5 users.
    pub sasl: Option<crate::secure::SaslServer>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            extended_types: false,
            container_check_ms: None,
            jute_maxbuffer: None,
            snap_count: None,
            snapshot_compression: None,
            heap_mb: 512,
            tick_ms: 1000,
            properties: Vec::new(),
            tls: None,
            sasl: None,
        }
    }
}

impl ServerOptions {
    fn jvm_args(&self) -> Vec<String> {
        let mut a = vec![
            format!("-Xmx{}m", self.heap_mb),
            "-XX:+UseSerialGC".to_string(),
            "-Dzookeeper.admin.enableServer=false".to_string(),
            "-Dzookeeper.jmx.log4j.disable=true".to_string(),
        ];
        if self.extended_types {
            a.push("-Dzookeeper.extendedTypesEnabled=true".to_string());
        }
        if let Some(ms) = self.container_check_ms {
            a.push(format!("-Dznode.container.checkIntervalMs={ms}"));
        }
        if let Some(b) = self.jute_maxbuffer {
            a.push(format!("-Djute.maxbuffer={b}"));
        }
        if let Some(m) = &self.snapshot_compression {
            a.push(format!("-Dzookeeper.snapshot.compression.method={m}"));
        }
        for (k, v) in &self.properties {
            a.push(format!("-D{k}={v}"));
        }
        a
    }
}

/// The Java classpath holding a ZooKeeper server.
pub fn classpath() -> Result<String> {
    if let Ok(home) = std::env::var("ZK_HOME") {
        let mut jars = Vec::new();
        for dir in [PathBuf::from(&home), Path::new(&home).join("lib")] {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "jar") {
                        jars.push(p.display().to_string());
                    }
                }
            }
        }
        if jars.iter().any(|j| j.contains("zookeeper")) {
            jars.sort();
            return Ok(jars.join(":"));
        }
        return Err(Error::Usage(format!("ZK_HOME={home} holds no ZooKeeper jars")));
    }
    let debian = Path::new("/usr/share/java/zookeeper.jar");
    if debian.exists() {
        // Its manifest lists the dependencies; a logging binding, when
        // installed, gives the server a log (server.log in its directory).
        let mut cp = debian.display().to_string();
        // The Netty connection factory (a secure client port) needs more
        // of Netty than the manifest lists.
        for jar in [
            "netty-buffer",
            "netty-codec",
            "netty-common",
            "netty-handler",
            "netty-resolver",
            "netty-transport",
            "netty-transport-native-epoll",
            "netty-transport-native-unix-common",
        ] {
            let jar = Path::new("/usr/share/java").join(format!("{jar}.jar"));
            if jar.exists() {
                cp.push(':');
                cp.push_str(&jar.display().to_string());
            }
        }
        let simple = Path::new("/usr/share/java/slf4j-simple.jar");
        if simple.exists() {
            cp.push(':');
            cp.push_str(&simple.display().to_string());
        }
        return Ok(cp);
    }
    Err(Error::Usage(
        "no ZooKeeper server found: install it (apt-get install -y zookeeper) or set ZK_HOME to a ZooKeeper release"
            .to_string(),
    ))
}

fn java() -> String {
    match std::env::var("JAVA_HOME") {
        Ok(h) => format!("{h}/bin/java"),
        Err(_) => "java".to_string(),
    }
}

/// A free loopback port (probed by binding; the server binds it soon after).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn temp_dir(tag: &str) -> Result<PathBuf> {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("zkrepl-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Sends a four-letter command; returns the reply ("" when unreachable).
pub fn four_letter(port: u16, cmd: &str) -> String {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(cmd.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The shell keeps the JVM on a leash: when this process goes away, its
/// stdin closes, `read` returns, and the JVM is killed and its directory
/// removed, even if this process was killed outright.
const LEASH: &str = r#"java_bin="$1"; shift
"$java_bin" "$@" >>"$ZKREPL_LOG" 2>&1 &
pid=$!
echo "$pid"
read _
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
[ -n "$ZKREPL_CLEAN" ] && rm -rf "$ZKREPL_CLEAN"
"#;

struct Process {
    shell: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    done: bool,
}

impl Process {
    fn spawn(args: &[String], log: &Path, clean: Option<&Path>) -> Result<Process> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(LEASH).arg("sh").arg(java()).args(args);
        cmd.env("ZKREPL_LOG", log).env("ZKREPL_CLEAN", clean.map(|p| p.display().to_string()).unwrap_or_default());
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut shell = cmd.spawn()?;
        let stdout = shell.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let pid = line.trim().parse().map_err(|_| Error::Usage(format!("could not start java: {line:?}")))?;
        Ok(Process { stdin: shell.stdin.take(), shell, pid, done: false })
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(self.pid.to_string()).status();
    }

    /// Stops the JVM; the leash then removes the directory it was told to.
    fn stop(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        self.signal("CONT");
        self.signal("KILL");
        self.stdin.take();
        let _ = self.shell.wait();
    }

    /// Kills the leash first (so nothing is removed), then the JVM.
    fn crash(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let _ = self.shell.kill();
        self.signal("CONT");
        self.signal("KILL");
        let _ = self.shell.wait();
        self.stdin.take();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One server (standalone, or a member of a [`LocalEnsemble`]).
pub struct LocalServer {
    pub port: u16,
    /// The secure client port, when started with TLS.
    pub secure_port: Option<u16>,
    pub dir: PathBuf,
    args: Vec<String>,
    process: Option<Process>,
    owns_dir: bool,
}

impl LocalServer {
    /// Starts a standalone server on a free loopback port and waits until it
    /// serves.
    pub fn start(opts: &ServerOptions) -> Result<LocalServer> {
        let mut last = None;
        for _ in 0..3 {
            let dir = temp_dir("zk")?;
            let port = free_port()?;
            let secure_port = opts.tls.as_ref().map(|_| free_port()).transpose()?;
            let cfg = format!(
                "tickTime={}\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n4lw.commands.whitelist=*\nadmin.enableServer=false\n{}{}",
                opts.tick_ms,
                dir.join("data").display(),
                opts.snap_count.map(|n| format!("snapCount={n}\n")).unwrap_or_default(),
                secure_lines(secure_port)
            );
            std::fs::create_dir_all(dir.join("data"))?;
            std::fs::write(dir.join("zoo.cfg"), cfg)?;
            let mut server =
                LocalServer { port, secure_port, args: server_args(opts, &dir)?, dir, process: None, owns_dir: true };
            match server.launch().and_then(|_| server.wait_serving(Duration::from_secs(60))) {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried"))
    }

    fn launch(&mut self) -> Result<()> {
        let clean = self.owns_dir.then_some(self.dir.as_path());
        self.process = Some(Process::spawn(&self.args, &self.dir.join("server.log"), clean)?);
        Ok(())
    }

    fn wait_serving(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if four_letter(self.port, "ruok") == "imok" && four_letter(self.port, "srvr").contains("Mode:") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let tail: String =
            log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        Err(Error::Usage(format!(
            "ZooKeeper on 127.0.0.1:{} did not start within {limit:?}; log tail:\n{tail}",
            self.port
        )))
    }

    /// `127.0.0.1:port`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:secure_port` (panics when started without TLS).
    pub fn secure_connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.secure_port.expect("a server started with TLS"))
    }

    /// Kills the server (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.crash();
        }
    }

    /// Starts a killed server again with the same port and data.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.launch()
    }

    /// Freezes the server process (SIGSTOP): it holds connections but answers
    /// nothing, as a stalled server or a network partition would.
    pub fn pause(&self) {
        if let Some(p) = &self.process {
            p.signal("STOP");
        }
    }

    /// Resumes a paused server.
    pub fn resume(&self) {
        if let Some(p) = &self.process {
            p.signal("CONT");
        }
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// "leader", "follower" or "standalone" (empty when not serving).
    pub fn mode(&self) -> String {
        four_letter(self.port, "srvr")
            .lines()
            .find_map(|l| l.strip_prefix("Mode: ").map(|m| m.trim().to_string()))
            .unwrap_or_default()
    }

    /// The snapshot files in the data directory, newest last.
    pub fn snapshots(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.join("data").join("version-2"))
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| is_snapshot(p)).collect())
            .unwrap_or_default();
        v.sort_by_key(|p| snapshot_zxid(p));
        v
    }
}

fn is_snapshot(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("snapshot."))
}

fn snapshot_zxid(p: &Path) -> u64 {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let hex = name.trim_start_matches("snapshot.").split('.').next().unwrap_or("0");
    u64::from_str_radix(hex, 16).unwrap_or(0)
}

/// The configuration lines of a secure client port, if there is one.
fn secure_lines(port: Option<u16>) -> String {
    port.map(|p| format!("secureClientPort={p}\nsecureClientPortAddress=127.0.0.1\n")).unwrap_or_default()
}

fn server_args(opts: &ServerOptions, dir: &Path) -> Result<Vec<String>> {
    let mut args = opts.jvm_args();
    let mut secure = Vec::new();
    if let Some(tls) = &opts.tls {
        secure.extend(crate::secure::tls_properties(tls));
    }
    if let Some(sasl) = &opts.sasl {
        secure.extend(crate::secure::sasl_properties(sasl, dir)?);
    }
    args.extend(secure.into_iter().map(|(k, v)| format!("-D{k}={v}")));
    args.push("-cp".to_string());
    args.push(classpath()?);
    args.push("org.apache.zookeeper.server.quorum.QuorumPeerMain".to_string());
    args.push(dir.join("zoo.cfg").display().to_string());
    Ok(args)
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A 3-node (or n-node) ensemble on loopback.
pub struct LocalEnsemble {
    pub servers: Vec<LocalServer>,
}

impl LocalEnsemble {
    pub fn start(n: usize, opts: &ServerOptions) -> Result<LocalEnsemble> {
        Self::start_with_links(n, opts, &mut |_, _, port| port)
    }

    /// Like [`LocalEnsemble::start`], but member `viewer` reaches member
    /// `target`'s quorum port (where followers connect to the leader) at the
    /// port `link(viewer, target, port)` returns, e.g. a proxy's: a test can
    /// slow or stall one follower's link to the leader, and so make that
    /// member lag. Member 0 never leads when all start together (the
    /// election prefers higher ids), so its links are the ones to slow.
    pub fn start_with_links(
        n: usize,
        opts: &ServerOptions,
        link: &mut dyn FnMut(usize, usize, u16) -> u16,
    ) -> Result<LocalEnsemble> {
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(n, opts, link) {
                Ok(e) => return Ok(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried"))
    }

    fn try_start(
        n: usize,
        opts: &ServerOptions,
        link: &mut dyn FnMut(usize, usize, u16) -> u16,
    ) -> Result<LocalEnsemble> {
        let ports: Vec<(u16, u16, u16)> =
            (0..n).map(|_| Ok((free_port()?, free_port()?, free_port()?))).collect::<Result<_>>()?;
        let mut servers = Vec::new();
        for (i, (client, _, _)) in ports.iter().enumerate() {
            let secure_port = opts.tls.as_ref().map(|_| free_port()).transpose()?;
            let members: String = ports
                .iter()
                .enumerate()
                .map(|(j, (c, q, e))| {
                    let q = if i == j { *q } else { link(i, j, *q) };
                    format!("server.{}=127.0.0.1:{q}:{e};127.0.0.1:{c}\n", j + 1)
                })
                .collect();
            let dir = temp_dir("ens")?;
            let data = dir.join("data");
            std::fs::create_dir_all(&data)?;
            std::fs::write(data.join("myid"), format!("{}\n", i + 1))?;
            let cfg = format!(
                "tickTime={}\ninitLimit=20\nsyncLimit=5\ndataDir={}\nclientPort={client}\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n4lw.commands.whitelist=*\nadmin.enableServer=false\nstandaloneEnabled=false\n{}{}{members}",
                opts.tick_ms,
                data.display(),
                opts.snap_count.map(|n| format!("snapCount={n}\n")).unwrap_or_default(),
                secure_lines(secure_port)
            );
            std::fs::write(dir.join("zoo.cfg"), cfg)?;
            let mut s = LocalServer {
                port: *client,
                secure_port,
                args: server_args(opts, &dir)?,
                dir,
                process: None,
                owns_dir: true,
            };
            s.launch()?;
            servers.push(s);
        }
        let e = LocalEnsemble { servers };
        e.wait_quorum(Duration::from_secs(90))?;
        Ok(e)
    }

    /// Waits until every running member serves and one leads.
    pub fn wait_quorum(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let modes: Vec<String> = self.servers.iter().filter(|s| s.is_running()).map(|s| s.mode()).collect();
            if modes.iter().all(|m| m == "leader" || m == "follower") && modes.iter().any(|m| m == "leader") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(Error::Usage(format!("the local ensemble formed no quorum within {limit:?}")))
    }

    /// All members' client addresses.
    pub fn connect_string(&self) -> String {
        self.servers.iter().map(|s| s.connect_string()).collect::<Vec<_>>().join(",")
    }

    /// Index of the current leader.
    pub fn leader(&self) -> Option<usize> {
        self.servers.iter().position(|s| s.is_running() && s.mode() == "leader")
    }

    /// Index of a running follower.
    pub fn follower(&self) -> Option<usize> {
        self.servers.iter().position(|s| s.is_running() && s.mode() == "follower")
    }
}
