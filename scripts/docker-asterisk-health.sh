#!/usr/bin/env bash
# Health check of docker/Dockerfile.asterisk: ARI answers GET /ari/asterisk/info with the
# app's credentials. curl reads them from its config on stdin, so the password never shows
# in a process list (the host sees the container's processes).
set -euo pipefail
quote() { # backslash and double quote escaped for curl's config syntax
  local v=${1//\\/\\\\}
  printf '%s' "${v//\"/\\\"}"
}
printf 'user = "%s:%s"\n' "$(quote "$PBX_ARI_USER")" "$(quote "$PBX_ARI_PASSWORD")" |
  curl --config - --silent --show-error --fail --max-time 2 --output /dev/null \
    "http://${PBX_HTTP_ADDRESS}:${PBX_HTTP_PORT}/ari/asterisk/info"
