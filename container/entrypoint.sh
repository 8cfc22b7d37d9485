#!/bin/sh
# nepbench container entrypoint (Containerfile ENTRYPOINT, apptainer %runscript and %apprun).
# Sets what GPUMD, CP2K and Open MPI need so users don't have to, then runs nepbench.
#   docker run IMAGE run /opt/nepbench/suites/quick.toml --out /results
#   docker run IMAGE nepbench selftest        (a leading "nepbench" is accepted and dropped)
# NEPBENCH_EXEC=<program> runs that program instead of nepbench (used by the apptainer apps).
# Every variable keeps a value the user already set.

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
if [ "${1:-}" = "nepbench" ]; then
    shift
fi
exec nepbench "$@"
