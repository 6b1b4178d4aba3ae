"""Penguins, side by side on the same split: nnctl (configs/penguins.yaml, the file as published,
no preprocessing written by hand) against scikit-learn's
Pipeline(ColumnTransformer(imputers, one-hot, scaler), MLPClassifier).

For each seed, nnctl trains through its CLI with ``--set seed=S`` (which also draws the split) and
is scored by ``nnctl eval`` on its test split; scikit-learn fits the same training rows and is
scored on the same test rows. scikit-learn's pipeline is the usual one: median imputation with a
missing indicator and standard scaling for the numeric columns, a constant "missing" category and
one-hot encoding (unknown categories ignored) for the text columns, and an MLP with the same
hidden layer (16 relu units), adam, up to 2,000 iterations.

    python benchmarks/penguins_sklearn.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CONFIG = ROOT / "configs" / "penguins.yaml"


def nnctl_accuracy(seed: int, folder: Path) -> float:
    run = folder / f"run{seed}"
    command = [
        sys.executable,
        "-m",
        "nnctl",
        "train",
        str(CONFIG),
        "--out",
        str(run),
        "-q",
        "--set",
        f"seed={seed}",
    ]
    subprocess.run(command, check=True)
    result = subprocess.run(
        [sys.executable, "-m", "nnctl", "eval", str(run / "best.npz"), "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(json.loads(result.stdout)["accuracy"])


def split_rows(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The file rows nnctl trains and tests on for ``seed`` (as prepare_tabular draws them)."""
    from nnctl.config import load_config
    from nnctl.data.splits import split_indices
    from nnctl.data.tabular import load_tabular
    from nnctl.data.targets import TargetEncoder, infer_task
    from nnctl.training.prepare import random_streams, resolve_data_path

    config = load_config(CONFIG, [f"seed={seed}"])
    data = load_tabular(Path(resolve_data_path(config, CONFIG.parent)), config.data)
    output = config.model.layers[-1]
    task = infer_task(config.data.task, config.cost.name, output.activation.name, output.units, data.y)
    encoder = TargetEncoder.fit(data.y, task, output.units)
    strata = encoder.class_indices(data.y)
    train, _, test = split_indices(
        data.n_rows, config.data.validation, config.data.test, random_streams(seed)["split"], strata
    )
    return data.rows[train], data.rows[test]


def sklearn_accuracy(seed: int, train: np.ndarray, test: np.ndarray) -> float:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.read_csv(ROOT / "datasets" / "penguins.csv")
    y = frame.pop("species").to_numpy()
    text = ["island", "sex"]
    numbers = [c for c in frame.columns if c not in text]
    columns = ColumnTransformer(
        [
            (
                "num",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", add_indicator=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numbers,
            ),
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value="<missing>")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                text,
            ),
        ]
    )
    model = Pipeline(
        [
            ("columns", columns),
            ("mlp", MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=seed)),
        ]
    )
    model.fit(frame.iloc[train], y[train])
    return float(model.score(frame.iloc[test], y[test]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    import sklearn

    print(f"# penguins: test accuracy on the same split, scikit-learn {sklearn.__version__}\n")
    print("| seed | test rows | nnctl | scikit-learn | nnctl − sklearn (points) |")
    print("|---:|---:|---:|---:|---:|")
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            train, test = split_rows(seed)
            a, b = nnctl_accuracy(seed, Path(folder)), sklearn_accuracy(seed, train, test)
            ours.append(a)
            theirs.append(b)
            print(f"| {seed} | {len(test)} | {a:.4f} | {b:.4f} | {100 * (a - b):+.1f} |")
    mean_ours, mean_theirs = float(np.mean(ours)), float(np.mean(theirs))
    print(f"| mean | | {mean_ours:.4f} | {mean_theirs:.4f} | {100 * (mean_ours - mean_theirs):+.1f} |")


if __name__ == "__main__":
    main()
