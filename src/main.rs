use clap::Parser;
use tracing_subscriber::EnvFilter;

mod cli;

fn main() {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let code = match runtime.block_on(cli::run(cli)) {
        Ok(outcome) => outcome.exit as i32,
        Err(e) => {
            eprintln!("zkrepl: error: {e}");
            cli::Exit::Error as i32
        }
    };
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(code);
}
