"""Load on ``nnctl serve`` (loopback only, fixed request counts, stops by itself), beside in-process
``nnctl predict`` and ONNX Runtime on the same rows.

1. Trains ``configs/digits.yaml`` briefly (64 numeric columns, 10 classes) unless ``--checkpoint``.
2. Starts ``nnctl serve CKPT --port 0`` as a subprocess (``--workers N``), waits for /health.
3. Single records: 8 concurrent keep-alive clients (asyncio, raw HTTP/1.1) send ``--requests``
   records in all, one per request; then 1,000-row batches: 8 clients send ``--batches`` in all.
   Every answer is checked (status 200, one prediction per row): anything else counts as an error.
   Reported: requests/s, rows/s, p50/p99 latency, errors.
4. In-process ``nnctl predict`` (``workflows.predict_table``: read the CSV of the same 1,000 rows,
   predict, format; with numpy's BLAS threads and with one, the target uses the faster) and
   ONNX Runtime (the exported graph, ``session.run`` on the same 1,000 rows as
   [N, 1] inputs): rows/s, best of 5.
5. The server's thread safety costs nothing: a lock around prediction is measured against none
   (8 threads predicting 1,000-row batches in-process).

    python benchmarks/serve_load.py [--quick] [--workers 1] [--requests 8000] [--batches 64]

Targets (2-core machine): single records >= 1,000 requests/s with p99 < 20 ms and no errors;
batch rows/s >= half of in-process predict's. The client shares the machine with the server, so
on 2 cores the server gets about one of them.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CLIENTS = 8
BATCH_ROWS = 1000


# ---------------------------------------------------------------------------------------------
# Set-up


def nnctl() -> list[str]:
    script = Path(sys.executable).with_name("nnctl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nnctl"]


def train_checkpoint(folder: Path, epochs: int) -> Path:
    subprocess.run(
        [
            *nnctl(),
            "train",
            str(REPO / "configs/digits.yaml"),
            "--out",
            str(folder / "run"),
            "--quiet",
            "--set",
            f"training.epochs={epochs}",
        ],
        check=True,
    )
    return folder / "run" / "best.npz"


def digits_rows() -> tuple[list[str], list[dict[str, float]], list[list[str]]]:
    with open(REPO / "datasets/digits.csv", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        cells = list(reader)
    features = [name for name in header if name != "digit"]
    index = [header.index(name) for name in features]
    records = [{name: float(row[i]) for name, i in zip(features, index, strict=True)} for row in cells]
    return header, records, cells


class ServerProcess:
    def __init__(self, checkpoint: Path, workers: int) -> None:
        self.process = subprocess.Popen(
            [*nnctl(), "serve", str(checkpoint), "--port", "0", "--workers", str(workers)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "http://" not in line:
            raise SystemExit(f"nnctl serve did not start: {line}")
        self.host, port = line.split("http://", 1)[1].split()[0].rsplit(":", 1)
        self.port = int(port)

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=60)


# ---------------------------------------------------------------------------------------------
# The load


async def one_client(
    host: str, port: int, bodies: list[bytes], rows: list[int], latencies: list[float], errors: list[str]
) -> None:
    import orjson

    reader, writer = await asyncio.open_connection(host, port)
    try:
        for body, n in zip(bodies, rows, strict=True):
            request = (
                b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            payload = await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            status = int(head[9:12])
            if status != 200:
                errors.append(f"status {status}: {payload[:200]!r}")
            elif len(orjson.loads(payload)["predictions"]) != n:
                errors.append("wrong number of predictions")
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors.append(f"connection: {exc}")
    finally:
        writer.close()


def load(host: str, port: int, bodies: list[bytes], rows: list[int]) -> dict[str, Any]:
    """``CLIENTS`` concurrent connections share ``bodies`` round-robin; wall time over all of them."""
    latencies: list[float] = []
    errors: list[str] = []

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(
            *(
                one_client(host, port, bodies[c::CLIENTS], rows[c::CLIENTS], latencies, errors)
                for c in range(CLIENTS)
            )
        )
        return time.perf_counter() - start

    try:
        import uvloop

        seconds = uvloop.run(main())
    except ImportError:
        seconds = asyncio.run(main())
    ordered = sorted(latencies)
    return {
        "requests": len(bodies),
        "seconds": seconds,
        "requests_per_s": len(bodies) / seconds,
        "rows_per_s": sum(rows) / seconds,
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "errors": len(errors) + (len(bodies) - len(latencies) if not errors else 0),
        "first_error": errors[0] if errors else None,
    }


# ---------------------------------------------------------------------------------------------
# In-process comparisons


def best_rate(rows: int, run: Any, repeats: int = 5) -> float:
    best = min(_timed(run) for _ in range(repeats))
    return rows / best


def _timed(run: Any) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def predict_rate(checkpoint: Path, rows_csv: Path) -> float:
    from nnctl.workflows import predict_table

    predict_table(checkpoint, rows_csv)  # warm
    return best_rate(BATCH_ROWS, lambda: predict_table(checkpoint, rows_csv))


def onnx_rate(checkpoint: Path, records: list[dict[str, float]], folder: Path) -> float | None:
    try:
        import onnxruntime as ort

        from nnctl.export.onnx import export_onnx
    except ImportError:
        return None
    model = folder / "model.onnx"
    export_onnx(checkpoint, model)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    feed = {
        node.name: np.array([r[node.name] for r in records], dtype=np.float32).reshape(-1, 1)
        for node in session.get_inputs()
    }
    session.run(None, feed)
    return best_rate(len(records), lambda: session.run(None, feed))


def lock_cost(checkpoint: Path, body: bytes) -> tuple[float, float]:
    """rows/s of 8 threads answering 1,000-row bodies through one handler: no lock, then a lock."""
    from nnctl.serve.app import PredictHandler
    from nnctl.serve.predictor import Predictor

    handler = PredictHandler(Predictor.load(checkpoint))
    lock = threading.Lock()

    def locked(b: bytes) -> Any:
        with lock:
            return handler(b)

    def rate(call: Any) -> float:
        with ThreadPoolExecutor(CLIENTS) as pool:
            start = time.perf_counter()
            list(pool.map(call, [body] * 32))
            return 32 * BATCH_ROWS / (time.perf_counter() - start)

    rate(handler)
    free = max(rate(handler) for _ in range(3))
    guarded = max(rate(locked) for _ in range(3))
    return free, guarded


# ---------------------------------------------------------------------------------------------
# Report


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = "unknown BLAS"
    try:
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            p = pools[0]
            blas = f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')} kernel)"
    except ImportError:
        pass
    return f"{os.cpu_count()} cores, {model}; numpy {np.__version__} with {blas}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", type=Path, help="serve this checkpoint (default: digits, trained briefly)"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--requests", type=int, default=8000, help="single-record requests in all")
    parser.add_argument("--batches", type=int, default=64, help="1,000-row requests in all")
    parser.add_argument("--quick", action="store_true", help="1,600 requests and 16 batches")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.batches = 1600, 16
    import orjson

    with tempfile.TemporaryDirectory(prefix="nnctl-serve-load-") as tmp:
        folder = Path(tmp)
        checkpoint = args.checkpoint or train_checkpoint(folder, epochs=3)
        header, records, cells = digits_rows()
        batch_records = [records[i % len(records)] for i in range(BATCH_ROWS)]
        rows_csv = folder / "rows.csv"
        with open(rows_csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(cells[i % len(cells)] for i in range(BATCH_ROWS))
        singles = [orjson.dumps(records[i % len(records)]) for i in range(args.requests)]
        batch_body = orjson.dumps(batch_records)

        server = ServerProcess(checkpoint, args.workers)
        try:
            load(server.host, server.port, singles[: 8 * 25], [1] * 200)  # warm-up
            single = load(server.host, server.port, singles, [1] * len(singles))
            batch = load(server.host, server.port, [batch_body] * args.batches, [BATCH_ROWS] * args.batches)
        finally:
            code = server.stop()
        from threadpoolctl import threadpool_limits

        predict_default = predict_rate(checkpoint, rows_csv)
        with threadpool_limits(limits=1):
            predict_one = predict_rate(checkpoint, rows_csv)
            free, guarded = lock_cost(checkpoint, batch_body)  # as the server runs: one BLAS thread
        in_process = max(predict_default, predict_one)  # the target is against the faster of the two
        onnx = onnx_rate(checkpoint, batch_records, folder)

    figures = {
        "machine": machine(),
        "workers": args.workers,
        "single": single,
        "batch": batch,
        "predict_rows_per_s": in_process,
        "predict_default_blas_rows_per_s": predict_default,
        "predict_one_blas_thread_rows_per_s": predict_one,
        "onnxruntime_rows_per_s": onnx,
        "no_lock_rows_per_s": free,
        "lock_rows_per_s": guarded,
        "server_exit_on_sigterm": code,
    }
    print(f"machine: {figures['machine']}; server workers: {args.workers}; {CLIENTS} clients")
    print("| load | requests | requests/s | rows/s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in (("single records", single), (f"{BATCH_ROWS:,}-row batches", batch)):
        print(
            f"| {name} | {r['requests']:,} | {r['requests_per_s']:,.0f} | {r['rows_per_s']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |"
        )
    print(
        f"in-process nnctl predict (1,000-row CSV): {predict_default:,.0f} rows/s with numpy's BLAS threads, "
        f"{predict_one:,.0f} with one"
    )
    if onnx is not None:
        print(f"ONNX Runtime (1,000 rows): {onnx:,.0f} rows/s")
    print(f"8 threads in-process, no lock vs a lock: {free:,.0f} vs {guarded:,.0f} rows/s")
    ok_single = single["requests_per_s"] >= 1000 and single["p99_ms"] < 20 and single["errors"] == 0
    ok_batch = batch["rows_per_s"] >= in_process / 2 and batch["errors"] == 0
    print(
        f"targets: single >= 1,000 req/s, p99 < 20 ms, 0 errors: {'met' if ok_single else 'MISSED'}; "
        f"batch rows/s >= half of predict ({batch['rows_per_s'] / in_process:.2f}x): "
        f"{'met' if ok_batch else 'MISSED'}; server exit on SIGTERM: {code}"
    )
    if single["first_error"] or batch["first_error"]:
        print(f"first error: {single['first_error'] or batch['first_error']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
