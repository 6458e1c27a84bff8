#!/usr/bin/env bash
# Entry point of docker/Dockerfile.asterisk: renders the development PBX templates
# (devenv/pbx/, copied to $TEMPLATES) into /etc/asterisk and runs Asterisk in the
# foreground. Each {{name}} placeholder takes the environment variable PBX_<NAME> (upper
# case); a placeholder without a variable stops the container with one clear line.
# asterisk.conf is not rendered: the package's standard directories are used.
# Desk phones: PBX_PHONE_LIST="1001=192.0.2.11:5060 1002=192.0.2.12:5060" renders
# pjsip-phone.conf once per phone (identified by its address, reached at that contact) and
# lets phones dial each other by extension.
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
# ari.conf stores only a crypt(3) hash (password_format = crypt), never the password;
# 1000 rounds, as devenv/asterisk.py explains: Asterisk checks it on every ARI request.
ari_salt=$(openssl rand -hex 8)
PBX_ARI_PASSWORD_CRYPT=$(printf '%s' "$PBX_ARI_PASSWORD" |
  openssl passwd -6 -salt "rounds=1000\$$ari_salt" -stdin)
export PBX_ARI_PASSWORD_CRYPT

phones="" extensions=""
for entry in ${PBX_PHONE_LIST:-}; do
  if [[ ! $entry =~ ^([0-9A-Za-z_-]+)=([0-9A-Fa-f.:]+):([0-9]+)$ ]]; then
    echo "hotline-asterisk: PBX_PHONE_LIST entry '$entry' is not ext=address:port" >&2
    exit 1
  fi
  PBX_EXT=${BASH_REMATCH[1]} PBX_ADDRESS=${BASH_REMATCH[2]} PBX_PORT=${BASH_REMATCH[3]} \
    PBX_NAME="Phone ${BASH_REMATCH[1]}" PBX_CONTEXT=hotline-phones
  export PBX_EXT PBX_ADDRESS PBX_PORT PBX_NAME PBX_CONTEXT
  phones+=$(render "$templates/pjsip-phone.conf")$'\n'
  extensions+="exten => $PBX_EXT,1,Dial(PJSIP/$PBX_EXT,60)"$'\n'" same => n,Hangup()"$'\n'
done
export PBX_PHONES=${PBX_PHONES:-$phones} PBX_PHONE_EXTENSIONS=${PBX_PHONE_EXTENSIONS:-$extensions}

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
