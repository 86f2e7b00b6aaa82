"""Models: the MLlib training pipeline (``train``), batch scoring (``score``), metrics and
training plots, and the portable ONNX copy (``onnx_export``, ``onnx_runtime``, ``portable``)."""
