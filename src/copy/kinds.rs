//! Which kind each copied node is created as. The client protocol shows
//! containers and TTL nodes as plain persistent nodes, so the kind comes
//! from the user's globs (`--container`, `--ttl`), then from a snapshot file
//! of the source when one is given, then defaults to persistent.

use std::collections::HashMap;
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobMatcher};

use crate::error::{Error, Result};
use crate::write::NodeKind;

/// Rules matched against source paths (absolute, inside the source chroot).
#[derive(Clone, Default)]
pub struct KindRules {
    containers: Vec<(String, GlobMatcher)>,
    ttls: Vec<(String, GlobMatcher, Duration)>,
    /// Kinds read from a snapshot file: only containers and TTL nodes.
    snapshot: Option<HashMap<String, NodeKind>>,
}

fn glob(pattern: &str) -> Result<GlobMatcher> {
    if !pattern.starts_with('/') {
        return Err(Error::Usage(format!(
            "glob {pattern:?} must be an absolute source path pattern, e.g. /app/locks/*"
        )));
    }
    let g: Glob = GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| Error::Usage(format!("bad glob {pattern:?}: {e}")))?;
    Ok(g.compile_matcher())
}

/// Parses `5s`, `1500ms`, `10m`, `2h`, `7d`, or plain milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let bad = || Error::Usage(format!("bad duration {s:?}: give a number and a unit, e.g. 500ms, 30s, 10m, 2h, 7d"));
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return Err(bad()),
    };
    if ms == 0 || ms > 0xFF_FFFF_FFFF {
        return Err(Error::Usage(format!("TTL {s:?} must be between 1 ms and 2^40 - 1 ms")));
    }
    Ok(Duration::from_millis(ms))
}

impl KindRules {
    /// Adds a `--container GLOB`.
    pub fn add_container(&mut self, pattern: &str) -> Result<()> {
        self.containers.push((pattern.to_string(), glob(pattern)?));
        Ok(())
    }

    /// Adds a `--ttl GLOB=DURATION`.
    pub fn add_ttl(&mut self, spec: &str) -> Result<()> {
        let (pattern, dur) = spec
            .rsplit_once('=')
            .ok_or_else(|| Error::Usage(format!("--ttl {spec:?} must be GLOB=DURATION, e.g. '/app/cache/*=1h'")))?;
        self.ttls.push((pattern.to_string(), glob(pattern)?, parse_duration(dur)?));
        Ok(())
    }

    /// Uses kinds read from a source snapshot for paths no glob matches.
    pub fn set_snapshot_kinds(&mut self, kinds: HashMap<String, NodeKind>) {
        self.snapshot = Some(kinds);
    }

    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.ttls.is_empty() && self.snapshot.is_none()
    }

    /// The kind for a source path, and whether it came from the snapshot.
    pub fn kind_for(&self, src_path: &str) -> (NodeKind, bool) {
        if let Some((_, _, ttl)) = self.ttls.iter().find(|(_, m, _)| m.is_match(src_path)) {
            return (NodeKind::Ttl(*ttl), false);
        }
        if self.containers.iter().any(|(_, m)| m.is_match(src_path)) {
            return (NodeKind::Container, false);
        }
        if let Some(k) = self.snapshot.as_ref().and_then(|s| s.get(src_path)) {
            return (*k, true);
        }
        (NodeKind::Persistent, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_choose_kinds_ttl_first() {
        let mut k = KindRules::default();
        k.add_container("/app/locks/*").unwrap();
        k.add_ttl("/app/**/cache-*=90s").unwrap();
        assert_eq!(k.kind_for("/app/locks/a").0, NodeKind::Container);
        assert_eq!(k.kind_for("/app/locks/a/b").0, NodeKind::Persistent, "* stays within one name");
        assert_eq!(k.kind_for("/app/x/y/cache-1").0, NodeKind::Ttl(Duration::from_secs(90)));
        assert_eq!(k.kind_for("/other").0, NodeKind::Persistent);
        assert!(k.add_container("relative/*").is_err());
        assert!(k.add_ttl("/a/*").is_err());
        assert!(k.add_ttl("/a/*=0s").is_err());
    }

    #[test]
    fn snapshot_kinds_lose_to_globs() {
        let mut k = KindRules::default();
        k.set_snapshot_kinds(HashMap::from([
            ("/a".to_string(), NodeKind::Container),
            ("/b".to_string(), NodeKind::Container),
        ]));
        k.add_ttl("/b=1s").unwrap();
        assert_eq!(k.kind_for("/a"), (NodeKind::Container, true));
        assert_eq!(k.kind_for("/b"), (NodeKind::Ttl(Duration::from_secs(1)), false));
        assert_eq!(k.kind_for("/c"), (NodeKind::Persistent, false));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1500ms").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5").is_err(), "a bare number is ambiguous");
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("2y").is_err());
        assert!(parse_duration("").is_err());
    }
}
