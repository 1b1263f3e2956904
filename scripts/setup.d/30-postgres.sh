#!/usr/bin/env bash
# PostgreSQL server binaries (Debian package) for the job service's tests: they start their own throwaway
# server (initdb + pg_ctl on a loopback port, as the 'postgres' user when run as root). Test mode only;
# a deployment uses its own PostgreSQL by URL (the `postgres` extra installs the psycopg2 driver).
set -euo pipefail
[ "${AISTACK_SETUP_MODE:-run}" = test ] || exit 0

have_pg() {
  command -v pg_ctl >/dev/null 2>&1 && return 0
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1
}

if have_pg; then
  echo "postgresql: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | head -1 || command -v pg_ctl)"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL server binaries are needed by tests/job_service: install the 'postgresql' package" >&2
  exit 1
fi
apt-get update -qq
# policy-rc.d keeps the package from starting its own cluster (the tests start theirs).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
have_pg
