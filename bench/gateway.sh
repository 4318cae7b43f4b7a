#!/usr/bin/env bash
# Benchmark: the gateway's governed request path against a bare axum TLS 1.3 "hello" on the same
# machine in the same run, with wrk (Debian package `wrk`).
#
# Usage: bench/gateway.sh            (env: DURATION=15s CONNECTIONS=32 THREADS=2 PACED_RATE=1000
#                                          PACED_CONNECTIONS=20 PACED_RESPONSE_MS=2 PROFILE=release; PROFILE=dev uses the
#                                          debug build, whose dependencies are optimised at opt-level 2
#                                          but phigate is not; PHIGATE_BIN=path runs another
#                                          phigate binary, e.g. a baseline build; NO_BUILD=1 uses
#                                          the binaries as they are)
# Needs: cargo, wrk (apt-get install wrk), curl, python3.
#
# What is measured:
#   hello     GET /  on examples/bench_tls_hello.rs: rustls/aws-lc-rs TLS 1.3, hyper-util, axum; nothing else.
#   governed  GET /api/v1/patients/{id} on `phigate serve`: the same TLS stack, then authenticate →
#             rate limit → authorize → scrub → a durable audit append (group-committed SQLite
#             transaction, synchronous=FULL) before the response leaves. The script creates a
#             clinician API key for a care-team member (`kipu-user-N`, the first N whose patient
#             list is not empty), exchanges it for a 15-minute EdDSA JWT, and reads one of that
#             clinician's patients: JWT validation (audited), the Cedar decision with the
#             patient's care team from the store, the store read, and the `phi_access` event.
#             wrk cannot present client certificates, so the mTLS listener is not used.
#   paced     the governed path with wrk's delay() hook pacing each of PACED_CONNECTIONS connections
#             so that together they send about PACED_RATE requests/s (each connection waits
#             PACED_CONNECTIONS*1000/PACED_RATE - PACED_RESPONSE_MS ms after each response;
#             PACED_RESPONSE_MS, default 2, stands for the response time plus wrk's own overhead:
#             with 1 the runs reached only 950-970 requests/s), for the p99 target. wrk measures
#             each request from its send, so a slow response delays the next request instead of
#             queueing it: the p99 is the service time at that rate, not a
#             coordinated-omission-corrected figure. Its p99 over the default 15 s rests on
#             about 150 requests, so one scheduling hiccup of a small VM can decide it; judge
#             the latency target on DURATION=60s (about 60,000 paced requests).
# Rate limits are raised for the run (the limiter still runs on every request).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-15s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
PACED_CONNECTIONS="${PACED_CONNECTIONS:-20}"
PACED_RATE="${PACED_RATE:-1000}"
PACED_RESPONSE_MS="${PACED_RESPONSE_MS:-2}"
PACED_DELAY_MS=$(( PACED_CONNECTIONS * 1000 / PACED_RATE - PACED_RESPONSE_MS ))
(( PACED_DELAY_MS >= 0 )) || PACED_DELAY_MS=0
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 2; }

PROFILE="${PROFILE:-release}"
echo "== building phigate and the bare TLS hello ($PROFILE)" >&2
[[ -n "${NO_BUILD:-}" ]] || cargo build --profile "$PROFILE" -p phigate --bin phigate --example bench_tls_hello >&2
DIR="$ROOT/target/$([[ "$PROFILE" == dev ]] && echo debug || echo "$PROFILE")"
BIN="${PHIGATE_BIN:-$DIR/phigate}"   # PHIGATE_BIN: another build, e.g. a baseline to compare
HELLO="$DIR/examples/bench_tls_hello"

mkdir -m 700 "$WORK/data"
cat > "$WORK/data/phigate.toml" <<'EOF'
[server]
listen = "127.0.0.1:0"
mtls_listen = "127.0.0.1:0"
[rate_limit]
per_address_per_minute = 60000000
per_address_burst = 1000000
per_principal_per_minute = 60000000
per_principal_burst = 1000000
auth_per_minute = 60000
auth_burst = 10000
[simulator]
patients = 20
EOF

wait_for() { # file pattern
    for _ in $(seq 1 600); do
        if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

PHIGATE_DATA_DIR="$WORK/data" PHIGATE_LOG=warn "$BIN" serve > "$WORK/gw.out" 2> "$WORK/gw.err" &
PIDS+=($!)
wait_for "$WORK/gw.out" '^ready$'
GW="$(sed -n 's/^listening https:\/\/\([^ ]*\).*/\1/p' "$WORK/gw.out")"

"$HELLO" "$WORK/data/tls/server.pem" "$WORK/data/tls/server.key" 127.0.0.1:0 > "$WORK/hello.out" &
PIDS+=($!)
wait_for "$WORK/hello.out" '^listening '
HELLO_ADDR="$(sed -n 's/^listening //p' "$WORK/hello.out")"

# A clinician on some patient's care team, its JWT, and one of its patients.
CA="$WORK/data/tls/dev-ca.pem"
TOKEN=""; PATIENT=""
for n in $(seq 1 40); do
    key="$(PHIGATE_DATA_DIR="$WORK/data" PHIGATE_KEK_FILE="$WORK/data/dev-kek.key" PHIGATE_LOG=warn \
        "$BIN" keys create --service "kipu-user-$n" --role clinician | sed -n 2p)"
    TOKEN="$(curl -fsS --cacert "$CA" -X POST -H "X-API-Key: $key" "https://$GW/auth/token" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
    PATIENT="$(curl -fsS --cacert "$CA" -H "Authorization: Bearer $TOKEN" -H 'X-Purpose-Of-Use: TREAT' \
        -H 'X-Access-Reason: benchmark' "https://$GW/api/v1/patients" \
        | python3 -c 'import json,sys,urllib.parse as u; l=json.load(sys.stdin); print(u.quote(l[0]["casefile_id"], safe="") if l else "")')"
    [[ -n "$PATIENT" ]] && break
done
[[ -n "$PATIENT" ]] || { echo "no care-team member with a current patient found" >&2; exit 1; }
code="$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$CA" -H "Authorization: Bearer $TOKEN" \
    -H 'X-Purpose-Of-Use: TREAT' -H 'X-Access-Reason: benchmark' "https://$GW/api/v1/patients/$PATIENT")"
[[ "$code" == 200 ]] || { echo "the governed read answered $code, not 200" >&2; exit 1; }
AUTH=(-H "Authorization: Bearer $TOKEN" -H "X-Purpose-Of-Use: TREAT" -H "X-Access-Reason: benchmark")

before="$(PHIGATE_DATA_DIR="$WORK/data" "$BIN" audit verify 2>/dev/null | sed -n 's/.*"entries": \([0-9]*\).*/\1 entries/p' || true)"

run() { # name url [extra wrk args...]
    local name="$1" url="$2"; shift 2
    echo "== $name: wrk $* $url" >&2
    wrk --latency "$@" "$url" > "$WORK/$name.txt"
    cat "$WORK/$name.txt" >&2
}
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
run hello "https://$HELLO_ADDR/" -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION"
run governed "https://$GW/api/v1/patients/$PATIENT" "${AUTH[@]}" -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION"
cat > "$WORK/pace.lua" <<EOF
function delay()
    return $PACED_DELAY_MS
end
EOF
run paced "https://$GW/api/v1/patients/$PATIENT" "${AUTH[@]}" -t"$THREADS" -c"$PACED_CONNECTIONS" -d"$DURATION" -s "$WORK/pace.lua"

after="$(PHIGATE_DATA_DIR="$WORK/data" "$BIN" audit verify 2>/dev/null | sed -n 's/.*"entries": \([0-9]*\).*/\1 entries/p' || true)"

rps() { awk '/^Requests\/sec:/ {print $2}' "$WORK/$1.txt"; }
p() { awk -v q="$2" '$1 == q {print $2}' "$WORK/$1.txt"; }
status() { grep -q 'Non-2xx' "$WORK/$1.txt" && grep 'Non-2xx' "$WORK/$1.txt" | sed 's/^ *//' || echo "all 2xx"; }

echo
echo "| run | requests/s | p50 | p99 | responses |"
echo "|---|---|---|---|---|"
for n in hello governed paced; do
    echo "| $n | $(rps $n) | $(p $n 50%) | $(p $n 99%) | $(status $n) |"
done
awk -v g="$(rps governed)" -v h="$(rps hello)" 'BEGIN { printf "\ngoverned / hello throughput: %.2f (target >= 0.5)\n", g / h }'
echo "paced: $PACED_CONNECTIONS connections, ${PACED_DELAY_MS} ms between a response and the next request (target rate $PACED_RATE/s; achieved: see requests/s)"
echo "machine: $(nproc) cores; load average before the runs: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "audit log before: ${before:-?}; after: ${after:-?} (every governed request is two durable entries: the token validation and the PHI access)"
