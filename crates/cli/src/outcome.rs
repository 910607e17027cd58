//! What a command ends with: its exit status, and errors told on one line
//! with what to do about them in this program's options.

use zkrepl::Side;

/// Exit statuses: 0 done, 1 differences found, 2 error, 130 interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Differences = 1,
    Error = 2,
    Interrupted = 130,
}

pub struct Outcome {
    pub exit: Exit,
}

/// Which options carry credentials: `--src-auth`/`--dst-auth`, or `--auth`
/// for a command of one tree.
#[derive(Clone, Copy, Debug)]
pub enum Flags {
    Pair,
    One,
}

impl Flags {
    /// How the options of `side` begin.
    fn prefix(self, side: Side) -> &'static str {
        match (self, side) {
            (Flags::One, _) => "--",
            (Flags::Pair, Side::Source) => "--src-",
            (Flags::Pair, Side::Destination) => "--dst-",
        }
    }

    fn auth(self, side: Side) -> String {
        format!("{}auth", self.prefix(side))
    }
}

/// Prints an engine error on one line, with what to do about it when there
/// is something to say.
pub fn print_error(e: &zkrepl::Error, flags: Flags) {
    print_error_line(e, hint(e, flags).as_deref());
}

/// Prints any error on one line: `zkrepl: error: <what>[; <hint>]`.
pub fn print_error_line(e: &dyn std::fmt::Display, hint: Option<&str>) {
    match hint {
        Some(h) => eprintln!("zkrepl: error: {e}; {h}"),
        None => eprintln!("zkrepl: error: {e}"),
    }
}

/// What to do about an error, in this program's options. The engine's
/// messages say what happened; the options to change it are the command
/// line's.
pub fn hint(e: &zkrepl::Error, flags: Flags) -> Option<String> {
    use zkrepl::Error as E;
    Some(match e {
        E::AuthRejected { side, .. } => {
            let p = flags.prefix(*side);
            format!(
                "check the credentials: {p}auth (the usual form is digest:user:password), or {p}sasl-user and its password"
            )
        }
        E::NoAuth { side, .. } => {
            let (f, p) = (flags.auth(*side), flags.prefix(*side));
            format!(
                "pass an identity the node's ACL grants: {f} digest:user:password, {p}sasl-user USER (sasl ids), or {p}tls-cert and {p}tls-key (x509 ids)"
            )
        }
        E::Kerberos { side, .. } => {
            let p = flags.prefix(*side);
            format!(
                "get a ticket first (kinit, or a keytab in KRB5_CLIENT_KTNAME), and check the servers' principal: {p}sasl-service and {p}sasl-host"
            )
        }
        E::Tls { side, problem, .. } => {
            use zkrepl::zk::secure::TlsProblem as P;
            let p = flags.prefix(*side);
            match problem {
                P::Untrusted(_) => format!("give {p}tls-ca the CA that signed the servers' certificates"),
                P::WrongName { .. } => {
                    format!("connect by a name the certificate holds, or give it as {p}tls-server-name NAME")
                }
                P::NotTls => format!(
                    "give the servers' secure client port (secureClientPort), or drop {p}tls-ca for a plain-text port"
                ),
                P::TlsOnly => format!(
                    "give {p}tls-ca CA.pem for TLS (and {p}tls-cert/{p}tls-key when the servers ask for a client certificate)"
                ),
                P::ClientCertRequired => format!("give {p}tls-cert and {p}tls-key"),
                P::ClientCertRejected(_) => {
                    format!("give {p}tls-cert a certificate signed by a CA the servers trust (their ssl.trustStore)")
                }
                P::Handshake(_) => return None,
            }
        }
        E::NodeTooLarge { .. } => {
            "raise jute.maxbuffer on the destination servers and pass --max-request-bytes".to_string()
        }
        E::AclMasked { side, .. } => format!(
            "pass {} digest:USER:PASSWORD for an id with ADMIN there (or a super user){}",
            flags.auth(*side),
            if *side == Side::Source && matches!(flags, Flags::Pair) {
                ", or --acl open to write OPEN ACLs instead"
            } else {
                ""
            }
        ),
        E::DestinationNotEmpty { .. } => {
            "pass --update to add and change nodes, or --mirror to also delete what the source lacks".to_string()
        }
        E::Overlap { .. } => "choose a --dst-root outside it".to_string(),
        E::DeleteLimit { limit, .. } => format!("the limit is --max-delete {limit}"),
        E::PadLimit { limit, .. } => format!("the limit is --max-pad {limit}"),
        E::Undeletable { .. } => "give --dst-auth an identity holding DELETE or ADMIN there".to_string(),
        E::Unreachable { .. } => "check the address and port, or allow longer with --timeout".to_string(),
        E::SessionLost { .. } => {
            "the servers were away longer than --timeout; re-running converges (or allow longer with --timeout / --session-timeout)".to_string()
        }
        _ => return None,
    })
}
