//! A real OCI registry (Debian's `docker-registry`, the CNCF distribution server) on a free
//! loopback port over plain HTTP, storage in a temp dir: open, behind htpasswd (HTTP Basic;
//! bcrypt, made with `htpasswd -B`), or behind a token server (Bearer tokens, the flow of
//! Docker Hub and most hosted registries; `token_server.py`); killed on drop.
//! [`OciRegistry::push_image`] pushes a small image with plain distribution-API calls.

use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{find_tool, free_port};

/// A running `docker-registry`.
pub struct OciRegistry {
    /// `127.0.0.1:<port>`, the registry part of image references.
    pub host: String,
    /// The user and password it accepts, when it has htpasswd or a token server.
    pub login: Option<(String, String)>,
    /// The token server's `/token` URL, when it has one.
    token_realm: Option<String>,
    /// The token server (stops when its stdin closes) and that stdin.
    token_server: Option<(Child, ChildStdin)>,
    dir: tempfile::TempDir,
    child: Child,
}

/// The service and issuer names a token-authenticated registry and its token server share.
const TOKEN_SERVICE: &str = "concurrent-tests-registry";
const TOKEN_ISSUER: &str = "concurrent-tests-issuer";

impl OciRegistry {
    /// Starts a registry; with `login`, every request needs those credentials (HTTP Basic).
    pub fn start(login: Option<(&str, &str)>) -> anyhow::Result<OciRegistry> {
        Self::start_with(login.map(Login::Htpasswd))
    }

    /// Starts a registry that wants Bearer tokens from a token server, which gives them for
    /// `user`/`password` (HTTP Basic) only.
    pub fn start_with_token_server(user: &str, password: &str) -> anyhow::Result<OciRegistry> {
        Self::start_with(Some(Login::TokenServer((user, password))))
    }

    fn start_with(login: Option<Login<'_>>) -> anyhow::Result<OciRegistry> {
        let binary = find_registry()?;
        let dir = tempfile::tempdir().context("creating the registry dir")?;
        let port = free_port()?;
        let mut token_realm = None;
        let mut token_server = None;
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: concurrent-tests\n",
            dir.path().join("data").display()
        );
        if let Some(Login::TokenServer((user, password))) = login {
            let (child, stdin, token_port) = start_token_server(dir.path(), user, password)?;
            let realm = format!("http://127.0.0.1:{token_port}/token");
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                dir.path().join("cert.pem").display()
            ));
            token_realm = Some(realm);
            token_server = Some((child, stdin));
        }
        if let Some(Login::Htpasswd((user, password))) = login {
            let htpasswd = find_tool("htpasswd").context("htpasswd (Debian: apache2-utils; run scripts/setup.sh)")?;
            let output = Command::new(htpasswd).args(["-Bbn", user, password]).output()?;
            anyhow::ensure!(output.status.success(), "htpasswd failed: {}", String::from_utf8_lossy(&output.stderr));
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, output.stdout)?;
            config
                .push_str(&format!("auth:\n  htpasswd:\n    realm: concurrent-tests\n    path: {}\n", file.display()));
        }
        let config_file = dir.path().join("config.yml");
        std::fs::write(&config_file, config)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new(&binary)
            .arg("serve")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut registry = OciRegistry {
            host: format!("127.0.0.1:{port}"),
            login: login.map(|l| {
                let (Login::Htpasswd((u, p)) | Login::TokenServer((u, p))) = l;
                (u.to_string(), p.to_string())
            }),
            token_realm,
            token_server,
            dir,
            child,
        };
        registry.wait_ready()?;
        Ok(registry)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::blocking::Client::new();
        loop {
            if let Ok(response) = client.get(format!("http://{}/v2/", self.host)).send()
                && (response.status().is_success() || response.status() == reqwest::StatusCode::UNAUTHORIZED)
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("docker-registry exited before it was ready ({status}): {}", self.log());
            }
            if Instant::now() > deadline {
                bail!("docker-registry was not ready within 20 s: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes a small image (one layer, a config) as `<name>:<tag>` with the registry's
    /// credentials; returns the manifest's digest.
    pub fn push_image(&self, name: &str, tag: &str) -> anyhow::Result<String> {
        let client = reqwest::blocking::Client::new();
        let bearer = self.push_token(&client, name)?;
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let layer = format!("a layer of {name}:{tag}").into_bytes();
        let config_digest = self.push_blob(&client, bearer.as_deref(), name, config.clone())?;
        let layer_digest = self.push_blob(&client, bearer.as_deref(), name, layer.clone())?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}],
        })
        .to_string();
        let response = self
            .authorized(client.put(format!("http://{}/v2/{name}/manifests/{tag}", self.host)), bearer.as_deref())
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()?;
        anyhow::ensure!(
            response.status().is_success(),
            "pushing the manifest: {}: {}",
            response.status(),
            response.text()?
        );
        Ok(digest(manifest.as_bytes()))
    }

    /// A Bearer token to push to `name`, from the token server (when there is one).
    fn push_token(&self, client: &reqwest::blocking::Client, name: &str) -> anyhow::Result<Option<String>> {
        let (Some(realm), Some((user, password))) = (&self.token_realm, &self.login) else { return Ok(None) };
        let response = client
            .get(realm)
            .query(&[("service", TOKEN_SERVICE), ("scope", &format!("repository:{name}:pull,push"))])
            .basic_auth(user, Some(password))
            .send()?;
        anyhow::ensure!(response.status().is_success(), "getting a push token: {}", response.status());
        let body: serde_json::Value = response.json()?;
        Ok(Some(body["token"].as_str().context("no token in the answer")?.to_string()))
    }

    fn push_blob(
        &self,
        client: &reqwest::blocking::Client,
        bearer: Option<&str>,
        name: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<String> {
        let digest = digest(&bytes);
        let response =
            self.authorized(client.post(format!("http://{}/v2/{name}/blobs/uploads/", self.host)), bearer).send()?;
        anyhow::ensure!(response.status().as_u16() == 202, "starting an upload: {}", response.status());
        let location = response.headers().get("location").context("no Location for the upload")?.to_str()?.to_string();
        let url = if location.starts_with("http") { location } else { format!("http://{}{location}", self.host) };
        let separator = if url.contains('?') { '&' } else { '?' };
        let response = self
            .authorized(client.put(format!("{url}{separator}digest={digest}")), bearer)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()?;
        anyhow::ensure!(response.status().is_success(), "uploading a blob: {}", response.status());
        Ok(digest)
    }

    fn authorized(
        &self,
        request: reqwest::blocking::RequestBuilder,
        bearer: Option<&str>,
    ) -> reqwest::blocking::RequestBuilder {
        match (bearer, &self.login) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Some((user, password))) => request.basic_auth(user, Some(password)),
            (None, None) => request,
        }
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((mut child, stdin)) = self.token_server.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How a registry checks who calls it.
#[derive(Clone, Copy)]
enum Login<'a> {
    Htpasswd((&'a str, &'a str)),
    TokenServer((&'a str, &'a str)),
}

/// Starts `token_server.py` in `dir` (it writes `cert.pem` and `port` there); returns it, its
/// stdin (closing it stops the server) and its port.
fn start_token_server(dir: &std::path::Path, user: &str, password: &str) -> anyhow::Result<(Child, ChildStdin, u16)> {
    let script = dir.join("token_server.py");
    std::fs::write(&script, include_str!("token_server.py"))?;
    let venv_python = crate::workspace_dir().join(".venv/bin/python");
    let python = if venv_python.is_file() { venv_python } else { find_tool("python3")? };
    let mut child = Command::new(python)
        .arg(&script)
        .arg(dir)
        .args([user, password, TOKEN_SERVICE, TOKEN_ISSUER])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("starting the token server")?;
    let stdin = child.stdin.take().context("the token server's stdin")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(port) = std::fs::read_to_string(dir.join("port")).ok().and_then(|p| p.trim().parse().ok()) {
            return Ok((child, stdin, port));
        }
        if let Some(status) = child.try_wait()? {
            bail!("the token server exited before it was ready: {status}");
        }
        anyhow::ensure!(Instant::now() < deadline, "the token server was not ready within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(bytes);
    format!("sha256:{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// `docker-registry` on PATH, else where Debian puts it.
fn find_registry() -> anyhow::Result<PathBuf> {
    find_tool("docker-registry").or_else(|_| {
        let debian = PathBuf::from("/usr/bin/docker-registry");
        if debian.is_file() {
            Ok(debian)
        } else {
            bail!("docker-registry is missing (Debian package docker-registry): run scripts/setup.sh")
        }
    })
}
