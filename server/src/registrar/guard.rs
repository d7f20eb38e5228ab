//! Brute-force guard: counts failed authentications per source address and
//! per extension, and bans either for a while once a threshold is passed.

use crate::config::SecurityConfig;
use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug, Default)]
struct Counter {
    window_start: u64,
    failures: u32,
    banned_until: u64,
}

impl Counter {
    /// Count one failure at `now`; true when this one starts a ban.
    fn fail(&mut self, now: u64, max: u32, window: u64, ban: u64) -> bool {
        if now.saturating_sub(self.window_start) > window {
            self.window_start = now;
            self.failures = 0;
        }
        self.failures += 1;
        if self.failures >= max && self.banned_until <= now {
            self.banned_until = now + ban;
            self.failures = 0;
            return true;
        }
        false
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct NewBans {
    pub source: bool,
    pub extension: bool,
}

pub struct AuthGuard {
    cfg: SecurityConfig,
    by_source: HashMap<IpAddr, Counter>,
    by_extension: HashMap<String, Counter>,
}

impl AuthGuard {
    pub fn new(cfg: SecurityConfig) -> Self {
        Self { cfg, by_source: HashMap::new(), by_extension: HashMap::new() }
    }

    pub fn source_banned(&self, ip: IpAddr, now: u64) -> bool {
        self.by_source.get(&ip).is_some_and(|c| c.banned_until > now)
    }

    pub fn extension_banned(&self, ext: &str, now: u64) -> bool {
        self.by_extension.get(ext).is_some_and(|c| c.banned_until > now)
    }

    pub fn record_failure(&mut self, ip: IpAddr, ext: &str, now: u64) -> NewBans {
        let c = &self.cfg;
        let (window, ban) = (c.failure_window_secs, c.ban_secs);
        let source = self.by_source.entry(ip).or_default().fail(now, c.max_failures_per_source, window, ban);
        let extension = self.by_extension.entry(ext.to_string()).or_default().fail(now, c.max_failures_per_extension, window, ban);
        NewBans { source, extension }
    }

    /// Forget entries that are neither banned nor inside a window.
    pub fn prune(&mut self, now: u64) {
        let window = self.cfg.failure_window_secs;
        let keep = |c: &mut Counter| c.banned_until > now || now.saturating_sub(c.window_start) <= window;
        self.by_source.retain(|_, c| keep(c));
        self.by_extension.retain(|_, c| keep(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> AuthGuard {
        AuthGuard::new(SecurityConfig { max_failures_per_source: 3, max_failures_per_extension: 2, failure_window_secs: 60, ban_secs: 300 })
    }

    #[test]
    fn bans_after_threshold_and_expires() {
        let mut g = guard();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(g.record_failure(ip, "1001", 0), NewBans::default());
        assert_eq!(g.record_failure(ip, "1001", 1), NewBans { source: false, extension: true });
        assert!(g.extension_banned("1001", 2) && !g.source_banned(ip, 2));
        assert!(g.record_failure(ip, "1002", 3).source);
        assert!(g.source_banned(ip, 4));
        assert!(!g.source_banned(ip, 3 + 300));
        assert!(!g.extension_banned("1001", 1 + 300));
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let mut g = guard();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        g.record_failure(ip, "1001", 0);
        g.record_failure(ip, "1002", 100);
        g.record_failure(ip, "1003", 200);
        assert!(!g.source_banned(ip, 201));
        g.prune(1000);
        assert!(g.by_source.is_empty());
    }
}
