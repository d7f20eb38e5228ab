//! RFC 5626 §4.4.1 keep-alive of a connection-oriented flow (TCP, TLS):
//! a CRLFCRLF "ping" at a random point between 80 % and 100 % of the
//! interval, and the flow counts as failed when the CRLF "pong" does not
//! come back in time. A failed flow is what makes the app register again
//! over a new one at once, instead of finding out at the next call.
//! Sans-IO: the driver asks what is due and reports pongs.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct KeepAlive {
    interval: Duration,
    pong_timeout: Duration,
    next_ping: Instant,
    waiting_since: Option<Instant>,
    rng: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveAction {
    /// Write CRLFCRLF on the flow now.
    SendPing,
    /// No pong in time: the flow is dead.
    Failed,
}

impl KeepAlive {
    /// RFC 5626 recommends 95–120 s for TCP and TLS; `seed` randomises
    /// the pings so phones do not ping in step.
    pub fn new(now: Instant, interval: Duration, pong_timeout: Duration, seed: u64) -> Self {
        let mut k = KeepAlive { interval, pong_timeout, next_ping: now, waiting_since: None, rng: seed | 1 };
        k.next_ping = now + k.jittered();
        k
    }

    /// What to do at `now` (call when [`KeepAlive::next_wake`] has come).
    pub fn poll(&mut self, now: Instant) -> Option<KeepAliveAction> {
        if let Some(since) = self.waiting_since {
            if now >= since + self.pong_timeout {
                self.waiting_since = None;
                return Some(KeepAliveAction::Failed);
            }
            return None;
        }
        if now >= self.next_ping {
            self.waiting_since = Some(now);
            self.next_ping = now + self.jittered();
            return Some(KeepAliveAction::SendPing);
        }
        None
    }

    /// A CRLF pong arrived.
    pub fn pong(&mut self) {
        self.waiting_since = None;
    }

    pub fn next_wake(&self) -> Instant {
        match self.waiting_since {
            Some(since) => since + self.pong_timeout,
            None => self.next_ping,
        }
    }

    fn jittered(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.interval.mul_f64(0.8 + (self.rng % 1000) as f64 / 5000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_within_the_interval_and_a_pong_keeps_the_flow() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(t0, Duration::from_secs(100), Duration::from_secs(10), 42);
        let first = k.next_wake();
        assert!(first >= t0 + Duration::from_secs(80) && first <= t0 + Duration::from_secs(100));
        assert_eq!(k.poll(first - Duration::from_secs(1)), None);
        assert_eq!(k.poll(first), Some(KeepAliveAction::SendPing));
        assert_eq!(k.next_wake(), first + Duration::from_secs(10), "now waiting for the pong");
        k.pong();
        let second = k.next_wake();
        assert!(second >= first + Duration::from_secs(80));
        assert_eq!(k.poll(first + Duration::from_secs(11)), None, "the pong came: no failure");
    }

    #[test]
    fn a_missing_pong_fails_the_flow_once() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(t0, Duration::from_secs(100), Duration::from_secs(10), 7);
        let at = k.next_wake();
        assert_eq!(k.poll(at), Some(KeepAliveAction::SendPing));
        assert_eq!(k.poll(at + Duration::from_secs(9)), None);
        assert_eq!(k.poll(at + Duration::from_secs(10)), Some(KeepAliveAction::Failed));
        assert_ne!(k.poll(at + Duration::from_secs(10)), Some(KeepAliveAction::Failed));
    }

    #[test]
    fn different_seeds_spread_the_pings() {
        let t0 = Instant::now();
        let a = KeepAlive::new(t0, Duration::from_secs(100), Duration::from_secs(10), 1).next_wake();
        let b = KeepAlive::new(t0, Duration::from_secs(100), Duration::from_secs(10), 2).next_wake();
        assert_ne!(a, b);
    }
}
