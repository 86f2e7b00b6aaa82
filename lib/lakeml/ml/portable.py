"""Portable copies of each registered model, logged beside the Spark model.

``log_portable`` exports the fitted pipeline to ONNX (``lakeml.ml.onnx_export``), scores
``export.parity_rows`` rows with ONNX Runtime beside ``PipelineModel.transform``, and logs
the copy as a plain artifact of the training run (``onnx/model.onnx``) only if P(1) differs
by at most ``export.parity_tolerance``; the model version is tagged with the formats that
exist. MLeap bundles cannot be made here (its jars are not served by the package registry
this project reaches): ``export.mleap: true`` is refused when the conf is loaded.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from lakeml.core.config import ExportSpec
from lakeml.ml.onnx_export import NotConvertible, to_onnx
from lakeml.ml.onnx_runtime import score_onnx

log = logging.getLogger(__name__)

ONNX_ARTIFACT = "onnx/model.onnx"
FORMATS_TAG = "portable_formats"


def score_spark(model, pandas_df, spark) -> np.ndarray:
    """P(class 1) per row of ``pandas_df`` (in its order) from a Spark ``PipelineModel``."""
    return _spark_p1(model, _spark_frame(spark, pandas_df))


def _spark_frame(spark, pdf):
    """A Spark DataFrame of ``pdf`` with a ``__row`` order column; NaN in text columns -> null."""
    import pandas as pd
    from pyspark.sql import types as T

    fields, cols = [T.StructField("__row", T.LongType(), False)], [list(range(len(pdf)))]
    for c in pdf.columns:
        s = pdf[c]
        if pd.api.types.is_bool_dtype(s):
            t, vals = T.BooleanType(), [None if pd.isna(v) else bool(v) for v in s]
        elif pd.api.types.is_integer_dtype(s):
            t, vals = T.LongType(), [int(v) for v in s]
        elif pd.api.types.is_float_dtype(s):
            t, vals = T.DoubleType(), [float(v) for v in s]
        elif pd.api.types.is_numeric_dtype(s.infer_objects()):
            t, vals = T.DoubleType(), [None if pd.isna(v) else float(v) for v in s]
        else:
            t, vals = T.StringType(), [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in s]
        fields.append(T.StructField(str(c), t, True))
        cols.append(vals)
    return spark.createDataFrame(list(zip(*cols, strict=True)), T.StructType(fields))


def _spark_p1(model, sdf) -> np.ndarray:
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    rows = model.transform(sdf).select("__row", vector_to_array(F.col("probability"))[1].alias("p")).orderBy("__row").collect()
    return np.array([r.p for r in rows], dtype=np.float64)


def log_portable(model, sample_df, run_id: str, ref=None, spec: ExportSpec | None = None) -> dict[str, str]:
    """Export ``model`` to ONNX (when ``spec.onnx``), compare it with the Spark model on
    ``spec.parity_rows`` rows of ``sample_df`` (raw feature rows), and log it as an artifact
    of run ``run_id`` if it is within ``spec.parity_tolerance``.

    Logs metric ``portable_onnx_max_abs_diff`` and tag ``portable_formats`` on the run, and
    the same tag on model version ``ref`` (a ``tracking.ModelRef``) when given. A copy that
    cannot be made (a stage ONNX cannot express, parity not met, a converter failure) is not
    logged; its reason goes to the log and to tag ``portable_onnx_missing``: the Spark model
    stays the served one, so this never fails training.
    Returns ``{format: artifact path}`` of what was logged."""
    from mlflow.tracking import MlflowClient
    from pyspark.sql import functions as F

    spec = spec or ExportSpec()
    spark = sample_df.sparkSession
    client = MlflowClient()
    logged, missing = {}, {}
    if spec.onnx:
        sample = sample_df.limit(spec.parity_rows).withColumn("__row", F.monotonically_increasing_id()).localCheckpoint()
        pdf = sample.orderBy("__row").toPandas()
        native = _spark_p1(model, sample)
        with tempfile.TemporaryDirectory() as d:
            local = Path(d) / ONNX_ARTIFACT
            diff = None
            try:
                if to_onnx(spark, model, sample.drop("__row"), local) is None:
                    raise NotConvertible("a pipeline stage has no ONNX form (see the log)")
                diff = float(np.max(np.abs(score_onnx(local, pdf) - native))) if len(native) else 0.0
            except NotConvertible as e:
                missing["onnx"] = str(e)
                log.warning("no onnx export: %s", e)
            except Exception as e:  # a converter bug must not fail training: the Spark model is the served one
                missing["onnx"] = f"{type(e).__name__}: {e}"
                log.warning("no onnx export (converter failed): %s", missing["onnx"], exc_info=True)
            if diff is not None:
                client.log_metric(run_id, "portable_onnx_max_abs_diff", diff)
                if diff <= spec.parity_tolerance:
                    client.log_artifact(run_id, str(local), str(Path(ONNX_ARTIFACT).parent))
                    logged["onnx"] = ONNX_ARTIFACT
                    log.info("logged %s (max |diff| %.3g on %d rows)", ONNX_ARTIFACT, diff, len(native))
                else:
                    missing["onnx"] = (f"max |P(1) - Spark P(1)| = {diff:.3g} over {len(native)} rows "
                                       f"> parity_tolerance {spec.parity_tolerance}")
                    log.warning("no onnx export: %s", missing["onnx"])
    formats = ",".join(sorted(logged)) or "none"
    tags = {FORMATS_TAG: formats, **{f"portable_{k}_missing": v[:4000] for k, v in missing.items()}}
    for k, v in tags.items():
        client.set_tag(run_id, k, v)
        if ref is not None:
            client.set_model_version_tag(ref.name, ref.version, k, v)
    return logged


def download(run_id: str, artifact: str, dst) -> Path:
    """Fetch one portable artifact of a run (e.g. ``onnx/model.onnx``) into ``dst``."""
    import mlflow

    Path(dst).mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=str(dst)))
