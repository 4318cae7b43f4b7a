#!/usr/bin/env bash
# Benchmark: census plus every patient's vital signs for 5,000 simulated patients, pulled by
# phigate's kipu client and by kipu-python 0.0.2 from the same simulator on loopback, in one
# run. Prints records/s and peak RSS (GNU time -v) for each, and the ratios.
#
# Usage: bench/kipu_fetch.sh
#   env: PATIENTS=5000 BENCH_CONCURRENCY=8 BENCH_PER=100 BENCH_RUNS=3 BENCH_PIN=1
#        BENCH_SKIP_BUILD=1 uses the release binaries already in target/
# Needs: cargo, python3 with venv, GNU time at /usr/bin/time, network access to PyPI once,
#        taskset (util-linux) when BENCH_PIN=1 and the machine has at least 2 CPUs.
#
# Same work on both sides: same simulator process, same page size, same number of requests in
# flight (kipu-python has no limit of its own; the Python driver uses an asyncio.Semaphore).
# kipu-python is used with flatten=False (raw JSON, no pandas), and pages by hand since it
# cannot. Its base_url is the simulator's http://127.0.0.1 URL: kipu-python accepts plain http
# to any host; phigate accepts it only for loopback.
#
# Fairness:
# * One unmeasured warm-up pass runs first, so the simulator (which caches the serialized
#   records it generates) is in the same state for every measured run of either client.
# * The clients run alternately BENCH_RUNS times each; the median run of each is reported.
# * With BENCH_PIN=1 (default on machines with 2+ CPUs) the simulator is pinned to CPU 0 and
#   each client, in turn, to CPU 1, so neither client competes with the simulator for a core
#   and both get the same single core (kipu-python is single-threaded anyway; phigate's
#   runtime sizes itself to the one CPU it is given). BENCH_PIN=0 lets the OS schedule all.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PATIENTS="${PATIENTS:-5000}"
export BENCH_CONCURRENCY="${BENCH_CONCURRENCY:-8}"
export BENCH_PER="${BENCH_PER:-100}"
RUNS="${BENCH_RUNS:-3}"
PIN="${BENCH_PIN:-1}"
[[ "$(nproc)" -ge 2 ]] || PIN=0
SIM_CPU=(); CLIENT_CPU=()
if [[ "$PIN" == 1 ]]; then
    command -v taskset >/dev/null || { echo "BENCH_PIN=1 needs taskset (util-linux)" >&2; exit 2; }
    SIM_CPU=(taskset -c 0); CLIENT_CPU=(taskset -c 1)
fi
VENV="$ROOT/bench/.venv-kipu"
WORK="$(mktemp -d)"
SIM_PID=""
cleanup() {
    if [[ -n "$SIM_PID" ]]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

[[ -x /usr/bin/time ]] || { echo "GNU time is required at /usr/bin/time (apt-get install time)" >&2; exit 2; }

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    echo "== building phigate and the benchmark client (release)" >&2
    cargo build --release -p phigate --bin phigate >&2
    cargo build --release -p kipu --example fetch_census_vitals >&2
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "== creating $VENV with kipu-python 0.0.2" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kipu-python==0.0.2" >&2
fi
"$VENV/bin/python" -c 'import kipu; assert kipu.__version__ == "0.0.2", kipu.__version__'

echo "== starting the simulator with $PATIENTS patients" >&2
PHIGATE_LOG=warn "${SIM_CPU[@]}" ./target/release/phigate sim --patients "$PATIENTS" --addr 127.0.0.1:0 >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 1 100); do
    grep -q '^export KIPU_BASE_URL=' "$WORK/sim.out" 2>/dev/null && break
    kill -0 "$SIM_PID" 2>/dev/null || { cat "$WORK/sim.err" >&2; exit 1; }
    sleep 0.1
done
grep -q '^export KIPU_BASE_URL=' "$WORK/sim.out" || { echo "simulator did not start" >&2; exit 1; }
# shellcheck disable=SC1090
source <(grep '^export KIPU_' "$WORK/sim.out")

sim_cpu() { # CPU seconds (user + system) the simulator has used so far
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$SIM_PID/stat"
}

run() { # name, command...: prints "records seconds rss_kib client_cpu_s sim_cpu_s"
    local name="$1"; shift
    local before after
    before=$(sim_cpu)
    /usr/bin/time -v -o "$WORK/$name.time" "${CLIENT_CPU[@]}" "$@" >"$WORK/$name.json"
    after=$(sim_cpu)
    local records seconds rss cpu
    records=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["records"])' "$WORK/$name.json")
    seconds=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$WORK/$name.json")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/$name.time")
    cpu=$(awk -F': ' '/User time|System time/ {t += $2} END {printf "%.3f", t}' "$WORK/$name.time")
    echo "$records $seconds $rss $cpu $(python3 -c "print(f'{$after - $before:.3f}')")"
}

PHIGATE_CMD=(./target/release/examples/fetch_census_vitals)
PYTHON_CMD=("$VENV/bin/python" bench/kipu_fetch/fetch_kipu_python.py)

echo "== warm-up pass (unmeasured; concurrency $BENCH_CONCURRENCY, per $BENCH_PER)" >&2
run warmup "${PHIGATE_CMD[@]}" >/dev/null

P_RUNS=(); K_RUNS=()
for i in $(seq 1 "$RUNS"); do
    echo "== run $i/$RUNS: phigate (concurrency $BENCH_CONCURRENCY, per $BENCH_PER, pinned: $PIN)" >&2
    P_RUNS+=("$(run phigate "${PHIGATE_CMD[@]}")")
    echo "== run $i/$RUNS: kipu-python 0.0.2 (concurrency $BENCH_CONCURRENCY, per $BENCH_PER, pinned: $PIN)" >&2
    K_RUNS+=("$(run kipu-python "${PYTHON_CMD[@]}")")
done

median() { # "records seconds rss cpu sim_cpu" lines: the line with the median seconds
    printf '%s\n' "$@" | sort -k2,2g | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'
}
read -r P_REC P_SEC P_RSS P_CPU P_SIM < <(median "${P_RUNS[@]}")
read -r K_REC K_SEC K_RSS K_CPU K_SIM < <(median "${K_RUNS[@]}")
echo "phigate runs (records seconds rss_kib client_cpu_s sim_cpu_s): $(printf '[%s] ' "${P_RUNS[@]}")" >&2
echo "kipu-python runs (records seconds rss_kib client_cpu_s sim_cpu_s): $(printf '[%s] ' "${K_RUNS[@]}")" >&2

if [[ "$P_REC" != "$K_REC" ]]; then
    echo "record counts differ: phigate $P_REC, kipu-python $K_REC" >&2
    exit 1
fi

python3 - "$P_REC" "$P_SEC" "$P_RSS" "$K_REC" "$K_SEC" "$K_RSS" "$PATIENTS" "$PIN" "$RUNS" \
    "$P_CPU" "$P_SIM" "$K_CPU" "$K_SIM" <<'PY'
import sys
p_rec, p_sec, p_rss, k_rec, k_sec, k_rss, patients, pin, runs = sys.argv[1:10]
p_cpu, p_sim, k_cpu, k_sim = map(float, sys.argv[10:])
p_rate, k_rate = int(p_rec) / float(p_sec), int(k_rec) / float(k_sec)
p_mib, k_mib = int(p_rss) / 1024, int(k_rss) / 1024
print(f"patients: {patients}, records per client: {p_rec}, median of {runs} runs each, "
      f"{'simulator on CPU 0, clients on CPU 1' if pin == '1' else 'not pinned'}")
print(f"{'client':<14}{'seconds':>10}{'records/s':>14}{'peak RSS MiB':>15}"
      f"{'client CPU s':>15}{'simulator CPU s':>18}")
print(f"{'phigate':<14}{float(p_sec):>10.2f}{p_rate:>14.0f}{p_mib:>15.1f}{p_cpu:>15.2f}{p_sim:>18.2f}")
print(f"{'kipu-python':<14}{float(k_sec):>10.2f}{k_rate:>14.0f}{k_mib:>15.1f}{k_cpu:>15.2f}{k_sim:>18.2f}")
print(f"throughput ratio (phigate / kipu-python): {p_rate / k_rate:.1f}x  (target >= 20x)")
print(f"peak memory ratio (phigate / kipu-python): {p_mib / k_mib:.3f}  (target <= 0.2)")
PY
