#!/usr/bin/env bash
# Makes sure VENV is a working virtualenv (Python >= 3.11) with the package installed
# editable with its test extras. Reinstalls only when setup.cfg or pyproject.toml changed
# (their checksums are kept in a stamp file inside the venv), so a second run is a no-op.
# Usage: scripts/ensure-venv.sh VENV
set -euo pipefail
venv=${1:?usage: ensure-venv.sh VENV}
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"
case $venv in /*) ;; *) venv="$PWD/$venv" ;; esac
stamp="$venv/.hotline-installed"

if ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
    echo "ensure-venv: $venv exists and is not a virtualenv; move it away" >&2
    exit 1
  fi
  if ! py=$(pick_python); then
    echo "ensure-venv: no Python >= 3.11 (python3 on PATH: $(python3 --version 2>&1 || true));" \
      "run scripts/install-system-deps.sh as root" >&2
    exit 1
  fi
  if ! python_has_venv "$py"; then
    echo "ensure-venv: $py cannot make virtualenvs; install python$(python_version "$py")-venv" >&2
    exit 1
  fi
  echo "venv: creating $venv with $py ($(python_version "$py"))" >&2
  rm -rf "$venv" # a broken venv (e.g. its Python was removed) is rebuilt from scratch
  "$py" -m venv "$venv"
fi

want=$(cd "$repo" && sha256sum setup.cfg pyproject.toml)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "venv: $venv up to date" >&2
  exit 0
fi
echo "venv: installing the package (pip install -e '.[test]') into $venv" >&2
(cd "$repo" && "$venv/bin/python" -m pip install --disable-pip-version-check -q -e '.[test]')
printf '%s\n' "$want" >"$stamp"
