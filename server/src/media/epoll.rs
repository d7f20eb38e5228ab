//! The few Linux calls the relay threads need that std does not offer:
//! a level-triggered epoll set and an eventfd to wake a thread from
//! another one. Kept tiny so the `unsafe` is in one place.
//!
//! Level-triggered on purpose: a relay thread takes one datagram per
//! readiness event and goes on to the next socket; a socket with more
//! queued is reported again by the next wait. Edge-triggered readiness
//! would need one more `recvfrom` per event, the one that says "empty",
//! which at 50 packets/s per socket doubles the receive syscalls.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is
        // a new descriptor that we own from here on.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Report `fd` as readable with `token`, until it is removed or closed.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn remove(&self, fd: RawFd) {
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL (Linux >= 2.6.9).
        // Failure only means the fd was not in the set.
        unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    }

    /// Wait up to `timeout_ms` (-1: no limit) and fill `events`; returns
    /// how many are valid. An interrupted wait returns 0.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: the kernel writes at most `max` entries into `events`.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
    }
}

/// Wakes a thread blocked in [`Epoll::wait`] (the fd is in its set).
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<Self> {
        // SAFETY: no pointers; a non-negative result is a new descriptor.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: just created, owned by no one else.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64. A full counter (EAGAIN)
        // still leaves the fd readable, which is all a wake-up needs.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Reset the counter so the fd stops being readable.
    pub fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; EAGAIN when already clear.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    fn empty() -> Vec<libc::epoll_event> {
        vec![libc::epoll_event { events: 0, u64: 0 }; 8]
    }

    #[test]
    fn a_queued_datagram_is_reported_until_it_is_read() {
        let ep = Epoll::new().unwrap();
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        ep.add(rx.as_raw_fd(), 42).unwrap();
        let mut evs = empty();
        assert_eq!(ep.wait(&mut evs, 0).unwrap(), 0);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
        assert_eq!(ep.wait(&mut evs, 1000).unwrap(), 1);
        let token = evs[0].u64;
        assert_eq!(token, 42);
        // Level-triggered: still readable until read.
        assert_eq!(ep.wait(&mut evs, 0).unwrap(), 1);
        let mut buf = [0u8; 8];
        rx.recv_from(&mut buf).unwrap();
        assert_eq!(ep.wait(&mut evs, 0).unwrap(), 0);
        ep.remove(rx.as_raw_fd());
        tx.send_to(b"y", rx.local_addr().unwrap()).unwrap();
        assert_eq!(ep.wait(&mut evs, 50).unwrap(), 0);
    }

    #[test]
    fn eventfd_wakes_a_wait_and_clears() {
        let ep = Epoll::new().unwrap();
        let wake = EventFd::new().unwrap();
        ep.add(wake.raw(), 7).unwrap();
        let mut evs = empty();
        wake.notify();
        wake.notify();
        assert_eq!(ep.wait(&mut evs, 1000).unwrap(), 1);
        wake.clear();
        assert_eq!(ep.wait(&mut evs, 0).unwrap(), 0);
    }
}
