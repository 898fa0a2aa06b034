//! Sending crafted frames out of an interface in a namespace (AF_PACKET).

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use guard::host::netns::Scope;

/// A raw socket bound to one interface. The socket belongs to the
/// namespace it was created in, whichever thread later uses it.
pub struct RawSender {
    fd: OwnedFd,
    ifindex: i32,
}

impl RawSender {
    /// Opens a sender on `iface` in namespace `ns`.
    #[must_use]
    pub fn open(ns: &str, iface: &str) -> Self {
        let scope = Scope::open(Some(ns)).unwrap_or_else(|e| panic!("netns {ns}: {e}"));
        scope
            .run(|| {
                let index = guard::host::iface::lookup(iface, &scope.suffix())?.index;
                // Protocol 0: send only, so the socket never queues frames.
                // SAFETY: plain socket(2) call.
                let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
                if fd < 0 {
                    return Err(anyhow::Error::from(io::Error::last_os_error()));
                }
                // SAFETY: the kernel just returned this fd to us.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                Ok(Self {
                    fd,
                    ifindex: i32::try_from(index)?,
                })
            })
            .unwrap_or_else(|e| panic!("entering {ns}: {e}"))
            .unwrap_or_else(|e| panic!("raw socket on {iface} in {ns}: {e:#}"))
    }

    /// Sends one frame (Ethernet header included) as it is.
    pub fn send(&self, frame: &[u8]) {
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6.min(frame.len())]);
        // SAFETY: sendto reads `frame` and `addr`, both valid for the
        // lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert!(
            usize::try_from(sent).ok() == Some(frame.len()),
            "sending a {}-byte frame: {}",
            frame.len(),
            io::Error::last_os_error()
        );
    }
}
