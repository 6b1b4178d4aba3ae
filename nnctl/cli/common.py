"""What the command modules share: argument and option types, the console, and the one signal
mechanism (``Signals``). The one error handler is ``nnctl.cli.app._Commands``, around every command.

Signals: a command that must react to SIGINT/SIGTERM wraps its work in ``with Signals(handler)``,
where ``handler(name)`` is called with "SIGINT" or "SIGTERM" (it may raise KeyboardInterrupt to stop
at once); the previous handlers come back on exit and ``received`` lists what arrived. Exit status:
143 after SIGTERM, 130 after SIGINT (``Signals.exit_code``).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)]
CheckpointArg = Annotated[
    Path, typer.Argument(help="Checkpoint (.npz) written by nnctl train.", show_default=False)
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: KEY.PATH=VALUE (VALUE is YAML). Repeatable."),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
MlflowOption = Annotated[
    str | None,
    typer.Option("--mlflow", help="Track in MLflow: sqlite:///FILE.db or http://HOST:PORT (nnctl[mlflow])."),
]
MlflowExperimentOption = Annotated[
    str | None, typer.Option("--mlflow-experiment", help="MLflow experiment [default: the config's name].")
]
TlsCaOption = Annotated[
    Path | None, typer.Option("--tls-ca-file", help="tls:// scheduler: the CA certificate (PEM).")
]
TlsCertOption = Annotated[
    Path | None, typer.Option("--tls-cert", help="tls:// scheduler: this client's certificate.")
]
TlsKeyOption = Annotated[
    Path | None, typer.Option("--tls-key", help="tls:// scheduler: this client's private key.")
]
JobsOption = Annotated[
    int | None, typer.Option("--jobs", "-j", help="Local worker processes [default: cores].")
]
DaskLocalOption = Annotated[
    int | None, typer.Option("--dask-local", help="Start a local Dask cluster of N workers.")
]


UNWRAPPED_WIDTH = 10_000  # piped or logged output: lines as long as they need to be


def make_console(stderr: bool = False) -> Any:
    """A terminal's width on a terminal; elsewhere (pipes, logs) no width limit at all, so Rich never
    crops or wraps what it prints to 80 columns. Tables fold long cells rather than cut them."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = UNWRAPPED_WIDTH
    return console


class Signals:
    """The one signal mechanism: while active, SIGINT and SIGTERM call ``handler(name)``."""

    def __init__(self, handler: Callable[[str], None]) -> None:
        self.handler = handler
        self.received: list[str] = []
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        self.handler(name)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    @property
    def exit_code(self) -> int:
        return 143 if "SIGTERM" in self.received else 130


def stop_now(name: str) -> None:
    """A ``Signals`` handler for commands that stop at once (sweep, cv): finished work is kept."""
    raise KeyboardInterrupt  # SIGTERM stops as cleanly as Ctrl-C
