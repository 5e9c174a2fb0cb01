"""How computation runs: numeric precision (mixed-precision autocast) and the CPU memory allocator.

precision: fp32 | bf16 | fp16 | auto. Mixed precision keeps fp32 master weights and runs the matrix
products in the lower precision under torch.autocast; the log-softmax, losses and KL stay fp32
(modeling/output_loss.py). 'auto' picks bf16 where the hardware multiplies bf16 fast (a CUDA GPU with
bf16 support, or a CPU with AVX-512 BF16 or AMX) and fp32 elsewhere: on a CPU without those
instructions bf16 products are emulated and run hundreds of times slower than fp32.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import sys
import time

import torch

from .errors import TextVAEError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
AUTO_PRECISION_VARIABLE = "TEXTVAE_AUTO_PRECISION"  # fp32 | bf16: what precision 'auto' means (tests/conftest.py)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the Linux kernel reports (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 matrix products run natively (not emulated) on `device`."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_supports(dtype: torch.dtype) -> bool:
    """Whether oneDNN (which runs torch's CPU LSTM under autocast) has kernels for `dtype` on this CPU."""
    if dtype == torch.bfloat16:
        return torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if dtype == torch.float16:
        return torch.ops.mkldnn._is_mkldnn_fp16_supported()
    return True


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """The compute dtype that `precision` names on `device` ('auto' → bf16 where fast, else fp32; the
    environment variable TEXTVAE_AUTO_PRECISION=fp32|bf16 overrides what 'auto' picks, so a test suite or a
    cluster can fix the precision of every run that did not name one)."""
    if name == "auto":
        forced = os.environ.get(AUTO_PRECISION_VARIABLE, "").strip()
        if not forced:
            return torch.bfloat16 if bf16_is_fast(device) else torch.float32
        if forced not in ("fp32", "bf16"):
            raise TextVAEError(f"{AUTO_PRECISION_VARIABLE}={forced!r}: 'auto' can be made to mean fp32 or bf16; "
                               f"set one of those, or unset the variable")
        name = forced
    if name not in PRECISIONS:
        raise TextVAEError(f"precision: unknown value '{name}'; use one of auto, {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[name]
    if device.type == "cpu" and dtype == torch.float16:  # oneDNN's fp16 LSTM is missing or crashes on many CPUs
        raise TextVAEError("precision: fp16 is for CUDA GPUs (with loss scaling); on a CPU use bf16 (fast with "
                           "AVX-512 BF16 or AMX), fp32, or auto, which picks between them")
    if device.type == "cpu" and not cpu_supports(dtype):
        raise TextVAEError(f"precision: torch's CPU kernels for {name} (oneDNN, which runs the LSTMs) need AVX-512 "
                           f"instructions this processor lacks; use precision fp32 or auto")
    return dtype


def describe_precision(name: str, dtype: torch.dtype) -> str:
    """The precision in use, in words for a log line: 'bf16', or 'bf16 (picked by auto)'."""
    return precision_name(dtype) + (" (picked by auto)" if name == "auto" else "")


def precision_name(dtype: torch.dtype) -> str:
    """'fp32', 'bf16' or 'fp16' for a compute dtype."""
    return next(name for name, known in PRECISIONS.items() if known == dtype)


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Mixed-precision region for `dtype`, or nothing for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc reuse freed large blocks instead of returning them to the OS at every free.

    By default glibc serves blocks above 32 MB (vocabulary-sized score matrices, IW-sample batches)
    with fresh mmap pages and unmaps them on free, so every training step page-faults its big
    tensors in again, which on small virtual machines can cost more than the arithmetic on them
    (benchmarks/RESULTS.md). Raising the thresholds keeps the memory in the heap for reuse;
    peak memory is unchanged. Linux/glibc only; returns whether it applied. Process-wide, so
    textvae calls it only where it trains or evaluates.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 31))
    except (OSError, AttributeError):
        return False


def free_memory(device: torch.device) -> int | None:
    """Bytes of memory free for new tensors on `device` (Linux MemAvailable, or the GPU's free memory);
    None where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def select_device(name: str) -> torch.device:
    """'auto' picks CUDA when present, else CPU; anything else is checked before use."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TextVAEError(f"train.device: '{name}' asked for, but no CUDA GPU is available; use auto or cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise TextVAEError(f"train.device: '{name}' is not a device; use auto, cpu, cuda or cuda:N") from None


# ---- CPU threads --------------------------------------------------------------------------------------

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
    """The torch CPU thread count to use, and why (train.num_threads; textvae.training logs the reason).

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
