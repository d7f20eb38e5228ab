//! TLS for SIP: the configured certificate, or a development certificate
//! made on first start in the data directory.

use crate::config::Config;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: no certificate found")]
    NoCert(PathBuf),
    #[error("{0}: no private key found")]
    NoKey(PathBuf),
    #[error("generating the development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Paths of the certificate and key to use, generating the development pair
/// when none is configured.
pub fn ensure_certificate(cfg: &Config) -> Result<(PathBuf, PathBuf), TlsError> {
    if let (Some(c), Some(k)) = (&cfg.tls.cert, &cfg.tls.key) {
        return Ok((c.clone(), k.clone()));
    }
    let dir = cfg.data.join("tls");
    let cert = dir.join("dev-cert.pem");
    let key = dir.join("dev-key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&dir).map_err(|e| TlsError::Io(dir.clone(), e))?;
    // The addresses phones reach it by: loopback, and the one it listens
    // on when that is a specific address (phones name the server by IP).
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    for ip in [cfg.sip.listen.ip(), cfg.tls_listen().ip()] {
        if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
    }
    let generated = rcgen::generate_simple_self_signed(names)?;
    std::fs::write(&cert, generated.cert.pem()).map_err(|e| TlsError::Io(cert.clone(), e))?;
    write_private(&key, generated.key_pair.serialize_pem().as_bytes())?;
    tracing::warn!(cert = %cert.display(), "no TLS certificate configured: made a self-signed development certificate");
    Ok((cert, key))
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| TlsError::Io(path.to_path_buf(), e))?;
    f.write_all(data).map_err(|e| TlsError::Io(path.to_path_buf(), e))
}

pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|e| TlsError::Io(cert.to_path_buf(), e))?;
    let key_pem = std::fs::read(key).map_err(|e| TlsError::Io(key.to_path_buf(), e))?;
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut cert_pem.as_slice()).collect::<Result<_, _>>().map_err(|e| TlsError::Io(cert.to_path_buf(), e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(cert.to_path_buf()));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| TlsError::Io(key.to_path_buf(), e))?
        .ok_or_else(|| TlsError::NoKey(key.to_path_buf()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS client for outbound connections (carrier trunks over TLS). The
/// trusted roots come from `ca` (PEM, e.g. the carrier's CA bundle); the
/// server's own certificate is trusted too, so two Tsunagu nodes can talk.
pub fn connector(ca: Option<&Path>, own_cert: &Path) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for path in ca.into_iter().chain(std::iter::once(own_cert)) {
        let pem = std::fs::read(path).map_err(|e| TlsError::Io(path.to_path_buf(), e))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| TlsError::Io(path.to_path_buf(), e))?;
            let _ = roots.add(cert);
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
