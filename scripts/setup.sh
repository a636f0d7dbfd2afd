#!/usr/bin/env bash
# Create (or reuse) .venv with Python 3.11 and install lawsearch with the given extras.
# Usage: scripts/setup.sh "train,dashboard,postgres,dev"
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-train,dashboard,postgres}"
py="${PYTHON:-python3.11}"
if ! command -v "$py" >/dev/null 2>&1; then
    echo "setup: $py not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv
fi
stamp=".venv/.lawsearch-installed-$(echo "$extras" | tr ',' '-')"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    # torch is pinned to 2.13.0 (CPU wheel) in the [train] extra; pip finds it locally.
    .venv/bin/python -m pip install --quiet -e ".[${extras}]"
    touch "$stamp"
fi
