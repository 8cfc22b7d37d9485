"""How busy this machine's cores are: the CPU that other processes used on the cores this process
may use (its affinity mask, e.g. a Slurm allocation) while something ran, from /proc/stat, and the
warning when that left a CP2K run fewer idle cores than it has ranks. Used where CP2K is timed (the
throughput task, the CP2K tuning study)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection
from typing import TypeVar

T = TypeVar("T")


def _busy_jiffies(cpus: Collection[int] | None = None) -> int:
    """CPU time the cores `cpus` (None: all) spent busy since boot (user, nice, system, irq,
    softirq, steal), in clock ticks, from /proc/stat's `cpuN` lines (its first line for all)."""
    with open("/proc/stat", encoding="ascii") as handle:
        lines = handle.read().splitlines()
    total = 0
    for line in lines:
        name, *values = line.split() or [""]
        suffix = name[3:]
        if not (name == "cpu" if cpus is None else name.startswith("cpu") and suffix.isdigit() and int(suffix) in cpus):
            continue
        user, nice, system, _idle, _iowait, irq, softirq, steal = ([int(x) for x in values] + [0] * 8)[:8]
        total += user + nice + system + irq + softirq + steal
    return total


def _usable_cpu_ids() -> set[int] | None:
    """The CPU ids of this process's affinity mask (a Slurm allocation), None where unknown."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def other_cores_busy_while(run: Callable[[], T]) -> tuple[T, float | None]:
    """(run(), cores' worth of CPU that processes other than this one and its finished children
    used on this process's cores while `run` ran), the second None where /proc/stat cannot be read.

    Measured over the run itself, so work that starts after CP2K does is seen; on the cores this
    process may use (its affinity mask), so a busy core outside a Slurm allocation does not count
    and one inside it does. `run`'s subprocesses (CP2K's MPI ranks) are reaped children and count
    as this process's own. A 1-minute load average would count the suite's own NEP runs of the
    minute before as other work."""
    try:
        cpus, ticks, own = _usable_cpu_ids(), os.sysconf("SC_CLK_TCK"), os.times()
        busy, start = _busy_jiffies(cpus), time.monotonic()
    except (OSError, ValueError, AttributeError):
        return run(), None
    result = run()
    try:
        busy_after, end, own_after = _busy_jiffies(cpus), time.monotonic(), os.times()
    except (OSError, ValueError, AttributeError):
        return result, None
    own_s = sum(getattr(own_after, k) - getattr(own, k)
                for k in ("user", "system", "children_user", "children_system"))
    return result, max(0.0, ((busy_after - busy) / ticks - own_s) / max(end - start, 1e-9))


def other_cores_busy(window_s: float = 1.0) -> float | None:
    """`other_cores_busy_while` over `window_s` seconds of sleep."""
    return other_cores_busy_while(lambda: time.sleep(window_s))[1]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a Slurm allocation), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


#: Cores' worth of other processes' CPU tolerated beside CP2K's ranks (system noise; an idle
#: machine of the CI kind reads ~0.02): beyond it, a rank shares its core and waits in lockstep.
BUSY_SLACK_CORES = 0.2


def busy_cores_note(busy_during: float | None, ranks: int, cores: int | None) -> str | None:
    """A warning when other processes, while CP2K was timed, left fewer idle cores than CP2K has
    ranks, beyond BUSY_SLACK_CORES (`busy_during`: cores' worth of their CPU use on the `cores`
    this process may use, `other_cores_busy_while`)."""
    if busy_during is None or not cores:
        return None
    if busy_during + ranks > cores + BUSY_SLACK_CORES:
        return (f"the machine was busy when CP2K was timed (other processes used {busy_during:.2f} of the "
                f"{cores} cores this process may use while CP2K ran; CP2K on {ranks} ranks): CP2K's s/step "
                f"may be inflated, and the ratio with it")
    return None


def idle_cores(window_s: float = 0.5) -> int:
    """Cores of this process's affinity mask that other processes left idle over `window_s`
    seconds (at least 1; all of them where /proc/stat cannot be read). A core counts as idle when
    other work used less than 1 − BUSY_SLACK_CORES of it: OpenMP threads on a core that another
    process keeps busy spin in lockstep with it, so NEP on 2 threads beside one busy core runs
    many times slower than on 1 (docs/architecture.md, "CPU threads")."""
    busy = other_cores_busy(window_s)
    cores = usable_cores()
    if busy is None:
        return cores
    return max(1, min(cores, int(cores - busy + BUSY_SLACK_CORES)))
