//! A quick look at a `NATS_URL` before anything is created: does the host resolve, does the
//! port accept a connection, and does what answers greet like a NATS server (a NATS server
//! sends `INFO {…}` as soon as a client connects). Each step has its own short deadline, so a
//! wrong URL is named with its cause within about 3 s instead of a JetStream timeout later.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// How long the host name may take to resolve.
const RESOLVE_WITHIN: Duration = Duration::from_millis(1000);
/// How long the TCP connection may take.
const CONNECT_WITHIN: Duration = Duration::from_millis(800);
/// How long the server may take to send its `INFO` line.
const GREETING_WITHIN: Duration = Duration::from_millis(1000);
/// NATS' default port.
const DEFAULT_PORT: u16 = 4222;

/// Why a NATS URL cannot be used. The URL is shown without credentials.
#[derive(Debug, thiserror::Error)]
pub enum NatsProbeError {
    #[error("NATS_URL {url}: {problem}")]
    BadUrl { url: String, problem: String },
    #[error("NATS_URL {url}: host `{host}` does not resolve: {cause}")]
    Unresolved { url: String, host: String, cause: String },
    #[error("NATS_URL {url}: cannot connect to {address}: {cause}")]
    Refused { url: String, address: String, cause: String },
    #[error("NATS_URL {url}: {address} is not a NATS server ({answer})")]
    NotNats { url: String, address: String, answer: String },
}

/// Checks every server of a (comma-separated) NATS URL; fine when one of them greets like
/// NATS. WebSocket URLs are not checked.
pub async fn probe_nats(urls: &str) -> Result<(), NatsProbeError> {
    let mut first_error = None;
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        match probe_one(url).await {
            Ok(()) => return Ok(()),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Err(NatsProbeError::BadUrl { url: urls.to_string(), problem: "names no server".into() }),
    }
}

async fn probe_one(raw: &str) -> Result<(), NatsProbeError> {
    let with_scheme = if raw.contains("://") { raw.to_string() } else { format!("nats://{raw}") };
    let parsed = url::Url::parse(&with_scheme)
        .map_err(|e| NatsProbeError::BadUrl { url: redact(raw), problem: e.to_string() })?;
    let url = redact(raw);
    match parsed.scheme() {
        "nats" | "tls" => {}
        "ws" | "wss" => return Ok(()),
        other => return Err(NatsProbeError::BadUrl { url, problem: format!("unknown scheme `{other}`") }),
    }
    let host =
        parsed.host_str().ok_or_else(|| NatsProbeError::BadUrl { url: url.clone(), problem: "no host".into() })?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = parsed.port().unwrap_or(DEFAULT_PORT);
    let resolved = tokio::time::timeout(RESOLVE_WITHIN, tokio::net::lookup_host((host.clone(), port))).await;
    let addresses: Vec<_> = match resolved {
        Err(_) => {
            let cause = format!("no answer within {RESOLVE_WITHIN:?}");
            return Err(NatsProbeError::Unresolved { url, host, cause });
        }
        Ok(Err(error)) => return Err(NatsProbeError::Unresolved { url, host, cause: error.to_string() }),
        Ok(Ok(addresses)) => addresses.collect(),
    };
    let Some(address) = addresses.first().copied() else {
        return Err(NatsProbeError::Unresolved { url, host, cause: "no address".into() });
    };
    let address_text = address.to_string();
    let mut stream = match tokio::time::timeout(CONNECT_WITHIN, TcpStream::connect(address)).await {
        Err(_) => {
            let cause = format!("no answer within {CONNECT_WITHIN:?}");
            return Err(NatsProbeError::Refused { url, address: address_text, cause });
        }
        Ok(Err(error)) => return Err(NatsProbeError::Refused { url, address: address_text, cause: error.to_string() }),
        Ok(Ok(stream)) => stream,
    };
    let mut greeting = vec![0u8; 256];
    let read = tokio::time::timeout(GREETING_WITHIN, stream.read(&mut greeting)).await;
    let answer = match read {
        Err(_) => format!("it sent nothing within {GREETING_WITHIN:?}; a NATS server greets with INFO at once"),
        Ok(Err(error)) => format!("reading its greeting: {error}"),
        Ok(Ok(0)) => "it closed the connection without a greeting".to_string(),
        Ok(Ok(n)) if is_nats_greeting(&greeting[..n]) => return Ok(()),
        Ok(Ok(n)) => format!("it answered {:?}", String::from_utf8_lossy(&greeting[..n.min(60)])),
    };
    Err(NatsProbeError::NotNats { url, address: address_text, answer })
}

/// Whether the first bytes a server sent are a NATS `INFO` greeting.
pub fn is_nats_greeting(bytes: &[u8]) -> bool {
    bytes.len() >= 5 && bytes[..5].eq_ignore_ascii_case(b"INFO ")
}

/// `url` without the user and password it may carry.
/// `url` with its user and password (or token) hidden, to show in messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => format!("{}://***@{}", &url[..scheme_end], &url[at + 1..]),
        (None, Some(at)) => format!("***@{}", &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_and_credentials() {
        assert!(is_nats_greeting(b"INFO {\"server_id\":\"x\"}\r\n"));
        assert!(!is_nats_greeting(b"HTTP/1.0 400 Bad Request"));
        assert!(!is_nats_greeting(b"INF"));
        assert_eq!(redact("nats://user:secret@host:4222"), "nats://***@host:4222");
        assert_eq!(redact("user:secret@host"), "***@host");
        assert_eq!(redact("nats://host:4222"), "nats://host:4222");
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_and_named() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("nats://127.0.0.1:{port}");
        let error = probe_nats(&url).await.unwrap_err();
        assert!(matches!(error, NatsProbeError::Refused { .. }), "{error}");
        assert!(error.to_string().contains(&url), "{error}");
    }

    #[tokio::test]
    async fn a_silent_server_is_not_nats() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let accept = tokio::spawn(async move { listener.accept().await });
        let error = probe_nats(&url).await.unwrap_err();
        assert!(matches!(error, NatsProbeError::NotNats { .. }), "{error}");
        drop(accept);
    }
}
