//! Live counters shared between a running job and whoever watches it (a
//! progress bar, a signal handler that asks the job to stop).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Progress {
    pub read: AtomicU64,
    pub written: AtomicU64,
    pub bytes: AtomicU64,
    /// Set when a copy ends early: nodes that still carry the copy's
    /// temporary grant, their final ACL not set yet.
    pub temporary_acls: AtomicU64,
    stop: AtomicBool,
    phase: Mutex<String>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress::default()
    }

    /// Asks the job to stop at its next safe point.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Resolves once a stop is requested.
    pub async fn stopped(&self) {
        while !self.stop_requested() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub fn set_phase(&self, phase: &str) {
        *self.phase.lock().unwrap() = phase.to_string();
    }

    pub fn phase(&self) -> String {
        self.phase.lock().unwrap().clone()
    }

    pub fn add_read(&self, n: u64) {
        self.read.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_written(&self, n: u64, bytes: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// This process's peak resident set size, in bytes (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
