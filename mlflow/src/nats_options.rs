//! NATS connection options both the scheduler and the worker apply: the credentials file and
//! TLS files the environment names ([`NatsAuth`]).

use async_nats::ConnectOptions;
use concurrent_proto::nats_auth::NatsAuth;

/// `options` with the credentials file and TLS files `auth` names.
pub async fn secured_options(
    options: ConnectOptions,
    auth: &NatsAuth,
) -> Result<ConnectOptions, async_nats::ConnectError> {
    let mut options = match &auth.creds {
        Some(creds) => options
            .credentials_file(creds)
            .await
            .map_err(|e| async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::Io, e))?,
        None => options,
    };
    if let Some(ca) = &auth.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &auth.client_cert {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options)
}
