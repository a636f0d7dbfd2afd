#!/usr/bin/env bash
# The README's second command: set up and run the whole test suite (lint, types, tests).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "train,dashboard,postgres,dev" || exit $?
# The browser tests (tests/report/test_browser.py) drive Debian's Chromium; a fresh
# machine does not have it. Install it where we can (root with apt-get); elsewhere the
# tests skip with the same hint, and fail when CI=true.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "test.sh: installing Debian's chromium and chromium-driver for the browser tests" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
            >/tmp/lawsearch-apt.log 2>&1 \
            || echo "test.sh: apt-get install chromium chromium-driver failed (see /tmp/lawsearch-apt.log)" >&2
    fi
fi
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
