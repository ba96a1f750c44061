//! Images for Kubernetes workers: the registry lookup against a real registry (Debian's
//! `docker-registry`, open, behind HTTP Basic, and behind a Bearer-token server: a tag present,
//! absent, and access refused without or with wrong credentials), and the in-cluster build's manifests for a `python_env` project, checked by
//! `kubernetes-validate --strict` against Kubernetes 1.37.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;
use concurrent_mlflow::project::MlProject;
use concurrent_mlflow::project::snapshot;
use concurrent_scheduler::images::{
    BuildJobSettings, ImageChoice, ImageSettings, Registry, RegistryCredentials, RegistryError, build_objects,
    choose_image, load_python_env,
};
use concurrent_tests::find_tool;
use concurrent_tests::oci_registry::OciRegistry;

fn credentials(user: &str, password: &str) -> RegistryCredentials {
    RegistryCredentials { username: user.into(), password: password.into() }
}

/// Whether `registry` holds `image`, asked as the scheduler asks (plain HTTP to it).
fn has_image(
    registry: &OciRegistry,
    image: &str,
    credentials: Option<&RegistryCredentials>,
) -> Result<bool, RegistryError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let client = Registry::new(vec![registry.host.clone()]);
    runtime.block_on(client.has_image(image, credentials))
}

#[test]
fn an_open_registry_says_which_tags_it_holds() -> anyhow::Result<()> {
    let registry = OciRegistry::start(None)?;
    registry.push_image("ml/concurrent-projects", "present")?;
    let host = &registry.host;
    assert!(has_image(&registry, &format!("{host}/ml/concurrent-projects:present"), None)?);
    assert!(!has_image(&registry, &format!("{host}/ml/concurrent-projects:absent"), None)?, "unknown tag");
    assert!(!has_image(&registry, &format!("{host}/ml/never-pushed:present"), None)?, "unknown repository");
    let bad = has_image(&registry, &format!("{host}/ML/Upper:present"), None).unwrap_err();
    assert!(matches!(bad, RegistryError::BadReference { .. }), "{bad}");
    Ok(())
}

#[test]
fn a_registry_behind_a_password_refuses_others_and_answers_its_users() -> anyhow::Result<()> {
    let registry = OciRegistry::start(Some(("builder", "pushes-images")))?;
    registry.push_image("concurrent-projects", "present")?;
    let present = format!("{}/concurrent-projects:present", registry.host);
    let absent = format!("{}/concurrent-projects:absent", registry.host);

    let right = credentials("builder", "pushes-images");
    assert!(has_image(&registry, &present, Some(&right))?);
    assert!(!has_image(&registry, &absent, Some(&right))?);

    for (who, given) in [("no credentials", None), ("a wrong password", Some(credentials("builder", "guessed")))] {
        let error = has_image(&registry, &present, given.as_ref()).unwrap_err();
        assert!(matches!(error, RegistryError::Refused { .. }), "{who}: {error:?}");
        assert_eq!(
            error.to_string(),
            format!("the registry refused access to {present} (check the registry credentials)"),
            "{who}"
        );
        assert!(!format!("{error:?}").contains("pushes-images"), "no password in errors");
    }
    Ok(())
}

#[test]
fn a_registry_that_wants_bearer_tokens_answers_with_a_token_from_its_realm() -> anyhow::Result<()> {
    let registry = OciRegistry::start_with_token_server("builder", "pushes-images")?;
    registry.push_image("ml/concurrent-projects", "present")?;
    let present = format!("{}/ml/concurrent-projects:present", registry.host);
    let absent = format!("{}/ml/concurrent-projects:absent", registry.host);

    let right = credentials("builder", "pushes-images");
    assert!(has_image(&registry, &present, Some(&right))?, "the token from the realm opens the registry");
    assert!(!has_image(&registry, &absent, Some(&right))?);
    for (who, given) in [("no credentials", None), ("a wrong password", Some(credentials("builder", "guessed")))] {
        let error = has_image(&registry, &present, given.as_ref()).unwrap_err();
        assert!(matches!(error, RegistryError::Refused { .. }), "{who}: {error:?}");
    }
    Ok(())
}

#[test]
fn the_build_of_a_python_env_project_is_a_valid_job_that_pushes_its_content_hash_tag() -> anyhow::Result<()> {
    let project = tempfile::tempdir()?;
    write_python_env_project(project.path())?;
    let mlproject = MlProject::load(project.path())?;
    let python_env = load_python_env(project.path(), &mlproject.env)?;
    let snapshot = snapshot::pack(project.path())?;
    let settings = ImageSettings { registry: "registry.example.com/ml".into(), ..ImageSettings::default() };
    let ImageChoice::Build(plan) = choose_image(None, &mlproject.env, python_env.as_ref(), &snapshot.hash, &settings)?
    else {
        panic!("a python_env project without an image is built");
    };
    assert!(plan.dockerfile.starts_with("FROM docker.io/library/python:3.11-slim\n"), "{}", plan.dockerfile);
    assert_eq!(plan.requirements, "pillow>=10\n-r requirements.txt\n");
    let job_settings = BuildJobSettings {
        namespace: "ml-workers".into(),
        push_secret: Some("registry-push".into()),
        service_account: Some("concurrent-worker".into()),
        ..BuildJobSettings::default()
    };
    let objects = build_objects(&plan, &snapshot.bytes, &job_settings)?;

    let manifests = [serde_yaml::to_string(&objects.config_map)?, serde_yaml::to_string(&objects.job)?].join("---\n");
    assert!(
        manifests.contains(&format!("value: registry.example.com/ml/concurrent-projects:{}", plan.tag)),
        "{manifests}"
    );
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("build.yaml");
    std::fs::write(&file, &manifests)?;
    let (ok, report) = kubernetes_validate(&file)?;
    assert!(ok, "kubernetes-validate refused the build manifests:\n{report}\n{manifests}");
    assert!(report.contains("passed for resource job/concurrent-build-"), "{report}");
    assert!(report.contains("passed for resource configmap/concurrent-build-"), "{report}");

    // The same project gives the same tag; a changed dependency gives another.
    let again = snapshot::pack(project.path())?;
    assert_eq!(again.hash, snapshot.hash);
    std::fs::write(project.path().join("requirements.txt"), "numpy==2.1.0\n")?;
    let changed = snapshot::pack(project.path())?;
    let ImageChoice::Build(other) = choose_image(None, &mlproject.env, python_env.as_ref(), &changed.hash, &settings)?
    else {
        panic!("built");
    };
    assert_ne!(other.tag, plan.tag);
    Ok(())
}

#[test]
fn kubernetes_validate_refuses_a_broken_job() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec:\n  backofLimit: 0\n  template:\n    spec:\n      containers: [{name: a, image: b}]\n      restartPolicy: Never\n",
    )?;
    let (ok, report) = kubernetes_validate(&file)?;
    assert!(!ok, "a misspelt field must fail --strict: {report}");
    assert!(report.contains("backofLimit"), "{report}");
    Ok(())
}

fn write_python_env_project(dir: &Path) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("MLproject"),
        "name: thumbnail\npython_env: python_env.yaml\nentry_points:\n  main:\n    command: python thumb.py\n",
    )?;
    std::fs::write(
        dir.join("python_env.yaml"),
        "python: \"3.11\"\nbuild_dependencies: [pip]\ndependencies: [pillow>=10, -r requirements.txt]\n",
    )?;
    std::fs::write(dir.join("requirements.txt"), "numpy\n")?;
    std::fs::write(dir.join("thumb.py"), "print('thumbnail')\n")?;
    Ok(())
}

/// Runs `kubernetes-validate --strict -k 1.37.0 FILE`: whether it passed, and its report.
pub fn kubernetes_validate(file: &Path) -> anyhow::Result<(bool, String)> {
    let tool = find_tool("kubernetes-validate").context("run scripts/setup.sh")?;
    let output = Command::new(tool).args(["--strict", "-k", "1.37.0"]).arg(file).output()?;
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Ok((output.status.success(), report))
}
