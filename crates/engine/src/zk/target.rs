//! Where a tree lives: a connect string with an optional chroot, the root
//! path inside it, and the credentials to present.

use std::fmt;

use base64::Engine as _;
use sha1::Digest as _;

use super::path;
use crate::error::{Error, Result};

/// A ZooKeeper connect string split into its host list and chroot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hosts {
    /// `host:port` entries, port filled in (default 2181).
    pub hosts: Vec<String>,
    /// The chroot suffix (`/` when none).
    pub chroot: String,
}

impl Hosts {
    /// Parses `h1:2181,h2:2181[/chroot]`.
    pub fn parse(input: &str) -> Result<Hosts> {
        let bad = |reason: &str| Err(Error::InvalidHosts { input: input.to_string(), reason: reason.to_string() });
        if input.contains("://") {
            return bad(
                "a scheme prefix (tcp://, tcp+tls://) is not taken: give the hosts alone, and TLS with its options",
            );
        }
        // Whitespace around the host list is dropped; the chroot is taken
        // verbatim (a name may end with a space).
        let (list, chroot) = match input.find('/') {
            Some(i) => (input[..i].trim(), &input[i..]),
            None => (input.trim(), "/"),
        };
        if list.is_empty() {
            return bad("no host");
        }
        if chroot != "/" {
            path::validate(chroot)
                .map_err(|e| Error::InvalidHosts { input: input.to_string(), reason: format!("chroot: {e}") })?;
        }
        let mut hosts = Vec::new();
        for entry in list.split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                return bad("empty host entry");
            }
            let (host, port) = split_host_port(entry).map_err(|reason| Error::InvalidHosts {
                input: input.to_string(),
                reason: format!("bad host entry {entry:?}: {reason}"),
            })?;
            if host.is_empty() || host.contains(char::is_whitespace) {
                return bad(&format!("bad host {host:?}"));
            }
            let port: u16 = match port {
                None => 2181,
                Some(p) => match p.parse::<u16>() {
                    Ok(p) if p > 0 => p,
                    _ => return bad(&format!("bad port {p:?} in {entry:?}")),
                },
            };
            hosts.push(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") });
        }
        Ok(Hosts { hosts, chroot: chroot.to_string() })
    }

    /// The connect string for the client, chroot included.
    pub fn connect_string(&self) -> String {
        let mut s = self.hosts.join(",");
        if self.chroot != "/" {
            s.push_str(&self.chroot);
        }
        s
    }

    /// Host list without chroot.
    pub fn host_list(&self) -> String {
        self.hosts.join(",")
    }

    /// Every socket address the host entries resolve to (entries that do
    /// not resolve add none). An IPv6 address is looked up without its
    /// brackets, so that a zone given by name (`[fe80::1%eth0]:2181`)
    /// resolves as it does when connecting.
    pub async fn socket_addrs(&self) -> Vec<std::net::SocketAddr> {
        let mut out = Vec::new();
        for entry in &self.hosts {
            let Some((host, port)) = split_entry(entry) else { continue };
            if let Ok(addrs) = tokio::net::lookup_host((host, port)).await {
                out.extend(addrs);
            }
        }
        out
    }

    /// The absolute path on the server of `root` given inside the chroot.
    pub fn absolute(&self, root: &str) -> String {
        if self.chroot == "/" {
            root.to_string()
        } else {
            path::join(&self.chroot, if root == "/" { "" } else { root })
        }
    }
}

impl fmt::Display for Hosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.connect_string())
    }
}

/// A `host:port` entry as [`Hosts`] holds it, split for a lookup: an IPv6
/// address without its brackets.
pub(crate) fn split_entry(entry: &str) -> Option<(&str, u16)> {
    let (host, port) = entry.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Some((host, port.parse().ok()?))
}

/// How to write an IPv6 address with a port.
const IPV6_HINT: &str = "write an IPv6 address in brackets, [addr]:port, e.g. [::1]:2181";

/// Splits `host[:port]`. A name with two colons or more can only be an IPv6
/// address: with a port, it goes in brackets; bare, it is taken as an address
/// without a port only when it cannot be read as `address:port` too
/// (`::1`, `fe80::1`, `fe80::1%eth0`). One whose last group is all digits
/// after an address (`::1:2181`, `fe80::1:2181`) is refused, naming both
/// readings. Anything else (`x::y`) is refused here rather than left to time
/// out connecting.
fn split_host_port(entry: &str) -> std::result::Result<(&str, Option<&str>), String> {
    let ipv6 = |addr: &str| {
        // A zone (`fe80::1%eth0`) follows the address: an interface name
        // or number.
        let (bare, zone_ok) = match addr.split_once('%') {
            Some((a, zone)) => {
                (a, !zone.is_empty() && zone.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
            }
            None => (addr, true),
        };
        zone_ok && bare.parse::<std::net::Ipv6Addr>().is_ok()
    };
    if let Some(rest) = entry.strip_prefix('[') {
        let end = rest.find(']').ok_or_else(|| format!("no closing ']' ({IPV6_HINT})"))?;
        let host = &rest[..end];
        if !ipv6(host) {
            return Err(format!(
                "{host:?} in brackets is not an IPv6 address (brackets are for [addr]:port; a name goes without them, name:port)"
            ));
        }
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(p))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("{after:?} after ']' ({IPV6_HINT})")),
        };
    }
    match entry.rfind(':') {
        Some(i) if entry[..i].contains(':') => {
            let (addr, last) = (&entry[..i], &entry[i + 1..]);
            if ipv6(addr) && !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
                let whole = if ipv6(entry) { format!("the address {entry}, or ") } else { String::new() };
                Err(format!(
                    "ambiguous: {whole}the address {addr} with port {last}; write [{addr}]:{last} for the port{}",
                    if ipv6(entry) { format!(", [{entry}] for the address alone") } else { String::new() }
                ))
            } else if ipv6(entry) {
                Ok((entry, None))
            } else {
                Err(format!("not a host:port, nor an IPv6 address ({IPV6_HINT})"))
            }
        }
        Some(i) => Ok((&entry[..i], Some(&entry[i + 1..]))),
        None => Ok((entry, None)),
    }
}

/// Splits zkcopy's `host:port[,host:port]/path` into hosts and a root path.
pub fn parse_zkcopy_location(input: &str) -> Result<(Hosts, String)> {
    let hosts = Hosts::parse(input)?;
    let root = hosts.chroot.clone();
    Ok((Hosts { hosts: hosts.hosts, chroot: "/".to_string() }, root))
}

/// Credentials presented on every (re)connect: `scheme:credential`.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    pub scheme: String,
    pub credential: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Auth({}:***)", self.scheme)
    }
}

impl Auth {
    /// Parses `digest:user:password` (any `scheme:credential`).
    pub fn parse(input: &str) -> Result<Auth> {
        match input.split_once(':') {
            Some((scheme, credential)) if !scheme.is_empty() && !credential.is_empty() => {
                if scheme == "digest" && !credential.contains(':') {
                    return Err(Error::Usage(format!(
                        "auth {scheme}:... must be digest:user:password (no ':' between user and password)"
                    )));
                }
                Ok(Auth { scheme: scheme.to_string(), credential: credential.to_string() })
            }
            _ => Err(Error::Usage(format!("auth {input:?} must be scheme:credential, e.g. digest:user:password"))),
        }
    }

    /// The ACL id this credential authenticates as, when it can be computed
    /// client-side (digest: `user:base64(sha1(user:password))`).
    pub fn acl_id(&self) -> Option<(String, String)> {
        if self.scheme != "digest" {
            return None;
        }
        Some(("digest".to_string(), digest_id(&self.credential)))
    }
}

/// `user:password` -> `user:base64(sha1(user:password))`, the id ZooKeeper
/// stores in digest ACLs.
pub fn digest_id(credential: &str) -> String {
    let user = credential.split(':').next().unwrap_or("");
    let hash = sha1::Sha1::digest(credential.as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_connect_strings() {
        let h = Hosts::parse("a:1,b:2/x/y").unwrap();
        assert_eq!(h.hosts, vec!["a:1", "b:2"]);
        assert_eq!(h.chroot, "/x/y");
        assert_eq!(h.connect_string(), "a:1,b:2/x/y");
        assert_eq!(h.absolute("/r"), "/x/y/r");
        assert_eq!(h.absolute("/"), "/x/y");
        let h = Hosts::parse("localhost").unwrap();
        assert_eq!(h.hosts, vec!["localhost:2181"]);
        assert_eq!(h.absolute("/r"), "/r");
        let h = Hosts::parse("[::1]:2182").unwrap();
        assert_eq!(h.hosts, vec!["[::1]:2182"]);
        let h = Hosts::parse(" a:1/x /y ").unwrap();
        assert_eq!(h.chroot, "/x /y ", "the chroot is verbatim");
        for bad in ["", "a:0", "a:99999", "a:x", "a,,b", "a:1/x/", "a b:1", "/chroot"] {
            assert!(Hosts::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn ipv6_addresses_bare_or_in_brackets() {
        for (input, host) in [
            ("::1", "[::1]:2181"),
            ("[::1]", "[::1]:2181"),
            ("[::1]:2182", "[::1]:2182"),
            ("fe80::1", "[fe80::1]:2181"),
            ("[fe80::1:2]", "[fe80::1:2]:2181"),
            ("2001:db8::8a2e:370:abcd", "[2001:db8::8a2e:370:abcd]:2181"),
            ("2001:db8::1", "[2001:db8::1]:2181"),
            ("[2001:db8::8a2e:370:7334]", "[2001:db8::8a2e:370:7334]:2181"),
            ("1:2:3:4:5:6:7:8", "[1:2:3:4:5:6:7:8]:2181"),
            ("[fe80::1%eth0]:2181", "[fe80::1%eth0]:2181"),
            ("[2001:db8::1]:2281", "[2001:db8::1]:2281"),
            ("::ffff:127.0.0.1", "[::ffff:127.0.0.1]:2181"),
            ("fe80::1%eth0", "[fe80::1%eth0]:2181"),
        ] {
            assert_eq!(Hosts::parse(input).unwrap().hosts, vec![host], "{input}");
        }
        assert_eq!(Hosts::parse("a:1,[::1]:2,::2/c").unwrap().hosts, vec!["a:1", "[::1]:2", "[::2]:2181"]);
    }

    #[test]
    fn a_bare_ipv6_address_that_may_end_in_a_port_is_refused() {
        for (input, addr, port) in [
            ("::1:2181", "::1", "2181"),
            ("fe80::1:2181", "fe80::1", "2181"),
            ("fe80::1:2", "fe80::1", "2"),
            ("2001:db8::8a2e:370:7334", "2001:db8::8a2e:370", "7334"),
            ("fe80::1%eth0:2181", "fe80::1%eth0", "2181"),
        ] {
            let e = Hosts::parse(input).expect_err(input).to_string();
            assert!(e.contains("ambiguous") && e.contains(&format!("[{addr}]:{port}")), "{input}: {e}");
            assert!(e.contains(&format!("the address {addr} with port {port}")), "{input}: {e}");
        }
        let e = Hosts::parse("zk1:2181,::1:2181").unwrap_err().to_string();
        assert!(e.contains("the address ::1:2181, or the address ::1 with port 2181"), "{e}");
        assert!(e.contains("[::1:2181] for the address alone"), "{e}");
        // A zone is an interface name or number, without a colon.
        for input in ["fe80::1%", "fe80::1%eth0:x", "[fe80::1%eth0:1]:2181"] {
            assert!(Hosts::parse(input).is_err(), "{input}");
        }
    }

    #[test]
    fn names_with_colons_that_are_no_ipv6_address_are_refused_at_once() {
        for input in ["x::y", "a:b:c", "zk1:2181:2182", ":::", "1::2::3", "a:1,x::y", "[x::y]:2181", "[::1", "[::1]x"] {
            let e = Hosts::parse(input).expect_err(input).to_string();
            assert!(e.contains("bad host entry"), "{input}: {e}");
        }
        let e = Hosts::parse("a:1,x::y/app").unwrap_err().to_string();
        assert!(e.contains("\"x::y\"") && e.contains("[addr]:port"), "{e}");
    }

    #[tokio::test]
    async fn host_entries_resolve_zones_by_name_too() {
        let addrs = |s: &str| {
            let h = Hosts::parse(s).unwrap();
            async move { h.socket_addrs().await.iter().map(|a| a.to_string()).collect::<Vec<_>>() }
        };
        assert_eq!(addrs("[::1]:2182,127.0.0.1:2183").await, vec!["[::1]:2182", "127.0.0.1:2183"]);
        assert_eq!(addrs("[fe80::1%1]:2181").await, vec!["[fe80::1%1]:2181"]);
        // By name: the loopback interface, there on every Linux machine.
        let lo = Hosts::parse("[fe80::1%lo]:2181").unwrap().socket_addrs().await;
        assert!(
            matches!(lo.as_slice(), [std::net::SocketAddr::V6(a)]
                if a.ip().to_string() == "fe80::1" && a.port() == 2181 && a.scope_id() != 0),
            "{lo:?}"
        );
        assert_eq!(Hosts::parse("fe80::1%lo").unwrap().socket_addrs().await, lo);
    }

    #[test]
    fn parses_zkcopy_locations() {
        let (h, root) = parse_zkcopy_location("127.0.0.1:2181/pegasus/c1").unwrap();
        assert_eq!(h.connect_string(), "127.0.0.1:2181");
        assert_eq!(root, "/pegasus/c1");
    }

    #[test]
    fn parses_auth_and_digest_ids() {
        let a = Auth::parse("digest:user:pw").unwrap();
        assert_eq!(a.scheme, "digest");
        assert_eq!(a.credential, "user:pw");
        assert!(Auth::parse("digest").is_err());
        assert!(Auth::parse("digest:nopassword").is_err());
        // Reference value from ZooKeeper's DigestAuthenticationProvider.generateDigest("super:test").
        assert_eq!(digest_id("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }
}
