//! Secure servers for tests: a throwaway PKI made here (a CA, a server
//! certificate, client certificates, and a second CA that signed none of
//! the server's), and what a server needs for a TLS client port, x509 ids
//! and SASL DIGEST-MD5 users.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use zkrepl::error::{Error, Result};

/// The names the server certificate holds (no IP address: a client that
/// connects to 127.0.0.1 must be told which name to check).
pub const SERVER_NAMES: [&str; 2] = ["zk.zkrepl.test", "localhost"];

/// A client certificate and its key, PEM files.
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The subject's common name.
    pub cn: String,
}

/// Certificates for one test, in `dir`.
#[derive(Clone, Debug)]
pub struct Pki {
    pub dir: PathBuf,
    /// The CA that signed the server's and the clients' certificates.
    pub ca: PathBuf,
    /// The server's key and certificate in one PEM file (a ZooKeeper PEM
    /// key store).
    pub server: PathBuf,
    pub client: ClientIdentity,
    /// A second client, of the same CA.
    pub other_client: ClientIdentity,
    /// Another CA: trusts nothing the server presents.
    pub foreign_ca: PathBuf,
    /// A client signed by the foreign CA: the server refuses it.
    pub foreign_client: ClientIdentity,
}

fn rc(e: rcgen::Error) -> Error {
    Error::Usage(format!("making test certificates: {e}"))
}

fn ca(cn: &str) -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(p, KeyPair::generate().map_err(rc)?).map_err(rc)
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String)> {
    let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).map_err(rc)?;
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![usage];
    let key = KeyPair::generate().map_err(rc)?;
    let cert = p.signed_by(&key, issuer).map_err(rc)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl Pki {
    /// Makes every certificate and writes the files into `dir`.
    pub fn generate(dir: &Path) -> Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            std::fs::write(&p, text)?;
            Ok(p)
        };
        let main = ca("zkrepl test CA")?;
        let foreign = ca("zkrepl foreign CA")?;
        let (cert, key) = leaf(&main, "zk.zkrepl.test", &SERVER_NAMES, ExtendedKeyUsagePurpose::ServerAuth)?;
        let server = write("server.pem", &format!("{key}{cert}"))?;
        let client = |issuer: &CertifiedIssuer<'static, KeyPair>, cn: &str, tag: &str| -> Result<ClientIdentity> {
            let (cert, key) = leaf(issuer, cn, &[], ExtendedKeyUsagePurpose::ClientAuth)?;
            Ok(ClientIdentity {
                cert: write(&format!("{tag}.crt"), &cert)?,
                key: write(&format!("{tag}.key"), &key)?,
                cn: cn.to_string(),
            })
        };
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca: write("ca.pem", &main.pem())?,
            server,
            client: client(&main, "zkrepl-client", "client")?,
            other_client: client(&main, "zkrepl-other", "other")?,
            foreign_ca: write("foreign-ca.pem", &foreign.pem())?,
            foreign_client: client(&foreign, "zkrepl-foreign", "foreign")?,
        })
    }

    /// A server with a secure client port for these certificates.
    pub fn server(&self, client_auth: ClientAuth) -> TlsServer {
        TlsServer { key_store: self.server.clone(), trust_store: self.ca.clone(), client_auth }
    }
}

/// Whether the server asks clients for a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Refuses a client without one.
    Need,
    /// Takes one when offered.
    Want,
    None,
}

/// A secure client port: the Netty connection factory, PEM stores.
#[derive(Clone, Debug)]
pub struct TlsServer {
    /// Key and certificate, PEM.
    pub key_store: PathBuf,
    /// The CA client certificates must chain to, PEM.
    pub trust_store: PathBuf,
    pub client_auth: ClientAuth,
}

/// SASL on the server: DIGEST-MD5 users, or a JAAS file of its own (a
/// Kerberos `Server` section), and whether a session must authenticate
/// before anything else.
#[derive(Clone, Debug, Default)]
pub struct SaslServer {
    pub users: Vec<(String, String)>,
    /// Used in place of a file of `users` when given.
    pub jaas: Option<PathBuf>,
    pub required: bool,
}

/// The JVM properties for `tls`.
pub(crate) fn tls_properties(tls: &TlsServer) -> Vec<(String, String)> {
    let p = |k: &str, v: &str| (k.to_string(), v.to_string());
    vec![
        p("zookeeper.serverCnxnFactory", "org.apache.zookeeper.server.NettyServerCnxnFactory"),
        p("zookeeper.ssl.keyStore.location", &tls.key_store.display().to_string()),
        p("zookeeper.ssl.keyStore.type", "PEM"),
        p("zookeeper.ssl.trustStore.location", &tls.trust_store.display().to_string()),
        p("zookeeper.ssl.trustStore.type", "PEM"),
        p(
            "zookeeper.ssl.clientAuth",
            match tls.client_auth {
                ClientAuth::Need => "need",
                ClientAuth::Want => "want",
                ClientAuth::None => "none",
            },
        ),
        p("zookeeper.authProvider.x509", "org.apache.zookeeper.server.auth.X509AuthenticationProvider"),
    ]
}

/// The JVM properties for `sasl`, its JAAS file written into `dir`.
pub(crate) fn sasl_properties(sasl: &SaslServer, dir: &Path) -> Result<Vec<(String, String)>> {
    let jaas = match &sasl.jaas {
        Some(j) => j.clone(),
        None => {
            let users: String = sasl.users.iter().map(|(u, pw)| format!("    user_{u}=\"{pw}\"\n")).collect();
            let jaas = dir.join("jaas.conf");
            std::fs::write(
                &jaas,
                format!("Server {{\n    org.apache.zookeeper.server.auth.DigestLoginModule required\n{users};\n}};\n"),
            )?;
            jaas
        }
    };
    let p = |k: &str, v: &str| (k.to_string(), v.to_string());
    let mut props = vec![
        p("java.security.auth.login.config", &jaas.display().to_string()),
        p("zookeeper.authProvider.sasl", "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"),
    ];
    if sasl.required {
        props.push(p("zookeeper.enforce.auth.enabled", "true"));
        props.push(p("zookeeper.enforce.auth.schemes", "sasl"));
    }
    Ok(props)
}
