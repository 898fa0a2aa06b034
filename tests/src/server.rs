//! A real TCP server in the victim namespace and real clients in the
//! attacker namespace: legitimate traffic, through the kernel's own stack.
//! And a UDP one (a resolver, say) with its clients.

use std::{
    io::{self, Read as _, Write as _},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket},
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

/// Accepts connections and echoes what they send (or greets them:
/// [`EchoServer::greeting`]), until dropped.
pub struct EchoServer {
    _running: Running,
}

impl EchoServer {
    /// Listens on `addr` inside namespace `ns`.
    #[must_use]
    pub fn start(ns: &str, addr: SocketAddr) -> Self {
        Self::serve(ns, addr, echo)
    }

    /// Not an echo: a server that speaks first and closes first, as SMTP,
    /// SSH or an HTTP server closing after its response does. It sends
    /// [`GREETING`] on each connection and closes it, so the connection
    /// waits in TIME_WAIT on the server's side.
    #[must_use]
    pub fn greeting(ns: &str, addr: SocketAddr) -> Self {
        Self::serve(ns, addr, |mut stream| {
            let _ = stream.write_all(GREETING);
        })
    }

    /// Listens on `addr` inside namespace `ns`, each connection handed to
    /// `handle` on a thread of its own.
    fn serve(ns: &str, addr: SocketAddr, handle: fn(TcpStream)) -> Self {
        let listener = in_netns(ns, || TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("listening on {addr} in {ns}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let running = Running::spawn(move |stopping| {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        thread::spawn(move || handle(stream));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        Self { _running: running }
    }
}

fn echo(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    // A client may hold its connection idle across a guard restart.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = [0u8; 256];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// What [`EchoServer::greeting`] sends.
pub const GREETING: &[u8] = b"220 guard-test\r\n";

/// A server's thread, until dropped: it serves while the flag it is
/// given is clear; dropping sets the flag and waits for it.
struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    fn spawn(serve: impl FnOnce(&AtomicBool) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || serve(&stopping));
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers what `socket` receives with what `answer` makes of it (the
/// datagram and its sender: the reply and where to), on a thread of its
/// own.
fn answering(
    socket: UdpSocket,
    answer: impl Fn(&[u8], SocketAddr) -> Option<(Vec<u8>, SocketAddr)> + Send + 'static,
) -> Running {
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("read timeout");
    Running::spawn(move |stopping| {
        let mut buf = [0u8; 576];
        while !stopping.load(Ordering::Relaxed) {
            if let Ok((n, from)) = socket.recv_from(&mut buf)
                && let Some((reply, to)) = answer(&buf[..n], from)
            {
                let _ = socket.send_to(&reply, to);
            }
        }
    })
}

/// Answers each datagram with its own bytes (a resolver, as its clients
/// see it), until dropped.
pub struct UdpEcho {
    _running: Running,
}

impl UdpEcho {
    /// Bound to `addr` inside namespace `ns`.
    #[must_use]
    pub fn start(ns: &str, addr: SocketAddr) -> Self {
        let socket = in_netns(ns, || UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("binding {addr} in {ns}: {e}"));
        Self::serve(socket)
    }

    /// Bound to `addr` inside namespace `ns`, a member of the multicast
    /// `group` on its device `dev` (a DHCPv6 server's, say, at
    /// `ff02::1:2`); it answers from its own address on that link.
    #[must_use]
    pub fn joined(ns: &str, addr: SocketAddr, group: Ipv6Addr, dev: &str) -> Self {
        let socket = in_netns(ns, || {
            let socket = UdpSocket::bind(addr)?;
            socket.join_multicast_v6(&group, if_index(dev)?)?;
            Ok::<_, io::Error>(socket)
        })
        .unwrap_or_else(|e| panic!("binding {addr} in {ns}, joining {group} on {dev}: {e}"));
        Self::serve(socket)
    }

    /// Echoes what `socket` receives, on a thread of its own.
    fn serve(socket: UdpSocket) -> Self {
        Self {
            _running: answering(socket, |datagram, from| Some((datagram.to_vec(), from))),
        }
    }
}

/// One query from namespace `ns` to `server`, from a socket of its own
/// (a port of its own, as a resolver's client picks one for each query):
/// sends `query` and waits `timeout` for the answer, which must echo it.
pub fn query(ns: &str, server: SocketAddr, query: &[u8], timeout: Duration) -> io::Result<()> {
    let local = match server {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = in_netns(ns, || UdpSocket::bind(local))?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send(query)?;
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf)?;
    if &buf[..n] != query {
        return Err(io::Error::other(format!("answered {:?}", &buf[..n])));
    }
    Ok(())
}

/// The index of device `dev` in the namespace this thread is in.
fn if_index(dev: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(dev).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated name that outlives the call.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        index => Ok(index),
    }
}

/// All_DHCP_Relay_Agents_and_Servers, where a DHCPv6 client sends.
pub const ALL_DHCP6_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// A DHCPv6-shaped client in a namespace: a socket bound to port 546, as
/// a client keeps it, that sends to `ff02::1:2` port 547 on one device
/// (so from the device's link-local address).
pub struct Dhcp6Client {
    socket: UdpSocket,
    servers: SocketAddrV6,
}

impl Dhcp6Client {
    /// Bound in namespace `ns`, sending on its device `dev`.
    #[must_use]
    pub fn bind(ns: &str, dev: &str) -> Self {
        let (socket, index) = in_netns(ns, || {
            Ok::<_, io::Error>((
                UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 546)))?,
                if_index(dev)?,
            ))
        })
        .unwrap_or_else(|e| panic!("a DHCPv6 client in {ns} on {dev}: {e}"));
        Self {
            socket,
            servers: SocketAddrV6::new(ALL_DHCP6_SERVERS, 547, 0, index),
        }
    }

    /// Sends `message` and waits `timeout` for an answer that echoes it,
    /// which comes from the answering server's own address (a late
    /// answer to an earlier message is passed over).
    pub fn exchange(&self, message: &[u8], timeout: Duration) -> io::Result<()> {
        self.socket.send_to(message, self.servers)?;
        awaited(&self.socket, message, timeout)
    }
}

/// A DHCPv4 (BOOTP) message of 244 bytes: `op` (1 a request, 2 a
/// reply), Ethernet's `htype` and `hlen`, the transaction id `xid`, the
/// rest of the fixed fields zero, the magic cookie and the end option.
#[must_use]
pub fn bootp(op: u8, xid: u32) -> Vec<u8> {
    let mut message = vec![0; 244];
    message[..4].copy_from_slice(&[op, 1, 6, 0]);
    message[4..8].copy_from_slice(&xid.to_be_bytes());
    message[236..240].copy_from_slice(&[99, 130, 83, 99]);
    message[240] = 255;
    message
}

/// A UDP socket in namespace `ns` bound to `0.0.0.0:port` on device
/// `dev`, allowed to send to the broadcast address, as a DHCPv4 client's
/// and server's are.
fn broadcasting(ns: &str, dev: &str, port: u16) -> UdpSocket {
    use socket2::{Domain, Socket, Type};
    in_netns(ns, || {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
        socket.set_broadcast(true)?;
        socket.bind_device(Some(dev.as_bytes()))?;
        socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
        Ok::<_, io::Error>(UdpSocket::from(socket))
    })
    .unwrap_or_else(|e| panic!("binding port {port} on {dev} in {ns}: {e}"))
}

/// A DHCPv4-shaped server in a namespace, until dropped: on port 67 of one
/// device, it answers each request ([`bootp`] `op` 1) with a reply of the
/// same `xid` to the broadcast address, port 68, from its own address (as
/// a server answers a client that has no address yet).
pub struct Dhcp4Server {
    _running: Running,
}

impl Dhcp4Server {
    /// On device `dev` of namespace `ns`.
    #[must_use]
    pub fn start(ns: &str, dev: &str) -> Self {
        let to = SocketAddr::from((Ipv4Addr::BROADCAST, 68));
        let running = answering(broadcasting(ns, dev, 67), move |request, _| {
            let xid = u32::from_be_bytes(*request.get(4..8)?.first_chunk()?);
            (request[0] == 1).then(|| (bootp(2, xid), to))
        });
        Self { _running: running }
    }
}

/// A DHCPv4-shaped client in a namespace: a socket bound to port 68 of one
/// device, as a client keeps it, that broadcasts its requests to port 67.
pub struct Dhcp4Client(UdpSocket);

impl Dhcp4Client {
    /// Bound in namespace `ns`, on its device `dev`.
    #[must_use]
    pub fn bind(ns: &str, dev: &str) -> Self {
        Self(broadcasting(ns, dev, 68))
    }

    /// Broadcasts a request of transaction `xid` and waits `timeout` for a
    /// reply of the same `xid` (replies to others are passed over).
    pub fn exchange(&self, xid: u32, timeout: Duration) -> io::Result<()> {
        self.0.send_to(&bootp(1, xid), (Ipv4Addr::BROADCAST, 67))?;
        awaited(&self.0, &bootp(2, xid), timeout)
    }
}

/// Waits `timeout` on `socket` for a datagram of exactly `expected` bytes,
/// from anyone; others (a late answer to an earlier message) are passed
/// over.
fn awaited(socket: &UdpSocket, expected: &[u8], timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 576];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        socket.set_read_timeout(Some(left))?;
        let (n, _) = socket.recv_from(&mut buf)?;
        if &buf[..n] == expected {
            return Ok(());
        }
    }
}

/// One legitimate connection from namespace `ns`: connect, send, read the
/// echo. Returns the time to connect.
pub fn connect_echo(ns: &str, addr: SocketAddr, timeout: Duration) -> io::Result<Duration> {
    let start = Instant::now();
    let mut stream = connect(ns, addr, timeout)?;
    let connected = start.elapsed();
    echo_roundtrip(&mut stream, b"guard-test")?;
    Ok(connected)
}

/// [`connect_echo`] as a client across the Internet makes it, within
/// `within`: its SYNs reach the server at any moment of its clock tick,
/// whereas a retransmission by this machine's kernel leaves on a tick, just
/// as guard's buckets, which the coarse clock refills a tick at a time,
/// have their new tokens, and so gets through a spent budget that a remote
/// client's would not. So an attempt not answered within [`retry_after`]
/// (before the kernel's own retransmission) is given up and made again
/// from a new socket, at a moment of this process's choosing.
pub fn visit_echo(ns: &str, addr: SocketAddr, within: Duration) -> io::Result<Duration> {
    let start = Instant::now();
    let mut stream = loop {
        let left = within.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection to {addr} within {within:?}"),
            ));
        }
        match in_netns(ns, || {
            TcpStream::connect_timeout(&addr, retry_after().min(left))
        }) {
            Ok(stream) => break stream,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e),
        }
    };
    let connected = start.elapsed();
    stream.set_read_timeout(Some(within))?;
    echo_roundtrip(&mut stream, b"guard-test")?;
    Ok(connected)
}

/// A random wait in 0.4-0.9 s: before the kernel's first SYN
/// retransmission (1 s), at no particular moment of its tick.
#[must_use]
pub fn retry_after() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(400 + u64::from(nanos % 500))
}

/// A connection from namespace `ns`, its reads timing out after `timeout`.
pub fn connect(ns: &str, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = in_netns(ns, || TcpStream::connect_timeout(&addr, timeout))?;
    stream.set_read_timeout(Some(timeout))?;
    Ok(stream)
}

/// The first of the local ports [`connect_from`] takes: they lie below a
/// namespace's ephemeral ports (`net.ipv4.ip_local_port_range`, 32768 to
/// 60999), so no connection the test makes with [`connect`] can be
/// holding one (one chosen by chance and left in TIME_WAIT failed a
/// bind, now and then).
pub const CLIENT_PORTS: u16 = 20_000;

/// A connection from namespace `ns` and local port `port` (the family's
/// unspecified address) to `addr`. Connecting and each read time out after
/// `timeout`.
///
/// # Panics
/// If `port` is not in [`CLIENT_PORTS`]`..32768`.
pub fn connect_from(
    ns: &str,
    port: u16,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    assert!(
        (CLIENT_PORTS..32_768).contains(&port),
        "client port {port} is not below the ephemeral ports"
    );
    let socket = in_netns(ns, || {
        Socket::new(Domain::for_address(addr), Type::STREAM, None)
    })?;
    let local = match addr {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
    };
    socket.bind(&local.into())?;
    socket.connect_timeout(&addr.into(), timeout)?;
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(timeout))?;
    Ok(stream)
}

/// [`connect_from`] to [`EchoServer::greeting`] at `addr`: reads its
/// greeting to the end, then closes.
pub fn greeted_from(ns: &str, port: u16, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let mut got = Vec::new();
    connect_from(ns, port, addr, timeout)?.read_to_end(&mut got)?;
    if got != GREETING {
        return Err(io::Error::other(format!("greeted with {got:?}")));
    }
    Ok(())
}

/// Closes `stream` without a word to its peer, as a client that crashed,
/// or a NAT that gave its port to another, leaves the server's end open:
/// in repair mode (`TCP_REPAIR`) the kernel sends neither FIN nor RST.
pub fn forget(stream: TcpStream) {
    use std::os::fd::AsRawFd as _;
    let on: libc::c_int = 1;
    // SAFETY: a setsockopt on an open socket with an int option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_REPAIR,
            (&raw const on).cast(),
            libc::socklen_t::try_from(size_of::<libc::c_int>()).expect("small"),
        )
    };
    assert_eq!(rc, 0, "TCP_REPAIR: {}", io::Error::last_os_error());
    drop(stream);
}

/// Sends `data` to an [`EchoServer`] and reads it back (at most the
/// socket buffers' worth: it is sent whole before anything is read).
pub fn echo_roundtrip(stream: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    stream.write_all(data)?;
    let mut buf = vec![0u8; data.len()];
    stream.read_exact(&mut buf)?;
    if buf != data {
        return Err(io::Error::other("the echo differs from what was sent"));
    }
    Ok(())
}

/// The window scale the other end advertised on `stream`'s handshake, as
/// the kernel keeps it (`TCP_INFO`'s `tcpi_snd_wscale`).
#[must_use]
pub fn peer_wscale(stream: &TcpStream) -> u8 {
    use std::os::fd::AsRawFd as _;
    // SAFETY: a zeroed tcp_info (integers only) is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(size_of::<libc::tcp_info>()).expect("small");
    // SAFETY: getsockopt writes at most `len` bytes into `info`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", io::Error::last_os_error());
    // Two 4-bit fields: the send scale (the peer's) in the low half.
    info.tcpi_snd_rcv_wscale & 0x0f
}
