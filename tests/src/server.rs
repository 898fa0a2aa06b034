//! A real TCP server in the victim namespace and real clients in the
//! attacker namespace: legitimate traffic, through the kernel's own stack.

use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use guard::host::netns::Scope;

fn in_netns<R: Send>(ns: &str, f: impl FnOnce() -> R + Send) -> R {
    Scope::open(Some(ns))
        .unwrap_or_else(|e| panic!("netns {ns}: {e}"))
        .run(f)
        .unwrap_or_else(|e| panic!("entering {ns}: {e}"))
}

/// Accepts connections and echoes what they send, until dropped.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Listens on `addr` inside namespace `ns`.
    #[must_use]
    pub fn start(ns: &str, addr: SocketAddr) -> Self {
        let listener = in_netns(ns, || TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("listening on {addr} in {ns}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        thread::spawn(move || echo(stream));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

fn echo(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 256];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One legitimate connection from namespace `ns`: connect, send, read the
/// echo. Returns the time to connect.
pub fn connect_echo(ns: &str, addr: SocketAddr, timeout: Duration) -> io::Result<Duration> {
    let (mut stream, connected) = in_netns(ns, || {
        let start = Instant::now();
        TcpStream::connect_timeout(&addr, timeout).map(|s| (s, start.elapsed()))
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"guard-test")?;
    let mut buf = [0u8; 10];
    stream.read_exact(&mut buf)?;
    if &buf != b"guard-test" {
        return Err(io::Error::other("the echo differs from what was sent"));
    }
    Ok(connected)
}
