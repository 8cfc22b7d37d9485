#!/usr/bin/env bash
# Make sure Debian's CP2K (cp2k.psmp + mpirun) is installed: install it with apt-get when we are root,
# otherwise print one line saying how. Exit 0 when CP2K is usable, 1 when it is not. A CP2K of
# another version than pins.toml's (the reference data were labelled with Debian bookworm's 2023.1)
# is usable but named in one line: its labels and timings are not the reference's.
set -u
usable() { command -v cp2k.psmp >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1; }
version_note() {
  local want got
  want=$(sed -n '/^\[cp2k\]/,/^\[/s/^version = "\(.*\)"/\1/p' pins.toml 2>/dev/null | head -n 1)
  got=$(cp2k.psmp --version 2>/dev/null | sed -n 's/^ *CP2K version \([^ ]*\).*/\1/p' | head -n 1)
  if [ -n "$want" ] && [ "$got" != "$want" ]; then
    echo "nepbench: cp2k.psmp is version '${got:-unknown}', not pins.toml's $want (Debian bookworm's): CP2K results will not match the reference's" >&2
  fi
}
if usable; then
  version_note
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "nepbench: installing Debian's cp2k (apt-get) ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq cp2k >/dev/null
  if usable; then version_note; exit 0; fi
  echo "nepbench: apt-get install cp2k did not give cp2k.psmp and mpirun; CP2K tests and reference builds will be skipped" >&2
  exit 1
fi
echo "nepbench: CP2K not found; install it with 'sudo apt-get install cp2k' (Debian 12 bookworm: CP2K 2023.1); CP2K steps will be skipped" >&2
exit 1
