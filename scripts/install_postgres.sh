#!/usr/bin/env bash
# Make PostgreSQL's server binaries (initdb, pg_ctl, postgres) available for the tests, which
# start a throwaway server themselves. Idempotent: does nothing when pg_ctl is on PATH or in
# Debian's /usr/lib/postgresql/<version>/bin. Otherwise installs Debian's `postgresql` package
# (needs root) without creating or starting the packaged cluster.
set -euo pipefail

if command -v pg_ctl >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
  exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "install_postgres.sh: pg_ctl not found; run as root (or: sudo apt-get install postgresql)" >&2
  exit 1
fi
# No `main` cluster and no service start: the tests run their own server on a temp dir.
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/ml-platform.conf
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl"
