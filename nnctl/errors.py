"""The one domain exception family. Pure modules raise these and never print; the CLI renders
them (exit 2 for bad input, 1 for a failed run) without a traceback."""

from __future__ import annotations


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
