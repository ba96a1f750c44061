//! Projects, entry points, parameters and `-P` overrides, against real MLproject files;
//! git projects through a local repository and a `file://` URL.

use std::path::Path;
use std::process::Command;

use super::*;

#[test]
fn project_is_required_and_must_exist() {
    assert_eq!(errors("name: t\ninput: none\nstages:\n  a: {parallelism: 2}\n"), ["stages.a.project: required"]);
    let e = errors("name: t\ninput: none\nstages:\n  a: {project: projects/absent}\n");
    assert_eq!(e, [format!("stages.a.project: directory {} not found", data_dir().join("projects/absent").display())]);
    let e = errors("name: t\ninput: none\nstages:\n  a: {project: not-utf8.yaml}\n");
    assert_eq!(e, [format!("stages.a.project: {} is not a directory", data_dir().join("not-utf8.yaml").display())]);
    let e = errors("name: t\ninput: none\nstages:\n  a: {project: projects/empty}\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("stages.a.project: no MLproject file in "), "{e:?}");
}

#[test]
fn entry_point_must_exist() {
    let e = errors(&one_stage("    entry_point: train\n"));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("stages.a.entry_point: no entry point `train` in the MLproject of"));
    assert!(e[0].ends_with("(declared: main, resize)"), "{e:?}");
    // A .py file of the project is an entry point, as in MLflow.
    let dag = ok("name: t\ninput: none\nstages:\n  a: {project: projects/histogram, entry_point: extra.py}\n");
    assert_eq!(dag.stages["a"].entry_point, "extra.py");
}

#[test]
fn parameters_are_checked_against_the_entry_point() {
    // Undeclared parameters are passed as `--key value`, in the order given, as in MLflow.
    let a = &ok(&one_stage("    parameters: {siz: 3, size: 4, alpha: x}\n")).stages["a"];
    assert_eq!(a.undeclared_parameters, ["siz", "alpha"]);
    assert_eq!(a.parameter_order, ["siz", "size", "alpha"]);
    assert_eq!(
        errors(&one_stage("    parameters: {size: big}\n")),
        ["stages.a.parameters.size: expected int, found \"big\" (not an integer)"]
    );
    assert_eq!(
        errors(&one_stage("    entry_point: resize\n")),
        ["stages.a.parameters: missing parameter `width` (entry point `resize` declares it \
          without a default)"]
    );
    assert_eq!(
        errors(&one_stage("    parameters: {size: [1]}\n")),
        ["stages.a.parameters.size: expected a string, number or boolean, found a list"]
    );
    // input_dir is declared without a default but the worker fills it.
    let a = &ok(&one_stage("    entry_point: resize\n    parameters: {width: 300}\n")).stages["a"];
    assert_eq!(a.parameters["width"], "300");
}

#[test]
fn yaml_scalars_are_stringified_like_python() {
    let text = "name: t\ninput: none\nstages:\n  a:\n    project: projects/histogram\n    \
                parameters: {bins: 8, scale: 2.0}\n";
    let a = &ok(text).stages["a"];
    assert_eq!(a.parameters["bins"], "8");
    assert_eq!(a.parameters["scale"], "2.0");
    let a = &ok(&one_stage("    parameters: {label: true}\n")).stages["a"];
    assert_eq!(a.parameters["label"], "True");
}

#[test]
fn p_overrides_set_parameters_and_name_their_place() {
    let set = |params: &[(&str, &str, &str)]| Overrides {
        input: None,
        env_manager: None,
        parameters: params.iter().map(|(s, p, v)| (s.to_string(), p.to_string(), v.to_string())).collect(),
    };
    let dag = parse_with(&one_stage("    parameters: {size: 64}\n"), &set(&[("a", "size", "32")])).unwrap();
    assert_eq!(dag.stages["a"].parameters["size"], "32");
    let dag =
        parse_with(&one_stage("    parameters: {size: 64, z: 1}\n"), &set(&[("a", "siz", "32"), ("a", "z", "2")]))
            .unwrap();
    assert_eq!(dag.stages["a"].undeclared_parameters, ["z", "siz"], "file order, then -P's new names");
    assert_eq!(errors_with(&one_stage(""), &set(&[("b", "size", "32")])), ["-P b.size: unknown stage `b`"]);
    assert_eq!(
        errors_with(&one_stage(""), &set(&[("a", "size", "x")])),
        ["-P a.size: expected int, found \"x\" (not an integer)"]
    );
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn git_projects_are_cloned_and_checked_out() {
    let repo = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let sub = repo.path().join("projects/thumb");
    std::fs::create_dir_all(&sub).unwrap();
    let mlproject = |size: u32| {
        format!(
            "entry_points:\n  main:\n    parameters:\n      size: {{type: int, default: {size}}}\n    \
             command: \"echo {{size}}\"\n"
        )
    };
    std::fs::write(sub.join("MLproject"), mlproject(1)).unwrap();
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-qm", "v1"]);
    git(repo.path(), &["tag", "v1"]);
    std::fs::write(sub.join("MLproject"), "entry_points:\n  other:\n    command: x\n").unwrap();
    git(repo.path(), &["commit", "-qam", "v2"]);

    let url = url::Url::from_directory_path(repo.path()).unwrap().to_string();
    let text = format!("name: t\ninput: none\nstages:\n  a:\n    project: {{git: \"{url}#projects/thumb@v1\"}}\n");
    let opts = LoadOptions { git_cache: cache.path().to_path_buf(), ..LoadOptions::default() };
    let dag =
        parse_dag_with(&text, Path::new("/nowhere"), &Overrides::default(), &opts).unwrap_or_else(|e| panic!("{e}"));
    let a = &dag.stages["a"];
    assert_eq!(
        a.project,
        ProjectRef::Git { url: url.clone(), subdir: Some("projects/thumb".into()), rev: Some("v1".into()) }
    );
    assert!(a.project_dir.starts_with(cache.path().canonicalize().unwrap()));
    assert_eq!(std::fs::read_to_string(a.project_dir.join("MLproject")).unwrap(), mlproject(1));

    // Without a revision: the default branch, where `main` is gone.
    let text = format!("name: t\ninput: none\nstages:\n  a:\n    project: \"git:{url}#projects/thumb\"\n");
    let e = parse_dag_with(&text, Path::new("/nowhere"), &Overrides::default(), &opts).unwrap_err();
    assert!(e.0[0].place == "stages.a.entry_point", "{e}");

    // A commit pushed to the default branch is picked up by the next run.
    std::fs::write(sub.join("MLproject"), mlproject(3)).unwrap();
    git(repo.path(), &["commit", "-qam", "v3"]);
    let text = format!("name: t\ninput: none\nstages:\n  a:\n    project: \"git:{url}#projects/thumb\"\n");
    let dag =
        parse_dag_with(&text, Path::new("/nowhere"), &Overrides::default(), &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(std::fs::read_to_string(dag.stages["a"].project_dir.join("MLproject")).unwrap(), mlproject(3));

    let text = format!("name: t\ninput: none\nstages:\n  a:\n    project: {{git: \"{url}#@nope\"}}\n");
    let e = parse_dag_with(&text, Path::new("/nowhere"), &Overrides::default(), &opts).unwrap_err();
    assert!(e.0[0].place == "stages.a.project" && e.0[0].message.contains("checkout"), "{e}");
}

#[test]
fn bad_git_specs_name_the_place() {
    assert_eq!(
        errors("name: t\ninput: none\nstages:\n  a:\n    project: {git: \"https://h/r.git#../x\"}\n"),
        ["stages.a.project.git: the subdirectory \"../x\" must be a relative path inside the repository"]
    );
    assert_eq!(
        errors("name: t\ninput: none\nstages:\n  a:\n    project: {git: x, rev: y}\n"),
        [
            "stages.a.project.rev: unknown field",
            "stages.a.project.git: expected a git URL like https://host/org/repo.git#subdir@ref, found \"x\""
        ]
    );
}

#[test]
fn path_parameters_are_made_absolute_and_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("p");
    std::fs::create_dir_all(project.join("data")).unwrap();
    std::fs::write(
        project.join("MLproject"),
        "entry_points:\n  main:\n    parameters:\n      data: path\n      model: {type: path, default: p/data}\n      \
         source: {type: path, default: 's3://bucket/key'}\n    command: run {data} {model} {source}\n",
    )
    .unwrap();
    std::fs::write(project.join("data/x.csv"), "1").unwrap();
    let dag = |data: &str| {
        format!("name: t\ninput: none\nstages:\n  a:\n    project: p\n    parameters: {{data: '{data}'}}\n")
    };
    let root = dir.path().canonicalize().unwrap();
    let parsed = parse_dag(&dag("p/data/x.csv"), &root, &Overrides::default()).unwrap();
    let a = &parsed.stages["a"];
    assert_eq!(a.parameters["data"], "p/data/x.csv", "as given, for the stage run's params");
    let command = a.command_parameters();
    assert_eq!(command["data"], root.join("p/data/x.csv").display().to_string());
    assert_eq!(command["model"], root.join("p/data").display().to_string(), "a default too");
    assert!(!command.contains_key("source"), "a URI is left for the worker to download");
    let file_uri = format!("file://{}", root.join("p/data/x.csv").display());
    let parsed = parse_dag(&dag(&file_uri), &root, &Overrides::default()).unwrap();
    assert_eq!(parsed.stages["a"].command_parameters()["data"], root.join("p/data/x.csv").display().to_string());
    let errors = parse_dag(&dag("p/data/missing.csv"), &root, &Overrides::default()).unwrap_err();
    assert_eq!(
        errors.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [format!("stages.a.parameters.data: no such file or directory: {}", root.join("p/data/missing.csv").display())]
    );
}

/// The stdout of `git args` in `dir`.
fn git_out(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").args(args).current_dir(dir).output().expect("git runs");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_tag_or_a_pinned_commit_in_the_cache_runs_without_the_remote() {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    let cache = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("MLproject"), "entry_points:\n  main:\n    command: \"true\"\n").unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "v1"]);
    git(&repo, &["tag", "-a", "v1", "-m", "v1"]);
    let commit = git_out(&repo, &["rev-parse", "HEAD"]);
    let url = url::Url::from_directory_path(&repo).unwrap().to_string();
    let opts = LoadOptions { git_cache: cache.path().to_path_buf(), ..LoadOptions::default() };
    let load = |rev: &str| {
        let text = format!("name: t\ninput: none\nstages:\n  a:\n    project: {{git: \"{url}#@{rev}\"}}\n");
        parse_dag_with(&text, Path::new("/nowhere"), &Overrides::default(), &opts)
    };
    let at_tag = load("v1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(at_tag.stages["a"].git_commit.as_deref(), Some(commit.as_str()), "the tag's commit is recorded");
    assert_eq!(load(&commit).unwrap().stages["a"].git_commit.as_deref(), Some(commit.as_str()));

    // The remote is gone: the tag and the commit still run from the cache; a branch cannot.
    std::fs::rename(&repo, root.path().join("moved")).unwrap();
    let again = load("v1").unwrap_or_else(|e| panic!("the tag runs without the remote: {e}"));
    assert_eq!(again.stages["a"].git_commit.as_deref(), Some(commit.as_str()));
    assert_eq!(again.stages["a"].project_dir, at_tag.stages["a"].project_dir);
    assert!(load(&commit).is_ok(), "the pinned commit runs without the remote");
    let e = load("master").unwrap_err();
    assert_eq!(e.0[0].place, "stages.a.project", "{e}");
}

#[test]
fn credentials_in_a_git_url_never_reach_a_message() {
    assert_eq!(without_credentials("https://user:s3cret@example.com/org/r.git"), "https://example.com/org/r.git");
    assert_eq!(without_credentials("git@github.com:org/r.git"), "git@github.com:org/r.git");
    let cache = tempfile::tempdir().unwrap();
    let opts = LoadOptions { git_cache: cache.path().to_path_buf(), ..LoadOptions::default() };
    let text = "name: t\ninput: none\nstages:\n  a:\n    project: {git: \"https://user:s3cret@127.0.0.1:9/r.git\"}\n";
    let e = parse_dag_with(text, Path::new("/nowhere"), &Overrides::default(), &opts).unwrap_err();
    assert!(!e.to_string().contains("s3cret"), "{e}");
    assert!(e.to_string().contains("https://127.0.0.1:9/r.git"), "{e}");
}

#[test]
fn a_link_inside_the_project_validates_and_one_leaving_it_names_the_stage() {
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("shared")).unwrap();
    std::fs::write(project.join("MLproject"), "entry_points:\n  main:\n    command: \"cat data.txt\"\n").unwrap();
    std::fs::write(project.join("shared/data.txt"), "x").unwrap();
    std::os::unix::fs::symlink("shared/data.txt", project.join("data.txt")).unwrap();
    let text = "name: t\ninput: none\nstages:\n  a: {project: ./project}\n";
    assert!(parse_dag_with(text, dir.path(), &Overrides::default(), &options()).is_ok());

    std::fs::write(dir.path().join("outside.txt"), "x").unwrap();
    std::os::unix::fs::symlink("../outside.txt", project.join("outside.txt")).unwrap();
    let errors = parse_dag_with(text, dir.path(), &Overrides::default(), &options()).expect_err("refused").lines();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let root = dir.path().canonicalize().unwrap();
    assert!(
        errors[0].starts_with(&format!(
            "stages.a.project: {} is a symbolic link to {}, outside the project {}",
            root.join("project/outside.txt").display(),
            root.join("outside.txt").display(),
            root.join("project").display()
        )),
        "{errors:?}"
    );
}
