//! Configuration: built-in defaults, then a TOML file, then `TSUNAGU_*`
//! environment variables, then command-line flags (each overrides the one
//! before).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory: database, TLS certificate, recordings.
    pub data: PathBuf,
    pub sip: SipConfig,
    pub http: HttpConfig,
    pub tls: TlsConfig,
    pub security: SecurityConfig,
    pub media: MediaConfig,
    pub calls: CallsConfig,
    pub storage: StorageConfig,
}

/// Where call recordings are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `s3://bucket/prefix` (credentials and endpoint from `AWS_*`
    /// variables), `file:///path`, or unset: the folder `DATA/objects`.
    pub url: Option<String>,
}

/// Call handling timers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// Session interval asked of both legs (RFC 4028 Session-Expires).
    pub session_expires_secs: u64,
    /// Smallest session interval accepted (RFC 4028 says at least 90; tests
    /// use less to run quickly).
    pub min_session_expires_secs: u64,
    /// A connected call with no RTP from either side this long is ended
    /// (far ends gone without a BYE).
    pub media_timeout_secs: u64,
    /// How long a trunk may stay silent before the next trunk is tried.
    pub trunk_response_timeout_ms: u64,
    /// Calls at once (ringing or connected); a new call beyond this gets
    /// 503 with Retry-After. 0: no limit but the media ports.
    pub max_calls: u32,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self { session_expires_secs: 1800, min_session_expires_secs: 90, media_timeout_secs: 120, trunk_response_timeout_ms: 4000, max_calls: 4000 }
    }
}

/// More relay threads than this only adds context switches.
const MAX_RELAY_THREADS: usize = 64;

/// Anchored media (RTP relay) settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Address the RTP ports are bound to and written into SDP. Default:
    /// the SIP listen address (127.0.0.1 when SIP listens on 0.0.0.0 — set
    /// this to the server's reachable address in production).
    pub address: Option<std::net::IpAddr>,
    /// RTP port range (even ports for RTP, the next odd one for RTCP).
    pub port_min: u16,
    pub port_max: u16,
    /// Threads relaying media; 0: one per CPU (up to 8).
    pub relay_threads: usize,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self { address: None, port_min: 20000, port_max: 29999, relay_threads: 0 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// UDP and TCP listen address; TLS listens on the next port.
    pub listen: SocketAddr,
    /// TLS listen address (default: `listen` port + 1).
    pub tls_listen: Option<SocketAddr>,
    /// Digest realm, fixed when the data directory is created.
    pub realm: String,
    /// Digest algorithms offered, in this order ("MD5", "SHA-256"). Older
    /// desk phones and SIPp read only the first challenge: keep MD5 first
    /// while such devices remain.
    pub digest_algorithms: Vec<String>,
    pub nonce_lifetime_secs: u64,
    /// Phones whose User-Agent contains one of these (case-insensitive) are
    /// challenged with MD5 only: they give up when offered an algorithm they
    /// do not know instead of picking the one they do (baresip 1.0's libre).
    pub md5_only_user_agents: Vec<String>,
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    /// Largest SIP message accepted, in octets.
    pub max_message_size: usize,
    /// Threads receiving and handling SIP over UDP (0: one per core).
    pub udp_threads: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The admin web app's built files. Default: `web/dist` in the working
    /// directory, else the one in the source tree the binary was built from.
    pub web_dir: Option<PathBuf>,
    /// An admin session unused this long ends.
    pub idle_minutes: u64,
    /// HTTPS listen address (the web app, the API and the desk phones'
    /// phonebook over TLS, with the SIP certificate). Off when unset.
    pub tls_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; when unset a development certificate is made
    /// in the data directory on first start.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// CA certificates (PEM) trusted for carrier trunks over TLS.
    pub trunk_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Failed authentications from one source address within the window
    /// before that address is ignored.
    pub max_failures_per_source: u32,
    /// Failed authentications for one extension within the window before
    /// that extension is answered 403 without checking.
    pub max_failures_per_extension: u32,
    pub failure_window_secs: u64,
    pub ban_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data: PathBuf::from("tsunagu-data"),
            sip: SipConfig::default(),
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            security: SecurityConfig::default(),
            media: MediaConfig::default(),
            calls: CallsConfig::default(),
            storage: StorageConfig::default(),
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:5060".parse().expect("literal address"),
            tls_listen: None,
            realm: "tsunagu".into(),
            digest_algorithms: vec!["MD5".into(), "SHA-256".into()],
            nonce_lifetime_secs: 300,
            md5_only_user_agents: vec!["baresip".into()],
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
            max_message_size: 64 * 1024,
            udp_threads: 0,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: "0.0.0.0:8080".parse().expect("literal address"), web_dir: None, idle_minutes: 30, tls_listen: None }
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self { max_failures_per_source: 20, max_failures_per_extension: 10, failure_window_secs: 60, ban_secs: 300 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    #[error("environment variable {0}: {1}")]
    Env(&'static str, String),
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Where the web app's files are, if built.
    pub fn web_dir(&self) -> Option<PathBuf> {
        if let Some(d) = &self.http.web_dir {
            return Some(d.clone());
        }
        let cwd = PathBuf::from("web/dist");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist");
        [cwd, source].into_iter().find(|d| d.join("index.html").is_file())
    }

    /// Defaults, overridden by `file` (if any), then by the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut cfg = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Read(p.to_path_buf(), e))?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse(p.to_path_buf(), e))?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    /// Apply `TSUNAGU_*` variables (the lookup is injected for tests).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(k: &'static str, v: String) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.parse().map_err(|e: T::Err| ConfigError::Env(k, e.to_string()))
        }
        macro_rules! env {
            ($key:literal, $field:expr) => {
                if let Some(v) = get($key) {
                    $field = parse($key, v)?;
                }
            };
        }
        env!("TSUNAGU_DATA", self.data);
        env!("TSUNAGU_SIP", self.sip.listen);
        env!("TSUNAGU_SIP_LISTEN", self.sip.listen);
        env!("TSUNAGU_HTTP", self.http.listen);
        env!("TSUNAGU_HTTP_LISTEN", self.http.listen);
        env!("TSUNAGU_HTTP_IDLE_MINUTES", self.http.idle_minutes);
        if let Some(v) = get("TSUNAGU_HTTP_TLS_LISTEN") {
            self.http.tls_listen = Some(parse("TSUNAGU_HTTP_TLS_LISTEN", v)?);
        }
        if let Some(v) = get("TSUNAGU_HTTP_WEB_DIR") {
            self.http.web_dir = Some(PathBuf::from(v));
        }
        env!("TSUNAGU_CALLS_SESSION_EXPIRES_SECS", self.calls.session_expires_secs);
        env!("TSUNAGU_CALLS_MIN_SESSION_EXPIRES_SECS", self.calls.min_session_expires_secs);
        env!("TSUNAGU_CALLS_MEDIA_TIMEOUT_SECS", self.calls.media_timeout_secs);
        env!("TSUNAGU_CALLS_TRUNK_RESPONSE_TIMEOUT_MS", self.calls.trunk_response_timeout_ms);
        env!("TSUNAGU_MEDIA_PORT_MIN", self.media.port_min);
        env!("TSUNAGU_MEDIA_PORT_MAX", self.media.port_max);
        env!("TSUNAGU_MEDIA_RELAY_THREADS", self.media.relay_threads);
        env!("TSUNAGU_CALLS_MAX_CALLS", self.calls.max_calls);
        if let Some(v) = get("TSUNAGU_MEDIA_ADDRESS") {
            self.media.address = Some(parse("TSUNAGU_MEDIA_ADDRESS", v)?);
        }
        env!("TSUNAGU_SIP_REALM", self.sip.realm);
        env!("TSUNAGU_SIP_MIN_EXPIRES", self.sip.min_expires);
        env!("TSUNAGU_SIP_MAX_EXPIRES", self.sip.max_expires);
        env!("TSUNAGU_SIP_DEFAULT_EXPIRES", self.sip.default_expires);
        env!("TSUNAGU_SIP_NONCE_LIFETIME_SECS", self.sip.nonce_lifetime_secs);
        env!("TSUNAGU_SIP_UDP_THREADS", self.sip.udp_threads);
        env!("TSUNAGU_SECURITY_MAX_FAILURES_PER_SOURCE", self.security.max_failures_per_source);
        env!("TSUNAGU_SECURITY_MAX_FAILURES_PER_EXTENSION", self.security.max_failures_per_extension);
        env!("TSUNAGU_SECURITY_FAILURE_WINDOW_SECS", self.security.failure_window_secs);
        env!("TSUNAGU_SECURITY_BAN_SECS", self.security.ban_secs);
        if let Some(v) = get("TSUNAGU_SIP_TLS") {
            self.sip.tls_listen = Some(parse("TSUNAGU_SIP_TLS", v)?);
        }
        if let Some(v) = get("TSUNAGU_SIP_DIGEST_ALGORITHMS") {
            self.sip.digest_algorithms = v.split(',').map(|s| s.trim().to_string()).collect();
        }
        if let Some(v) = get("TSUNAGU_TLS_CERT") {
            self.tls.cert = Some(v.into());
        }
        if let Some(v) = get("TSUNAGU_TLS_TRUNK_CA") {
            self.tls.trunk_ca = Some(v.into());
        }
        if let Some(v) = get("TSUNAGU_STORAGE_URL") {
            self.storage.url = Some(v).filter(|v| !v.trim().is_empty());
        }
        if let Some(v) = get("TSUNAGU_TLS_KEY") {
            self.tls.key = Some(v.into());
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.sip;
        if s.min_expires > s.max_expires || s.default_expires < s.min_expires || s.default_expires > s.max_expires {
            return Err(ConfigError::Invalid("sip: need min_expires <= default_expires <= max_expires".into()));
        }
        if s.digest_algorithms.is_empty() {
            return Err(ConfigError::Invalid("sip.digest_algorithms is empty".into()));
        }
        for a in &s.digest_algorithms {
            if tsunagu_sip::digest::Algorithm::from_name(a).is_none() {
                return Err(ConfigError::Invalid(format!("sip.digest_algorithms: unknown {a:?} (MD5, SHA-256)")));
            }
        }
        let c = &self.calls;
        if c.min_session_expires_secs == 0 || c.session_expires_secs < c.min_session_expires_secs || c.media_timeout_secs == 0 {
            return Err(ConfigError::Invalid("calls: need 0 < min_session_expires_secs <= session_expires_secs and media_timeout_secs > 0".into()));
        }
        if self.media.port_min < 1024 || self.media.port_max <= self.media.port_min + 4 {
            return Err(ConfigError::Invalid("media: need 1024 <= port_min and port_max > port_min + 4".into()));
        }
        if self.media.relay_threads > MAX_RELAY_THREADS {
            return Err(ConfigError::Invalid(format!("media: relay_threads is at most {MAX_RELAY_THREADS} (0: one per CPU)")));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid("tls: give both cert and key, or neither".into()));
        }
        Ok(())
    }

    /// The media address: configured, else the SIP listen address, else
    /// (listening on all interfaces) the address of the interface that
    /// routes outwards, else loopback.
    pub fn media_address(&self) -> std::net::IpAddr {
        self.media.address.unwrap_or_else(|| {
            let ip = self.sip.listen.ip();
            if ip.is_unspecified() {
                primary_address().unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
            } else {
                ip
            }
        })
    }

    pub fn tls_listen(&self) -> SocketAddr {
        self.sip.tls_listen.unwrap_or_else(|| {
            let mut a = self.sip.listen;
            a.set_port(a.port().wrapping_add(1));
            a
        })
    }
}

/// The local address the kernel would use to reach outside networks.
/// `connect` on a UDP socket only picks a route; nothing is sent
/// (192.0.2.1 is TEST-NET-1, reserved for documentation).
fn primary_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_env_override() {
        let mut cfg: Config = toml::from_str("[sip]\nlisten = \"127.0.0.1:5070\"\nrealm = \"city\"\n").unwrap();
        assert_eq!(cfg.sip.listen.port(), 5070);
        cfg.apply_env(|k| (k == "TSUNAGU_SIP").then(|| "127.0.0.1:6000".to_string())).unwrap();
        assert_eq!(cfg.sip.listen.port(), 6000);
        assert_eq!(cfg.sip.realm, "city");
        assert_eq!(cfg.tls_listen().port(), 6001);
    }

    #[test]
    fn bad_values_are_named() {
        let mut cfg = Config::default();
        let err = cfg.apply_env(|k| (k == "TSUNAGU_SIP").then(|| "nonsense".to_string())).unwrap_err();
        assert!(err.to_string().contains("TSUNAGU_SIP"));
        assert!(toml::from_str::<Config>("[sip]\nlisten_typo = 1\n").is_err());
        cfg.sip.digest_algorithms = vec!["SHA-1".into()];
        assert!(cfg.validate().is_err());
        let mut cfg = Config::default();
        cfg.media.relay_threads = 100_000;
        assert!(cfg.validate().unwrap_err().to_string().contains("relay_threads"));
    }
}
