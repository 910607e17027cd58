//! zkrepl's engine: copy, verify and digest ZooKeeper trees.
//!
//! A driver (the command line, a migration, a live sync) calls one entry
//! point per operation, each with one request value:
//!
//! - [`copy::run`] with a [`copy::CopyRequest`],
//! - [`verify::run`] with a [`verify::VerifyRequest`] and a [`verify::DiffSink`],
//! - [`digest::run`] with a [`digest::DigestRequest`],
//! - [`remove::run`] with a [`remove::RemoveRequest`] (deletes a tree),
//! - [`sync::run`] with a [`sync::SyncRequest`] (a live mirror).
//!
//! Each opens its own sessions from the request's [`Tree`]s, and reports
//! through a [`Progress`]: counters to read while it runs, and a
//! cancellation token. Failures are typed ([`Error`]); a copy that fails
//! says what it applied and returns the credential that finishes it
//! ([`copy::CopyFailure`]).
//!
//! Inside, the reader and walker feed the planner over a bounded channel,
//! the batcher groups its operations into multi() transactions and the
//! [`write::Writer`] applies them; see ARCHITECTURE.md.

pub mod copy;
pub mod digest;
pub mod error;
pub(crate) mod merkle;
pub mod node;
pub mod progress;
pub(crate) mod read;
pub use read::AclSources;
pub mod remove;
pub mod snapshot;
pub mod sync;
pub mod tree;
pub mod verify;
pub mod write;
pub mod zk;

pub use error::{Error, Result, Side};
pub use progress::{CancellationToken, Progress};
pub use tree::{ReadSettings, RunCredential, Timeouts, Tree};

/// Parts of the engine that its own tests and benchmarks reach into (with
/// the `internals` feature): readers opened before a fault, the comparer
/// fed by hand, the batcher and the Merkle builder timed alone. Not part of
/// the API: drivers use the entry points.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    pub use crate::merkle::MerkleBuilder;
    pub use crate::read::walk::{Entry, WalkOptions};
    pub use crate::read::{Listing, MultiRead, ReadOptions, TreeReader};
    pub use crate::verify::compare::{Comparer, VerifyOptions};
    pub use crate::write::batch::{Batcher, Transaction};

    use std::sync::Arc;

    use crate::copy::plan::Identities;
    use crate::copy::{CopyOptions, CopySummary, Job, Left};
    use crate::zk::session::Session;
    use crate::{Progress, Result, RunCredential, verify};

    /// A copy on readers and a writer session opened by the caller; the
    /// writer must present `run`.
    pub async fn copy_on(
        src: &TreeReader,
        dst: &TreeReader,
        writer: &Arc<Session>,
        opts: &CopyOptions,
        run: &RunCredential,
        progress: &Arc<Progress>,
    ) -> Result<CopySummary> {
        let ids = Identities { dst: dst.pool().options().access.known_ids(), run: run.acl_id() };
        let walk = WalkOptions::default();
        let job = Job { opts, walk: &walk, ids: &ids, allow_overlap: false };
        crate::copy::run_on(src, dst, writer, &job, progress, &mut Left::default()).await
    }

    /// A verify on readers opened by the caller.
    pub async fn verify_on(
        src: &TreeReader,
        dst: &TreeReader,
        opts: &VerifyOptions,
        progress: &Progress,
        sink: &mut dyn verify::DiffSink,
    ) -> Result<verify::VerifyReport> {
        verify::run_on(src, dst, opts, progress, sink).await
    }

    /// A new one-time identity.
    pub fn run_credential() -> RunCredential {
        RunCredential::generate()
    }
}
