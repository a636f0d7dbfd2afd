#!/usr/bin/env bash
# The README's first command: set up, generate example loss curves, fit and extrapolate them.
# Pooled mode: the runs share the law's shape parameters.
# Writes runs/example/{curves.csv,fit.png,fit.json}. (Will switch to the demo study later.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "train,dashboard,postgres"
out=runs/example
mkdir -p "$out"
.venv/bin/python -c "from lawsearch.examples import write_example_csv; write_example_csv('$out/curves.csv')"
echo "example curves: $out/curves.csv (4 runs: constant, cosine, WSD; Multi-Power Law + noise)"
.venv/bin/python -m lawsearch.cli fit "$out/curves.csv" --law multipower --prefix 0.3 \
    --mode pooled --plot "$out/fit.png" --json "$out/fit.json"
