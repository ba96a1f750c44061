//! Credentials for the tracking server, read from MLflow's environment variables, never shown.

use std::fmt;

/// How requests to the tracking server authenticate.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer <token>` (`MLFLOW_TRACKING_TOKEN`).
    Bearer(String),
    /// HTTP Basic (`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

impl Auth {
    /// Reads `MLFLOW_TRACKING_TOKEN`, else `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD`.
    pub fn from_env() -> Auth {
        Auth::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`Auth::from_env`], with variables looked up by `var` (empty values count as unset).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Auth {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        if let Some(token) = var("MLFLOW_TRACKING_TOKEN") {
            return Auth::Bearer(token);
        }
        match (var("MLFLOW_TRACKING_USERNAME"), var("MLFLOW_TRACKING_PASSWORD")) {
            (Some(username), password) => Auth::Basic { username, password: password.unwrap_or_default() },
            _ => Auth::None,
        }
    }

    /// Adds the `Authorization` header (marked sensitive, so reqwest never prints it).
    pub(crate) fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::Basic { username, .. } => {
                f.debug_struct("Basic").field("username", username).field("password", &"<redacted>").finish()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use reqwest::header::AUTHORIZATION;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> Auth {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Auth::from_lookup(|name| vars.get(name).cloned())
    }

    fn header_of(auth: &Auth) -> Option<reqwest::header::HeaderValue> {
        let client = reqwest::Client::new();
        let request = auth.apply(client.get("http://127.0.0.1:1/x")).build().unwrap();
        request.headers().get(AUTHORIZATION).cloned()
    }

    #[test]
    fn token_wins_over_basic() {
        let auth = lookup(&[("MLFLOW_TRACKING_TOKEN", "s3cret-token"), ("MLFLOW_TRACKING_USERNAME", "u")]);
        assert_eq!(auth, Auth::Bearer("s3cret-token".into()));
        let header = header_of(&auth).expect("an Authorization header");
        assert!(header.is_sensitive());
        assert!(header.as_bytes().starts_with(b"Bearer "));
        assert!(!format!("{auth:?}").contains("s3cret"));
    }

    #[test]
    fn basic_from_username_and_password() {
        let auth = lookup(&[("MLFLOW_TRACKING_USERNAME", "alice"), ("MLFLOW_TRACKING_PASSWORD", "pw-123")]);
        let header = header_of(&auth).expect("an Authorization header");
        assert!(header.is_sensitive());
        assert!(header.as_bytes().starts_with(b"Basic "));
        let shown = format!("{auth:?}");
        assert!(shown.contains("alice") && !shown.contains("pw-123"), "{shown}");
    }

    #[test]
    fn nothing_set_means_no_header() {
        let auth = lookup(&[("MLFLOW_TRACKING_TOKEN", "")]);
        assert_eq!(auth, Auth::None);
        assert!(header_of(&auth).is_none());
    }
}
