//! Which kind each copied node is created as. The client protocol shows
//! containers and TTL nodes as plain persistent nodes, so the kind comes
//! from the user's globs (containers, TTL nodes), then from a snapshot file
//! of the source when one is given, then defaults to persistent.

use std::collections::HashMap;
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobMatcher};

use crate::error::{Error, Result};
use crate::node::NodeKind;

/// Rules matched against source paths (absolute, inside the source chroot).
#[derive(Clone, Debug, Default)]
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

/// The longest TTL ZooKeeper keeps: 2^40 - 1 ms (the rest of the 64 bits
/// of a TTL node's owner field mark it as one).
pub const MAX_TTL: Duration = Duration::from_millis(0xFF_FFFF_FFFF);

/// Parses a duration: a number and a unit, several may follow one another
/// (`500ms`, `30s`, `10m`, `2h`, `7d`, `2w`, `1h30m`, `1h 30m`, `1.5h`;
/// humantime's syntax), a whole number of milliseconds from 1 ms to `max`.
/// A number too large for any duration is an error too, never a wrapped one.
/// Only the units ms, s, m, h, d and w are taken (with their long names,
/// `sec`, `min`, `hours`, ...): `M` (months), `y` (years), `us` and `ns`
/// are refused, so that `10M` cannot stand for ten months.
pub fn parse_duration(s: &str, max: Duration) -> Result<Duration> {
    let s = s.trim();
    check_units(s)?;
    let d = humantime::parse_duration(s).map_err(|e| {
        Error::Usage(format!("bad duration {s:?}: {e}; give a number and a unit, e.g. 500ms, 30s, 10m, 2h, 7d"))
    })?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(Error::Usage(format!("duration {s:?} is not a whole number of milliseconds")));
    }
    if d < Duration::from_millis(1) || d > max {
        return Err(Error::Usage(format!(
            "duration {s:?} is out of range: from 1ms to {} ({} ms)",
            humantime::format_duration(max),
            max.as_millis()
        )));
    }
    Ok(d)
}

/// The unit names a duration may use: ms, s, m, h, d, w and their long forms.
const UNITS: &[&str] = &[
    "ms", "msec", "millis", "s", "sec", "second", "seconds", "m", "min", "minute", "minutes", "h", "hr", "hour",
    "hours", "d", "day", "days", "w", "week", "weeks",
];

/// Refuses a duration with a unit outside [`UNITS`].
fn check_units(s: &str) -> Result<()> {
    for unit in s.split(|c: char| !c.is_alphabetic()).filter(|u| !u.is_empty()) {
        if !UNITS.contains(&unit) {
            let hint = match unit {
                "M" | "month" | "months" => " (M is months: minutes are m)",
                "y" | "year" | "years" => " (for years give days, e.g. 365d)",
                "us" | "usec" | "ns" | "nsec" => " (durations are whole milliseconds)",
                _ => "",
            };
            return Err(Error::Usage(format!(
                "bad duration {s:?}: unit {unit:?} is not one of ms, s, m, h, d, w{hint}"
            )));
        }
    }
    Ok(())
}

impl KindRules {
    /// Adds a glob of source paths to create as containers.
    pub fn add_container(&mut self, pattern: &str) -> Result<()> {
        self.containers.push((pattern.to_string(), glob(pattern)?));
        Ok(())
    }

    /// Adds a `GLOB=DURATION` rule: source paths to create as TTL nodes.
    pub fn add_ttl(&mut self, spec: &str) -> Result<()> {
        let (pattern, dur) = spec
            .rsplit_once('=')
            .ok_or_else(|| Error::Usage(format!("TTL rule {spec:?} must be GLOB=DURATION, e.g. '/app/cache/*=1h'")))?;
        self.ttls.push((pattern.to_string(), glob(pattern)?, parse_duration(dur, MAX_TTL)?));
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
    fn durations_in_every_accepted_form() {
        let ok = |s: &str| parse_duration(s, MAX_TTL).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("1500ms"), Duration::from_millis(1500));
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("30sec"), Duration::from_secs(30));
        assert_eq!(ok("10m"), Duration::from_secs(600));
        assert_eq!(ok("10min"), Duration::from_secs(600));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("7d"), Duration::from_secs(7 * 86_400));
        assert_eq!(ok("2w"), Duration::from_secs(14 * 86_400));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1h 30m 5s"), Duration::from_secs(5405));
        assert_eq!(ok(" 90m "), Duration::from_secs(5400));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("1ms"), Duration::from_millis(1));
        assert_eq!(ok("1099511627775ms"), MAX_TTL);
    }

    #[test]
    fn durations_refused() {
        let err = |s: &str, max: Duration| match parse_duration(s, max) {
            Ok(d) => panic!("{s} gave {d:?}"),
            Err(e) => e.to_string(),
        };
        let day = Duration::from_secs(86_400);
        assert!(err("5", MAX_TTL).contains("unit"), "a bare number is ambiguous");
        assert!(err("2x", MAX_TTL).contains("unit"));
        assert!(err("", MAX_TTL).contains("bad duration"));
        assert!(err("0.0005s", MAX_TTL).contains("whole number of milliseconds"));
        assert!(err("-5s", MAX_TTL).contains("bad duration"));
        assert!(err("0s", MAX_TTL).contains("out of range"));
        assert!(err("1.0005s", MAX_TTL).contains("whole number of milliseconds"));
        // Past the limit, past any duration, past u64 milliseconds: errors,
        // never a wrapped value.
        assert!(err("1099511627776ms", MAX_TTL).contains("out of range"));
        assert!(err("99999999999d", MAX_TTL).contains("out of range"));
        assert!(err("213503982335d", MAX_TTL).contains("out of range"), "u64 milliseconds wrap here");
        assert!(err("213503982334602d", MAX_TTL).contains("bad duration"), "u64 seconds wrap here");
        assert!(err("0", MAX_TTL).contains("out of range"));
        assert!(err("99999999999999999999d", MAX_TTL).contains("bad duration"));
        assert!(err("18446744073709551616s", MAX_TTL).contains("bad duration"));
        assert!(err("2d", day).contains("from 1ms to 1day"));
        assert_eq!(parse_duration("1d", day).unwrap(), day);
    }

    #[test]
    fn only_the_documented_units_are_taken() {
        let err = |s: &str| match parse_duration(s, MAX_TTL) {
            Ok(d) => panic!("{s} gave {d:?}"),
            Err(e) => e.to_string(),
        };
        for (s, unit) in [
            ("10M", "M"),
            ("1month", "month"),
            ("2months", "months"),
            ("1y", "y"),
            ("2years", "years"),
            ("500us", "us"),
            ("1s500us", "us"),
            ("2000000ns", "ns"),
            ("3000usec", "usec"),
            ("1h 10M", "M"),
            ("10 parsecs", "parsecs"),
            ("2µs", "µs"),
        ] {
            let e = err(s);
            assert!(e.contains(&format!("unit {unit:?}")) && e.contains("ms, s, m, h, d, w"), "{s}: {e}");
        }
        assert!(err("10M").contains("minutes are m"));
        // Whole milliseconds written in microseconds are refused too, not
        // only fractions of one.
        assert!(err("1000us").contains("unit \"us\""));
        let ok = |s: &str| parse_duration(s, MAX_TTL).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("10m"), Duration::from_secs(600));
        assert_eq!(ok("1w 2days 3hours 4minutes 5seconds 6msec"), Duration::from_millis(788_645_006));
        assert_eq!(ok("1hr 1millis"), Duration::from_millis(3_600_001));
    }
}
