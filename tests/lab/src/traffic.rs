//! The lab's traffic: the victim's servers, legitimate clients that measure
//! what they get, a connection flood from real sources, and the frame
//! generator (netsniff-ng's trafgen) for spoofed floods.
//!
//! The clients run on a thread inside their namespace, the servers and the
//! connection flood in helper processes (see [`Helper`]); each with a
//! single-threaded tokio runtime. A socket belongs to the namespace it was
//! created in, so everything a component opens is in the right place, and
//! one thread per component keeps the lab's own CPU use bounded on a
//! two-core machine.

use std::{
    future::Future,
    io::{BufRead as _, BufReader},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use guard::host::netns::Scope;
use guard_tests::server::retry_after;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream, UdpSocket},
    sync::{Semaphore, watch},
    time,
};

use crate::topology::{TCP_PORT, UDP_PORT, user, user6};

/// How long a legitimate client waits for its connection and its echo:
/// long enough for one SYN retransmission (after 1 s), as a browser would
/// still wait.
pub const LEGIT_TIMEOUT: Duration = Duration::from_secs(3);

/// The most frames a flood may send a second for each trafgen core: above
/// what one core reaches here, so the bound never slows it, and a hard
/// ceiling if it somehow ran on.
pub const MAX_PPS_PER_CORE: u64 = 2_000_000;
/// What a client sends and expects back.
const HELLO: &[u8] = b"guard-lab";

/// A component running in a namespace until stopped.
pub struct Running {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Runs `task` on a new thread inside `ns`. `task` gets a receiver
    /// that turns true when the component should stop; it reports readiness
    /// (or why it could not start) through `ready`.
    fn spawn<F, Fut>(ns: &str, name: &str, task: F) -> Self
    where
        F: FnOnce(watch::Receiver<bool>, mpsc::Sender<Result<(), String>>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let (stop, stopped) = watch::channel(false);
        let (ready_tx, ready) = mpsc::channel();
        let scope = Scope::open(Some(ns)).unwrap_or_else(|e| panic!("netns {ns}: {e}"));
        let failed = ready_tx.clone();
        let thread = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let entered = scope.run(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a tokio runtime");
                    runtime.block_on(task(stopped, ready_tx));
                });
                if let Err(e) = entered {
                    let _ = failed.send(Err(e.to_string()));
                }
            })
            .expect("spawning a lab thread");
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{name} could not start: {e}"),
            Err(mpsc::RecvError) => panic!("{name} ended before it started"),
        }
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the component and waits for its thread; its sockets close.
    pub fn stop(mut self) {
        self.halt();
    }

    /// Stops several components together, so that they wait out their
    /// attempts in flight at the same time rather than one after another.
    pub fn stop_all(all: impl IntoIterator<Item = Self>) {
        let all: Vec<Self> = all.into_iter().collect();
        for r in &all {
            let _ = r.stop.send(true);
        }
        drop(all);
    }

    fn halt(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Resolves when `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A helper process: this lab's own binary in a helper mode (`guard-lab
/// serve`, `guard-lab hold`), inside a namespace. The server and the
/// connection flood each hold one socket per connection, and a process may
/// have only 20,000 (the hard limit here, which root without
/// CAP_SYS_RESOURCE cannot raise): separate processes give each side its
/// own. Stopped with SIGTERM when dropped; it also dies with the lab
/// (PR_SET_PDEATHSIG).
pub struct Helper {
    child: Child,
    name: &'static str,
}

impl Helper {
    /// Starts `bin` with `args` and waits for its `ready` line.
    fn start(bin: &Path, args: &[String], name: &'static str) -> Self {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} {}: {e}", bin.display(), args.join(" ")));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = child.kill();
            let out = child.wait_with_output().ok();
            panic!(
                "{name} ({} {}) did not start: {}",
                bin.display(),
                args.join(" "),
                out.map_or_else(String::new, |o| String::from_utf8_lossy(&o.stderr)
                    .into_owned())
            );
        }
        Self { child, name }
    }

    /// Stops the helper; its sockets close with it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // SAFETY: signals a child this process started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                eprintln!("lab: {} ignored SIGTERM; killing it", self.name);
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The victim's servers, in a helper process in `ns`.
#[must_use]
pub fn servers(bin: &Path, ns: &str) -> Helper {
    Helper::start(
        bin,
        &["serve".to_owned(), "--netns".to_owned(), ns.to_owned()],
        "the servers",
    )
}

/// A connection flood from `sources` in `ns`, in a helper process: real
/// handshakes, every connection held (an ASSURED conntrack entry, which
/// early_drop cannot evict) until stopped. Bounded: at most `max_open`
/// held, `max_attempts` tried.
#[must_use]
pub fn conn_flood(
    bin: &Path,
    ns: &str,
    target: SocketAddr,
    sources: &[Ipv4Addr],
    max_open: u64,
    max_attempts: u64,
) -> Helper {
    let mut args = vec![
        "hold".to_owned(),
        "--netns".to_owned(),
        ns.to_owned(),
        "--target".to_owned(),
        target.to_string(),
        "--max-open".to_owned(),
        max_open.to_string(),
        "--max-attempts".to_owned(),
        max_attempts.to_string(),
    ];
    for s in sources {
        args.extend(["--source".to_owned(), s.to_string()]);
    }
    Helper::start(bin, &args, "the connection flood")
}

/// In a helper process, before anything else: moves this (still single)
/// thread into namespace `ns`, so every socket and thread the helper makes
/// is there, and asks to be ended with the lab.
pub fn enter_helper(ns: &str) -> std::io::Result<()> {
    // SAFETY: prctl with an integer argument.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let file = std::fs::File::open(Path::new(guard::host::netns::NETNS_RUN_DIR).join(ns))?;
    // SAFETY: setns on a valid namespace fd, for the calling thread.
    if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Tells the lab the helper is ready.
fn ready() {
    use std::io::Write as _;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
}

/// `guard-lab serve`: TCP echo on [`TCP_PORT`] that holds a connection until
/// the client closes it, and UDP echo on [`UDP_PORT`], both over IPv4 and
/// IPv6 (dual-stack sockets on `::`). Runs until killed.
pub async fn serve() -> std::io::Result<()> {
    let tcp = TcpSocket::new_v6()?;
    tcp.set_reuseaddr(true)?;
    tcp.bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, TCP_PORT)))?;
    // The kernel caps the backlog at somaxconn (4096).
    let listener = tcp.listen(4096)?;
    let udp = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, UDP_PORT)).await?;
    ready();
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(echo(stream));
                }
            }
            received = udp.recv_from(&mut buf) => {
                if let Ok((n, from)) = received {
                    let _ = udp.try_send_to(&buf[..n], from);
                }
            }
        }
    }
}

/// Echoes until the client closes.
async fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 64];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// `guard-lab hold`: the connection flood. Runs until killed.
pub async fn hold(target: SocketAddr, sources: Vec<Ipv4Addr>, max_open: u64, max_attempts: u64) {
    ready();
    // Enough attempts in flight to reach thousands a second through a
    // one-second connect timeout.
    let slots = Arc::new(Semaphore::new(512));
    let held = Arc::new(AtomicU64::new(0));
    let open = Arc::new(Mutex::new(Vec::new()));
    let attempts = usize::try_from(max_attempts).unwrap_or(usize::MAX);
    for source in sources.iter().cycle().take(attempts) {
        if held.load(Ordering::Relaxed) >= max_open {
            break;
        }
        let permit = Arc::clone(&slots)
            .acquire_owned()
            .await
            .expect("the semaphore stays open");
        let (open, held, source) = (Arc::clone(&open), Arc::clone(&held), *source);
        tokio::spawn(async move {
            let _permit = permit;
            let connected = time::timeout(Duration::from_secs(1), async {
                let s = TcpSocket::new_v4()?;
                s.bind(SocketAddr::from((source, 0)))?;
                s.connect(target).await
            })
            .await;
            if let Ok(Ok(stream)) = connected {
                held.fetch_add(1, Ordering::Relaxed);
                open.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(stream);
            }
        });
    }
    // Hold everything until killed.
    std::future::pending::<()>().await;
}

/// What legitimate clients got in one interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcomes {
    pub ok: u32,
    pub failed: u32,
    /// Connect latencies of the successful ones, in milliseconds.
    pub connect_ms: Vec<f64>,
}

impl Outcomes {
    /// Attempts made: those that succeeded and those that failed.
    #[must_use]
    pub const fn attempts(&self) -> u32 {
        self.ok + self.failed
    }

    /// The share that succeeded, in percent (0 without attempts).
    #[must_use]
    pub fn percent(&self) -> f64 {
        f64::from(self.ok) * 100.0 / f64::from(self.attempts().max(1))
    }

    /// Fails the test unless `what` made at least `attempts` attempts and
    /// 99% of them succeeded; `log` (guard's) goes with the failure.
    pub fn assert_served(&self, what: &str, attempts: u32, log: &str) {
        assert!(
            self.attempts() >= attempts,
            "{what}: only {} attempts",
            self.attempts()
        );
        assert!(
            self.percent() >= 99.0,
            "{what} served {:.1}%:\n{log}",
            self.percent()
        );
    }
}

/// Outcomes shared between the clients and the sampler, which drains them
/// once a second.
#[derive(Clone, Debug, Default)]
pub struct Tally(Arc<Mutex<Outcomes>>);

impl Tally {
    fn record(&self, result: Result<Duration, ()>) {
        let mut o = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(connect) => {
                o.ok += 1;
                o.connect_ms.push(connect.as_secs_f64() * 1000.0);
            }
            Err(()) => o.failed += 1,
        }
    }

    /// Everything recorded since the last call.
    #[must_use]
    pub fn take(&self) -> Outcomes {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Legitimate clients in `ns`: `rate` connections a second, taking their
/// source addresses from `sources` in turn; each connects to `target`,
/// sends a line, reads the echo and closes, within [`LEGIT_TIMEOUT`].
#[must_use]
pub fn clients(
    ns: &str,
    target: SocketAddr,
    sources: Vec<IpAddr>,
    rate: u32,
    tally: Tally,
) -> Running {
    paced(ns, "lab-clients", sources, rate, tally, move |source| {
        visit(source, target)
    })
}

/// DNS-like clients: `rate` queries a second from `sources` in turn to the
/// UDP echo server at `target`, each from a new socket (a new flow), sent
/// again every second without an answer, as a stub resolver does; a query
/// answered within [`LEGIT_TIMEOUT`] succeeds.
#[must_use]
pub fn dns_clients(
    ns: &str,
    target: SocketAddr,
    sources: Vec<IpAddr>,
    rate: u32,
    tally: Tally,
) -> Running {
    paced(ns, "lab-dns", sources, rate, tally, move |source| {
        query(source, target)
    })
}

/// Starts `attempt(source)` `rate` times a second, sources in turn, each
/// bounded by [`LEGIT_TIMEOUT`] and recorded in `tally`.
fn paced<F, Fut>(
    ns: &str,
    name: &str,
    sources: Vec<IpAddr>,
    rate: u32,
    tally: Tally,
    attempt: F,
) -> Running
where
    F: Fn(IpAddr) -> Fut + Send + 'static,
    Fut: Future<Output = std::io::Result<Duration>> + Send + 'static,
{
    assert!(
        rate > 0 && !sources.is_empty(),
        "clients need a rate and sources"
    );
    Running::spawn(ns, name, move |stop, ready| async move {
        let _ = ready.send(Ok(()));
        let mut tick = time::interval(Duration::from_secs(1) / rate);
        tick.set_missed_tick_behavior(time::MissedTickBehavior::Delay);
        let until = stopped(stop);
        tokio::pin!(until);
        for source in sources.iter().cycle() {
            tokio::select! {
                () = &mut until => break,
                _ = tick.tick() => {
                    let tally = tally.clone();
                    let visit = attempt(*source);
                    tokio::spawn(async move {
                        let result = time::timeout(LEGIT_TIMEOUT, visit)
                            .await
                            .map_err(|_| ())
                            .and_then(|r| r.map_err(|_| ()));
                        tally.record(result);
                    });
                }
            }
        }
        // Attempts still in flight finish (or time out) before the thread
        // ends, so every attempt is counted.
        time::sleep(LEGIT_TIMEOUT).await;
    })
}

/// One legitimate visit; returns the time the connect took.
///
/// A client across the Internet sends its SYNs at any moment of the
/// server's clock tick. A retransmission by this machine's kernel leaves
/// on a tick, just as guard's buckets, which the coarse clock refills a
/// tick at a time (`guard-ebpf/src/clock.rs`), have their new tokens: it
/// gets through a spent budget that a remote client's would not (by hand,
/// nine retransmissions in ten against one first SYN in a hundred). So an
/// attempt not answered within a random 0.4-0.9 s, before the kernel's own
/// retransmission at 1 s, is given up and made again from a new socket,
/// at a moment of this process's choosing.
async fn visit(source: IpAddr, target: SocketAddr) -> std::io::Result<Duration> {
    let start = Instant::now();
    let mut stream = loop {
        let socket = if source.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(source, 0))?;
        if let Ok(connected) = time::timeout(retry_after(), socket.connect(target)).await {
            break connected?;
        }
    };
    let connected = start.elapsed();
    stream.write_all(HELLO).await?;
    let mut buf = [0u8; HELLO.len()];
    stream.read_exact(&mut buf).await?;
    if buf != HELLO {
        return Err(std::io::Error::other("the echo differs"));
    }
    Ok(connected)
}

/// One DNS-like query from a new socket; returns the time to the answer.
async fn query(source: IpAddr, target: SocketAddr) -> std::io::Result<Duration> {
    let socket = UdpSocket::bind(SocketAddr::new(source, 0)).await?;
    socket.connect(target).await?;
    let start = Instant::now();
    let mut buf = [0u8; HELLO.len()];
    loop {
        socket.send(HELLO).await?;
        if let Ok(received) = time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await {
            let n = received?;
            if buf[..n] != *HELLO {
                return Err(std::io::Error::other("the echo differs"));
            }
            return Ok(start.elapsed());
        }
    }
}

/// What the frame generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frames {
    /// TCP SYNs to [`TCP_PORT`] from random sources of 198.19.0.0/16 and
    /// random ports.
    Syn,
    /// The same over IPv6, from random sources of 2001:db8:ff00::/40: 2^24
    /// /64s (three random bytes after 2001:db8:ff), random interface ids.
    Syn6,
    /// UDP datagrams to [`UDP_PORT`] from random sources and ports: every
    /// one a new flow.
    Udp,
    /// Both, alternating.
    SynAndUdp,
    /// [`Frames::Syn`] from one address, the first user's
    /// ([`crate::topology::user`]): a flood that names a real client.
    SynNamingUser,
    /// The same over IPv6, from the first user's IPv6 address
    /// ([`crate::topology::user6`]).
    SynNamingUser6,
    /// SYNs from random sources over all of 198.18.0.0/15: 131,072
    /// addresses in 512 /24s.
    SynWide,
    /// SYNs from random sources over all of 2001:db8::/32: 2^32 /64s.
    Syn6Wide,
    /// [`Frames::Syn`] with random TTL and window, in the layouts of
    /// [`SYN_OPTIONS`] in turn.
    SynRandom,
    /// [`Frames::Udp`] with random TTL and payload, in the lengths of
    /// [`UDP_PAYLOADS`] in turn.
    UdpRandom,
    /// ICMP timestamp requests (random identifiers) and GRE datagrams, in
    /// turn, from random sources of 198.19.0.0/16: each opens a conntrack
    /// entry, and neither is a SYN or UDP.
    QueriesAndGre,
}

/// The TCP options of the randomised SYN flood's frames and their lengths:
/// none, MSS alone, Windows', Linux's (the users': MSS 1460, SACK
/// permitted, timestamps, window scale) and macOS's, with random
/// timestamps. trafgen sends its frames in turn, so each layout is a fifth
/// of the flood and a predicate covering 90% of it covers every layout,
/// the users' among them. Five, an odd number: guard samples every 2^k-th
/// packet of a CPU, which a power of two of layouts would alias to one.
pub const SYN_OPTIONS: [(&str, usize); 5] = [
    ("", 0),
    ("0x02, 0x04, 0x05, 0xb4", 4),
    (
        "0x02, 0x04, 0x05, 0xb4, 0x01, 0x03, 0x03, 0x08, 0x01, 0x01, 0x04, 0x02",
        12,
    ),
    (
        "0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, drnd(4), c32(0), 0x01, 0x03, 0x03, 0x07",
        20,
    ),
    (
        "0x02, 0x04, 0x05, 0xb4, 0x01, 0x03, 0x03, 0x06, 0x01, 0x01, 0x08, 0x0a, drnd(4), c32(0), 0x04, 0x02, 0x00, 0x00",
        24,
    ),
];

/// Payload bytes of the randomised UDP flood's frames, a fifth of the
/// flood each (as [`SYN_OPTIONS`]): the shortest as long as the users'
/// queries, so that no length predicate covering 90% of the flood leaves
/// them out. Short, as trafgen draws each random byte on its own.
pub const UDP_PAYLOADS: [usize; 5] = [HELLO.len(), 16, 32, 64, 128];

/// trafgen's configuration for `frames` from `src_mac` to `dst_mac`.
/// Sources are random within 198.19.0.0/16 (two random bytes after
/// 198.19) or 2001:db8:ff00::/40, or for the wide floods 198.18.0.0/15 and
/// 2001:db8::/32, or one user's address: never outside the documentation
/// ranges.
#[must_use]
pub fn trafgen_config(frames: Frames, dst_mac: [u8; 6], src_mac: [u8; 6]) -> String {
    // Fixed bytes, as trafgen reads them.
    let bytes = |b: &[u8]| {
        b.iter()
            .map(|b| format!("0x{b:02x}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let macs = bytes(&[dst_mac, src_mac].concat());
    let eth = format!("  {macs}, c16(0x0800),\n");
    let eth6 = format!("  {macs}, c16(0x86dd),\n");
    // IPv4 header: 20 bytes at offset 14, checksum over 14..33; the
    // transport header starts at 34.
    let ipv4_from = |total: usize, ttl: &str, proto: u8, source: &str| {
        format!(
            "  0x45, 0x00, c16({total}), drnd(2), c16(0x4000), {ttl}, {proto}, csumip(14, 33),\n  {source}, 198, 18, 0, 2,\n"
        )
    };
    let ipv4 = |total: usize, proto: u8| ipv4_from(total, "64", proto, "198, 19, drnd(2)");
    // Any TTL, the users' 64 among them.
    let ipv4_random =
        |total: usize, proto: u8| ipv4_from(total, "drnd()", proto, "198, 19, drnd(2)");
    let syn = format!(
        "{{\n{eth}{}  drnd(2), c16({TCP_PORT}), drnd(4), c32(0), 0x50, 0x02, c16(64240), csumtcp(14, 34), c16(0)\n}}\n",
        ipv4(40, 6)
    );
    let udp = format!(
        "{{\n{eth}{}  drnd(2), c16({UDP_PORT}), c16(24), csumudp(14, 34),\n  \"guard-lab-flood!\"\n}}\n",
        ipv4(44, 17)
    );
    // IPv6 header: 40 bytes at offset 14; TCP at 54. The victim is
    // 2001:db8::2.
    let tcp_syn = format!(
        "  drnd(2), c16({TCP_PORT}), drnd(4), c32(0), 0x50, 0x02, c16(64240), csumtcp(14, 34), c16(0)\n}}\n"
    );
    // The third byte alternates 18 and 19: the whole /15.
    let syn_wide = format!(
        "{{\n{eth}{}{tcp_syn}",
        ipv4_from(40, "64", 6, "198, dinc(18, 19), drnd(2)")
    );
    let syn_random = SYN_OPTIONS
        .iter()
        .map(|(options, len)| {
            let tcp = 20 + len;
            let options = if options.is_empty() {
                String::new()
            } else {
                format!(",\n  {options}")
            };
            format!(
                "{{\n{eth}{}  drnd(2), c16({TCP_PORT}), drnd(4), c32(0), 0x{:x}0, 0x02, drnd(2), csumtcp(14, 34), c16(0){options}\n}}\n",
                ipv4_random(20 + tcp, 6),
                tcp / 4
            )
        })
        .collect::<Vec<_>>()
        .concat();
    let udp_random = UDP_PAYLOADS
        .iter()
        .map(|len| {
            format!(
                "{{\n{eth}{}  drnd(2), c16({UDP_PORT}), c16({}), csumudp(14, 34),\n  drnd({len})\n}}\n",
                ipv4_random(28 + len, 17),
                8 + len
            )
        })
        .collect::<Vec<_>>()
        .concat();
    let syn6_from = |source: &str| {
        format!(
            "{{\n{eth6}  0x60, 0x00, 0x00, 0x00, c16(20), 6, 64,\n  {source},\n  0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,\n  drnd(2), c16({TCP_PORT}), drnd(4), c32(0), 0x50, 0x02, c16(64240), csumtcp6(14, 54), c16(0)\n}}\n"
        )
    };
    // ICMP type 13, code 0, checksum, identifier, sequence number, three
    // timestamps; GRE: no flags, IPv4 inside, four bytes of it.
    let queries_and_gre = format!(
        "{{\n{eth}{}  13, 0, csumip(34, 53), drnd(2), c16(1), drnd(12)\n}}\n{{\n{eth}{}  c16(0), c16(0x0800), drnd(4)\n}}\n",
        ipv4(40, 1),
        ipv4(28, 47)
    );
    match frames {
        Frames::Syn => syn,
        Frames::Syn6 => syn6_from("0x20, 0x01, 0x0d, 0xb8, 0xff, drnd(3), drnd(4), drnd(4)"),
        Frames::Udp => udp,
        Frames::SynAndUdp => format!("{syn}{udp}"),
        Frames::SynNamingUser => format!(
            "{{\n{eth}{}{tcp_syn}",
            ipv4_from(40, "64", 6, &bytes(&user(0).octets()))
        ),
        Frames::SynNamingUser6 => syn6_from(&bytes(&user6(0).octets())),
        Frames::SynWide => syn_wide,
        Frames::Syn6Wide => syn6_from("0x20, 0x01, 0x0d, 0xb8, drnd(4), drnd(4), drnd(4)"),
        Frames::SynRandom => syn_random,
        Frames::UdpRandom => udp_random,
        Frames::QueriesAndGre => queries_and_gre,
    }
}

/// Fails the test at once, saying how to fix it, when trafgen is missing.
pub fn require_trafgen() {
    assert!(
        Command::new("trafgen").arg("--version").output().is_ok(),
        "trafgen (netsniff-ng) is not installed: run `cargo xtask setup`"
    );
}

/// A running trafgen in the attacker namespace, bounded by a packet count;
/// killed at the end of the attack window, or when dropped. trafgen gives
/// up when a ring flush fails (but for ENOBUFS, a frame the qdisc dropped),
/// which the topology's short FIFOs keep from happening on its link:
/// should it happen anyway, [`Trafgen::tend`] starts it again, so one
/// hiccup does not end the attack.
pub struct Trafgen {
    child: Child,
    config: PathBuf,
    ns: String,
    dev: String,
    max_packets: u64,
    rate_pps: Option<u64>,
    cpus: u32,
    /// How often it gave up and was started again, and why the last time.
    restarts: u32,
    last_error: String,
}

impl Trafgen {
    /// Starts trafgen on `dev` in `ns`: one sender per CPU of `cpus` (the
    /// first ones), at most `max_packets` in all, at `rate_pps` or as fast
    /// as it goes.
    #[must_use]
    pub fn start(
        ns: &str,
        dev: &str,
        config: &str,
        max_packets: u64,
        rate_pps: Option<u64>,
        cpus: u32,
    ) -> Self {
        let path = std::env::temp_dir().join(format!("{ns}-trafgen.cfg"));
        std::fs::write(&path, config).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self {
            child: spawn_trafgen(ns, dev, &path, max_packets, rate_pps, cpus),
            config: path,
            ns: ns.to_owned(),
            dev: dev.to_owned(),
            max_packets,
            rate_pps,
            cpus,
            restarts: 0,
            last_error: String::new(),
        }
    }

    /// Starts trafgen again if it gave up; call often during the attack
    /// window.
    pub fn tend(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // With several CPUs, one sender may give up while the others send
        // on, holding the pipe open: the group goes before its error is read.
        self.kill_group();
        if let Some(mut stderr) = self.child.stderr.take() {
            self.last_error.clear();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut self.last_error);
        }
        self.restarts += 1;
        self.child = spawn_trafgen(
            &self.ns,
            &self.dev,
            &self.config,
            self.max_packets,
            self.rate_pps,
            self.cpus,
        );
    }

    /// SIGKILL to trafgen's process group (trafgen and its senders, one
    /// per CPU); whether any was there to kill.
    fn kill_group(&self) -> bool {
        i32::try_from(self.child.id())
            // SAFETY: signals the process group of our own child.
            .is_ok_and(|pgid| unsafe { libc::kill(-pgid, libc::SIGKILL) } == 0)
    }

    /// Stops trafgen; says so if it failed or had to be restarted.
    #[must_use]
    pub fn stop(mut self) -> Option<String> {
        self.halt()
    }

    fn halt(&mut self) -> Option<String> {
        // trafgen finishes its --num before it looks at SIGINT, so the end
        // of the attack window is a SIGKILL, to trafgen's process group
        // (trafgen and the sender it forked, all started by this process).
        // The senders of every CPU too, even when the first has exited.
        let running = matches!(self.child.try_wait(), Ok(None));
        let killed = self.kill_group() || running;
        let status = self.child.wait().ok();
        let _ = std::fs::remove_file(&self.config);
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        }
        // Killed is how it is stopped; only another failure is news.
        let failed = !killed && status.is_some_and(|s| !s.success());
        let mut note =
            (failed && !err.trim().is_empty()).then(|| format!("trafgen failed: {}", err.trim()));
        if self.restarts > 0 {
            let restarted = format!(
                "trafgen gave up {} time(s) and was restarted ({})",
                self.restarts,
                self.last_error.trim()
            );
            note = Some(note.map_or(restarted.clone(), |n| format!("{n}; {restarted}")));
        }
        note
    }
}

/// Spawns trafgen inside `ns` (see [`Trafgen`]).
fn spawn_trafgen(
    ns: &str,
    dev: &str,
    config: &Path,
    max_packets: u64,
    rate_pps: Option<u64>,
    cpus: u32,
) -> Child {
    // Entered between fork and exec rather than through `ip netns exec`,
    // which forks: the child must be trafgen itself, so that killing it
    // stops the flood and closes its pipes.
    let netns = std::fs::File::open(Path::new(guard::host::netns::NETNS_RUN_DIR).join(ns))
        .unwrap_or_else(|e| panic!("netns {ns}: {e}"));
    let fd = std::os::fd::AsRawFd::as_raw_fd(&netns);
    let mut cmd = Command::new("trafgen");
    cmd.args(["--dev", dev, "--conf"])
        .arg(config)
        .args([
            "--num",
            &max_packets.to_string(),
            "--cpus",
            &cpus.to_string(),
        ])
        // Leave the host's socket memory and IRQ affinity alone. A small
        // TX ring: trafgen sends a whole ring per system call and cannot be
        // killed inside it, so a large one outlives the attack window by
        // seconds. Through the qdisc, so that the flood queues in the
        // link's FIFO with the users' packets (see the topology).
        .args(["--no-sock-mem", "--notouch-irq", "--no-cpu-stats"])
        .args(["--ring-size", "1MiB", "--qdisc-path"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(pps) = rate_pps {
        cmd.args(["--rate", &format!("{pps}pps")]);
    }
    // trafgen forks its sender: a group of its own lets one signal stop
    // both.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // SAFETY: setns is a plain system call, safe between fork and exec;
    // `netns` outlives the spawn.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("starting trafgen (netsniff-ng): {e}"))
}

impl Drop for Trafgen {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

#[cfg(test)]
mod tests {
    use guard_common::fingerprint::Fingerprint;

    use super::*;

    #[test]
    fn syn_config_has_the_range_the_ports_and_the_checksums() {
        let cfg = trafgen_config(Frames::Syn, [0x02, 0, 0, 0, 0, 1], [0x02, 0, 0, 0, 0, 2]);
        assert!(
            cfg.contains("0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02"),
            "{cfg}"
        );
        assert!(cfg.contains("198, 19, drnd(2), 198, 18, 0, 2"), "{cfg}");
        assert!(
            cfg.contains("c16(8080)") && cfg.contains("0x50, 0x02"),
            "{cfg}"
        );
        assert!(
            cfg.contains("csumip(14, 33)") && cfg.contains("csumtcp(14, 34)"),
            "{cfg}"
        );
        assert_eq!(cfg.matches('{').count(), 1);
    }

    #[test]
    fn ipv6_syn_config_has_the_range_and_the_checksum() {
        let cfg = trafgen_config(Frames::Syn6, [0; 6], [0; 6]);
        assert!(cfg.contains("c16(0x86dd)"), "{cfg}");
        assert!(
            cfg.contains("0x20, 0x01, 0x0d, 0xb8, 0xff, drnd(3), drnd(4), drnd(4)"),
            "{cfg}"
        );
        assert!(cfg.contains("csumtcp6(14, 54)"), "{cfg}");
        // 14 + 40 + 20 bytes: the payload length says 20.
        assert!(cfg.contains("c16(20), 6, 64"), "{cfg}");
    }

    #[test]
    fn udp_lengths_match_the_payload() {
        let cfg = trafgen_config(Frames::Udp, [0; 6], [0; 6]);
        // 20 (IP) + 8 (UDP) + 16 (payload).
        assert!(cfg.contains("c16(44)") && cfg.contains("c16(24)"), "{cfg}");
        assert_eq!("guard-lab-flood!".len(), 16);
        assert!(cfg.contains("csumudp(14, 34)"), "{cfg}");
    }

    #[test]
    fn mixed_config_has_both_frames() {
        let cfg = trafgen_config(Frames::SynAndUdp, [0; 6], [0; 6]);
        assert_eq!(cfg.matches('{').count(), 2);
    }

    #[test]
    fn the_flood_naming_a_user_comes_from_its_address_alone() {
        let cfg = trafgen_config(Frames::SynNamingUser, [0; 6], [0; 6]);
        let frames = templates(&cfg);
        assert_eq!(frames.len(), 1, "{cfg}");
        let t = &frames[0];
        let source: Vec<Option<u8>> = user(0).octets().into_iter().map(Some).collect();
        assert_eq!(t.bytes[26..30], source[..], "{cfg}");
        assert_eq!(usize::from(t.word(16)), t.bytes.len() - 14, "{cfg}");
        // A SYN, its TCP header without options.
        assert_eq!(t.bytes[46..48], [Some(0x50), Some(0x02)], "{cfg}");
        let cfg = trafgen_config(Frames::SynNamingUser6, [0; 6], [0; 6]);
        let frames = templates(&cfg);
        assert_eq!(frames.len(), 1, "{cfg}");
        let t = &frames[0];
        let source: Vec<Option<u8>> = user6(0).octets().into_iter().map(Some).collect();
        assert_eq!(t.bytes[22..38], source[..], "{cfg}");
        assert_eq!(usize::from(t.word(18)), t.bytes.len() - 54, "{cfg}");
        assert_eq!(t.bytes[66..68], [Some(0x50), Some(0x02)], "{cfg}");
    }

    /// One frame of a trafgen config: its bytes (`None` where trafgen
    /// writes them as it sends: random bytes, counters, checksums) and its
    /// checksums with their offsets.
    #[derive(Debug)]
    struct Template {
        bytes: Vec<Option<u8>>,
        csums: Vec<(usize, String)>,
    }

    impl Template {
        fn word(&self, at: usize) -> u16 {
            match self.bytes[at..at + 2] {
                [Some(hi), Some(lo)] => u16::from_be_bytes([hi, lo]),
                _ => panic!("no fixed word at {at}: {self:?}"),
            }
        }
    }

    /// The frames of a config, read as trafgen reads the part of its
    /// language the lab writes.
    fn templates(cfg: &str) -> Vec<Template> {
        let mut tokens = Vec::new();
        let (mut token, mut depth, mut quoted) = (String::new(), 0, false);
        for c in cfg.chars() {
            match c {
                '"' => quoted = !quoted,
                '(' if !quoted => depth += 1,
                ')' if !quoted => depth -= 1,
                _ => {}
            }
            let brace = c == '{' || c == '}';
            if !quoted && depth == 0 && (c == ',' || c.is_whitespace() || brace) {
                if !token.is_empty() {
                    tokens.push(std::mem::take(&mut token));
                }
                if brace {
                    tokens.push(c.to_string());
                }
            } else {
                token.push(c);
            }
        }
        let number = |n: &str| {
            n.strip_prefix("0x")
                .map_or_else(|| n.parse(), |hex| u64::from_str_radix(hex, 16))
                .unwrap_or_else(|e| panic!("`{n}`: {e}"))
        };
        let mut frames = Vec::new();
        let mut frame = None;
        for t in tokens {
            match t.as_str() {
                "{" => {
                    frame = Some(Template {
                        bytes: Vec::new(),
                        csums: Vec::new(),
                    });
                    continue;
                }
                "}" => {
                    frames.extend(frame.take());
                    continue;
                }
                _ => {}
            }
            let f = frame
                .as_mut()
                .unwrap_or_else(|| panic!("`{t}` outside a frame"));
            if let Some(text) = t.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                f.bytes.extend(text.bytes().map(Some));
            } else if let Some((name, args)) = t.strip_suffix(')').and_then(|t| t.split_once('(')) {
                match name {
                    "c16" => f
                        .bytes
                        .extend(number(args).to_be_bytes()[6..].iter().map(|b| Some(*b))),
                    "c32" => f
                        .bytes
                        .extend(number(args).to_be_bytes()[4..].iter().map(|b| Some(*b))),
                    "drnd" if args.is_empty() => f.bytes.push(None),
                    "drnd" => f.bytes.extend(vec![None; number(args) as usize]),
                    "dinc" => f.bytes.push(None),
                    _ if name.starts_with("csum") => {
                        f.csums.push((f.bytes.len(), name.to_owned()));
                        f.bytes.extend([None, None]);
                    }
                    _ => panic!("`{t}`"),
                }
            } else {
                f.bytes.push(Some(number(&t) as u8));
            }
        }
        assert!(frame.is_none(), "a frame left open:\n{cfg}");
        frames
    }

    #[test]
    fn every_ipv4_frame_adds_up_and_carries_its_checksums() {
        for frames in [
            Frames::Syn,
            Frames::Udp,
            Frames::SynAndUdp,
            Frames::SynWide,
            Frames::SynRandom,
            Frames::UdpRandom,
            Frames::QueriesAndGre,
        ] {
            let cfg = trafgen_config(frames, [0; 6], [0; 6]);
            for t in templates(&cfg) {
                let len = t.bytes.len();
                assert_eq!(usize::from(t.word(16)), len - 14, "{frames:?}: IP length");
                assert_eq!(t.bytes[26], Some(198), "{frames:?}: source");
                assert_eq!(t.bytes[28..30], [None, None], "{frames:?}: source");
                assert_eq!(
                    t.bytes[30..34],
                    [Some(198), Some(18), Some(0), Some(2)],
                    "{frames:?}: destination"
                );
                // The transport's length as it says, and its checksum.
                let (l4_len, l4_csum) = match t.bytes[23] {
                    Some(6) => (
                        usize::from(t.bytes[46].unwrap() >> 4) * 4,
                        Some((50, "csumtcp")),
                    ),
                    Some(17) => (usize::from(t.word(38)), Some((40, "csumudp"))),
                    // A timestamp request: 20 bytes, the internet checksum.
                    Some(1) => (20, Some((36, "csumip"))),
                    Some(47) => (8, None),
                    other => panic!("{frames:?}: protocol {other:?}"),
                };
                assert_eq!(l4_len, len - 34, "{frames:?}: transport length:\n{cfg}");
                let mut csums = vec![(24, "csumip".to_owned())];
                csums.extend(l4_csum.map(|(at, name)| (at, name.to_owned())));
                assert_eq!(t.csums, csums, "{frames:?}");
            }
        }
    }

    #[test]
    fn the_randomised_frames_vary_in_turn_and_include_the_users_own() {
        let syn = templates(&trafgen_config(Frames::SynRandom, [0; 6], [0; 6]));
        let udp = templates(&trafgen_config(Frames::UdpRandom, [0; 6], [0; 6]));
        assert_eq!(
            (syn.len(), udp.len()),
            (SYN_OPTIONS.len(), UDP_PAYLOADS.len())
        );
        for t in syn.iter().chain(&udp) {
            // TTL and IP ID.
            assert_eq!(t.bytes[22], None);
            assert_eq!(t.bytes[18..20], [None, None]);
        }
        for t in &syn {
            // Sequence number and window.
            assert!(t.bytes[38..42].iter().all(Option::is_none));
            assert_eq!(t.bytes[48..50], [None, None]);
        }
        let mut lengths: Vec<usize> = syn.iter().map(|t| t.bytes.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        assert_eq!(
            lengths.len(),
            SYN_OPTIONS.len(),
            "every layout its own length"
        );
        for t in &udp {
            assert!(t.bytes[42..].iter().all(Option::is_none), "random payload");
        }
        assert!(udp.iter().any(|t| t.bytes.len() == 42 + HELLO.len()));
    }

    /// What guard fingerprints of an IPv4 frame.
    fn fingerprint(frame: &[u8]) -> Fingerprint {
        Fingerprint::of(&frame[14..], 20, frame[23]).unwrap()
    }

    /// What the lab's Linux users send first, as guard fingerprints it:
    /// SYNs (options as Linux sends them on this link: MSS 1460, SACK
    /// permitted, timestamps, window scale) and DNS-like queries.
    fn users() -> Vec<Fingerprint> {
        use guard_tests::packet::{L4, Packet, TCP_SYN};
        let (user, victim) = (IpAddr::from(user(0)), IpAddr::from(crate::topology::VICTIM));
        (0..300_u16)
            .flat_map(|i| {
                let [a, b] = i.to_be_bytes();
                let options = vec![
                    2, 4, 5, 0xb4, 4, 2, 8, 10, a, b, a, b, 0, 0, 0, 0, 1, 3, 3, 7,
                ];
                let syn = Packet::new(
                    user,
                    victim,
                    L4::Tcp {
                        sport: 33_000 + i,
                        dport: TCP_PORT,
                        flags: TCP_SYN,
                        seq: u32::from(i),
                        ack: 0,
                        options,
                    },
                );
                let query = Packet::udp(user, victim, 40_000 + i, UDP_PORT, HELLO);
                [syn, query]
            })
            .map(|p| fingerprint(&p.frame()))
            .collect()
    }

    /// guard's learner, with the users as its picture of normal traffic
    /// and trafgen's frames in turn, random where trafgen draws bytes, as
    /// guard samples them under a flood: every 2^k-th.
    #[test]
    fn the_learner_takes_the_fixed_floods_and_not_the_randomised_ones() {
        use guard::model::fingerprint::{Thresholds, learn};
        let users = users();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        };
        for (frames, learnable) in [
            (Frames::Syn, true),
            (Frames::Udp, true),
            (Frames::SynRandom, false),
            (Frames::UdpRandom, false),
        ] {
            let templates = templates(&trafgen_config(frames, [0; 6], [0; 6]));
            let flood: Vec<_> = (0..1000)
                .map(|i| {
                    let frame: Vec<u8> = templates[i * 8 % templates.len()]
                        .bytes
                        .iter()
                        .map(|b| b.unwrap_or_else(&mut random))
                        .collect();
                    fingerprint(&frame)
                })
                .collect();
            let learned = learn(&flood, &users, &Thresholds::default());
            assert_eq!(learned.is_some(), learnable, "{frames:?}: {learned:?}");
        }
    }

    #[test]
    fn tally_drains() {
        let t = Tally::default();
        t.record(Ok(Duration::from_millis(2)));
        t.record(Err(()));
        let o = t.take();
        assert_eq!((o.ok, o.failed), (1, 1));
        assert!((o.connect_ms[0] - 2.0).abs() < 1e-9);
        assert_eq!(t.take(), Outcomes::default());
    }
}
