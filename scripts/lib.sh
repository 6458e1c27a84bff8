# shellcheck shell=bash
# Shared shell helpers for scripts/*.sh (sourced, not run).

# Prints the path of the first Python >= 3.11 among $PYTHON (when set), python3 (preferred),
# python3.13, python3.12 and python3.11 on PATH; returns 1 when there is none.
pick_python() {
  local candidate path
  for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
    path=$(command -v "$candidate" 2>/dev/null) || continue
    if "$path" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$path"
      return 0
    fi
  done
  return 1
}

# True when this Python can make a virtualenv with pip (Debian splits ensurepip into the
# pythonX.Y-venv package).
python_has_venv() {
  "$1" -c 'import ensurepip, venv' 2>/dev/null
}

# Prints "X.Y" for the given Python.
python_version() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'
}

# The directory holding the newest PostgreSQL server binaries, or nothing (return 1).
pg_bin_dir() {
  local dir found=""
  for dir in $(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V); do
    [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && found=$dir
  done
  if [ -z "$found" ] && dir=$(command -v initdb 2>/dev/null); then
    found=$(dirname "$(readlink -f "$dir")")
  fi
  [ -n "$found" ] && echo "$found"
}

# Prints "MAIN_URI SECURITY_URI KEYRING" of the machine's Debian mirrors, read from its own
# apt sources (deb822 debian.sources, else sources.list), so no host name is ever written
# in this repository; returns 1 when there is none.
debian_mirrors() {
  local src=/etc/apt/sources.list.d/debian.sources
  local main_uri="" sec_uri="" keyring=/usr/share/keyrings/debian-archive-keyring.gpg k
  if [ -f "$src" ]; then
    main_uri=$(awk '/^URIs:/{print $2}' "$src" | grep -v security | head -n1 || true)
    sec_uri=$(awk '/^URIs:/{print $2}' "$src" | grep security | head -n1 || true)
    k=$(awk '/^Signed-By:/{print $2}' "$src" | head -n1 || true)
    [ -n "$k" ] && keyring=$k
  fi
  if [ -z "$main_uri" ] && [ -f /etc/apt/sources.list ]; then
    main_uri=$(awk '$1=="deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
    sec_uri=$(awk '$1=="deb" && $2 ~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  [ -n "$main_uri" ] || return 1
  [ -n "$sec_uri" ] || sec_uri="${main_uri%/debian}/debian-security"
  echo "$main_uri $sec_uri $keyring"
}
