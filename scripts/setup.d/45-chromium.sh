#!/usr/bin/env bash
# Test mode only: Chromium from Debian for the lab extension's browser test (tests/labextension/test_browser.py),
# driven by playwright-core (a devDependency in package.json, installed by 40-labextension.sh) with
# executablePath /usr/bin/chromium: Playwright's own browser downloads are not reachable here.
set -euo pipefail
[ "${AISTACK_SETUP_MODE:-run}" = test ] || exit 0
if command -v chromium >/dev/null 2>&1; then
  echo "chromium: $(chromium --version 2>/dev/null || echo present)"
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  echo "chromium: $(chromium --version)"
else
  echo "chromium is needed for the browser test: install Debian's chromium package (apt-get install chromium)" >&2
  exit 1
fi
