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
//! - `pegasus-sim seed --zk HOSTS --root PATH --apps N --partitions P`:
//!   writes a Pegasus-shaped cluster under PATH (apps `table_<n>`, the
//!   first with one duplication).

use std::path::{Path, PathBuf};

use tokio::signal::unix::{SignalKind, signal};
use zkrepl_testkit::local::{LocalServer, ServerOptions};
use zkrepl_testkit::pegasus::{ClusterSpec, Seed, SimCluster, SimMeta};

const USAGE: &str = "usage: pegasus-sim demo\n       pegasus-sim meta --config <config.ini> [--pid-file <path>]\n       \
                     pegasus-sim seed --zk <hosts> --root <path> --apps <n> --partitions <p>";

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
        Some("seed") => match flags(&args[1..], &["--zk", "--root", "--apps", "--partitions"]) {
            Ok(f) => seed(&f).await,
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

/// Writes the pid through a temporary file in the same directory, renamed
/// into place, so a reader never sees a partial file.
fn write_pid_file(path: &Path) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
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
    zkrepl_testkit::pegasus::seed(&hosts, &root, &Seed::simple(apps, partitions)).await.map_err(|e| e.to_string())?;
    println!("seeded {root}: {apps} apps of {partitions} partitions");
    Ok(())
}
