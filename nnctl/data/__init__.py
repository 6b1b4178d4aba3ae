"""Reading the user's data and the state fitted on it: tables, targets, splits, normalization.

Every problem with the user's data is a ``DataError`` that names the file and, where there is one,
the 1-based line, column and column name. Nothing here prints.

* ``load.load_table``         CSV / .npz / folder of .npy arrays / ``builtin:NAME`` -> ``Table``
* ``targets.infer_task``      classification / multilabel / regression from the cost and output layer
* ``targets.TargetEncoder``   raw targets -> float (n, output_units) training targets, and back
* ``splits.split_indices``    seeded (optionally stratified) train/validation/test row indices
* ``normalize.Normalizer``    per-feature shift/scale fitted on the training rows only (chunked)
"""
