#!/usr/bin/env bash
# The chaos run: the image example on COUNT images (default 1000) while workers are killed
# (SIGKILL) every few seconds, nats-server is killed and restarted once, and the scheduler is
# killed once and resumed. At the end it prints shards, attempts, kills, duplicates detected,
# second successful attempts kept beside the first (`<shard>.a<attempt>-<worker>/`), outputs
# missing and outputs duplicated in the shards' directories; the last two must be 0 (exit 1
# otherwise).
#
#   scripts/chaos.sh [COUNT]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
count="${1:-1000}"

bash scripts/setup.sh >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh
cargo build --release --bins -q
bin="$REPO/target/release"

work="$(mktemp -d /tmp/concurrent-chaos-XXXXXX)"
state="$work/state"
echo "chaos: working in $work"
python examples/images/make_images.py --count "$count" --out "$work/raw" >/dev/null
projects="$REPO/examples/images/projects"
cat >"$work/dag.yaml" <<DAG
name: chaos
input: file:./raw
stages:
  thumbnails:
    project: $projects/thumbnail
    partition: {by: object, shard_size: 10}
    parallelism: 4
    parameters: {size: 64}
  histograms:
    project: $projects/histogram
    after: [thumbnails]
    partition: {by: object, shard_size: 10}
    parallelism: 4
DAG

# Our own nats-server, so it can be killed and restarted on the same port and store.
mkdir -p "$work/nats/ports"
start_nats() {
  nats-server -a 127.0.0.1 -p "${1:--1}" -js -sd "$work/nats/js" --ports_file_dir "$work/nats/ports" \
    >>"$work/nats/log" 2>&1 &
  nats_pid=$!
}
start_nats -1
for _ in $(seq 100); do ls "$work"/nats/ports/*.ports >/dev/null 2>&1 && break; sleep 0.05; done
nats_url="$(python -c 'import json,glob,sys; print(json.load(open(glob.glob(sys.argv[1])[0]))["nats"][0])' "$work/nats/ports/*.ports")"
nats_port="${nats_url##*:}"
export NATS_URL="$nats_url"

cleanup() {
  pkill -KILL -f -- "--work-dir $state/work" 2>/dev/null || true
  [[ -n "${scheduler:-}" ]] && kill -KILL "$scheduler" 2>/dev/null || true
  kill -KILL "$nats_pid" 2>/dev/null || true
}
trap cleanup EXIT

cd "$work"
"$bin/concurrent" run dag.yaml --tracking none --workers 4 --state-dir "$state" >run.out 2>run.err &
scheduler=$!
run_id=""
for _ in $(seq 200); do
  run_id="$(sed -n 's/^run \([0-9a-z]*\):.*/\1/p' run.err | head -n 1)"
  [[ -n "$run_id" ]] && break
  sleep 0.1
done
[[ -n "$run_id" ]] || { echo "chaos: the run did not start"; cat run.err; exit 1; }
echo "chaos: run $run_id"

kills=0
start=$SECONDS
nats_restarted=0
scheduler_restarted=0
out=run.out
while kill -0 "$scheduler" 2>/dev/null; do
  sleep 2
  mapfile -t workers < <(pgrep -f -- "--run $run_id " || true)
  if ((${#workers[@]} > 0)); then
    victim="${workers[RANDOM % ${#workers[@]}]}"
    kill -KILL "$victim" 2>/dev/null && kills=$((kills + 1)) && echo "chaos: killed worker $victim"
  fi
  if ((nats_restarted == 0 && SECONDS - start >= 6)); then
    echo "chaos: killing nats-server"
    kill -KILL "$nats_pid"; wait "$nats_pid" 2>/dev/null || true
    sleep 2
    start_nats "$nats_port"
    nats_restarted=1
    echo "chaos: nats-server restarted"
  fi
  if ((scheduler_restarted == 0 && SECONDS - start >= 12)) && kill -0 "$scheduler" 2>/dev/null; then
    echo "chaos: killing the scheduler"
    kill -KILL "$scheduler"; wait "$scheduler" 2>/dev/null || true
    sleep 2
    "$bin/concurrent" resume "$run_id" --workers 4 --state-dir "$state" >resume.out 2>resume.err &
    scheduler=$!
    out=resume.out
    scheduler_restarted=1
    echo "chaos: scheduler resumed"
  fi
done
status=0
wait "$scheduler" || status=$?
echo "chaos: the run exited with $status"
cat "$out"

python - "$work/raw" "$state/outputs/$run_id" "$out" "$kills" <<'PY'
import collections, os, sys
raw, outputs, summary, kills = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
inputs = sorted(os.path.relpath(os.path.join(d, f), raw) for d, _, fs in os.walk(raw) for f in fs)
beside = 0
def produced(stage):
    """The outputs kept in each shard's directory, `<stage>/<shard>/`. A second successful
    attempt of a shard (a speculative copy, or an attempt whose result was lost) keeps its
    outputs beside the first's, in `<shard>.a<attempt>-<worker>/`: counted apart."""
    global beside
    root = os.path.join(outputs, stage)
    files = []
    for shard in os.listdir(root) if os.path.isdir(root) else []:
        if not shard.isdigit():
            beside += 1
            continue
        base = os.path.join(root, shard)
        files += [os.path.relpath(os.path.join(d, f), base) for d, _, fs in os.walk(base) for f in fs]
    return files
rows = {line.split()[0]: line.split() for line in open(summary) if line.split() and line.split()[0] in ("thumbnails", "histograms")}
missing = duplicated = 0
for stage, expected in (("thumbnails", inputs), ("histograms", [p + ".json" for p in inputs])):
    got = collections.Counter(produced(stage))
    missing += sum(1 for p in expected if got[p] == 0)
    duplicated += sum(n - 1 for n in got.values() if n > 1)
shards = sum(int(r[2]) for r in rows.values())
attempts = sum(int(r[5]) for r in rows.values())
duplicates = sum(int(r[6]) for r in rows.values())
print()
print("| shards | attempts | workers killed | duplicates detected | second attempts kept beside | outputs missing | outputs duplicated |")
print("|---|---|---|---|---|---|---|")
print(f"| {shards} | {attempts} | {kills} | {duplicates} | {beside} | {missing} | {duplicated} |")
sys.exit(0 if missing == 0 and duplicated == 0 else 1)
PY
