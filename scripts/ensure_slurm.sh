#!/usr/bin/env bash
# Make sure Debian's Slurm and MUNGE are installed for the Slurm tests (tests/test_slurm.py, which
# start a one-node cluster of their own in a temporary folder and stop it): install them with
# apt-get when we are root, otherwise print one line saying how. Exit 0 when the daemons and client
# commands are on PATH and Slurm's PMIx plugin can load libpmix, 1 when not.
# Packages: slurm-wlm (slurmctld, slurmd, sbatch, srun ...), munge (munged) and libpmix-dev: Debian
# 12's mpi/pmix plugin dlopens pmix2/lib/libpmix.so, the unversioned name only that package ships;
# without it `srun --mpi=pmix` cannot start Open MPI ranks (CP2K under srun).
# Installing starts no daemon the tests use; where the package scripts start the system's own
# services, those read /etc and do not touch the tests' cluster.
set -u
PROGRAMS="slurmctld slurmd sbatch srun squeue scancel scontrol munged"
LIBPMIX=/usr/lib/x86_64-linux-gnu/pmix2/lib/libpmix.so
[ "$(dpkg --print-architecture 2>/dev/null)" = arm64 ] && LIBPMIX=/usr/lib/aarch64-linux-gnu/pmix2/lib/libpmix.so
export PATH="$PATH:/usr/sbin:/sbin"
missing() {
  local p out=""
  for p in $PROGRAMS; do command -v "$p" >/dev/null 2>&1 || out="$out $p"; done
  [ -e "$LIBPMIX" ] || out="$out $LIBPMIX"
  echo "${out# }"
}
if [ -z "$(missing)" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "nepbench: installing Debian's slurm-wlm, munge and libpmix-dev (apt-get) for the Slurm tests ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq slurm-wlm munge libpmix-dev >/dev/null
  gone=$(missing)
  if [ -z "$gone" ]; then exit 0; fi
  echo "nepbench: apt-get install slurm-wlm munge libpmix-dev left out: $gone; the Slurm tests will be skipped" >&2
  exit 1
fi
echo "nepbench: Slurm not usable (missing: $(missing)); install it with 'sudo apt-get install slurm-wlm munge libpmix-dev' (Debian 12: Slurm 22.05); the Slurm tests will be skipped (they also need root)" >&2
exit 1
