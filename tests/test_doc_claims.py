"""What the docs and messages claim is what nnctl does: ``check`` refuses what ``train`` refuses,
help texts and docs name what exists, small defects stay mended, and the math is presented for what
the code computes (the seed's equation numbers on the right formula, the config's own numbers)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CONFIGS, REPO, invoke, ok

DIGITS = CONFIGS / "digits.yaml"
IRIS = CONFIGS / "iris.yaml"


def flat(text: str) -> str:
    return " ".join(text.split())  # Rich may wrap long messages


# ---------------------------------------------------------------------------------------------
# check makes every refusal train makes before its first step

TRAIN_TIME_REFUSALS = [
    (["training.schedule={name: reduce_on_plateau, monitor: val_f1}"], "training.schedule.monitor"),
    (["training.early_stopping={monitor: val_f1}"], "training.early_stopping.monitor"),
    (["training.early_stopping={monitor: val_loss}", "data.validation=0"], "training.early_stopping.monitor"),
    (["training.schedule={name: reduce_on_plateau}", "data.validation=0"], "training.schedule.monitor"),
]


@pytest.mark.parametrize(
    ("sets", "key"), TRAIN_TIME_REFUSALS, ids=["plateau", "stop", "stop-noval", "plateau-noval"]
)
def test_check_refuses_what_train_refuses(tmp_path: Path, sets: list[str], key: str) -> None:
    overrides = [arg for assignment in sets for arg in ("--set", assignment)]
    trained = invoke("train", DIGITS, "--out", tmp_path / "run", "--quiet", *overrides)
    checked = invoke("check", DIGITS, *overrides)
    assert trained.code == 2, trained.output
    assert checked.code == 2, checked.output
    assert key in flat(checked.output)
    assert flat(checked.output) == flat(trained.output)  # the same one message
    assert "valid" not in checked.stdout
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# The math as a learner reads it

LOGISTIC_ELU = [
    "--set", "model.layers[1].activation={name: elu, alpha: 0.5}",
    "--set", "model.layers[2].activation={name: logistic, L: 2, k: 3}",
    "--set", "cost=quadratic", "--set", "data.task=classification",
]  # fmt: skip


def test_cce_on_a_logistic_output_with_L_not_1_is_refused_as_bce_is() -> None:
    for L in (2, 0.5):
        outcome = invoke("check", IRIS, "--set", f"model.layers[1].activation={{name: logistic, L: {L}}}")
        assert outcome.code == 2, outcome.output
        assert "cce" in flat(outcome.output) and f"L={L:g}" in flat(outcome.output)
    accepted = ok(invoke("check", IRIS, "--set", "model.layers[1].activation=logistic"))  # L = 1
    assert "warning" in accepted.stdout


def test_fused_softmax_cce_rule_is_labelled_for_what_it_computes() -> None:
    import numpy as np

    from nnctl.engine.activations import Softmax
    from nnctl.engine.costs import CategoricalCrossEntropy, output_rule

    rule = output_rule(CategoricalCrossEntropy(), Softmax())
    assert "(2.20)" in str(rule) and "a sum_k t_k - t" in str(rule)
    assert "one-hot" in str(rule)  # (2.21) named only with its condition
    z = np.array([[0.3, -1.0, 2.0]])
    t = np.array([[0.5, 0.5, 0.5]])  # not one-hot: (2.20) and (2.21) differ
    a = Softmax().forward(z)
    np.testing.assert_allclose(rule.sensitivity(z, a, t), a * 1.5 - t)
    text = flat(ok(invoke("check", IRIS)).stdout)
    assert "s = a - t, (2.21)" not in text and "(2.20)" in text


def test_explain_fills_in_the_configs_numbers() -> None:
    text = ok(invoke("explain", DIGITS, *LOGISTIC_ELU)).stdout
    assert "`3 a (1 - a/2)`" in text  # k = 3, L = 2 in k a (1 - a/L)
    assert "`1 if z >= 0 else a + 0.5`" in text  # alpha = 0.5
    assert "Lk/4 = 1.5" in text  # the generalized logistic's midpoint slope, next to the x4 of (1.35)
    plain = ok(invoke("explain", DIGITS)).stdout
    assert "Lk/4" not in plain  # no logistic, no note


def test_iris_with_bce_gets_one_consistent_hint() -> None:
    hints = []
    for units in (3, 1):
        outcome = invoke(
            "check", IRIS, "--set", "cost=bce", "--set", "model.layers[1].activation=logistic",
            "--set", f"model.layers[1].units={units}",
        )  # fmt: skip
        assert outcome.code == 2
        hints.append(flat(outcome.output))
    for hint in hints:  # both point to the same fix: a softmax output of 3 units with cce
        assert "softmax" in hint and "cce" in hint, hint
    assert "units to 1" not in hints[0]


# ---------------------------------------------------------------------------------------------
# Claims in README.md and docs/ that must stay true

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_results_rows_say_what_data_they_are_scored_on() -> None:
    """A config that holds out no test rows cannot be scored "on its test split": its row names the
    data its result is measured on (xor: ``--data builtin:xor``)."""
    from nnctl.config import load_config

    rows = re.findall(r"^\| `(\w+\.yaml)` \|.*$", README, flags=re.MULTILINE)
    assert "xor.yaml" in rows
    for name in rows:
        line = next(line for line in README.splitlines() if line.startswith(f"| `{name}` |"))
        if load_config(CONFIGS / name).data.test == 0:
            assert "--data" in line, line


def test_readme_lists_every_builtin_wherever_it_lists_builtins() -> None:
    from nnctl.data.builtins import BUILTINS

    names = {name.removeprefix("builtin:") for name in BUILTINS}
    for paragraph in README.split("\n\n"):
        for part in paragraph.splitlines() if paragraph.lstrip().startswith("|") else [paragraph]:
            named = set(re.findall(r"builtin:(\w+)", part))
            if len(named) > 1:  # a list of builtins, not one example
                assert named == names, part


def test_reliability_page_names_existing_tests_and_marks_only_open_promises_xfail() -> None:
    page = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    files = {
        "R": "test_reliability.py",
        "I": "test_interrupts.py",
        "F": "test_fuzz.py",
        "L": "test_run_locks.py",
        "N": "test_npz_data.py",
    }
    checked = 0
    for row in page.splitlines():
        cells = row.split("|")
        if len(cells) < 4 or not re.search(r"\b[RIFLN] `test_", cells[-2]):
            continue
        source = (REPO / "tests" / files[cells[-2].strip()[0]]).read_text(encoding="utf-8")
        for name in re.findall(r"`(test_\w+)", cells[-2]):
            match = re.search(rf"((?:^@.*\n)*)^def {name}\(", source, flags=re.MULTILINE)
            assert match, f"docs/reliability.md names {name}, which {files[cells[-2].strip()[0]]} lacks"
            open_promise = "Not yet kept" in row
            assert ("xfail" in match.group(1)) == open_promise, f"{name}: {row}"
            checked += 1
    assert checked > 30


def test_help_describes_every_command_or_lists_none() -> None:
    from nnctl.cli.app import app

    names = [command.name or command.callback.__name__ for command in app.registered_commands]
    description = app.info.help or ""
    listed = [name for name in names if re.search(rf"\b{name}\b", description)]
    # One name alone is a word of the sentence ("from a YAML config"), not a list of commands.
    assert len(listed) <= 1 or listed == names, f"--help's description names only {listed}"


def test_eval_plot_help_names_every_format() -> None:
    from nnctl.cli.plots import FIGURE_FORMATS

    text = flat(ok(invoke("eval", "--help")).stdout)
    for suffix in FIGURE_FORMATS:  # ".pdf" or "PDF"
        assert re.search(rf"\b{suffix.lstrip('.')}\b", text, flags=re.IGNORECASE), suffix


def test_no_internal_issue_numbers_in_what_users_read() -> None:
    """Docs, help texts, messages and benchmark reports say what things are, not which tracker
    entry they came from."""
    places = [
        REPO / "README.md",
        *(REPO / "docs").glob("*.md"),
        *(REPO / "benchmarks").glob("*.md"),
        *(REPO / "benchmarks").glob("*.py"),
        *(REPO / "nnctl").rglob("*.py"),
        *(REPO / "configs").glob("*.yaml"),
    ]
    found = [
        f"{path.relative_to(REPO)}: {line.strip()}"
        for path in places
        for line in path.read_text(encoding="utf-8").splitlines()
        if re.search(r"\bissues? #?\d+", line, flags=re.IGNORECASE)
    ]
    assert not found, "\n".join(found)


def test_benchmark_threads_option_limits_every_library_it_reports(tmp_path: Path) -> None:
    """``--threads 1`` holds for every BLAS/OpenMP library the report lists, those the peers
    (PyTorch, scikit-learn) load included; without a peer installed only numpy's is listed."""
    proc = subprocess.run(
        [sys.executable, REPO / "benchmarks" / "run.py", "--threads", "1", "--quick", "--suite", "infer",
         "--repeats", "3", "--out", tmp_path],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    libraries = [line for line in proc.stdout.splitlines() if re.match(r"- (blas|openmp): ", line)]
    assert libraries
    for line in libraries:
        assert ", 1 threads," in line, line
    assert "issue" not in proc.stdout.lower()


# ---------------------------------------------------------------------------------------------
# Small defects


def test_failed_init_from_leaves_no_empty_out_folder(tmp_path: Path) -> None:
    source = tmp_path / "source"
    ok(invoke("train", IRIS, "--out", source, "--quiet", "--set", "training.epochs=1"))
    out = tmp_path / "new" / "run"
    outcome = invoke(
        "train", IRIS, "--out", out, "--init-from", source / "last.npz",
        "--set", "model.layers[0].units=8",
    )  # fmt: skip
    assert outcome.code == 2
    assert "W1 has shape" in flat(outcome.output)
    assert not (tmp_path / "new").exists()  # nothing this refused run created is left


def test_check_counts_in_singular_and_plural(tmp_path: Path) -> None:
    config = tmp_path / "sine.yaml"
    ok(invoke("init", config, "--template", "regression"))
    text = ok(invoke("check", config)).stdout
    assert "1 feature;" in text and "1 features" not in text
    assert "network: 1 input," in text


def test_eval_plot_says_what_it_wrote(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run = tmp_path / "iris"
    ok(invoke("train", IRIS, "--out", run, "--quiet", "--set", "training.epochs=1"))
    figure = tmp_path / "cm.pdf"
    text = ok(invoke("eval", run / "best.npz", "--plot", figure)).stdout
    assert f"wrote {figure}" in text and figure.exists()
    as_json = ok(invoke("eval", run / "best.npz", "--plot", tmp_path / "cm.svg", "--json"))
    assert json.loads(as_json.stdout)["accuracy"] >= 0  # stdout stays one JSON object
    assert f"wrote {tmp_path / 'cm.svg'}" in as_json.stderr


@pytest.mark.parametrize("template", ["classification", "binary", "regression", "xor"])
def test_template_comments_line_up(template: str) -> None:
    from nnctl.cli.templates import TEMPLATES

    columns = {line.index("#") for line in TEMPLATES[template].splitlines() if "#" in line.lstrip()[1:]}
    assert len(columns) == 1, columns


def test_docs_install_nnctl_only_in_ways_that_work() -> None:
    """nnctl is not on the package index: ``pip install 'nnctl[dask]'`` fails in a fresh environment.
    The docs install from the checkout (``-e '.[extra]'``) or from a wheel built from it; the wheel
    route itself is run by ``.ci/wheel.sh``. Messages point to installable packages too."""
    texts = {
        path: path.read_text(encoding="utf-8") for path in [REPO / "README.md", *(REPO / "docs").glob("*.md")]
    }
    for path, text in texts.items():
        for command in re.findall(r"pip install [^`\n&;|#]*", text):
            arguments = command[len("pip install") :]
            assert not re.search(r"""(^|\s)['"]?nnctl(\[|['"\s]|$)""", arguments), f"{path.name}: {command}"
    wheel = texts[REPO / "docs" / "sweeps.md"]
    assert "pip wheel . --no-deps -w dist" in wheel and '"$(echo dist/nnctl-*.whl)[dask]"' in wheel
    assert "wheel.sh" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_ci_runs_the_readme_test_command_and_shows_pytest_closing_line(tmp_path: Path) -> None:
    """``.ci/run`` runs the README's test command, and its pytest arguments with pyproject's
    ``addopts`` still print the closing "N passed" line (``-q`` twice would hide it)."""
    import shlex

    quick_start = README.split("```bash\n", 1)[1].split("```", 1)[0]
    readme_line = next(line for line in quick_start.splitlines() if "pytest" in line)
    install, readme_pytest = (part.split("#", 1)[0].strip() for part in readme_line.split("&&"))
    ci_lines = [line.split("#", 1)[0].strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    ci_pytest = [line for line in ci_lines if re.match(r"(python3? -m )?pytest\b", line)]
    assert ci_pytest == [readme_pytest], ci_pytest
    extra = shlex.split(install)[-1]  # '.[test]'
    assert any(line.startswith("pip install") and extra in shlex.split(line) for line in ci_lines), install
    (tmp_path / "test_one.py").write_text("def test_one():\n    assert True\n", encoding="utf-8")
    arguments = shlex.split(ci_pytest[0])[1:]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *arguments, "-c", REPO / "pyproject.toml", "-p", "no:cacheprovider",
         tmp_path / "test_one.py"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^1 passed\b", proc.stdout.strip().splitlines()[-1]), proc.stdout
