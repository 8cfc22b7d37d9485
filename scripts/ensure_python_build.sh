#!/usr/bin/env bash
# Make sure this machine can make the .venv and build the pinned packages that PyPI ships as source
# only (calorine 4.1 compiles a C++17 extension): Python's venv module, Python headers and a C++
# compiler. Installs Debian's python3-venv, python3-dev and build-essential with apt-get when one
# is missing and we are root; otherwise prints one line saying how. Exit 0 when all are there.
set -u
PYTHON=${PYTHON:-python3}
missing=()
"$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3-venv)
headers=$("$PYTHON" -c "import sysconfig, os; print(os.path.isfile(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" 2>/dev/null)
[ "$headers" = "True" ] || missing+=(python3-dev)
command -v c++ >/dev/null 2>&1 || missing+=(build-essential)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "nepbench: installing ${missing[*]} (apt-get) to build the Python environment ..."
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; then
    exit 0
  fi
  echo "nepbench: apt-get install ${missing[*]} failed" >&2
  exit 1
fi
echo "nepbench: missing ${missing[*]}; install with 'sudo apt-get install ${missing[*]}' (Debian/Ubuntu)" >&2
exit 1
