"""The CLI's two shared mechanisms: the one NnctlError handler that every command runs under
(nnctl/cli/app.py), and the one signal mechanism (nnctl/cli/common.py). A command added the usual
way gets both."""

from __future__ import annotations

import os
import signal
import sys

import pytest
import typer
from typer.testing import CliRunner

from nnctl.cli.app import _Commands
from nnctl.cli.common import Signals
from nnctl.errors import ConfigError, TrainingFailed


def app_with_a_new_command() -> typer.Typer:
    app = typer.Typer(cls=_Commands, pretty_exceptions_enable=False, rich_markup_mode=None)

    @app.command()
    def fails(kind: str) -> None:
        if kind == "config":
            raise ConfigError(
                "config.yaml: training.epochs = 0: must be positive", hint="set it to 1 or more"
            )
        raise TrainingFailed("training diverged")

    @app.command()
    def other() -> None:  # a group needs two commands to keep its subcommand names
        pass

    return app


@pytest.mark.parametrize(
    ("kind", "code", "expected"),
    [
        (
            "config",
            2,
            "error: config.yaml: training.epochs = 0: must be positive\n  hint: set it to 1 or more",
        ),
        ("failed", 1, "training failed: training diverged"),
    ],
)
def test_a_new_command_gets_the_one_error_handler(kind: str, code: int, expected: str) -> None:
    result = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"}).invoke(
        app_with_a_new_command(), ["fails", kind]
    )
    assert result.exit_code == code
    assert not isinstance(result.exception, ConfigError | TrainingFailed)  # handled, not raised
    assert expected in result.stderr
    assert "Traceback" not in result.output


def test_the_cli_module_catches_nnctl_error_in_one_place() -> None:
    source = sys.modules["nnctl.cli.app"].__file__ or ""
    with open(source, encoding="utf-8") as handle:
        assert handle.read().count("except NnctlError") == 1


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_reach_the_handler_and_the_old_handlers_come_back(sig: signal.Signals, code: int) -> None:
    before = signal.getsignal(sig)
    seen: list[str] = []
    with Signals(seen.append) as signals:
        assert signal.getsignal(sig) != before
        os.kill(os.getpid(), sig)
    assert seen == [sig.name] == signals.received
    assert signals.exit_code == code
    assert signal.getsignal(sig) == before
