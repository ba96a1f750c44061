//! A real OCI registry (Debian's `docker-registry`, the CNCF distribution server) on a free
//! loopback port over plain HTTP, storage in a temp dir, optionally behind htpasswd (bcrypt,
//! made with `htpasswd -B`); killed on drop. [`OciRegistry::push_image`] pushes a small image
//! with plain distribution-API calls.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{find_tool, free_port};

/// A running `docker-registry`.
pub struct OciRegistry {
    /// `127.0.0.1:<port>`, the registry part of image references.
    pub host: String,
    /// The user and password it accepts, when it has htpasswd.
    pub login: Option<(String, String)>,
    dir: tempfile::TempDir,
    child: Child,
}

impl OciRegistry {
    /// Starts a registry; with `login`, every request needs those credentials (HTTP Basic).
    pub fn start(login: Option<(&str, &str)>) -> anyhow::Result<OciRegistry> {
        let binary = find_registry()?;
        let dir = tempfile::tempdir().context("creating the registry dir")?;
        let port = free_port()?;
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: concurrent-tests\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = login {
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
            login: login.map(|(u, p)| (u.to_string(), p.to_string())),
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
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let layer = format!("a layer of {name}:{tag}").into_bytes();
        let config_digest = self.push_blob(&client, name, config.clone())?;
        let layer_digest = self.push_blob(&client, name, layer.clone())?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}],
        })
        .to_string();
        let response = self
            .authorized(client.put(format!("http://{}/v2/{name}/manifests/{tag}", self.host)))
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

    fn push_blob(&self, client: &reqwest::blocking::Client, name: &str, bytes: Vec<u8>) -> anyhow::Result<String> {
        let digest = digest(&bytes);
        let response = self.authorized(client.post(format!("http://{}/v2/{name}/blobs/uploads/", self.host))).send()?;
        anyhow::ensure!(response.status().as_u16() == 202, "starting an upload: {}", response.status());
        let location = response.headers().get("location").context("no Location for the upload")?.to_str()?.to_string();
        let url = if location.starts_with("http") { location } else { format!("http://{}{location}", self.host) };
        let separator = if url.contains('?') { '&' } else { '?' };
        let response = self
            .authorized(client.put(format!("{url}{separator}digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()?;
        anyhow::ensure!(response.status().is_success(), "uploading a blob: {}", response.status());
        Ok(digest)
    }

    fn authorized(&self, request: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.login {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
