"""Where the training loop is: a leaf module, so checkpoint reading can check it without a cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoopState:
    """Where the loop is; everything here is saved in checkpoints as JSON."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # completed batches of the current epoch (non-zero only mid-epoch)
    step: int = 0  # optimizer steps taken in total
    loss_sum: float = 0.0  # running sum of batch_loss * batch_size in the current epoch
    epoch_start_shuffle: dict[str, Any] | None = None  # shuffle generator state at epoch start
    best_value: float | None = None
    best_epoch: int = 0
    wait: int = 0  # epochs without improvement (early stopping)
    stopped_early: bool = False
    schedule: dict[str, Any] = field(default_factory=dict)
