"""``nnctl serve`` as a real process on a free loopback port (``--port 0``; the port is read from its
first line): every endpoint, every kind of bad request (status and message), concurrent requests
against in-process predictions, a tabular checkpoint's raw cells, workers, and SIGTERM.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import CONFIGS, DATASETS, invoke, ok, run_nnctl, train
from serving_helpers import TABULAR_ROWS, Server, reference_outputs, tabular_checkpoint

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("uvicorn", reason="the serve extra is not installed")

IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("iris")
    return train(CONFIGS / "iris.yaml", folder / "run", "training.epochs=20") / "best.npz"


@pytest.fixture(scope="module")
def server(iris: Path) -> Any:
    with Server(iris) as running:
        yield running


def iris_records() -> list[dict[str, float]]:
    with open(DATASETS / "iris.csv", newline="") as handle:
        return [{name: float(row[name]) for name in IRIS_COLUMNS} for row in csv.DictReader(handle)]


def predicted_by_cli(checkpoint: Path) -> list[dict[str, Any]]:
    """``nnctl predict`` on iris.csv, as the server's answer entries."""
    text = ok(invoke("predict", checkpoint, DATASETS / "iris.csv")).stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    return [{"label": r["species"], "probabilities": {c: float(r[f"p_{c}"]) for c in CLASSES}} for r in rows]


def assert_same_predictions(
    got: list[dict[str, Any]], want: list[dict[str, Any]], *, tolerance: float = 1e-6
) -> None:
    """Labels equal, probabilities within ``tolerance`` (relative): float32 matrix products round
    differently for different batch sizes, so only the same batch is bit for bit the same."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g["label"] == w["label"]
        assert g["probabilities"].keys() == w["probabilities"].keys()
        for name, p in w["probabilities"].items():
            assert g["probabilities"][name] == pytest.approx(p, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Endpoints


def test_health(server: Server) -> None:
    assert server.request("GET", "/health") == (200, {"status": "ok"})


def test_info_describes_the_model(server: Server, iris: Path) -> None:
    status, info = server.request("GET", "/info")
    assert status == 200
    import nnctl

    assert info["task"] == "classification"
    assert [c["name"] for c in info["columns"]] == IRIS_COLUMNS
    assert {c["type"] for c in info["columns"]} == {"numeric"}
    assert info["classes"] == CLASSES
    assert [layer["units"] for layer in info["layers"]] == [4, 16, 3]
    assert info["nnctl_version"] == nnctl.__version__
    meta = json.loads(str(np.load(iris)["meta"][()]))
    assert info["checkpoint"]["epoch"] == meta["epoch"]
    assert info["checkpoint"]["metrics"] == meta["metrics"]


def test_one_record_and_a_list_match_predict(server: Server, iris: Path) -> None:
    records, want = iris_records(), predicted_by_cli(iris)
    status, answer = server.request("POST", "/predict", records[70])
    assert status == 200
    assert answer["ignored"] == []
    assert_same_predictions(answer["predictions"], want[70:71])
    order = [149, 0, 75, 3, 120]
    status, answer = server.request("POST", "/predict", [records[i] for i in order])
    assert status == 200
    assert_same_predictions(answer["predictions"], [want[i] for i in order])


def test_empty_list_gets_an_empty_answer(server: Server) -> None:
    assert server.request("POST", "/predict", []) == (200, {"predictions": [], "ignored": []})


def test_extra_keys_are_ignored_and_listed(server: Server, iris: Path) -> None:
    records, want = iris_records(), predicted_by_cli(iris)
    body = [{**records[5], "species": "setosa", "id": 5}, {**records[6], "note": None}]
    status, answer = server.request("POST", "/predict", body)
    assert status == 200
    assert answer["ignored"] == ["id", "note", "species"]
    assert_same_predictions(answer["predictions"], want[5:7])


def test_docs_come_from_the_checkpoint(server: Server) -> None:
    status, page = server.request("GET", "/docs")
    assert status == 200 and "swagger" in page.lower()
    status, spec = server.request("GET", "/openapi.json")
    assert status == 200
    schemas = spec["components"]["schemas"]
    assert list(schemas["Record"]["properties"]) == IRIS_COLUMNS
    assert schemas["Record"]["required"] == IRIS_COLUMNS
    assert schemas["Prediction"]["properties"]["label"]["enum"] == CLASSES
    assert list(schemas["Probabilities"]["properties"]) == CLASSES
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["anyOf"][0] == {"$ref": "#/components/schemas/Record"}


# ---------------------------------------------------------------------------------------------
# Bad requests: 422 naming the field (never 500), 413 over the limit


GOOD = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.mark.parametrize(
    ("raw", "loc", "words"),
    [
        (b'{"sepal_length": 5.1,', ["body"], "malformed JSON"),
        (b"", ["body"], "malformed JSON"),
        (b'"hello"', ["body"], "expected a record"),
        (b"[1, 2]", ["body", 0], "expected a record"),
        (
            json.dumps({**GOOD, "sepal_width": "3.5"}).encode(),
            ["body", "sepal_width"],
            "expected a finite number",
        ),
        (
            json.dumps({**GOOD, "sepal_width": True}).encode(),
            ["body", "sepal_width"],
            "expected a finite number",
        ),
        (
            json.dumps([GOOD, {k: v for k, v in GOOD.items() if k != "petal_length"}]).encode(),
            ["body", 1, "petal_length"],
            "missing; the model needs this column",
        ),
        (
            b'{"sepal_length": NaN, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}',
            ["body", "sepal_length"],
            "not a finite number",
        ),
        (
            b'[{"sepal_length": 1e999, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]',
            ["body", 0, "sepal_length"],
            "not a finite number",
        ),
        (
            b'{"sepal_length": -Infinity, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}',
            ["body", "sepal_length"],
            "not a finite number",
        ),
    ],
)
def test_bad_request_is_422_naming_the_field(server: Server, raw: bytes, loc: list[Any], words: str) -> None:
    status, answer = server.request("POST", "/predict", raw=raw)
    assert status == 422, answer
    assert answer["detail"][0]["loc"] == loc
    assert words in answer["detail"][0]["msg"]
    field = next((part for part in loc[1:] if isinstance(part, str)), None)
    if field is not None:
        assert f"field '{field}'" in answer["message"]
    assert server.request("GET", "/health")[0] == 200  # and the server is fine


def test_every_bad_record_is_reported(server: Server) -> None:
    body = [GOOD, {**GOOD, "sepal_length": "x"}, GOOD, {"petal_width": []}]
    status, answer = server.request("POST", "/predict", body)
    assert status == 422
    locs = [e["loc"] for e in answer["detail"]]
    assert ["body", 1, "sepal_length"] in locs
    assert ["body", 3, "sepal_length"] in locs and ["body", 3, "petal_width"] in locs


def test_body_over_the_limit_is_413(iris: Path) -> None:
    body = json.dumps([GOOD] * 200).encode()  # about 16 KB, over a 10 KB limit
    with Server(iris, "--max-body-mb", "0.01") as small:
        status, answer = small.request("POST", "/predict", raw=body)
        assert status == 413
        assert "over the 10,485-byte limit" in answer["message"]
        # without a Content-Length (chunked), the limit holds while the body streams in
        conn = small.connection()
        conn.putrequest("POST", "/predict")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for start in range(0, len(body), 4096):
            piece = body[start : start + 4096]
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        assert response.status == 413
        assert "over the 10,485-byte limit" in json.loads(response.read())["message"]
        assert small.request("POST", "/predict", [GOOD])[0] == 200  # under the limit: answered


# ---------------------------------------------------------------------------------------------
# Concurrency


def test_concurrent_requests_match_in_process_predictions(server: Server, iris: Path) -> None:
    """8 threads on their own connections, single records and large batches (answered in the server's
    thread pool) interleaved; every answer equals the in-process prediction for its rows."""
    from nnctl.serve.predictor import Predictor

    records = iris_records()
    predictor = Predictor.load(iris)

    def in_process(rows: np.ndarray) -> list[dict[str, Any]]:
        """The same rows as one batch in this process: bit for bit what the server should send."""
        columns = {name: [records[i][name] for i in rows] for name in IRIS_COLUMNS}
        return predictor.predict_columns(columns, source="test")

    rng = np.random.default_rng(0)
    big = rng.integers(0, len(records), size=2000)  # ~170 KB: over the inline limit, so threaded

    def client(worker: int) -> int:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
        checked = 0
        for step in range(25):
            if (worker + step) % 5 == 0:
                rows = np.roll(big, worker * 37 + step)
            else:
                rows = rng.integers(0, len(records), size=1 + (worker + step) % 3)
            status, answer = server.request("POST", "/predict", [records[i] for i in rows], connection=conn)
            assert status == 200
            assert_same_predictions(answer["predictions"], in_process(rows), tolerance=0.0)
            checked += len(rows)
        conn.close()
        return checked

    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(client, range(8)))
    assert sum(counts) > 8 * 5 * 2000


# ---------------------------------------------------------------------------------------------
# A tabular checkpoint: raw cells, nulls, categories


def test_tabular_records_are_encoded_as_in_training(tmp_path: Path) -> None:
    checkpoint = tabular_checkpoint(tmp_path)
    want = reference_outputs(checkpoint, [encoded for _, _, encoded in TABULAR_ROWS])
    with Server(checkpoint) as tabular:
        status, info = tabular.request("GET", "/info")
        assert status == 200
        island = next(c for c in info["columns"] if c["name"] == "island")
        assert island["type"] == "categorical" and island["categories"] == ["Biscoe", "Dream", "Torgersen"]

        status, answer = tabular.request("POST", "/predict", [record for record, _, _ in TABULAR_ROWS])
        assert status == 200, answer
        got = np.array([[p["probabilities"][c] for c in ("a", "b", "c")] for p in answer["predictions"]])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert [p["label"] for p in answer["predictions"]] == [
            ["a", "b", "c"][i] for i in want.argmax(axis=1)
        ]

        record = TABULAR_ROWS[0][0]
        refusals = [
            ({**record, "sex": "unknown"}, "sex", "category 'unknown' was not seen in training"),
            ({**record, "depth": None}, "depth", "expected a finite number, got null"),  # no fill
            ({**record, "depth": "NA"}, "depth", "expected a finite number"),
            ({**record, "island": ["Dream"]}, "island", "expected a string or a number or null"),
        ]
        for body, field, words in refusals:
            status, answer = tabular.request("POST", "/predict", body)
            assert status == 422, (body, answer)
            assert f"field '{field}'" in answer["message"] and words in answer["message"], answer
            assert answer["detail"][0]["loc"] == ["body", field]
        status, spec = tabular.request("GET", "/openapi.json")
        properties = spec["components"]["schemas"]["Record"]["properties"]
        assert "Biscoe, Dream, Torgersen" in properties["island"]["description"]
        assert "null = missing" in properties["length"]["description"]
        assert "null" not in json.dumps(properties["depth"])


# ---------------------------------------------------------------------------------------------
# Processes: workers, SIGTERM, start-up errors


def test_sigterm_stops_gracefully(iris: Path) -> None:
    running = Server(iris)
    assert running.request("POST", "/predict", GOOD)[0] == 200
    code, stdout, stderr = running.stop(signal.SIGTERM)
    assert code == 0, stderr
    assert "stopped" in stdout
    assert "Traceback" not in stderr


def test_workers_share_the_port(iris: Path) -> None:
    with Server(iris, "--workers", "2") as running:
        assert "with 2 workers" in running.stdout_lines[0]
        for _ in range(6):  # new connections: the kernel spreads them over the workers
            status, answer = running.request("POST", "/predict", [GOOD, GOOD])
            assert status == 200 and len(answer["predictions"]) == 2
        code, stdout, stderr = running.stop(signal.SIGTERM)
    assert code == 0, stderr
    assert "stopped" in stdout


def test_bad_checkpoint_fails_before_listening(tmp_path: Path) -> None:
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a checkpoint")
    outcome = run_nnctl("serve", broken, "--port", "0")
    assert outcome.code == 2
    assert "broken.npz: not an .npz checkpoint" in outcome.stderr


def test_taken_port_is_one_clear_error(iris: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        outcome = run_nnctl("serve", iris, "--port", str(port))
    assert outcome.code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in outcome.stderr
    assert "--port" in outcome.stderr


def test_fastapi_route_answers_like_the_fast_lane(iris: Path) -> None:
    """The FastAPI app's own /predict route (what the docs describe, reached when the app is mounted
    elsewhere without the fast lane) gives the same bytes as the fast lane, over real ASGI calls."""
    import asyncio

    from nnctl.serve.app import create_app
    from nnctl.serve.predictor import Predictor

    lane = create_app(Predictor.load(iris), max_body_bytes=2000)

    def call(app: Any, body: bytes) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/predict",
            "raw_path": b"/predict",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8000),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(app(scope, receive, send))
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    bodies = [json.dumps([GOOD, GOOD]).encode(), b'{"sepal_length": "x"}', json.dumps([GOOD] * 40).encode()]
    for body in bodies:
        assert call(lane.app, body) == call(lane, body)
    assert [call(lane, body)[0] for body in bodies] == [200, 422, 413]


# ---------------------------------------------------------------------------------------------
# Penguins: a tabular checkpoint trained here (text columns, NA cells), raw rows as records


PENGUIN_CATEGORICAL = ("island", "sex")


@pytest.fixture(scope="module")
def penguins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("penguins")
    return train(CONFIGS / "penguins.yaml", folder / "run", "training.epochs=4") / "best.npz"


def penguin_records() -> list[dict[str, Any]]:
    """penguins.csv's rows as JSON records: text for island and sex, numbers for the measurements,
    null for an NA cell (every other NA of sex sent as the text "NA", which is missing too)."""
    records = []
    with open(DATASETS / "penguins.csv", newline="") as handle:
        for index, row in enumerate(csv.DictReader(handle)):
            record: dict[str, Any] = {"species": row.pop("species")}  # not a feature: ignored
            for name, cell in row.items():
                if name in PENGUIN_CATEGORICAL:
                    record[name] = None if cell == "NA" and index % 2 else cell
                else:
                    record[name] = None if cell == "NA" else float(cell)
            records.append(record)
    return records


def test_penguin_records_match_predict_on_the_same_raw_rows(penguins: Path) -> None:
    """Every row of penguins.csv (NA cells included) sent as records gives what `nnctl predict`
    gives for the file: labels equal, probabilities to float64 rounding."""
    text = ok(invoke("predict", penguins, DATASETS / "penguins.csv")).stdout
    classes = ["Adelie", "Chinstrap", "Gentoo"]
    want = [
        {"label": r["species"], "probabilities": {c: float(r[f"p_{c}"]) for c in classes}}
        for r in csv.DictReader(io.StringIO(text))
    ]
    records = penguin_records()
    assert any(r["sex"] is None for r in records) and any(r["sex"] == "NA" for r in records)
    assert any(r["bill_length_mm"] is None for r in records)
    with Server(penguins) as running:
        status, answer = running.request("POST", "/predict", records)
        assert status == 200, answer
        assert answer["ignored"] == ["species"]
        got = answer["predictions"]
        assert [g["label"] for g in got] == [w["label"] for w in want]
        for g, w in zip(got, want, strict=True):
            for name, p in w["probabilities"].items():
                assert g["probabilities"][name] == pytest.approx(p, rel=1e-9, abs=1e-12)
        first_na = next(i for i, r in enumerate(records) if r["bill_length_mm"] is None)
        status, answer = running.request("POST", "/predict", records[first_na])  # one record
        assert status == 200 and answer["predictions"][0]["label"] == want[first_na]["label"]

        good = {k: v for k, v in records[0].items() if k != "species"}
        refusals = [
            (
                {k: v for k, v in good.items() if k != "island"},
                ["body", "island"],
                "missing; the model needs",
            ),
            ({**good, "bill_depth_mm": "18.7"}, ["body", "bill_depth_mm"], "expected a finite number"),
            ({**good, "sex": ["male"]}, ["body", "sex"], "expected a string or a number or null"),
            ({**good, "body_mass_g": float("inf")}, ["body", "body_mass_g"], "not a finite number"),
        ]
        for body, loc, words in refusals:
            raw = json.dumps(body).encode()
            status, answer = running.request("POST", "/predict", raw=raw)
            assert status == 422, (body, answer)
            assert answer["detail"][0]["loc"] == loc and words in answer["detail"][0]["msg"], answer
            assert f"field '{loc[-1]}'" in answer["message"]


def test_info_lists_the_penguin_columns_with_types_and_categories(penguins: Path) -> None:
    from nnctl.checkpoint import load_checkpoint

    with Server(penguins) as running:
        status, info = running.request("GET", "/info")
    assert status == 200
    columns = {c["name"]: c for c in info["columns"]}
    assert list(columns) == [
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
        "year",
    ]
    assert {name: c["type"] for name, c in columns.items()} == {
        name: "categorical" if name in PENGUIN_CATEGORICAL else "numeric" for name in columns
    }
    assert columns["island"]["categories"] == ["Biscoe", "Dream", "Torgersen"]
    assert columns["sex"]["categories"] == ["female", "male"]
    assert columns["sex"]["missing"] == "category"
    assert columns["bill_length_mm"]["indicator"] is True
    assert info["features"] == load_checkpoint(penguins).feature_names
    assert info["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert info["layers"][0]["units"] == len(info["features"]) == 15
