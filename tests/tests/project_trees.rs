//! End to end: projects as users have them. A symbolic link inside the project (to a file, to a
//! directory) reaches the entry point as what it points to; a project with a link leading out
//! of it is refused by `validate` and `run` before anything is created.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use common::*;
use concurrent_tests::NatsServer;

const DEADLINE: Duration = Duration::from_secs(300);

/// A project whose entry point copies `data.txt` and `lib/helper.txt` (both links) to its output.
fn write_project(dir: &Path) {
    let project = dir.join("project");
    std::fs::create_dir_all(project.join("shared/lib")).unwrap();
    std::fs::write(
        project.join("MLproject"),
        "entry_points:\n  main:\n    command: \"cp data.txt lib/helper.txt $CONCURRENT_OUTPUT_DIR/ && \
         test ! -L data.txt && test ! -L lib\"\n",
    )
    .unwrap();
    std::fs::write(project.join("shared/data.txt"), "data").unwrap();
    std::fs::write(project.join("shared/lib/helper.txt"), "helper").unwrap();
    symlink("shared/data.txt", project.join("data.txt")).unwrap();
    symlink("shared/lib", project.join("lib")).unwrap();
}

#[test]
fn links_inside_a_project_run_as_their_targets_and_one_leaving_it_is_refused_first() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path());
    let dag = dir.path().join("dag.yaml");
    std::fs::write(&dag, format!("name: {}\ninput: none\nstages:\n  copy: {{project: ./project}}\n", unique("trees")))
        .unwrap();
    let run = ["run", "dag.yaml", "--tracking", "none", "--state-dir", "state"];
    let output = concurrent(&run, &[("NATS_URL", nats.url.as_str())], dir.path(), DEADLINE);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let outputs = dir.path().join("state/outputs");
    let run_dir = std::fs::read_dir(&outputs).unwrap().next().unwrap().unwrap().path();
    // Beside the outputs: the attempt's log (`<stage>-<shard>-a<attempt>.log`).
    let mut copied: Vec<(String, String)> = files_under(&run_dir)
        .into_iter()
        .filter(|f| f.ends_with(".txt"))
        .map(|f| {
            let name = Path::new(&f).file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(run_dir.join(&f)).unwrap())
        })
        .collect();
    copied.sort();
    assert_eq!(copied, [("data.txt".to_string(), "data".to_string()), ("helper.txt".into(), "helper".into())]);

    std::fs::write(dir.path().join("secret.txt"), "s").unwrap();
    symlink("../secret.txt", dir.path().join("project/secret.txt")).unwrap();
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let root = dir.path().canonicalize().unwrap();
    let expected = format!(
        "stages.copy.project: {} is a symbolic link to {}, outside the project {}",
        root.join("project/secret.txt").display(),
        root.join("secret.txt").display(),
        root.join("project").display()
    );
    for args in [&["validate", "dag.yaml"][..], &run[..]] {
        let output = concurrent(args, &[("NATS_URL", nats.url.as_str())], dir.path(), DEADLINE);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", describe(&output));
        assert!(String::from_utf8_lossy(&output.stderr).contains(&expected), "{args:?}: {}", describe(&output));
        assert!(!dir.path().join("state").exists(), "{args:?} created the state dir");
    }
}
