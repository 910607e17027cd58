//! Runs simulated Pegasus meta servers by hand.
//!
//! `pegasus-sim demo`: a local ZooKeeper, a seeded cluster and two metas;
//! `pegasus-sim meta --config config.ini`: one meta from a config file.
//! Both run until Ctrl-C.

use std::path::PathBuf;

use zkrepl_testkit::local::{LocalServer, ServerOptions};
use zkrepl_testkit::pegasus::{ClusterSpec, Seed, SimCluster, SimMeta};

const USAGE: &str = "usage: pegasus-sim demo | pegasus-sim meta --config <config.ini>";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["demo"] => demo().await,
        ["meta", "--config", path] => meta(PathBuf::from(path)).await,
        _ => Err(USAGE.to_string()),
    };
    if let Err(e) = r {
        eprintln!("pegasus-sim: {e}");
        std::process::exit(2);
    }
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

async fn meta(path: PathBuf) -> Result<(), String> {
    let mut m = SimMeta::start_file(&path).await.map_err(|e| e.to_string())?;
    let role = if m.is_leader() { "leader" } else { "follower" };
    println!("meta {} {role}", m.addr());
    eprintln!("running; Ctrl-C stops");
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    m.stop().await;
    Ok(())
}
