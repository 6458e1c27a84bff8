#!/usr/bin/env bash
# Entry point of docker/Dockerfile.asterisk: renders the development PBX templates
# (ari_app/devenv/pbx/, copied to $TEMPLATES) into /etc/asterisk and runs Asterisk in the
# foreground. Each {{name}} placeholder takes the environment variable PBX_<NAME> (upper
# case); a placeholder without a variable stops the container with one clear line.
# asterisk.conf is not rendered: the package's standard directories are used.
# Untested on the development machines (no Docker engine there).
set -euo pipefail
templates=${TEMPLATES:-/usr/share/hotline/pbx}
dialplan=${DIALPLAN:-/usr/share/hotline/dialplan/extensions_hotline.conf}
etc=${ASTERISK_ETC:-/etc/asterisk}

render() { # render TEMPLATE > stdout
  local text name var
  text=$(<"$1")
  for name in $(grep -o '{{[a-z_][a-z0-9_]*}}' "$1" | tr -d '{}' | sort -u); do
    var="PBX_${name^^}"
    if [ -z "${!var+set}" ]; then
      echo "hotline-asterisk: $var is not set (placeholder {{$name}} in $(basename "$1"))" >&2
      exit 1
    fi
    text=${text//"{{$name}}"/"${!var}"} # quoted: & in a value stays literal
  done
  printf '%s\n' "$text"
}

: "${PBX_ARI_PASSWORD:?PBX_ARI_PASSWORD is not set (the ARI password hotline serve uses)}"
for template in "$templates"/*.conf; do
  case $(basename "$template") in
    asterisk.conf | pjsip-phone.conf) continue ;;
  esac
  render "$template" >"$etc/$(basename "$template")"
done
cp "$dialplan" "$etc/extensions_hotline.conf"
chown -R asterisk:asterisk "$etc"
chmod 0640 "$etc/ari.conf"

exec asterisk -f -U asterisk -G asterisk -vvv "$@"
