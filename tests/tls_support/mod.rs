//! Shared by the tests that run a TLS server of their own (aiosmtpd, the ticketing
//! receiver): a CA the test makes and a server certificate for 127.0.0.1, a free
//! loopback port, and the server process, stopped when dropped.
#![allow(dead_code)]

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// PEM files of a test CA and of a certificate for 127.0.0.1 it issued.
pub struct TestPki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A new CA and a server certificate for 127.0.0.1 issued by it, written to `dir`.
pub fn pki(dir: &Path) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names.push(SanType::IpAddress(Ipv4Addr::LOCALHOST.into()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let pki = TestPki { ca: dir.join("ca.pem"), cert: dir.join("server.crt"), key: dir.join("server.key") };
    std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server process listening on a loopback port; killed when dropped.
pub struct Listening {
    child: Child,
}

impl Listening {
    /// Spawn `command` (its output to stderr) and wait until `port` accepts connections.
    pub fn spawn(command: &mut Command, port: u16, what: &str) -> Self {
        let child = command.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap();
        let server = Self { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{what} did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- aiosmtpd, the SMTP capture server ---------------------------------------

pub const PYTHON: &str = "/usr/bin/python3";

/// Whether aiosmtpd can run here; outside CI a missing one skips the test.
pub fn aiosmtpd_available() -> bool {
    let ok = Command::new(PYTHON).args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI must have python3-aiosmtpd (scripts/setup-debian.sh)");
        eprintln!("skipped: python3-aiosmtpd is not installed");
    }
    ok
}

/// aiosmtpd on a loopback port, offering STARTTLS, saving each message to a maildir.
pub struct MailServer {
    _server: Listening,
    pub maildir: PathBuf,
}

impl MailServer {
    pub fn start(port: u16, pki: &TestPki, maildir: &Path) -> Self {
        let mut command = Command::new(PYTHON);
        command
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg("--tlscert")
            .arg(&pki.cert)
            .arg("--tlskey")
            .arg(&pki.key)
            .arg("--no-requiretls")
            .arg(maildir);
        Self { _server: Listening::spawn(&mut command, port, "aiosmtpd"), maildir: maildir.to_owned() }
    }

    /// Each delivered message: (recipients from X-RcptTo, the message decoded from
    /// quoted-printable).
    pub fn messages(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else { return Vec::new() };
        entries
            .map(|e| {
                let raw = std::fs::read_to_string(e.unwrap().path()).unwrap();
                let rcpt = raw.lines().find_map(|l| l.strip_prefix("X-RcptTo: ")).unwrap_or("").trim().to_owned();
                (rcpt, unquote(&raw))
            })
            .collect()
    }
}

/// Quoted-printable soft breaks and escapes undone (enough to read the bodies).
pub fn unquote(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let mut out = String::new();
    let mut rest = joined.as_str();
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match u8::from_str_radix(rest.get(i + 1..i + 3).unwrap_or(""), 16) {
            Ok(b) => {
                out.push(b as char);
                rest = &rest[i + 3..];
            }
            Err(_) => {
                out.push('=');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}
