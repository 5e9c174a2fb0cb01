"""The one exception type users see: a clear, one-line message saying what is wrong, where, and how to fix it."""


class TextVAEError(ValueError):
    """A user-facing error (bad file, config, argument or run dir); the CLI prints it as one line."""
