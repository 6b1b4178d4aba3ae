"""Commands that read a config without training: ``check``, ``gradcheck``, ``explain``, ``init``,
``config``, ``schema``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nnctl.cli.common import ConfigArg, SetOption, make_console

# ---------------------------------------------------------------------------------------------
# check / gradcheck / explain / init


def check(config: ConfigArg, set_: SetOption = None) -> None:
    """Validate a config against its data and show the network it compiles to (no training)."""
    from rich.markup import escape

    from nnctl.cli.render import column_table, count, layer_table, print_notes
    from nnctl.data.targets import describe_targets
    from nnctl.workflows import check_summary

    console = make_console()
    resolved, prepared, net = check_summary(config, set_ or [])

    console.print(f"[green]valid[/]: {escape(str(config))}  ({escape(resolved.name or '')})")
    console.print(f"task: {escape(describe_targets(prepared.encoder))}")
    features, rows = prepared.train.n_features, prepared.train.size
    console.print(
        f"data: {escape(prepared.source)}: {count(features, 'feature')}; train {count(rows, 'row')}"
    )
    if prepared.columns:
        console.print(column_table(prepared.columns))
    print_notes(console, prepared.notes, [*resolved.warnings(), *prepared.warnings])
    console.print(layer_table(net, features))
    training = resolved.training
    console.print(
        escape(
            f"cost {resolved.cost.name}: {resolved.cost.formula}; optimizer {training.optimizer.name}, "
            f"learning rate {training.learning_rate:g}, {training.epochs} epochs, batch {training.batch_size}"
        )
    )


def gradcheck(
    config: ConfigArg,
    set_: SetOption = None,
    samples: Annotated[int, typer.Option(min=1, help="Rows of the config's data to check on.")] = 8,
    tolerance: Annotated[float, typer.Option(help="Largest relative error that passes.")] = 1e-6,
    max_entries: Annotated[
        int, typer.Option(min=1, help="Check at most this many entries per parameter array (sampled).")
    ] = 2000,
) -> None:
    """Prove backprop right: analytic gradients vs central finite differences, per layer."""
    from nnctl.cli.tables import Table
    from nnctl.engine.gradcheck import gradient_check
    from nnctl.workflows import check_summary

    console = make_console()
    _, prepared, net = check_summary(config, set_ or [])
    x, t = next(prepared.train.chunks(samples))
    result = gradient_check(net, x, t, tolerance=tolerance, max_entries=max_entries)
    table = Table(title=f"gradient check on {x.shape[0]} rows, float64 (output: {result.rule})")
    for column in ("layer", "W rel. error", "b rel. error", "max |diff|", "status"):
        table.add_column(column)
    for layer in result.layers:
        ok = layer.error < tolerance
        table.add_row(
            str(layer.layer),
            f"{layer.weight_error:.2e}",
            f"{layer.bias_error:.2e}",
            f"{layer.max_abs_diff:.2e}",
            "[green]ok[/]" if ok else "[red]FAIL[/]",
        )
    console.print(table)
    if not result.passed:
        console.print(
            f"[red]gradient check failed[/]: max relative error {result.max_error:.2e} >= {tolerance:g}"
        )
        raise typer.Exit(1)
    console.print(f"[green]passed[/]: max relative error {result.max_error:.2e} < {tolerance:g}")


def explain(
    config: ConfigArg,
    set_: SetOption = None,
    markdown: Annotated[
        bool,
        typer.Option(
            "--markdown", help="Print the Markdown source on a terminal too (piped output always is)."
        ),
    ] = False,
) -> None:
    """The seed's equations for this config: forward, backward rule and initializer per layer."""
    from nnctl.cli.explain import explain_network
    from nnctl.workflows import check_summary

    resolved, _prepared, net = check_summary(config, set_ or [])
    text = explain_network(resolved, net)
    console = make_console()
    if markdown or not console.is_terminal:  # piped: the Markdown source, every character of it
        typer.echo(text)
        return
    from rich.markdown import Markdown

    console.soft_wrap = False  # wrap paragraphs at the terminal's width rather than crop them
    console.print(Markdown(text))


def init(
    path: Annotated[Path, typer.Argument(help="Where to write the config.")] = Path("nnctl.yaml"),
    template: Annotated[
        str, typer.Option(help="Starter: classification, regression, binary or xor.")
    ] = "classification",
    from_data: Annotated[
        Path | None, typer.Option("--from-data", help="Write a config for this CSV/Parquet table.")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="With --from-data: the target column [default: the last].")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter config (from a template, or inferred from a table)."""
    from nnctl.cli.templates import TEMPLATES
    from nnctl.errors import NnctlError
    from nnctl.files import atomic_write_text

    if template not in TEMPLATES:
        raise NnctlError(f"--template: unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    if target is not None and from_data is None:
        raise NnctlError("--target needs --from-data FILE")
    if path.exists() and not force:
        raise NnctlError(f"{path} already exists", hint="pass --force to overwrite it")
    if from_data is not None:
        from nnctl.cli.templates import config_from_data

        text = config_from_data(from_data, target, path)
    else:
        text = TEMPLATES[template]
    atomic_write_text(path, text)
    typer.echo(f"wrote {path}; check it with: nnctl check {path}")


# ---------------------------------------------------------------------------------------------
# config / schema


def config_(
    config: ConfigArg,
    set_: SetOption = None,
    diff: Annotated[
        bool, typer.Option("--diff", help="Only the keys that differ from the defaults.")
    ] = False,
) -> None:
    """Print the fully resolved config (base: files merged, --set applied, every default filled in)."""
    import yaml

    from nnctl.config import load_config
    from nnctl.schema import non_default_mapping, resolved_mapping

    resolved = load_config(config, set_ or [])
    mapping = non_default_mapping(resolved) if diff else resolved_mapping(resolved)
    typer.echo(yaml.safe_dump(mapping, sort_keys=False), nl=False)


def schema() -> None:
    """Print the config's JSON Schema (for editor completion: docs/nnctl.schema.json holds a copy)."""
    from nnctl.schema import schema_json

    typer.echo(schema_json(), nl=False)
