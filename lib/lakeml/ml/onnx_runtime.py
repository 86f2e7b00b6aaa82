"""Scoring an exported ONNX model with ONNX Runtime: no Spark, no JVM.

Inputs are the raw feature columns of a pandas frame: numbers as ``double [N, 1]`` (a
missing value stays NaN, which the graph's Imputer fills) and categories as
``string [N, 1]`` (a missing category is fed as ``NULL_STRING``).
"""

from __future__ import annotations

import numpy as np

from lakeml.ml.onnx_export import NULL_STRING


def onnx_feeds(session, pandas_df) -> dict[str, np.ndarray]:
    """ONNX Runtime inputs from a pandas frame: doubles (None/NaN stay NaN, which the
    Imputer fills) and strings (None/NaN become :data:`NULL_STRING`)."""
    import pandas as pd

    feeds = {}
    for i in session.get_inputs():
        if i.name not in pandas_df.columns:
            raise KeyError(f"the ONNX model needs column {i.name!r}")
        s = pandas_df[i.name]
        if i.type == "tensor(string)":
            vals = np.array([NULL_STRING if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in s], dtype=object)
        else:
            vals = pd.to_numeric(s, errors="raise").astype("float64").to_numpy()
        feeds[i.name] = vals.reshape(-1, 1)
    return feeds


def run_onnx(path, pandas_df) -> dict[str, np.ndarray]:
    """Every output of the ONNX model (``probability``, ``prediction``) for ``pandas_df``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, onnx_feeds(sess, pandas_df)), strict=True))


def score_onnx(path, pandas_df) -> np.ndarray:
    """P(class 1) per row of ``pandas_df`` with ONNX Runtime (no Spark, no JVM)."""
    return np.asarray(run_onnx(path, pandas_df)["probability"][:, 1], dtype=np.float64)
