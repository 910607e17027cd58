//! The journal of a migration: one JSON file, rewritten whole (temp file,
//! fsync, rename) before and after every step, holding what the steps
//! observed: the level recorded before blind, the copy's identity, the
//! digests, the config backups, the times of the blind window. A resumed
//! run, a rollback and the cleanup of the old ensemble read it.
//!
//! It holds a secret (the copy's one-time identity), so it is written with
//! mode 0600.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Hooks, Step};
use crate::level::Level;

/// The journal format this build writes and reads.
pub const FORMAT: u32 = 1;

/// `path` with `suffix` added to its file name (`j` -> `j.lock`): the
/// files that go with a journal or a config sit beside it.
pub fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// `given`, or `name` beside the first of `configs` (in the working
/// directory without one).
pub fn default_path(given: Option<&Path>, configs: &[PathBuf], name: &str) -> PathBuf {
    if let Some(j) = given {
        return j.to_path_buf();
    }
    let dir = configs.first().and_then(|c| c.parent()).filter(|d| !d.as_os_str().is_empty());
    dir.unwrap_or(Path::new(".")).join(name)
}

/// Milliseconds since the epoch: journal times survive a restart of the
/// program, so they are wall-clock times.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Started,
    Done,
    Failed,
}

/// One transition of one step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord<S = Step> {
    pub step: S,
    pub state: StepState,
    pub at_ms: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// An app as list_apps named it before the migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub app_id: i32,
    pub app_name: String,
    pub partition_count: i32,
    pub status: String,
}

/// A config file the migration rewrites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecord {
    pub path: PathBuf,
    /// The copy of the file as it was, written before it is changed.
    pub backup: PathBuf,
    /// `[zookeeper] hosts_list` before.
    pub old_hosts: String,
}

/// What the migration was asked and what it found before changing anything.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Setup {
    /// Every meta known (given and from the configs' server_list).
    pub metas: Vec<String>,
    pub leader: String,
    pub followers: Vec<String>,
    /// Followers that answered before the migration (started again at its end).
    pub followers_up: Vec<String>,
    pub src_hosts: String,
    pub dst_hosts: String,
    pub root: String,
    pub lock_path: String,
    /// `[zookeeper] timeout_ms` of the configs: how long a crashed meta's
    /// session (and its lock node) can outlive it.
    pub session_timeout_ms: u64,
    pub alive_nodes: usize,
    pub apps: Vec<AppRecord>,
    pub configs: Vec<ConfigRecord>,
    pub hooks: Hooks,
    pub update: bool,
    pub allow_drift: bool,
    pub max_rounds: u32,
    /// The level to restore when the leader was already blind (or
    /// stopped) before the migration: what it should run at afterwards.
    #[serde(default)]
    pub restore_level: Option<Level>,
    /// Mirrored live (`--live`).
    #[serde(default)]
    pub live: bool,
}

/// Digests of the cluster root, as hex.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Digests {
    /// The source before the first copy.
    pub source_before: Option<String>,
    /// Both sides at the last equal verify while the leader ran (blind).
    pub verified_source: Option<String>,
    pub verified_destination: Option<String>,
    /// Both sides at the verify after the leader stopped: the old tree as
    /// the leader left it, and its copy.
    pub final_source: Option<String>,
    pub final_destination: Option<String>,
}

/// The blind window and its parts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Window {
    pub blind_at_ms: Option<u64>,
    pub serving_at_ms: Option<u64>,
    /// Seconds per part: copy, verify, re-sync, stop, final sync, start.
    pub parts: BTreeMap<String, f64>,
    /// When the hooks were called and returned, and the stop proven (ms
    /// since the epoch; the last time each happened).
    #[serde(default)]
    pub marks: BTreeMap<String, u64>,
}

impl Window {
    pub fn add(&mut self, part: &str, seconds: f64) {
        *self.parts.entry(part.to_string()).or_default() += seconds;
    }

    pub fn mark(&mut self, what: &str) {
        self.marks.insert(what.to_string(), now_ms());
    }

    /// The spans between the window's moments, in order, where both ends
    /// are known; then the working time (the window less the hooks' own
    /// time and the wait for the stop to be proven).
    pub fn timeline(&self) -> Vec<(String, f64)> {
        let at = |k: &str| match k {
            "blind" => self.blind_at_ms,
            "serving" => self.serving_at_ms,
            k => self.marks.get(k).copied(),
        };
        let span = |a: &str, b: &str| match (at(a), at(b)) {
            (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / 1000.0),
            _ => None,
        };
        let spans = [
            ("blind to the stop hook", "blind", "stop hook called"),
            ("stop hook", "stop hook called", "stop hook returned"),
            ("stop hook to the stop proven", "stop hook returned", "stop proven"),
            ("stop proven to the start hook", "stop proven", "start hook called"),
            ("start hook", "start hook called", "start hook returned"),
            ("start hook to serving", "start hook returned", "serving"),
        ];
        let mut out: Vec<(String, f64)> =
            spans.iter().filter_map(|(name, a, b)| span(a, b).map(|s| (name.to_string(), s))).collect();
        if let (Some(a), Some(b)) = (span("blind", "stop hook called"), span("stop proven", "start hook called")) {
            out.push(("working time (blind to the stop hook, stop proven to the start hook)".to_string(), a + b));
        }
        out
    }

    /// From setting blind to the leader serving on the new ensemble.
    pub fn seconds(&self) -> Option<f64> {
        match (self.blind_at_ms, self.serving_at_ms) {
            (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / 1000.0),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub format: u32,
    pub operation: String,
    pub created_ms: u64,
    pub setup: Setup,
    /// The leader's level before the migration set blind.
    pub recorded_level: Option<Level>,
    /// The copy's one-time identity (`user:password`): nodes whose ACL
    /// would stop the copy carry a temporary grant to it until the copy
    /// ends; a resumed copy presents it again.
    pub credential: Option<String>,
    /// The ZooKeeper session of the leader's lock node on the old ensemble.
    pub leader_session: Option<i64>,
    pub steps: Vec<StepRecord>,
    pub digests: Digests,
    pub window: Window,
    /// Proofs and figures worth keeping (the stop proof, rounds, ...).
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
    /// The config rewrite has begun: some or all configs may name the new
    /// ensemble (set before the first file is touched).
    pub switched: bool,
    pub finished: bool,
    /// A rollback has begun (set before its first action): the migration
    /// cannot be resumed, the rollback can be run again.
    #[serde(default)]
    pub rollback_started: bool,
    pub rolled_back: bool,
    /// cleanup-old has begun deleting the old tree (set before the first
    /// delete): nothing can roll back to it any more.
    #[serde(default)]
    pub cleanup_started: bool,
    pub cleaned_up: bool,
    #[serde(skip)]
    path: PathBuf,
}

/// Why a journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {path} is not a zkrepl journal: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error("journal {path} exists (a migration was started with it)")]
    Exists { path: PathBuf },
    #[error("journal {path} is in use by another zkrepl (its lock {lock} is held)")]
    Busy { path: PathBuf, lock: PathBuf },
}

/// Holds `<journal>.lock` while a migration, resume, rollback or cleanup
/// runs, so two of them never rewrite one journal at once.
#[derive(Debug)]
pub struct JournalLock {
    _file: std::fs::File,
}

impl JournalLock {
    pub fn acquire(journal: &Path) -> Result<JournalLock, JournalError> {
        let lock = beside(journal, ".lock");
        let io = |source| JournalError::Io { path: lock.clone(), source };
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock).map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(JournalLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(JournalError::Busy { path: journal.to_path_buf(), lock }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

/// Writes a journal `value` to `path` whole: a temp file beside it
/// (mode 0600: a journal may hold a secret), fsynced, renamed over it, and
/// the directory fsynced, so a crash leaves the old or the new journal,
/// never a torn one.
pub fn write<T: Serialize>(path: &Path, value: &T) -> Result<(), JournalError> {
    let io = |source| JournalError::Io { path: path.to_path_buf(), source };
    let text = serde_json::to_string_pretty(value).expect("a journal serializes");
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.write_all(b"\n").map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The `operation` a journal file records (`pegasus migrate`, `pegasus
/// recover`), to tell which procedure wrote it.
pub fn operation_of(path: &Path) -> Result<String, JournalError> {
    #[derive(Deserialize)]
    struct Head {
        operation: String,
    }
    let head: Head = read_any(path)?;
    Ok(head.operation)
}

fn read_any<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, JournalError> {
    let io = |source| JournalError::Io { path: path.to_path_buf(), source };
    let text = std::fs::read_to_string(path).map_err(io)?;
    serde_json::from_str(&text).map_err(|e| JournalError::Invalid { path: path.to_path_buf(), why: e.to_string() })
}

/// Reads the journal of `operation` at `path`, of this build's format.
pub fn read<T: serde::de::DeserializeOwned>(path: &Path, operation: &str) -> Result<T, JournalError> {
    #[derive(Deserialize)]
    struct Head {
        format: u32,
        operation: String,
    }
    let head: Head = read_any(path)?;
    let invalid = |why: String| JournalError::Invalid { path: path.to_path_buf(), why };
    if head.format != FORMAT {
        return Err(invalid(format!("format {} (this zkrepl reads format {FORMAT})", head.format)));
    }
    if head.operation != operation {
        return Err(invalid(format!("it is the journal of a {}, not of a {operation}", head.operation)));
    }
    read_any(path)
}

/// The last state recorded for `step` among `steps`.
pub fn last_state<S: PartialEq + Copy>(steps: &[StepRecord<S>], step: S) -> Option<StepState> {
    steps.iter().rev().find(|r| r.step == step).map(|r| r.state)
}

/// Each step's last run (started to done), in seconds.
pub fn step_seconds<S: PartialEq + Copy>(steps: &[StepRecord<S>]) -> Vec<(S, f64)> {
    let mut out: Vec<(S, f64)> = Vec::new();
    let mut started: Option<(S, u64)> = None;
    for r in steps {
        match r.state {
            StepState::Started => started = Some((r.step, r.at_ms)),
            StepState::Done => {
                if let Some((step, at)) = started.take().filter(|(s, _)| *s == r.step) {
                    out.retain(|(s, _)| *s != step);
                    out.push((step, r.at_ms.saturating_sub(at) as f64 / 1000.0));
                }
            }
            _ => started = None,
        }
    }
    out
}

impl Journal {
    /// Each step's last run (started to done), in seconds.
    pub fn step_seconds(&self) -> Vec<(Step, f64)> {
        step_seconds(&self.steps)
    }

    pub fn new(path: &Path, setup: Setup) -> Journal {
        Journal {
            format: FORMAT,
            operation: "pegasus migrate".to_string(),
            created_ms: now_ms(),
            setup,
            recorded_level: None,
            credential: None,
            leader_session: None,
            steps: Vec::new(),
            digests: Digests::default(),
            window: Window::default(),
            notes: BTreeMap::new(),
            switched: false,
            finished: false,
            rollback_started: false,
            rolled_back: false,
            cleanup_started: false,
            cleaned_up: false,
            path: path.to_path_buf(),
        }
    }

    /// Writes a new journal; refuses to replace an existing one.
    pub fn create(path: &Path, setup: Setup) -> Result<Journal, JournalError> {
        if path.exists() {
            return Err(JournalError::Exists { path: path.to_path_buf() });
        }
        let j = Journal::new(path, setup);
        j.save()?;
        Ok(j)
    }

    pub fn load(path: &Path) -> Result<Journal, JournalError> {
        let mut j: Journal = read(path, "pegasus migrate")?;
        j.path = path.to_path_buf();
        Ok(j)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rewrites the file (see [`write`]).
    pub fn save(&self) -> Result<(), JournalError> {
        write(&self.path, self)
    }

    /// The last state recorded for `step`.
    pub fn state(&self, step: Step) -> Option<StepState> {
        last_state(&self.steps, step)
    }

    pub fn is_done(&self, step: Step) -> bool {
        self.state(step) == Some(StepState::Done)
    }

    /// Records a transition and saves.
    pub fn mark(&mut self, step: Step, state: StepState, note: &str) -> Result<(), JournalError> {
        self.steps.push(StepRecord { step, state, at_ms: now_ms(), note: note.to_string() });
        self.save()
    }

    /// Where the cluster stands, from what the journal recorded: for an
    /// operator reading why a migration stopped.
    pub fn describe_state(&self) -> String {
        let s = &self.setup;
        let level = self.recorded_level.map(|l| l.to_string()).unwrap_or_else(|| "not recorded".into());
        let followers = if self.is_done(Step::FollowersStopped)
            && !s.followers_up.is_empty()
            && !self.is_done(Step::FollowersStarted)
        {
            format!("; the followers ({}) are stopped", s.followers_up.join(", "))
        } else {
            String::new()
        };
        let state = if self.cleanup_started {
            format!("migrated to {}; the old tree is (being) removed", s.dst_hosts)
        } else if self.rolled_back {
            "rolled back: the configs and the level are as before the migration".to_string()
        } else if self.finished {
            format!("migrated: the cluster runs on {}", s.dst_hosts)
        } else if self.is_done(Step::LeaderStarted) {
            format!("the leader serves on the new ensemble {}", s.dst_hosts)
        } else if self.switched {
            format!(
                "the configs name (or are being rewritten to name) the new ensemble {} (backups beside them); the leader is not serving yet",
                s.dst_hosts
            )
        } else if self.is_done(Step::LeaderStopped) {
            format!("the leader {} is stopped; the configs still name the old ensemble {}", s.leader, s.src_hosts)
        } else if self.recorded_level.is_some() {
            format!(
                "the leader {} runs on the old ensemble {} (level blind, or being set; it was {level}); the configs are unchanged",
                s.leader, s.src_hosts
            )
        } else {
            "the cluster's level and configs are unchanged".to_string()
        };
        format!("{state}{followers}")
    }
}
