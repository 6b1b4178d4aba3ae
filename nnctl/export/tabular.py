"""Issue 12's tabular contract, as export and serve consume it: raw feature columns, their encoding
into the network's inputs, and checkpoints that carry it (``checkpoint.preprocessing``).

The only module that changes when issue 12 lands: these two imports become
``from nnctl.data.columns import CategoricalColumn, NumericColumn, Preprocessing`` and
``from nnctl.checkpoint import load_checkpoint``, and ``columns_standin.py`` is deleted.
"""

from __future__ import annotations

# At merge: `from nnctl.data.columns import CategoricalColumn, NumericColumn, Preprocessing`
# and `from nnctl.checkpoint import load_checkpoint`.
from nnctl.export.columns_standin import CategoricalColumn, NumericColumn, Preprocessing, load_checkpoint

__all__ = ["CategoricalColumn", "NumericColumn", "Preprocessing", "load_checkpoint"]
