//! The one TLS crypto provider of the process. The dependency tree enables two of rustls'
//! providers (`ring`, which Concurrent chose, and `aws-lc-rs`, which the AWS object store
//! brings), and rustls then refuses to pick one by itself: every TLS client without an explicit
//! provider (NATS over `tls://`, say) would panic. Both binaries install `ring` first thing.

/// Makes `ring` the process-wide rustls provider; a second call changes nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[test]
    fn after_installing_a_default_provider_exists() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
