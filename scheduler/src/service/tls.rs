//! TLS for `concurrent serve` (`--tls-cert`, `--tls-key`): rustls with the `ring` provider,
//! ALPN `h2` and `http/1.1`, so gRPC and REST share the one port as they do in clear text.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert {path}: {problem}")]
    Certificate { path: String, problem: String },
    #[error("--tls-key {path}: {problem}")]
    Key { path: String, problem: String },
    #[error("--tls-cert and --tls-key do not make a usable pair: {0}")]
    Pair(#[source] rustls::Error),
}

/// The server's TLS settings from PEM files: a certificate chain and its private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let shown = |path: &Path| path.display().to_string();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Certificate { path: shown(cert), problem: e.to_string() })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Certificate { path: shown(cert), problem: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate { path: shown(cert), problem: "holds no PEM certificate".into() });
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key { path: shown(key), problem: e.to_string() })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Pair)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Pair)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_not_pem_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let error = server_config(&cert, &key).unwrap_err();
        assert!(error.to_string().starts_with(&format!("--tls-cert {}", cert.display())), "{error}");
        let missing = dir.path().join("missing.pem");
        let error = server_config(&missing, &key).unwrap_err();
        assert!(error.to_string().contains("missing.pem"), "{error}");
    }
}
