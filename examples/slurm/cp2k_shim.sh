# Sourced by the CP2K batch scripts: shared scratch for CP2K run folders and a `cp2k.psmp` shim on
# PATH that runs the image's CP2K 2023.1 (Apptainer's hybrid MPI model: srun starts the ranks on the
# host, each rank runs inside the image). Needs IMAGE set; exports TMPDIR, PATH and SLURM_MPI_TYPE.
# IMAGE=none puts no shim on PATH: srun then starts the host's own cp2k.psmp (e.g. Debian's, built
# against the host's Open MPI, which speaks PMIx to Slurm's mpi/pmix plugin).
export SLURM_MPI_TYPE=${SLURM_MPI_TYPE:-pmix}
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

# Shared scratch for CP2K run folders (the engine's temporary folders follow TMPDIR).
export TMPDIR=$PWD/.cp2k_scratch/${SLURM_JOB_ID:-local}${SLURM_ARRAY_TASK_ID:+-$SLURM_ARRAY_TASK_ID}
mkdir -p "$TMPDIR"
if [[ $IMAGE == none ]]; then
    command -v cp2k.psmp >/dev/null || { echo "nepbench: IMAGE=none but no cp2k.psmp on PATH (apt-get install cp2k)" >&2; exit 1; }
else
    SHIM=$TMPDIR/bin
    mkdir -p "$SHIM"
    cat > "$SHIM/cp2k.psmp" <<SHIM_EOF
#!/bin/sh
exec apptainer exec --bind "$PWD" "$IMAGE" cp2k.psmp "\$@"
SHIM_EOF
    chmod +x "$SHIM/cp2k.psmp"
    export PATH=$SHIM:$PATH
fi
