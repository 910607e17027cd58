//! A Kerberos KDC on loopback for tests: MIT krb5's `krb5kdc` with a realm
//! of its own in a temporary directory (Debian: `krb5-kdc`,
//! `krb5-admin-server`), principals with keytabs, and the files a
//! ZooKeeper server and a client need to use it. Stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zkrepl::error::{Error, Result};

pub const REALM: &str = "ZKREPL.TEST";

/// Whether the KDC's programs are installed.
pub fn available() -> bool {
    ["krb5kdc", "kdb5_util", "kadmin.local"].iter().all(|p| which(p).is_some())
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A running KDC.
pub struct Kdc {
    pub dir: PathBuf,
    pub port: u16,
    /// The client's and the server's `krb5.conf` (`KRB5_CONFIG`,
    /// `-Djava.security.krb5.conf`).
    pub krb5_conf: PathBuf,
    kdc_conf: PathBuf,
    child: Child,
}

impl Kdc {
    /// Makes the realm's database in `dir` and starts the KDC on a free
    /// loopback port (TCP only).
    pub fn start(dir: &Path) -> Result<Kdc> {
        std::fs::create_dir_all(dir)?;
        let port = crate::local::free_port()?;
        let krb5_conf = dir.join("krb5.conf");
        std::fs::write(
            &krb5_conf,
            format!(
                "[libdefaults]\n  default_realm = {REALM}\n  dns_lookup_realm = false\n  dns_lookup_kdc = false\n  rdns = false\n  dns_canonicalize_hostname = false\n  udp_preference_limit = 1\n  forwardable = false\n\n[realms]\n  {REALM} = {{\n    kdc = 127.0.0.1:{port}\n  }}\n\n[domain_realm]\n  localhost = {REALM}\n"
            ),
        )?;
        let kdc_conf = dir.join("kdc.conf");
        std::fs::write(
            &kdc_conf,
            format!(
                "[kdcdefaults]\n  kdc_listen = 127.0.0.1:{port}\n  kdc_tcp_listen = 127.0.0.1:{port}\n\n[realms]\n  {REALM} = {{\n    database_name = {db}\n    key_stash_file = {stash}\n    acl_file = {acl}\n    max_life = 1h 0m 0s\n    supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n  }}\n\n[logging]\n  kdc = FILE:{log}\n",
                db = dir.join("principal").display(),
                stash = dir.join("stash").display(),
                acl = dir.join("kadm5.acl").display(),
                log = dir.join("kdc.log").display(),
            ),
        )?;
        std::fs::write(dir.join("kadm5.acl"), "")?;
        let env = [("KRB5_CONFIG", &krb5_conf), ("KRB5_KDC_PROFILE", &kdc_conf)];
        run(
            Command::new(which("kdb5_util").ok_or_else(|| missing("kdb5_util"))?)
                .args(["create", "-s", "-r", REALM, "-P", "zkrepl-master-key"])
                .envs(env),
            "kdb5_util create",
        )?;
        let child = Command::new(which("krb5kdc").ok_or_else(|| missing("krb5kdc"))?)
            .args(["-n", "-r", REALM])
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let kdc = Kdc { dir: dir.to_path_buf(), port, krb5_conf, kdc_conf, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(Error::Usage(format!("the KDC did not listen on 127.0.0.1:{port} within 20s")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(kdc)
    }

    /// Adds `principal` (`name` or `name/host`, in this realm) with a random
    /// key and writes it to a keytab of its own; returns the keytab's path.
    pub fn principal(&self, principal: &str) -> Result<PathBuf> {
        let keytab = self.dir.join(format!("{}.keytab", principal.replace('/', "_")));
        for q in [
            format!("addprinc -randkey {principal}@{REALM}"),
            format!("ktadd -k {} {principal}@{REALM}", keytab.display()),
        ] {
            run(
                Command::new(which("kadmin.local").ok_or_else(|| missing("kadmin.local"))?)
                    .args(["-r", REALM, "-q", &q])
                    .env("KRB5_CONFIG", &self.krb5_conf)
                    .env("KRB5_KDC_PROFILE", &self.kdc_conf),
                &format!("kadmin.local {q}"),
            )?;
        }
        Ok(keytab)
    }

    /// A JAAS file for a ZooKeeper server whose principal is `principal`
    /// (`zookeeper/localhost`), its key in `keytab`.
    pub fn server_jaas(&self, principal: &str, keytab: &Path) -> Result<PathBuf> {
        let jaas = self.dir.join("server-jaas.conf");
        std::fs::write(
            &jaas,
            format!(
                "Server {{\n  com.sun.security.auth.module.Krb5LoginModule required\n  useKeyTab=true\n  keyTab=\"{}\"\n  storeKey=true\n  useTicketCache=false\n  isInitiator=false\n  principal=\"{principal}@{REALM}\";\n}};\n",
                keytab.display()
            ),
        )?;
        Ok(jaas)
    }
}

fn missing(program: &str) -> Error {
    Error::Usage(format!("{program} not found: install krb5-kdc and krb5-admin-server"))
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Usage(format!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim())))
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
