#!/usr/bin/env bash
# Benchmark: export the census, every patient's vital signs and diagnosis history for 10,000
# simulated patients to Parquet: `phigate kipu export` (release) vs kipu-python 0.0.2
# (bench/flatten/kipu_export.py: default auto-flattening, DataFrame.to_parquet), against the
# same `phigate sim` process on loopback, in one run. Prints wall time and peak RSS (GNU time -v).
#
# Usage: bench/export.sh     (env: PATIENTS=10000 BENCH_CONCURRENCY=8 BENCH_PER=100 PROFILE=release
#                                  PHIGATE_RUNS=3)
# Fairness: the simulator caches the serialized records it generates, so whichever client runs
# first against a fresh simulator pays for generating every record. One unmeasured phigate
# export runs first to fill that cache; both measured clients then see the same warm simulator.
# phigate's export takes seconds, so it runs PHIGATE_RUNS times and the median is reported;
# kipu-python's takes about a minute and runs once.
# PROFILE=dev runs the dev-profile binary (dependencies at opt-level 2, phigate's own crates
# unoptimised): slower for phigate and the simulator, so conservative. SKIP_BUILD=1 uses the
# already built binary.
# Needs: cargo, python3 with venv, GNU time at /usr/bin/time, network access to PyPI once.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PATIENTS="${PATIENTS:-10000}"
export BENCH_CONCURRENCY="${BENCH_CONCURRENCY:-8}"
export BENCH_PER="${BENCH_PER:-100}"
PROFILE="${PROFILE:-release}"
VENV="$ROOT/bench/.venv-flatten"
WORK="$(mktemp -d)"
SIM_PID=""
cleanup() {
    if [[ -n "$SIM_PID" ]]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

[[ -x /usr/bin/time ]] || { echo "GNU time is required at /usr/bin/time (apt-get install time)" >&2; exit 2; }

echo "== building phigate ($PROFILE profile)" >&2
if [[ -n "${SKIP_BUILD:-}" ]]; then
    PHIGATE="$ROOT/target/$([[ "$PROFILE" == release ]] && echo release || echo debug)/phigate"
elif [[ "$PROFILE" == release ]]; then
    cargo build --release -p phigate --bin phigate >&2
    PHIGATE="$ROOT/target/release/phigate"
else
    cargo build -p phigate --bin phigate >&2
    PHIGATE="$ROOT/target/debug/phigate"
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "== creating $VENV with kipu-python 0.0.2 and pyarrow" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kipu-python==0.0.2" pyarrow >&2
fi
"$VENV/bin/python" -c 'import kipu; assert kipu.__version__ == "0.0.2", kipu.__version__'

echo "== starting the simulator with $PATIENTS patients" >&2
PHIGATE_LOG=warn "$PHIGATE" sim --patients "$PATIENTS" --addr 127.0.0.1:0 >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 1 100); do
    grep -q '^export KIPU_BASE_URL=' "$WORK/sim.out" 2>/dev/null && break
    kill -0 "$SIM_PID" 2>/dev/null || { cat "$WORK/sim.err" >&2; exit 1; }
    sleep 0.1
done
# shellcheck disable=SC1090
source <(grep '^export ' "$WORK/sim.out")

measure() { # name, command... -> "seconds peak_kib"
    local name="$1"; shift
    /usr/bin/time -v "$@" >"$WORK/$name.out" 2>"$WORK/$name.time" || { tail -20 "$WORK/$name.time" >&2; exit 1; }
    local wall peak
    wall=$(grep 'Elapsed (wall clock)' "$WORK/$name.time" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
    peak=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/$name.time")
    echo "$wall $peak"
}

PHIGATE_EXPORT=("$PHIGATE" kipu export patients_census patient_vital_signs patient_diagnosis_history
    --format parquet --quiet --concurrency "$BENCH_CONCURRENCY" --per "$BENCH_PER")
echo "== warm-up: phigate kipu export, unmeasured (fills the simulator's record cache)" >&2
"${PHIGATE_EXPORT[@]}" --out "$WORK/warmup" >/dev/null
rm -rf "$WORK/warmup"
PHIGATE_RUNS="${PHIGATE_RUNS:-3}"
: >"$WORK/phigate.runs"
for run in $(seq 1 "$PHIGATE_RUNS"); do
    echo "== phigate kipu export, run $run of $PHIGATE_RUNS (concurrency $BENCH_CONCURRENCY, per $BENCH_PER)" >&2
    rm -rf "$WORK/phigate"
    measure phigate "${PHIGATE_EXPORT[@]}" --out "$WORK/phigate" >>"$WORK/phigate.runs"
done
echo "phigate runs (seconds peak_kib): $(tr '\n' ';' <"$WORK/phigate.runs")" >&2
# The median run by wall time (the middle line once sorted; the upper middle for an even count).
read -r P_SEC P_RSS < <(sort -n "$WORK/phigate.runs" | sed -n "$(( PHIGATE_RUNS / 2 + 1 ))p")
echo "== kipu-python 0.0.2 (concurrency $BENCH_CONCURRENCY, per $BENCH_PER)" >&2
mkdir -p "$WORK/kipu"
read -r K_SEC K_RSS < <(measure kipu "$VENV/bin/python" bench/flatten/kipu_export.py "$WORK/kipu")

python3 - "$WORK/phigate.out" "$WORK/kipu.out" "$P_SEC" "$P_RSS" "$K_SEC" "$K_RSS" "$PATIENTS" <<'PY'
import json, sys
p = json.load(open(sys.argv[1])); k = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
p_sec, p_rss, k_sec, k_rss, patients = float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
print(f"patients: {patients}")
print("phigate records per endpoint:", {e["endpoint"]: e["records"] for e in p["endpoints"]}, "files:", p["files"], "bytes:", p["bytes"])
print("kipu-python rows per endpoint (wide, exploded):", k["rows"])
print(f"{'tool':<14}{'seconds':>10}{'peak RSS MiB':>15}")
print(f"{'phigate':<14}{p_sec:>10.2f}{p_rss/1024:>15.1f}")
print(f"{'kipu-python':<14}{k_sec:>10.2f}{k_rss/1024:>15.1f}")
print(f"speed ratio (kipu-python time / phigate time): {k_sec / p_sec:.1f}x  (target >= 20x)")
print(f"peak memory ratio (phigate / kipu-python): {p_rss / k_rss:.3f}")
PY
