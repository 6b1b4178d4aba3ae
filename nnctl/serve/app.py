"""The ASGI application of ``nnctl serve`` (FastAPI), built from a ``Predictor``; importing this module
starts nothing.

* ``GET /health``: ``{"status": "ok"}``
* ``GET /info``: task, raw columns with their types and categories, classes, layers, versions, the
  checkpoint's epoch and metrics
* ``POST /predict``: one record or a list -> ``{"predictions": [...], "ignored": [...]}``, one entry per
  record in the order sent
* ``GET /docs``: OpenAPI docs whose request and answer schemas are built from the checkpoint's columns

Bad requests never answer 500: malformed JSON, a wrong type, a missing column, a non-finite number or
a cell the preprocessing refuses get 422 with ``detail`` entries naming the record and field and one
``message`` line; a body over the size limit gets 413 before it is read. Small bodies are answered on
the event loop (a thread hop costs more than the prediction); large ones in the thread pool, so one
big batch does not hold up other requests' I/O. ``/predict`` and ``/health`` take a fast lane past
Starlette's routing and middleware (``FastLane``); the FastAPI app describes them and answers the rest.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at run time,
# and they name classes imported inside ``create_app`` (FastAPI is an optional dependency).
import json
import os
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from nnctl import __version__
from nnctl.data.columns import CategoricalColumn
from nnctl.data.raw import RawColumn
from nnctl.errors import DataError, NnctlError
from nnctl.serve.predictor import Predictor
from nnctl.serve.records import RecordParser, Records, RequestError

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: Bodies up to this size are parsed and predicted on the event loop itself.
INLINE_BODY_BYTES = 64 * 1024
ENV_CHECKPOINT = "NNCTL_SERVE_CHECKPOINT"
ENV_MAX_BODY = "NNCTL_SERVE_MAX_BODY_BYTES"
ENV_BLAS_THREADS = "NNCTL_SERVE_BLAS_THREADS"


def limit_blas_threads(threads: int) -> None:
    """BLAS threads for this process's predictions. A request's matrix products are small: extra
    BLAS threads only wait for each other and fight the server's own thread for the cores
    (measured: a 1,000-row digits forward pass took 0.3 ms with 1 thread, 27 ms with 2 on a busy
    2-core machine); scale with ``--workers`` instead."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)


def _dumps() -> Callable[[Any], bytes]:
    try:
        import orjson

        return orjson.dumps
    except ImportError:
        return lambda obj: json.dumps(obj, separators=(",", ":")).encode()


class BodyTooLarge(Exception):
    def __init__(self, size: int | None, limit: int) -> None:
        super().__init__(size)
        self.size, self.limit = size, limit


async def read_body(receive: Any, declared: str | None, limit: int) -> bytes:
    """The request body from the ASGI ``receive`` channel, refused (``BodyTooLarge``) as soon as
    it is known to exceed ``limit``: from its Content-Length, else while it streams in."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(int(declared), limit)
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(None, limit)
        chunks.append(chunk)
        more = message.get("more_body", False) and message["type"] == "http.request"
    return b"".join(chunks)


class PredictHandler:
    """Body bytes -> (status, JSON bytes): parsing, validation, prediction; thread-safe."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.parser = RecordParser(predictor.preprocessing)
        self.dumps = _dumps()
        self.positions = _value_positions(predictor)
        self.width = len(predictor.preprocessing.feature_names)

    def __call__(self, body: bytes) -> tuple[int, bytes]:
        try:
            records = self.parser.parse(body)
            if records.rows == 0:
                answers: list[dict[str, Any]] = []
            elif records.matrix is not None:
                answers = self._from_matrix(records.matrix)
            else:
                answers = self._from_columns(records)
        except RequestError as exc:
            return 422, self.dumps({"detail": exc.errors, "message": exc.message})
        return 200, self.dumps({"predictions": answers, "ignored": records.ignored})

    def _from_columns(self, records: Records) -> list[dict[str, Any]]:
        """Through the checkpoint's own preprocessing, as ``predict`` encodes a file's rows; a cell it
        refuses (an unknown category where the column says ``unknown: error``, ...) is a
        RequestError naming the record and field."""
        where: list[list[Any]] = []

        def locate(row: int, column: RawColumn) -> str:
            where.append(records.loc(row, column.name))
            return RequestError.place(where[-1])

        try:
            return self.predictor.predict_columns(records.columns, source="request body", locate=locate)
        except DataError as exc:
            loc = where[-1] if where else ["body"]
            message = exc.message.split(": ", 1)[1] if where else exc.message
            raise RequestError([{"loc": loc, "msg": message, "type": "value_error"}]) from None

    def _from_matrix(self, matrix: np.ndarray) -> list[dict[str, Any]]:
        """All cells present and numeric: the encoded inputs are the values themselves (and 0 for
        each missing-value indicator), exactly what the preprocessing gives for such rows."""
        if self.positions is None:
            encoded = matrix
        else:
            encoded = np.zeros((matrix.shape[0], self.width))
            encoded[:, self.positions] = matrix
        predictor = self.predictor
        return predictor.answers(predictor.outputs(predictor.normalize(encoded)))


def _value_positions(predictor: Predictor) -> np.ndarray | None:
    """Where each numeric column's value sits among the encoded inputs (None: in the same order)."""
    if not predictor.numeric_only:
        return None
    positions, offset = [], 0
    for column in predictor.preprocessing.columns:
        positions.append(offset)
        offset += 2 if column.indicator else 1
    return None if offset == len(positions) else np.array(positions)


class PredictEndpoint:
    """``POST /predict`` at the ASGI level: read the body within the limit, answer it."""

    def __init__(self, handler: PredictHandler, max_body_bytes: int) -> None:
        self.handler = handler
        self.limit = max_body_bytes

    async def answer(self, receive: Any, declared: str | None) -> tuple[int, bytes]:
        from starlette.concurrency import run_in_threadpool

        try:
            body = await read_body(receive, declared, self.limit)
        except BodyTooLarge as exc:
            size = f"{exc.size:,} bytes" if exc.size is not None else "the body"
            message = f"{size} over the {exc.limit:,}-byte limit (nnctl serve --max-body-mb)"
            detail = [{"loc": ["body"], "msg": message, "type": "too_large"}]
            return 413, self.handler.dumps({"detail": detail, "message": message})
        if len(body) <= INLINE_BODY_BYTES:
            return self.handler(body)
        return await run_in_threadpool(self.handler, body)


class FastLane:
    """The ASGI app served: ``POST /predict`` and ``GET /health`` answered directly, everything else
    (``/info``, ``/docs``, ``/openapi.json``, 404s, 405s) by the FastAPI app in ``.app``.

    The same endpoint code answers either way; the fast lane only skips Starlette's routing,
    middleware and request objects, which cost twice the prediction of a small record."""

    def __init__(self, app: Any, endpoint: PredictEndpoint, health: bytes) -> None:
        self.app = app
        self.endpoint = endpoint
        self.health = health

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if path == "/predict" and method == "POST":
                declared = next((v.decode() for k, v in scope["headers"] if k == b"content-length"), None)
                status, payload = await self.endpoint.answer(receive, declared)
                return await _send_json(send, status, payload)
            if path == "/health" and method == "GET":
                return await _send_json(send, 200, self.health)
        await self.app(scope, receive, send)


async def _send_json(send: Any, status: int, payload: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def create_app(predictor: Predictor, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastLane:
    """The ASGI application answering for ``predictor`` (the FastAPI app is its ``.app``)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    handler = PredictHandler(predictor)
    endpoint = PredictEndpoint(handler, max_body_bytes)
    dumps = handler.dumps
    info = dumps(predictor.info())
    health = dumps({"status": "ok"})
    name = predictor.checkpoint.config.name or "model"
    app = FastAPI(
        title=f"nnctl serve: {name}",
        version=__version__,
        description=f"{predictor.task} with {len(predictor.input_names)} input columns; "
        f"checkpoint {predictor.checkpoint.path} (epoch {predictor.checkpoint.epoch}).",
        redoc_url=None,
    )
    json_type = "application/json"

    @app.get("/health", summary="Liveness: answers while the server runs")
    async def get_health() -> Response:
        return Response(health, media_type=json_type)

    @app.get("/info", summary="The model: task, columns, classes, layers, versions, checkpoint")
    async def get_info() -> Response:
        return Response(info, media_type=json_type)

    @app.post(
        "/predict",
        summary="Predict one record or a list of records",
        openapi_extra=_request_body(predictor, handler.parser.model),
        responses=_responses(predictor),
    )
    async def post_predict(request: Request) -> Response:  # reached without the fast lane
        status, payload = await endpoint.answer(request.receive, request.headers.get("content-length"))
        return Response(payload, status_code=status, media_type=json_type)

    record_schema = _record_schema(handler.parser.model)
    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(record_schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return FastLane(app, endpoint, health)


def app_from_environment() -> FastLane:
    """The app for ``uvicorn --factory`` workers: the checkpoint named by ``NNCTL_SERVE_CHECKPOINT``."""
    path = os.environ.get(ENV_CHECKPOINT)
    if not path:
        raise NnctlError(f"{ENV_CHECKPOINT} is not set; start the server with `nnctl serve CHECKPOINT`")
    limit = int(os.environ.get(ENV_MAX_BODY, DEFAULT_MAX_BODY_BYTES))
    limit_blas_threads(int(os.environ.get(ENV_BLAS_THREADS, "1")))
    return create_app(Predictor.load(path), max_body_bytes=limit)


# ---------------------------------------------------------------------------------------------
# OpenAPI: schemas from the checkpoint's own columns and classes


def _record_schema(model: type) -> dict[str, Any]:
    from pydantic import TypeAdapter

    schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"Record": schema, **defs}


def _example(predictor: Predictor) -> dict[str, Any]:
    """A record of typical values: the training mean (standard normalization) or the first category."""
    pre = predictor.preprocessing
    shift = dict(zip(pre.feature_names, predictor.checkpoint.norm_shift.tolist(), strict=True))
    example: dict[str, Any] = {}
    for column in pre.columns:
        if isinstance(column, CategoricalColumn):
            example[column.name] = str(column.categories[0]) if column.categories else None
        else:
            standard = predictor.checkpoint.config.data.normalize == "standard"
            value = shift.get(column.name, 0.0) if standard else 0.0
            example[column.name] = round(float(value), 4)
    return example


def _request_body(predictor: Predictor, model: type) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Record"}
    example = _example(predictor)
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"anyOf": [ref, {"type": "array", "items": ref}]},
                    "examples": {
                        "one record": {"value": example},
                        "a list": {"value": [example, example]},
                    },
                }
            },
        }
    }


def _responses(predictor: Predictor) -> dict[int | str, dict[str, Any]]:
    from pydantic import BaseModel, Field, create_model

    checkpoint = predictor.checkpoint
    task = predictor.task

    def mapping(title: str, names: list[str]) -> type[BaseModel]:
        fields: dict[str, Any] = {f"k{i}": (float, Field(alias=n)) for i, n in enumerate(names)}
        return create_model(title, **fields)

    if task == "classification":
        classes = list(checkpoint.classes)
        prediction = create_model(
            "Prediction",
            label=(Literal[tuple(classes)], ...),  # type: ignore[valid-type]
            probabilities=(mapping("Probabilities", classes), ...),
        )
    elif task == "multilabel":
        targets = list(checkpoint.target_names)
        prediction = create_model(
            "Prediction",
            labels=(list[Literal[tuple(targets)]], ...),  # type: ignore[valid-type]
            probabilities=(mapping("Probabilities", targets), ...),
        )
    else:
        values = mapping("Values", list(checkpoint.target_names))
        prediction = create_model("Prediction", values=(values, ...))
    answer = create_model(
        "Answer",
        predictions=(list[prediction], Field(description="one per record, in the order sent")),  # type: ignore[valid-type]
        ignored=(list[str], Field(description="keys that are not feature columns (ignored)")),
    )
    problem = create_model("Problem", detail=(list[dict[str, Any]], ...), message=(str, ...))
    return {
        200: {"model": answer, "description": "predictions"},
        413: {"model": problem, "description": "the body is over the size limit"},
        422: {"model": problem, "description": "a record does not fit the model's columns"},
    }
