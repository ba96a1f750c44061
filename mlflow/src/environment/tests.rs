use std::path::Path;

use super::*;

fn env(text: &str) -> Result<PythonEnv, String> {
    PythonEnv::parse(text, "python_env.yaml").map_err(|e| e.to_string())
}

#[test]
fn managers_are_mlflows_names() {
    for manager in EnvManager::ALL {
        assert_eq!(EnvManager::from_name(manager.as_str()), Ok(manager));
    }
    assert_eq!(
        EnvManager::from_name("pip").unwrap_err().to_string(),
        "unknown environment manager 'pip' (expected local, virtualenv, uv or conda)"
    );
}

#[test]
fn the_project_chooses_unless_a_manager_is_given() {
    let python = ProjectEnv::PythonEnv("python_env.yaml".into());
    let conda = ProjectEnv::CondaEnv("conda.yaml".into());
    let docker = ProjectEnv::Docker { image: "img:1".into() };
    let py = RunEnv::Uv(Some("python_env.yaml".into()));
    assert_eq!(resolve(&python, None), Ok(py.clone()));
    assert_eq!(resolve(&python, Some(EnvManager::Virtualenv)), Ok(py.clone()));
    assert_eq!(resolve(&python, Some(EnvManager::Uv)), Ok(py));
    assert_eq!(resolve(&python, Some(EnvManager::Local)), Ok(RunEnv::Local));
    assert_eq!(resolve(&python, Some(EnvManager::Conda)), Err(EnvChoiceError::PythonEnvWithConda));
    assert_eq!(resolve(&conda, None), Ok(RunEnv::Conda("conda.yaml".into())));
    assert_eq!(resolve(&conda, Some(EnvManager::Local)), Ok(RunEnv::Local));
    assert_eq!(resolve(&ProjectEnv::Local, None), Ok(RunEnv::Local));
    assert_eq!(resolve(&ProjectEnv::Local, Some(EnvManager::Uv)), Ok(RunEnv::Uv(None)));
    assert_eq!(resolve(&docker, Some(EnvManager::Local)), Ok(RunEnv::Docker("img:1".into())));
}

#[test]
fn python_env_reads_as_mlflow_reads_it() {
    let parsed = env(
        "python: \"3.11\"\nbuild_dependencies:\n  - pip\ndependencies:\n  - -r requirements.txt\n  - six==1.16.0\n",
    )
    .unwrap();
    assert_eq!(parsed.python.as_deref(), Some("3.11"));
    assert_eq!(parsed.build_dependencies, ["pip"]);
    assert_eq!(parsed.dependencies, ["-r requirements.txt", "six==1.16.0"]);
    let files: Vec<String> = parsed.requirement_files().into_iter().map(|(_, _, f)| f).collect();
    assert_eq!(files, ["requirements.txt"]);
    assert_eq!(parsed.dependency_lines(Path::new("/p")), ["-r /p/requirements.txt", "six==1.16.0"]);
    assert_eq!(env("").unwrap(), PythonEnv::default());
}

#[test]
fn malformed_python_env_names_the_key() {
    assert_eq!(
        env("python: 3.10").unwrap_err(),
        "python_env.yaml: python: expected a string, found the number 3.1 (quote the version: python: \"3.1\")"
    );
    assert_eq!(env("dependencies: six").unwrap_err(), "python_env.yaml: dependencies: expected a list, found a string");
    assert_eq!(
        env("dependencies: [[a]]").unwrap_err(),
        "python_env.yaml: dependencies[0]: expected a string, found a list"
    );
    assert_eq!(
        env("pyton: '3.11'").unwrap_err(),
        "python_env.yaml: pyton: unknown key (expected python, build_dependencies, dependencies)"
    );
    assert_eq!(env("[1]").unwrap_err(), "python_env.yaml: (top level): expected a mapping, found a list");
}

#[test]
fn requirement_lines_in_every_spelling() {
    let parsed =
        env("dependencies: ['-r a.txt', '--requirement b.txt', '--requirement=c.txt', '-rd.txt', '-c e.txt', 'rich']")
            .unwrap();
    let files: Vec<String> = parsed.requirement_files().into_iter().map(|(_, _, f)| f).collect();
    assert_eq!(files, ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"]);
    assert_eq!(parsed.dependency_lines(Path::new("/p"))[4], "-c /p/e.txt");
}

#[test]
fn a_missing_requirements_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("python_env.yaml"), "dependencies: ['-r requirements.txt']").unwrap();
    let err = PythonEnv::load(dir.path(), "python_env.yaml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "python_env.yaml: dependencies[0]: '-r requirements.txt' names requirements.txt, which is not a file of the project"
    );
    std::fs::write(dir.path().join("requirements.txt"), "six\n").unwrap();
    assert!(PythonEnv::load(dir.path(), "python_env.yaml").is_ok());
}

#[test]
fn the_hash_follows_versions_lines_and_requirement_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("requirements.txt"), "six\n").unwrap();
    let base = env("python: '3.11'\ndependencies: ['-r requirements.txt']").unwrap();
    let hash = base.content_hash(dir.path());
    assert_eq!(hash, base.content_hash(dir.path()), "stable");
    let other_python = env("python: '3.12'\ndependencies: ['-r requirements.txt']").unwrap();
    assert_ne!(hash, other_python.content_hash(dir.path()));
    std::fs::write(dir.path().join("requirements.txt"), "six==1.16.0\n").unwrap();
    assert_ne!(hash, base.content_hash(dir.path()), "a changed requirements file is another environment");
}

#[test]
fn the_cache_builds_once_and_keeps_nothing_of_a_failed_build() {
    let root = tempfile::tempdir().unwrap();
    let cache = cache::EnvCache::new(root.path());
    let failed = cache.get_or_build("uv", "h1", |dir: &Path| {
        std::fs::create_dir_all(dir).unwrap();
        Err(std::io::Error::other("resolver says no"))
    });
    assert!(matches!(failed, Err(cache::CacheError::Build(e)) if e.to_string() == "resolver says no"));
    assert!(!cache.dir("uv", "h1").exists(), "a failed build is not kept");
    let built = cache.get_or_build("uv", "h1", |dir: &Path| std::fs::create_dir_all(dir)).unwrap();
    assert_eq!(built, (cache.dir("uv", "h1"), cache::Found::Built));
    let again = cache.get_or_build("uv", "h1", |_: &Path| -> std::io::Result<()> { panic!("built twice") }).unwrap();
    assert_eq!(again.1, cache::Found::Cached);
}

#[test]
fn builders_racing_for_one_environment_build_it_once() {
    let root = tempfile::tempdir().unwrap();
    let builds = std::sync::atomic::AtomicU32::new(0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let tx = tx.clone();
            let (builds, root) = (&builds, root.path());
            scope.spawn(move || {
                // Each thread opens the lock file itself, as separate workers do.
                let cache = cache::EnvCache::new(root);
                let found = cache
                    .get_or_build("uv", "race", |dir: &Path| {
                        builds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::fs::create_dir_all(dir)?;
                        // Slow enough that the others arrive while the build holds the lock.
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        std::fs::write(dir.join("made"), "x")
                    })
                    .unwrap();
                tx.send(found).unwrap();
            });
        }
    });
    drop(tx);
    let found: Vec<_> = rx.iter().collect();
    assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(found.iter().filter(|(_, f)| *f == cache::Found::Built).count(), 1);
    assert!(found.iter().all(|(dir, _)| dir.join("made").is_file()));
}
