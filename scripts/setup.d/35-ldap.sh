#!/usr/bin/env bash
# OpenLDAP server and client tools (Debian packages slapd, ldap-utils) for the directory sign-in tests
# (tests/ldap): they start their own slapd (slapd -f with a generated config, in a temp folder, on a free
# loopback port). Test mode only; a deployment signs in against its own directory (docs/ldap.md).
set -euo pipefail
[ "${AISTACK_SETUP_MODE:-run}" = test ] || exit 0

have_ldap() {
  { command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ]; } && command -v ldapadd >/dev/null 2>&1
}

if have_ldap; then
  echo "ldap: $(command -v slapd || echo /usr/sbin/slapd), $(command -v ldapadd)"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "slapd and ldap-utils are needed by tests/ldap: install the Debian packages 'slapd' and 'ldap-utils'" >&2
  exit 1
fi
apt-get update -qq
# policy-rc.d keeps the package from starting its own server (the tests start theirs); debconf: no questions.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils >/dev/null
have_ldap
