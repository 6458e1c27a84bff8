#!/usr/bin/env bash
# Asterisk 22 LTS for Debian 12: a local backport of Debian's own source package from the
# unstable suite, built with Debian's tools (apt-get source, apt-get build-dep,
# dpkg-buildpackage) and Debian 12's build dependencies. Built once per machine into a cache
# folder outside git; then unpacked (dpkg-deb -x) into a prefix under that folder, so it runs
# next to the system's Asterisk 16 (both packages ship /usr/sbin/asterisk: installing 22's
# .debs would replace 16 for everything on the machine).
#
#   scripts/build-asterisk22.sh            build when absent, unpack, print the binary's path
#   scripts/build-asterisk22.sh --status   say what is cached; builds nothing
#
# Cache ($HOTLINE_AST22_CACHE, default /var/cache/hotline/asterisk-22):
#   src/      the source package as downloaded and the patched tree
#   debs/     the built .debs                      build.log  dpkg-buildpackage's output
#   root/     the .debs unpacked (usr/sbin/asterisk, modules, data, the sample configs)
#   attempts.log  one line per build attempt: start, end, seconds, exit status
# Idempotent: a finished build (debs/.done) is never rebuilt; a failed one is retried.
# Building needs root (apt-get build-dep) and takes long: it runs under nice -n 19 with
# DEB_BUILD_OPTIONS="parallel=2 nocheck" (override with AST22_DEB_BUILD_OPTIONS).
set -euo pipefail

cache=${HOTLINE_AST22_CACHE:-/var/cache/hotline/asterisk-22}
srcdir=$cache/src
debdir=$cache/debs
root=$cache/root
log=$cache/build.log
attempts=$cache/attempts.log
# Binary packages unpacked into root/: the daemon, its modules, and its sample configs
# (the test harness writes its own configs, but module data such as the ARI docs live here).
unpack=(asterisk asterisk-modules asterisk-config)

say() { echo "build-asterisk22: $*" >&2; }

status() {
  if [ -f "$debdir/.done" ]; then
    say "built: $(cat "$debdir/.done")"
  else
    say "not built (cache: $cache)"
  fi
  [ -x "$root/usr/sbin/asterisk" ] && say "unpacked: $root/usr/sbin/asterisk"
  return 0
}
if [ "${1:-}" = --status ]; then
  status
  exit 0
fi

apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }

# A deb-src entry for Debian's unstable suite on the machine's own Debian mirror (read from
# its apt sources: no host name is written here), pinned at 1 so that no binary package could
# ever come from unstable: only the source package is wanted.
add_unstable_src() {
  local src=/etc/apt/sources.list.d/debian.sources uri="" keyring=/usr/share/keyrings/debian-archive-keyring.gpg k
  local list=/etc/apt/sources.list.d/hotline-unstable-src.sources
  local pin=/etc/apt/preferences.d/hotline-unstable-src
  [ -f "$list" ] && [ -f "$pin" ] && return 1
  if [ -f "$src" ]; then
    uri=$(awk '/^URIs:/{print $2}' "$src" | grep -v security | head -n1 || true)
    k=$(awk '/^Signed-By:/{print $2}' "$src" | head -n1 || true)
    [ -n "$k" ] && keyring=$k
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  if [ -z "$uri" ]; then
    say "no Debian mirror found in the apt sources"
    exit 1
  fi
  cat >"$list" <<SRC
Types: deb-src
URIs: $uri
Suites: unstable
Components: main
Signed-By: $keyring
SRC
  cat >"$pin" <<PIN
Package: *
Pin: release a=unstable
Pin-Priority: 1
PIN
  return 0
}

# The backport: the only changes to Debian's packaging, each because Debian 12 lacks what
# unstable's package asks for (same style as the package's own debian/backports/ scripts).
backport() {
  local tree=$1
  # debhelper compat 14 needs debhelper >= 13.12; Debian 12 has 13.11 (compat <= 13). The
  # rules use no compat-14-only feature (execute_before/after exist since compat 10+).
  sed -i -e 's/debhelper-compat (= 14)/debhelper-compat (= 13)/' "$tree/debian/control"
  # systemd-dev was split out of systemd after Debian 12; there systemd itself ships
  # systemd.pc, the only thing the rules use it for (the unit directory).
  sed -i -e 's/^ systemd-dev,$/ systemd,/' "$tree/debian/control"
  # A local version below Debian's own, so a real package of the same version wins.
  if ! head -n1 "$tree/debian/changelog" | grep -q '~hotline12'; then
    local pkgver maint
    pkgver=$(dpkg-parsechangelog -l "$tree/debian/changelog" -S Version)
    maint="Hotline build <root@localhost>"
    {
      echo "asterisk (${pkgver}~hotline12+1) bookworm; urgency=medium"
      echo
      echo "  * Local backport to Debian 12 for Hotline (scripts/build-asterisk22.sh):"
      echo "    debhelper compat 13, systemd instead of systemd-dev."
      echo
      echo " -- $maint  $(date -R)"
      echo
      cat "$tree/debian/changelog"
    } >"$tree/debian/changelog.new"
    mv "$tree/debian/changelog.new" "$tree/debian/changelog"
  fi
}

build() {
  mkdir -p "$srcdir" "$debdir"
  if [ "$(id -u)" -ne 0 ]; then
    say "not built yet and building needs root (apt-get build-dep)"
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if add_unstable_src || ! apt-cache showsrc asterisk 2>/dev/null | grep -q '^Version: 1:22\.'; then
    apt_get update -qq
  fi
  local tree
  tree=$(find "$srcdir" -maxdepth 1 -type d -name 'asterisk-22.*' | head -n1)
  if [ -z "$tree" ]; then
    (cd "$srcdir" && apt_get source -qq asterisk/unstable)
    tree=$(find "$srcdir" -maxdepth 1 -type d -name 'asterisk-22.*' | head -n1)
  fi
  if [ -z "$tree" ]; then
    say "apt-get source asterisk/unstable gave no asterisk-22 tree"
    exit 1
  fi
  backport "$tree"
  # What Debian 12 lacks is printed before the install, for the build log.
  (cd "$tree" && dpkg-checkbuilddeps) 2>&1 | tee -a "$log" || true
  apt_get build-dep -y -qq --no-install-recommends "$tree" >>"$log" 2>&1
  local start end rc
  start=$(date +%s)
  echo "== $(date -u +%FT%TZ) dpkg-buildpackage -b -uc -us in $tree" >>"$log"
  set +e
  (
    cd "$tree" &&
      DEB_BUILD_OPTIONS=${AST22_DEB_BUILD_OPTIONS:-parallel=2 nocheck} \
        nice -n 19 dpkg-buildpackage -b -uc -us
  ) >>"$log" 2>&1
  rc=$?
  set -e
  end=$(date +%s)
  echo "$(date -u -d "@$start" +%FT%TZ) $(date -u -d "@$end" +%FT%TZ) $((end - start))s exit=$rc" >>"$attempts"
  if [ "$rc" -ne 0 ]; then
    say "dpkg-buildpackage failed (exit $rc) after $((end - start)) s; see $log"
    tail -n 30 "$log" >&2
    exit 1
  fi
  mv -f "$srcdir"/*.deb "$debdir"/
  mv -f "$srcdir"/*.buildinfo "$srcdir"/*.changes "$debdir"/ 2>/dev/null || true
  echo "$(dpkg-parsechangelog -l "$tree/debian/changelog" -S Version) in $((end - start)) s" >"$debdir/.done"
  say "built in $((end - start)) s"
}

[ -f "$debdir/.done" ] || build

if [ ! -x "$root/usr/sbin/asterisk" ]; then
  rm -rf "$root.new"
  mkdir -p "$root.new"
  for pkg in "${unpack[@]}"; do
    deb=$(find "$debdir" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
    [ -n "$deb" ] || { say "no $pkg .deb in $debdir"; exit 1; }
    dpkg-deb -x "$deb" "$root.new"
  done
  # Sounds and music on hold are version-independent packages, installed for the system's
  # Asterisk (scripts/install-system-deps.sh); the unpacked one uses the same folders.
  for d in sounds moh; do
    rm -rf "$root.new/usr/share/asterisk/$d"
    ln -s "/usr/share/asterisk/$d" "$root.new/usr/share/asterisk/$d"
  done
  rm -rf "$root"
  mv "$root.new" "$root"
fi
# Its run-time libraries come from Debian 12 (they were installed with the build
# dependencies on the build machine; on another machine install them from the .debs' Depends).
missing=$(LD_LIBRARY_PATH="$root/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)" \
  ldd "$root/usr/sbin/asterisk" | awk '/not found/{print $1}')
if [ -n "$missing" ]; then
  say "libraries missing for $root/usr/sbin/asterisk: $missing"
  exit 1
fi
echo "$root/usr/sbin/asterisk"
