#!/usr/bin/env bash
# End-to-end benchmarks: every case against its bare-process baseline, in one invocation,
# printed as a markdown table and written to OUT (default target/bench/e2e.md).
#
#   benches/e2e.sh [--quick] [--out FILE] [--cases overhead,scale,latency,images,service,pyenv,s3list,stragglers,sizing]
#
# Cases (full counts; --quick counts in brackets, for CI: about 2-3 minutes on 2 cores once
# the binaries are built):
#   overhead  2,000 [200] shards whose entry point is `true` (2,000 empty files, partition
#             {by: object, shard_size: 1}), `concurrent run --workers 2`, against
#             `seq 2000 | xargs -P 2 -I{} bash -c true` (the worker also runs `bash -c`).
#             Tracking none, then tracking on (500 [50] shards) with an MLflow server started
#             here (one worker, sqlite, proxied artifacts): its CPU per shard, and the requests
#             per shard by endpoint, counted from its access log (the DAG and stage runs' own
#             few requests included). NATS_URL (and MLFLOW_TRACKING_URI) point at servers this
#             script started before the clock starts, so their start-up is not in the times.
#             overhead per shard = (wall(concurrent) - wall(xargs)) x 2 lanes / shards: the
#             extra time one worker lane spends per shard over a bare `bash -c true` spawn.
#   scale     1,000,000 [100,000] generated objects through the scheduler library
#             (target/*/concurrent-scale-bench, benches/src/bin/scale.rs): partition into
#             10,000 shards, publish into JetStream with sled records as the driver does, peak
#             RSS, then a reopened store rebuilds the run state. File listing is not included.
#   latency   a 2-stage DAG (input: none; the second stage reads the first's one output)
#             whose entry points append `start|end <stage> $EPOCHREALTIME` to a file:
#             submit (taken just before `concurrent run` starts, NATS_URL set, tracking none)
#             -> first entry point start, and end of the first stage's last entry point ->
#             start of the second stage's first; median of 5 [3] runs.
#   images    the image example (examples/images/dag.yaml) on 10,000 [500] generated images,
#             2 workers, tracking none and tracking on, against scripts/baseline.sh DIR 2
#             (its own "total": the two scripts' steps, without its set-up), each with fixed
#             shard sizes (50 thumbnails, 100 histograms per shard) and sized adaptively (no
#             `partition`). Images are cached in target/bench/images-<count>.
#   service   `concurrent serve` (local executor, 2 workers, tracking none) driven with curl:
#             submit -> first entry point started (median of 5 [3]); a 2,000 [200]-shard run
#             and a 20-shard run submitted 1 s later, the small run's wall time against its
#             time alone; 100 [20] runs submitted at once by 10 [5] clients, p99 of SubmitRun
#             and all finished; the service's RSS with those finished and 10 [4] runs active.
#   pyenv     20 shards of a `python_env` project (no packages, the machine's Python; entry point
#             `python noop.py`), `--workers 2`, tracking none, env cache in the work dir: one
#             cold run (the environment is built; the cache must hold exactly one environment
#             after it), then 3 [1] warm runs and 3 [1] with `--env-manager local`, alternated;
#             added per shard = (median warm - median local) x 2 lanes / 20.
#   s3list    100,000 [2,000] keys in a bucket of a moto S3 server started here (put by boto3
#             from 32 threads; the set-up time is reported, not counted), then
#             target/*/concurrent-s3-listing-bench (benches/src/bin/s3_listing.rs): list the
#             `s3://` input with the scheduler's listing, partition (shard_size 100) and publish
#             the shards into JetStream with sled records, as a stage start does.
#   stragglers 40 [12] shards (one object each, 2 workers, tracking none) whose entry point sleeps
#             1 s [0.3 s]; the last shard's first attempt sleeps 10 times as long. The stage's
#             wall time with speculation (`speculate: 3`, the default) against the same stage
#             with `speculate: false`, alternated, median of 3 [1] pairs.
#   sizing    a synthetic stage of 10,000 [200] objects, 2 workers, tracking none: a shard
#             sleeps 2 s [0.2 s] plus 10 ms [5 ms] per object, 200 ms [100 ms] for a slow one;
#             on uniform inputs and on skewed ones (5 % slow, chosen by a seeded random),
#             sized adaptively (no `partition`), by the old default cut (`shards: 8`, i.e.
#             4 × parallelism) and with `shard_size` 5,000 [100] (the best fixed size of
#             `sizing_sim`'s sweep on this shape).
#
# Binaries are built first (`cargo build --release` of the scheduler, worker and benches;
# BENCH_PROFILE=debug uses the debug build that scripts/test.sh makes; build time is not
# counted). Exits non-zero when a case fails to run, never because a target is missed.
# Every process started here (nats-server, mlflow server, runs) is stopped on exit.
# KEEP=1 keeps the work directory (state dirs, logs).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

usage() {
  sed -n '2,63p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

QUICK=0
OUT="$REPO/target/bench/e2e.md"
CASES="overhead,scale,latency,images,service,pyenv,s3list,stragglers,sizing"
while (($#)); do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT="${2:?--out needs a file}"; shift ;;
    --cases) CASES="${2:?--cases needs a list}"; shift ;;
    -h | --help) usage ;;
    *) echo "e2e: unknown argument $1" >&2; usage ;;
  esac
  shift
done
wants() { [[ ",$CASES," == *",$1,"* ]]; }

if ((QUICK)); then
  OVERHEAD_SHARDS=200 OVERHEAD_TRACKED_SHARDS=50 SCALE_OBJECTS=100000 LATENCY_REPEATS=3 IMAGES=500
  SERVICE_BIG=200 SERVICE_RUNS=20 SERVICE_CLIENTS=5 SERVICE_ACTIVE=4
  PYENV_REPEATS=1 S3_KEYS=2000
  STRAGGLER_SHARDS=12 STRAGGLER_SLEEP=0.3 STRAGGLER_REPEATS=1
  SIZING_OBJECTS=200 SIZING_FIXED=0.2 SIZING_OBJECT=0.005 SIZING_SLOW=0.1 SIZING_BEST=100
else
  OVERHEAD_SHARDS=2000 OVERHEAD_TRACKED_SHARDS=500 SCALE_OBJECTS=1000000 LATENCY_REPEATS=5 IMAGES=10000
  SERVICE_BIG=2000 SERVICE_RUNS=100 SERVICE_CLIENTS=10 SERVICE_ACTIVE=10
  PYENV_REPEATS=3 S3_KEYS=100000
  STRAGGLER_SHARDS=40 STRAGGLER_SLEEP=1 STRAGGLER_REPEATS=3
  SIZING_OBJECTS=10000 SIZING_FIXED=2 SIZING_OBJECT=0.01 SIZING_SLOW=0.2 SIZING_BEST=5000
fi

# shellcheck source=scripts/env.sh
source "$REPO/scripts/env.sh"
unset MLFLOW_TRACKING_URI NATS_URL MLFLOW_RUN_ID
for tool in nats-server mlflow python curl uv moto_server; do
  command -v "$tool" >/dev/null || { echo "e2e: $tool not found; run scripts/setup.sh" >&2; exit 1; }
done

PROFILE="${BENCH_PROFILE:-release}"
case "$PROFILE" in
  release) BUILD=(cargo build --release) ;;
  debug) BUILD=(cargo build) ;;
  *) echo "e2e: BENCH_PROFILE must be release or debug" >&2; exit 2 ;;
esac
echo "e2e: ${BUILD[*]} --bins (not timed)" >&2
"${BUILD[@]}" --workspace --bins >&2
BIN="$REPO/target/$PROFILE"
CONCURRENT="$BIN/concurrent"
export CONCURRENT_WORKER_BIN="$BIN/concurrent-worker"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/concurrent-e2e.XXXXXX")"
GROUPS_STARTED=()   # process groups (setsid) started here: services and runs
cleanup() {
  local status=$?
  local pgid
  for pgid in "${GROUPS_STARTED[@]}"; do
    kill -TERM -- "-$pgid" 2>/dev/null || true
  done
  for pgid in "${GROUPS_STARTED[@]}"; do
    for _ in $(seq 50); do
      kill -0 -- "-$pgid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pgid" 2>/dev/null || true
  done
  if [[ "${KEEP:-0}" == 1 ]]; then
    echo "e2e: kept the work directory $WORK" >&2
  else
    rm -rf -- "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }
calc() { python -c "import sys; print(format(eval(sys.argv[1]), sys.argv[2]))" "$1" "$2"; }
free_port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
fail() {
  echo "e2e: $*" >&2
  exit 1
}

# start_group LOG CMD...: runs CMD in its own session (process group) in the background.
start_group() {
  local log="$1"
  shift
  setsid "$@" >"$log" 2>&1 &
  GROUPS_STARTED+=("$!")
  LAST_PID=$!
}

# wait_for URL SECONDS: until URL answers 2xx, or fail.
wait_for() {
  local deadline=$((SECONDS + $2))
  until curl -sf -o /dev/null "$1"; do
    ((SECONDS < deadline)) || return 1
    kill -0 "$LAST_PID" 2>/dev/null || return 1
    sleep 0.2
  done
}

# group_cpu PGID: CPU seconds (user + system) used so far by the live processes of a group.
group_cpu() {
  python - "$1" <<'PY'
import os, sys
pgid, ticks = int(sys.argv[1]), 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    if int(fields[2]) == pgid:
        ticks += int(fields[11]) + int(fields[12])
print(ticks / os.sysconf("SC_CLK_TCK"))
PY
}

start_nats() {
  local port monitor
  port="$(free_port)"
  monitor="$(free_port)"
  mkdir -p "$WORK/nats"
  start_group "$WORK/nats/nats-server.log" nats-server -a 127.0.0.1 -p "$port" -m "$monitor" -js -sd "$WORK/nats/js"
  wait_for "http://127.0.0.1:$monitor/healthz" 30 || fail "nats-server did not start; $(tail -5 "$WORK/nats/nats-server.log")"
  NATS="nats://127.0.0.1:$port"
  NATS_GROUP="$LAST_PID"
}

MLFLOW=""
start_mlflow() {
  [[ -n "$MLFLOW" ]] && return
  local port
  port="$(free_port)"
  mkdir -p "$WORK/mlflow"
  start_group "$WORK/mlflow/server.log" env MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow server --host 127.0.0.1 \
    --port "$port" --workers 1 --backend-store-uri "sqlite:///$WORK/mlflow/mlflow.db" \
    --artifacts-destination "$WORK/mlflow/artifacts"
  MLFLOW="http://127.0.0.1:$port"
  MLFLOW_GROUP="$LAST_PID"
  wait_for "$MLFLOW/health" 180 || fail "mlflow server did not start; $(tail -5 "$WORK/mlflow/server.log")"
}

# concurrent_run LOG ARGS...: `concurrent run ARGS` against the harness's services; sets WALL.
# TRACKING=mlflow in the environment: tracking on, else --tracking none.
# Whether process group PGID has a process that has not exited.
live_in_group() {
  ps -o stat= -g "$1" 2>/dev/null | grep -qv '^Z'
}

concurrent_run() {
  local log="$1" t0 t1 status=0
  shift
  local tracking_flag=(--tracking none)
  local env=(NATS_URL="$NATS")
  if [[ "${TRACKING:-none}" == mlflow ]]; then
    tracking_flag=()
    env+=(MLFLOW_TRACKING_URI="$MLFLOW")
  fi
  t0="$(now)"
  SUBMIT="$t0"
  env "${env[@]}" setsid "$CONCURRENT" run "$@" "${tracking_flag[@]}" >"$log" 2>&1 </dev/null &
  local pid=$!
  GROUPS_STARTED+=("$pid")
  wait "$pid" || status=$?
  t1="$(now)"
  # Its workers exit when it does (they watch their stdin); give them a second, then
  # stop any left, and forget the group. Exited processes not yet reaped (zombies, which
  # an init that reaps lazily keeps for a while) hold nothing and are not counted.
  for _ in $(seq 20); do
    live_in_group "$pid" || break
    sleep 0.05
  done
  if live_in_group "$pid"; then
    echo "e2e: processes of the run outlived it by 1 s; stopping them:" >&2
    ps -o pid=,ppid=,stat=,etimes=,args= -g "$pid" | sed 's/^/e2e:   /' >&2 || true
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  unset 'GROUPS_STARTED[-1]'
  if ((status != 0)); then
    echo "e2e: concurrent run $* exited $status; its output:" >&2
    tail -30 "$log" >&2
    exit 1
  fi
  WALL="$(calc "$t1 - $t0" .3f)"
}

ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 | $7 |"); }
stats() { python -c 'import statistics, sys; v = [float(x) for x in sys.argv[1:]]; print(f"median {statistics.median(v):.1f} ms (min {min(v):.1f}, max {max(v):.1f})")' "$@"; }
median() { python -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
met() { if python -c "import sys; sys.exit(0 if ($1) else 1)"; then echo yes; else echo "**no**"; fi; }

# mlflow_requests LOG OFFSET SHARDS: the MLflow server's requests logged in LOG after byte
# OFFSET (uvicorn's access log), by endpoint, per shard.
mlflow_requests() {
  python - "$@" <<'PY'
import collections, re, sys
log, offset, shards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(log, "rb") as f:
    f.seek(offset)
    text = f.read().decode("utf-8", "replace")
counts = collections.Counter()
for method, path in re.findall(r'"(GET|POST|PUT|PATCH|DELETE) (/[^ ?"]*)[^"]* HTTP/[0-9.]+"', text):
    if path.startswith("/api/2.0/mlflow-artifacts/"):
        counts[f"{method} artifacts"] += 1
    elif path.startswith("/api/2.0/mlflow/"):
        counts[f"{method} {path.removeprefix('/api/2.0/mlflow/')}"] += 1
ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
per = ", ".join(f"{k} {v / shards:.2f}" for k, v in ranked if 2 * v >= shards)
rest = ", ".join(f"{k} {v}" for k, v in ranked if 2 * v < shards)
print(f"{sum(counts.values()) / shards:.2f} requests/shard: {per}" + (f"; in all: {rest}" if rest else ""))
PY
}

start_nats

# ---------------------------------------------------------------- per-shard overhead
overhead_case() {
  local shards="$1" tracking="$2"
  local dir="$WORK/overhead-$tracking"
  mkdir -p "$dir/in" "$dir/project"
  (cd "$dir/in" && seq -f 'f%05g' "$shards" | xargs touch)
  printf 'name: noop\nentry_points:\n  main:\n    command: "true"\n' >"$dir/project/MLproject"
  cat >"$dir/dag.yaml" <<EOF
name: overhead
input: file://$dir/in
stages:
  noop:
    project: ./project
    partition: {by: object, shard_size: 1}
    parallelism: 2
    retries: 0
EOF
  echo "e2e: overhead: $shards shards of \`true\`, tracking $tracking" >&2
  local nats0 mlflow0=0 nats1 mlflow1=0 log0=0
  nats0="$(group_cpu "$NATS_GROUP")"
  if [[ "$tracking" == mlflow ]]; then
    mlflow0="$(group_cpu "$MLFLOW_GROUP")"
    log0="$(stat -c %s "$WORK/mlflow/server.log")"
  fi
  TRACKING="$tracking" concurrent_run "$dir/run.log" "$dir/dag.yaml" --workers 2 --state-dir "$dir/state"
  nats1="$(group_cpu "$NATS_GROUP")"
  [[ "$tracking" == mlflow ]] && mlflow1="$(group_cpu "$MLFLOW_GROUP")"
  local services
  services="nats-server CPU $(calc "($nats1 - $nats0) / $shards * 1000" .2f) ms/shard"
  if [[ "$tracking" == mlflow ]]; then
    services+=", MLflow server CPU $(calc "($mlflow1 - $mlflow0) / $shards * 1000" .1f) ms/shard"
    services+=", MLflow $(mlflow_requests "$WORK/mlflow/server.log" "$log0" "$shards")"
  fi
  local ours="$WALL" t0 t1
  t0="$(now)"
  seq "$shards" | xargs -P 2 -I{} bash -c true
  t1="$(now)"
  local bare per ratio label target verdict
  bare="$(calc "$t1 - $t0" .3f)"
  per="$(calc "($ours - $bare) * 2 / $shards * 1000" .2f)"
  ratio="$(calc "$ours / $bare" .2f)"
  label="per-shard overhead, $shards × \`true\`, 2 workers, tracking $tracking"
  if [[ "$tracking" == none ]]; then
    target="ratio ≤ 1.5 (the long-run goal: 1.10)"
    verdict="$(met "$ratio <= 1.5")"
  else
    target="—"
    verdict="—"
  fi
  row "$label" "$ours s ($services)" "xargs -P 2: $bare s" "$per ms/shard/lane" "$ratio" "$target" "$verdict"
}

if wants overhead; then
  overhead_case "$OVERHEAD_SHARDS" none
  start_mlflow
  overhead_case "$OVERHEAD_TRACKED_SHARDS" mlflow
fi

# ---------------------------------------------------------------- scale
if wants scale; then
  echo "e2e: scale: $SCALE_OBJECTS objects" >&2
  mkdir -p "$WORK/scale"
  "$BIN/concurrent-scale-bench" --nats-url "$NATS" --objects "$SCALE_OBJECTS" --shard-size 100 \
    --state-dir "$WORK/scale" >"$WORK/scale/out.txt" 2>"$WORK/scale/err.txt" ||
    fail "scale bench failed: $(tail -5 "$WORK/scale/err.txt")"
  scale() { sed -n "s/^$1=//p" "$WORK/scale/out.txt"; }
  objects="$(scale objects)" shards="$(scale shards)" publish="$(scale partition_publish_s)"
  partition_s="$(scale partition_s)" publish_s="$(scale publish_s)"
  rss="$(scale rss_peak_publish_mb)" rss_listing="$(scale rss_listing_mb)" load="$(scale load_state_s)"
  [[ -n "$publish" && -n "$rss" && -n "$load" ]] || fail "scale bench printed no figures: $(cat "$WORK/scale/out.txt")"
  row "scale: partition + publish $objects objects → $shards shards" "$publish s (partition $partition_s s, publish $publish_s s)" "—" "—" "—" "< 10 s" "$(met "$publish < 10")"
  row "scale: scheduler peak RSS" "$rss MB (listing alone: $rss_listing MB)" "—" "—" "—" "< 300 MB" "$(met "$rss < 300")"
  row "scale: restarted scheduler loads the run state ($shards decided shards)" "$load s" "—" "—" "—" "—" "—"
fi

# ---------------------------------------------------------------- latency
if wants latency; then
  dir="$WORK/latency"
  mkdir -p "$dir/project"
  printf 'name: stamp\nentry_points:\n  main:\n    parameters:\n      stamps: string\n    command: "bash stamp.sh {stamps}"\n' \
    >"$dir/project/MLproject"
  cat >"$dir/project/stamp.sh" <<'EOF'
printf 'start %s %s\n' "$CONCURRENT_STAGE" "$EPOCHREALTIME" >>"$1"
echo x >"$CONCURRENT_OUTPUT_DIR/out.txt"
printf 'end %s %s\n' "$CONCURRENT_STAGE" "$EPOCHREALTIME" >>"$1"
EOF
  firsts=() gaps=() walls=()
  for ((i = 1; i <= LATENCY_REPEATS; i++)); do
    stamps="$dir/stamps-$i.txt"
    cat >"$dir/dag-$i.yaml" <<EOF
name: latency
input: none
stages:
  first: {project: ./project, parameters: {stamps: "$stamps"}, retries: 0}
  second: {project: ./project, parameters: {stamps: "$stamps"}, after: [first], retries: 0}
EOF
    echo "e2e: latency: run $i of $LATENCY_REPEATS" >&2
    concurrent_run "$dir/run-$i.log" "$dir/dag-$i.yaml" --workers 2 --state-dir "$dir/state"
    read -r first gap < <(python - "$stamps" "$SUBMIT" <<'PY'
import sys
stamps = [line.split() for line in open(sys.argv[1])]
t = {(kind, stage): float(at) for kind, stage, at in stamps}
submit = float(sys.argv[2])
print(f"{(t['start', 'first'] - submit) * 1000:.1f} {(t['start', 'second'] - t['end', 'first']) * 1000:.1f}")
PY
    ) || fail "latency: no stamps in $stamps"
    firsts+=("$first") gaps+=("$gap") walls+=("$WALL")
  done
  first_median="$(median "${firsts[@]}")" gap_median="$(median "${gaps[@]}")"
  row "latency: submit → first entry point started ($LATENCY_REPEATS runs)" "$(stats "${firsts[@]}")" "—" "—" "—" "< 100 ms" "$(met "$first_median < 100")"
  row "latency: last shard of a stage done → first shard of the next started" "$(stats "${gaps[@]}")" "—" "—" "—" "< 50 ms" "$(met "$gap_median < 50")"
  row "latency: whole 2-stage run, submit → exit" "median $(median "${walls[@]}") s" "—" "—" "—" "—" "—"
fi

# ---------------------------------------------------------------- images
if wants images; then
  images="$REPO/target/bench/images-$IMAGES"
  if [[ ! -f "$images/.complete" ]]; then
    echo "e2e: images: making $IMAGES images in $images (not timed)" >&2
    rm -rf -- "$images"
    python examples/images/make_images.py --count "$IMAGES" --out "$images" >&2
    touch "$images/.complete"
  fi
  # Read once before anything is timed: the baseline goes first and would otherwise pay for
  # reading the images from the disk alone (a cold page cache doubled it once).
  find "$images" -type f -exec cat {} + >/dev/null
  echo "e2e: images: scripts/baseline.sh" >&2
  KEEP=0 bash scripts/baseline.sh "$images" 2 >"$WORK/baseline.txt" 2>&1 || fail "baseline failed: $(tail -5 "$WORK/baseline.txt")"
  bare="$(awk '$1 == "total" { print $2 }' "$WORK/baseline.txt")"
  [[ -n "$bare" ]] || fail "baseline printed no total: $(cat "$WORK/baseline.txt")"
  # The example with fixed shard sizes (50 thumbnails, 100 histograms per shard) and sized
  # adaptively (no `partition`), whichever the example itself uses.
  sed -e '/^    partition:/d' -e "s#\./projects/#$REPO/examples/images/projects/#" examples/images/dag.yaml \
    >"$WORK/images-adaptive.yaml"
  awk '{ print } /projects\/thumbnail$/ { print "    partition: {by: object, shard_size: 50}" }
    /projects\/histogram$/ { print "    partition: {by: object, shard_size: 100}" }' \
    "$WORK/images-adaptive.yaml" >"$WORK/images-fixed.yaml"
  for tracking in none mlflow; do
    [[ "$tracking" == mlflow ]] && start_mlflow
    for sizing in fixed adaptive; do
      echo "e2e: images: $IMAGES images, tracking $tracking, shards sized $sizing" >&2
      TRACKING="$tracking" concurrent_run "$WORK/images-$tracking-$sizing.log" "$WORK/images-$sizing.yaml" \
        --input "file://$images" --workers 2 --state-dir "$WORK/images-$tracking-$sizing"
      shards="$(awk '$1 == "thumbnails" || $1 == "histograms" { n += $3 } END { print n }' "$WORK/images-$tracking-$sizing.log")"
      label="images: example DAG on $IMAGES images, shards sized $sizing ($shards shards), 2 workers, tracking $tracking"
      if [[ "$sizing" == fixed ]]; then
        fixed="$WALL"
        row "$label" "$WALL s" "baseline.sh, 2 procs: $bare s" \
          "$(calc "($WALL - $bare) * 2 / $shards * 1000" .0f) ms/shard/lane" "$(calc "$WALL / $bare" .2f)" "—" "—"
      else
        row "$label" "$WALL s" "fixed sizes: $fixed s (baseline.sh: $bare s)" "$(calc "$WALL - $fixed" .2f) s" \
          "$(calc "$WALL / $fixed" .2f)" "≤ 1.10 × fixed" "$(met "$WALL <= 1.10 * $fixed")"
      fi
    done
  done
fi

# ---------------------------------------------------------------- service
if wants service; then
  dir="$WORK/service"
  mkdir -p "$dir/project" "$dir/big" "$dir/small"
  printf 'name: stamp\nentry_points:\n  main:\n    parameters:\n      stamps: string\n    command: "bash stamp.sh {stamps}"\n  noop:\n    command: "true"\n  nap:\n    command: "sleep 20"\n' \
    >"$dir/project/MLproject"
  printf 'printf "start %%s\\n" "$EPOCHREALTIME" >>"$1"\n' >"$dir/project/stamp.sh"
  (cd "$dir/big" && seq -f 'f%05g' "$SERVICE_BIG" | xargs touch)
  (cd "$dir/small" && seq -f 'f%05g' 20 | xargs touch)
  port="$(free_port)"
  API="http://127.0.0.1:$port/api/v1"
  start_group "$dir/serve.log" env NATS_URL="$NATS" "$CONCURRENT" serve --listen "127.0.0.1:$port" --tracking none \
    --max-workers 2 --state-dir "$dir/state"
  SERVE_PID="$LAST_PID"
  wait_for "http://127.0.0.1:$port/readyz" 60 || fail "concurrent serve did not start; $(tail -5 "$dir/serve.log")"
  # submit DAG_TEXT: prints the run id and the call's time in seconds.
  submit() {
    local body answer
    body="$(python -c 'import json, sys; print(json.dumps({"dag": sys.argv[1]}))' "$1")"
    answer="$(curl -sf -w '\n%{time_total}' -H 'Content-Type: application/json' -d "$body" "$API/runs")" ||
      fail "service: submit refused: $answer"
    printf '%s %s\n' "$(head -1 <<<"$answer" | python -c 'import json, sys; print(json.load(sys.stdin)["run_id"])')" \
      "$(tail -1 <<<"$answer")"
  }
  submit_id() { submit "$1" | cut -d' ' -f1; }
  # wait_ended RUN...: until every run has ended; prints nothing, fails after 10 minutes.
  wait_ended() {
    python - "$API" "$@" <<'PY'
import json, sys, time, urllib.request
api, runs, deadline = sys.argv[1], set(sys.argv[2:]), time.time() + 600
while runs and time.time() < deadline:
    for run in list(runs):
        view = json.load(urllib.request.urlopen(f"{api}/runs/{run}"))
        if view["status"] != "running":
            if view["status"] != "succeeded":
                sys.exit(f"run {run} ended {view['status']}")
            runs.discard(run)
    time.sleep(0.05)
sys.exit(f"runs still running: {sorted(runs)}" if runs else 0)
PY
  }
  noop_dag() { printf 'name: %s\ninput: file://%s\nstages:\n  noop: {project: %s, entry_point: noop, partition: {by: object, shard_size: 1}, parallelism: 2, retries: 0}\n' "$1" "$2" "$dir/project"; }

  echo "e2e: service: submit -> first entry point" >&2
  firsts=()
  for ((i = 1; i <= LATENCY_REPEATS; i++)); do
    stamps="$dir/stamps-$i.txt"
    t0="$(now)"
    run="$(submit_id "$(printf 'name: latency\ninput: none\nstages:\n  first: {project: %s, parameters: {stamps: "%s"}, retries: 0}\n' "$dir/project" "$stamps")")"
    wait_ended "$run" || fail "service: latency run $run"
    firsts+=("$(python -c 'import sys; print((float(open(sys.argv[1]).read().split()[1]) - float(sys.argv[2])) * 1000)' "$stamps" "$t0")")
  done
  first_median="$(median "${firsts[@]}")"
  row "service: submit (curl) → first entry point started ($LATENCY_REPEATS runs)" "$(stats "${firsts[@]}")" "—" "—" "—" "< 100 ms" "$(met "$first_median < 100")"

  echo "e2e: service: a 20-shard run alone, then beside a $SERVICE_BIG-shard run" >&2
  t0="$(now)"
  run="$(submit_id "$(noop_dag small-alone "$dir/small")")"
  wait_ended "$run" || fail "service: small run alone"
  alone="$(calc "$(now) - $t0" .3f)"
  big="$(submit_id "$(noop_dag big "$dir/big")")"
  sleep 1
  t0="$(now)"
  run="$(submit_id "$(noop_dag small-beside "$dir/small")")"
  wait_ended "$run" || fail "service: small run beside the big one"
  beside="$(calc "$(now) - $t0" .3f)"
  wait_ended "$big" || fail "service: big run"
  row "service: 20-shard run submitted 1 s after a $SERVICE_BIG-shard run (fair share)" "$beside s" "alone: $alone s" "—" "$(calc "$beside / $alone" .2f)" "ratio ≤ 2" "$(met "$beside / $alone <= 2")"

  echo "e2e: service: $SERVICE_RUNS runs from $SERVICE_CLIENTS clients at once" >&2
  per_client=$((SERVICE_RUNS / SERVICE_CLIENTS))
  printf 'name: many\ninput: none\nstages:\n  noop: {project: %s, entry_point: noop, retries: 0}\n' "$dir/project" >"$dir/one.yaml"
  pids=()
  for ((c = 1; c <= SERVICE_CLIENTS; c++)); do
    (
      for ((k = 1; k <= per_client; k++)); do
        submit "$(cat "$dir/one.yaml")" >>"$dir/client-$c.txt"
      done
    ) &
    pids+=("$!")
  done
  for pid in "${pids[@]}"; do wait "$pid" || fail "service: a client failed"; done
  mapfile -t many < <(cat "$dir"/client-*.txt | cut -d' ' -f1)
  ((${#many[@]} == SERVICE_RUNS)) || fail "service: ${#many[@]} of $SERVICE_RUNS runs submitted"
  wait_ended "${many[@]}" || fail "service: the $SERVICE_RUNS runs"
  p99="$(cat "$dir"/client-*.txt | cut -d' ' -f2 | python -c 'import sys; v = sorted(float(x) * 1000 for x in sys.stdin); print(f"{v[min(len(v) - 1, int(len(v) * 0.99))]:.1f}")')"
  row "service: $SERVICE_RUNS runs submitted at once by $SERVICE_CLIENTS clients, all finished" "p99 SubmitRun $p99 ms" "—" "—" "—" "p99 < 200 ms" "$(met "$p99 < 200")"

  printf 'name: active\ninput: none\nstages:\n  nap: {project: %s, entry_point: nap, retries: 0}\n' "$dir/project" >"$dir/nap.yaml"
  for ((k = 1; k <= SERVICE_ACTIVE; k++)); do submit "$(cat "$dir/nap.yaml")" >/dev/null; done
  rss="$(awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$SERVE_PID/status")"
  row "service: RSS with $((SERVICE_RUNS + LATENCY_REPEATS + 3)) runs finished and $SERVICE_ACTIVE active" "$rss MB" "—" "—" "—" "< 200 MB" "$(met "$rss < 200")"
  kill -TERM -- "-$SERVE_PID" 2>/dev/null || true
fi

# ---------------------------------------------------------------- python_env
if wants pyenv; then
  dir="$WORK/pyenv"
  mkdir -p "$dir/in" "$dir/project"
  (cd "$dir/in" && seq -f 'f%02g' 20 | xargs touch)
  printf 'name: pyenv\npython_env: python_env.yaml\nentry_points:\n  main:\n    command: "python noop.py"\n' \
    >"$dir/project/MLproject"
  printf 'python: "%s"\nbuild_dependencies: []\ndependencies: []\n' \
    "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" >"$dir/project/python_env.yaml"
  echo "pass" >"$dir/project/noop.py"
  cat >"$dir/dag.yaml" <<EOF
name: pyenv
input: file://$dir/in
stages:
  noop:
    project: ./project
    partition: {by: object, shard_size: 1}
    parallelism: 2
    retries: 0
EOF
  export CONCURRENT_ENV_CACHE="$dir/envs"
  echo "e2e: pyenv: cold run (builds the environment)" >&2
  concurrent_run "$dir/cold.log" "$dir/dag.yaml" --workers 2 --state-dir "$dir/state"
  cold="$WALL"
  built="$(find "$dir/envs" -maxdepth 1 -name 'uv-*' -type d | wc -l)"
  ((built == 1)) || fail "pyenv: $built environments in the cache after the cold run; expected 1"
  warm=() plain=()
  for ((i = 1; i <= PYENV_REPEATS; i++)); do
    echo "e2e: pyenv: warm and local runs, $i of $PYENV_REPEATS" >&2
    concurrent_run "$dir/warm-$i.log" "$dir/dag.yaml" --workers 2 --state-dir "$dir/state"
    warm+=("$WALL")
    concurrent_run "$dir/local-$i.log" "$dir/dag.yaml" --workers 2 --state-dir "$dir/state" --env-manager local
    plain+=("$WALL")
  done
  unset CONCURRENT_ENV_CACHE
  built="$(find "$dir/envs" -maxdepth 1 -name 'uv-*' -type d | wc -l)"
  ((built == 1)) || fail "pyenv: $built environments in the cache after the warm runs; expected 1"
  warm_median="$(median "${warm[@]}")" plain_median="$(median "${plain[@]}")"
  added="$(calc "($warm_median - $plain_median) * 2 / 20 * 1000" .1f)"
  row "python_env: 20 shards, 2 workers, cold (one build)" "$cold s" "—" "—" "—" "built once" "$(met "$built == 1")"
  row "python_env: 20 shards, warm environment vs \`--env-manager local\` (median of $PYENV_REPEATS)" \
    "warm $warm_median s" "local $plain_median s" "$added ms/shard/lane" "$(calc "$warm_median / $plain_median" .2f)" \
    "< 50 ms/shard" "$(met "$added < 50")"
fi

# ---------------------------------------------------------------- S3 listing
if wants s3list; then
  dir="$WORK/s3list"
  mkdir -p "$dir"
  port="$(free_port)"
  start_group "$dir/moto.log" moto_server -H 127.0.0.1 -p "$port"
  MOTO_GROUP="$LAST_PID"
  S3="http://127.0.0.1:$port"
  until curl -s -o /dev/null "$S3"; do
    kill -0 "$MOTO_GROUP" 2>/dev/null || fail "moto_server did not start; $(tail -5 "$dir/moto.log")"
    sleep 0.2
  done
  s3_env=(AWS_ENDPOINT_URL="$S3" AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1
    AWS_REGION=us-east-1)
  echo "e2e: s3list: putting $S3_KEYS keys (not timed)" >&2
  t0="$(now)"
  env "${s3_env[@]}" python - "$S3_KEYS" <<'PY' || fail "s3list: putting the keys failed"
import sys
from concurrent.futures import ThreadPoolExecutor
import boto3, botocore.config
count = int(sys.argv[1])
s3 = boto3.client("s3", config=botocore.config.Config(max_pool_connections=32))
s3.create_bucket(Bucket="bench")
def put(i):
    s3.put_object(Bucket="bench", Key=f"raw/set-{i % 1000:03}/img-{i:07}.jpg", Body=b"x")
with ThreadPoolExecutor(32) as pool:
    for _ in pool.map(put, range(count), chunksize=256):
        pass
PY
  setup="$(calc "$(now) - $t0" .0f)"
  echo "e2e: s3list: list, partition and publish $S3_KEYS keys ($setup s to put them)" >&2
  env "${s3_env[@]}" "$BIN/concurrent-s3-listing-bench" --nats-url "$NATS" --input s3://bench/raw/ \
    --objects "$S3_KEYS" --shard-size 100 >"$dir/out.txt" 2>"$dir/err.txt" ||
    fail "s3list bench failed: $(tail -5 "$dir/err.txt")"
  s3() { sed -n "s/^$1=//p" "$dir/out.txt"; }
  total="$(s3 list_partition_publish_s)" list_s="$(s3 list_s)" publish_s="$(s3 publish_s)" shards="$(s3 shards)"
  [[ -n "$total" ]] || fail "s3list bench printed no figures: $(cat "$dir/out.txt")"
  row "s3: list $S3_KEYS keys (moto), partition, publish $shards shards" \
    "$total s (listing $list_s s, publish $publish_s s; set-up put: $setup s)" "—" "—" "—" "< 10 s" "$(met "$total < 10")"
  kill -TERM -- "-$MOTO_GROUP" 2>/dev/null || true
fi

# ---------------------------------------------------------------- stragglers
# straggler_dag DIR SPECULATE: the stage, with `speculate: SPECULATE`.
straggler_dag() {
  local dir="$1" speculate="$2"
  cat >"$dir/dag-$speculate.yaml" <<EOF
name: stragglers
input: file://$dir/in
stages:
  sleep:
    project: ./project
    partition: {by: object, shard_size: 1}
    parallelism: 2
    speculate: $speculate
EOF
}

if wants stragglers; then
  dir="$WORK/stragglers"
  mkdir -p "$dir/in" "$dir/project"
  (cd "$dir/in" && seq -f 'f%05g' "$STRAGGLER_SHARDS" | xargs touch)
  last=$((STRAGGLER_SHARDS - 1))
  printf 'name: straggle\nentry_points:\n  main:\n    command: "bash straggle.sh"\n' >"$dir/project/MLproject"
  cat >"$dir/project/straggle.sh" <<EOF
if [ "\$CONCURRENT_SHARD" = $last ] && [ "\$CONCURRENT_ATTEMPT" = 1 ]; then
  sleep $(calc "$STRAGGLER_SLEEP * 10" .2f)
else
  sleep $STRAGGLER_SLEEP
fi
EOF
  straggler_dag "$dir" 3
  straggler_dag "$dir" false
  with=() without=()
  for i in $(seq "$STRAGGLER_REPEATS"); do
    echo "e2e: stragglers: $STRAGGLER_SHARDS shards of sleep $STRAGGLER_SLEEP s, pair $i" >&2
    concurrent_run "$dir/run-on-$i.log" "$dir/dag-3.yaml" --workers 2 --state-dir "$dir/state-on-$i"
    with+=("$WALL")
    concurrent_run "$dir/run-off-$i.log" "$dir/dag-false.yaml" --workers 2 --state-dir "$dir/state-off-$i"
    without+=("$WALL")
  done
  on="$(calc "$(median "${with[@]}")" .2f)" off="$(calc "$(median "${without[@]}")" .2f)"
  row "stragglers: $STRAGGLER_SHARDS shards of sleep $STRAGGLER_SLEEP s, the last one's first attempt 10×, 2 workers" \
    "speculation: $on s (${with[*]})" "\`speculate: false\`: $off s (${without[*]})" \
    "$(calc "$on - $off" .2f) s" "$(calc "$on / $off" .2f)" "speculation faster" "$(met "$on < $off")"
fi

# ---------------------------------------------------------------- sizing
if wants sizing; then
  dir="$WORK/sizing"
  mkdir -p "$dir/project"
  printf 'name: synthetic\nentry_points:\n  main:\n    command: "bash cost.sh"\n' >"$dir/project/MLproject"
  # One sleep for the whole shard: its fixed cost, plus each object's (`.slow` ones cost more).
  cat >"$dir/project/cost.sh" <<EOF
slow=\$(find "\$CONCURRENT_INPUT_DIR" -type f -name '*.slow' | wc -l)
all=\$(find "\$CONCURRENT_INPUT_DIR" -type f | wc -l)
sleep "\$(python3 -c "print($SIZING_FIXED + (\$all - \$slow) * $SIZING_OBJECT + \$slow * $SIZING_SLOW)")"
EOF
  python - "$dir" "$SIZING_OBJECTS" <<'PY'
import os, random, sys
root, count = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
for shape in ("uniform", "skewed"):
    os.makedirs(f"{root}/{shape}", exist_ok=True)
    for i in range(count):
        slow = shape == "skewed" and rng.random() < 0.05
        open(f"{root}/{shape}/f{i:05}.{'slow' if slow else 'obj'}", "w").close()
PY
  for shape in uniform skewed; do
    for sizing in adaptive default best; do
      case "$sizing" in
        adaptive) partition="" ;;
        default) partition="    partition: {by: object, shards: 8}" ;;
        best) partition="    partition: {by: object, shard_size: $SIZING_BEST}" ;;
      esac
      printf 'name: sizing\ninput: file://%s/%s\nstages:\n  synthetic:\n    project: ./project\n    parallelism: 2\n%s\n' \
        "$dir" "$shape" "$partition" >"$dir/dag-$shape-$sizing.yaml"
      echo "e2e: sizing: $SIZING_OBJECTS $shape objects, $sizing" >&2
      concurrent_run "$dir/run-$shape-$sizing.log" "$dir/dag-$shape-$sizing.yaml" --workers 2 --state-dir "$dir/state-$shape-$sizing"
      printf -v "wall_$sizing" '%s' "$WALL"
      printf -v "shards_$sizing" '%s' "$(awk '$1 == "synthetic" { print $3 }' "$dir/run-$shape-$sizing.log")"
    done
    row "sizing: $SIZING_OBJECTS $shape objects, $SIZING_FIXED s a shard + $SIZING_OBJECT s an object, 2 workers" \
      "adaptive: $wall_adaptive s ($shards_adaptive shards)" \
      "\`shard_size: $SIZING_BEST\`: $wall_best s; default \`shards: 8\`: $wall_default s" \
      "$(calc "$wall_adaptive - $wall_best" .2f) s" "$(calc "$wall_adaptive / $wall_best" .3f)" \
      "≤ 1.10 × best fixed, < default" "$(met "$wall_adaptive <= 1.10 * $wall_best and $wall_adaptive < $wall_default")"
  done
fi

# ---------------------------------------------------------------- report
mkdir -p "$(dirname "$OUT")"
{
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ), $( ((QUICK)) && echo "--quick" || echo "full"), $PROFILE build," \
    "$(nproc) CPUs; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| case | Concurrent | baseline | overhead | ratio | target | met |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
} >"$OUT"
cat "$OUT"
echo "e2e: table written to $OUT" >&2
