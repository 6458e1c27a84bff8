#!/usr/bin/env bash
# Entry point of the postgres stand-in (docker/standin/postgres.Dockerfile): the parts of
# the official image's docker-entrypoint.sh that docker/compose.yaml relies on.
# - Runs the server as the postgres user (started as root: fixes the data folder's owner).
# - On an empty $PGDATA: initdb with superuser $POSTGRES_USER (default postgres) and
#   password $POSTGRES_PASSWORD (required), local socket trusted, every TCP client with
#   scram-sha-256; creates $POSTGRES_DB; runs /docker-entrypoint-initdb.d/*.sh (executable:
#   run, else sourced) and *.sql against a server that listens on the socket only.
set -euo pipefail

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
export POSTGRES_USER POSTGRES_DB

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set (password of the superuser)}"
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER")
  if [ "$POSTGRES_DB" != postgres ]; then
    "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh)
        echo "postgres-entrypoint: running $f" >&2
        if [ -x "$f" ]; then "$f"; else . "$f"; fi
        ;;
      *.sql)
        echo "postgres-entrypoint: running $f" >&2
        "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f"
        ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "postgres-entrypoint: database initialised" >&2
fi

if [ "${1:-}" = postgres ]; then
  exec postgres -c listen_addresses='*' "${@:2}"
fi
exec "$@"
