#!/usr/bin/env bash
# The README's first command: set up, then run the demo study (studies/demo.toml): which mix of
# five offline text domains and which LR schedule give a tiny Llama the lowest held-out loss?
# Every candidate trains a short budget, a scaling law extrapolates it, the best continue.
# Re-running resumes the study. Writes runs/demo/ (journal.log, checkpoints/, report/) and
# prints the ranking and the optuna-dashboard command. Extra args go to `lawsearch run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "train,dashboard,postgres"
.venv/bin/python -m lawsearch.cli run studies/demo.toml --root . "$@"  # runs/demo/, not studies/runs/
