"""Output is never cut: piped or logged output keeps every character whatever ``COLUMNS`` says, and an
80-column terminal folds long table cells and wraps paragraphs instead of cropping them ("…").

Piped runs are compared as sets of words (nothing lost, nothing split); terminal runs (a real
pseudo-terminal) as multisets of printable characters, since folding may split a word across lines.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CONFIGS, nnctl_command

DIGITS = CONFIGS / "digits.yaml"
# A config whose check table holds long cells: elu(alpha=0.5), logistic(L=1, k=3, x0=0), (1.17)/(2.16).
LONG_CELLS = [
    "--set", "model.layers[1].activation={name: elu, alpha: 0.5}",
    "--set", "model.layers[2].activation={name: logistic, L: 1, k: 3}",
    "--set", "cost=quadratic", "--set", "data.task=classification",
]  # fmt: skip
COMMANDS = {
    "explain": ["explain", DIGITS],
    "explain-long": ["explain", DIGITS, *LONG_CELLS],
    "check": ["check", DIGITS],
    "check-long": ["check", DIGITS, *LONG_CELLS],
    "gradcheck": ["gradcheck", DIGITS, "--samples", "4", "--max-entries", "50"],
}


def piped(args: list[object], columns: int, cwd: Path | None = None) -> str:
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"}
    proc = subprocess.run(
        [*nnctl_command(), *map(str, args)], env=env, capture_output=True, text=True, timeout=120, cwd=cwd
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def words(text: str) -> set[str]:
    return {word.strip("│┃") for word in text.split()} - {""}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_piped_output_at_80_columns_keeps_every_word(name: str) -> None:
    narrow, wide = piped(COMMANDS[name], 80), piped(COMMANDS[name], 300)
    assert "…" not in narrow
    lost = words(wide) - words(narrow)
    assert not lost, f"lost at COLUMNS=80: {sorted(lost)}\n{narrow}"


def test_piped_sweep_ranking_keeps_long_trial_names(tmp_path: Path) -> None:
    args = [
        "sweep", CONFIGS / "iris.yaml", "--set", "training.epochs=1", "--jobs", "1",
        "--grid", "training.learning_rate=[0.0123, 0.0456]", "--grid", "model.layers[0].units=[17]",
        "--grid", "training.batch_size=[13]", "--grid", "model.layers[0].dropout=[0.125]",
        "--grid", "data.validation=[0.2]", "--grid", "training.weight_decay=[0.00125]",
    ]  # fmt: skip
    narrow = piped([*args, "--out", tmp_path / "a"], 80)
    names = sorted(p.name for p in (tmp_path / "a").iterdir() if (p / "trial.json").exists())
    assert names and all(len(name) > 50 for name in names)
    for name in names:
        assert name in narrow.split(), f"{name} cut in:\n{narrow}"
    assert "…" not in narrow


# ---------------------------------------------------------------------------------------------
# A real terminal of 80 columns


def in_terminal(args: list[object], columns: int) -> str:
    """``nnctl ARGS`` on a pseudo-terminal ``columns`` wide; the text without escape sequences."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "60", "TERM": "xterm", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [*nnctl_command(), *map(str, args)], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed: the process is done writing
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    text = b"".join(chunks).decode("utf-8", "replace")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", text)


def characters(text: str) -> collections.Counter[str]:
    """Printable ASCII characters (no spaces, no box drawing) with their counts."""
    return collections.Counter(c for c in text if "!" <= c <= "~")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
@pytest.mark.parametrize("name", ["explain-long", "check-long"])
def test_80_column_terminal_folds_instead_of_cutting(name: str) -> None:
    narrow, wide = in_terminal(COMMANDS[name], 80), in_terminal(COMMANDS[name], 300)
    assert "…" not in narrow
    assert max(len(line) for line in narrow.splitlines()) <= 80 or name.startswith("check")
    assert characters(narrow) == characters(wide)
