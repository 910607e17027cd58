use clap::Parser;
use tracing_subscriber::EnvFilter;

mod app;
mod args;
mod bench;
mod common;
mod completions;
mod copy;
mod demo_migrate;
mod metrics;
mod migrate;
mod outcome;
mod pegasus;
mod recover;
mod snapshot;
mod sync;
mod treegen;
mod verify;

fn main() {
    // Output piped into a reader that stops early (`| head`) ends the run
    // quietly, as with other command-line tools, instead of a panic.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let cli = app::Cli::parse();
    // zkrepl reports connection trouble itself; the client's own warnings
    // show with RUST_LOG.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,zookeeper_client=error")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let outcome = runtime.block_on(async {
        let outcome = app::run(cli).await;
        // Every client is dropped by now: give their sessions a moment to
        // close on the servers (ephemerals go at once, not after a timeout).
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        outcome
    });
    let code = outcome.exit as i32;
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(code);
}
