#!/usr/bin/env bash
# Make sure a headless Chromium is installed for the report render test (tests/test_report.py): install
# Debian's chromium with apt-get when we are root, otherwise print one line saying how.
# Exit 0 when /usr/bin/chromium is usable, 1 when it is not (the render test is then skipped).
set -u
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "nepbench: installing Debian's chromium (apt-get) for the report render test ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null
  if [ -x /usr/bin/chromium ]; then exit 0; fi
  echo "nepbench: apt-get install chromium failed; the headless report render test will be skipped" >&2
  exit 1
fi
echo "nepbench: chromium not found; install it with 'sudo apt-get install chromium' (Debian/Ubuntu); the report render test will be skipped" >&2
exit 1
