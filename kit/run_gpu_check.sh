#!/usr/bin/env bash
# The GPU check in one command on a bare GPU node with no network: the folder `make device-kit`
# assembles (dist/device-kit) holds this script, GPUMD built for sm_90, the cp312 wheels such a node
# lacks, the models and the nepbench tree (docs/gpumd.md, "The device kit").
#   bash run_gpu_check.sh [--dry-run] [--out DIR] [--python PY]
# Without a GPU (nvidia-smi missing, failing or listing none) it stops at once, exit 2, unless
# --dry-run, which does everything but the GPU work: install into a temporary folder, import check,
# model hashes, GPUMD's libraries, `nepbench selftest --skip-cp2k`, the GPU tests collected, and the
# suite tasks it would run, listed.
# Steps (each logged to OUT/run.log; OUT default ./gpu-check-<UTC time>):
#  1. python (PY, default python3) must be the kit's version (3.12); the kit's wheels go with
#     `pip install --no-index --no-deps --target` into a temporary folder, the tree beside them,
#     both on PYTHONPATH (nothing is installed on the node; the folder is removed at the end);
#  2. GPUMD: its CUDA libraries from the node (the Python's nvidia/*/lib wheels, /usr/local/cuda,
#     or KIT_CUDA_LIBS first), checked with scripts/check_gpumd.sh; where they do not resolve or the
#     GPU's arch is not in the build, GPUMD is rebuilt for it with the node's nvcc when the kit
#     carries the source (gpumd-src.tar.xz), else exit 2;
#  3. `nepbench selftest --skip-cp2k` (GPUMD single point vs the CPU NEP), then `pytest -m gpu`;
#  4. the suite (KIT_SUITE, default suites/gpu-check.toml): its throughput tasks first (the
#     identical-N rows are the first thing each computes), then the rest in suite order (KIT_TASKS="id
#     ..." replaces the list), one `nepbench run --task` each within what is left of KIT_BUDGET_S
#     (default 480 s from the start), so a cut-off run keeps every finished task's record
#     (OUT/suite/tasks/); then `nepbench report` and `nepbench verify --strict`.
# Exit status: 0 every step passed, 1 a step failed (named in the log), 2 cannot run here (no GPU,
# wrong Python, a missing module, GPUMD unusable, not a built kit).
set -uo pipefail
kit=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dry=0
out=""
py=${KIT_PYTHON:-python3}
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --out) out=${2:?--out needs a folder}; shift ;;
    --python) py=${2:?--python needs an interpreter}; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_gpu_check: unknown argument '$1' (--dry-run, --out DIR, --python PY)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$dry" = 0 ] && { ! gpus=$(nvidia-smi -L 2>/dev/null) || ! grep -q '^GPU ' <<<"$gpus"; }; then
  echo "run_gpu_check: no GPU visible (nvidia-smi missing or lists none): run it on a GPU node, or with --dry-run" >&2
  exit 2
fi
stop() { echo "run_gpu_check: $*" >&2; exit 2; }
[ -f "$kit/KIT.json" ] || stop "$kit holds no KIT.json: not a built kit (make device-kit writes dist/device-kit)"
budget=${KIT_BUDGET_S:-480}
out=${out:-$PWD/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out" || stop "cannot create $out"
out=$(cd "$out" && pwd)
exec > >(tee -a "$out/run.log") 2>&1
tmp=$(mktemp -d -t nepbench-kit.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failed=()
say() { echo "== [$((SECONDS))s] $*"; }
step() {  # step NAME TIMEOUT_S COMMAND...: run, log, count a failure
  local name=$1 limit=$2
  shift 2
  say "$name: $*"
  timeout -k 10 "$limit" "$@"
  local rc=$?
  [ "$rc" -eq 0 ] && return 0
  [ "$rc" -eq 124 ] && echo "== $name: stopped after ${limit}s"
  failed+=("$name (exit $rc)")
  return "$rc"
}
kit_field() { "$py" -c "import json, sys; print(json.load(open(sys.argv[1]))$1)" "$kit/KIT.json"; }
say "kit $(kit_field "['nepbench']['describe']") ($kit), out $out, budget ${budget}s, dry run $dry"
[ "$dry" = 1 ] || { echo "${gpus}" | sed 's/^/== /'; nvidia-smi > "$out/nvidia-smi.txt" 2>&1; }

# 1. Python, wheels, tree --------------------------------------------------------------------
want=$(kit_field "['python']") || stop "$py cannot read $kit/KIT.json"
have=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$have" = "$want" ] || stop "$py is Python $have; the kit's wheels are for $want (--python PY)"
tar -xzf "$kit/nepbench-src.tar.gz" -C "$tmp" && tar -xJf "$kit/gpumd.tar.xz" -C "$tmp" \
  || stop "cannot unpack the kit's archives into $tmp"
"$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
  --target "$tmp/site" "$kit"/wheels/*.whl || stop "pip could not install the kit's wheels (above)"
tree=$tmp/nepbench
mkdir -p "$tmp/bin" "$tmp/mpl"
printf '#!/bin/sh\nexec %q -c "import sys; from nepbench.cli import main; sys.argv[0] = \\"nepbench\\"; sys.exit(main())" "$@"\n' \
  "$py" > "$tmp/bin/nepbench"
chmod +x "$tmp/bin/nepbench"
cp -r "$kit/cache" "$tmp/cache"
export PYTHONPATH=$tree/src:$tmp/site${PYTHONPATH:+:$PYTHONPATH}
export PATH=$tmp/bin:$tmp/site/bin:$PATH NEPBENCH_CACHE=$tmp/cache MPLCONFIGDIR=$tmp/mpl MPLBACKEND=Agg
# the unpacked tree has no .git: records name the commit the kit was built from (provenance.git_commit)
NEPBENCH_COMMIT=$(kit_field "['nepbench']['commit']") && export NEPBENCH_COMMIT
missing=$("$py" - <<'EOF'
import importlib.util
names = ["numpy", "scipy", "pandas", "matplotlib", "sklearn", "tqdm", "pytest", "ase", "calorine",
         "nep_adapters", "nepbench"]
print(" ".join(n for n in names if importlib.util.find_spec(n) is None))
EOF
) || stop "$py cannot look for modules (above)"
[ -z "$missing" ] || stop "this Python lacks $missing: add its wheel to the kit (scripts/device_kit.py)"
nepbench models list | sed 's/^/   /'

# 2. GPUMD and its CUDA libraries ---------------------------------------------------------------
libs=$("$py" - <<'EOF'
import glob, os, sys
dirs = [d for d in os.environ.get("KIT_CUDA_LIBS", "").split(":") if d]
for base in sys.path + ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]:
    for lib in sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib", "libcublas.so.*"))
                      + glob.glob(os.path.join(base, "libcublas.so.*"))):
        if os.path.dirname(lib) not in dirs:
            dirs.append(os.path.dirname(lib))
print(":".join(dirs))
EOF
)
export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
gpumd_prefix=$tmp/gpumd
built=$(sed -n 's/^cuda_archs=//p' "$gpumd_prefix/share/BUILD_INFO")
arch=""
[ "$dry" = 1 ] || arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '. ')
say "GPUMD built for sm_${built//,/ sm_}; GPU arch: ${arch:-none}; CUDA libraries from: ${libs:-none found (the loader default paths)}"
usable=1
bash "$tree/scripts/check_gpumd.sh" "$gpumd_prefix" "$built" || usable=0
if [ -n "$arch" ] && ! grep -qw "$arch" <<<"${built//,/ }" && [ "$arch" -lt "${built##*,}" ]; then
  echo "== the GPU (sm_$arch) cannot run sm_${built//,/ sm_} code"; usable=0
fi
if [ "$usable" = 0 ] && [ "$dry" = 0 ]; then
  [ -f "$kit/gpumd-src.tar.xz" ] && command -v nvcc >/dev/null \
    || stop "GPUMD cannot run here (above) and the kit carries no GPUMD source or the node no nvcc to rebuild it"
  mkdir -p "$tmp/gpumd-src" && tar -xJf "$kit/gpumd-src.tar.xz" -C "$tmp/gpumd-src"
  say "rebuilding GPUMD for sm_$arch with $(command -v nvcc)"
  bash "$tree/scripts/build_gpumd.sh" "$tmp/gpumd-src" "$tmp/gpumd-node" "$arch" || stop "the GPUMD rebuild failed"
  gpumd_prefix=$tmp/gpumd-node
  bash "$tree/scripts/check_gpumd.sh" "$gpumd_prefix" "$arch" || stop "the rebuilt GPUMD fails its checks"
elif [ "$usable" = 0 ]; then
  failed+=("check_gpumd")
fi
export PATH=$gpumd_prefix/bin:$PATH
cp "$kit/KIT.json" "$out/KIT.json"
cp "$gpumd_prefix/share/BUILD_INFO" "$out/GPUMD_BUILD_INFO"

# 3. selftest and the GPU tests ---------------------------------------------------------------
cd "$tree" || stop "no $tree"
step selftest 240 nepbench selftest --skip-cp2k
if [ "$dry" = 1 ]; then
  step gpu-tests-collected 120 "$py" -m pytest -m gpu tests/test_gpumd.py -p no:cacheprovider -q --collect-only
else
  step gpu-tests 240 "$py" -m pytest -m gpu tests/test_gpumd.py -p no:cacheprovider -ra -q \
    --junitxml="$out/pytest-gpu.xml"
fi

# 4. the suite, throughput tasks first, one task per run within the budget ----------------------
suite=${KIT_SUITE:-suites/gpu-check.toml}
if [ -n "${KIT_TASKS:-}" ]; then
  tasks=$KIT_TASKS
else
  listed=$(nepbench run "$suite" --list-tasks) || stop "nepbench cannot read $suite (above)"
  tasks="$(grep '^throughput' <<<"$listed") $(grep -v '^throughput' <<<"$listed")"
fi
for id in $tasks; do
  left=$(( budget - SECONDS - 30 ))  # 30 s kept for the report and verify
  if [ "$dry" = 1 ]; then
    say "would run: nepbench run $suite --out $out/suite --task $id --no-report"
  elif [ "$left" -lt 30 ]; then
    say "out of time: $id not run"; failed+=("$id (not run: out of time)")
  else
    step "$id" "$left" nepbench run "$suite" --out "$out/suite" --task "$id" --no-report
  fi
done
if [ "$dry" = 0 ] && [ -d "$out/suite/tasks" ]; then
  step report 120 nepbench report "$out/suite"
  step verify 60 nepbench verify --strict "$out/suite"
fi
say "done: ${#failed[@]} step(s) failed${failed:+: ${failed[*]}}; records in $out"
[ "${#failed[@]}" -eq 0 ]
