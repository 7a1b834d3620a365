#!/usr/bin/env bash
# Install the browser the UI test (tests/integration/test_browser.py) drives: Debian's chromium.
# Playwright is told to use /usr/bin/chromium and never downloads a browser of its own.
# Quiet when chromium is present; installs it as root on Debian/Ubuntu; elsewhere says what is missing.
set -euo pipefail
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "browser-tools: $CHROMIUM is missing; the browser test needs it." >&2
  echo "  install Debian's chromium as root (apt-get install chromium), or point CHROMIUM at a chromium binary" >&2
  exit 1
fi
echo "browser-tools: installing chromium"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -q --no-install-recommends chromium >/dev/null
[ -x "$CHROMIUM" ] || { echo "browser-tools: apt-get installed chromium but $CHROMIUM is not there" >&2; exit 1; }
