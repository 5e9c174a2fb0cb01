"""How computation runs, for training, evaluation and the pipeline alike: the device, numeric precision
(mixed-precision autocast), free memory and the CPU memory allocator, and private random streams.
(The CPU thread count is training's alone: training/threads.py.)

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
import os
import sys

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


def noise_generator(device: torch.device, seed: int) -> torch.Generator:
    """A private random stream (evaluation's noise, prior samples, decoding draws), so results are reproducible
    from `seed` and training's stream is untouched."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
