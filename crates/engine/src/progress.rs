//! What a running operation shares with its caller: live counters to read
//! (a progress bar, a migration's log) and a cancellation token.
//!
//! Cancelling asks the operation to stop at its next safe point: what is in
//! flight lands, nothing more is sent, and the operation returns
//! [`Error::Interrupted`] (a copy says what it applied, see
//! [`crate::copy::CopyFailure`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

#[derive(Debug, Default)]
pub struct Progress {
    /// Nodes read (source side of a copy or verify).
    pub read: AtomicU64,
    /// Write operations applied (landed) on the destination.
    pub written: AtomicU64,
    /// Bytes of the transactions applied.
    pub bytes: AtomicU64,
    cancel: CancellationToken,
    phase: Mutex<&'static str>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress::default()
    }

    /// Counters for an operation that `token` cancels (a child token of a
    /// driver's own, say).
    pub fn with_cancel(token: CancellationToken) -> Progress {
        Progress { cancel: token, ..Progress::default() }
    }

    /// The token that cancels the operation.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Asks the operation to stop at its next safe point.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves once the operation is cancelled.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// What the operation is doing now: "connecting", "copying", "deleting",
    /// "sequence counters", "ACLs", "verifying"...
    pub fn phase(&self) -> &'static str {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `work`, unless the operation is cancelled first: then
    /// [`Error::Interrupted`] and `work` is dropped (for steps that write
    /// nothing, such as connecting).
    pub(crate) async fn unless_cancelled<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        if self.is_cancelled() {
            return Err(Error::Interrupted);
        }
        tokio::select! {
            r = work => r,
            _ = self.cancelled() => Err(Error::Interrupted),
        }
    }

    pub(crate) fn set_phase(&self, phase: &'static str) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    pub(crate) fn add_read(&self, n: u64) {
        self.read.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_written(&self, n: u64, bytes: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// This process's peak resident set size, in bytes (Linux).
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
