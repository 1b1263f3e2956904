#!/usr/bin/env bash
# The sandbox of users' servers and jobs on one machine (job_runner.binding.sandbox): bubblewrap, and
# setpriv (util-linux) to drop to the user's account inside it. Needed to run (docs/security.md).
set -euo pipefail
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v useradd >/dev/null 2>&1 || need+=(passwd)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: ${need[*]} missing and not root: servers and jobs will run in single-user mode" >&2
    exit 0
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
