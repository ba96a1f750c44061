//! Sending one API request: URL, credentials, timeout, retries, and MLflow's error bodies.

use reqwest::{Method, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::MlflowClient;
use super::error::{MlflowError, one_line};
use super::location::url_with_segments;
use super::retry::{Idempotency, with_retries};

/// The longest piece of a non-MLflow error body kept in an error message.
const MAX_ERROR_BODY: usize = 500;

impl MlflowClient {
    /// The URL of `/api/2.0/mlflow/<endpoint>` (`endpoint` like `runs/get`).
    pub(crate) fn api_url(&self, endpoint: &str) -> Url {
        let segments = ["api", "2.0", "mlflow"].into_iter().chain(endpoint.split('/'));
        url_with_segments(&self.inner.base, segments)
    }

    /// A request with credentials (not yet with a timeout).
    pub(crate) fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        self.inner.auth.apply(self.inner.http.request(method, url))
    }

    /// Calls an API endpoint with a JSON body (POST) or query (GET) and decodes the answer.
    pub(crate) async fn call<Req, Resp>(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<&Req>,
        idempotency: Idempotency,
    ) -> Result<Resp, MlflowError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let url = self.api_url(endpoint);
        let what = format!("{method} {url}");
        let body = match body {
            Some(body) => {
                Some(serde_json::to_vec(body).map_err(|source| MlflowError::Decode { what: what.clone(), source })?)
            }
            None => None,
        };
        let text = with_retries(&self.inner.retry, &what, idempotency, || async {
            let mut request = self.request(method.clone(), url.clone()).timeout(self.inner.request_timeout);
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(body) = &body {
                request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
            }
            let response = send(request, &what).await?;
            response.text().await.map_err(|source| transport(&what, source))
        })
        .await
        .map_err(MlflowError::into_not_mlflow_if_foreign)?;
        let text = if text.trim().is_empty() { "{}" } else { &text };
        serde_json::from_str(text).map_err(|source| {
            if text.trim_start().starts_with(['{', '[']) {
                MlflowError::Decode { what: what.clone(), source }
            } else {
                MlflowError::NotMlflow { what: what.clone(), status: 200, answer: one_line(text) }
            }
        })
    }
}

/// Sends `request`; a non-2xx answer becomes [`MlflowError::Api`].
pub(crate) async fn send(request: reqwest::RequestBuilder, what: &str) -> Result<Response, MlflowError> {
    let response = request.send().await.map_err(|source| transport(what, source))?;
    if response.status().is_success() { Ok(response) } else { Err(api_error(what, response).await) }
}

pub(crate) fn transport(what: &str, source: reqwest::Error) -> MlflowError {
    MlflowError::Transport { what: what.to_owned(), source: source.without_url() }
}

/// Reads MLflow's `{"error_code": …, "message": …}` from an error answer.
async fn api_error(what: &str, response: Response) -> MlflowError {
    #[derive(serde::Deserialize)]
    struct Body {
        error_code: Option<String>,
        message: Option<String>,
    }
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let parsed: Option<Body> = serde_json::from_str(&text).ok();
    let (error_code, message) = match parsed {
        Some(Body { error_code: Some(code), message }) => (code, message.unwrap_or_default()),
        _ => (format!("HTTP_{status}"), truncate(text.trim(), MAX_ERROR_BODY)),
    };
    MlflowError::Api { what: what.to_owned(), status, error_code, message }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}
