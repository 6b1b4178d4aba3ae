"""Executors: a pool of spawned local processes, or a Dask cluster (local or remote). The data are
read once by the client and shipped to the workers; workers need no shared file system."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from typing import Any

from nnctl import __version__
from nnctl.errors import NnctlError
from nnctl.sweep.plan import TrialData
from nnctl.sweep.worker import (
    BLAS_ENV,
    TrialCallbacks,
    TrialTask,
    describe_exception,
    init_pool_worker,
    run_pooled,
    run_trial,
    worker_version,
)


class LocalPool:
    """Spawned worker processes; the data travel once per process (initializer)."""

    breaks_all = True  # one dead process breaks the whole pool

    def __init__(
        self, jobs: int, tables: dict[str, TrialData], trial_callbacks: TrialCallbacks | None = None
    ) -> None:
        import multiprocessing

        self.jobs = jobs
        self.tables = tables
        self.trial_callbacks = trial_callbacks
        self.context = multiprocessing.get_context("spawn")
        self.generation = 0
        self.pool: Any = None
        self._start()

    def describe(self) -> str:
        return f"{self.jobs} local process{'es' * (self.jobs != 1)}"

    def _start(self) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(
            max_workers=self.jobs,
            mp_context=self.context,
            initializer=init_pool_worker,
            initargs=(self.tables,),
        )
        self.generation += 1

    def capacity(self) -> int:
        return self.jobs

    def submit(self, task: TrialTask) -> Any:
        return self.pool.submit(run_pooled, task, self.trial_callbacks)

    def is_lost(self, exc: BaseException) -> bool:
        from concurrent.futures.process import BrokenProcessPool

        return isinstance(exc, BrokenProcessPool)

    def restart(self) -> None:
        with contextlib.suppress(Exception):
            self.pool.shutdown(wait=True, cancel_futures=True)
        self._start()

    def wait(self, futures: list[Any], timeout: float) -> None:
        from concurrent.futures import wait

        wait(futures, timeout=timeout)

    def close(self, abort: bool = False) -> None:
        if self.pool is None:
            return
        if abort:  # Ctrl-C: the workers ignore SIGINT, so stop them here
            for process in list((getattr(self.pool, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    process.kill()
        with contextlib.suppress(Exception):
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool = None


class DaskExecutor:
    """An existing cluster (``--scheduler``) or a LocalCluster (``--dask-local N``)."""

    breaks_all = False  # the scheduler knows which task ran on the lost worker

    def __init__(
        self,
        tables: dict[str, TrialData],
        scheduler: str | None,
        local_workers: int | None,
        trial_callbacks: TrialCallbacks | None = None,
        security: Any = None,
    ) -> None:
        try:
            import distributed
        except ImportError:
            raise NnctlError(
                "--scheduler and --dask-local need Dask's distributed package",
                hint="install nnctl[dask]: pip install distributed (in nnctl's checkout: pip install -e "
                "'.[dask]'), or run on local processes with --jobs",
            ) from None
        import logging

        from distributed.comm.core import CommClosedError

        self.lost_errors: tuple[type[BaseException], ...] = (distributed.KilledWorker, CommClosedError)
        self.cluster: Any = None
        self.trial_callbacks = trial_callbacks
        self.generation = 1
        self._threads, self._asked = 1, -math.inf
        if local_workers is not None:
            self.cluster = distributed.LocalCluster(
                n_workers=local_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            self.client = distributed.Client(self.cluster)
            self.where = f"a local Dask cluster of {local_workers} worker{'s' * (local_workers != 1)}"
        else:
            self.client = _connect(distributed, scheduler or "", security)
            self.where = f"the Dask cluster at {scheduler}"
        try:
            self._check_workers()
            self.data = {key: self.client.scatter(t, broadcast=True, hash=False) for key, t in tables.items()}
        except BaseException:
            self.close()
            raise

    def _check_workers(self) -> None:
        try:
            versions = self.client.run(worker_version)
        except Exception as exc:
            raise NnctlError(
                f"the Dask workers cannot run nnctl ({describe_exception(exc)})",
                hint=f"install nnctl {__version__} (the client's version) on every worker",
            ) from None
        other = {addr: v for addr, v in versions.items() if v != __version__}
        if other:
            raise NnctlError(
                "Dask workers run another nnctl version: "
                + ", ".join(f"{addr}: {v}" for addr, v in sorted(other.items())),
                hint=f"install nnctl {__version__} on every worker (results must not depend on the worker)",
            )

    def describe(self) -> str:
        return self.where

    def capacity(self) -> int:
        """Worker threads in the cluster now (asked at most every 2 s: workers come and go)."""
        if time.monotonic() - self._asked > 2.0:
            with contextlib.suppress(Exception):
                self._threads = max(1, sum(self.client.nthreads().values()))
            self._asked = time.monotonic()
        return self._threads

    def submit(self, task: TrialTask) -> Any:
        return self.client.submit(
            run_trial,
            task,
            self.data[task.table_key],
            self.trial_callbacks,
            key=f"nnctl-trial-{task.name}-{task.id}-{task.attempt}-{time.time_ns()}",
            pure=False,
        )

    def is_lost(self, exc: BaseException) -> bool:
        return isinstance(exc, self.lost_errors)

    def restart(self) -> None:  # pragma: no cover - breaks_all is False
        pass

    def wait(self, futures: list[Any], timeout: float) -> None:  # pragma: no cover
        pass

    def close(self, abort: bool = False) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
            self.cluster = None


@contextlib.contextmanager
def one_blas_thread_env() -> Iterator[None]:
    """Spawned children inherit this environment: BLAS starts single-threaded in them."""
    saved = {name: os.environ.get(name) for name in BLAS_ENV}
    os.environ.update({name: "1" for name in BLAS_ENV})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def default_jobs() -> int:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# Reaching a cluster, with TLS when the address says tls://


def _connect(distributed: Any, scheduler: str, security: Any) -> Any:
    """A client of the scheduler at ``scheduler``; ``security`` (TLS certificates) or, when None,
    Dask's own configuration (``distributed.comm.tls.*``, e.g. DASK_DISTRIBUTED__COMM__TLS__CA_FILE)."""
    secure = scheduler.startswith("tls://")
    try:
        return distributed.Client(scheduler, timeout="15s", **({"security": security} if security else {}))
    except (OSError, TimeoutError) as exc:
        hint = "start one with `dask scheduler` and workers with `dask worker tcp://HOST:8786`"
        if secure:
            hint = (
                "a tls:// scheduler admits only clients whose certificate its CA signed: pass "
                "--tls-ca-file, --tls-cert and --tls-key (or set distributed.comm.tls.* in Dask's config)"
            )
        raise NnctlError(f"--scheduler {scheduler}: cannot connect ({_short(exc)})", hint=hint) from None
    except (TypeError, ValueError) as exc:  # e.g. TLS without certificates: "TLS expects a ssl_context"
        raise NnctlError(
            f"--scheduler {scheduler}: cannot connect ({_short(exc)})",
            hint="a tls:// address needs --tls-ca-file, --tls-cert and --tls-key (or Dask's tls config)",
        ) from None


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def tls_security(scheduler: str | None, ca_file: Any = None, cert: Any = None, key: Any = None) -> Any:
    """``distributed.security.Security`` from --tls-ca-file/--tls-cert/--tls-key, or None when none
    is given (then a tls:// address uses Dask's configuration). Checked before connecting."""
    given = {"--tls-ca-file": ca_file, "--tls-cert": cert, "--tls-key": key}
    if all(value is None for value in given.values()):
        return None
    if not scheduler or not scheduler.startswith("tls://"):
        raise NnctlError(
            "--tls-ca-file/--tls-cert/--tls-key secure a remote cluster: give a tls:// --scheduler address",
            hint="e.g. --scheduler tls://HOST:8786 (a --dask-local cluster never leaves this machine)",
        )
    for option in ("--tls-ca-file", "--tls-cert"):
        if given[option] is None:
            raise NnctlError(f"{option} is missing: TLS needs the CA file and this client's certificate")
    for option, value in given.items():
        if value is not None and not os.path.isfile(value):
            raise NnctlError(f"{option} {value}: no such file")
    try:
        from distributed.security import Security
    except ImportError:
        raise NnctlError(
            "--tls-* options need Dask's distributed package",
            hint="in nnctl's checkout: pip install -e '.[dask]'",
        ) from None
    return Security(
        tls_ca_file=str(ca_file),
        tls_client_cert=str(cert),
        tls_client_key=None if key is None else str(key),
        require_encryption=True,
    )


def check_executor_options(jobs: int | None, scheduler: str | None, dask_local: int | None) -> None:
    executors = (("--jobs", jobs), ("--scheduler", scheduler), ("--dask-local", dask_local))
    chosen = [name for name, value in executors if value is not None]
    if len(chosen) > 1:
        raise NnctlError(f"{' and '.join(chosen)} exclude each other: pick one executor")
    for name, value in (("--jobs", jobs), ("--dask-local", dask_local)):
        if value is not None and value < 1:
            raise NnctlError(f"{name} {value}: need at least 1")


def open_executor(
    tables: dict[str, TrialData],
    tasks: int,
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    dask_local: int | None = None,
    security: Any = None,
    trial_callbacks: TrialCallbacks | None = None,
) -> LocalPool | DaskExecutor:
    """The executor the options ask for: a Dask cluster, else a local pool of at most ``tasks``."""
    with one_blas_thread_env():
        if scheduler or dask_local:
            return DaskExecutor(tables, scheduler, dask_local, trial_callbacks, security)
        return LocalPool(max(1, min(jobs or default_jobs(), tasks)), tables, trial_callbacks)
