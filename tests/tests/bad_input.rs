//! Bad input is rejected cleanly (issue 3): every case of `tests/data/bad/` and a few very large
//! generated ones, through both `concurrent validate` and `concurrent run`, exit 2 with every
//! expected error line, no panic, no state dir and no JetStream stream. One `nats-server` serves
//! every case; failures of all cases are reported together.

mod common;

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::concurrent;
use concurrent_tests::{NatsServer, workspace_dir};
use futures::StreamExt;

/// The corpus may grow, never silently shrink below this.
const MIN_CASES: usize = 45;
/// Deadline of one `concurrent` invocation.
const DEADLINE: Duration = Duration::from_secs(120);
/// Longest error line a user should get, whatever the size of the input.
const MAX_LINE: usize = 4096;
/// A "huge" string value.
const TEN_MB: usize = 10 * 1024 * 1024;

/// One bad input and what the CLI must say about it.
struct Case {
    name: String,
    /// Directory holding the DAG file (and the projects it names).
    dir: PathBuf,
    dag: PathBuf,
    args: Vec<String>,
    /// Lines that must appear verbatim in stderr.
    expected: Vec<String>,
    /// Whether every error line printed must be an expected line (corpus cases).
    exact: bool,
    /// Whether each stderr line must be at most [`MAX_LINE`] characters.
    short_lines: bool,
}

fn corpus_dir() -> PathBuf {
    workspace_dir().join("tests/data/bad")
}

/// Reads every case directory of the corpus, sorted by name.
fn corpus() -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/data/bad exists")
        .map(|e| e.expect("readable corpus entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter().map(|dir| read_case(&dir)).collect()
}

fn read_case(dir: &Path) -> Case {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let dags: Vec<PathBuf> = ["dag.yaml", "dag.json"].iter().map(|f| dir.join(f)).filter(|p| p.is_file()).collect();
    assert_eq!(dags.len(), 1, "{name}: needs exactly one of dag.yaml and dag.json");
    let dir_text = dir.display().to_string();
    let expected_text =
        std::fs::read_to_string(dir.join("expected.txt")).unwrap_or_else(|e| panic!("{name}: expected.txt: {e}"));
    let expected: Vec<String> =
        expected_text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.replace("{dir}", &dir_text)).collect();
    assert!(!expected.is_empty(), "{name}: expected.txt holds no line");
    let args = match std::fs::read_to_string(dir.join("args.txt")) {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(_) => Vec::new(),
    };
    Case { name, dir: dir.to_path_buf(), dag: dags[0].clone(), args, expected, exact: true, short_lines: false }
}

/// Writes a DAG next to a copy of a small valid project (`./project`) in `root/<name>/`.
fn generated(root: &Path, name: &str, dag_text: &str, expected: &[String], short_lines: bool) -> Case {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("project")).unwrap();
    std::fs::write(
        dir.join("project/MLproject"),
        "entry_points:\n  main:\n    parameters:\n      size: {type: int, default: 1}\n    \
         command: \"echo {size}\"\n",
    )
    .unwrap();
    let dag = dir.join("dag.yaml");
    std::fs::write(&dag, dag_text).unwrap();
    Case {
        name: format!("generated/{name}"),
        dir,
        dag,
        args: Vec::new(),
        expected: expected.to_vec(),
        exact: false,
        short_lines,
    }
}

/// Inputs too big to commit: 10 MB strings, 10,000 stages, and inputs beyond the limits.
fn generated_cases(root: &Path) -> Vec<Case> {
    let huge = "x".repeat(TEN_MB);
    let mut cases = vec![
        generated(
            root,
            "huge-dag-name",
            &format!("name: {huge}\ninput: none\nstages:\n  a: {{project: ./project}}\n"),
            &["name: must match [a-z0-9-]{1,63}, found \"xxxx".into()],
            true,
        ),
        generated(
            root,
            "huge-parameter-value",
            &format!(
                "name: big\ninput: none\nstages:\n  a:\n    project: ./project\n    parameters: {{size: {huge}}}\n"
            ),
            &["stages.a.parameters.size: expected int, found \"xxxx".into()],
            true,
        ),
        generated(
            root,
            "huge-stage-name",
            // An explicit key (`? …`): YAML allows implicit keys of at most 1024 characters.
            &format!("name: big\ninput: none\nstages:\n  ? \"{huge}\"\n  : {{project: ./project}}\n"),
            &["stage names must match [a-z0-9][a-z0-9_-]{0,62}".into()],
            true,
        ),
    ];

    let n = 10_000;
    let mut cycle = String::from("name: big\ninput: none\nstages:\n");
    let mut each_bad = cycle.clone();
    let mut each_bad_lines = Vec::new();
    for i in 0..n {
        let up = (i + n - 1) % n;
        cycle.push_str(&format!("  s{i:05}: {{project: ./project, after: [s{up:05}]}}\n"));
        each_bad.push_str(&format!("  s{i:05}: {{project: ./project, parallelism: 0}}\n"));
        each_bad_lines.push(format!("stages.s{i:05}.parallelism: must be at least 1"));
    }
    let mut cycle_line = String::from("stages.s00000.after: cycle: ");
    for i in 0..n {
        cycle_line.push_str(&format!("s{i:05} -> "));
    }
    cycle_line.push_str("s00000");
    cases.push(generated(root, "ten-thousand-stages-in-a-cycle", &cycle, &[cycle_line], false));
    cases.push(generated(root, "ten-thousand-bad-stages", &each_bad, &each_bad_lines, false));
    cases.extend(beyond_the_limits(root));
    cases
}

/// Inputs beyond the documented limits (nesting depth, file size, stage count), and files
/// that are not regular files: each refused at once, naming the limit.
fn beyond_the_limits(root: &Path) -> Vec<Case> {
    let deep = 100_000;
    let too_deep = "lists and maps nested more than 64 levels deep (the limit for a YAML file)";
    let head = "name: big\ninput: none\n";
    let mut cases = vec![
        // `stages: ` takes 8 columns; its list is level 2, so level 65 opens at column 9 + 63.
        generated(
            root,
            "a-hundred-thousand-nested-lists",
            &format!("{head}stages: {}{}\n", "[".repeat(deep), "]".repeat(deep)),
            &[format!("line 3, column 72: {too_deep}")],
            true,
        ),
        generated(
            root,
            "a-hundred-thousand-nested-maps",
            &format!("{head}stages: {}1{}\n", "{a: ".repeat(deep), "}".repeat(deep)),
            &[format!("line 3, column {}: {too_deep}", 9 + 63 * 4)],
            true,
        ),
        generated(
            root,
            "a-hundred-thousand-nested-block-lists",
            &format!("{head}stages:\n  a:\n    {}x\n", "- ".repeat(deep)),
            &[format!("line 5, column {}: {too_deep}", 5 + 62 * 2)],
            true,
        ),
    ];

    let mut stages = String::from(head);
    stages.push_str("stages:\n");
    for i in 0..=10_000 {
        stages.push_str(&format!("  s{i:05}: {{project: ./project}}\n"));
    }
    cases.push(generated(
        root,
        "more-stages-than-the-limit",
        &stages,
        &["stages: 10001 stages, more than 10000 (the limit)".into()],
        true,
    ));

    let mut large = String::from(head);
    large.push_str("stages:\n  a: {project: ./project}\n");
    let line = format!("# {}\n", "x".repeat(1021));
    while large.len() <= 16 * 1024 * 1024 {
        large.push_str(&line);
    }
    let large_case = generated(root, "larger-than-the-limit", &large, &[], true);
    let expected = format!(
        "{}: cannot read the DAG file: larger than 16 MiB (the limit for a YAML file)",
        large_case.dag.display()
    );
    cases.push(Case { expected: vec![expected], ..large_case });

    let not_a_file = "; to read a DAG from a pipe, give `-` and send it to standard input";
    let fifo_case = generated(root, "a-fifo", head, &[], true);
    std::fs::remove_file(&fifo_case.dag).unwrap();
    let status = std::process::Command::new("mkfifo").arg(&fifo_case.dag).status().expect("running mkfifo");
    assert!(status.success(), "mkfifo failed");
    let expected =
        format!("{}: cannot read the DAG file: not a regular file (a FIFO){not_a_file}", fifo_case.dag.display());
    cases.push(Case { expected: vec![expected], ..fifo_case });

    let device_case = generated(root, "a-device", head, &[], true);
    let device = PathBuf::from("/dev/zero");
    let expected = format!("/dev/zero: cannot read the DAG file: not a regular file (a character device){not_a_file}");
    cases.push(Case { dag: device, expected: vec![expected], ..device_case });
    cases
}

/// What the CLI printed as errors: stderr lines without a leading `error: ` or indentation,
/// without the `… is not a valid DAG:` header and blank lines.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !(l.starts_with("error: ") && l.ends_with(" is not a valid DAG:")))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l).trim_start())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Shortens `text` for an assertion message.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max).collect();
    format!("{head}… ({} characters in all)", text.chars().count())
}

/// Problems with one invocation of the CLI for `case`; empty when it behaved.
fn check_output(case: &Case, output: &Output, state_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() != Some(2) {
        problems.push(format!("exit code {:?}, expected 2", output.status.code()));
    }
    if stderr.contains("panicked") {
        problems.push("stderr shows a panic".into());
    }
    if state_dir.exists() {
        problems.push(format!("the state dir {} was created", state_dir.display()));
    }
    for line in &case.expected {
        if !stderr.contains(line.as_str()) {
            problems.push(format!("missing expected line: {}", clip(line, 300)));
        }
    }
    if case.exact {
        let expected: BTreeSet<&str> = case.expected.iter().map(String::as_str).collect();
        for line in error_lines(&stderr) {
            if !expected.contains(line) {
                problems.push(format!("unexpected error line: {}", clip(line, 300)));
            }
        }
    }
    if case.short_lines
        && let Some(long) = stderr.lines().find(|l| l.chars().count() > MAX_LINE)
    {
        problems.push(format!(
            "an error line of {} characters (at most {MAX_LINE} expected; a huge value should be shortened): {}",
            long.chars().count(),
            clip(long, 120)
        ));
    }
    if !problems.is_empty() {
        let shown: Vec<String> = stderr.lines().take(20).map(|l| clip(l, 300)).collect();
        problems.push(format!("stderr was:\n{}", shown.join("\n")));
    }
    problems
}

/// The names of every JetStream stream (KV buckets and object stores included).
fn stream_names(runtime: &tokio::runtime::Runtime, nats_url: &str) -> Vec<String> {
    runtime.block_on(async {
        let client = async_nats::connect(nats_url).await.expect("connecting to the test nats-server");
        let js = async_nats::jetstream::new(client);
        js.stream_names().map(|r| r.expect("listing streams")).collect::<Vec<String>>().await
    })
}

/// Runs `concurrent` for a case, turning a timeout (the helper panics) into a problem.
fn invoke(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Result<Output, String> {
    catch_unwind(AssertUnwindSafe(|| concurrent(args, env, cwd, DEADLINE))).map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("did not finish: {}", clip(&message, 2000))
    })
}

/// Runs `validate` and `run` for one case; returns its problems, each prefixed by the command.
fn run_case(case: &Case, nats_url: &str, runtime: &tokio::runtime::Runtime, cache: &Path) -> Vec<String> {
    let cwd = tempfile::tempdir().unwrap();
    let state_dir = cwd.path().join("state");
    let dag = case.dag.to_str().expect("UTF-8 path");
    let state = state_dir.to_str().expect("UTF-8 path");
    let cache = cache.to_str().expect("UTF-8 path");
    let env = [("NATS_URL", nats_url), ("MLFLOW_TRACKING_URI", "http://127.0.0.1:9"), ("XDG_CACHE_HOME", cache)];
    let extra: Vec<&str> = case.args.iter().map(String::as_str).collect();

    let mut problems = Vec::new();
    let commands: [(&str, Vec<&str>); 2] = [
        ("validate", [&["validate", dag][..], &extra].concat()),
        ("run", [&["run", dag][..], &extra, &["--state-dir", state]].concat()),
    ];
    for (label, args) in commands {
        let found = match invoke(&args, &env, cwd.path()) {
            Ok(output) => check_output(case, &output, &state_dir),
            Err(problem) => vec![problem],
        };
        problems.extend(found.into_iter().map(|p| format!("[{label}] {p}")));
        let streams = stream_names(runtime, nats_url);
        if !streams.is_empty() {
            problems.push(format!("[{label}] JetStream streams were created: {streams:?}"));
            runtime.block_on(async {
                let client = async_nats::connect(nats_url).await.unwrap();
                let js = async_nats::jetstream::new(client);
                for name in &streams {
                    let _ = js.delete_stream(name).await;
                }
            });
        }
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    let leftovers: Vec<String> = std::fs::read_dir(cwd.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "state")
        .collect();
    if !leftovers.is_empty() {
        problems.push(format!("files were created in the working directory: {leftovers:?}"));
    }
    problems
}

#[test]
fn the_corpus_keeps_at_least_45_cases_each_well_formed() {
    let cases = corpus();
    assert!(cases.len() >= MIN_CASES, "only {} cases in {}", cases.len(), corpus_dir().display());
    let names: BTreeSet<String> =
        cases.iter().map(|c| c.name.split_once('-').map_or(c.name.clone(), |(_, n)| n.to_string())).collect();
    assert_eq!(names.len(), cases.len(), "two cases share a name");
    for case in &cases {
        assert!(case.dir.starts_with(corpus_dir()), "{}", case.name);
    }
}

#[test]
fn every_bad_input_exits_2_names_the_place_and_creates_nothing() {
    let nats = NatsServer::start().expect("starting nats-server");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    assert!(stream_names(&runtime, &nats.url).is_empty(), "a fresh nats-server has no stream");
    let generated_root = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();

    let mut cases = corpus();
    assert!(cases.len() >= MIN_CASES, "only {} cases in {}", cases.len(), corpus_dir().display());
    cases.extend(generated_cases(generated_root.path()));

    let mut failures = Vec::new();
    for case in &cases {
        let problems = run_case(case, &nats.url, &runtime, cache.path());
        if !problems.is_empty() {
            failures.push(format!("--- {}\n{}", case.name, problems.join("\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs were not rejected cleanly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
