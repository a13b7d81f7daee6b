#!/usr/bin/env bash
# Set up .venv with the pinned dependencies (requirements.lock) and lifelong itself.
# Idempotent: a second run only checks what is installed. Needs python3 >= 3.10 and
# access to PyPI; torch==2.13.0 is pinned first so pip takes the CPU wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import lifelong, torch; print(f'lifelong {lifelong.__version__} ready (torch {torch.__version__})')"
