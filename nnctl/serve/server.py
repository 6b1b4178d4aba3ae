"""Running the app: uvicorn on a socket nnctl binds itself (so a taken port is one clear error and
``--port 0`` can report the port it got), one process or ``--workers N`` sharing that socket.

SIGTERM and Ctrl-C stop it gracefully: uvicorn stops accepting, finishes the requests in flight and
returns; nnctl then exits 0 (uvicorn's habit of re-raising the signal after a graceful stop, which
would end the process with 143, is turned off).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnctl.errors import NnctlError
from nnctl.serve.app import (
    DEFAULT_MAX_BODY_BYTES,
    ENV_BLAS_THREADS,
    ENV_CHECKPOINT,
    ENV_MAX_BODY,
    create_app,
    limit_blas_threads,
)
from nnctl.serve.predictor import Predictor

INSTALL_HINT = "in nnctl's checkout: pip install -e '.[serve]' (or install nnctl's wheel with [serve])"
GRACEFUL_SECONDS = 10


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    access_log: bool = False
    blas_threads: int = 1


def _uvicorn() -> Any:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        needed = exc.name or "fastapi and uvicorn"
        raise NnctlError(f"nnctl serve needs {needed}", hint=INSTALL_HINT) from None
    return uvicorn


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (IPv4 or IPv6 as the address says)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise NnctlError(f"--host {host}: not an address this machine can listen on ({exc})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise NnctlError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="choose another --port (0 picks a free one)" if port else None,
        ) from None
    sock.set_inheritable(True)
    return sock


def serve_checkpoint(path: Path, options: ServeOptions, announce: Callable[[str], None] = print) -> None:
    """Load and check the checkpoint, bind, then serve until SIGTERM/SIGINT."""
    predictor = Predictor.load(path)  # a bad checkpoint is an error before anything listens
    uvicorn = _uvicorn()
    sock = listen(options.host, options.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    announce(
        f"serving {path} ({predictor.task}, {len(predictor.input_names)} input columns) "
        f"on http://{shown}:{port} with {options.workers} worker{'s' * (options.workers != 1)}; "
        "docs at /docs; SIGTERM or Ctrl-C stops it"
    )
    settings = {
        "log_level": "info" if options.access_log else "warning",
        "access_log": options.access_log,
        "lifespan": "off",
        "timeout_graceful_shutdown": GRACEFUL_SECONDS,
        "server_header": False,
    }
    try:
        if options.workers == 1:
            limit_blas_threads(options.blas_threads)
            app = create_app(predictor, max_body_bytes=options.max_body_bytes)
            GracefulServer(uvicorn.Config(app, **settings)).run(sockets=[sock])
        else:
            from uvicorn.supervisors import Multiprocess

            os.environ[ENV_CHECKPOINT] = str(Path(path).resolve())
            os.environ[ENV_MAX_BODY] = str(options.max_body_bytes)
            os.environ[ENV_BLAS_THREADS] = str(options.blas_threads)
            config = uvicorn.Config(
                "nnctl.serve.app:app_from_environment", factory=True, workers=options.workers, **settings
            )
            Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
    announce("stopped")


def _graceful_server_class() -> type:
    import uvicorn

    class _GracefulServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()  # stopped gracefully: exit 0, not death by the signal

    return _GracefulServer


def GracefulServer(config: Any) -> Any:  # a class made lazily: uvicorn is optional
    return _graceful_server_class()(config)
