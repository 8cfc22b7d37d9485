#!/bin/sh
# nepbench container entrypoint (Containerfile ENTRYPOINT, apptainer %runscript and %apprun).
# Sets what GPUMD, CP2K and Open MPI need so users don't have to, then runs nepbench.
#   docker run IMAGE                          the default job: the paper suite (below)
#   docker run IMAGE run /opt/nepbench/suites/quick.toml --out /results
#   docker run IMAGE nepbench selftest        (a leading "nepbench" is accepted and dropped)
# NEPBENCH_EXEC=<program> runs that program instead of nepbench (used by the apptainer apps).
# Every variable keeps a value the user already set. The exit status is nepbench's (or the
# program's); the default job exits 2 at once when no GPU is visible or the selftest fails.

# CP2K's OpenMP threads need large stacks; so does GPUMD's host code for big cells.
export OMP_STACKSIZE="${OMP_STACKSIZE:-512M}"
# Open MPI refuses to start as root (docker's default user) without both of these.
export OMPI_ALLOW_RUN_AS_ROOT="${OMPI_ALLOW_RUN_AS_ROOT:-1}"
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}"
# Cross-memory-attach is blocked by docker's default seccomp profile; plain shared memory works.
export OMPI_MCA_btl_vader_single_copy_mechanism="${OMPI_MCA_btl_vader_single_copy_mechanism:-none}"
# The image is read-only under apptainer: matplotlib needs a writable config folder.
export MPLCONFIGDIR="${MPLCONFIGDIR:-${TMPDIR:-/tmp}/nepbench-mpl-$(id -u)}"

# A hard limit below "unlimited" makes this fail; that is fine, the soft limit stays as it was.
ulimit -s unlimited 2>/dev/null || true

if [ -n "${NEPBENCH_EXEC:-}" ]; then
    exec "$NEPBENCH_EXEC" "$@"
fi
if [ "$#" -eq 0 ]; then
    # The default job (no arguments): the paper suite into /results when a host folder is bound
    # there (--bind DIR:/results or -v DIR:/results: a mount point in /proc/self/mountinfo), else
    # ./results when /results is read-only (an Apptainer image with nothing bound; Apptainer binds
    # the working folder). A writable /results that is no mount point is the container's own
    # layer (docker without -v): hours of results would be lost with the container, so it refuses.
    # Its claims are GPU measurements: without a visible NVIDIA GPU it would spend hours on the CPU
    # parts and skip the GPU tasks, so it refuses unless NEPBENCH_ALLOW_NO_GPU=1. Explicit commands
    # (selftest, run SUITE, ...) never check.
    mountinfo="${NEPBENCH_MOUNTINFO:-/proc/self/mountinfo}"
    if [ -d /results ] && [ -w /results ] && awk -v p=/results '$5 == p {m = 1} END {exit !m}' "$mountinfo" 2>/dev/null; then
        OUT=/results
    elif [ -d /results ] && [ -w /results ]; then
        echo "nepbench: /results is not bound to a host folder: the results would stay inside the container and be lost with it; run with -v DIR:/results (docker) or --bind DIR:/results (apptainer)" >&2
        exit 2
    else
        OUT="$PWD/results"
    fi
    if [ "${NEPBENCH_ALLOW_NO_GPU:-0}" != 1 ] && ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
        echo "nepbench: no GPU visible: run with --nv (apptainer) or --gpus all (docker); set NEPBENCH_ALLOW_NO_GPU=1 to run the CPU parts anyway" >&2
        exit 2
    fi
    # A GPUMD build this GPU or driver cannot run (another arch, an old driver) would fail only at
    # the throughput task, hours in: the selftest (model, NEP on the CPU, a short GPUMD run; a few
    # seconds) checks it before the suite starts.
    if ! nepbench selftest --skip-cp2k; then
        echo "nepbench: the selftest failed (above): not starting the paper suite" >&2
        exit 2
    fi
    set -- run /opt/nepbench/suites/paper.toml --out "$OUT"
fi
while [ "${1:-}" = "nepbench" ]; do  # %apprun nepbench passes one; the user may give another
    shift
done
exec nepbench "$@"
