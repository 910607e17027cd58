//! `zkrepl gen`.

use bytesize::ByteSize;
use clap::{Args, ValueEnum};
use zkrepl_testkit::treegen::{self, GenOptions, Shape};

use crate::args::{Connection, OneTree, Output, WriteTuning};
use crate::common::print_json;
use crate::outcome::{Exit, Outcome};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ShapeArg {
    /// Pegasus meta server layout: apps/<id> app_info, apps/<id>/<partition> JSON, duplication, backup, leader lock
    Pegasus,
    /// One parent with --nodes children
    Wide,
    /// A chain --nodes levels deep
    Deep,
    /// --nodes nodes near 1 MiB each
    Large,
    /// A queue parent whose children were created --nodes times (its sequence counter), 10 left
    Counter,
}

impl From<ShapeArg> for Shape {
    fn from(s: ShapeArg) -> Shape {
        match s {
            ShapeArg::Pegasus => Shape::Pegasus,
            ShapeArg::Wide => Shape::Wide,
            ShapeArg::Deep => Shape::Deep,
            ShapeArg::Large => Shape::Large,
            ShapeArg::Counter => Shape::Counter,
        }
    }
}

#[derive(Args, Debug)]
#[command(
    after_long_help = "Examples:\n  zkrepl gen --zk 127.0.0.1:2181 --root /bench/src --shape pegasus --apps 400 --partitions 250\n  zkrepl gen --zk 127.0.0.1:2181 --root /bench/wide --shape wide --nodes 200000\n\nThe same options and --seed always give the same tree. The Pegasus leader lock is an\nephemeral node: it lives while this command runs (see --hold)."
)]
pub struct GenArgs {
    #[command(flatten)]
    pub tree: OneTree,

    /// Tree shape
    #[arg(long, value_enum, default_value = "pegasus")]
    pub shape: ShapeArg,

    /// Pegasus: number of apps (tables)
    #[arg(long, default_value_t = 100)]
    pub apps: u32,

    /// Pegasus: partitions per app
    #[arg(long, default_value_t = 1000)]
    pub partitions: u32,

    /// wide, deep, large: number of nodes; counter: child creations behind the queue
    #[arg(long, default_value_t = 10_000)]
    pub nodes: u64,

    /// Bytes of data per node (pegasus: partition JSON padded to at least this)
    #[arg(long)]
    pub data_bytes: Option<usize>,

    /// Seed of the data generator
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Keep the session (and so the ephemeral leader lock) for this many seconds after generating
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub hold: u64,

    #[command(flatten)]
    pub write: WriteTuning,

    #[command(flatten)]
    pub connection: Connection,

    #[command(flatten)]
    pub output: Output,
}

pub async fn run(args: GenArgs) -> zkrepl::Result<Outcome> {
    let tree = args.tree.resolve()?;
    let opts = GenOptions {
        shape: args.shape.into(),
        apps: args.apps,
        partitions: args.partitions,
        nodes: args.nodes,
        data_bytes: args.data_bytes,
        seed: args.seed,
        leader_lock: true,
        writer: args.write.writer_options(),
    };
    let (s, _session) = treegen::generate_at(&tree, &args.connection.timeouts(), &opts).await?;
    if args.output.json {
        print_json(&s);
    } else if !args.output.quiet {
        println!(
            "generated {} ({:?}): {} nodes, {}, {} ephemeral, in {:.2} s ({:.0} nodes/s)",
            s.root,
            s.shape,
            s.nodes,
            ByteSize(s.bytes),
            s.ephemerals,
            s.seconds,
            s.nodes_per_sec
        );
    }
    if args.hold > 0 {
        tokio::time::sleep(std::time::Duration::from_secs(args.hold)).await;
    }
    Ok(Outcome { exit: Exit::Ok })
}
