"""Exporting a checkpoint for use outside nnctl: ``onnx`` builds the whole raw-row-to-output graph."""
