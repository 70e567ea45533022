#!/usr/bin/env bash
# Install everything the tests need and run the whole suite (this is what CI runs).
#  - Debian's chromium for the browser tests (Playwright cannot download browsers offline)
#  - a virtual environment .venv with the package and its dev extras, CPU build of torch
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # one thread per process: faster on 2 shared cores
set +e
.venv/bin/python -m pytest --nbmake --nbmake-timeout=600 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi
exit "$rc"
