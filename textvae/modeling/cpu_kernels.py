"""The output layer's fused softmax kernels for CPU (csrc/softmax_columns.cpp), built once per machine.

On CPU the output layer's matrix products run fast in bf16 (AMX), and what is left is memory traffic: the
score matrix (vocabulary × tokens, 29 MB in fp32 at PTB's batch) went through about eight elementwise passes
per step (convert, exponentiate, sum, subtract the targets, scale, sum for the bias, convert back). The C++
kernels read it once in the forward (in training writing the exponentials over it) and once in the backward, in
the products' own dtype (bf16, and fp32 on a CPU with AVX-512: see KERNEL_DTYPES). They are compiled with
torch.utils.cpp_extension on first use (about 25 s, then kept under ~/.cache/torch_extensions/textvae, one
build per source, torch version and CPU); without a compiler, or with
TEXTVAE_CPU_KERNELS=0, the output layer falls back to torch's elementwise operations (the same values, slower).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import platform
from pathlib import Path

import torch

from ..runtime import cpu_flags

SOURCE = Path(__file__).parent / "csrc" / "softmax_columns.cpp"
SWITCH_VARIABLE = "TEXTVAE_CPU_KERNELS"  # 0 turns the kernels off (the torch operations run instead)
logger = logging.getLogger("textvae")


def build_name() -> str:
    """The extension's name, unique per source, torch version and CPU: a build for one CPU (-march=native)
    is never loaded on another that shares the cache directory."""
    fingerprint = "\n".join([SOURCE.read_text(encoding="utf-8"), torch.__version__, platform.machine(),
                             " ".join(sorted(cpu_flags()))])
    return "textvae_softmax_columns_" + hashlib.sha256(fingerprint.encode()).hexdigest()[:12]


def build_directory(name: str) -> Path:
    """Where the extension `name` is built: textvae/<name> under torch's extension root (TORCH_EXTENSIONS_DIR,
    by default ~/.cache/torch_extensions)."""
    from torch.utils import cpp_extension

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    return Path(root) / "textvae" / name


def _import_built(name: str, directory: Path):
    """The extension built earlier in `directory`, imported as it is, or None where there is none. (torch's
    `load` would check the compiler and run ninja again in every process before importing it.)"""
    library = directory / f"{name}.so"
    if not library.is_file():
        return None
    try:
        spec = importlib.util.spec_from_file_location(name, library)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    except ImportError:  # a damaged build: torch's build step makes it again
        return None


@functools.cache
def softmax_kernels():
    """The compiled kernels (column_exp_sums, softmax_gradient_), or None where they cannot be built."""
    if os.environ.get(SWITCH_VARIABLE, "1") == "0":
        return None
    from torch.utils import cpp_extension

    name = build_name()
    directory = build_directory(name)
    built = _import_built(name, directory)
    if built is not None:
        return built
    logger.info("building textvae's fused CPU softmax kernels (once per machine and torch version, about 25 s)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return cpp_extension.load(name=name, sources=[str(SOURCE)], build_directory=str(directory),
                                  extra_cflags=["-O3", "-march=native", "-fopenmp"], verbose=False)
    except Exception as error:  # no compiler, no ninja, an unsupported platform: the torch path still works
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        logger.warning(f"textvae's CPU softmax kernels could not be built ({first_line}); the output layer runs "
                       f"on torch operations instead (slower). Set {SWITCH_VARIABLE}=0 to skip the attempt.")
        return None


# The products' dtypes the output layer uses the kernels for: bf16, and fp32 on a CPU with AVX-512, where since the
# backward scales the forward's exponentials they beat torch's operations in fp32 too (benchmarks/
# softmax_kernel_speed.py on an AMX Xeon: forward 1.05-1.45x, backward 2.1x). Not measured on an AVX2-only CPU (where
# `auto` means fp32 and 8-float vectors would run), so fp32 keeps torch's path there.
KERNEL_DTYPES = (torch.bfloat16, torch.float32) if "avx512f" in cpu_flags() else (torch.bfloat16,)


def kernels_for(scores_device: torch.device, dtype: torch.dtype):
    """The kernels where they apply (CPU, products in KERNEL_DTYPES), else None."""
    if scores_device.type != "cpu" or dtype not in KERNEL_DTYPES:
        return None
    return softmax_kernels()
