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
            let Some((host, port)) = split_host_port(entry) else {
                return bad(&format!("bad host entry {entry:?}"));
            };
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

fn split_host_port(entry: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = entry.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match entry.rfind(':') {
        Some(i) if entry[..i].contains(':') => Some((entry, None)),
        Some(i) => Some((&entry[..i], Some(&entry[i + 1..]))),
        None => Some((entry, None)),
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
