//! Simulated Pegasus metas as separate processes (`pegasus-sim meta`), run
//! by shell hooks as an operator's would be.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use zkrepl_testkit::pegasus::MetaConfig;

/// The simulator binary, built beside zkrepl by `cargo test --workspace`.
pub fn sim_binary() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_zkrepl")).with_file_name("pegasus-sim");
    assert!(p.exists(), "{} is missing: build it with cargo build -p zkrepl-testkit --bin pegasus-sim", p.display());
    p
}

/// Kills the simulator processes whose pid files are listed, on drop.
pub struct Metas(pub Vec<PathBuf>);

impl Drop for Metas {
    fn drop(&mut self) {
        for pid in &self.0 {
            if let Ok(p) = std::fs::read_to_string(pid) {
                let _ = Command::new("kill").arg("-9").arg(p.trim()).status();
            }
        }
    }
}

/// Starts a meta in the background from `config`; its pid file appears
/// once it serves.
pub fn start_cmd(config: &Path, pid: &Path, log: &Path) -> String {
    format!(
        "rm -f {1}; setsid {0} meta --config {2} --pid-file {1} >>{3} 2>&1 </dev/null &",
        sim_binary().display(),
        pid.display(),
        config.display(),
        log.display()
    )
}

/// Stops each running meta (SIGTERM, a clean stop) and waits (bounded)
/// until its process is gone.
pub fn stop_cmd(pids: &[&Path]) -> String {
    pids.iter()
        .map(|p| {
            format!(
                "if [ -f {0} ]; then pid=$(cat {0}); kill $pid 2>/dev/null; for i in $(seq 1 200); do kill -0 $pid 2>/dev/null || break; sleep 0.05; done; rm -f {0}; fi",
                p.display()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits (bounded) for a pid file to appear: the meta serves.
pub fn wait_for(pid: &Path, limit: Duration) {
    let started = Instant::now();
    while !pid.exists() {
        assert!(started.elapsed() < limit, "{} did not start within {limit:?}", pid.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Each config as it was but its first `hosts_list`, now `new`.
pub fn assert_only_hosts_changed(configs: &[PathBuf], originals: &[String], old: &str, new: &str) {
    for (c, o) in configs.iter().zip(originals) {
        let want = o.replacen(&format!("hosts_list = {old}"), &format!("hosts_list = {new}"), 1);
        assert_eq!(std::fs::read_to_string(c).unwrap(), want, "{}", c.display());
    }
}

/// Starts a meta from each of `configs` in turn (`DIR/meta<i>.pid` and
/// `.log`), each serving before the next starts (the first leads); the
/// guard kills them all on drop. Returns it with the pid and log files.
pub fn start_all(dir: &Path, configs: &[PathBuf], limit: Duration) -> (Metas, Vec<PathBuf>, Vec<PathBuf>) {
    let pids: Vec<PathBuf> = (1..=configs.len()).map(|i| dir.join(format!("meta{i}.pid"))).collect();
    let logs: Vec<PathBuf> = (1..=configs.len()).map(|i| dir.join(format!("meta{i}.log"))).collect();
    let guard = Metas(pids.clone());
    for (i, config) in configs.iter().enumerate() {
        let s = Command::new("sh").arg("-c").arg(start_cmd(config, &pids[i], &logs[i])).status().unwrap();
        assert!(s.success());
        wait_for(&pids[i], limit);
    }
    (guard, pids, logs)
}

/// Writes the configs of `n` metas of one cluster, on free loopback ports,
/// as `DIR/meta<i>.ini`: each is `template` with its own port and the
/// cluster's server list, made into text by `text` (given the meta's index).
/// Returns the metas' addresses, the files, and the texts written.
pub fn write_configs(
    dir: &Path,
    n: usize,
    template: &MetaConfig,
    text: impl Fn(usize, &MetaConfig) -> String,
) -> (Vec<String>, Vec<PathBuf>, Vec<String>) {
    let ports: Vec<u16> = (0..n).map(|_| zkrepl_testkit::local::free_port().unwrap()).collect();
    let servers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let (mut configs, mut originals) = (Vec::new(), Vec::new());
    for (i, port) in ports.iter().enumerate() {
        let mut cfg = template.clone();
        cfg.meta_servers = servers.clone();
        cfg.port = *port;
        let text = text(i, &cfg);
        let path = dir.join(format!("meta{}.ini", i + 1));
        std::fs::write(&path, &text).unwrap();
        configs.push(path);
        originals.push(text);
    }
    (servers, configs, originals)
}
