"""Shared by the export and serve tests: a tabular (format-2) checkpoint built by hand, raw cells as
ONNX Runtime inputs, and a real ``nnctl serve`` process on a free loopback port.

The tabular checkpoint is a real nnctl run on already-encoded columns (so its weights, config and
meta are genuine), turned into format 2 by hand as issue 12's contract describes it: a
``preprocessing`` member describing the raw columns, ``format_version`` 2, and one-hot and indicator
inputs left unnormalized (shift 0, scale 1). ``TABULAR_ROWS`` pair raw records with the encoded
inputs the contract prescribes, written out by hand, so a reference output needs only NumPy.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
from helpers import CLI_ENV, forward, nnctl_command, read_checkpoint, train, write_csv

PREPROCESSING = {
    "missing_values": ["", "NA", "N/A", "NaN", "nan", "null", "None", "?"],
    "columns": [
        {"name": "length", "type": "numeric", "missing": "median", "fill": 2.5, "indicator": True},
        {
            "name": "island",
            "type": "categorical",
            "categories": ["Biscoe", "Dream", "Torgersen"],
            "infrequent": ["Rare"],
            "other": True,
            "missing": "category",
            "fill": None,
            "unknown": "ignore",
        },
        {"name": "depth", "type": "numeric", "missing": "error", "fill": None, "indicator": False},
        {
            "name": "sex",
            "type": "categorical",
            "categories": ["female", "male"],
            "infrequent": [],
            "other": False,
            "missing": "most_frequent",
            "fill": "male",
            "unknown": "error",
        },
        {
            "name": "ring",
            "type": "categorical",
            "categories": ["1", "2"],
            "infrequent": [],
            "other": False,
            "missing": "most_frequent",
            "fill": "1",
            "unknown": "ignore",
        },
    ],
}
ENCODED = [
    "length",
    "length_missing",
    "island=Biscoe",
    "island=Dream",
    "island=Torgersen",
    "island=<other>",
    "island=<missing>",
    "depth",
    "sex=female",
    "sex=male",
    "ring=1",
    "ring=2",
]
UNNORMALIZED = [i for i, name in enumerate(ENCODED) if name not in ("length", "depth")]

# (raw record as JSON would send it, the same cells as ONNX inputs, the encoded inputs by the contract)
TABULAR_ROWS: list[tuple[dict[str, Any], dict[str, Any], list[float]]] = [
    (
        {"length": 3.0, "island": "Dream", "depth": 1.5, "sex": "male", "ring": "2"},
        {"length": 3.0, "island": "Dream", "depth": 1.5, "sex": "male", "ring": "2"},
        [3.0, 0, 0, 1, 0, 0, 0, 1.5, 0, 1, 0, 1],
    ),
    (  # missing numeric -> fill + indicator; infrequent -> <other>; missing sex -> most frequent
        {"length": None, "island": "Rare", "depth": -0.5, "sex": None, "ring": 1},
        {"length": float("nan"), "island": "Rare", "depth": -0.5, "sex": "", "ring": "1"},
        [2.5, 1, 0, 0, 0, 1, 0, -0.5, 0, 1, 1, 0],
    ),
    (  # missing category -> its own slot; a number in a categorical column in another spelling
        {"length": 1.0, "island": None, "depth": 0.0, "sex": "female", "ring": 2.0},
        {"length": 1.0, "island": "NA", "depth": 0.0, "sex": "female", "ring": "2.0"},
        [1.0, 0, 0, 0, 0, 0, 1, 0.0, 1, 0, 0, 1],
    ),
    (  # unknown island (unknown: ignore) -> all zeros; unknown ring -> all zeros
        {"length": 2.0, "island": "Atlantis", "depth": 2.0, "sex": "female", "ring": "7"},
        {"length": 2.0, "island": "Atlantis", "depth": 2.0, "sex": "female", "ring": "7"},
        [2.0, 0, 0, 0, 0, 0, 0, 2.0, 1, 0, 0, 0],
    ),
    (  # a missing-value spelling as text is missing too
        {"length": 0.5, "island": "NA", "depth": 3.0, "sex": "N/A", "ring": None},
        {"length": 0.5, "island": "", "depth": 3.0, "sex": "N/A", "ring": "?"},
        [0.5, 0, 0, 0, 0, 0, 1, 3.0, 0, 1, 1, 0],
    ),
]


def tabular_checkpoint(folder: Path) -> Path:
    """A format-2 classification checkpoint over ``PREPROCESSING``'s raw columns (see the module doc)."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(60):
        encoded = [float(v) for v in rng.normal(size=len(ENCODED)).round(3)]
        rows.append([*encoded, ["a", "b", "c"][i % 3]])
    data = write_csv(folder / "encoded.csv", [*ENCODED, "species"], rows)
    config = folder / "tabular.yaml"
    config.write_text(
        f"name: tabular\nseed: 1\ndata: {{path: {data.name}, target: species, validation: 0.2, test: 0}}\n"
        "model:\n  layers:\n    - {units: 6, activation: {name: elu, alpha: 0.7}}\n"
        "    - {units: 3, activation: softmax}\n"
        "cost: cce\ntraining: {epochs: 5, batch_size: 8, learning_rate: 0.1}\n"
    )
    run = train(config, folder / "run")
    with np.load(run / "best.npz", allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["norm_shift"][UNNORMALIZED] = 0.0
    arrays["norm_scale"][UNNORMALIZED] = 1.0
    meta = json.loads(str(arrays["meta"][()]))
    meta["format_version"] = 2
    arrays["meta"] = np.array(json.dumps(meta))
    arrays["preprocessing"] = np.array(json.dumps(PREPROCESSING))
    path = folder / "tabular.npz"
    np.savez(path, **arrays)
    return path


def reference_outputs(checkpoint: Path, encoded: list[list[float]]) -> np.ndarray:
    """Softmax outputs for encoded rows, in float64 with NumPy alone."""
    return forward(read_checkpoint(checkpoint), np.array(encoded, dtype=np.float64))[1]


def onnx_feed(session: Any, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """ONNX Runtime inputs ([N, 1] float32 or string) from per-row cells keyed by column."""
    feed = {}
    for node in session.get_inputs():
        cells = [row[node.name] for row in rows]
        if node.type == "tensor(string)":
            feed[node.name] = np.array(cells, dtype=object).reshape(-1, 1)
        else:
            feed[node.name] = np.array(cells, dtype=np.float32).reshape(-1, 1)
    return feed


# ---------------------------------------------------------------------------------------------
# A real server process


class Server:
    """``nnctl serve CHECKPOINT --port 0 ARGS`` as a subprocess; the port is read from its first line."""

    def __init__(self, checkpoint: Path, *args: str, startup_timeout: float = 60) -> None:
        self.process = subprocess.Popen(
            [*nnctl_command(), "serve", str(checkpoint), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **CLI_ENV, "PYTHONUNBUFFERED": "1"},
        )
        lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(lines,), daemon=True)
        self._reader.start()
        self.stdout_lines: list[str] = []
        try:
            first = lines.get(timeout=startup_timeout)
        except queue.Empty:
            self.process.kill()
            raise AssertionError(f"nnctl serve did not start: {self.process.stderr.read()}") from None
        if "http://" not in first:
            self.process.wait(timeout=30)
            raise AssertionError(f"nnctl serve did not start: {first}{self.process.stderr.read()}")
        self.url = first.split("http://", 1)[1].split()[0]
        self.host, port = self.url.rsplit(":", 1)
        self.port = int(port)

    def _read(self, lines: queue.Queue[str]) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout_lines.append(line)
            lines.put(line)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        connection: http.client.HTTPConnection | None = None,
    ) -> tuple[int, Any]:
        """(status, parsed JSON or text); ``body`` is sent as JSON, ``raw`` as given."""
        conn = connection or self.connection()
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        text = response.read().decode()
        if connection is None:
            conn.close()
        kind = response.getheader("content-type") or ""
        return response.status, json.loads(text) if kind.startswith("application/json") else text

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, str, str]:
        """Send ``sig``; (exit status, stdout after the first line, stderr)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        stderr = self.process.stderr.read() if self.process.stderr else ""
        return code, "".join(self.stdout_lines[1:]), stderr

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
