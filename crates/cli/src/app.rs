//! The commands, their exit statuses and the dispatch to each command's module.

use clap::{Parser, Subcommand};
use zkrepl::Side;

/// Exit statuses: 0 done, 1 differences found, 2 error, 130 interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Differences = 1,
    Error = 2,
    Interrupted = 130,
}

pub struct Outcome {
    pub exit: Exit,
}

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
    /// Print one tree's Merkle digest, node count, bytes and largest zxids
    Digest(crate::verify::DigestArgs),
    /// Generate a test tree (pegasus, wide, deep or large shape), deterministically
    Gen(crate::treegen::GenArgs),
    /// Summarise a ZooKeeper snapshot file: node counts by kind, last zxid, containers and TTL nodes
    SnapshotInfo(crate::snapshot::SnapshotInfoArgs),
    /// Measure copy and verify throughput against the raw ceilings of the same servers
    Bench(crate::bench::BenchArgs),
    /// Start two local ZooKeeper servers, generate a 100k-node Pegasus tree, copy and verify it
    Demo(crate::bench::DemoArgs),
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

/// Which options carry credentials: `--src-auth`/`--dst-auth`, or `--auth`
/// for a command of one tree.
#[derive(Clone, Copy, Debug)]
pub enum Flags {
    Pair,
    One,
}

impl Flags {
    fn auth(self, side: Side) -> &'static str {
        match (self, side) {
            (Flags::One, _) => "--auth",
            (Flags::Pair, Side::Source) => "--src-auth",
            (Flags::Pair, Side::Destination) => "--dst-auth",
        }
    }
}

/// Prints an error on one line, with what to do about it when there is
/// something to say.
pub fn print_error(e: &zkrepl::Error, flags: Flags) {
    match hint(e, flags) {
        Some(h) => eprintln!("zkrepl: error: {e}; {h}"),
        None => eprintln!("zkrepl: error: {e}"),
    }
}

/// What to do about an error, in this program's options. The engine's
/// messages say what happened; the options to change it are the command
/// line's.
pub fn hint(e: &zkrepl::Error, flags: Flags) -> Option<String> {
    use zkrepl::Error as E;
    Some(match e {
        E::AuthRejected { side, .. } => {
            format!("check the credentials of {}; the usual form is digest:user:password", flags.auth(*side))
        }
        E::NoAuth { side, .. } => {
            let f = flags.auth(*side);
            format!("pass credentials with {f}, e.g. {f} digest:user:password")
        }
        E::NodeTooLarge { .. } => {
            "raise jute.maxbuffer on the destination servers and pass --max-request-bytes".to_string()
        }
        E::AclMasked { side, .. } => format!(
            "pass {} digest:USER:PASSWORD for an id with ADMIN there (or a super user){}",
            flags.auth(*side),
            if *side == Side::Source && matches!(flags, Flags::Pair) {
                ", or --acl open to write OPEN ACLs instead"
            } else {
                ""
            }
        ),
        E::DestinationNotEmpty { .. } => {
            "pass --update to add and change nodes, or --mirror to also delete what the source lacks".to_string()
        }
        E::Overlap { .. } => "choose a --dst-root outside it".to_string(),
        E::DeleteLimit { limit, .. } => format!("the limit is --max-delete {limit}"),
        E::PadLimit { limit, .. } => format!("the limit is --max-pad {limit}"),
        E::Undeletable { .. } => "give --dst-auth an identity holding DELETE or ADMIN there".to_string(),
        E::Unreachable { .. } | E::SessionLost { .. } => {
            "check the address and port, or allow longer with --timeout / --session-timeout".to_string()
        }
        _ => return None,
    })
}

async fn dispatch(cli: Cli) -> zkrepl::Result<Outcome> {
    match cli.command {
        Command::Copy(a) => crate::copy::run(a).await,
        Command::Verify(a) => crate::verify::run(a).await,
        Command::Digest(a) => crate::verify::run_digest(a).await,
        Command::Gen(a) => crate::treegen::run(a).await,
        Command::SnapshotInfo(a) => crate::snapshot::run(a).await,
        Command::Bench(a) => crate::bench::run(a).await,
        Command::Demo(a) => crate::bench::demo(a).await,
        Command::Completions(a) => crate::completions::run(a),
        Command::Man(a) => crate::completions::run_man(a),
    }
}
