#!/usr/bin/env bash
# Installs the system packages Hotline needs: Asterisk (from the distribution; on Debian 12
# from Debian 11 with a low pin), sipp (sip-tester), music on hold, sox, PostgreSQL binaries,
# a Python >= 3.11 that can make virtualenvs (python3-venv), Chromium + chromedriver
# for the panel's browser test, and German prompts (asterisk-prompt-de, espeak-ng).
# Idempotent: checks what is missing first and does nothing (no apt at all) when everything
# is there. Installing needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

missing=()
need_asterisk=0
if ! command -v asterisk >/dev/null; then
  missing+=(asterisk asterisk-core-sounds-en-gsm)
  need_asterisk=1
fi
# Music on hold: without it queued callers would hear silence.
compgen -G '/usr/share/asterisk/moh/*' >/dev/null || missing+=(asterisk-moh-opsound-gsm)
command -v sipp >/dev/null || missing+=(sip-tester)
command -v sox >/dev/null || missing+=(sox)
# `openssl passwd -6`: the ARI password goes into ari.conf only as a crypt hash.
command -v openssl >/dev/null || missing+=(openssl)
# --- German prompts (ari_app/domain/sounds.py) -----------------------------------------
# Debian's German Asterisk prompts (only in Debian 11 on Debian 12: the bullseye suites
# below); what that set lacks is synthesised by espeak-ng (`hotline prompts generate`,
# run by `make setup`).
compgen -G '/usr/share/asterisk/sounds/de/agent-loginok.*' >/dev/null || missing+=(asterisk-prompt-de)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
# --- end of German prompts block -----------------------------------------------------
pg_bin_dir >/dev/null || missing+=(postgresql)

if py=$(pick_python); then
  if ! python_has_venv "$py"; then
    missing+=("python$(python_version "$py")-venv")
  fi
else
  # No Python >= 3.11 at all: the distribution's python3 (3.11 on Debian 12, newer on
  # recent Ubuntu); python3.11 where the default is older but the package exists.
  missing+=(python3 python3-venv)
fi

# --- team panel browser test (tests/e2e/test_panel_browser.py) -------------------------
# Debian's headless Chromium and its WebDriver (chromedriver), driven by Selenium from the
# venv. Never a browser build downloaded at test time.
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
# --- end of team panel block ----------------------------------------------------------

# --- cluster (devenv/cluster.py, tests/e2e/test_cluster.py) --------------------
# Kamailio as the SIP dispatcher in front of several Asterisk nodes; the dispatcher
# module is in the main package. Run privately with its own config, never as a service.
command -v kamailio >/dev/null || missing+=(kamailio)
# --- end of cluster block -------------------------------------------------------------

# --- containers (tests/e2e/test_docker_stack.py) ---------------------------------------
# No Docker engine on these machines: the compose stack is built and run with the
# distribution's podman, with runc as runtime (crun refuses on hybrid cgroups), base images
# made with debootstrap from the machine's Debian mirror (scripts/docker-base-images.sh) and
# podman-compose (1.0.3 cannot run compose.yaml; README "Docker" says why and what the test
# does instead).
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v podman-compose >/dev/null || missing+=(podman-compose)
# --- end of containers block -----------------------------------------------------------

if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: already installed" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: missing ${missing[*]}; run as root (or install them yourself)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
has_candidate() {
  apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [0-9]'
}

# Adds Debian 11 (bullseye + bullseye-security) at pin priority 100, so only what has no
# Debian 12 candidate (asterisk and its own libraries) comes from there. The mirror URIs and
# keyring are read from the machine's own apt sources: no host name is written here.
add_bullseye() {
  local main_uri sec_uri keyring
  read -r main_uri sec_uri keyring < <(debian_mirrors) || {
    echo "install-system-deps: no Debian mirror found in the apt sources" >&2
    exit 1
  }
  cat >/etc/apt/sources.list.d/hotline-bullseye.sources <<SRC
Types: deb
URIs: $main_uri
Suites: bullseye
Components: main
Signed-By: $keyring

Types: deb
URIs: $sec_uri
Suites: bullseye-security
Components: main
Signed-By: $keyring
SRC
  cat >/etc/apt/preferences.d/hotline-bullseye <<PIN
Package: *
Pin: release n=bullseye
Pin-Priority: 100

Package: *
Pin: release n=bullseye-security
Pin-Priority: 100
PIN
}

echo "system packages: installing ${missing[*]}" >&2
apt-get -o DPkg::Lock::Timeout=600 update -qq
# Packages Debian 12 does not have (asterisk, asterisk-prompt-de) come from Debian 11.
from_bullseye=0
if [ "$need_asterisk" = 1 ] && ! has_candidate asterisk; then from_bullseye=1; fi
if [[ " ${missing[*]} " == *" asterisk-prompt-de "* ]] && ! has_candidate asterisk-prompt-de; then
  from_bullseye=1
fi
if [ "$from_bullseye" = 1 ]; then
  . /etc/os-release
  if [ "${ID:-}" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
    add_bullseye
    apt-get -o DPkg::Lock::Timeout=600 update -qq
  else
    echo "install-system-deps: no asterisk package on ${PRETTY_NAME:-this system}" \
      "(on Ubuntu enable the 'universe' component)" >&2
    exit 1
  fi
fi
# An old default python3 (e.g. 3.10): take python3.11 where the distribution has it.
if [[ " ${missing[*]} " == *" python3 "* ]]; then
  py3=$(apt-cache policy python3 2>/dev/null | awk '/Candidate:/{print $2}')
  if ! dpkg --compare-versions "${py3:-0}" ge 3.11 && has_candidate python3.11; then
    kept=()
    for pkg in "${missing[@]}"; do
      case $pkg in
        python3) kept+=(python3.11) ;;
        python3-venv) kept+=(python3.11-venv) ;;
        *) kept+=("$pkg") ;;
      esac
    done
    missing=("${kept[@]}")
  fi
fi
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system packages: installed ${missing[*]}" >&2
