#!/usr/bin/env bash
# Benchmark: `phigate sync` of N simulated patients into a SQLite store (release build):
#   1. first run (everything full, every record new),
#   2. rerun with nothing changed (incremental where the API allows, everything compared),
#   3. `--full` rerun with nothing changed (every page read and compared, sweep included).
# Prints wall time, records fetched and written, records/s and peak RSS (GNU time -v) per run.
#
# Usage: bench/sync.sh        (env: PATIENTS=10000 BENCH_PER=1000 BENCH_CONCURRENCY=8)
# Needs: cargo, python3, GNU time at /usr/bin/time.
# Figures go to stdout; record them in docs/benchmarks.md ("Sync").
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PATIENTS="${PATIENTS:-10000}"
PER="${BENCH_PER:-1000}"
CONCURRENCY="${BENCH_CONCURRENCY:-8}"
BIN="${PHIGATE_BIN:-$ROOT/target/release/phigate}"
WORK="$(mktemp -d)"
SIM_PID=""
cleanup() {
    if [[ -n "$SIM_PID" ]]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

[[ -x /usr/bin/time ]] || { echo "GNU time is required at /usr/bin/time (apt-get install time)" >&2; exit 2; }
if [[ -z "${PHIGATE_BIN:-}" ]]; then
    echo "== building phigate (release)" >&2
    cargo build --release -p phigate --bin phigate >&2
fi

echo "== starting the simulator with $PATIENTS patients" >&2
PHIGATE_LOG=warn "$BIN" sim --patients "$PATIENTS" --addr 127.0.0.1:0 >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 1 100); do
    grep -q '^export KIPU_BASE_URL=' "$WORK/sim.out" 2>/dev/null && break
    kill -0 "$SIM_PID" 2>/dev/null || { cat "$WORK/sim.err" >&2; exit 1; }
    sleep 0.1
done
grep -q '^export KIPU_BASE_URL=' "$WORK/sim.out" || { echo "simulator did not start" >&2; exit 1; }
# shellcheck disable=SC1090
source <(grep '^export KIPU_' "$WORK/sim.out")

export PHIGATE_DATA_DIR="$WORK/data"
PHIGATE_KEK="$(head -c 32 /dev/urandom | base64)"
export PHIGATE_KEK
export PHIGATE_LOG=warn
"$BIN" keys init >/dev/null

run() { # label, extra args...
    local label="$1"; shift
    /usr/bin/time -v -o "$WORK/time" "$BIN" sync --once --json --per "$PER" --concurrency "$CONCURRENCY" "$@" >"$WORK/report.json"
    python3 - "$label" "$WORK/report.json" "$WORK/time" <<'PY'
import json, re, sys
label, report, timing = sys.argv[1:4]
r = json.load(open(report))
t = open(timing).read()
wall = t.split("Elapsed (wall clock) time (h:mm:ss or m:ss): ")[1].split("\n")[0]
parts = [float(p) for p in wall.split(":")]
secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
fetched = sum(x["fetched"] for x in r["resources"])
written = sum(x["new"] + x["updated"] for x in r["resources"])
modes = ",".join(sorted({x["mode"] for x in r["resources"]}))
print(f"{label:<28} {secs:8.2f} s  fetched {fetched:>8}  written {written:>8}  "
      f"{fetched / secs:10.0f} records/s  peak RSS {rss / 1024:7.1f} MiB  modes {modes}")
PY
}

echo "sync of $PATIENTS simulated patients (per=$PER, concurrency=$CONCURRENCY, SQLite, $(nproc) cores)"
run "first run (all new)"
run "rerun, nothing changed"
run "rerun --full, nothing changed" --full
ls -l "$WORK/data/store.db" | awk '{printf "store.db: %.1f MiB\n", $5 / 1048576}'
