"""The math of the seed, in NumPy: activations, costs, initializers, optimizers, schedules, gradient
transforms, the network's forward and backward passes, the gradient check and metrics.

Nothing here reads files, parses YAML or writes to a terminal.
"""
