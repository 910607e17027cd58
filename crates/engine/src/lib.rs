//! zkrepl: copy, verify and migrate ZooKeeper trees.
//!
//! The engine is three reusable parts joined by a bounded channel:
//! [`read`] (the reader and the walker) -> [`write::batch`] (the batcher) ->
//! [`write`] (the writer), with [`digest`] computing Merkle digests along the
//! walk. [`copy`] and [`verify`] are built from them; see ARCHITECTURE.md.

pub mod copy;
pub mod error;
pub mod merkle;
pub mod node;
pub mod progress;
pub mod read;
pub mod snapshot;
pub mod verify;
pub mod write;
pub mod zk;

pub use error::{Error, Result, Side};
