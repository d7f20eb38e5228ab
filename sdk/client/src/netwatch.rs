//! Learns that the device changed networks (Wi-Fi -> LTE and back) on
//! desktop Linux, where no mobile shell tells us: the kernel's rtnetlink
//! multicast groups wake us on every link, address or route change, and a
//! slow poll covers other systems and missed messages.
//!
//! What counts as a change is deliberately narrow: the source address the
//! kernel would pick for packets to the PBX. A new address elsewhere (a
//! VPN, a second NIC) that the PBX's route does not use is no reason to
//! move a call. Losing every route is not reported either: nothing can be
//! sent then, and the address that comes next is.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How often the route is checked when netlink is quiet or missing.
const POLL: Duration = Duration::from_secs(1);

/// The local address the kernel routes `server` from now, if any. A UDP
/// `connect` only consults the routing table: nothing is sent.
pub fn route_source(server: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect(server).ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Watches the route to one server; [`NetWatch::changed`] resolves when its
/// source address changes.
pub struct NetWatch {
    server: SocketAddr,
    last: Option<IpAddr>,
    #[cfg(target_os = "linux")]
    netlink: Option<tokio::io::unix::AsyncFd<linux::Netlink>>,
}

impl NetWatch {
    pub fn new(server: SocketAddr) -> NetWatch {
        NetWatch {
            server,
            last: route_source(server),
            // Without netlink (a sandbox that forbids it) the poll still works.
            #[cfg(target_os = "linux")]
            netlink: linux::Netlink::open().ok().and_then(|n| {
                // SAFETY: `Netlink` owns its fd, open until it is dropped
                // with the AsyncFd, and always returns that same fd.
                unsafe { tokio::io::unix::AsyncFd::register_with_interest(n, tokio::io::Interest::READABLE) }.ok()
            }),
        }
    }

    /// Whether the kernel's change messages are heard (else only polling).
    pub fn has_netlink(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.netlink.is_some();
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// The address the route to the server uses now, as last seen.
    pub fn current(&self) -> Option<IpAddr> {
        self.last
    }

    /// Resolves with the new source address once the route to the server
    /// moves to another address (or comes back after no route at all).
    /// Cancel-safe: what was seen is remembered between calls.
    pub async fn changed(&mut self) -> IpAddr {
        loop {
            self.wait_for_news().await;
            let now = route_source(self.server);
            let previous = std::mem::replace(&mut self.last, now);
            if let Some(ip) = now {
                if previous != Some(ip) {
                    return ip;
                }
            }
        }
    }

    async fn wait_for_news(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = self.netlink.as_mut() {
            tokio::select! {
                ready = fd.readable_mut() => match ready {
                    Ok(mut guard) => {
                        // The content is not needed: any message means
                        // "look again". Drain so the next wait blocks.
                        guard.get_inner_mut().drain();
                        guard.clear_ready();
                    }
                    Err(_) => self.netlink = None,
                },
                _ = tokio::time::sleep(POLL) => {}
            }
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::{AsRawFd, RawFd};

    /// An rtnetlink socket subscribed to link, address and route changes.
    pub struct Netlink(RawFd);

    impl Netlink {
        pub fn open() -> std::io::Result<Netlink> {
            // SAFETY: plain socket(2)/bind(2) calls on a zeroed sockaddr_nl;
            // the fd is owned by the returned value and closed on drop.
            unsafe {
                let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let mut addr: libc::sockaddr_nl = std::mem::zeroed();
                addr.nl_family = libc::AF_NETLINK as u16;
                addr.nl_groups = (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV4_ROUTE | libc::RTMGRP_IPV6_IFADDR | libc::RTMGRP_IPV6_ROUTE) as u32;
                let rc = libc::bind(fd, &addr as *const libc::sockaddr_nl as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_nl>() as u32);
                if rc < 0 {
                    let e = std::io::Error::last_os_error();
                    libc::close(fd);
                    return Err(e);
                }
                Ok(Netlink(fd))
            }
        }

        /// Read and drop every queued message (bounded: the queue is
        /// finite, and an error such as ENOBUFS after an overflow also
        /// just means "look again").
        pub fn drain(&mut self) {
            let mut buf = [0u8; 8192];
            for _ in 0..1024 {
                // SAFETY: recv into a stack buffer of the given length.
                let n = unsafe { libc::recv(self.0, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), libc::MSG_DONTWAIT) };
                if n <= 0 {
                    let e = std::io::Error::last_os_error();
                    if n == 0 || e.kind() == std::io::ErrorKind::WouldBlock {
                        return;
                    }
                    if e.raw_os_error() != Some(libc::ENOBUFS) && e.kind() != std::io::ErrorKind::Interrupted {
                        return;
                    }
                }
            }
        }
    }

    impl AsRawFd for Netlink {
        fn as_raw_fd(&self) -> RawFd {
            self.0
        }
    }

    impl Drop for Netlink {
        fn drop(&mut self) {
            // SAFETY: we own the fd.
            unsafe {
                libc::close(self.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_to_loopback_comes_from_loopback() {
        assert_eq!(route_source("127.0.0.1:5060".parse().unwrap()), Some("127.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_watch_starts_from_the_current_route_and_stays_quiet_while_it_holds() {
        let mut w = NetWatch::new("127.0.0.1:5060".parse().unwrap());
        assert_eq!(w.current(), Some("127.0.0.1".parse().unwrap()));
        if cfg!(target_os = "linux") {
            assert!(w.has_netlink(), "rtnetlink should open on Linux");
        }
        // Nothing changes on loopback: no news within a few polls.
        assert!(tokio::time::timeout(Duration::from_millis(1500), w.changed()).await.is_err());
    }
}
