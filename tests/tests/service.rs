//! `concurrent serve` as its users reach it: curl and an HTTP client on the REST API, a tonic
//! client on gRPC, the CLI verbs; tokens, metrics, cancel, fair share between runs, and the
//! service SIGKILLed mid-run and started again.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use concurrent_proto::grpc::scheduler_client::SchedulerClient;
use concurrent_proto::grpc::{GetRunRequest, ListRunsRequest, SubmitRunRequest, WatchRunRequest};
use concurrent_tests::mlflow_server;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(180);
const TOKEN: &str = "tok-3f9a7c21e5b8";

/// A running `concurrent serve`, killed when dropped.
struct Service {
    process: Background,
    url: String,
    dir: PathBuf,
}

impl Service {
    /// Starts the service in `dir` (state in `dir/state`) with `args` and waits until it listens.
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)], name: &str) -> Service {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--state-dir", "state", "--idle-timeout", "1s"];
        all.extend_from_slice(args);
        let process = spawn_concurrent(&all, env, dir, name);
        let mut url = String::new();
        wait_until("the service to listen", DEADLINE, || {
            let text = process.stderr_text();
            if let Some(rest) = text.split("listening on ").nth(1) {
                url = rest.split_whitespace().next().unwrap_or_default().to_string();
            }
            assert!(!text.contains("error:"), "the service failed to start:\n{}", process.describe());
            !url.is_empty()
        });
        Service { process, url, dir: dir.to_path_buf() }
    }

    fn http(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
    }

    fn get(&self, path: &str) -> Value {
        let response = self.http().get(format!("{}{path}", self.url)).bearer_auth(TOKEN).send().unwrap();
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().unwrap()
    }

    fn submit(&self, dag: &str, extra: Value) -> Value {
        let mut body = json!({"dag": dag});
        body.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
        let response =
            self.http().post(format!("{}/api/v1/runs", self.url)).bearer_auth(TOKEN).json(&body).send().unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().unwrap();
        assert_eq!(status, 201, "{answer}");
        answer
    }

    fn run(&self, run_id: &str) -> Value {
        self.get(&format!("/api/v1/runs/{run_id}"))
    }

    fn wait_for_end(&self, run_id: &str) -> Value {
        let mut run = Value::Null;
        wait_until("the run to end", DEADLINE, || {
            run = self.run(run_id);
            run["status"] != "running"
        });
        run
    }

    fn metrics(&self) -> String {
        reqwest::blocking::get(format!("{}/metrics", self.url)).unwrap().text().unwrap()
    }
}

/// A metric's value in Prometheus text (`name{labels}` exactly as written), 0 when absent.
fn metric_value(text: &str, series: &str) -> f64 {
    text.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("tokens");
    std::fs::write(&path, format!("alice:{TOKEN}\nci:other-token-1\n")).unwrap();
    path
}

/// A DAG of the `failing` example project (it copies its inputs) over `raw`.
fn copy_dag(raw: &Path, project: &str, shard_size: u32, sleep: f64) -> String {
    format!(
        "name: svc\nexperiment: {experiment}\ninput: file://{raw}\nstages:\n  copy:\n    project: {project}\n    partition: {{by: object, shard_size: {shard_size}}}\n    parallelism: 2\n    parameters: {{sleep: {sleep}}}\n",
        experiment = unique("svc"),
        raw = raw.display()
    )
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

/// A git repository holding the example's `failing` project under `projects/copy`.
fn git_project(dir: &Path) -> String {
    let repo = dir.join("repo");
    let project = repo.join("projects/copy");
    std::fs::create_dir_all(&project).unwrap();
    for file in ["MLproject", "failing.py"] {
        std::fs::copy(example_projects().join("failing").join(file), project.join(file)).unwrap();
    }
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "copy project"]);
    format!("git:file://{}#projects/copy", repo.display())
}

fn curl(args: &[&str]) -> (u16, String) {
    let output = Command::new("curl").args(["-sS", "-w", "\n%{http_code}"]).args(args).output().expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn a_run_submitted_with_curl_is_followed_over_rest_and_grpc_and_tokens_stay_secret() {
    let mlflow = mlflow_server::shared();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    make_images(&raw, 12);
    let tokens = token_file(dir.path());
    let service = Service::start(
        dir.path(),
        &["--token-file", tokens.to_str().unwrap(), "--max-workers", "2"],
        &[("MLFLOW_TRACKING_URI", &mlflow.uri)],
        "serve",
    );
    let dag = copy_dag(&raw, &git_project(dir.path()), 4, 0.0);
    let body = json!({"dag": dag}).to_string();
    let runs_url = format!("{}/api/v1/runs", service.url);

    // No token, a wrong token: 401 and nothing submitted.
    let (code, _) = curl(&["-X", "POST", "-H", "content-type: application/json", "--data", &body, &runs_url]);
    assert_eq!(code, 401);
    let wrong = ["-H", "Authorization: Bearer not-it"];
    let (code, _) = curl(&[&wrong[..], &["-X", "POST", "--data", &body, &runs_url]].concat());
    assert_eq!(code, 401);
    assert_eq!(service.get("/api/v1/runs")["runs"], json!([]));
    let refused = metric_value(
        &service.metrics(),
        "concurrent_api_requests_total{interface=\"rest\",outcome=\"unauthenticated\"}",
    );
    assert_eq!(refused, 2.0);

    // Submitted with curl, followed with curl's server-sent events to the run's end.
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (code, answer) =
        curl(&["-X", "POST", "-H", &auth, "-H", "content-type: application/json", "--data", &body, &runs_url]);
    assert_eq!(code, 201, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let run_id = answer["run_id"].as_str().unwrap().to_string();
    let url = answer["url"].as_str().unwrap();
    assert!(url.contains("#/experiments/") && url.ends_with("?workflowType=machine_learning"), "{answer}");
    let (code, events) = curl(&["-N", "-H", &auth, &format!("{runs_url}/{run_id}/events")]);
    assert_eq!(code, 200);
    assert!(events.contains("event: shard_decided"), "{events}");
    let last = events.lines().filter_map(|l| l.strip_prefix("data: ")).next_back().unwrap();
    let last: Value = serde_json::from_str(last).unwrap();
    assert_eq!(last["kind"], "run_ended");
    assert_eq!(last["run"]["status"], "succeeded");
    assert_eq!(last["run"]["stages"][0]["shards_succeeded"], 3);

    // The same run over gRPC: get, list, watch (a finished run's watch is its status).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = SchedulerClient::connect(service.url.clone()).await.unwrap();
        let unauthenticated = client.get_run(GetRunRequest { run_id: run_id.clone() }).await.unwrap_err();
        assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
        let mut request = tonic::Request::new(GetRunRequest { run_id: run_id.clone() });
        request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        let run = client.get_run(request).await.unwrap().into_inner();
        assert_eq!((run.status.as_str(), run.submitted_by.as_str()), ("succeeded", "alice"));
        let mut request = tonic::Request::new(ListRunsRequest {});
        request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        assert_eq!(client.list_runs(request).await.unwrap().into_inner().runs.len(), 1);

        // A second run submitted over gRPC and watched to its end.
        let mut request = tonic::Request::new(SubmitRunRequest { dag: dag.clone(), ..Default::default() });
        request.metadata_mut().insert("authorization", "Bearer other-token-1".parse().unwrap());
        let second = client.submit_run(request).await.unwrap().into_inner().run_id;
        let mut request = tonic::Request::new(WatchRunRequest { run_id: second.clone() });
        request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        let mut stream = client.watch_run(request).await.unwrap().into_inner();
        let mut last = None;
        while let Some(event) = stream.message().await.unwrap() {
            last = Some(event);
        }
        let last = last.expect("at least one event");
        assert_eq!(last.kind, "run_ended");
        let run = last.run.unwrap();
        assert_eq!((run.status.as_str(), run.submitted_by.as_str()), ("succeeded", "ci"));
    });

    // Metrics moved with the runs.
    let metrics = service.metrics();
    let series = format!("concurrent_shards_decided_total{{run=\"{run_id}\",stage=\"copy\",result=\"succeeded\"}}");
    assert_eq!(metric_value(&metrics, &series), 3.0, "{metrics}");
    assert_eq!(metric_value(&metrics, "concurrent_runs{state=\"succeeded\"}"), 2.0);

    // MLflow: who submitted, and the token nowhere.
    let rest = MlflowRest::new(&mlflow.uri);
    let experiment = dag.lines().find_map(|l| l.strip_prefix("experiment: ")).unwrap();
    let runs = rest.runs(&rest.experiment_id(experiment).unwrap());
    let dag_run = runs
        .iter()
        .find(|r| tag(r, "concurrent.run_id") == Some(run_id.as_str()) && tag(r, "mlflow.parentRunId").is_none())
        .unwrap();
    assert_eq!(tag(dag_run, "concurrent.submitted_by"), Some("alice"));
    assert!(!serde_json::to_string(&runs).unwrap().contains(TOKEN));
    drop(runtime);
    let logs = service.process.stderr_text();
    assert!(!logs.contains(TOKEN) && !metrics.contains(TOKEN), "the token leaked");
    assert!(logs.contains("submitted_by=alice"), "{logs}");
}

#[test]
fn bad_requests_are_refused_with_the_place_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    make_images(&raw, 4);
    let tokens = token_file(dir.path());
    let service =
        Service::start(dir.path(), &["--token-file", tokens.to_str().unwrap(), "--tracking", "none"], &[], "serve");
    let http = service.http();
    let post = |path: &str, body: String| {
        let response = http
            .post(format!("{}{path}", service.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<Value>().unwrap_or(Value::Null))
    };
    let project = example_projects().join("failing").display().to_string();
    let bad_dag = copy_dag(&raw, &project, 0, 0.0);
    let (status, answer) = post("/api/v1/runs", json!({"dag": bad_dag}).to_string());
    assert_eq!(status, 400);
    assert!(answer["errors"].to_string().contains("stages.copy.partition.shard_size: must be at least 1"), "{answer}");
    let (status, answer) = post("/api/v1/runs", "{\"dag\": ".into());
    assert_eq!(status, 400);
    assert!(answer["errors"][0].as_str().unwrap().starts_with("request body, line 1"), "{answer}");
    let (status, answer) = post("/api/v1/runs", json!({"dag": "name: x", "colour": "red"}).to_string());
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("unknown field `colour`"), "{answer}");
    let good = copy_dag(&raw, "./copy", 2, 0.0);
    let missing = json!({"dag": good, "projects": {"./copy": format!("sha256:{}", "a".repeat(64))}});
    let (status, answer) = post("/api/v1/runs", missing.to_string());
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().starts_with("projects../copy: no snapshot"), "{answer}");
    // A snapshot whose body does not match its name.
    let put = http
        .put(format!("{}/api/v1/projects/sha256:{}", service.url, "b".repeat(64)))
        .bearer_auth(TOKEN)
        .body("not a tar")
        .send()
        .unwrap();
    assert_eq!(put.status().as_u16(), 400);
    assert_eq!(service.get("/api/v1/runs")["runs"], json!([]), "nothing was created");
    assert!(!dir.path().join("state/outputs").exists());
    // Unknown runs and validation.
    let unknown = http.get(format!("{}/api/v1/runs/nosuchrun1", service.url)).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    let (status, answer) = post("/api/v1/validate", json!({"dag": copy_dag(&raw, &project, 2, 0.0)}).to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["stages"][0]["shards"], 2);
}

#[test]
fn the_cli_submits_follows_cancels_and_reads_logs_through_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    make_images(&raw, 6);
    let service = Service::start(dir.path(), &["--tracking", "none", "--max-workers", "2"], &[], "serve");
    let scheduler = service.url.as_str();
    let dag_path = dir.path().join("dag.yaml");
    let project = example_projects().join("failing").display().to_string();
    std::fs::write(&dag_path, copy_dag(&raw, &project, 3, 0.0)).unwrap();

    // run --scheduler uploads the project, submits, follows to the end: same exit code.
    let out = concurrent(&["run", "dag.yaml", "--scheduler", scheduler], &[], dir.path(), DEADLINE);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCEEDED"), "{}", describe(&out));
    let uploads: Vec<_> = std::fs::read_dir(dir.path().join("state/uploads")).unwrap().collect();
    assert_eq!(uploads.len(), 1, "the local project was uploaded once");
    let listed = concurrent(&["list", "--scheduler", scheduler, "--output", "json"], &[], dir.path(), DEADLINE);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let run_id = listed["runs"][0]["run_id"].as_str().unwrap().to_string();
    let log = concurrent(&["logs", &run_id, "copy", "1", "--scheduler", scheduler], &[], dir.path(), DEADLINE);
    assert_eq!(log.status.code(), Some(0), "{}", describe(&log));
    let missing = concurrent(&["logs", &run_id, "copy", "9", "--scheduler", scheduler], &[], dir.path(), DEADLINE);
    assert_eq!(missing.status.code(), Some(2), "{}", describe(&missing));

    // A slow run, cancelled from the CLI: its workers stop, it ends cancelled.
    let slow = service.submit(&copy_dag(&raw, &project, 1, 30.0), json!({}));
    let slow_id = slow["run_id"].as_str().unwrap();
    wait_until("a worker of the slow run", DEADLINE, || !pids_matching(&format!("--run {slow_id}")).is_empty());
    let cancel = concurrent(&["cancel", slow_id, "--scheduler", scheduler], &[], dir.path(), DEADLINE);
    assert_eq!(cancel.status.code(), Some(0), "{}", describe(&cancel));
    let ended = service.wait_for_end(slow_id);
    assert_eq!(ended["status"], "cancelled");
    assert_no_process_left(&format!("--run {slow_id}"));
    assert_no_process_left("failing.py --input-dir");
    let again = concurrent(&["cancel", slow_id, "--scheduler", scheduler], &[], dir.path(), DEADLINE);
    assert_eq!(again.status.code(), Some(2), "cancelling an ended run: {}", describe(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("has already ended"));
}

#[test]
fn a_small_run_is_not_starved_by_a_big_one() {
    let dir = tempfile::tempdir().unwrap();
    let (big_raw, small_raw) = (dir.path().join("big"), dir.path().join("small"));
    make_images(&big_raw, 24);
    make_images(&small_raw, 2);
    let service = Service::start(dir.path(), &["--tracking", "none", "--max-workers", "2"], &[], "serve");
    let project = example_projects().join("failing").display().to_string();
    let big = service.submit(&copy_dag(&big_raw, &project, 1, 0.4), json!({}));
    let big_id = big["run_id"].as_str().unwrap().to_string();
    wait_until("the big run to hold both slots", DEADLINE, || pids_matching(&format!("--run {big_id}")).len() == 2);
    let small = service.submit(&copy_dag(&small_raw, &project, 1, 0.0), json!({}));
    let small_id = small["run_id"].as_str().unwrap().to_string();
    let small_end = service.wait_for_end(&small_id);
    assert_eq!(small_end["status"], "succeeded");
    let big_now = service.run(&big_id);
    assert_eq!(big_now["status"], "running", "the small run ended while the big one still ran: {big_now}");
    let big_end = service.wait_for_end(&big_id);
    assert_eq!(big_end["status"], "succeeded");
    assert!(small_end["ended_ms"].as_i64() < big_end["ended_ms"].as_i64());
}

#[test]
fn a_service_killed_mid_run_resumes_it_and_every_output_appears_once() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    make_images(&raw, 16);
    let project = example_projects().join("failing").display().to_string();
    let mut service = Service::start(dir.path(), &["--tracking", "none", "--max-workers", "2"], &[], "serve1");
    let submitted = service.submit(&copy_dag(&raw, &project, 2, 0.3), json!({}));
    let run_id = submitted["run_id"].as_str().unwrap().to_string();
    wait_until("a decided shard", DEADLINE, || {
        service.run(&run_id)["stages"][0]["shards_succeeded"].as_u64() >= Some(1)
    });
    signal(service.process.pid(), "KILL");
    service.process.wait(DEADLINE);
    assert_no_process_left(&format!("--run {run_id}"));
    drop(service);

    service = Service::start(dir.path(), &["--tracking", "none", "--max-workers", "2"], &[], "serve2");
    assert!(service.process.stderr_text().contains(&run_id) || service.run(&run_id)["status"] == "running");
    let ended = service.wait_for_end(&run_id);
    assert_eq!(ended["status"], "succeeded", "{ended}");
    assert_eq!(ended["stages"][0]["shards_succeeded"], 8);
    // Every input copied exactly once, across the shards' output dirs.
    let outputs = files_under(&service.dir.join("state/outputs").join(&run_id).join("copy"));
    let mut names: Vec<String> = outputs.iter().map(|p| p.split_once('/').unwrap().1.to_string()).collect();
    names.sort();
    assert_eq!(names, files_under(&raw));
}

#[test]
fn the_service_speaks_tls_when_given_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    // A CA, and the service's certificate it signed (a CA's own certificate is no server's).
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ca = dir.path().join("ca.pem");
    let openssl = |args: &[&str]| {
        let made = Command::new("openssl").args(args).current_dir(dir.path()).output().expect("openssl");
        assert!(made.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&made.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        &[&["req", "-x509"][..], &ec, &["-days", "1", "-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem"]]
            .concat(),
    );
    openssl(&[&["req"][..], &ec, &["-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "cert.csr"]].concat());
    std::fs::write(
        dir.path().join("cert.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "cert.ext",
        "-out",
        "cert.pem",
    ]);

    // A key that is not a key: refused before anything starts, the file named.
    let bad_key = dir.path().join("bad.pem");
    std::fs::write(&bad_key, "not a key").unwrap();
    let refused = concurrent(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tracking",
            "none",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            bad_key.to_str().unwrap(),
        ],
        &[],
        dir.path(),
        DEADLINE,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--tls-key"), "{}", describe(&refused));
    assert!(!dir.path().join("state").exists(), "nothing created");

    let tokens = token_file(dir.path());
    let args = [
        "--tracking",
        "none",
        "--token-file",
        tokens.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let service = Service::start(dir.path(), &args, &[], "serve");
    assert!(service.url.starts_with("https://"), "{}", service.url);
    let url = service.url.replace("127.0.0.1", "localhost");
    let cacert = ca.to_str().unwrap();
    let (code, body) = curl(&["--cacert", cacert, &format!("{url}/healthz")]);
    assert_eq!((code, body.trim()), (200, "ok"));
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (code, body) = curl(&["--http2", "--cacert", cacert, "-H", &auth, &format!("{url}/api/v1/runs")]);
    assert_eq!((code, body.as_str()), (200, "{\"runs\":[]}"));
    // Plain HTTP on the TLS port gets no API.
    let (code, _) = curl(&[&format!("{}/healthz", url.replace("https://", "http://"))]);
    assert_ne!(code, 200);
    // The CLI's verbs reach it with --ca-file, and refuse it without.
    let client_token = dir.path().join("client-token");
    std::fs::write(&client_token, TOKEN).unwrap();
    let client_token = client_token.to_str().unwrap();
    let list = |extra: &[&str]| {
        let mut all = vec!["list", "--scheduler", &url, "--token-file", client_token, "--output", "json"];
        all.extend_from_slice(extra);
        concurrent(&all, &[], dir.path(), DEADLINE)
    };
    let listed = list(&["--ca-file", cacert]);
    assert!(listed.status.success(), "{}", describe(&listed));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("\"runs\""), "{}", describe(&listed));
    let untrusted = list(&[]);
    assert_eq!(untrusted.status.code(), Some(3), "{}", describe(&untrusted));
    let bad_ca = list(&["--ca-file", client_token]);
    assert_eq!(bad_ca.status.code(), Some(2), "{}", describe(&bad_ca));
    assert!(String::from_utf8_lossy(&bad_ca.stderr).contains("--ca-file"), "{}", describe(&bad_ca));
}

#[test]
fn runs_taking_turns_on_the_workers_use_up_no_attempt() {
    // Fair share drains workers between shards; a drained worker must never leave a shard the
    // server already handed it: with `retries: 0` that shard would be lost.
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("noop");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("MLproject"), "name: noop\nentry_points:\n  main:\n    command: \"true\"\n").unwrap();
    let inputs = |name: &str, count: usize| {
        let raw = dir.path().join(name);
        std::fs::create_dir(&raw).unwrap();
        for i in 0..count {
            std::fs::write(raw.join(format!("f{i:03}")), "").unwrap();
        }
        format!(
            "name: {name}\ninput: file://{}\nstages:\n  noop: {{project: {}, partition: {{by: object, shard_size: 1}}, parallelism: 2, retries: 0}}\n",
            raw.display(),
            project.display()
        )
    };
    let service = Service::start(dir.path(), &["--tracking", "none", "--max-workers", "2"], &[], "serve");
    let big = service.submit(&inputs("big", 80), json!({}));
    let big_id = big["run_id"].as_str().unwrap().to_string();
    for turn in 0..4 {
        let small = service.submit(&inputs(&format!("small{turn}"), 4), json!({}));
        let small_end = service.wait_for_end(small["run_id"].as_str().unwrap());
        assert_eq!(small_end["status"], "succeeded", "{small_end}");
    }
    let big_end = service.wait_for_end(&big_id);
    assert_eq!(big_end["status"], "succeeded", "{big_end}\n{}", service.process.describe());
    assert_eq!(big_end["stages"][0]["shards_succeeded"], 80, "{big_end}");
}
