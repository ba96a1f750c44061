//! The Kubernetes objects that build a [`BuildPlan`]'s image in the cluster (pure): a
//! ConfigMap holding the build context (the project snapshot, the generated `Dockerfile` and
//! requirements file) and a Job running rootless BuildKit (`buildctl-daemonless.sh`, no
//! privileges, no Docker daemon) that unpacks the snapshot and pushes the content-hash tag.
//!
//! Both are named after the tag, so creating them twice is refused by the API server
//! (`AlreadyExists`): one build per image, however many stages or schedulers ask for it.
//! Registry credentials come by reference: a `kubernetes.io/dockerconfigjson` Secret mounted as
//! BuildKit's Docker config; the scheduler never reads or copies them into the objects.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    AppArmorProfile, ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, KeyToPath,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::recipe::{BuildPlan, REQUIREMENTS_FILE};

/// The most a ConfigMap holds (the API server's limit is 1 MiB, keys and metadata included).
pub const MAX_CONTEXT_BYTES: usize = 1_000_000;
/// Label on build objects: the first 63 hex digits of the image's tag.
pub const IMAGE_HASH_LABEL: &str = "concurrent.dev/image-hash";

/// How builds run in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildJobSettings {
    /// Namespace of the build objects (the workers' namespace).
    pub namespace: String,
    /// The BuildKit image (rootless).
    pub builder_image: String,
    /// A `kubernetes.io/dockerconfigjson` Secret with push credentials for the registry.
    pub push_secret: Option<String>,
    /// Push over plain HTTP (a registry without TLS).
    pub insecure_registry: bool,
    /// Longest a build may run, in seconds (`activeDeadlineSeconds`).
    pub timeout_seconds: i64,
    /// How long a finished build Job is kept (`ttlSecondsAfterFinished`).
    pub keep_finished_seconds: i32,
    /// Service account of the build Pods (none: the namespace's default).
    pub service_account: Option<String>,
}

impl Default for BuildJobSettings {
    fn default() -> Self {
        BuildJobSettings {
            namespace: "default".into(),
            builder_image: "docker.io/moby/buildkit:rootless".into(),
            push_secret: None,
            insecure_registry: false,
            timeout_seconds: 1800,
            keep_finished_seconds: 3600,
            service_account: None,
        }
    }
}

/// The objects of one build.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildObjects {
    /// The build context.
    pub config_map: ConfigMap,
    /// The build.
    pub job: Job,
}

/// Why a build cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum BuildJobError {
    /// The snapshot does not fit in a ConfigMap.
    #[error(
        "the project snapshot is {bytes} bytes; an in-cluster build takes at most {MAX_CONTEXT_BYTES} \
         (give the stage an `image`, or a `docker_env` image, or leave large files out of the project)"
    )]
    ContextTooLarge {
        /// The context's size.
        bytes: usize,
    },
}

const CONTEXT_MOUNT: &str = "/concurrent/build";
const SNAPSHOT_KEY: &str = "snapshot.tar";
const DOCKERFILE_KEY: &str = "Dockerfile";
const REQUIREMENTS_KEY: &str = "requirements.txt";
const DOCKER_CONFIG_DIR: &str = "/home/user/.docker";

/// The build script: unpack the snapshot, add the requirements file, build and push `$IMAGE`.
/// Values arrive in the environment, never in the script's text.
const BUILD_SCRIPT: &str = r#"set -eu
context=/home/user/context
mkdir -p "$context"
tar -xf /concurrent/build/snapshot.tar -C "$context"
cp /concurrent/build/requirements.txt "$context/$REQUIREMENTS_FILE"
exec buildctl-daemonless.sh build --frontend dockerfile.v0 \
  --local context="$context" --local dockerfile=/concurrent/build \
  --output "type=image,name=$IMAGE,push=true$PUSH_OPTIONS""#;

/// The ConfigMap and Job that build `plan` from `snapshot` (the tar whose sha256 is
/// `plan.snapshot_hash`).
pub fn build_objects(
    plan: &BuildPlan,
    snapshot: &[u8],
    settings: &BuildJobSettings,
) -> Result<BuildObjects, BuildJobError> {
    let bytes = snapshot.len() + plan.dockerfile.len() + plan.requirements.len();
    if bytes > MAX_CONTEXT_BYTES {
        return Err(BuildJobError::ContextTooLarge { bytes });
    }
    let name = format!("concurrent-build-{}", &plan.tag[..16.min(plan.tag.len())]);
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "concurrent".to_string()),
        ("app.kubernetes.io/component".to_string(), "image-build".to_string()),
        ("app.kubernetes.io/managed-by".to_string(), "concurrent".to_string()),
        (IMAGE_HASH_LABEL.to_string(), plan.tag[..63.min(plan.tag.len())].to_string()),
    ]);
    let metadata = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(settings.namespace.clone()),
        labels: Some(labels.clone()),
        annotations: Some(BTreeMap::from([("concurrent.dev/image".to_string(), plan.image.clone())])),
        ..ObjectMeta::default()
    };
    let config_map = ConfigMap {
        metadata: metadata.clone(),
        data: Some(BTreeMap::from([
            (DOCKERFILE_KEY.to_string(), plan.dockerfile.clone()),
            (REQUIREMENTS_KEY.to_string(), plan.requirements.clone()),
        ])),
        binary_data: Some(BTreeMap::from([(SNAPSHOT_KEY.to_string(), ByteString(snapshot.to_vec()))])),
        immutable: Some(true),
    };

    let mut volumes = vec![
        Volume {
            name: "context".into(),
            config_map: Some(ConfigMapVolumeSource { name: name.clone(), ..ConfigMapVolumeSource::default() }),
            ..Volume::default()
        },
        Volume { name: "buildkit".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() },
        Volume { name: "workspace".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() },
    ];
    let mut mounts = vec![
        mount("context", CONTEXT_MOUNT, true),
        mount("buildkit", "/home/user/.local/share/buildkit", false),
        mount("workspace", "/home/user/context", false),
    ];
    let mut env = vec![
        env_var("IMAGE", &plan.image),
        env_var("REQUIREMENTS_FILE", REQUIREMENTS_FILE),
        env_var("PUSH_OPTIONS", if settings.insecure_registry { ",registry.insecure=true" } else { "" }),
        // Rootless BuildKit in an unprivileged Pod: no nested process sandbox.
        env_var("BUILDKITD_FLAGS", "--oci-worker-no-process-sandbox"),
    ];
    if let Some(secret) = &settings.push_secret {
        volumes.push(Volume {
            name: "registry-credentials".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                items: Some(vec![KeyToPath {
                    key: ".dockerconfigjson".into(),
                    path: "config.json".into(),
                    ..KeyToPath::default()
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("registry-credentials", DOCKER_CONFIG_DIR, true));
        env.push(env_var("DOCKER_CONFIG", DOCKER_CONFIG_DIR));
    }
    let unconfined = || SeccompProfile { type_: "Unconfined".into(), localhost_profile: None };
    let container = Container {
        name: "buildkit".into(),
        image: Some(settings.builder_image.clone()),
        command: Some(vec!["sh".into(), "-c".into(), BUILD_SCRIPT.into()]),
        env: Some(env),
        volume_mounts: Some(mounts),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("500m".into())),
                ("memory".to_string(), Quantity("1Gi".into())),
            ])),
            ..ResourceRequirements::default()
        }),
        // Rootless BuildKit needs its user namespaces: no seccomp or AppArmor filter, but no
        // privilege, root or added capability either.
        security_context: Some(SecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(1000),
            run_as_non_root: Some(true),
            seccomp_profile: Some(unconfined()),
            app_armor_profile: Some(AppArmorProfile { type_: "Unconfined".into(), localhost_profile: None }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    let job = Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(settings.timeout_seconds),
            ttl_seconds_after_finished: Some(settings.keep_finished_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: settings.service_account.clone(),
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        fs_group: Some(1000),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    };
    Ok(BuildObjects { config_map, job })
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::recipe::{ImageSettings, plan_build};

    fn plan() -> BuildPlan {
        plan_build("ab12", None, &ImageSettings { registry: "registry.example.com".into(), ..ImageSettings::default() })
    }

    #[test]
    fn the_job_pushes_the_content_hash_tag_with_credentials_by_reference() {
        let settings = BuildJobSettings {
            namespace: "ml".into(),
            push_secret: Some("registry-push".into()),
            ..BuildJobSettings::default()
        };
        let objects = build_objects(&plan(), b"tar bytes", &settings).unwrap();
        let job_name = objects.job.metadata.name.clone().unwrap();
        assert_eq!(job_name, format!("concurrent-build-{}", &plan().tag[..16]));
        assert_eq!(objects.config_map.metadata.name.as_deref(), Some(job_name.as_str()));
        let pod = objects.job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        let env: BTreeMap<_, _> =
            container.env.iter().flatten().map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or(""))).collect();
        assert_eq!(env["IMAGE"], plan().image);
        assert_eq!(env["DOCKER_CONFIG"], DOCKER_CONFIG_DIR);
        let secret = pod.volumes.iter().flatten().find_map(|v| v.secret.as_ref()).unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("registry-push"));
        assert_eq!(objects.config_map.binary_data.as_ref().unwrap()[SNAPSHOT_KEY], ByteString(b"tar bytes".to_vec()));
        let script = container.command.as_ref().unwrap().join(" ");
        assert!(!script.contains(&plan().tag), "values reach the script through the environment only");
    }

    #[test]
    fn a_snapshot_too_large_for_a_config_map_is_refused() {
        let error = build_objects(&plan(), &vec![0; MAX_CONTEXT_BYTES], &BuildJobSettings::default()).unwrap_err();
        assert!(error.to_string().starts_with("the project snapshot is 1000"), "{error}");
    }
}
