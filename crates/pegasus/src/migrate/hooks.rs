//! Hooks: how a migration or a recovery stops and starts meta servers. The command line
//! gives shell commands; a program embedding the procedure (the demo, the
//! tests) gives its own. A step without a hook is the operator's: the
//! migration says what to do and waits for the result itself.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// The steps a hook can do: the first four a migration's, the last three
/// a recovery's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    StopFollowers,
    StopLeader,
    StartLeader,
    StartFollowers,
    /// Stops every meta server.
    StopMetas,
    /// Starts one meta server (`ZKREPL_META`).
    StartMeta,
    /// Starts the meta servers in `ZKREPL_METAS`.
    StartMetas,
}

impl Hook {
    pub fn option(self) -> &'static str {
        match self {
            Hook::StopFollowers => "--stop-followers",
            Hook::StopLeader => "--stop-leader",
            Hook::StartLeader => "--start-leader",
            Hook::StartFollowers => "--start-followers",
            Hook::StopMetas => "--stop-metas",
            Hook::StartMeta => "--start-meta",
            Hook::StartMetas => "--start-metas",
        }
    }
}

/// Shell commands for the hooks, as recorded in the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    pub stop_followers: Option<String>,
    pub stop_leader: Option<String>,
    pub start_leader: Option<String>,
    pub start_followers: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_metas: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_meta: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_metas: Option<String>,
}

impl Hooks {
    pub fn get(&self, hook: Hook) -> Option<&str> {
        match hook {
            Hook::StopFollowers => self.stop_followers.as_deref(),
            Hook::StopLeader => self.stop_leader.as_deref(),
            Hook::StartLeader => self.start_leader.as_deref(),
            Hook::StartFollowers => self.start_followers.as_deref(),
            Hook::StopMetas => self.stop_metas.as_deref(),
            Hook::StartMeta => self.start_meta.as_deref(),
            Hook::StartMetas => self.start_metas.as_deref(),
        }
    }

    /// These hooks, with each one `other` sets replacing this one's.
    pub fn overridden_by(&self, other: &Hooks) -> Hooks {
        Hooks {
            stop_followers: other.stop_followers.clone().or_else(|| self.stop_followers.clone()),
            stop_leader: other.stop_leader.clone().or_else(|| self.stop_leader.clone()),
            start_leader: other.start_leader.clone().or_else(|| self.start_leader.clone()),
            start_followers: other.start_followers.clone().or_else(|| self.start_followers.clone()),
            stop_metas: other.stop_metas.clone().or_else(|| self.stop_metas.clone()),
            start_meta: other.start_meta.clone().or_else(|| self.start_meta.clone()),
            start_metas: other.start_metas.clone().or_else(|| self.start_metas.clone()),
        }
    }
}

/// What a hook is told: `ZKREPL_*` environment variables for a shell hook.
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    pub vars: Vec<(String, String)>,
}

/// Runs hooks. `has` says whether a hook is there at all; without one the
/// step is done by hand.
pub trait HookRunner: Send + Sync {
    fn has(&self, hook: Hook) -> bool;
    /// Runs the hook; `Err` says why it failed.
    fn run<'a>(&'a self, hook: Hook, env: &'a HookEnv) -> BoxFuture<'a, Result<(), String>>;
}

/// Shell hooks: `sh -c CMD`, with the `ZKREPL_*` variables, output appended
/// to a log file (not a pipe: a hook that starts a server in the background
/// leaves it holding its output), killed after `timeout`.
pub struct ShellHooks {
    pub hooks: Hooks,
    pub log: PathBuf,
    pub timeout: Duration,
}

impl HookRunner for ShellHooks {
    fn has(&self, hook: Hook) -> bool {
        self.hooks.get(hook).is_some()
    }

    fn run<'a>(&'a self, hook: Hook, env: &'a HookEnv) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let Some(cmd) = self.hooks.get(hook) else { return Err("no hook given".to_string()) };
            let open = || std::fs::OpenOptions::new().create(true).append(true).open(&self.log);
            let mut log = open().map_err(|e| format!("cannot open the hook log {}: {e}", self.log.display()))?;
            {
                use std::io::Write;
                let _ = writeln!(log, "--- {} at {} ms: {cmd}", hook.option(), super::journal::now_ms());
            }
            let err = log.try_clone().map_err(|e| e.to_string())?;
            let mut command = tokio::process::Command::new("sh");
            command.arg("-c").arg(cmd).stdin(Stdio::null()).stdout(Stdio::from(log)).stderr(Stdio::from(err));
            for (k, v) in &env.vars {
                command.env(k, v);
            }
            // Its own process group: a timeout kills what it started too
            // (an ssh), not only the shell.
            command.kill_on_drop(true).process_group(0);
            let mut child = command.spawn().map_err(|e| format!("cannot run sh: {e}"))?;
            let group = child.id();
            let status = match tokio::time::timeout(self.timeout, child.wait()).await {
                Ok(s) => s.map_err(|e| e.to_string())?,
                Err(_) => {
                    if let Some(g) = group {
                        let _ = std::process::Command::new("kill").arg("-KILL").arg(format!("-{g}")).status();
                    }
                    let _ = child.kill().await;
                    return Err(format!(
                        "did not finish within {}s (killed); its output is in {}",
                        self.timeout.as_secs(),
                        self.log.display()
                    ));
                }
            };
            if status.success() { Ok(()) } else { Err(format!("{status}; last output: {}", tail(&self.log))) }
        })
    }
}

/// The last lines of the log, for an error message.
fn tail(log: &PathBuf) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take_while(|l| !l.starts_with("--- ")).take(5).collect();
    if lines.is_empty() { "(none)".to_string() } else { lines.into_iter().rev().collect::<Vec<_>>().join(" | ") }
}

/// Hooks as a function of the hook, every one present: for a program that
/// runs its meta servers itself (the demo, the tests).
pub struct FnHooks<F>(pub F);

impl<F> HookRunner for FnHooks<F>
where
    F: Fn(Hook) -> BoxFuture<'static, Result<(), String>> + Send + Sync,
{
    fn has(&self, _: Hook) -> bool {
        true
    }

    fn run<'a>(&'a self, hook: Hook, _: &'a HookEnv) -> BoxFuture<'a, Result<(), String>> {
        (self.0)(hook)
    }
}
