#!/bin/bash
# First start: initdb with $POSTGRES_USER/$POSTGRES_PASSWORD, create $POSTGRES_DB, run
# /docker-entrypoint-initdb.d/*.sql in it (the official image's conventions). Then, and on
# every later start, run the server on all addresses with password authentication.
set -euo pipefail
: "${PGDATA:?}" "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
SOCKETS=/var/run/postgresql

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  mkdir -p "$PGDATA" && chmod 700 "$PGDATA"
  pwfile="$(mktemp)"
  printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 \
    --auth-local=trust --auth-host=scram-sha-256
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  pg_ctl --pgdata="$PGDATA" --wait --options="-c listen_addresses='' -k $SOCKETS" start
  psql=(psql -v ON_ERROR_STOP=1 --host="$SOCKETS" --username="$POSTGRES_USER" --no-psqlrc)
  if [[ "$POSTGRES_DB" != postgres ]]; then
    "${psql[@]}" --dbname=postgres --set db="$POSTGRES_DB" <<< 'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*.sql; do
    if [[ -e "$f" ]]; then "${psql[@]}" --dbname="$POSTGRES_DB" -f "$f"; fi
  done
  pg_ctl --pgdata="$PGDATA" --wait --mode=fast stop
fi
[[ "${1:-postgres}" == postgres ]] && shift || true
exec postgres -D "$PGDATA" -c listen_addresses='*' -k "$SOCKETS" "$@"
