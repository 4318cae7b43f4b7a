#!/usr/bin/env bash
# Audit log benchmarks (release build): durable appends/s with 1, 8, 64 writers on SQLite and
# PostgreSQL, where a batch's time goes (append_profile), full verification of 1,000,000
# entries, proof latency.
#   PHIGATE_BENCH_DATABASE_URL (or PHIGATE_TEST_DATABASE_URL): PostgreSQL to include; unset = SQLite only.
#   AUDIT_BENCH_VERIFY_ENTRIES: size of the verification log (default 1000000).
# Figures go to stdout; record them in docs/benchmarks.md ("Audit log").
set -euo pipefail
cd "$(dirname "$0")/.."
export PHIGATE_BENCH_DATABASE_URL="${PHIGATE_BENCH_DATABASE_URL:-${PHIGATE_TEST_DATABASE_URL:-}}"
[ -z "$PHIGATE_BENCH_DATABASE_URL" ] && unset PHIGATE_BENCH_DATABASE_URL
cargo bench -p audit --bench audit -- "$@" 2>&1 | grep -E --line-buffered '^(durable_append|append_profile|verify|proof)/|time:|thrpt:|built a|loading'
