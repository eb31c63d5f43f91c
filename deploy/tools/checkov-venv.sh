#!/usr/bin/env bash
# Installs checkov into .venv/checkov, its own virtual environment (its dependencies clash with the project's pins),
# from deploy/requirements-checkov.txt; does nothing when that file has not changed since. `./dev test` runs it, and
# so does tests/deploy/test_checkov.py when checkov is missing. Prints the checkov executable's path.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv=$root/.venv/checkov
requirements=$root/deploy/requirements-checkov.txt
stamp=$venv/.requirements.sha
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ ! -x $venv/bin/checkov || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  python=${PYTHON:-}
  if [[ -z $python ]]; then
    for candidate in python3.11 python3.12 python3; do
      if command -v "$candidate" >/dev/null; then python=$candidate && break; fi
    done
  fi
  [[ -n $python ]] || { echo "checkov-venv.sh: no python3 to create $venv with" >&2; exit 2; }
  "$python" -m venv --clear "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
  echo "$want" >"$stamp"
fi
echo "$venv/bin/checkov"
