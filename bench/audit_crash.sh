#!/usr/bin/env bash
# Long crash run: SIGKILL a writer process mid-append N times (default 200) and check after each
# kill that every acknowledged entry is present and the log verifies. The suite runs 20.
#   bench/audit_crash.sh [REPETITIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
AUDIT_CRASH_REPS="${1:-200}" cargo test --release -p audit --test crash -- --nocapture
