"""nnctl: train dense neural networks from a YAML config, with the seed's backprop in NumPy."""

__version__ = "0.1.0"
