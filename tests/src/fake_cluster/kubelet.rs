//! The kubelet: runs a bound Pod's first container command as a local process in its own
//! process group, with the Pod's environment (values, Secret keys, Pod fields) and the
//! configured path maps, logs it to a file, and reports its end. Stopping a Pod sends SIGTERM
//! to its group, then SIGKILL after [`GRACE`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::Value;

use super::Cluster;
use super::store::{Kind, Store};

/// How long a stopped Pod's process has between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// The host variables a container gets, standing for what its image sets.
const IMAGE_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV"];

/// Pod processes by namespace and name.
pub struct Kubelet {
    pods_dir: PathBuf,
    groups: Mutex<HashMap<(String, String), i32>>,
}

impl Kubelet {
    pub fn new(pods_dir: PathBuf) -> Kubelet {
        Kubelet { pods_dir, groups: Mutex::new(HashMap::new()) }
    }

    /// Where a Pod's output goes.
    pub fn log_path(&self, ns: &str, name: &str) -> PathBuf {
        self.pods_dir.join(format!("{ns}_{name}.log"))
    }

    /// Whether a process runs for this Pod.
    pub fn is_running(&self, ns: &str, name: &str) -> bool {
        self.groups.lock().expect("groups").contains_key(&(ns.to_string(), name.to_string()))
    }

    /// SIGTERM now, SIGKILL after [`GRACE`].
    pub fn stop(&self, ns: &str, name: &str) {
        let Some(group) = self.group(ns, name) else { return };
        signal(group, Signal::SIGTERM);
        tokio::spawn(async move {
            tokio::time::sleep(GRACE).await;
            signal(group, Signal::SIGKILL);
        });
    }

    /// SIGKILL now, as a crash or an OOM kill.
    pub fn kill(&self, ns: &str, name: &str) {
        if let Some(group) = self.group(ns, name) {
            signal(group, Signal::SIGKILL);
        }
    }

    /// Kills every Pod's process.
    pub fn kill_all(&self) {
        for group in self.groups.lock().expect("groups").values() {
            signal(*group, Signal::SIGKILL);
        }
    }

    fn group(&self, ns: &str, name: &str) -> Option<i32> {
        self.groups.lock().expect("groups").get(&(ns.to_string(), name.to_string())).copied()
    }

    /// Starts a bound Pod's container. An error is the reason the container cannot start.
    pub fn start(&self, cluster: &Arc<Cluster>, store: &Store, pod: &Value) -> Result<(), (&'static str, String)> {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let container = &pod["spec"]["containers"][0];
        let maps = &cluster.options.path_maps;
        let env = environment(store, pod, container).map_err(|m| ("CreateContainerConfigError", m))?;
        let expand = |s: &str| map_path(maps, &expand_vars(s, &env));
        let mut argv: Vec<String> =
            container["command"].as_array().into_iter().flatten().filter_map(Value::as_str).map(expand).collect();
        argv.extend(container["args"].as_array().into_iter().flatten().filter_map(Value::as_str).map(expand));
        if container["command"].as_array().is_none_or(Vec::is_empty) {
            return Err((
                "CreateContainerError",
                "the fake cluster runs a container's command; this container has none".into(),
            ));
        }
        let root = self.pods_dir.join(format!("{ns}_{name}"));
        std::fs::create_dir_all(&root).map_err(|e| ("CreateContainerError", e.to_string()))?;
        let work_dir = container["workingDir"].as_str().map_or(root.clone(), |d| PathBuf::from(map_path(maps, d)));
        let log =
            std::fs::File::create(self.log_path(&ns, &name)).map_err(|e| ("CreateContainerError", e.to_string()))?;
        let log2 = log.try_clone().map_err(|e| ("CreateContainerError", e.to_string()))?;
        let mut command = tokio::process::Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(&work_dir)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        for key in IMAGE_ENV {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        for (key, value) in &env {
            command.env(key, map_path(maps, value));
        }
        let mut child = command.spawn().map_err(|e| ("StartError", format!("{}: {e}", argv[0])))?;
        let group = child.id().map_or(0, |id| id as i32);
        self.groups.lock().expect("groups").insert((ns.clone(), name.clone()), group);
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            cluster.kubelet.groups.lock().expect("groups").remove(&(ns.clone(), name.clone()));
            signal(group, Signal::SIGKILL); // what the container left behind
            let code = match status {
                Ok(status) => status
                    .code()
                    .unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(9)),
                Err(_) => 128 + 9,
            };
            super::controller::container_ended(&cluster, &ns, &name, code);
        });
        Ok(())
    }
}

fn signal(group: i32, signal: Signal) {
    if group > 0 {
        let _ = nix::sys::signal::killpg(Pid::from_raw(group), signal);
    }
}

/// The container's environment, in order; a missing Secret or key (not optional) is an error.
fn environment(store: &Store, pod: &Value, container: &Value) -> Result<BTreeMap<String, String>, String> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let mut env = BTreeMap::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap_or_default().to_string();
        let from = &var["valueFrom"];
        let value = if let Some(value) = var["value"].as_str() {
            expand_vars(value, &env)
        } else if !from["secretKeyRef"].is_null() {
            let reference = &from["secretKeyRef"];
            let secret_name = reference["name"].as_str().unwrap_or_default();
            let key = reference["key"].as_str().unwrap_or_default();
            let optional = reference["optional"].as_bool().unwrap_or(false);
            match secret_value(store, ns, secret_name, key) {
                Ok(value) => value,
                Err(_) if optional => continue,
                Err(message) => return Err(message),
            }
        } else if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
            match path {
                "metadata.name" => pod["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                "metadata.namespace" => ns.to_string(),
                "metadata.uid" => pod["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
                "spec.nodeName" => pod["spec"]["nodeName"].as_str().unwrap_or_default().to_string(),
                "status.podIP" | "status.hostIP" => "127.0.0.1".to_string(),
                other => return Err(format!("unsupported fieldPath {other:?}")),
            }
        } else {
            String::new()
        };
        env.insert(name, value);
    }
    Ok(env)
}

fn secret_value(store: &Store, ns: &str, name: &str, key: &str) -> Result<String, String> {
    let secret = store.get(Kind::Secret, ns, name).ok_or_else(|| format!("secret \"{name}\" not found"))?;
    let encoded =
        secret["data"][key].as_str().ok_or_else(|| format!("couldn't find key {key} in Secret {ns}/{name}"))?;
    let bytes: k8s_openapi::ByteString =
        serde_json::from_value(Value::String(encoded.to_string())).map_err(|e| e.to_string())?;
    String::from_utf8(bytes.0).map_err(|e| e.to_string())
}

/// Kubernetes' `$(VAR)` references to earlier variables; `$$` is a literal `$`.
fn expand_vars(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = rest.strip_prefix("$(")
            && let Some(end) = inner.find(')')
            && let Some(value) = env.get(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Maps a container path to a host path by the first matching prefix.
fn map_path(maps: &[(PathBuf, PathBuf)], text: &str) -> String {
    for (container, host) in maps {
        if let Ok(rest) = Path::new(text).strip_prefix(container) {
            return host.join(rest).to_string_lossy().into_owned();
        }
    }
    text.to_string()
}
