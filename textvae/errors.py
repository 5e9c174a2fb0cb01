"""The exceptions users see: TextVAEError, a clear one-line message saying what is wrong, where, and how to fix it;
and TrainingInterrupted, training stopped by a signal with its work checkpointed."""

from pathlib import Path


class TextVAEError(ValueError):
    """A user-facing error (bad file, config, argument or run dir); the CLI prints it as one line."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped at a SIGINT (Ctrl-C) or SIGTERM after finishing its step and checkpointing it; a
    KeyboardInterrupt, so callers that catch Ctrl-C catch this too. `exit_code` is 128 + the signal number,
    as a shell reports a process the signal ended."""

    def __init__(self, signal_name: str, exit_code: int, step: int, out_dir):
        checkpoint = Path(out_dir) / "checkpoint.pt"
        super().__init__(f"{signal_name}: stopped after step {step}, kept in {checkpoint}; continue with: "
                         f"textvae train --out {out_dir} --resume")
        self.signal_name, self.exit_code, self.step = signal_name, exit_code, step
