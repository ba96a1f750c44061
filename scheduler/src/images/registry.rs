//! Does a registry already hold an image tag? The OCI distribution API's
//! `HEAD /v2/<name>/manifests/<tag>` (through `oci-client`, which answers the registry's
//! challenge: anonymous, HTTP Basic, or a Bearer token fetched from the realm it names with the
//! given credentials), so an image built once is never built again.

use std::collections::BTreeMap;
use std::fmt;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;

/// A user name and password (or token) for one registry. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredentials").field("username", &self.username).finish_non_exhaustive()
    }
}

/// Why a registry could not say whether it holds a tag.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The image is not a valid reference.
    #[error("`{image}` is not an image reference: {source}")]
    BadReference {
        /// The text given.
        image: String,
        /// The parser's error.
        #[source]
        source: oci_client::ParseError,
    },
    /// The registry refused the credentials (or their absence).
    #[error("the registry refused access to {image} (check the registry credentials)")]
    Refused {
        /// The image looked up.
        image: String,
        /// The registry's answer.
        #[source]
        source: OciDistributionError,
    },
    /// The registry could not be reached or gave an answer that is not the distribution API's.
    #[error("looking up {image} in its registry")]
    Lookup {
        /// The image looked up.
        image: String,
        /// The cause.
        #[source]
        source: OciDistributionError,
    },
    /// A Docker config file (`.dockerconfigjson`) could not be read.
    #[error("the registry credentials are not a Docker config file: {source}")]
    DockerConfig {
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

/// Asks registries whether they hold a tag.
pub struct Registry {
    client: Client,
}

impl Registry {
    /// A client speaking HTTPS, or plain HTTP to registries named in `plain_http` (host or
    /// `host:port`, as in the image reference).
    pub fn new(plain_http: Vec<String>) -> Registry {
        let protocol =
            if plain_http.is_empty() { ClientProtocol::Https } else { ClientProtocol::HttpsExcept(plain_http) };
        Registry { client: Client::new(ClientConfig { protocol, ..ClientConfig::default() }) }
    }

    /// Whether the registry holds `image` (`registry/name:tag`): `Ok(true)` with a manifest,
    /// `Ok(false)` when the tag or the repository is unknown to it.
    pub async fn has_image(
        &self,
        image: &str,
        credentials: Option<&RegistryCredentials>,
    ) -> Result<bool, RegistryError> {
        let reference: Reference =
            image.parse().map_err(|source| RegistryError::BadReference { image: image.to_string(), source })?;
        let auth = credentials
            .map_or(RegistryAuth::Anonymous, |c| RegistryAuth::Basic(c.username.clone(), c.password.clone()));
        match self.client.fetch_manifest_digest(&reference, &auth).await {
            Ok(_digest) => Ok(true),
            Err(source) => match classify(&source) {
                Answer::Absent => Ok(false),
                Answer::Refused => Err(RegistryError::Refused { image: image.to_string(), source }),
                Answer::Other => Err(RegistryError::Lookup { image: image.to_string(), source }),
            },
        }
    }
}

enum Answer {
    Absent,
    Refused,
    Other,
}

fn classify(error: &OciDistributionError) -> Answer {
    match error {
        OciDistributionError::UnauthorizedError { .. } => Answer::Refused,
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied)) {
                Answer::Refused
            } else if codes.iter().any(|c| {
                matches!(c, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound)
            }) {
                Answer::Absent
            } else {
                Answer::Other
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => Answer::Absent,
        OciDistributionError::ServerError { code: 401 | 403, .. } => Answer::Refused,
        _ => Answer::Other,
    }
}

/// The credentials for `registry` (host or `host:port`) in a Docker config file, the
/// `.dockerconfigjson` of a `kubernetes.io/dockerconfigjson` Secret.
pub fn credentials_from_docker_config(
    json: &[u8],
    registry: &str,
) -> Result<Option<RegistryCredentials>, RegistryError> {
    #[derive(Deserialize)]
    struct DockerConfig {
        #[serde(default)]
        auths: BTreeMap<String, DockerAuth>,
    }
    #[derive(Deserialize)]
    struct DockerAuth {
        username: Option<String>,
        password: Option<String>,
        auth: Option<String>,
    }
    let config: DockerConfig = serde_json::from_slice(json).map_err(|source| RegistryError::DockerConfig { source })?;
    let entry = config.auths.iter().find(|(key, _)| {
        let host = key.trim_start_matches("https://").trim_start_matches("http://");
        host.split('/').next() == Some(registry)
    });
    let Some((_, auth)) = entry else { return Ok(None) };
    if let (Some(username), Some(password)) = (&auth.username, &auth.password) {
        return Ok(Some(RegistryCredentials { username: username.clone(), password: password.clone() }));
    }
    let decoded = auth.auth.as_deref().and_then(decode_base64);
    Ok(decoded.and_then(|text| {
        text.split_once(':').map(|(u, p)| RegistryCredentials { username: u.to_string(), password: p.to_string() })
    }))
}

/// Docker's `auth`: base64 of `user:password`.
fn decode_base64(text: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_either_form_of_a_docker_config() {
        let config = br#"{"auths": {
            "https://registry.example.com": {"auth": "YWxpY2U6czNjcmV0"},
            "other.example.com:5000": {"username": "bob", "password": "pw"}
        }}"#;
        let alice = credentials_from_docker_config(config, "registry.example.com").unwrap().unwrap();
        assert_eq!((alice.username.as_str(), alice.password.as_str()), ("alice", "s3cret"));
        let bob = credentials_from_docker_config(config, "other.example.com:5000").unwrap().unwrap();
        assert_eq!((bob.username.as_str(), bob.password.as_str()), ("bob", "pw"));
        assert_eq!(credentials_from_docker_config(config, "elsewhere.example.com").unwrap(), None);
        assert!(credentials_from_docker_config(b"not json", "x").is_err());
    }

    #[test]
    fn credentials_are_never_printed() {
        let credentials = RegistryCredentials { username: "alice".into(), password: "s3cret".into() };
        assert!(!format!("{credentials:?}").contains("s3cret"));
    }
}
