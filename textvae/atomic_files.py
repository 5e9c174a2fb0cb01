"""Files replaced atomically: a crash or a full disk mid-write leaves the previous version, never half a file."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import TextVAEError


def write_failure(error: Exception) -> str:
    """Why a write failed, in a few words: the OS's text for an errno ('No space left on device')."""
    code = getattr(error, "errno", None) or (error.args[0] if error.args and isinstance(error.args[0], int) else None)
    if getattr(error, "strerror", None):
        return error.strerror
    if code is not None:
        return os.strerror(code)
    return (str(error).splitlines() or [type(error).__name__])[0][:120]


def replace_atomically(write, target: Path) -> None:
    """Call write(tmp_path), flush it to disk, then rename over `target`; the old file survives a crash."""
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as RuntimeError
        tmp.unlink(missing_ok=True)
        reason = write_failure(error)
        raise TextVAEError(f"could not write {target} ({reason}); free disk space or choose "
                           "another --out; the previous file is kept") from None
