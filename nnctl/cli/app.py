"""The ``nnctl`` command: parse arguments, call ``nnctl.workflows``, render with Rich.

Heavy imports (numpy, pydantic, the engine) happen inside the commands, so ``--help`` and
``--version`` start fast. Bad input of any kind ends in one message and exit status 2, a failed
run in exit 1, an interrupt in 130 (SIGINT) or 143 (SIGTERM); never a traceback.

This module holds the app and ``train``; the other commands live in one module per group
(``model_commands``: eval, predict, export, serve; ``config_commands``: check, gradcheck, explain,
init, config, schema; ``runs_commands``: plot, sweep, cv, compare), registered below in the order
``--help`` lists them. What they share (option types, the console) is ``nnctl.cli.common``.

Two mechanisms serve every command; a new command uses both by doing nothing special:

* Errors: a command lets ``NnctlError`` (from ``nnctl.errors``) propagate. The app's group class,
  ``_Commands``, catches it around every command in one place and renders it (``_fail``): one
  message, exit status ``exc.exit_code``. Add a command with ``@app.command()`` (or a function in a
  group module, registered below) as usual.
* Signals: a command that must react to SIGINT/SIGTERM wraps its work in ``with Signals(handler)``
  (``nnctl.cli.common``), where ``handler(name)`` is called with "SIGINT" or "SIGTERM" (it may raise
  KeyboardInterrupt to stop at once); the previous handlers come back on exit and ``received`` lists
  what arrived. Exit status: 143 after SIGTERM, 130 after SIGINT (``Signals.exit_code``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from nnctl import __version__
from nnctl.cli import config_commands, model_commands, runs_commands
from nnctl.cli.common import (
    MlflowExperimentOption,
    MlflowOption,
    QuietOption,
    SetOption,
    Signals,
    make_console,
)


class _Commands(TyperGroup):
    """Runs every command with the one ``NnctlError`` handler: a domain error becomes its message
    and exit status (2 for bad input, 1 for a failed run), never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        from nnctl.errors import NnctlError

        try:
            return super().invoke(ctx)
        except NnctlError as exc:
            raise _fail(exc) from None


app = typer.Typer(
    name="nnctl",
    cls=_Commands,
    help="Train dense neural networks from a YAML config.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _fail(exc: BaseException) -> typer.Exit:
    """Render a domain error (one message, no traceback) and pick its exit status."""
    from rich.markup import escape

    code = getattr(exc, "exit_code", 2)
    label = "training failed" if code == 1 else "error"
    make_console(stderr=True).print(f"[bold red]{label}:[/] {escape(str(exc))}")
    return typer.Exit(code)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"nnctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Train dense neural networks from a YAML config."""


# ---------------------------------------------------------------------------------------------
# train


@app.command()
def train(
    config: Annotated[
        Path | None, typer.Argument(help="YAML config file (optional with --resume).", show_default=False)
    ] = None,
    set_: SetOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder [default: runs/<name>].")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue from this checkpoint, bit-exactly.")] = None,
    init_from: Annotated[
        Path | None, typer.Option(help="Start from this checkpoint's weights (fine-tune).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a run folder that holds a checkpoint.")
    ] = False,
    deterministic: Annotated[
        bool, typer.Option(help="Pin BLAS to one thread: identical results across thread counts.")
    ] = False,
    trace: Annotated[bool, typer.Option("--trace", help="Per-layer diagnostics in history.csv.")] = False,
    quiet: QuietOption = False,
    mlflow: MlflowOption = None,
    mlflow_experiment: MlflowExperimentOption = None,
) -> None:
    """Train a network; writes last.npz, best.npz, history.csv and config.yaml to the run folder."""
    from rich.markup import escape

    from nnctl.cli.render import print_start, print_summary, progress_callbacks
    from nnctl.cli.tracking import finish_tracking, training_tracker
    from nnctl.training.loop import Interrupted
    from nnctl.workflows import blas_threads, finish_training, plan_training, prepare_for_plan, run_training

    console = make_console()
    trainer = plan = None
    try:
        plan = plan_training(
            config,
            [*(set_ or []), *(["training.trace=true"] if trace else [])],
            out=out,
            resume=resume,
            force=force,
            init_from=init_from,
            deterministic=deterministic,
        )
        prepared = prepare_for_plan(plan)
        if not quiet:
            print_start(console, plan, prepared)
        tracker = training_tracker(mlflow, mlflow_experiment, plan.config.name)
        extra = [tracker] if tracker is not None else []
        trainer, writer = run_training(plan, prepared, [*progress_callbacks(console, quiet), *extra])
        if trainer.loop.stopped_early:
            console.print(
                f"nothing to do: this run stopped early at epoch {trainer.loop.epoch} "
                f"(best epoch {trainer.loop.best_epoch}); to train on from its best weights, start a new run "
                f"with --init-from {Path(resume or '').parent / 'best.npz'}"
            )
            return
        if trainer.loop.epoch >= plan.config.training.epochs:
            console.print(
                f"nothing to do: the checkpoint has completed {trainer.loop.epoch} of "
                f"{plan.config.training.epochs} epochs; extend with --set training.epochs=N"
            )
            return
        with blas_threads(plan.config.training.deterministic), Signals(_finish_step_then_stop(trainer)):
            trainer.fit()
        result = finish_training(trainer, writer)
        if tracker is not None:
            finish_tracking(tracker, result, console)
    except Interrupted as stop:
        code = 143 if stop.signal_name == "SIGTERM" else 130
        last = plan.folder.last
        make_console(stderr=True).print(
            f"[yellow]stopped by {stop.signal_name}[/]: saved {escape(str(last))}; "
            f"continue with: nnctl train --resume {escape(str(last))}"
        )
        raise typer.Exit(code) from None
    except KeyboardInterrupt:
        started = trainer is not None and trainer.stop_signal is not None
        message = (
            "[red]aborted[/] (second interrupt); files on disk are whole"
            if started
            else "[yellow]interrupted[/] before training started; nothing was written"
        )
        make_console(stderr=True).print(message)
        raise typer.Exit(130) from None
    finally:
        if plan is not None:
            plan.release()  # the run folder's lock
    if not quiet:
        print_summary(console, result)


def _finish_step_then_stop(trainer: Any) -> Callable[[str], None]:
    """First SIGINT/SIGTERM: finish the step, save, exit 130/143. Second SIGINT: abort at once."""

    def handler(name: str) -> None:
        if trainer.stop_signal is not None and name == "SIGINT":
            raise KeyboardInterrupt
        trainer.request_stop(name)

    return handler


# ---------------------------------------------------------------------------------------------
# every other command: one module per group, registered here in the order --help lists them

for _name, _command in (
    ("eval", model_commands.eval_),
    ("predict", model_commands.predict),
    ("export", model_commands.export),
    ("serve", model_commands.serve),
    ("check", config_commands.check),
    ("gradcheck", config_commands.gradcheck),
    ("explain", config_commands.explain),
    ("init", config_commands.init),
    ("plot", runs_commands.plot),
    ("sweep", runs_commands.sweep),
    ("cv", runs_commands.cv),
    ("compare", runs_commands.compare),
    ("config", config_commands.config_),
    ("schema", config_commands.schema),
):
    app.command(_name)(_command)


def main() -> None:
    """Console-script entry point: usage errors exit 2 (click's convention)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
