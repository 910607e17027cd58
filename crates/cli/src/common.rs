//! Helpers shared by the commands: progress, signals, output.

use bytesize::ByteSize;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use zkrepl::Progress;

/// A progress bar on stderr, drawn from the shared counters while a job runs.
pub struct ProgressView {
    bar: Option<ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressView {
    /// Draws only when stderr is a terminal and not quiet.
    pub fn start(progress: Arc<Progress>, quiet: bool) -> ProgressView {
        if quiet || !std::io::stderr().is_terminal() {
            return ProgressView { bar: None, task: None };
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("template"));
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            loop {
                let read = progress.read.load(std::sync::atomic::Ordering::Relaxed);
                let written = progress.written.load(std::sync::atomic::Ordering::Relaxed);
                let bytes = progress.bytes.load(std::sync::atomic::Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                b.set_message(format!(
                    "{}: {read} nodes read ({:.0}/s), {written} written, {}",
                    progress.phase(),
                    read as f64 / secs,
                    ByteSize(bytes)
                ));
                b.tick();
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
        ProgressView { bar: Some(bar), task: Some(task) }
    }

    /// The bar, when one is drawn.
    pub fn bar(&self) -> Option<ProgressBar> {
        self.bar.clone()
    }

    pub fn finish(self) {
        if let Some(t) = self.task {
            t.abort();
        }
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

/// First Ctrl-C / SIGTERM: ask the job to stop at a safe point (what is in
/// flight lands, the summary says what was done). Second: exit now, with
/// what is buffered for stdout written out first.
pub fn watch_signals(progress: Arc<Progress>) {
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return,
        };
        let mut count = 0;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            count += 1;
            if count == 1 {
                eprintln!("zkrepl: stopping at a safe point (interrupt again to quit now)");
                progress.cancel();
            } else {
                eprintln!("zkrepl: quitting now");
                quit_now();
            }
        }
    });
}

/// What runs before a second interrupt ends the process: writes out what
/// is buffered for stdout.
type QuitHook = Box<dyn Fn() + Send>;
static BEFORE_QUIT: std::sync::Mutex<Vec<QuitHook>> = std::sync::Mutex::new(Vec::new());

/// Has `flush` run before a second interrupt ends the process.
pub fn before_quit(flush: impl Fn() + Send + 'static) {
    BEFORE_QUIT.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(flush));
}

/// Ends the process with exit 130 at once, stdout written out first: what
/// was printed stays printed (a JSON report is left unfinished).
fn quit_now() -> ! {
    if let Ok(hooks) = BEFORE_QUIT.try_lock() {
        for flush in hooks.iter() {
            flush();
        }
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    std::process::exit(130);
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

/// The summary lines of a side read with a snapshot: where its ACLs came
/// from, and a warning when the snapshot vouched for no node.
pub fn acl_source_lines(side: &str, a: &zkrepl::AclSources) -> Vec<String> {
    let mut out = vec![format!(
        "  ACLs ({side}){:>w$}   ({} from the snapshot, {} read live; {} nodes in the snapshot{})",
        "",
        a.from_snapshot,
        a.read,
        a.snapshot_nodes,
        if a.snapshot_unusable > 0 { format!(", {} without a usable ACL", a.snapshot_unusable) } else { String::new() },
        w = 10usize.saturating_sub(side.len()),
    )];
    if a.spot_checked > 0 {
        out.push(format!(
            "  ({} nodes whose ACL was set since their creation read live first: {} still as in the snapshot, each with its ACL)",
            a.spot_checked, a.spot_matched
        ));
    }
    if a.from_snapshot == 0 && a.read > 0 {
        out.push(
            "  (the snapshot vouched for no node: it is not of this ensemble, or older than every node's last setACL)"
                .to_string(),
        );
    }
    out
}
