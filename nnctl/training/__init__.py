"""Training: prepare the data and the network, run the loop, and assemble checkpoints from its state.

* ``prepare``      table -> split rows, fitted normalization and target encoding; the network
* ``loop``         ``Trainer``: minibatch gradient descent with events for ``Callback``s
* ``monitor``      the metric that picks the best epoch, checked before training (also for sweeps)
* ``state``        ``LoopState``: where the loop is (saved in checkpoints)
* ``evaluate``     metrics of a network on a split
* ``diagnostics``  per-layer statistics for ``--trace``
* ``resume``       a trainer's state as a ``Checkpoint``, and a trainer rebuilt from one
"""
