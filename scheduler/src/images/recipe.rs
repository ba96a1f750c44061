//! What an image built for a project holds, and its content-hash tag (pure).
//!
//! The build context is the project snapshot plus two generated files: a `Dockerfile` (base
//! Python image of the `python_env`'s version, the project copied in, its build dependencies
//! and dependencies installed with pip in exec form, so no value reaches a shell) and the
//! requirements file the last step installs. The tag is the sha256 of the snapshot's hash and
//! both generated files: the same project and environment always give the same tag, and any
//! change of code, environment, base image or recipe gives a new one.

use concurrent_mlflow::project::snapshot::sha256_hex;

use super::PythonEnv;

/// Where the project sits in a built image (its working directory).
pub const PROJECT_DIR_IN_IMAGE: &str = "/concurrent/project";
/// The requirements file written into the build context, beside the project's own files, so
/// `-r requirements.txt` in `dependencies` resolves against the project directory.
pub const REQUIREMENTS_FILE: &str = ".concurrent-requirements.txt";
/// Bumped when the generated files change shape, so old tags are not reused for new recipes.
const RECIPE_VERSION: &str = "concurrent-image-recipe v1";

/// Where built images go and what they start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSettings {
    /// Registry and path prefix of built images, e.g. `registry.example.com/ml` (no tag).
    pub registry: String,
    /// Repository under `registry`, e.g. `concurrent-projects`.
    pub repository: String,
    /// Base image; `{python}` is replaced by the `python_env`'s version.
    pub base_image: String,
    /// Python version for projects that declare no environment.
    pub default_python: String,
}

impl Default for ImageSettings {
    fn default() -> Self {
        ImageSettings {
            registry: String::new(),
            repository: "concurrent-projects".into(),
            base_image: "docker.io/library/python:{python}-slim".into(),
            default_python: "3.12".into(),
        }
    }
}

/// An image to build from a project snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    /// The full reference pushed and looked up: `<registry>/<repository>:<tag>`.
    pub image: String,
    /// The content hash: 64 lowercase hex digits.
    pub tag: String,
    /// sha256 of the project snapshot the image is built from.
    pub snapshot_hash: String,
    /// The generated `Dockerfile`.
    pub dockerfile: String,
    /// The generated requirements file ([`REQUIREMENTS_FILE`]).
    pub requirements: String,
}

/// The plan for a project with `env` (none: the default Python, no packages).
pub fn plan_build(snapshot_hash: &str, env: Option<&PythonEnv>, settings: &ImageSettings) -> BuildPlan {
    let python = env.and_then(|e| e.python.as_deref()).unwrap_or(settings.default_python.as_str());
    let base = settings.base_image.replace("{python}", python);
    let mut dockerfile = format!("FROM {base}\nWORKDIR {PROJECT_DIR_IN_IMAGE}\nCOPY . {PROJECT_DIR_IN_IMAGE}\n");
    let build_dependencies = env.map(|e| e.build_dependencies.as_slice()).unwrap_or_default();
    if !build_dependencies.is_empty() {
        let mut args: Vec<&str> = vec!["python", "-m", "pip", "install", "--no-cache-dir", "--upgrade"];
        args.extend(build_dependencies.iter().map(String::as_str));
        dockerfile.push_str(&format!("RUN {}\n", exec_form(&args)));
    }
    let dependencies = env.map(|e| e.dependencies.as_slice()).unwrap_or_default();
    let requirements: String = dependencies.iter().map(|d| format!("{d}\n")).collect();
    if !dependencies.is_empty() {
        let file = format!("{PROJECT_DIR_IN_IMAGE}/{REQUIREMENTS_FILE}");
        dockerfile.push_str(&format!(
            "RUN {}\n",
            exec_form(&["python", "-m", "pip", "install", "--no-cache-dir", "-r", &file])
        ));
    }
    let tag = sha256_hex(format!("{RECIPE_VERSION}\0{snapshot_hash}\0{dockerfile}\0{requirements}").as_bytes());
    let image = format!("{}/{}:{tag}", settings.registry.trim_end_matches('/'), settings.repository);
    BuildPlan { image, tag, snapshot_hash: snapshot_hash.to_string(), dockerfile, requirements }
}

/// A Dockerfile exec-form argument list: a JSON array, run without a shell.
fn exec_form(args: &[&str]) -> String {
    serde_json::to_string(args).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ImageSettings {
        ImageSettings { registry: "registry.example.com/ml/".into(), ..ImageSettings::default() }
    }

    fn env(python: &str, deps: &[&str]) -> PythonEnv {
        PythonEnv {
            python: Some(python.into()),
            build_dependencies: vec!["pip".into()],
            dependencies: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn the_dockerfile_installs_the_environment_without_a_shell() {
        let plan = plan_build("ab12", Some(&env("3.11", &["numpy==2.1.0", "-r requirements.txt"])), &settings());
        assert_eq!(
            plan.dockerfile,
            "FROM docker.io/library/python:3.11-slim\n\
             WORKDIR /concurrent/project\n\
             COPY . /concurrent/project\n\
             RUN [\"python\",\"-m\",\"pip\",\"install\",\"--no-cache-dir\",\"--upgrade\",\"pip\"]\n\
             RUN [\"python\",\"-m\",\"pip\",\"install\",\"--no-cache-dir\",\"-r\",\"/concurrent/project/.concurrent-requirements.txt\"]\n"
        );
        assert_eq!(plan.requirements, "numpy==2.1.0\n-r requirements.txt\n");
        assert_eq!(plan.image, format!("registry.example.com/ml/concurrent-projects:{}", plan.tag));
        assert_eq!(plan.tag.len(), 64);
        assert!(plan.tag.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn the_tag_follows_the_content() {
        let a = plan_build("ab12", Some(&env("3.11", &["numpy"])), &settings());
        assert_eq!(a.tag, plan_build("ab12", Some(&env("3.11", &["numpy"])), &settings()).tag);
        for other in [
            plan_build("ab13", Some(&env("3.11", &["numpy"])), &settings()),
            plan_build("ab12", Some(&env("3.12", &["numpy"])), &settings()),
            plan_build("ab12", Some(&env("3.11", &["numpy", "pandas"])), &settings()),
            plan_build("ab12", None, &settings()),
            plan_build(
                "ab12",
                Some(&env("3.11", &["numpy"])),
                &ImageSettings { base_image: "python:{python}".into(), ..settings() },
            ),
        ] {
            assert_ne!(a.tag, other.tag, "{other:?}");
        }
    }

    #[test]
    fn a_project_without_an_environment_gets_the_default_python() {
        let plan = plan_build("ab12", None, &settings());
        assert_eq!(
            plan.dockerfile,
            "FROM docker.io/library/python:3.12-slim\nWORKDIR /concurrent/project\nCOPY . /concurrent/project\n"
        );
        assert_eq!(plan.requirements, "");
    }
}
