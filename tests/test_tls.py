"""A Dask cluster that lets no one else in (issue 14): a TLS scheduler and worker on loopback with a
temporary certificate; a sweep and a cv run through it; clients without the certificate refused."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import CONFIGS, invoke, weights

distributed = pytest.importorskip("distributed")
pytest.importorskip("cryptography")
from distributed.security import Security  # noqa: E402

IRIS = CONFIGS / "iris.yaml"
EPOCHS = "training.epochs=3"


def write_certificates(security: Security, folder: Path) -> dict[str, Path]:
    """Security.temporary() keeps its PEM text in memory; the CLI takes files."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "ca": (folder / "ca.pem", security.tls_ca_file),
        "cert": (folder / "client.pem", security.tls_client_cert),
        "key": (folder / "client.key", security.tls_client_key),
    }
    for path, text in files.values():
        path.write_text(text)
    return {name: path for name, (path, _) in files.items()}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Path]]]:
    security = Security.temporary()
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        protocol="tls://",
        host="127.0.0.1",
        security=security,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as local:
        assert local.scheduler_address.startswith("tls://127.0.0.1:")
        yield local.scheduler_address, write_certificates(security, tmp_path_factory.mktemp("certs"))


def tls_options(files: dict[str, Path]) -> list[object]:
    return ["--tls-ca-file", files["ca"], "--tls-cert", files["cert"], "--tls-key", files["key"]]


def test_sweep_runs_on_the_tls_cluster(cluster: tuple[str, dict[str, Path]], tmp_path: Path) -> None:
    address, files = cluster
    out = tmp_path / "sweep"
    outcome = invoke(
        "sweep", IRIS, "--grid", "training.learning_rate=[0.01, 0.1]", "--set", EPOCHS,
        "--scheduler", address, *tls_options(files), "--out", out, "--quiet",
    )  # fmt: skip
    assert outcome.code == 0, outcome.output
    with (out / "summary.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["status"] for row in rows] == ["done", "done"]
    trial = out / rows[0]["name"]
    record = json.loads((trial / "trial.json").read_text())
    assert record["worker"] and record["status"] == "done"
    alone = tmp_path / "alone"
    assert invoke("train", trial / "config.yaml", "--deterministic", "--out", alone, "--quiet").code == 0
    assert weights(alone / "last.npz") == weights(trial / "last.npz")


def test_cv_takes_certificates_from_dask_config(cluster: tuple[str, dict[str, Path]], tmp_path: Path) -> None:
    import dask

    address, files = cluster
    settings = {
        "distributed.comm.tls.ca-file": str(files["ca"]),
        "distributed.comm.tls.client.cert": str(files["cert"]),
        "distributed.comm.tls.client.key": str(files["key"]),
    }
    with dask.config.set(settings):
        outcome = invoke(
            "cv", IRIS, "--folds", 2, "--set", EPOCHS, "--scheduler", address, "--out", tmp_path / "cv"
        )
    assert outcome.code == 0, outcome.output
    assert len(json.loads((tmp_path / "cv" / "cv.json").read_text())["folds"]) == 2


def test_client_without_the_certificate_is_refused(
    cluster: tuple[str, dict[str, Path]], tmp_path: Path
) -> None:
    address, _ = cluster
    grid = "training.learning_rate=[0.1]"
    outcome = invoke("sweep", IRIS, "--grid", grid, "--scheduler", address, "--out", tmp_path / "a")
    assert outcome.code == 2
    assert f"--scheduler {address}: cannot connect" in outcome.stderr
    assert "--tls-ca-file" in outcome.stderr  # the message says what would fix it
    assert not (tmp_path / "a" / "summary.csv").exists()


@pytest.mark.parametrize("trusts_the_cluster", [True, False], ids=["scheduler-refuses", "client-refuses"])
def test_client_with_a_foreign_certificate_is_refused(
    cluster: tuple[str, dict[str, Path]], tmp_path: Path, trusts_the_cluster: bool
) -> None:
    """A certificate the cluster's CA did not sign: with the cluster's CA file the client trusts the
    scheduler, and the scheduler refuses the client; with its own CA the client refuses the scheduler."""
    address, real = cluster
    stranger = write_certificates(Security.temporary(), tmp_path / "stranger")
    if trusts_the_cluster:
        stranger["ca"] = real["ca"]
    grid = "training.learning_rate=[0.1]"
    outcome = invoke(
        "sweep", IRIS, "--grid", grid, "--scheduler", address, *tls_options(stranger), "--out", tmp_path / "b"
    )
    assert outcome.code == 2
    assert f"--scheduler {address}: cannot connect" in outcome.stderr
    assert not (tmp_path / "b" / "summary.csv").exists()


def test_plain_tcp_client_is_refused_by_a_tls_scheduler(cluster: tuple[str, dict[str, Path]]) -> None:
    address, _ = cluster
    with pytest.raises((OSError, TimeoutError)):
        distributed.Client(address.replace("tls://", "tcp://"), timeout="3s")
