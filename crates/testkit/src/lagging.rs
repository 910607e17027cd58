//! A 3-member ensemble whose member 0 can be made to lag behind the
//! leader, for the consistency tests of copy, verify and sync.
//!
//! Member 0 reaches the other members' quorum ports through proxies;
//! stalling them freezes what it serves (as a follower in a long GC pause
//! or on a slow disk would) while it keeps answering its clients. A stall
//! lasts [`STALL`] from the moment it begins, well under the 5 s (syncLimit
//! 5 x tick 1 s) after which a follower drops its leader, so member 0 lags
//! and keeps its leader rather than dropping out and rejoining.
//!
//! A session created on a lagging member waits until the member has caught
//! up, which hides the lag: make the sessions to test first, then the lag.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use zookeeper_client as zk;

use crate::local::{LocalEnsemble, ServerOptions};
use crate::proxy::FaultProxy;

/// How long member 0 stays frozen once [`Lagging::lag`] began.
pub const STALL: Duration = Duration::from_millis(2500);

pub struct Lagging {
    pub ensemble: LocalEnsemble,
    /// Member 0's links to the other members' quorum ports.
    links: Vec<FaultProxy>,
    /// When the current stall began.
    stalled_at: Mutex<Option<Instant>>,
}

impl Lagging {
    /// Starts the ensemble (off the runtime's threads: it takes seconds) and
    /// checks that member 0 follows. Must be called within a tokio runtime,
    /// which runs the proxies.
    pub async fn start(opts: &ServerOptions) -> Lagging {
        let handle = tokio::runtime::Handle::current();
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || {
            let mut links = Vec::new();
            let ensemble = LocalEnsemble::start_with_links(3, &opts, &mut |viewer, _, port| {
                if viewer != 0 {
                    return port;
                }
                let proxy = handle.block_on(FaultProxy::to_port(port));
                let port = proxy.addr().port();
                links.push(proxy);
                port
            })
            .expect("lagging ensemble");
            assert_eq!(ensemble.servers[0].mode(), "follower", "member 0 must follow to be made to lag");
            Lagging { ensemble, links, stalled_at: Mutex::new(None) }
        })
        .await
        .unwrap()
    }

    /// Freezes what member 0 serves: it gets nothing from the leader.
    /// Returns a client on member 0, made before the stall, to show it (see
    /// [`Lagging::assert_lags`]).
    pub async fn lag(&self) -> zk::Client {
        let on_member_0 = zk::Client::connect(&self.ensemble.servers[0].connect_string()).await.unwrap();
        for l in &self.links {
            l.set_stall(true);
        }
        *self.stalled_at.lock().unwrap() = Some(Instant::now());
        // Let what was on the wire land.
        tokio::time::sleep(Duration::from_millis(200)).await;
        on_member_0
    }

    /// Thaws member 0 [`STALL`] after the stall began.
    pub async fn thaw(&self) {
        let at = self.stalled_at.lock().unwrap().take().expect("stalled");
        tokio::time::sleep_until((at + STALL).into()).await;
        for l in &self.links {
            l.heal();
        }
        // Under 5 s (syncLimit x tick): member 0 lagged and kept its leader,
        // rather than dropping out and rejoining.
        assert!(at.elapsed() < Duration::from_millis(4500), "the stall lasted {:?}", at.elapsed());
    }

    /// Member 0 really lags: a session made on it before the stall does not
    /// see `written`, which the leader has committed since.
    pub async fn assert_lags(on_member_0: &zk::Client, written: &str) {
        assert_eq!(on_member_0.check_stat(written).await.unwrap(), None, "member 0 should not have {written} yet");
    }

    /// The connect string with member 0 first (`lagging_first`) or last.
    pub fn hosts(&self, lagging_first: bool) -> String {
        let mut v: Vec<String> = self.ensemble.servers.iter().map(|s| s.connect_string()).collect();
        if !lagging_first {
            v.rotate_left(1);
        }
        v.join(",")
    }

    /// A client on the leader: what it wrote is committed.
    pub async fn leader(&self) -> zk::Client {
        let i = self.ensemble.leader().expect("a leader");
        zk::Client::connect(&self.ensemble.servers[i].connect_string()).await.unwrap()
    }
}
