//! Runs simulated Pegasus meta servers by hand or from shell hooks.
//!
//! - `pegasus-sim demo`: a local ZooKeeper, a seeded cluster and two metas,
//!   until Ctrl-C;
//! - `pegasus-sim meta --config config.ini [--pid-file PATH]`: one meta from
//!   a config file. Once it serves it prints `meta <addr> leader|follower`
//!   and writes its pid to PATH (atomically), which it removes on exit.
//!   SIGTERM or SIGINT is a clean stop (an update in flight finishes, the
//!   ZooKeeper session is closed so the lock node goes at once); SIGKILL is
//!   a crash. From a shell hook:
//!   `pegasus-sim meta --config F --pid-file P >log 2>&1 &` starts it and
//!   `kill $(cat P)` stops it;
//!   With `[meta_server] recover_from_replica_server = true` it exits
//!   non-zero at once when apps exist in its ZooKeeper, and otherwise
//!   waits for RPC_CM_START_RECOVERY;
//! - `pegasus-sim seed --zk HOSTS --root PATH --apps N --partitions P
//!   [--replica-state FILE]`: writes a Pegasus-shaped cluster under PATH
//!   (apps `table_<n>`, the first with one duplication), and the replica
//!   servers' view of it to FILE;
//! - `pegasus-sim zookeeper [--addr-file PATH]`: a local ZooKeeper server
//!   on a free loopback port, until SIGTERM or SIGINT; prints (and writes
//!   to PATH, atomically) its `127.0.0.1:port` once it serves;
//! - `pegasus-sim configs --zk HOSTS --root PATH --ports P1,P2,.. --dir DIR
//!   [--replica-state FILE]`: writes `DIR/meta<i>.ini` for one meta per
//!   port, as an operator's config.ini would look (comments, the lock under
//!   `<root>/lock`), sharing the replica servers' view in FILE.

use std::path::{Path, PathBuf};

use tokio::signal::unix::{SignalKind, signal};
use zkrepl_testkit::local::{LocalServer, ServerOptions};
use zkrepl_testkit::pegasus::{ClusterSpec, Replicas, Seed, SimCluster, SimMeta};

const USAGE: &str = "usage: pegasus-sim demo\n       pegasus-sim meta --config <config.ini> [--pid-file <path>]\n       \
                     pegasus-sim seed --zk <hosts> --root <path> --apps <n> --partitions <p> [--replica-state <file>]\n       \
                     pegasus-sim zookeeper [--addr-file <path>]\n       \
                     pegasus-sim configs --zk <hosts> --root <path> --ports <p1,p2,..> --dir <dir> [--replica-state <file>]";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("demo") if args.len() == 1 => demo().await,
        Some("meta") => match flags(&args[1..], &["--config", "--pid-file"]) {
            Ok(f) => match f[0].clone() {
                Some(config) => meta(PathBuf::from(config), f[1].clone().map(PathBuf::from)).await,
                None => Err(format!("meta needs --config\n{USAGE}")),
            },
            Err(e) => Err(e),
        },
        Some("seed") => match flags(&args[1..], &["--zk", "--root", "--apps", "--partitions", "--replica-state"]) {
            Ok(f) => seed(&f).await,
            Err(e) => Err(e),
        },
        Some("zookeeper") => match flags(&args[1..], &["--addr-file"]) {
            Ok(f) => zookeeper(f[0].clone().map(PathBuf::from)).await,
            Err(e) => Err(e),
        },
        Some("configs") => match flags(&args[1..], &["--zk", "--root", "--ports", "--dir", "--replica-state"]) {
            Ok(f) => configs(&f),
            Err(e) => Err(e),
        },
        _ => Err(USAGE.to_string()),
    };
    if let Err(e) = r {
        eprintln!("pegasus-sim: {e}");
        std::process::exit(2);
    }
}

/// `--name value` pairs, each of `names` at most once, in `names`' order.
fn flags(args: &[String], names: &[&str]) -> Result<Vec<Option<String>>, String> {
    let mut out = vec![None; names.len()];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let i = names.iter().position(|n| n == a).ok_or_else(|| format!("unknown argument {a:?}\n{USAGE}"))?;
        let v = it.next().ok_or_else(|| format!("{a} needs a value\n{USAGE}"))?;
        if out[i].replace(v.clone()).is_some() {
            return Err(format!("{a} given twice"));
        }
    }
    Ok(out)
}

async fn demo() -> Result<(), String> {
    let server = LocalServer::start(&ServerOptions::default()).map_err(|e| e.to_string())?;
    let hosts = server.connect_string();
    let spec = ClusterSpec::new(&hosts, "/pegasus/demo", 2, Seed::simple(2, 4));
    let cluster = SimCluster::start(spec).await.map_err(|e| e.to_string())?;
    println!("zookeeper_hosts {hosts}");
    for (m, cfg) in cluster.metas.iter().zip(&cluster.configs) {
        let role = if m.is_leader() { "leader" } else { "follower" };
        println!("meta {} {role} config {}", m.addr(), cfg.display());
    }
    eprintln!("running; Ctrl-C stops");
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    drop(cluster);
    drop(server);
    Ok(())
}

async fn zookeeper(addr_file: Option<PathBuf>) -> Result<(), String> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let server = tokio::task::spawn_blocking(|| LocalServer::start(&ServerOptions::default()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let addr = server.connect_string();
    println!("{addr}");
    if let Some(p) = &addr_file {
        write_atomically(p, &addr).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    eprintln!("serving; SIGTERM or SIGINT stops (its data goes with it)");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    drop(server);
    if let Some(p) = &addr_file {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

fn configs(f: &[Option<String>]) -> Result<(), String> {
    let get = |i: usize, name: &str| f[i].clone().ok_or_else(|| format!("configs needs {name}\n{USAGE}"));
    let (hosts, root, ports, dir) = (get(0, "--zk")?, get(1, "--root")?, get(2, "--ports")?, get(3, "--dir")?);
    let ports: Vec<u16> = ports
        .split(',')
        .map(|p| p.trim().parse().map_err(|_| format!("--ports takes port numbers: {p:?}")))
        .collect::<Result<_, _>>()?;
    let servers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {dir}: {e}"))?;
    for (i, port) in ports.iter().enumerate() {
        let lock = format!("{}/lock", root.trim_end_matches('/'));
        let mut cfg = zkrepl_testkit::pegasus::MetaConfig::new(&hosts, &root, &lock);
        cfg.meta_servers = servers.clone();
        cfg.port = *port;
        cfg.zookeeper_timeout_ms = 10_000;
        cfg.replica_state = f[4].clone().map(PathBuf::from);
        let text = format!("; meta server {} of a simulated Pegasus cluster\n{}", i + 1, cfg.to_ini());
        let path = Path::new(&dir).join(format!("meta{}.ini", i + 1));
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes the pid through a temporary file in the same directory, renamed
/// into place, so a reader never sees a partial file.
fn write_pid_file(path: &Path) -> std::io::Result<()> {
    write_atomically(path, &std::process::id().to_string())
}

/// Writes `text` and a newline through a temporary file renamed into place.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, format!("{text}\n"))?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

async fn meta(path: PathBuf, pid_file: Option<PathBuf>) -> Result<(), String> {
    // Installed before starting, so a signal during the start is not lost.
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut m = SimMeta::start_file(&path).await.map_err(|e| e.to_string())?;
    let role = if m.is_leader() { "leader" } else { "follower" };
    println!("meta {} {role}", m.addr());
    if m.is_recovering() {
        eprintln!("recover_from_replica_server = true: no app loaded, waiting for RPC_CM_START_RECOVERY");
    }
    if let Some(p) = &pid_file
        && let Err(e) = write_pid_file(p)
    {
        m.stop().await;
        return Err(format!("cannot write the pid file {}: {e}", p.display()));
    }
    eprintln!("serving; SIGTERM or SIGINT stops");
    let how = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    m.stop().await;
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    eprintln!("stopped on {how}");
    Ok(())
}

async fn seed(f: &[Option<String>]) -> Result<(), String> {
    let get = |i: usize, name: &str| f[i].clone().ok_or_else(|| format!("seed needs {name}\n{USAGE}"));
    let (hosts, root) = (get(0, "--zk")?, get(1, "--root")?);
    let apps: usize = get(2, "--apps")?.parse().map_err(|_| "--apps takes a number".to_string())?;
    let partitions: u32 = get(3, "--partitions")?.parse().map_err(|_| "--partitions takes a number".to_string())?;
    let spec = Seed::simple(apps, partitions);
    zkrepl_testkit::pegasus::seed(&hosts, &root, &spec).await.map_err(|e| e.to_string())?;
    if let Some(p) = &f[4] {
        Replicas::write_seed(Path::new(p), &spec).map_err(|e| e.to_string())?;
    }
    println!("seeded {root}: {apps} apps of {partitions} partitions");
    Ok(())
}
