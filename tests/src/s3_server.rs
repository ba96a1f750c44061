//! A real S3-protocol server on loopback: moto's `moto_server` (`pip install 'moto[server]'`,
//! installed by scripts/setup.sh), on a free port, killed with its process group when dropped.
//! Buckets and objects are made and read over plain HTTP (moto takes unsigned requests).

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::find_tool;
use crate::free_port;

/// The credentials the tests give (moto takes any).
pub const ACCESS_KEY: &str = "concurrent-test-key";
/// The secret of [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "concurrent-test-secret";

/// A running `moto_server`.
pub struct S3Server {
    /// The endpoint, e.g. `http://127.0.0.1:41234`.
    pub endpoint: String,
    child: Child,
    http: reqwest::blocking::Client,
}

impl S3Server {
    /// Starts `moto_server` on a free loopback port and waits (at most 30 s) until it answers.
    pub fn start() -> anyhow::Result<S3Server> {
        let program = find_tool("moto_server")?;
        let port = free_port()?;
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let mut server = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            http: reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build()?,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!("moto_server exited ({status}) before it answered");
            }
            if Instant::now() > deadline {
                bail!("moto_server on port {port} did not answer within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The standard environment that points AWS clients (and MLflow's) at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("MLFLOW_S3_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
    }

    /// Creates `bucket`.
    pub fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let response = self.http.put(format!("{}/{bucket}", self.endpoint)).send()?;
        anyhow::ensure!(response.status().is_success(), "creating bucket {bucket}: {}", response.status());
        Ok(())
    }

    /// Writes `body` at `key` of `bucket` (any characters but a valid percent-escape: moto
    /// decodes object paths twice).
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) -> anyhow::Result<()> {
        let url = format!("{}/{bucket}/{}", self.endpoint, encode_key(key));
        let response = self.http.put(url).body(body.to_vec()).send()?;
        anyhow::ensure!(response.status().is_success(), "putting {bucket}/{key}: {}", response.status());
        Ok(())
    }

    /// The body at `key` of `bucket`.
    pub fn get(&self, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
        let response = self.http.get(format!("{}/{bucket}/{}", self.endpoint, encode_key(key))).send()?;
        anyhow::ensure!(response.status().is_success(), "getting {bucket}/{key}: {}", response.status());
        Ok(response.bytes()?.to_vec())
    }

    /// Every key of `bucket` under `prefix`, sorted (through every page of the listing).
    pub fn keys(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request =
                self.http.get(format!("{}/{bucket}", self.endpoint)).query(&[("list-type", "2"), ("prefix", prefix)]);
            if let Some(token) = &token {
                request = request.query(&[("continuation-token", token)]);
            }
            let text = request.send()?.error_for_status()?.text()?;
            keys.extend(elements(&text, "Key").into_iter().map(|k| unescape_xml(&k)));
            token = elements(&text, "NextContinuationToken").into_iter().next();
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        Ok(keys)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("sh").args(["-c", &format!("kill -KILL -{pgid} 2>/dev/null")]).status();
        let _ = self.child.wait();
    }
}

/// `key` as a URL path: every byte but RFC 3986's unreserved ones and `/` percent-encoded.
fn encode_key(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The texts of every `<name>…</name>` element in `xml`.
fn elements(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|rest| rest.split_once(close.as_str()).map(|(t, _)| t.to_string()))
        .collect()
}

fn unescape_xml(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}
