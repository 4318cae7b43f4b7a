#!/usr/bin/env bash
# Benchmark: flatten census-like nested patient records (JSON lines) to Parquet, phigate's
# `tabular` crate vs kipu-python 0.0.2's `JsonFlattener.flatten_json_df` + `DataFrame.to_parquet`,
# in one run. Prints wall time and peak RSS (GNU time -v) for each, and the ratios.
#
# Usage: bench/flatten.sh       (env: RECORDS=1000000 KIPU_SIZES="10000 30000" PROFILE=release)
# PROFILE=dev uses the dev profile (dependencies at opt-level 2, the tabular crate unoptimised):
# slower for phigate, so conservative, and much quicker to build on a loaded machine.
# SKIP_BUILD=1 uses the already built example.
# Needs: cargo, python3 with venv, GNU time at /usr/bin/time, network access to PyPI once.
#
# Same input file, same output format (one Parquet file, wide layout = kipu-python's layout;
# the relational layout is measured too). kipu-python cannot hold 1,000,000 records here: it
# builds one DataFrame per record and concatenates them (about 4 ms and 100 KB of RSS per
# record measured), which would take over an hour and ~100 GB. It is measured at KIPU_SIZES;
# the ratio at RECORDS uses its per-record time and memory at the largest size (stated as an
# extrapolation; the growth between the two sizes is printed so the linearity can be checked).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
RECORDS="${RECORDS:-1000000}"
KIPU_SIZES="${KIPU_SIZES:-10000 30000}"
PROFILE="${PROFILE:-release}"
VENV="$ROOT/bench/.venv-flatten"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

[[ -x /usr/bin/time ]] || { echo "GNU time is required at /usr/bin/time (apt-get install time)" >&2; exit 2; }

echo "== building the flattener ($PROFILE profile)" >&2
if [[ -n "${SKIP_BUILD:-}" ]]; then
    BIN="$ROOT/target/$([[ "$PROFILE" == release ]] && echo release || echo debug)/examples/flatten_file"
elif [[ "$PROFILE" == release ]]; then
    cargo build --release -p tabular --example flatten_file >&2
    BIN="$ROOT/target/release/examples/flatten_file"
else
    cargo build -p tabular --example flatten_file >&2
    BIN="$ROOT/target/debug/examples/flatten_file"
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "== creating $VENV with kipu-python 0.0.2 and pyarrow" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kipu-python==0.0.2" pyarrow >&2
fi
"$VENV/bin/python" -c 'import kipu; assert kipu.__version__ == "0.0.2", kipu.__version__'

measure() { # label, command...  -> "label seconds peak_kib" on stdout
    local label="$1"; shift
    /usr/bin/time -v "$@" >"$WORK/out.txt" 2>"$WORK/time.txt" || { cat "$WORK/time.txt" >&2; exit 1; }
    local wall peak
    wall=$(grep 'Elapsed (wall clock)' "$WORK/time.txt" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
    peak=$(grep 'Maximum resident set size' "$WORK/time.txt" | awk '{print $NF}')
    echo "$label $wall $peak $(tr -d '\n' <"$WORK/out.txt" | tail -c 300)"
}

echo "== generating $RECORDS records" >&2
python3 bench/flatten/gen_records.py "$RECORDS" "$WORK/records.jsonl"
echo "input: $(du -h "$WORK/records.jsonl" | cut -f1), $RECORDS records"

RESULTS="$WORK/results.txt"
: >"$RESULTS"
rm -rf "$WORK/o1" "$WORK/o2"
measure "phigate-wide-$RECORDS" "$BIN" "$WORK/records.jsonl" "$WORK/o1" parquet wide | tee -a "$RESULTS"
measure "phigate-relational-$RECORDS" "$BIN" "$WORK/records.jsonl" "$WORK/o2" parquet relational | tee -a "$RESULTS"
for n in $KIPU_SIZES; do
    head -n "$n" "$WORK/records.jsonl" >"$WORK/in-$n.jsonl"
    rm -rf "$WORK/p-$n"
    measure "phigate-wide-$n" "$BIN" "$WORK/in-$n.jsonl" "$WORK/p-$n" parquet wide | tee -a "$RESULTS"
    measure "kipu-python-$n" "$VENV/bin/python" bench/flatten/kipu_flatten.py "$WORK/in-$n.jsonl" "$WORK/k-$n.parquet" | tee -a "$RESULTS"
done

python3 - "$RESULTS" "$RECORDS" $KIPU_SIZES <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    label, wall, peak = line.split()[:3]
    rows[label] = (float(wall), int(peak))
records = int(sys.argv[2]); sizes = [int(s) for s in sys.argv[3:]]
print()
print("| run | records | wall s | peak RSS MiB |")
print("|---|---:|---:|---:|")
for label, (wall, peak) in rows.items():
    print(f"| {label.rsplit('-', 1)[0]} | {label.rsplit('-', 1)[1]} | {wall:.2f} | {peak/1024:.0f} |")
print()
for n in sizes:
    p, k = rows[f"phigate-wide-{n}"], rows[f"kipu-python-{n}"]
    print(f"at {n} records (measured): phigate {k[0]/p[0]:.0f}x faster, {p[1]/k[1]:.3f} of kipu-python's peak RSS")
n = sizes[-1]; k = rows[f"kipu-python-{n}"]; p = rows[f"phigate-wide-{records}"]
if len(sizes) > 1:
    a = rows[f"kipu-python-{sizes[0]}"]
    print(f"kipu-python growth {sizes[0]} -> {n}: time x{k[0]/a[0]:.2f}, RSS x{k[1]/a[1]:.2f} for x{n/sizes[0]:.1f} records")
kt = k[0] / n * records; km = k[1] / n * records
print(f"at {records} records (kipu-python extrapolated linearly from {n}: {kt:.0f} s, {km/1024/1024:.0f} GiB): "
      f"phigate {kt/p[0]:.0f}x faster, {p[1]/km:.4f} of the peak RSS")
PY
