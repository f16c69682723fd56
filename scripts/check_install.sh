#!/usr/bin/env bash
# A clean install as a user would do it: a new virtual environment, `pip install '.[all]'` from
# this checkout (not editable), then the console script run from outside the repository.
# Usage: bash scripts/check_install.sh [workdir]   (default: a temporary folder, removed after)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -ge 1 ]]; then
  work="$1"; mkdir -p "$work"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT  # only a folder this script made is removed
fi
py="${PYTHON:-python3}"
echo "[check_install] venv in $work/v"
"$py" -m venv "$work/v"
"$work/v/bin/python" -m pip install --quiet --disable-pip-version-check "$root[all]"
cd "$work"  # outside the repository: only the installed package can be imported
"$work/v/bin/python" -c "import gcp, gcp.zoo, gcp.finegrained.finetune, timm; print('[check_install] gcp', gcp.__version__, 'models', len(gcp.zoo.list_models()))"
# one top-level package: the generic names of earlier layouts must not be importable
"$work/v/bin/python" -c "import importlib.util as u, sys; bad = [n for n in ('zoo', 'gcptrain', 'finegrained') if u.find_spec(n)]; sys.exit(f'importable: {bad}' if bad else 0)"
"$work/v/bin/python" -c "import gcp, os, sys; sys.exit(0 if os.path.isfile(os.path.join(os.path.dirname(gcp.__file__), 'py.typed')) else 'py.typed is not installed')"
"$work/v/bin/gcp-train" --help > /dev/null
"$work/v/bin/gcp-finetune" --help > /dev/null
"$work/v/bin/gcp-compare" --quick --out "$work/compare"
test -s "$work/compare/report.md"
echo "[check_install] ok"
