//! `sync` from a 3-member source whose member 0 lags behind the leader
//! (`zkrepl_testkit::lagging`): the destination never goes back in time.
//!
//! The engine's sync runs in the test while the source changes through the
//! leader: counters set to ever higher values, nodes created that stay,
//! nodes deleted, short-lived nodes. Meanwhile one session reads the
//! destination (a standalone server: its reads are ordered) over and over.
//! Whatever the members do, no counter read there may be lower than one
//! read before, no node that arrived there and that the source never
//! deletes may go missing, the destination must catch up while sync still
//! runs (by its watch: no periodic reconcile), and the run ends with verify
//! equal. Member 0 lags while sync's sessions are up on it, and sync's
//! sessions are moved onto member 0 while it lags, by killing the member
//! they were on.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use zkrepl::sync::{self, SyncObserver, SyncReport, SyncRequest, SyncStatus};
use zkrepl::{Progress, ReadSettings, Tree};
use zkrepl_testkit::lagging::{Lagging, STALL};
use zkrepl_testkit::local::four_letter;
use zookeeper_client as zk;

/// Nodes whose data is a counter that only grows.
const COUNTERS: usize = 12;
/// Nodes there at the start and deleted one by one.
const DOOMED: usize = 40;

/// One test at a time: each starts an ensemble of its own, and a stall is
/// timed (two at once on a small machine could stretch it).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What sync told: its last status and its notes.
#[derive(Default)]
struct Recorder {
    last: Mutex<SyncStatus>,
    notes: Mutex<Vec<String>>,
}

impl SyncObserver for Recorder {
    fn status(&self, s: &SyncStatus) {
        *self.last.lock().unwrap() = s.clone();
    }

    fn note(&self, msg: &str) {
        self.notes.lock().unwrap().push(msg.to_string());
    }
}

impl Recorder {
    fn last(&self) -> SyncStatus {
        self.last.lock().unwrap().clone()
    }

    fn notes(&self) -> String {
        self.notes.lock().unwrap().join("\n")
    }

    /// Waits (bounded) until a status satisfies `f`.
    async fn until(&self, limit: Duration, what: &str, f: impl Fn(&SyncStatus) -> bool) {
        let deadline = Instant::now() + limit;
        while !f(&self.last()) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; last {:?}\n{}",
                self.last(),
                self.notes()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The changes made to the source, through the leader: round `r` sets
/// counter `r % COUNTERS` to `r + 1` (so each counter only grows), creates
/// `keep/n<r>` (never deleted), deletes a doomed node every fourth round,
/// and creates `churn/x<r>`, deleted again at once every other round.
struct Workload {
    root: String,
    round: usize,
}

impl Workload {
    async fn seed(c: &zk::Client, root: &str) -> Workload {
        let mut nodes: Vec<(String, Vec<u8>)> = (0..COUNTERS).map(|i| (format!("/k{i}"), b"0".to_vec())).collect();
        nodes.extend([("/keep".to_string(), Vec::new()), ("/doomed".to_string(), Vec::new())]);
        nodes.extend((0..DOOMED).map(|i| (format!("/doomed/d{i}"), b"d".to_vec())));
        nodes.push(("/churn".to_string(), Vec::new()));
        let refs: Vec<(&str, &[u8])> = nodes.iter().map(|(p, d)| (p.as_str(), d.as_slice())).collect();
        create_tree(c, root, &refs).await;
        Workload { root: root.to_string(), round: 0 }
    }

    /// Rounds until `until` or `max` rounds, paced; the rounds made.
    async fn run(&mut self, c: &zk::Client, until: Instant, max: usize) -> usize {
        let mut n = 0;
        while n < max && Instant::now() < until {
            let (r, root) = (self.round, &self.root);
            c.set_data(&format!("{root}/k{}", r % COUNTERS), (r + 1).to_string().as_bytes(), None).await.unwrap();
            c.create(&format!("{root}/keep/n{r}"), b"k", &open()).await.unwrap();
            if r % 4 == 0 && r / 4 < DOOMED {
                c.delete(&format!("{root}/doomed/d{}", r / 4), None).await.unwrap();
            }
            let x = format!("{root}/churn/x{r}");
            c.create(&x, b"x", &open()).await.unwrap();
            if r % 2 == 0 {
                c.delete(&x, None).await.unwrap();
            }
            self.round += 1;
            n += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        n
    }

    /// `rounds` rounds, however long they take.
    async fn rounds(&mut self, c: &zk::Client, rounds: usize) {
        let made = self.run(c, Instant::now() + Duration::from_secs(60), rounds).await;
        assert_eq!(made, rounds);
    }

    /// The node the last round created.
    fn last_created(&self) -> String {
        format!("{}/keep/n{}", self.root, self.round - 1)
    }
}

/// What the destination sampler saw.
#[derive(Debug, Default)]
struct Sampled {
    samples: usize,
    /// Every step back: a counter lower than read before, a node gone.
    back: Vec<String>,
}

/// Reads the destination over and over on one session until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Sampled>,
}

impl Sampler {
    fn start(dst: zk::Client, root: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, root) = (stop.clone(), root.to_string());
        let task = tokio::spawn(async move {
            let mut seen = Sampled::default();
            let mut high: BTreeMap<usize, u64> = BTreeMap::new();
            let mut arrived: BTreeSet<String> = BTreeSet::new();
            while !flag.load(Ordering::Relaxed) {
                let keep: BTreeSet<String> =
                    dst.list_children(&format!("{root}/keep")).await.unwrap().into_iter().collect();
                for lost in arrived.difference(&keep) {
                    seen.back.push(format!("keep/{lost} arrived, then went missing (sample {})", seen.samples));
                }
                arrived.extend(keep);
                let reads = futures::future::join_all((0..COUNTERS).map(|i| dst.get_data(&format!("{root}/k{i}"))));
                for (i, read) in reads.await.into_iter().enumerate() {
                    let v = match read {
                        Ok((data, _)) => String::from_utf8_lossy(&data).parse::<u64>().unwrap(),
                        Err(e) => {
                            seen.back.push(format!("k{i} missing: {e} (sample {})", seen.samples));
                            continue;
                        }
                    };
                    let h = high.entry(i).or_insert(v);
                    if v < *h {
                        seen.back.push(format!("k{i} went back from {h} to {v} (sample {})", seen.samples));
                    }
                    *h = (*h).max(v);
                }
                seen.samples += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        });
        Sampler { stop, task }
    }

    async fn finish(self) -> Sampled {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Waits (bounded) until the destination holds exactly what the source
/// (read on the leader) holds; how long that took.
async fn caught_up(leader: &zk::Client, dst: &zk::Client, root: &str, limit: Duration, rec: &Recorder) -> Duration {
    let started = Instant::now();
    loop {
        let (s, d) = tokio::join!(dump(leader, root), dump(dst, root));
        if s == d {
            return started.elapsed();
        }
        if started.elapsed() > limit {
            let only = |a: &[(String, Vec<u8>, Vec<String>)], b: &[(String, Vec<u8>, Vec<String>)]| {
                a.iter().filter(|x| !b.contains(x)).map(|x| x.0.clone()).take(10).collect::<Vec<_>>()
            };
            panic!(
                "the destination did not catch up within {limit:?} while sync ran: source only {:?}, destination only {:?}; last {:?}\n{}",
                only(&s, &d),
                only(&d, &s),
                rec.last(),
                rec.notes()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The client sessions a server has (its `cons`).
fn sessions_on(port: u16) -> usize {
    four_letter(port, "cons").lines().filter(|l| l.contains("sid=0x")).count()
}

/// Runs sync from `src_hosts` to the shared destination server alongside
/// `test` (given the recorder and a client on the destination); `test`
/// ends by cancelling it. Sync ending before that fails the test.
async fn with_sync<F>(src_hosts: &str, root: &str, test: impl FnOnce(Arc<Recorder>, zk::Client, Arc<Progress>) -> F)
where
    F: std::future::Future<Output = ()>,
{
    let dst_hosts = pair().dst.connect_string();
    let mut req = SyncRequest::new(Tree::new(src_hosts, root).unwrap(), Tree::new(&dst_hosts, root).unwrap());
    // Only the watch carries changes while it runs: a periodic reconcile
    // would hide a change it missed.
    req.reconcile_every = None;
    let (progress, rec) = (Arc::new(Progress::new()), Arc::new(Recorder::default()));
    let dst = connect(&dst_hosts).await;
    let syncing = sync::run(&req, &progress, &*rec);
    tokio::pin!(syncing);
    let testing = test(rec.clone(), dst, progress.clone());
    let report: SyncReport = tokio::select! {
        r = &mut syncing => panic!("sync ended before the test stopped it: {r:?}\n{}", rec.notes()),
        () = testing => tokio::time::timeout(Duration::from_secs(60), syncing)
            .await
            .expect("sync ends after the stop")
            .unwrap_or_else(|e| panic!("sync failed: {e}\n{}", rec.notes())),
    };
    let verify = report.verify.expect("a verify at the end");
    assert!(verify.equal(), "verify at the end: {verify:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_lags_under_sync_sessions_never_sends_the_destination_back() {
    let _one = ONE_AT_A_TIME.lock().await;
    let lag = Lagging::start(&test_server_options()).await;
    let root = unique_root("sync-lag");
    let leader = lag.leader().await;
    let mut work = Workload::seed(&leader, &root).await;
    let (work, leader, root, lag) = (&mut work, &leader, root.as_str(), &lag);
    // Member 0 first: sync's sessions (and its watch) are pinned to it.
    with_sync(&lag.hosts(true), root, |rec, dst, progress| async move {
        rec.until(Duration::from_secs(60), "sync follows", |s| s.phase == "following").await;
        let on_0 = sessions_on(lag.ensemble.servers[0].port);
        assert!(on_0 >= ReadSettings::default().sessions, "sync's sessions are not on member 0: {on_0} there");
        let sampler = Sampler::start(dst.clone(), root);
        work.rounds(leader, 20).await;
        caught_up(leader, &dst, root, Duration::from_secs(20), &rec).await;

        let on_member_0 = lag.lag().await;
        let made = work.run(leader, Instant::now() + STALL - Duration::from_millis(900), 60).await;
        Lagging::assert_lags(&on_member_0, &work.last_created()).await;
        lag.thaw().await;
        work.rounds(leader, 20).await;
        let took = caught_up(leader, &dst, root, Duration::from_secs(20), &rec).await;
        eprintln!("{made} rounds while member 0 lagged; caught up {took:?} after the last change");

        progress.cancel();
        let seen = sampler.finish().await;
        assert!(seen.back.is_empty(), "the destination went back: {:?}", seen.back);
        assert!(seen.samples >= 20, "sampled {} times only", seen.samples);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_moved_onto_a_lagging_member_never_send_the_destination_back() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lag = Lagging::start(&test_server_options()).await;
    let servers = &lag.ensemble.servers;
    let f = (1..servers.len()).find(|&i| servers[i].mode() == "follower").expect("a second follower");
    // Sync's sessions are pinned to follower f; member 0 is the only other
    // member given, so when f goes they can only move to member 0.
    let hosts = format!("{},{}", servers[f].connect_string(), servers[0].connect_string());
    let root = unique_root("sync-move");
    let leader = lag.leader().await;
    let mut work = Workload::seed(&leader, &root).await;
    let (work, leader, root, lag) = (&mut work, &leader, root.as_str(), &mut lag);
    with_sync(&hosts, root, |rec, dst, progress| async move {
        rec.until(Duration::from_secs(60), "sync follows", |s| s.phase == "following").await;
        let sampler = Sampler::start(dst.clone(), root);
        work.rounds(leader, 20).await;
        caught_up(leader, &dst, root, Duration::from_secs(20), &rec).await;

        // Member 0 lags; what the leader and f commit meanwhile reaches the
        // destination through f.
        let on_member_0 = lag.lag().await;
        work.rounds(leader, 20).await;
        caught_up(leader, &dst, root, STALL, &rec).await;
        Lagging::assert_lags(&on_member_0, &work.last_created()).await;
        // Killed now, f leaves the sessions a member that has less than
        // the destination, and that stays frozen a while yet. Nothing is
        // written until it thaws: the leader needs its acknowledgement.
        lag.ensemble.servers[f].kill();
        let killed = Instant::now();
        lag.thaw().await;
        rec.until(Duration::from_secs(20), "the watch is set again on another member", |s| s.watch_resets >= 1).await;
        let moved = killed.elapsed();
        let on_0 = sessions_on(lag.ensemble.servers[0].port);
        assert!(on_0 >= ReadSettings::default().sessions, "sync's sessions are not on member 0: {on_0} there");
        work.rounds(leader, 20).await;
        let took = caught_up(leader, &dst, root, Duration::from_secs(20), &rec).await;
        eprintln!("the watch back on member 0 {moved:?} after the kill; caught up {took:?} after the last change");

        progress.cancel();
        let seen = sampler.finish().await;
        assert!(seen.back.is_empty(), "the destination went back: {:?}", seen.back);
        assert!(seen.samples >= 20, "sampled {} times only", seen.samples);
    })
    .await;
}
