#!/usr/bin/env bash
# The README's second command: set up and run the whole test suite (lint, types, tests).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "train,dashboard,postgres,dev" || exit $?
.venv/bin/ruff check lawsearch tests benchmarks || exit 1
.venv/bin/ruff format --check lawsearch tests benchmarks || exit 1
.venv/bin/mypy || exit 1
.venv/bin/python -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$status"
