"""Scoring an exported ONNX model with ONNX Runtime: in-process on a pandas frame (no
Spark, no JVM), or on the executors over a Spark DataFrame (:func:`score_frame`).

Inputs are the raw feature columns: numbers as ``double [N, 1]`` (a missing value is NaN,
which the graph's Imputer fills) and categories as ``string [N, 1]`` (a missing category
is fed as ``NULL_STRING``).
"""

from __future__ import annotations

import hashlib

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


# --------------------------------------------------------------------------- on the executors

_SESSIONS: dict[str, object] = {}  # per Python worker (reused across tasks): model digest -> InferenceSession


def worker_session(model: bytes, digest: str):
    """The InferenceSession of ``model`` in this Python worker, made once (one thread: Spark
    runs one task per core already)."""
    sess = _SESSIONS.get(digest)
    if sess is None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # Spark runs one task per core already
        opts.inter_op_num_threads = 1
        sess = _SESSIONS[digest] = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    return sess


def arrow_feeds(session, batch) -> dict[str, np.ndarray]:
    """ONNX Runtime inputs from an Arrow record batch, column-wise (no Python loop per row):
    numbers as float64 with nulls as NaN, strings with nulls as :data:`NULL_STRING`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    feeds = {}
    for i in session.get_inputs():
        col = batch.column(i.name)
        if i.type == "tensor(string)":
            vals = pc.fill_null(col.cast(pa.string()), NULL_STRING).to_numpy(zero_copy_only=False).astype(object)
        else:
            vals = pc.fill_null(col.cast(pa.float64()), float("nan")).to_numpy(zero_copy_only=False)
        feeds[i.name] = vals.reshape(-1, 1)
    return feeds


def model_inputs(model: bytes) -> list[str]:
    import onnx

    graph = onnx.load_from_string(model).graph
    init = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in init]


def score_frame(df, model: bytes, keep: list[str], probability: str):
    """``keep`` columns of ``df`` plus ``probability`` (P(1), double) and ``prediction``
    (int), computed by the ONNX model in ONNX Runtime inside ``mapInArrow``: Arrow batches
    of rows (``spark.sql.execution.arrow.maxRecordsPerBatch``), the model bytes broadcast
    once, one ``InferenceSession`` per Python worker."""
    from pyspark.sql import types as T

    digest = hashlib.sha256(model).hexdigest()
    shipped = df.sparkSession.sparkContext.broadcast(model)
    inputs = model_inputs(model)
    fields = {f.name: f for f in df.schema.fields}
    schema = T.StructType(
        [fields[c] for c in keep] + [T.StructField(probability, T.DoubleType()), T.StructField("prediction", T.IntegerType())]
    )

    def run(batches):
        import pyarrow as pa

        sess = worker_session(shipped.value, digest)
        for b in batches:
            if b.num_rows == 0:
                continue
            prob, pred = sess.run(["probability", "prediction"], arrow_feeds(sess, b))
            yield pa.RecordBatch.from_arrays(
                [*(b.column(c) for c in keep), pa.array(prob[:, 1], pa.float64()), pa.array(pred.astype(np.int32), pa.int32())],
                schema=pa.schema(
                    [pa.field(c, b.schema.field(c).type) for c in keep]
                    + [pa.field(probability, pa.float64()), pa.field("prediction", pa.int32())]
                ),
            )

    cols = list(dict.fromkeys([*keep, *inputs]))
    return df.select(*cols).mapInArrow(run, schema)
