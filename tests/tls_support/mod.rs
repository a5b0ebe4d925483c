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
