#!/usr/bin/env bash
# Benchmark: census plus every patient's vital signs for 5,000 simulated patients, pulled by
# phigate's kipu client and by kipu-python 0.0.2 from the same simulator on loopback, in one
# run. Prints records/s and peak RSS (GNU time -v) for each, and the ratios.
#
# Usage: bench/kipu_fetch.sh
#   env: PATIENTS=5000 BENCH_CONCURRENCY=8 BENCH_PER=100 BENCH_RUNS=3 BENCH_PIN=1
#        BENCH_SKIP_BUILD=1 uses the release binaries already in target/
#        BENCH_CEILING=1 (default when wrk is installed) also measures the simulator's ceiling
# Needs: cargo, python3 with venv, GNU time at /usr/bin/time, curl, network access to PyPI once,
#        taskset (util-linux) when BENCH_PIN=1 and the machine has at least 2 CPUs.
#
# Same work on both sides: same simulator process, same page size, same number of requests in
# flight (kipu-python has no limit of its own; the Python driver uses an asyncio.Semaphore).
# kipu-python is used with flatten=False (raw JSON, no pandas), and pages by hand since it
# cannot. Its base_url is the simulator's http://127.0.0.1 URL: kipu-python accepts plain http
# to any host; phigate accepts it only for loopback.
#
# The simulator's ceiling (BENCH_CEILING=1): after the clients, wrk (a C load generator that
# costs next to nothing per request) sends one pre-signed vital-signs request, pinned like the
# clients, with the same number of connections, for a few seconds. Its requests/s bound how
# fast any client could finish the pass against this simulator on this machine, and so the
# best ratio any client could reach against kipu-python's median. The same wrk run against a
# bare axum "hello" over plain HTTP/1.1 (`bench_tls_hello --plain`, pinned where the simulator
# is) shows the ceiling of any hyper-based server on that one CPU.
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
    cargo build --release -p phigate --example bench_tls_hello >&2
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

CEILING_RPS=0; HELLO_RPS=0
if [[ "${BENCH_CEILING:-1}" == 1 ]] && command -v wrk >/dev/null; then
    # One patient's vital signs, signed now (the simulator accepts a Date within 15 minutes);
    # the same request every time, served from the simulator's cache like the clients' are.
    FIRST_ID=$(./target/release/phigate kipu get patients_census --param page=1 --param per=1 |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["patients"][0]["casefile_id"])')
    ENCODED_ID=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$FIRST_ID")
    URI="/api/patients/$ENCODED_ID/vital_signs?page=1&per=$BENCH_PER&app_id=$KIPU_APP_ID"
    NOW=$(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S GMT')
    ./target/release/phigate kipu sign --method GET --uri "$URI" --date "$NOW" \
        --version "$KIPU_API_VERSION" >"$WORK/signed"
    HEADERS=()
    while IFS= read -r line; do HEADERS+=(-H "$line"); done < <(grep -E '^(Authorization|Date|Accept): ' "$WORK/signed")
    STATUS=$(curl -s -o /dev/null -w '%{http_code}' "${HEADERS[@]}" "$KIPU_BASE_URL$URI")
    [[ "$STATUS" == 200 ]] || { echo "the pre-signed request was answered $STATUS" >&2; exit 1; }
    echo "== simulator ceiling: wrk, one pre-signed request, $BENCH_CONCURRENCY connections, 5 s" >&2
    "${CLIENT_CPU[@]}" wrk -t1 -c"$BENCH_CONCURRENCY" -d5s "${HEADERS[@]}" "$KIPU_BASE_URL$URI" >"$WORK/wrk.out"
    grep -q 'Non-2xx' "$WORK/wrk.out" && { cat "$WORK/wrk.out" >&2; echo "wrk got errors" >&2; exit 1; }
    CEILING_RPS=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.out")
    "${SIM_CPU[@]}" ./target/release/examples/bench_tls_hello --plain 127.0.0.1:0 >"$WORK/hello.out" &
    HELLO_PID=$!
    for _ in $(seq 1 50); do grep -q '^listening' "$WORK/hello.out" && break; sleep 0.1; done
    HELLO_ADDR=$(awk '/^listening/ {print $2}' "$WORK/hello.out")
    echo "== bare hyper hello ceiling: wrk, $BENCH_CONCURRENCY connections, 5 s" >&2
    "${CLIENT_CPU[@]}" wrk -t1 -c"$BENCH_CONCURRENCY" -d5s "http://$HELLO_ADDR/" >"$WORK/hello-wrk.out"
    kill "$HELLO_PID"; wait "$HELLO_PID" 2>/dev/null || true
    HELLO_RPS=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/hello-wrk.out")
fi

python3 - "$P_REC" "$P_SEC" "$P_RSS" "$K_REC" "$K_SEC" "$K_RSS" "$PATIENTS" "$PIN" "$RUNS" \
    "$P_CPU" "$P_SIM" "$K_CPU" "$K_SIM" "$CEILING_RPS" "$HELLO_RPS" <<'PY'
import sys
p_rec, p_sec, p_rss, k_rec, k_sec, k_rss, patients, pin, runs = sys.argv[1:10]
p_cpu, p_sim, k_cpu, k_sim, ceiling, hello = map(float, sys.argv[10:])
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
if ceiling > 0:
    requests = int(patients) + -(-int(patients) // int(__import__("os").environ["BENCH_PER"]))
    floor = requests / ceiling
    print(f"simulator ceiling (wrk, one pre-signed request): {ceiling:.0f} requests/s; "
          f"the pass's {requests} requests take at least {floor:.3f} s with a client that costs "
          f"nothing, so no client can beat kipu-python by more than {float(k_sec) / floor:.1f}x here")
if hello > 0:
    print(f"bare hyper hello ceiling (wrk, plain HTTP/1.1, same CPU as the simulator): "
          f"{hello:.0f} requests/s; any hyper-based server needs at least "
          f"{requests / hello:.3f} s for the pass: at most {float(k_sec) * hello / requests:.1f}x")
PY
