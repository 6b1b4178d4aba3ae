"""The docs are part of the test suite: every shell command and every YAML (and Python) example in
README.md and docs/*.md runs here, and fails the test when it no longer does what the doc says.

How a doc is read
-----------------
* Fenced ``bash``/``sh``/``shell`` blocks: every line is a command (``\\`` continues a line), run
  with ``bash`` in order, in one temporary copy of the repository per doc file, so a command sees
  what the commands above it wrote (``runs/digits/best.npz`` after ``nnctl train``). Each must exit 0.
* Fenced ``console`` blocks: lines starting with ``$ `` are commands; when the lines shown after one
  begin with ``error:``, the command must exit 2 and print that first error line.
* Fenced ``yaml`` blocks: a complete config is validated with the real loader and checked against
  its data (``nnctl check``'s own function); a fragment (``training:``, ``schedule: ...``,
  ``layers: ...``) is merged into ``configs/digits.yaml`` (into the shipped config that reads the
  same ``data.path`` when it names one) at the place its keys belong and checked the same way;
  several lines with the same top-level key are alternatives, each checked alone. A block whose
  first line is ``# file: PATH`` is written to PATH instead, for the commands below it; a block of
  comments only (a schema line) is not a config.
* Fenced ``python`` blocks run with this interpreter, after the commands above them.

Speed: ``nnctl train`` and ``nnctl sweep`` get ``--set training.epochs=N`` appended, N from
``NNCTL_DOCS_EPOCHS`` (default 1; 0 runs the documented epochs); ``python benchmarks/run.py`` gets
``--quick``.

What does not run here, each reported as a skip with its reason: ``docker`` (CI's
``.ci/container.sh``), ``pip install``/``pip wheel`` and virtual environments (CI's ``.ci/wheel.sh``
runs the wheel route), ``pytest`` (the suite itself), Dask cluster commands (``dask scheduler``,
``dask worker``, ``--scheduler tcp://HOST...`` or ``tls://HOST...``: ``tests/test_sweep.py`` and
``tests/test_tls.py`` run a real cluster), servers that run until stopped (``nnctl serve``, ``mlflow ui``:
``tests/test_serve.py`` starts one on 127.0.0.1), and
commands and Python examples that need an optional extra that is not installed (matplotlib, distributed,
onnx, onnxruntime, fastapi, mlflow: see ``EXTRAS``).

Opting out: a comment ``# doc-test: skip REASON`` on a command line skips that command; as a line of
its own in a block it skips the whole block. ``# doc-test: exit N`` on a command line expects exit N.
The reason is required and shown in the skip message.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from helpers import REPO, nnctl_command

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
EPOCHS = int(os.environ.get("NNCTL_DOCS_EPOCHS", "1"))
BASE_CONFIG = REPO / "configs" / "digits.yaml"
SHELL_LANGUAGES = {"bash", "sh", "shell"}
MARKER = re.compile(r"#\s*doc-test:\s*(skip|exit)\b\s*(.*)$")

# (pattern on one command, reason): commands this test never runs.
NOT_RUN = [
    (r"^docker\b", "needs a Docker engine (CI runs the image: .ci/container.sh)"),
    (r"^(pip|python3? -m pip|\S*/bin/python -m pip) (install|wheel|freeze)\b", "installs or lists packages "
     "(CI builds and installs the wheel route: .ci/wheel.sh)"),
    (r"^python3? -m venv\b", "creates a virtual environment (CI: .ci/run, .ci/wheel.sh)"),
    (r"^pytest\b", "the test suite itself"),
    (r"^dask (scheduler|worker)\b", "starts a Dask server (tests/test_sweep.py runs a real cluster)"),
    (r"--scheduler (tcp|tls)://", "needs the Dask cluster of the doc (tests/test_sweep.py and "
     "tests/test_tls.py run one)"),
    (r"^(nnctl serve|mlflow (ui|server)|uvicorn)\b", "starts a server that runs until stopped (its own tests "
     "start one on 127.0.0.1)"),
    (r"^curl\b", "talks to a server started above"),
    (r"^\.ci/container\.sh --relock\b", "rewrites constraints.txt from the package index"),
]  # fmt: skip
# (pattern, importable module): commands that need an optional extra.
EXTRAS = [
    (r"^nnctl plot\b|--plot\b", "matplotlib"),
    (r"--dask-local\b", "distributed"),
    (r"^nnctl export\b", "onnx"),
    (r"--format onnx\b|\.onnx\b", "onnxruntime"),
    (r"^nnctl serve\b", "fastapi"),
    (r"\bmlflow\b", "mlflow"),
]


def training_commands() -> list[str]:
    """Commands that train and take ``--set``: they get the shorter epochs."""
    from nnctl.cli.app import app

    found = []
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else "")
        parameters = command.callback.__code__.co_varnames if command.callback else ()
        if name in ("train", "sweep", "cv", "compare") and "set_" in parameters:
            found.append(name)
    return found


# Shell functions: shorter trainings and quick benchmarks, for the test only.
PRELUDE = """
nnctl() {
  case "$1" in
    TRAINING_COMMANDS) if [ "$NNCTL_DOCS_EPOCHS" != 0 ]; then
          command nnctl "$@" --set "training.epochs=$NNCTL_DOCS_EPOCHS"; return; fi;;
  esac
  command nnctl "$@"
}
python() {
  case "$1" in
    benchmarks/run.py) command python "$@" --quick;;
    *) command python "$@";;
  esac
}
""".replace("TRAINING_COMMANDS", "|".join(training_commands()))


@dataclass
class Step:
    doc: Path
    line: int
    kind: str  # shell | yaml | python | file
    text: str
    expect: int = 0
    expect_error: str | None = None
    skip: str | None = None
    target: str | None = None  # file: where a YAML block is written

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


@dataclass
class Workspace:
    root: Path
    log: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Reading the docs


def fenced_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number of the first content line, language, lines) of every fenced block."""
    blocks, language, lines, start = [], None, [], 0
    for number, line in enumerate(text.splitlines(), start=1):
        fence = re.match(r"^\s*```(\w*)", line)
        if fence and language is None:
            language, lines, start = fence.group(1).lower(), [], number + 1
        elif fence:
            blocks.append((start, language, lines))
            language = None
        elif language is not None:
            lines.append(line)
    return blocks


def logical_lines(lines: list[str], start: int) -> list[tuple[int, str]]:
    """Join ``\\``-continued lines; drop blank lines."""
    joined: list[tuple[int, str]] = []
    pending, first = "", start
    for offset, line in enumerate(lines):
        if not pending:
            first = start + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text:
            joined.append((first, text))
    return joined


def marker_of(text: str) -> tuple[str | None, str]:
    found = MARKER.search(text)
    if not found:
        return None, ""
    return found.group(1), found.group(2).strip()


def shell_step(doc: Path, line: int, command: str) -> Step:
    step = Step(doc, line, "shell", command)
    kind, argument = marker_of(command)
    if kind == "skip":
        step.skip = f"marked in the doc: {argument or '(no reason given)'}"
    elif kind == "exit":
        step.expect = int(argument.split()[0])
    return step


def steps_of(doc: Path) -> list[Step]:
    steps: list[Step] = []
    for start, language, lines in fenced_blocks(doc.read_text(encoding="utf-8")):
        block_marker = next((marker_of(line) for line in lines if line.strip().startswith("#")), (None, ""))
        whole_skip = block_marker[0] == "skip" and any(MARKER.match(line.strip()) for line in lines)
        if language in SHELL_LANGUAGES:
            found = [
                shell_step(doc, n, text)
                for n, text in logical_lines(lines, start)
                if not text.startswith("#")
            ]
        elif language == "console":
            found = console_steps(doc, lines, start)
        elif language in ("yaml", "yml"):  # a block of comments only (a schema line) is not a config
            found = [yaml_step(doc, start, lines)] if has_content(lines) else []
        elif language == "python":
            found = [Step(doc, start, "python", "\n".join(lines))]
        else:
            continue
        if whole_skip:
            for step in found:
                step.skip = f"block marked in the doc: {block_marker[1] or '(no reason given)'}"
        steps.extend(found)
    return steps


def has_content(lines: list[str]) -> bool:
    return any(line.strip() and not line.strip().startswith("#") for line in lines)


def console_steps(doc: Path, lines: list[str], start: int) -> list[Step]:
    steps: list[Step] = []
    for offset, line in enumerate(lines):
        if line.startswith("$ "):
            steps.append(shell_step(doc, start + offset, line[2:].strip()))
        elif steps and line.strip() and steps[-1].expect_error is None and line.startswith("error:"):
            steps[-1].expect, steps[-1].expect_error = 2, line.strip()
    return steps


def yaml_step(doc: Path, start: int, lines: list[str]) -> Step:
    text = "\n".join(lines)
    step = Step(doc, start, "yaml", text)
    first = lines[0].strip() if lines else ""
    named = re.match(r"#\s*file:\s*(\S+)$", first)
    if named:
        step.kind, step.target = "file", named.group(1)
    return step


STEPS = [step for doc in DOCS for step in steps_of(doc)]


# ---------------------------------------------------------------------------------------------
# Running them


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Workspace]:
    """One copy of the repository per doc file, made on first use."""
    return {}


def workspace_for(doc: Path, workspaces: dict[Path, Workspace], factory: pytest.TempPathFactory) -> Workspace:
    if doc not in workspaces:
        root = factory.mktemp(doc.stem) / "repo"
        ignore = shutil.ignore_patterns(
            ".git", ".venv", ".ci-venv", "runs", "dist", "build", "*.egg-info", "__pycache__",
            ".pytest_cache", ".ruff_cache", "results",
        )  # fmt: skip
        shutil.copytree(REPO, root, ignore=ignore)
        workspaces[doc] = Workspace(root)
    return workspaces[doc]


def reason_not_to_run(command: str) -> str | None:
    for segment in re.split(r"\s*&&\s*", command):
        for pattern, reason in NOT_RUN:
            if re.search(pattern, segment.strip()) and not runnable_rest(command, segment):
                return reason
    for pattern, module in EXTRAS:
        if re.search(pattern, command) and importlib.util.find_spec(module) is None:
            return f"needs {module} (an optional extra), which is not installed"
    return None


def missing_extras_imported(code: str) -> list[str]:
    """The optional-extra modules a Python example imports that are not installed."""
    imported = set(re.findall(r"^\s*(?:import|from)\s+(\w+)", code, flags=re.MULTILINE))
    extras = {module for _, module in EXTRAS}
    return sorted(m for m in imported & extras if importlib.util.find_spec(m) is None)


def runnable_rest(command: str, segment: str) -> bool:
    """``pip install -e . && nnctl train ...``: the part after the install still runs."""
    rest = [part for part in re.split(r"\s*&&\s*", command) if part.strip() != segment.strip()]
    return bool(rest) and not any(re.search(p, part.strip()) for part in rest for p, _ in NOT_RUN)


def without_skipped_segments(command: str) -> str:
    parts = re.split(r"\s*&&\s*", command)
    kept = [part for part in parts if not any(re.search(p, part.strip()) for p, _ in NOT_RUN)]
    return " && ".join(kept)


def run_shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = (
        str(Path(nnctl_command()[0]).parent)
        if len(nnctl_command()) == 1
        else str(Path(sys.executable).parent)
    )
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "NNCTL_DOCS_EPOCHS": str(EPOCHS),
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "TERM": "dumb",
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.run(
        ["bash", "-c", PRELUDE + "\nset -o pipefail\n" + command],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def check_yaml(text: str, where: str, root: Path) -> None:
    """A config is validated and checked against its data; a fragment is merged into the digits
    config where its keys belong, then the same."""
    from nnctl.config import load_config
    from nnctl.workflows import check_summary

    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    top = [line.split(":", 1)[0] for line in lines if not line.startswith((" ", "-"))]
    if len(top) > 1 and len(set(top)) == 1:  # alternatives: one example per line
        for line in lines:
            check_yaml(line, where, root)
        return
    example = yaml.safe_load(text)
    assert isinstance(example, dict), f"{where}: a YAML example should be a mapping"
    if "sweep" in example:  # a sweep file: its spec and base config, as nnctl sweep reads them
        return
    raw = example if {"data", "model", "cost"} <= set(example) else merged_into_base(example, where)
    path = root / "configs" / "_doc_example.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    try:
        load_config(path)
        check_summary(path)
    finally:
        path.unlink()


def deep_update(target: dict, changes: dict) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_update(target[key], value)
        else:
            target[key] = value


def base_for(fragment: dict) -> dict:
    """The shipped config that reads the data the fragment names (``data.path``), so that its
    model fits that data; ``configs/digits.yaml`` otherwise."""
    path = (fragment.get("data") or {}).get("path") if isinstance(fragment.get("data"), dict) else None
    for config in sorted(BASE_CONFIG.parent.glob("*.yaml")):
        raw = yaml.safe_load(config.read_text(encoding="utf-8"))
        if path and isinstance(raw.get("data"), dict) and raw["data"].get("path") == path:
            return raw
    return yaml.safe_load(BASE_CONFIG.read_text(encoding="utf-8"))


def merged_into_base(fragment: dict, where: str) -> dict:
    from nnctl.config import Config

    base = base_for(fragment)
    sections = {
        "": set(Config.model_fields),
        "training": set(Config.model_fields["training"].annotation.model_fields),
        "model": set(Config.model_fields["model"].annotation.model_fields),
        "data": set(Config.model_fields["data"].annotation.model_fields),
    }
    for section, keys in sections.items():
        if set(fragment) <= keys:
            raw = copy.deepcopy(base)
            deep_update(raw if not section else raw.setdefault(section, {}), fragment)
            return raw
    raise AssertionError(
        f"{where}: cannot tell where the YAML example {sorted(fragment)} belongs in a config; "
        "make it a full config or a section, or mark the block '# doc-test: skip REASON'"
    )


@pytest.mark.parametrize("step", STEPS, ids=[step.id for step in STEPS])
def test_doc_example(step: Step, workspaces: dict[Path, Workspace], tmp_path_factory) -> None:
    if step.skip:
        pytest.skip(step.skip)
    space = workspace_for(step.doc, workspaces, tmp_path_factory)
    if step.kind == "file":
        target = space.root / (step.target or "")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(step.text + "\n", encoding="utf-8")
        return
    if step.kind == "yaml":
        check_yaml(step.text, step.id, space.root)
        return
    if step.kind == "python":
        missing = missing_extras_imported(step.text)
        if missing:
            pytest.skip(f"imports {', '.join(missing)} (an optional extra), which is not installed")
        proc = subprocess.run(
            [sys.executable, "-c", step.text], cwd=space.root, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, f"{step.id}: the Python example failed\n{proc.stdout}{proc.stderr}"
        return
    reason = reason_not_to_run(step.text)
    if reason:
        pytest.skip(f"{step.text[:60]}: {reason}")
    proc = run_shell(without_skipped_segments(step.text), space.root)
    output = proc.stdout + proc.stderr
    assert proc.returncode == step.expect, (
        f"{step.id}: `{step.text}` exited {proc.returncode}, the doc says {step.expect}\n{output}"
    )
    assert "Traceback" not in output, output
    if step.expect_error:
        first = next((line for line in proc.stderr.splitlines() if line.startswith("error:")), "")
        assert " ".join(first.split()) == " ".join(step.expect_error.split()), (
            f"{step.id}: the doc shows\n  {step.expect_error}\nnnctl says\n  {first}"
        )


# ---------------------------------------------------------------------------------------------
# The reader itself


def test_every_doc_has_examples_and_every_block_is_read() -> None:
    """Guards the reader: each shell/console/yaml/python block of the docs became a step."""
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        runnable = [b for b in fenced_blocks(text) if b[1] in {*SHELL_LANGUAGES, "console", "yaml", "python"}]
        lines = {step.line for step in STEPS if step.doc == doc}
        for start, language, block in runnable:
            end = start + len(block)
            assert any(start <= n < end for n in lines) or not any(
                x.strip() and not x.strip().startswith("#") for x in block
            ), f"{doc.name}:{start}: a {language} block with no step"
    assert sum(step.kind == "shell" for step in STEPS) > 30


def test_markers_and_rules() -> None:
    doc = REPO / "README.md"
    assert (
        shell_step(doc, 1, "nnctl train x.yaml  # doc-test: skip slow here").skip
        == "marked in the doc: slow here"
    )
    assert shell_step(doc, 1, "nnctl eval nothing.npz  # doc-test: exit 2").expect == 2
    assert reason_not_to_run("docker run --rm nnctl") is not None
    assert reason_not_to_run("pip install -e . && nnctl train configs/digits.yaml") is None
    assert without_skipped_segments("pip install -e . && nnctl train c.yaml") == "nnctl train c.yaml"
    assert reason_not_to_run("pip install -e '.[test]' && pytest") is not None
    assert reason_not_to_run("nnctl serve runs/x/best.npz --port 8000") is not None
    assert {"train", "sweep"} <= set(training_commands())
    assert missing_extras_imported("import numpy as np\nimport yaml") == []  # installed, or not an extra
    EXTRAS.append((r"^never$", "nnctl_absent_extra"))
    try:  # an example importing an extra that is missing is a visible skip, not a failure or a pass
        assert missing_extras_imported("import numpy\nfrom nnctl_absent_extra import x") == [
            "nnctl_absent_extra"
        ]
        assert missing_extras_imported("import nnctl_absent_other") == []  # not an extra: it runs (and fails)
    finally:
        EXTRAS.pop()
    steps = console_steps(doc, ["$ nnctl train bad.yaml", "error: bad.yaml: no such config file"], 1)
    assert steps[0].expect == 2 and steps[0].expect_error == "error: bad.yaml: no such config file"


# ---------------------------------------------------------------------------------------------
# docs/math.md: the code it quotes and names exists

CODE_SIGNS = ("@", "-=", "+=", "*=", "/=", "out=", ".sum(", ".T,")


def inline_code(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def resolves(dotted: str) -> bool:
    """``network.Network.backward`` (module in nnctl.engine, then attributes), ``Softmax.jacobian``
    (a class of any engine module), a field of a dataclass or Pydantic model,
    ``training.prepare.resolve_class_weights`` (a module of another nnctl package), a config key
    (``training.class_weight``) or a checkpoint meta key that nnctl writes (``meta.class_weights``)."""
    import importlib
    import pkgutil

    import nnctl.engine

    parts = dotted.split(".")
    if is_config_key(parts) or is_meta_key_written(parts) or resolves_in_package(parts):
        return True
    candidates = []
    with_module = importlib.util.find_spec(f"nnctl.engine.{parts[0]}") is not None
    if with_module:
        candidates.append((importlib.import_module(f"nnctl.engine.{parts[0]}"), parts[1:]))
    else:
        for info in pkgutil.iter_modules(nnctl.engine.__path__):
            module = importlib.import_module(f"nnctl.engine.{info.name}")
            if hasattr(module, parts[0]):
                candidates.append((getattr(module, parts[0]), parts[1:]))
    for obj, rest in candidates:
        for name in rest:
            fields = {**getattr(obj, "__annotations__", {}), **getattr(obj, "model_fields", {})}
            if hasattr(obj, name):
                obj = getattr(obj, name)
            elif name in fields or f"self.{name}" in source_of(obj):  # a field, an instance attribute
                obj = None
            else:
                break
        else:
            return True
    return False


def is_config_key(parts: list[str]) -> bool:
    from pydantic import BaseModel

    from nnctl.config import Config

    model: object = Config
    for name in parts:
        fields = getattr(model, "model_fields", None) if isinstance(model, type) else None
        if not fields or name not in fields:
            return False
        annotation = fields[name].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return True


def is_meta_key_written(parts: list[str]) -> bool:
    if len(parts) != 2 or parts[0] != "meta":
        return False
    written = f'meta["{parts[1]}"]'
    return any(written in path.read_text(encoding="utf-8") for path in (REPO / "nnctl").rglob("*.py"))


def resolves_in_package(parts: list[str]) -> bool:
    """``PACKAGE.MODULE.NAME...`` for an nnctl package other than the engine."""
    import importlib

    if len(parts) < 3 or parts[0] == "engine" or not (REPO / "nnctl" / parts[0] / "__init__.py").exists():
        return False
    if importlib.util.find_spec(f"nnctl.{parts[0]}.{parts[1]}") is None:
        return False
    obj: object = importlib.import_module(f"nnctl.{parts[0]}.{parts[1]}")
    for name in parts[2:]:
        if not hasattr(obj, name):
            return False
        obj = getattr(obj, name)
    return True


def whole_expression_in(code: str, line: str) -> bool:
    """``code`` in ``line`` as a whole expression or statement, not the start of a longer one
    (``p -= lr * g`` is not quoted from ``p -= lr * g / (np.sqrt(v) + self.eps)``)."""
    for found in re.finditer(re.escape(code), line):
        before = line[: found.start()].rstrip()
        after = line[found.end() :].lstrip()
        starts = not before or not (before[-1].isalnum() or before[-1] in "._")
        if starts and after[:1] in ("", "#", ")", ",", ";"):
            return True
    return False


def source_of(obj: object) -> str:
    import inspect

    try:
        return inspect.getsource(obj)  # type: ignore[arg-type]
    except (TypeError, OSError):
        return ""


def test_math_md_quotes_code_that_exists() -> None:
    """Code quoted in docs/math.md appears in nnctl's source as written; dotted names it gives
    (``network.Network._backprop``, ``Softmax.jacobian``) exist."""
    text = (REPO / "docs" / "math.md").read_text(encoding="utf-8")
    lines = [
        " ".join(line.split())
        for path in (REPO / "nnctl").rglob("*.py")
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    quoted = [
        " ".join(code.split()) for code in inline_code(text) if any(sign in code for sign in CODE_SIGNS)
    ]
    assert len(quoted) >= 5
    missing = [code for code in quoted if not any(whole_expression_in(code, line) for line in lines)]
    assert not missing, f"docs/math.md quotes code that is not in nnctl/: {missing}"
    names = [code for code in inline_code(text) if re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", code)]
    names = [name for name in names if name.split(".")[0] not in ("np", "numpy", "finfo")]  # numpy's
    assert len(names) >= 40
    files = [name for name in names if name.endswith(".py")]
    folders = (REPO, REPO / "tests", REPO / "nnctl" / "engine")
    assert all(any((folder / name).exists() for folder in folders) for name in files), files
    unresolved = [name for name in names if name not in files and not resolves(name)]
    assert not unresolved, f"docs/math.md names what does not exist: {unresolved}"
