//! A nats-server of the test's own, with JetStream, on loopback only: a
//! free port, a store directory removed with it. The test can stop it and
//! start it again on the same port and store, as an outage would.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// A running (or stopped) nats-server.
pub struct NatsServer {
    port: u16,
    store: PathBuf,
    child: Option<Child>,
    /// With mutual TLS: the server's own flags.
    tls: Vec<String>,
}

/// The files of a test PKI made with openssl: a CA, and a client
/// certificate and key it signed.
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl NatsServer {
    /// Starts one; panics with why if it cannot (the kernel tests that
    /// use it need it, as they need BPF).
    #[must_use]
    pub fn start() -> Self {
        let mut server = Self::new();
        server.restart();
        server
    }

    /// One that takes TLS connections only, from clients with a
    /// certificate of its CA; and that CA and a client certificate.
    #[must_use]
    pub fn start_tls() -> (Self, ClientTls) {
        let mut server = Self::new();
        let dir = server.store.join("pki");
        std::fs::create_dir_all(&dir).expect("the PKI directory");
        let path = |name: &str| dir.join(name);
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=guard test CA",
                "-keyout",
            ],
            &[path("ca.key"), "-out".into(), path("ca.pem")],
        );
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            openssl(
                &[
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                ],
                &[
                    path(&format!("{name}.key")),
                    "-out".into(),
                    path(&format!("{name}.csr")),
                ],
            );
            let ext = path(&format!("{name}.ext"));
            std::fs::write(
                &ext,
                format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
            )
            .expect("the extensions file");
            openssl(
                &["x509", "-req", "-days", "1", "-CAcreateserial", "-in"],
                &[
                    path(&format!("{name}.csr")),
                    "-CA".into(),
                    path("ca.pem"),
                    "-CAkey".into(),
                    path("ca.key"),
                    "-extfile".into(),
                    ext,
                    "-out".into(),
                    path(&format!("{name}.pem")),
                ],
            );
        }
        server.tls = [
            "--tlsverify".into(),
            "--tlscert".into(),
            path("server.pem"),
            "--tlskey".into(),
            path("server.key"),
            "--tlscacert".into(),
            path("ca.pem"),
        ]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
        server.restart();
        let tls = ClientTls {
            ca: path("ca.pem"),
            cert: path("client.pem"),
            key: path("client.key"),
        };
        (server, tls)
    }

    fn new() -> Self {
        let port = crate::net::loopback_port();
        let store = std::env::temp_dir().join(format!("guard-nats-{}-{port}", std::process::id()));
        Self {
            port,
            store,
            child: None,
            tls: Vec::new(),
        }
    }

    /// `nats://127.0.0.1:PORT`, or `tls://` for a TLS server.
    #[must_use]
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_empty() { "nats" } else { "tls" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGTERM, then waits), as an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = i32::try_from(child.id()).expect("pid");
            // SAFETY: the server this harness started and still owns.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store; waits until it takes
    /// connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .args(&self.tls)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server (apt-get install nats-server; `cargo xtask setup` does)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {}",
                self.url()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs openssl with `args` then `paths`; panics with its output if it
/// fails.
fn openssl(args: &[&str], paths: &[PathBuf]) {
    let out = Command::new("openssl")
        .args(args)
        .args(paths)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} {paths:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
