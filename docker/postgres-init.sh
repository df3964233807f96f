#!/bin/sh
# First start: a cluster with password authentication and one role and database per user of
# it (airflow, mlflow, serving), passwords from ONECOMMIT_PG_<ROLE>_PASSWORD. Then PostgreSQL
# itself, on the address compose gives it.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$ONECOMMIT_PG_SUPERUSER_PASSWORD" > "$pwfile"
    initdb --auth=scram-sha-256 --username=postgres --pwfile="$pwfile" --encoding=UTF8 >/dev/null
    rm -f "$pwfile"
    pg_ctl --wait --options="-c listen_addresses=''" start >/dev/null
    for role in airflow mlflow serving; do
        password=$(printenv "ONECOMMIT_PG_$(echo "$role" | tr a-z A-Z)_PASSWORD")
        PGPASSWORD="$ONECOMMIT_PG_SUPERUSER_PASSWORD" psql --quiet --username=postgres \
            --set=ON_ERROR_STOP=1 --set=role="$role" --set=password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
SQL
    done
    pg_ctl --wait stop >/dev/null
fi
exec postgres -c listen_addresses="${ONECOMMIT_PG_LISTEN:-127.0.0.1}" -c port="${ONECOMMIT_PG_PORT:-5432}"
