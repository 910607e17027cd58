//! The simulated meta's configuration: the keys a Pegasus config.ini uses,
//! plus a `[simulator]` section for what a real cluster would take from its
//! replica servers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Level, SimError};

/// One meta server's settings. Build it in code or read it from an INI file
/// ([`MetaConfig::from_file`]); unknown keys are ignored, as Pegasus does.
#[derive(Clone, Debug)]
pub struct MetaConfig {
    /// `[zookeeper] hosts_list`.
    pub zookeeper_hosts: String,
    /// `[zookeeper] timeout_ms`: the session timeout (default 30000).
    pub zookeeper_timeout_ms: u64,
    /// `[meta_server] server_list`: every meta, `host:port`.
    pub meta_servers: Vec<String>,
    /// `[meta_server] cluster_root` (default `/`).
    pub cluster_root: String,
    /// The first argument of `[meta_server] distributed_lock_service_parameters`.
    pub lock_path: String,
    /// `[meta_server] meta_function_level_on_start`, a bare name (default steady).
    pub level_on_start: Level,
    /// `[meta_server] recover_from_replica_server` (default false): at the
    /// takeover, refuse to start when `<cluster_root>/apps` has children;
    /// otherwise load and create no app and wait for RPC_CM_START_RECOVERY
    /// to rebuild them from the replica servers' view.
    pub recover_from_replica_server: bool,
    /// `[meta_server] min_live_node_count_for_unfreeze` (default 3).
    pub min_live_node_count_for_unfreeze: usize,
    /// `[meta_server] node_live_percentage_threshold_for_update` (default 65).
    pub node_live_percentage_threshold_for_update: usize,
    /// `[replication] cluster_name` (default empty, as Pegasus).
    pub cluster_name: String,
    /// `[apps.meta] ports`: the port to listen on; 0 takes the port of the
    /// only `server_list` entry, or else an ephemeral one.
    pub port: u16,
    /// `[simulator] replica_nodes`: the replica servers, `ip:port`.
    pub replica_nodes: Vec<String>,
    /// `[simulator] unalive_nodes`: those of them that are down.
    pub unalive_nodes: Vec<String>,
    /// `[simulator] disabled_rpcs`: RPC codes answered ERR_HANDLER_NOT_FOUND,
    /// as an older meta without them would.
    pub disabled_rpcs: Vec<String>,
    /// `[simulator] update_interval_ms`: how often the leader writes a
    /// partition update and duplication progress (default 1000).
    pub update_interval_ms: u64,
    /// `[simulator] progress_per_tick` (default 8): how many duplication
    /// progress nodes the leader advances per tick, round-robin over every
    /// (app, duplication, partition), each by one.
    pub progress_per_tick: usize,
    /// `[simulator] lock_apps_while_updating` (default true): set `apps` to
    /// `lock` around each partition write, so a copy can catch it mid-update.
    pub lock_apps_while_updating: bool,
    /// `[simulator] default_apps`: `name:partitions,...`, created when `apps`
    /// is missing or has no children (the real meta reads
    /// `[meta_server.apps.*]` sections for this).
    pub default_apps: Vec<(String, u32)>,
    /// `[simulator] replica_state`: a JSON file holding the replica
    /// servers' view ([`super::Replicas::file`]), shared by metas run as
    /// separate processes; empty for one held in memory.
    pub replica_state: Option<PathBuf>,
}

impl MetaConfig {
    /// A config with the defaults, three alive replica nodes and an
    /// ephemeral port.
    pub fn new(zookeeper_hosts: &str, cluster_root: &str, lock_path: &str) -> MetaConfig {
        MetaConfig {
            zookeeper_hosts: zookeeper_hosts.to_string(),
            zookeeper_timeout_ms: 30_000,
            meta_servers: Vec::new(),
            cluster_root: cluster_root.to_string(),
            lock_path: lock_path.to_string(),
            level_on_start: Level::STEADY,
            recover_from_replica_server: false,
            min_live_node_count_for_unfreeze: 3,
            node_live_percentage_threshold_for_update: 65,
            cluster_name: String::new(),
            port: 0,
            replica_nodes: (1..=3).map(|i| format!("127.0.0.1:3480{i}")).collect(),
            unalive_nodes: Vec::new(),
            disabled_rpcs: Vec::new(),
            update_interval_ms: 1000,
            progress_per_tick: 8,
            lock_apps_while_updating: true,
            default_apps: Vec::new(),
            replica_state: None,
        }
    }

    /// Reads an INI file with Pegasus's rules (see [`MetaConfig::parse`]).
    pub fn from_file(path: &Path) -> Result<MetaConfig, SimError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SimError::Config(format!("cannot read {}: {e}", path.display())))?;
        MetaConfig::parse(&text).map_err(|m| SimError::Config(format!("{}: {m}", path.display())))
    }

    /// Parses INI text as Pegasus reads config.ini: `[section]` and
    /// `key = value` lines; `#` or `;` starts a comment anywhere on a line
    /// (`^#` and `^;` are a literal `#` and `;`); blanks around names and
    /// values are trimmed; CRLF line ends are accepted; of two equal keys in
    /// a section the first wins; a section defined twice is an error.
    /// Errors name the line.
    pub fn parse(text: &str) -> Result<MetaConfig, String> {
        let ini = parse_ini(text)?;
        let get = |s: &str, k: &str| ini.get(&(s.to_string(), k.to_string())).map(String::as_str);
        let list = |v: Option<&str>| -> Vec<String> {
            v.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
        };
        let num = |s: &str, k: &str, d: u64| -> Result<u64, String> {
            get(s, k).map_or(Ok(d), |v| v.parse().map_err(|_| format!("[{s}] {k} = {v:?} is not a number")))
        };
        let flag = |s: &str, k: &str, d: bool| -> Result<bool, String> {
            match get(s, k) {
                None => Ok(d),
                Some("true") => Ok(true),
                Some("false") => Ok(false),
                Some(v) => Err(format!("[{s}] {k} = {v:?} is not true or false")),
            }
        };
        let hosts = get("zookeeper", "hosts_list").ok_or("[zookeeper] hosts_list is missing")?;
        let lock = get("meta_server", "distributed_lock_service_parameters")
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or("[meta_server] distributed_lock_service_parameters is missing")?;
        let mut c = MetaConfig::new(hosts, get("meta_server", "cluster_root").unwrap_or("/"), lock);
        c.zookeeper_timeout_ms = num("zookeeper", "timeout_ms", 30_000)?;
        c.meta_servers = list(get("meta_server", "server_list"));
        if let Some(l) = get("meta_server", "meta_function_level_on_start") {
            c.level_on_start = Level::from_name(l).ok_or_else(|| {
                format!("[meta_server] meta_function_level_on_start = {l:?}: expected a bare level name such as steady")
            })?;
        }
        c.recover_from_replica_server = flag("meta_server", "recover_from_replica_server", false)?;
        c.min_live_node_count_for_unfreeze = num("meta_server", "min_live_node_count_for_unfreeze", 3)? as usize;
        c.node_live_percentage_threshold_for_update =
            num("meta_server", "node_live_percentage_threshold_for_update", 65)? as usize;
        c.cluster_name = get("replication", "cluster_name").unwrap_or("").to_string();
        c.port = num("apps.meta", "ports", 0)? as u16;
        if c.port == 0 && c.meta_servers.len() == 1 {
            c.port = c.meta_servers[0].rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        }
        if get("simulator", "replica_nodes").is_some() {
            c.replica_nodes = list(get("simulator", "replica_nodes"));
        }
        c.unalive_nodes = list(get("simulator", "unalive_nodes"));
        c.disabled_rpcs = list(get("simulator", "disabled_rpcs"));
        c.update_interval_ms = num("simulator", "update_interval_ms", 1000)?.max(10);
        c.progress_per_tick = num("simulator", "progress_per_tick", 8)? as usize;
        c.lock_apps_while_updating = get("simulator", "lock_apps_while_updating").is_none_or(|v| v == "true");
        for a in list(get("simulator", "default_apps")) {
            let (name, n) =
                a.split_once(':').ok_or(format!("[simulator] default_apps entry {a:?}: expected name:partitions"))?;
            let n = n.parse().map_err(|_| format!("[simulator] default_apps entry {a:?}: bad partition count"))?;
            c.default_apps.push((name.to_string(), n));
        }
        c.replica_state = get("simulator", "replica_state").filter(|v| !v.is_empty()).map(PathBuf::from);
        Ok(c)
    }

    /// The INI text [`MetaConfig::parse`] reads back to this config (a `#`
    /// or `;` in a value is written escaped, `^#` and `^;`).
    pub fn to_ini(&self) -> String {
        let apps: Vec<String> = self.default_apps.iter().map(|(n, p)| format!("{n}:{p}")).collect();
        let text = format!(
            "[apps.meta]\nports = {}\n\n[zookeeper]\nhosts_list = {}\ntimeout_ms = {}\n\n[replication]\ncluster_name = {}\n\n\
             [meta_server]\nserver_list = {}\ncluster_root = {}\ndistributed_lock_service_parameters = {}\n\
             meta_function_level_on_start = {}\nrecover_from_replica_server = {}\nmin_live_node_count_for_unfreeze = {}\n\
             node_live_percentage_threshold_for_update = {}\n\n[simulator]\nreplica_nodes = {}\nunalive_nodes = {}\n\
             disabled_rpcs = {}\nupdate_interval_ms = {}\nprogress_per_tick = {}\nlock_apps_while_updating = {}\ndefault_apps = {}\n\
             replica_state = {}\n",
            self.port,
            self.zookeeper_hosts,
            self.zookeeper_timeout_ms,
            self.cluster_name,
            self.meta_servers.join(","),
            self.cluster_root,
            self.lock_path,
            self.level_on_start.name(),
            self.recover_from_replica_server,
            self.min_live_node_count_for_unfreeze,
            self.node_live_percentage_threshold_for_update,
            self.replica_nodes.join(","),
            self.unalive_nodes.join(","),
            self.disabled_rpcs.join(","),
            self.update_interval_ms,
            self.progress_per_tick,
            self.lock_apps_while_updating,
            apps.join(","),
            self.replica_state.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
        );
        // The text has no comments: every `#` and `;` in it is in a value.
        text.replace('#', "^#").replace(';', "^;")
    }
}

/// Strips a line's comment as Pegasus does: `#` and `;` start a comment
/// anywhere on the line; `^#` and `^;` stand for a literal `#` and `;`.
fn strip_comment(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '^' if matches!(chars.peek(), Some('#' | ';')) => out.push(chars.next().expect("peeked")),
            '#' | ';' => break,
            _ => out.push(c),
        }
    }
    out
}

/// The INI rules of Pegasus's configuration loader (src/utils/configuration.cpp):
/// comments from `#` or `;` to the end of the line (`^#`, `^;` escape them),
/// blanks trimmed around names and values, CRLF line ends accepted, the
/// first of two equal keys in a section kept (the later one is skipped) and
/// a section defined twice refused.
fn parse_ini(text: &str) -> Result<BTreeMap<(String, String), String>, String> {
    let mut out = BTreeMap::new();
    let mut sections = std::collections::BTreeSet::new();
    let mut section = String::new();
    for (i, raw) in text.split('\n').enumerate() {
        let raw: String = raw.chars().filter(|c| *c != '\r').collect();
        let stripped = strip_comment(&raw);
        let line = stripped.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[') {
            section = s.strip_suffix(']').ok_or(format!("line {}: unclosed section header", i + 1))?.trim().to_string();
            if !sections.insert(section.clone()) {
                return Err(format!("line {}: section [{section}] is already defined", i + 1));
            }
            continue;
        }
        let (k, v) = line.split_once('=').ok_or(format!("line {}: expected key = value", i + 1))?;
        out.entry((section.clone(), k.trim().to_string())).or_insert_with(|| v.trim().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_round_trip_and_lock_path_first_argument() {
        let c = MetaConfig::parse(
            "; c\n[zookeeper]\nhosts_list = h:1\n[meta_server]\nserver_list = 127.0.0.1:5\n\
             distributed_lock_service_parameters = /p/lock, x\nmeta_function_level_on_start = blind\n",
        )
        .unwrap();
        assert_eq!((c.lock_path.as_str(), c.port, c.level_on_start), ("/p/lock", 5, Level::BLIND));
        let d = MetaConfig::parse(&c.to_ini()).unwrap();
        assert_eq!(d.to_ini(), c.to_ini());
        assert!(MetaConfig::parse("[zookeeper]\nhosts_list=h\n[meta_server]\ndistributed_lock_service_parameters=/l\nmeta_function_level_on_start=fl_steady\n").is_err());
    }

    const BASE: &str = "[meta_server]\ndistributed_lock_service_parameters = /l\n";

    fn hosts(text: &str) -> Result<String, String> {
        MetaConfig::parse(&format!("{BASE}{text}")).map(|c| c.zookeeper_hosts)
    }

    #[test]
    fn a_comment_starts_anywhere_on_a_line() {
        assert_eq!(hosts("[zookeeper]\nhosts_list = a:1 ; old was b:2\n").unwrap(), "a:1");
        assert_eq!(hosts("[zookeeper]\nhosts_list = a:1# old b:2\n").unwrap(), "a:1");
        assert_eq!(hosts("[zookeeper] ; the ensemble\n  # a note\nhosts_list=a:1\n").unwrap(), "a:1");
        assert_eq!(hosts("[zookeeper]\n;hosts_list = b:2\nhosts_list = a:1\n").unwrap(), "a:1");
    }

    #[test]
    fn caret_escapes_a_literal_comment_character() {
        assert_eq!(hosts("[zookeeper]\nhosts_list = a^#1^;x ; c\n").unwrap(), "a#1;x");
        assert_eq!(hosts("[zookeeper]\nhosts_list = a^b\n").unwrap(), "a^b", "a caret before anything else stays");
    }

    #[test]
    fn blanks_around_names_and_values_are_trimmed() {
        let c = MetaConfig::parse(
            "  [ zookeeper ]  \n\t hosts_list \t=  a:1,b:2 \t\n[meta_server]\n distributed_lock_service_parameters =  /l , x \n",
        )
        .unwrap();
        assert_eq!((c.zookeeper_hosts.as_str(), c.lock_path.as_str()), ("a:1,b:2", "/l"));
    }

    #[test]
    fn crlf_line_ends_are_accepted() {
        let c = MetaConfig::parse(
            "[zookeeper]\r\nhosts_list = a:1\r\ntimeout_ms = 5000\r\n[meta_server]\r\n\
             distributed_lock_service_parameters = /l\r\ncluster_root = /r\r\n",
        )
        .unwrap();
        assert_eq!((c.zookeeper_hosts.as_str(), c.zookeeper_timeout_ms, c.cluster_root.as_str()), ("a:1", 5000, "/r"));
    }

    #[test]
    fn the_first_of_two_equal_keys_wins() {
        assert_eq!(hosts("[zookeeper]\nhosts_list = new:1\nhosts_list = old:2\n").unwrap(), "new:1");
        // The same key in other sections is another key.
        let c = MetaConfig::parse(&format!("[a]\nhosts_list = x\n[zookeeper]\nhosts_list = a:1\n{BASE}")).unwrap();
        assert_eq!(c.zookeeper_hosts, "a:1");
    }

    #[test]
    fn a_section_defined_twice_is_an_error() {
        let e = hosts("[zookeeper]\nhosts_list = a:1\n[zookeeper]\ntimeout_ms = 1\n").unwrap_err();
        assert!(e.contains("line 5") && e.contains("[zookeeper]"), "{e}");
        assert!(hosts("[zookeeper]\nhosts_list = a:1\n[ zookeeper ]\n").is_err(), "names compare trimmed");
    }

    #[test]
    fn to_ini_escapes_comment_characters_in_values() {
        let mut c = MetaConfig::new("a:1", "/r#1;x", "/l");
        c.cluster_name = "c;d".into();
        let d = MetaConfig::parse(&c.to_ini()).unwrap();
        assert_eq!((d.cluster_root.as_str(), d.cluster_name.as_str()), ("/r#1;x", "c;d"));
        assert_eq!(d.progress_per_tick, 8);
    }

    #[test]
    fn the_recovery_flag_and_the_replica_state_file_round_trip() {
        let mut c = MetaConfig::new("a:1", "/r", "/l");
        assert!(!MetaConfig::parse(&c.to_ini()).unwrap().recover_from_replica_server);
        assert_eq!(MetaConfig::parse(&c.to_ini()).unwrap().replica_state, None);
        c.recover_from_replica_server = true;
        c.replica_state = Some(PathBuf::from("/tmp/replicas.json"));
        let d = MetaConfig::parse(&c.to_ini()).unwrap();
        assert!(d.recover_from_replica_server);
        assert_eq!(d.replica_state.as_deref(), Some(Path::new("/tmp/replicas.json")));
        let e = MetaConfig::parse(
            &c.to_ini().replace("recover_from_replica_server = true", "recover_from_replica_server = yes"),
        )
        .unwrap_err();
        assert!(e.contains("recover_from_replica_server"), "{e}");
    }
}
