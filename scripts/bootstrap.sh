#!/usr/bin/env bash
# Create .venv at the repository root (if missing) and install the pinned dependencies
# plus this project in editable mode. Safe to re-run: it only installs when needed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
stamp=".venv/.bootstrap-$(sha256sum requirements.txt setup.cfg | sha256sum | cut -c1-16)"
if [[ -f "$stamp" ]]; then
  exit 0
fi
if [[ ! -x .venv/bin/python ]]; then
  echo "[bootstrap] creating .venv with $("$py" --version)"
  "$py" -m venv .venv
fi
echo "[bootstrap] installing pinned dependencies (a few minutes on a fresh machine)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
rm -f .venv/.bootstrap-*
touch "$stamp"
echo "[bootstrap] ready: $(.venv/bin/python -c 'import torch, timm; print("torch", torch.__version__, "timm", timm.__version__)')"
