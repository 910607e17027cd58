//! Secure ensembles: TLS (the CA to trust, a client certificate, the name to
//! check) and SASL (DIGEST-MD5, Kerberos), bundled with the scheme
//! credentials into an [`Access`], and the checks that say why a connection
//! fails instead of letting it time out: an untrusted or misnamed server
//! certificate, a plain-text port given TLS and the reverse, a client
//! certificate missing or refused.
//!
//! The checks are TLS handshakes of their own, beside the client's: made
//! when a connection attempt failed (to tell why), and before every attempt
//! when a server name is given (the client names a server by the host it
//! connects to, so that name is checked here). They send no ZooKeeper
//! request.

use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use zookeeper_client as zk;

use super::target::Auth;
use crate::error::{Error, Result};

/// How a session proves who it is and how it talks to one ensemble: scheme
/// credentials (`addauth`), TLS, SASL. Each is applied on every session and
/// again on every reconnect.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// `scheme:credential` pairs (digest, ...).
    pub auth: Vec<Auth>,
    pub tls: Option<Tls>,
    pub sasl: Option<Sasl>,
}

impl Access {
    /// The ids these credentials authenticate as, where they are known
    /// before connecting (digest; SASL DIGEST-MD5 as `sasl:user`).
    pub fn known_ids(&self) -> Vec<(String, String)> {
        let mut ids: Vec<_> = self.auth.iter().filter_map(Auth::acl_id).collect();
        if let Some(Sasl::DigestMd5 { user, .. }) = &self.sasl {
            ids.push(("sasl".to_string(), user.clone()));
        }
        ids
    }

    /// What was presented, for messages: schemes and mechanisms, no secret.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.auth.iter().map(|a| a.scheme.clone()).collect();
        if let Some(s) = &self.sasl {
            parts.push(s.to_string());
        }
        if self.tls.as_ref().is_some_and(|t| t.cert.is_some()) {
            parts.push("x509 (client certificate)".to_string());
        }
        if parts.is_empty() { "none".to_string() } else { parts.join(", ") }
    }

    /// A connector with all of it applied.
    pub(crate) fn connector(&self, session_timeout: Duration) -> Result<zk::Connector> {
        let mut c = zk::Client::connector().with_session_timeout(session_timeout).with_fail_eagerly();
        for a in &self.auth {
            c = c.with_auth(&a.scheme, a.credential.as_bytes());
        }
        if let Some(tls) = &self.tls {
            c = c.with_tls(tls.options.clone());
        }
        match &self.sasl {
            None => {}
            Some(Sasl::DigestMd5 { user, password }) => {
                c = c.with_sasl(zk::SaslOptions::digest_md5(user.clone(), password.clone()));
            }
            Some(Sasl::Gssapi { service, host }) => c = gssapi(c, service, host.as_deref())?,
        }
        Ok(c)
    }

    /// Opens a client on `connect_string` with all of it applied.
    pub(crate) async fn connect(
        &self,
        connector: zk::Connector,
        connect_string: &str,
    ) -> std::result::Result<zk::Client, zk::Error> {
        match self.tls {
            Some(_) => connector.secure_connect(connect_string).await,
            None => connector.connect(connect_string).await,
        }
    }
}

#[cfg(feature = "gssapi")]
fn gssapi(c: zk::Connector, service: &str, host: Option<&str>) -> Result<zk::Connector> {
    let mut o = zk::SaslOptions::gssapi().with_username(service.to_string());
    if let Some(h) = host {
        o = o.with_hostname(h.to_string());
    }
    Ok(c.with_sasl(o))
}

#[cfg(not(feature = "gssapi"))]
fn gssapi(_: zk::Connector, _: &str, _: Option<&str>) -> Result<zk::Connector> {
    Err(Error::Usage(
        "SASL GSSAPI (Kerberos) is not built in: build with the gssapi feature (it needs libkrb5-dev and libclang)"
            .to_string(),
    ))
}

/// A SASL mechanism and what it needs.
#[derive(Clone, PartialEq, Eq)]
pub enum Sasl {
    /// User and password, checked by the servers' JAAS `Server` section.
    DigestMd5 { user: String, password: String },
    /// Kerberos: the ticket comes from the environment (`KRB5CCNAME`, or a
    /// keytab in `KRB5_CLIENT_KTNAME`); the servers' principal is
    /// `service/host`, host the member's name unless given.
    Gssapi { service: String, host: Option<String> },
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sasl::DigestMd5 { user, .. } => write!(f, "DigestMd5({user}:***)"),
            Sasl::Gssapi { service, host } => write!(f, "Gssapi({service}/{})", host.as_deref().unwrap_or("<host>")),
        }
    }
}

impl fmt::Display for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sasl::DigestMd5 { user, .. } => write!(f, "SASL DIGEST-MD5 as {user}"),
            Sasl::Gssapi { service, .. } => write!(f, "SASL GSSAPI (Kerberos, service {service})"),
        }
    }
}

/// TLS to one ensemble: the CA its certificates must chain to, an optional
/// client certificate (the servers then know the session as `x509:<subject>`),
/// and the name the servers' certificates must hold.
#[derive(Clone)]
pub struct Tls {
    ca: PathBuf,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    server_name: Option<String>,
    /// What the client is given.
    options: zk::TlsOptions,
    /// The same trust and identity for the checks, names verified.
    check: Arc<rustls::ClientConfig>,
}

impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        (&self.ca, &self.cert, &self.key, &self.server_name) == (&other.ca, &other.cert, &other.key, &other.server_name)
    }
}

impl Eq for Tls {}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("server_name", &self.server_name)
            .finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read_pem(what: &str, path: &Path) -> Result<String> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::Usage(format!("cannot read the {what} {}: {e}", path.display())))?;
    String::from_utf8(bytes).map_err(|_| Error::Usage(format!("the {what} {} is not PEM text", path.display())))
}

impl Tls {
    /// Reads and checks the files: the CA (PEM, one certificate or more),
    /// and the client certificate and its private key (PEM) when given;
    /// `server_name` is the name every member's certificate must hold, in
    /// place of the host it is reached by.
    pub fn load(ca: &Path, identity: Option<(&Path, &Path)>, server_name: Option<&str>) -> Result<Tls> {
        let ca_pem = read_pem("TLS CA file", ca)?;
        let mut roots = rustls::RootCertStore::empty();
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert =
                cert.map_err(|e| Error::Usage(format!("the TLS CA file {} is not valid PEM: {e}", ca.display())))?;
            found += 1;
            roots.add(cert).map_err(|e| {
                Error::Usage(format!("the TLS CA file {} holds a certificate that is no CA: {e}", ca.display()))
            })?;
        }
        if found == 0 {
            return Err(Error::Usage(format!("the TLS CA file {} holds no certificate (PEM)", ca.display())));
        }
        let zk_err = |what: &str, e: zk::Error| Error::Usage(format!("{what}: {e}"));
        let mut options = zk::TlsOptions::new()
            .with_pem_ca(&ca_pem)
            .map_err(|e| zk_err(&format!("the TLS CA file {}", ca.display()), e))?;
        if let Some(name) = server_name {
            ServerName::try_from(name.to_string()).map_err(|_| {
                Error::Usage(format!("TLS server name {name:?} is neither a DNS name nor an IP address"))
            })?;
            // SAFETY (of the connection, not of memory): the client then
            // checks the chain only; every member's name is checked against
            // `server_name` by a handshake of our own before each attempt
            // (`check_names`).
            options = unsafe { options.with_no_hostname_verification() };
        }
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("TLS versions: {e}")))?
            .with_root_certificates(roots);
        let check = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let cert_pem = read_pem("TLS client certificate", cert)?;
                let key_pem = read_pem("TLS client key", key)?;
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| {
                        Error::Usage(format!("the TLS client certificate {} is not valid PEM: {e}", cert.display()))
                    })?;
                if chain.is_empty() {
                    return Err(Error::Usage(format!(
                        "the TLS client certificate {} holds no certificate (PEM)",
                        cert.display()
                    )));
                }
                let private = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
                    Error::Usage(format!(
                        "the TLS client key {} holds no private key (PEM: PRIVATE KEY, RSA or EC PRIVATE KEY): {e}",
                        key.display()
                    ))
                })?;
                rustls::sign::CertifiedKey::from_der(chain.clone(), private.clone_key(), &provider).map_err(|e| {
                    Error::Usage(format!(
                        "the TLS client key {} does not go with the certificate {}: {e}",
                        key.display(),
                        cert.display()
                    ))
                })?;
                options = options
                    .with_pem_identity(&cert_pem, &key_pem)
                    .map_err(|e| zk_err(&format!("the TLS client certificate {}", cert.display()), e))?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|e| Error::Usage(format!("the TLS client certificate {}: {e}", cert.display())))?
            }
        };
        Ok(Tls {
            ca: ca.to_path_buf(),
            cert: identity.map(|(c, _)| c.to_path_buf()),
            key: identity.map(|(_, k)| k.to_path_buf()),
            server_name: server_name.map(str::to_string),
            options,
            check: Arc::new(check),
        })
    }

    pub fn ca(&self) -> &Path {
        &self.ca
    }

    pub fn cert(&self) -> Option<&Path> {
        self.cert.as_deref()
    }

    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }
}

/// Why TLS to a member fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsProblem {
    /// Its certificate does not chain to the CA given (or is expired, or
    /// revoked): the reason.
    Untrusted(String),
    /// Its certificate is not for the name checked.
    WrongName { name: String, presented: Vec<String> },
    /// The port answers, but not with TLS.
    NotTls,
    /// A plain-text session was offered to a port that speaks only TLS.
    TlsOnly,
    /// The member asks for a client certificate and none was given.
    ClientCertRequired,
    /// The member refused the client certificate given.
    ClientCertRejected(String),
    /// Anything else the handshake failed with.
    Handshake(String),
}

impl fmt::Display for TlsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsProblem::Untrusted(why) => write!(f, "presented a certificate the TLS CA does not vouch for ({why})"),
            TlsProblem::WrongName { name, presented } => write!(
                f,
                "presented a certificate that is not for {name} (it names {})",
                if presented.is_empty() { "nothing".to_string() } else { presented.join(", ") }
            ),
            TlsProblem::NotTls => f.write_str("does not speak TLS on that port (a plain-text client port?)"),
            TlsProblem::TlsOnly => {
                f.write_str("speaks only TLS on that port (a secure client port) to a plain-text session")
            }
            TlsProblem::ClientCertRequired => f.write_str("requires a client certificate"),
            TlsProblem::ClientCertRejected(why) => write!(f, "refused the client certificate ({why})"),
            TlsProblem::Handshake(why) => write!(f, "failed the TLS handshake: {why}"),
        }
    }
}

/// What one check of one member found.
enum Found {
    /// Nothing wrong: the handshake completed, the certificate checked.
    Nothing,
    /// Nothing to say: the member does not answer, or closed the
    /// connection before it was sent anything (a connection limit, a
    /// member going down), or the check ran out of time.
    Unanswered,
    Problem(TlsProblem),
}

/// A verifier that only notes that the server sent a certificate: for
/// telling a TLS port from a plain one. It accepts nothing, so no data ever
/// goes over a connection it checked.
#[derive(Debug)]
struct Sniff(Arc<rustls::crypto::CryptoProvider>);

const SNIFFED: &str = "zkrepl: the server presented a certificate";

impl rustls::client::danger::ServerCertVerifier for Sniff {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Err(rustls::Error::General(SNIFFED.to_string()))
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(SNIFFED.to_string()))
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(SNIFFED.to_string()))
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `host:port` (brackets around an IPv6 address) split for a TCP connect
/// and a TLS server name.
fn split(member: &str) -> Option<(String, u16)> {
    super::target::split_entry(member).map(|(host, port)| (host.to_string(), port))
}

fn tcp(host: &str, port: u16, limit: Duration) -> Option<TcpStream> {
    // Every address the name has, in turn (`localhost` may give ::1 first
    // to a server that listens on 127.0.0.1).
    let s = (host, port).to_socket_addrs().ok()?.find_map(|addr| TcpStream::connect_timeout(&addr, limit).ok())?;
    s.set_read_timeout(Some(limit)).ok()?;
    s.set_write_timeout(Some(limit)).ok()?;
    Some(s)
}

/// The rustls error inside an I/O error, if any.
fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// A name as rustls presents it (`DnsName("zk1")`, `IpAddress(10.0.0.1)`),
/// bare.
fn bare_name(presented: &str) -> String {
    match presented.split_once('(').and_then(|(_, rest)| rest.strip_suffix(')')) {
        Some(inner) => inner.trim_matches('"').to_string(),
        None => presented.to_string(),
    }
}

/// What a failed handshake (or the read after it) says.
fn classify(e: &std::io::Error, name: &str, with_cert: bool) -> Found {
    use rustls::AlertDescription as A;
    use rustls::CertificateError as C;
    let Some(r) = rustls_error(e) else {
        return match e.kind() {
            // The member took the ClientHello and hung up, or sent bytes
            // that are no TLS: a plain port.
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => Found::Problem(TlsProblem::NotTls),
            _ => Found::Unanswered,
        };
    };
    Found::Problem(match r {
        rustls::Error::InvalidCertificate(C::NotValidForName) => {
            TlsProblem::WrongName { name: name.to_string(), presented: Vec::new() }
        }
        rustls::Error::InvalidCertificate(C::NotValidForNameContext { presented, .. }) => TlsProblem::WrongName {
            name: name.to_string(),
            presented: presented.iter().map(|p| bare_name(p)).collect(),
        },
        rustls::Error::InvalidCertificate(c) => TlsProblem::Untrusted(format!("{c:?}")),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => TlsProblem::NotTls,
        rustls::Error::AlertReceived(A::CertificateRequired) => TlsProblem::ClientCertRequired,
        // Java servers answer a missing certificate with bad_certificate.
        rustls::Error::AlertReceived(A::BadCertificate) if !with_cert => TlsProblem::ClientCertRequired,
        rustls::Error::AlertReceived(
            a @ (A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied),
        ) => TlsProblem::ClientCertRejected(format!("alert {a:?}")),
        other => TlsProblem::Handshake(other.to_string()),
    })
}

/// One TLS handshake with `member` on `config`; `after` waits that long for
/// what the member says once the handshake is done (a TLS 1.3 server sends
/// its verdict on the client certificate then).
fn handshake(
    config: &Arc<rustls::ClientConfig>,
    member: &str,
    name: &str,
    limit: Duration,
    after: Option<Duration>,
) -> Found {
    let with_cert = config.client_auth_cert_resolver.has_certs();
    let Some((host, port)) = split(member) else { return Found::Unanswered };
    let Some(mut sock) = tcp(&host, port, limit) else { return Found::Unanswered };
    let Ok(server) = ServerName::try_from(name.to_string()) else {
        return Found::Problem(TlsProblem::Handshake(format!("{name:?} is no server name")));
    };
    let Ok(mut conn) = rustls::ClientConnection::new(config.clone(), server) else { return Found::Unanswered };
    // A member that closes a connection it was sent nothing on (at its
    // connection limit, going down) says nothing about TLS: only a hang-up
    // after the ClientHello does.
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    match sock.peek(&mut [0u8; 1]) {
        Err(e) if is_timeout(&e) => {}
        _ => return Found::Unanswered,
    }
    let _ = sock.set_read_timeout(Some(limit));
    let deadline = Instant::now() + limit;
    while conn.is_handshaking() {
        if Instant::now() > deadline {
            return Found::Unanswered;
        }
        if let Err(e) = conn.complete_io(&mut sock) {
            return classify(&e, name, with_cert);
        }
    }
    if let Some(wait) = after {
        let _ = sock.set_read_timeout(Some(wait));
        let mut stream = rustls::Stream::new(&mut conn, &mut sock);
        let _ = stream.flush();
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Err(e) if is_timeout(&e) => {}
            Err(e) => return classify(&e, name, with_cert),
            // A clean close or a byte unasked: the member's call, not a
            // certificate problem this can name.
            Ok(_) => {}
        }
    }
    conn.send_close_notify();
    let _ = conn.complete_io(&mut sock);
    Found::Nothing
}

impl Tls {
    fn name_for<'a>(&'a self, host: &'a str) -> &'a str {
        self.server_name.as_deref().unwrap_or(host)
    }

    /// Why TLS to `member` fails, when a handshake of our own can tell
    /// (`None`: it works, or the member does not answer at all). A port that
    /// hangs up is asked twice, so a member going down is not taken for a
    /// plain port.
    fn diagnose(&self, member: &str, limit: Duration) -> Option<TlsProblem> {
        let (host, _) = split(member)?;
        let name = self.name_for(&host).to_string();
        let wait = Some(Duration::from_millis(300).min(limit));
        match handshake(&self.check, member, &name, limit, wait) {
            Found::Nothing | Found::Unanswered => None,
            Found::Problem(TlsProblem::NotTls) => {
                std::thread::sleep(Duration::from_millis(200));
                match handshake(&self.check, member, &name, limit, wait) {
                    Found::Problem(p) => Some(p),
                    Found::Nothing | Found::Unanswered => None,
                }
            }
            Found::Problem(p) => Some(p),
        }
    }
}

/// Why a failed connection to `members` failed, when every member that
/// answers says the same kind of thing: the member and the problem.
/// `None` when a member works, or none answers.
pub(crate) async fn diagnose(access: &Access, members: &[String], limit: Duration) -> Option<(String, TlsProblem)> {
    let members = members.to_vec();
    let access = access.clone();
    let limit = limit.clamp(Duration::from_millis(100), Duration::from_secs(3));
    tokio::task::spawn_blocking(move || {
        let mut first = None;
        for m in &members {
            let found = match &access.tls {
                Some(tls) => tls.diagnose(m, limit),
                None => SNIFF.speaks_tls(m, limit).then_some(TlsProblem::TlsOnly),
            };
            match found {
                Some(p) => {
                    first.get_or_insert((m.clone(), p));
                }
                // A member that answers and has nothing wrong: the failure
                // was something else.
                None if split(m).and_then(|(h, p)| tcp(&h, p, limit)).is_some() => return None,
                None => {}
            }
        }
        first
    })
    .await
    .ok()
    .flatten()
}

/// Why Kerberos to the first of `members` cannot start, when the access is
/// Kerberos and our own first step of the context the client would make
/// fails (the credentials from the environment, a service ticket for the
/// servers' principal): the member, the principal and the reason.
#[cfg(feature = "gssapi")]
pub(crate) async fn kerberos_problem(access: &Access, members: &[String]) -> Option<(String, String, String)> {
    let Some(Sasl::Gssapi { service, host }) = &access.sasl else { return None };
    let member = members.first()?.clone();
    let host = match host {
        Some(h) => h.clone(),
        None => split(&member)?.0,
    };
    let service = service.clone();
    tokio::task::spawn_blocking(move || {
        use libgssapi::context::{ClientCtx, CtxFlags};
        use libgssapi::credential::{Cred, CredUsage};
        use libgssapi::name::Name;
        use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_HOSTBASED_SERVICE, OidSet};
        let principal = format!("{service}/{host}");
        let first_step = || -> Result<(), libgssapi::error::Error> {
            let mut mechs = OidSet::new()?;
            mechs.add(&GSS_MECH_KRB5)?;
            let cred = Cred::acquire(None, None, CredUsage::Initiate, Some(&mechs))?;
            let name = Name::new(format!("{service}@{host}").as_bytes(), Some(&GSS_NT_HOSTBASED_SERVICE))?;
            let mut ctx = ClientCtx::new(Some(cred), name, CtxFlags::GSS_C_MUTUAL_FLAG, Some(&GSS_MECH_KRB5));
            ctx.step(None, None)?;
            Ok(())
        };
        first_step().err().map(|e| (member, principal, e.to_string().trim().to_string()))
    })
    .await
    .ok()
    .flatten()
}

#[cfg(not(feature = "gssapi"))]
pub(crate) async fn kerberos_problem(_: &Access, _: &[String]) -> Option<(String, String, String)> {
    None
}

/// What the name check of `--tls-server-name` found.
pub(crate) enum NameCheck {
    /// The members whose certificate holds the name, just checked: the
    /// only ones the client may be given (fail closed: a member that did
    /// not answer the check, or hung up, is left out).
    Checked(Vec<String>),
    /// A member presented a certificate that is not for the name (or not
    /// of the CA).
    Problem(String, TlsProblem),
}

/// The name check of `--tls-server-name` on every member.
pub(crate) async fn check_names(tls: &Tls, members: &[String], limit: Duration) -> NameCheck {
    let (tls, members) = (tls.clone(), members.to_vec());
    let limit = limit.clamp(Duration::from_millis(100), Duration::from_secs(3));
    tokio::task::spawn_blocking(move || {
        let mut checked = Vec::new();
        for m in &members {
            let Some((host, _)) = split(m) else { continue };
            match handshake(&tls.check, m, tls.name_for(&host), limit, None) {
                Found::Nothing => checked.push(m.clone()),
                // A port that hangs up is left out; the connection to the
                // others (or its diagnosis, which asks twice) tells.
                Found::Problem(TlsProblem::NotTls) | Found::Unanswered => {}
                Found::Problem(p) => return NameCheck::Problem(m.clone(), p),
            }
        }
        NameCheck::Checked(checked)
    })
    .await
    .unwrap_or(NameCheck::Checked(Vec::new()))
}

/// A sniffing configuration for plain-text sessions (no CA needed: it
/// accepts no certificate).
static SNIFF: std::sync::LazyLock<Sniffer> = std::sync::LazyLock::new(Sniffer::new);

struct Sniffer(Arc<rustls::ClientConfig>);

impl Sniffer {
    fn new() -> Sniffer {
        let provider = provider();
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Sniff(provider)))
            .with_no_client_auth();
        Sniffer(Arc::new(config))
    }

    fn speaks_tls(&self, member: &str, limit: Duration) -> bool {
        let Some((host, port)) = split(member) else { return false };
        let Some(mut sock) = tcp(&host, port, limit) else { return false };
        // Any name does: the certificate is not checked.
        let server = ServerName::try_from(host).unwrap_or_else(|_| ServerName::try_from("zookeeper").expect("a name"));
        let Ok(mut conn) = rustls::ClientConnection::new(self.0.clone(), server.to_owned()) else { return false };
        let deadline = Instant::now() + limit;
        while conn.is_handshaking() && Instant::now() < deadline {
            if let Err(e) = conn.complete_io(&mut sock) {
                return matches!(rustls_error(&e), Some(rustls::Error::General(m)) if m == SNIFFED);
            }
        }
        false
    }
}
