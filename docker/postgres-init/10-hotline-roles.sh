#!/usr/bin/env bash
# Runs once, when the postgres container initialises an empty data volume (the official
# image's /docker-entrypoint-initdb.d). Creates the two roles Hotline uses instead of the
# superuser:
#   hotline_owner  owns the database and its schema; the `migrate` service runs
#                  `hotline db upgrade` (DDL) as this role, then exits.
#   hotline_app    what `hotline serve` and the CLI use: connect, read and write rows,
#                  use sequences; no DDL, no TRUNCATE, not a superuser, no other database.
# Tables the owner creates later get the app's rights through default privileges, so a new
# migration needs no grant of its own.
set -euo pipefail
: "${HOTLINE_DB_OWNER_PASSWORD:?HOTLINE_DB_OWNER_PASSWORD is not set}"
: "${HOTLINE_DB_APP_PASSWORD:?HOTLINE_DB_APP_PASSWORD is not set}"
db=${HOTLINE_DB_NAME:-hotline}

# Passwords travel as psql variables (quoted by :'name'), never inside the SQL text.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
  --set owner_pw="$HOTLINE_DB_OWNER_PASSWORD" --set app_pw="$HOTLINE_DB_APP_PASSWORD" \
  --set db="$db" <<'SQL'
CREATE ROLE hotline_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_pw';
CREATE ROLE hotline_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_pw';
CREATE DATABASE :"db" OWNER hotline_owner;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO hotline_app;
SQL

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$db" <<'SQL'
-- PostgreSQL 15: public belongs to the database owner and nobody else may create in it.
ALTER SCHEMA public OWNER TO hotline_owner;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO hotline_app;
ALTER DEFAULT PRIVILEGES FOR ROLE hotline_owner IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO hotline_app;
ALTER DEFAULT PRIVILEGES FOR ROLE hotline_owner IN SCHEMA public
  GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO hotline_app;
SQL
