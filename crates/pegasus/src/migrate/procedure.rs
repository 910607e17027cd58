//! What the cluster-changing procedures (migrate, rollback, recover) share:
//! a hook run, or the operator told what to do, and the bounded wait for
//! what either does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use zookeeper_client as zk;

use super::hooks::{Hook, HookEnv};
use super::{Context, Event, MigrateError, StepName, checks};

/// ZooKeeper sessions for a procedure's checks, by connect string, kept
/// between them (a new session is a transaction on the ensemble).
#[derive(Default)]
pub(crate) struct Sessions(tokio::sync::Mutex<HashMap<String, zk::Client>>);

impl Sessions {
    /// A session on `hosts`, synced, so it reads what the ensemble
    /// committed before the call; a new one when the kept one is gone.
    pub(crate) async fn get(
        &self,
        hosts: &str,
        side: zkrepl::Side,
        access: &zkrepl::zk::secure::Access,
        timeout: Duration,
    ) -> Result<zk::Client, crate::zk::ConnectError> {
        let mut sessions = self.0.lock().await;
        if let Some(c) = sessions.get(hosts) {
            let synced = tokio::time::timeout(timeout, c.sync("/")).await;
            if c.state() == zk::SessionState::SyncConnected && matches!(synced, Ok(Ok(()))) {
                return Ok(c.clone());
            }
            sessions.remove(hosts);
            // A session lost mid-procedure: its replacement retries what a
            // first connection would give up on at once.
            let c = crate::zk::reconnect(hosts, side, access, timeout).await?;
            sessions.insert(hosts.to_string(), c.clone());
            return Ok(c);
        }
        let c = checks::connect(hosts, side, access, timeout).await?;
        sessions.insert(hosts.to_string(), c.clone());
        Ok(c)
    }
}

/// Runs `hook` (`command` is what it runs, for the event), or, without
/// one, tells the operator `manual` and returns: the caller then waits for
/// the condition either way, up to `wait`.
pub(crate) async fn hook_or_manual<S: StepName>(
    ctx: &Context<'_, S>,
    step: S,
    hook: Hook,
    command: Option<&str>,
    env: &HookEnv,
    manual: String,
    wait: Duration,
) -> Result<(), MigrateError> {
    if ctx.hooks.has(hook) {
        ctx.observer.event(Event::HookRunning { hook, command: command.map(str::to_string) });
        ctx.hooks.run(hook, env).await.map_err(|why| MigrateError::Hook { hook, why })
    } else {
        ctx.observer.event(Event::Manual {
            step,
            instructions: format!(
                "{manual} zkrepl checks for itself and goes on when it sees it done (waiting up to {}s; or give {} CMD).",
                wait.as_secs(),
                hook.option()
            ),
        });
        Ok(())
    }
}

/// Polls `cond` every `every` until it says done, for at most `wait`,
/// failing at once when `stop` fails or `ctx` is cancelled. `cond`'s last
/// error is the timeout's reason.
pub(crate) async fn wait_unless<S, F, Fut, G, Gut>(
    ctx: &Context<'_, S>,
    wait: Duration,
    what: &str,
    every: Duration,
    mut cond: F,
    mut stop: G,
) -> Result<String, MigrateError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<String>, String>>,
    G: FnMut() -> Gut,
    Gut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let mut last = String::from("not checked yet");
    loop {
        match cond().await {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            Err(why) => last = why,
        }
        stop().await.map_err(MigrateError::Failed)?;
        if started.elapsed() >= wait {
            return Err(MigrateError::Timeout { what: what.to_string(), waited: wait, last });
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = ctx.cancel.cancelled() => return Err(MigrateError::Interrupted),
        }
    }
}

/// Sleeps `d`, or fails when `ctx` is cancelled first.
pub(crate) async fn sleep<S>(ctx: &Context<'_, S>, d: Duration) -> Result<(), MigrateError> {
    tokio::select! {
        _ = tokio::time::sleep(d) => Ok(()),
        _ = ctx.cancel.cancelled() => Err(MigrateError::Interrupted),
    }
}
