"""Models: the MLlib training pipeline (``train``, XGBoost's estimator in ``xgb``), batch
scoring (``score``), metrics and training plots, and the portable ONNX copy
(``onnx_export``, ``onnx_runtime``, ``portable``)."""
