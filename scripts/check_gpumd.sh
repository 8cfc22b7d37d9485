#!/usr/bin/env bash
# Check a GPUMD build without needing a GPU: `make gpumd` runs it after the build, and the device
# kit runs it on the GPU node before any GPU work.
#   scripts/check_gpumd.sh PREFIX [ARCHS]
# PREFIX: holds bin/gpumd and bin/nep (scripts/build_gpumd.sh's layout).
# ARCHS:  compute capabilities such as "90" or "80,90" that must be in the binaries as SASS
#         (default: the cuda_archs line of PREFIX/share/BUILD_INFO).
# Checks, each printed as one "ok"/"FAILED" line:
#  1. ldd finds every library both binaries load (on LD_LIBRARY_PATH, the RPATH or ldconfig's paths);
#  2. `cuobjdump --list-elf` lists an sm_XX cubin for every arch (skipped, said so, when cuobjdump
#     is not on PATH and CHECK_CUOBJDUMP is not 1);
#  3. `gpumd` started in an empty folder ends by itself within 60 s with an exit status, not a
#     signal (no GPU: it must fail cleanly; with one: it stops for want of run.in).
# Exit status: 0 all passed, 1 a check failed, 2 bad arguments.
set -uo pipefail
if [ $# -lt 1 ] || [ ! -x "$1/bin/gpumd" ] || [ ! -x "$1/bin/nep" ]; then
  echo "usage: $0 PREFIX [ARCHS]  (PREFIX/bin/gpumd and PREFIX/bin/nep must exist)" >&2
  exit 2
fi
prefix=$1
archs=${2:-}
if [ -z "$archs" ] && [ -f "$prefix/share/BUILD_INFO" ]; then
  archs=$(sed -n 's/^cuda_archs=//p' "$prefix/share/BUILD_INFO")
fi
failed=0
ok() { echo "check_gpumd: ok      $*"; }
bad() { echo "check_gpumd: FAILED  $*"; failed=$((failed + 1)); }

for exe in gpumd nep; do
  if ! out=$(ldd "$prefix/bin/$exe" 2>&1); then
    bad "ldd $exe: $out"
  elif missing=$(grep "not found" <<<"$out"); then
    bad "ldd $exe: $(echo "$missing" | awk '{print $1}' | paste -sd' ' -) not found (LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-})"
  else
    ok "ldd $exe: $(grep -c '=>' <<<"$out") libraries, $(grep -o 'libcu[a-zA-Z]*\.so\.[0-9]*' <<<"$out" | sort -u | paste -sd' ' -)"
  fi
done

if command -v cuobjdump >/dev/null; then
  for exe in gpumd nep; do
    listed=$(cuobjdump --list-elf "$prefix/bin/$exe" 2>&1 | grep -o 'sm_[0-9]*[a-z]*' | sort -u | paste -sd' ' -)
    for arch in ${archs//,/ }; do
      if grep -qw "sm_$arch" <<<"$listed"; then ok "cuobjdump $exe: sm_$arch ($listed)"
      else bad "cuobjdump $exe: no sm_$arch cubin (lists: ${listed:-none})"; fi
    done
    [ -n "$archs" ] || bad "cuobjdump $exe: no ARCHS given and no BUILD_INFO to read them from"
  done
elif [ "${CHECK_CUOBJDUMP:-}" = 1 ]; then
  bad "cuobjdump is not on PATH (CHECK_CUOBJDUMP=1)"
else
  echo "check_gpumd: skipped cuobjdump (not on PATH)"
fi

run_dir=$(mktemp -d)
gpumd_abs=$(cd "$prefix/bin" && pwd)/gpumd
(cd "$run_dir" && exec timeout -k 5 60 "$gpumd_abs" </dev/null >out.log 2>&1)
rc=$?
# what it said: GPUMD's "Error text:" line, else its last line with words in it
last=$(grep -m 1 'Error text:' "$run_dir/out.log" || grep '[[:alnum:]]' "$run_dir/out.log" | tail -n 1)
last=$(echo "$last" | sed 's/^[[:space:]]*//; s/[[:space:]]\{2,\}/ /g')
if [ "$rc" -eq 124 ] || [ "$rc" -ge 128 ]; then
  bad "gpumd in an empty folder: killed or crashed (exit $rc): $last"
else
  ok "gpumd in an empty folder ended cleanly (exit $rc): $last"
fi
rm -rf "$run_dir"
if [ "$failed" -gt 0 ]; then echo "check_gpumd: $failed check(s) failed"; exit 1; fi
echo "check_gpumd: all checks passed"
