"""Seeded train/validation/test row indices, stratified for classification."""

from __future__ import annotations

import numpy as np

from nnctl.data.table import Array
from nnctl.errors import DataError

# ---------------------------------------------------------------------------------------------
# Splitting


def _too_small(n: int, validation: float, test: float) -> DataError:
    return DataError(
        f"the dataset has {n} row{'s' * (n != 1)}: too small for validation={validation:g} and "
        f"test={test:g} (no rows would be left for training)",
        hint="use more data or smaller validation/test fractions",
    )


def split_indices(
    n: int,
    validation: float,
    test: float,
    rng: np.random.Generator,
    strata: Array | None = None,
) -> tuple[Array, Array, Array]:
    """(train, validation, test): sorted, disjoint int64 row indices covering 0..n-1.

    Test rows are taken first, then validation rows, round(fraction * count) of each; with
    ``strata`` (the class index of every row) per class, so every split keeps the class
    proportions and every class keeps at least one training row. A split with a non-zero
    fraction gets at least one row when the training part can spare it.
    """
    if not (0.0 <= validation < 1.0 and 0.0 <= test < 1.0) or validation + test >= 1.0:
        raise ValueError(f"validation ({validation}) and test ({test}) must be >= 0 and sum to less than 1")
    if n < 1:
        raise _too_small(n, validation, test)
    if strata is None:
        order = rng.permutation(n)
        n_test, n_val = round(test * n), round(validation * n)
        if test > 0 and n_test == 0 and n - n_val >= 2:
            n_test = 1
        if validation > 0 and n_val == 0 and n - n_test >= 2:
            n_val = 1
        if n - n_test - n_val < 1:
            raise _too_small(n, validation, test)
        parts = (order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test])
        train_idx, val_idx, test_idx = (np.sort(p).astype(np.int64) for p in parts)
        return train_idx, val_idx, test_idx
    strata = np.asarray(strata)
    if strata.shape != (n,):
        raise ValueError(f"strata has shape {strata.shape}; expected ({n},)")
    trains: list[list[int]] = []
    vals: list[int] = []
    tests: list[int] = []
    for value in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == value)).tolist()
        count = len(members)
        t, v = round(test * count), round(validation * count)
        # Keep one training row per class: a class the model never trains on cannot be learned.
        v = min(v, count - 1 - min(t, count - 1))
        t = min(t, count - 1)
        tests += members[:t]
        vals += members[t : t + v]
        trains.append(members[t + v :])
    # Honour "at least one row" for a requested split by borrowing from the largest training part.
    for fraction, part in ((test, tests), (validation, vals)):
        if fraction > 0 and not part:
            donor = max(trains, key=len)
            if len(donor) >= 2:
                part.append(donor.pop(0))
    train = [i for group in trains for i in group]
    if not train:
        raise _too_small(n, validation, test)
    train_idx, val_idx, test_idx = (np.sort(np.asarray(p, dtype=np.int64)) for p in (train, vals, tests))
    return train_idx, val_idx, test_idx


def fold_split(
    n: int, test: float, k: int, index: int, rng: np.random.Generator, strata: Array | None = None
) -> tuple[Array, Array, Array]:
    """(train, validation, test) for fold ``index`` (1-based) of ``k``-fold cross-validation.

    The test rows are exactly those ``split_indices`` holds out for the same seed (the same draws,
    so a refit on all non-test rows keeps them too); the remaining rows are dealt into ``k`` folds
    from a further seeded permutation: per class when ``strata`` is given (class after class,
    dealing on where the previous class stopped), so every fold keeps the class proportions and
    fold sizes differ by at most one row. Fold ``index`` is the validation part.
    """
    if not 1 <= index <= k:
        raise ValueError(f"fold index {index} is not in 1..{k}")
    rest, _, test_idx = split_indices(n, 0.0, test, rng, strata)
    if rest.size < k:
        raise DataError(
            f"the dataset has {rest.size} non-test row{'s' * (rest.size != 1)}: too few for {k} folds",
            hint="use fewer folds (--folds) or a smaller data.test",
        )
    groups = [rest] if strata is None else [rest[np.asarray(strata)[rest] == v] for v in np.unique(strata)]
    dealt = np.concatenate([rng.permutation(group) for group in groups])
    fold_of = np.arange(dealt.size) % k
    val_idx = np.sort(dealt[fold_of == index - 1]).astype(np.int64)
    train_idx = np.sort(dealt[fold_of != index - 1]).astype(np.int64)
    return train_idx, val_idx, test_idx
