"""How many torch CPU threads training uses (train.num_threads; 0 = the cores not busy with other work, shared
among the training processes on this machine), decided once per process."""

from __future__ import annotations

import functools
import math
import os
import time

BUSY_SAMPLE_SECONDS = 0.25  # how long the /proc/stat sample that tells busy cores lasts
BUSY_CORE = 0.5  # a core busy this share of the sample counts as taken by other work


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask; all CPUs where that cannot be read)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _cpu_times() -> dict[int, tuple[int, int]]:
    """Per CPU, (busy, total) jiffies since boot from /proc/stat."""
    times = {}
    with open("/proc/stat", encoding="utf-8") as stat:
        for line in stat:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                values = [int(value) for value in fields[:8]]
                idle = values[3] + values[4]  # idle + iowait
                times[int(name[3:])] = (sum(values) - idle, sum(values))
    return times


def busy_shares(seconds: float = BUSY_SAMPLE_SECONDS) -> dict[int, float] | None:
    """Per CPU, the share of the next `seconds` it spent busy (this process sleeps meanwhile, so that is other
    work); None where /proc/stat cannot be read."""
    try:
        before = _cpu_times()
        time.sleep(seconds)
        after = _cpu_times()
    except (OSError, ValueError):
        return None
    shares = {}
    for cpu, (busy, total) in after.items():
        if cpu in before and total > before[cpu][1]:
            shares[cpu] = (busy - before[cpu][0]) / (total - before[cpu][1])
    return shares


def thread_count(requested: int, cpus: list[int], busy: dict[int, float] | None, load_average: float | None,
                 processes: int = 1) -> tuple[int, str]:
    """The torch CPU thread count to use, and why (train.num_threads; the trainer logs the reason).

    `requested` > 0 is used as given. 0 means: the cores this process may use (`cpus`) that are not busy
    with other work, shared among `processes` training processes on this machine, at least one. A core
    counts as busy when `busy` (per-CPU busy shares just sampled) says so for at least BUSY_CORE of the
    sample; without a sample, the 1-minute load average stands for the number of busy cores. The reason:
    torch's default (one thread per core) stalls when a core is taken: every parallel region waits for
    its slowest thread, and the thread sharing a core gets only part of it (measured: one busy core of two
    dropped a PTB training from 7,000-10,000 tokens/s on one thread to ~470 on two).
    """
    if requested > 0:
        return requested, f"train.num_threads={requested}"
    if busy is not None:
        taken = sum(1 for cpu in cpus if busy.get(cpu, 0.0) >= BUSY_CORE)
        how = f"{taken} of the {len(cpus)} usable cores busy with other work"
    elif load_average is not None:
        taken = min(len(cpus), math.floor(load_average + 0.5))
        how = f"load average {load_average:.2f} on {len(cpus)} usable cores"
    else:
        taken, how = 0, f"{len(cpus)} usable cores, their load unknown"
    threads = max(1, (len(cpus) - taken) // max(processes, 1))
    share = f", shared by {processes} processes" if processes > 1 else ""
    return threads, f"train.num_threads=0: {how}{share}: {threads} torch thread{'s' * (threads > 1)}"


@functools.cache
def choose_thread_count(requested: int, processes: int = 1) -> tuple[int, str]:
    """thread_count for this machine, decided once per process (samples /proc/stat for BUSY_SAMPLE_SECONDS
    when `requested` is 0): trainings in one process, such as a run and its resume, use the same count."""
    if requested > 0:
        return thread_count(requested, [], None, None, processes)
    from_environment = os.environ.get("OMP_NUM_THREADS", "").strip()
    if from_environment.isdigit() and int(from_environment) > 0:  # an explicit choice, as torch itself reads it
        return int(from_environment), f"train.num_threads=0: OMP_NUM_THREADS={from_environment}"
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    return thread_count(0, allowed_cpus(), busy_shares(), load, processes)
