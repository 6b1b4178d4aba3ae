"""The one domain exception family. Pure modules raise these and never print; the CLI renders
them (exit 2 for bad input, 1 for a failed run) without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


class NnctlError(Exception):
    """Bad input from the user (config, data, checkpoint, command line): exit status 2.

    ``message`` says what is wrong and names the file/key/line; ``hint`` says how to fix it.
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n  hint: {self.hint}"


class ConfigError(NnctlError):
    """The YAML config or a --set override is invalid."""


class DataError(NnctlError):
    """A dataset cannot be read or does not fit the config/checkpoint."""


class CheckpointError(NnctlError):
    """A checkpoint file is missing, corrupt, foreign or incompatible."""


class TrainingFailed(NnctlError):
    """Training could not go on (e.g. the loss diverged to NaN): exit status 1."""

    exit_code = 1


def did_you_mean(word: str, options: Sequence[str]) -> str | None:
    """ "did you mean 'x'?" for the option closest to a misspelt ``word``, or None when none is close.
    The one suggestion rule for config keys and names, data columns, builtins and sweep keys."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else None


def unknown_key_suffix(word: str, options: Sequence[str]) -> str:
    """What follows "unknown key": "; did you mean 'x'?", else "; valid keys: a, b" (or nothing)."""
    suggestion = did_you_mean(word, options)
    if suggestion:
        return f"; {suggestion}"
    return f"; valid keys: {', '.join(options)}" if options else ""
