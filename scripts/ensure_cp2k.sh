#!/usr/bin/env bash
# Make sure Debian's CP2K (cp2k.psmp + mpirun) is installed: install it with apt-get when we are root,
# otherwise print one line saying how. Exit 0 when CP2K is usable, 1 when it is not.
set -u
if command -v cp2k.psmp >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "nepbench: installing Debian's cp2k (apt-get) ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq cp2k >/dev/null
  if command -v cp2k.psmp >/dev/null 2>&1; then exit 0; fi
  echo "nepbench: apt-get install cp2k failed; CP2K tests and reference builds will be skipped" >&2
  exit 1
fi
echo "nepbench: CP2K not found; install it with 'sudo apt-get install cp2k' (Debian/Ubuntu); CP2K steps will be skipped" >&2
exit 1
