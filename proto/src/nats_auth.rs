//! How the scheduler and its workers prove themselves to NATS beyond the URL (which may carry a
//! user and password or a token): a credentials file, and TLS with a CA and a client
//! certificate. Both sides read the same environment variables as the `nats` command-line tool,
//! so a local worker inherits them and a Pod gets them from Secrets.

use std::ffi::OsString;
use std::path::PathBuf;

/// A NATS credentials file (a user JWT and its NKey seed).
pub const CREDS_ENV: &str = "NATS_CREDS";
/// A PEM file of the CA that signed the NATS server's certificate.
pub const CA_ENV: &str = "NATS_CA";
/// A PEM client certificate, for servers that verify clients (with [`KEY_ENV`]).
pub const CERT_ENV: &str = "NATS_CERT";
/// The PEM private key of [`CERT_ENV`].
pub const KEY_ENV: &str = "NATS_KEY";

/// The files named by the environment; unset or empty variables name none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsAuth {
    pub creds: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    /// A client certificate and its key.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// A client certificate without its key, or the other way round.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{CERT_ENV} and {KEY_ENV} go together: set both or neither")]
pub struct HalfClientCert;

impl NatsAuth {
    /// Reads the variables through `lookup` (`std::env::var_os` in production).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<NatsAuth, HalfClientCert> {
        let path = |name: &str| lookup(name).filter(|value| !value.is_empty()).map(PathBuf::from);
        let client_cert = match (path(CERT_ENV), path(KEY_ENV)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(HalfClientCert),
        };
        Ok(NatsAuth { creds: path(CREDS_ENV), ca: path(CA_ENV), client_cert })
    }

    /// The variables that hand the same files to a worker.
    pub fn env(&self) -> Vec<(&'static str, PathBuf)> {
        let mut env = Vec::new();
        env.extend(self.creds.clone().map(|p| (CREDS_ENV, p)));
        env.extend(self.ca.clone().map(|p| (CA_ENV, p)));
        if let Some((cert, key)) = &self.client_cert {
            env.push((CERT_ENV, cert.clone()));
            env.push((KEY_ENV, key.clone()));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn files_come_from_the_nats_cli_s_variables_and_go_back_to_them() {
        let auth = NatsAuth::from_lookup(lookup(&[
            ("NATS_CREDS", "/s/user.creds"),
            ("NATS_CA", "/s/ca.pem"),
            ("NATS_CERT", "/s/c.pem"),
            ("NATS_KEY", "/s/k.pem"),
        ]))
        .unwrap();
        assert_eq!(auth.creds, Some(PathBuf::from("/s/user.creds")));
        assert_eq!(
            NatsAuth::from_lookup(|name| auth.env().into_iter().find(|(k, _)| *k == name).map(|(_, v)| v.into())),
            Ok(auth)
        );
    }

    #[test]
    fn unset_or_empty_variables_name_nothing_and_half_a_client_certificate_is_refused() {
        assert_eq!(NatsAuth::from_lookup(lookup(&[("NATS_CA", "")])), Ok(NatsAuth::default()));
        assert_eq!(NatsAuth::from_lookup(lookup(&[("NATS_CERT", "/c.pem")])), Err(HalfClientCert));
    }
}
