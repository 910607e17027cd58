//! The commands and the dispatch to each command's module.

use clap::{CommandFactory, Parser, Subcommand};

use crate::outcome::{Exit, Flags, Outcome, print_error};

#[derive(Parser, Debug)]
#[command(
    name = "zkrepl",
    version,
    about = "Copy, verify and migrate ZooKeeper trees: fast, byte-sized multi() batches, Merkle-verified",
    long_about = "Copy, verify and migrate ZooKeeper trees.\n\n\
zkrepl reads a subtree with batched reads (multiRead on ZooKeeper >= 3.6), writes it with multi() \
transactions sized to the server's request limit, and proves the copy with Merkle digests. \
It never writes to the source and never writes outside the destination root.\n\n\
Logs go to stderr (RUST_LOG=debug for more); results, and --json, go to stdout.",
    after_help = "Exit status: 0 done, 1 differences found, 2 error, 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Copy a subtree from one ensemble (or path) to another
    Copy(crate::copy::CopyArgs),
    /// Compare two subtrees node by node (presence, data, ACL) and print both Merkle digests
    Verify(crate::verify::VerifyArgs),
    /// Keep a destination converged with a live source: watch, full copy, then every change as it comes
    Sync(crate::sync::SyncArgs),
    /// Print one tree's Merkle digest, node count, bytes and largest zxids
    Digest(crate::verify::DigestArgs),
    /// Generate a test tree (pegasus, wide, deep or large shape), deterministically
    Gen(crate::treegen::GenArgs),
    /// Summarise a ZooKeeper snapshot file: node counts by kind, last zxid, containers and TTL nodes
    SnapshotInfo(crate::snapshot::SnapshotInfoArgs),
    /// Measure copy and verify throughput against the raw ceilings of the same servers
    Bench(crate::bench::BenchArgs),
    /// Start local ZooKeeper servers, generate a 100k-node Pegasus tree, copy and verify it, then migrate a simulated Pegasus cluster over it
    Demo(crate::bench::DemoArgs),
    /// Apache Pegasus: a cluster's status through its meta servers, and the meta level
    Pegasus(crate::pegasus::PegasusArgs),
    /// Print a shell completion script (bash, zsh or fish) to stdout
    Completions(crate::completions::CompletionsArgs),
    /// Print the zkrepl man page (roff) to stdout
    Man(crate::completions::ManArgs),
}

/// Runs the command; an error is printed here, with what to do about it
/// in this program's options.
pub async fn run(cli: Cli) -> Outcome {
    let flags = match &cli.command {
        Command::Digest(_) | Command::Gen(_) => Flags::One,
        _ => Flags::Pair,
    };
    if let Command::Pegasus(a) = cli.command {
        return crate::pegasus::run(a).await;
    }
    match dispatch(cli).await {
        Ok(outcome) => outcome,
        Err(zkrepl::Error::Interrupted) => {
            eprintln!("zkrepl: interrupted");
            Outcome { exit: Exit::Interrupted }
        }
        Err(e) => {
            print_error(&e, flags);
            Outcome { exit: Exit::Error }
        }
    }
}

async fn dispatch(cli: Cli) -> zkrepl::Result<Outcome> {
    match cli.command {
        Command::Copy(a) => crate::copy::run(a).await,
        Command::Verify(a) => crate::verify::run(a).await,
        Command::Digest(a) => crate::verify::run_digest(a).await,
        Command::Sync(a) => crate::sync::run(a).await,
        Command::Gen(a) => crate::treegen::run(a).await,
        Command::SnapshotInfo(a) => crate::snapshot::run(a).await,
        Command::Bench(a) => crate::bench::run(a).await,
        Command::Demo(a) => crate::bench::demo(a).await,
        Command::Pegasus(_) => unreachable!("dispatched in run"),
        Command::Completions(a) => crate::completions::run(a, Cli::command()),
        Command::Man(a) => crate::completions::run_man(a, Cli::command()),
    }
}
