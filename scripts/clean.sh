#!/usr/bin/env bash
# Removes the run folder (private Postgres/Asterisk data of `make run`) and the venv's install
# stamp. Stops nothing: when a process recorded in the run folder is still alive (a running
# `make run`), it refuses and says which one, since deleting its files under it would break it.
# Usage: scripts/clean.sh RUN_DIR VENV
set -euo pipefail
run_dir=${1:?usage: clean.sh RUN_DIR VENV}
venv=${2:?usage: clean.sh RUN_DIR VENV}

if [ -d "$run_dir" ]; then
  alive=()
  while IFS= read -r -d '' pidfile; do
    pid=$(head -n1 "$pidfile" 2>/dev/null | tr -dc 0-9)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      alive+=("$pid ($pidfile)")
    fi
  done < <(find "$run_dir" \( -name '*.pid' -o -name postmaster.pid \) -print0 2>/dev/null)
  if [ ${#alive[@]} -gt 0 ]; then
    echo "clean: still running: ${alive[*]}; stop \`make run\` (Ctrl-C) first" >&2
    exit 1
  fi
  rm -rf "$run_dir"
  echo "clean: removed $run_dir" >&2
fi
rm -f "$venv/.hotline-installed"
