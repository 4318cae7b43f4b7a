#!/usr/bin/env bash
# Issue 6's two benchmarks in one run, phigate and kipu-python 0.0.2 side by side in each:
#   1. bench/flatten.sh: flatten 1,000,000 nested census-like records to Parquet
#      (phigate `tabular` vs kipu-python `flatten_json_df` + `to_parquet`): time and peak RSS;
#   2. bench/export.sh: export 10,000 simulated patients (census, vital signs, diagnosis
#      history) to Parquet (`phigate kipu export` vs kipu-python fetching the same and writing
#      `DataFrame.to_parquet`) from one `phigate sim` process: time and peak RSS.
# Environment variables of both scripts apply (RECORDS, KIPU_SIZES, PATIENTS, PROFILE, ...).
set -euo pipefail
cd "$(dirname "$0")"
echo "################ flatten ################"
./flatten.sh
echo
echo "################ export ################"
./export.sh
