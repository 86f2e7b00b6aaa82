"""Portable copies of a fitted PipelineModel: an MLeap bundle and an ONNX model.

ONNX: ``onnxmltools.convert_sparkml`` walks the pipeline; this module registers its own
converters for the stages the project uses (Imputer, StringIndexer, OneHotEncoder,
VectorAssembler, binary LogisticRegression / GBT / RandomForest), because the stock ones
compute in float32 and do not reproduce MLlib (a multi-column Imputer and the
StringIndexer -> VectorAssembler concat give invalid graphs, unseen categories map to -1,
categorical tree splits test only the first category). These compute in float64 like
MLlib, with MLlib's formulas, so ONNX Runtime matches ``PipelineModel.transform`` to
~1e-15: numeric inputs are ``double [N, 1]``, categorical inputs ``string [N, 1]`` (a
missing category is fed as :data:`NULL_STRING`, which lands in StringIndexer's ``keep``
bucket as in Spark); outputs are ``probability`` (double ``[N, 2]``) and ``prediction``.
A stage it cannot express (StringIndexer ``skip``, multinomial models, another stage
type) makes :func:`to_onnx` return ``None`` with the reason logged.

MLeap: the bundle is written by the JVM class ``ml.combust.mleap.spark.SimpleSparkSerializer``
(jar ``ml.combust.mleap:mleap-spark_2.13:0.25.2``, the release for Spark 4.1.2), called
through py4j: the ``mleap`` PyPI package is only a wrapper around that same call and holds
no jars. The MLeap runtime is JVM-only, so :func:`score_mleap` scores a bundle by
deserializing it into Spark and calling ``transform``. Without the jars on the classpath
both raise :class:`MleapUnavailable`.

:func:`log_portable` exports both, checks each against the Spark model on
``export.parity_rows`` rows, and logs the ones within ``export.parity_tolerance`` as plain
artifacts of the training run (``mleap/model.zip``, ``onnx/model.onnx``; MLflow 3 has no
mleap flavor), tagging the model version with the formats that exist.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from lakeml.config import ExportSpec

log = logging.getLogger(__name__)

MLEAP_VERSION = "0.25.2"  # ml.combust.mleap:mleap-spark_2.13 for Spark 4.1.2 (Scala 2.13)
MLEAP_SERIALIZER = "ml.combust.mleap.spark.SimpleSparkSerializer"
NULL_STRING = "<null>"  # a missing category in an ONNX feed (to_onnx refuses a StringIndexer label equal to it)
ONNX_OPSET = 15  # default domain; the newest onnxmltools 1.16 accepts (Where, IsNaN, Squeeze with axes input)
ONNX_ML_OPSET = 5  # TreeEnsemble (float64 splits and leaves) needs ai.onnx.ml 5
MLEAP_ARTIFACT = "mleap/model.zip"
ONNX_ARTIFACT = "onnx/model.onnx"
FORMATS_TAG = "portable_formats"


class NotConvertible(ValueError):
    """A pipeline stage that has no faithful ONNX form."""


class MleapUnavailable(RuntimeError):
    """The MLeap jars are not on the Spark classpath."""


# --------------------------------------------------------------------------- MLeap


def _mleap_serializer(spark):
    from py4j.java_gateway import JavaClass

    cls = spark._jvm
    for part in MLEAP_SERIALIZER.split("."):
        cls = getattr(cls, part)
    if not isinstance(cls, JavaClass):
        raise MleapUnavailable(
            f"MLeap is not on the Spark classpath (class {MLEAP_SERIALIZER} not found). It needs the jar "
            f"ml.combust.mleap:mleap-spark_2.13:{MLEAP_VERSION} and its dependencies in .cache/jars: add it to "
            "scripts/jars/pom.xml and run scripts/resolve_jars.sh (the package registry must serve ml.combust)."
        )
    return cls()


def to_mleap(spark, model, sample_df, path) -> Path:
    """Write ``model`` as an MLeap bundle zip at ``path``; ``sample_df`` (raw input rows)
    gives MLeap the schemas of every stage."""
    ser = _mleap_serializer(spark)
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    ser.serializeToBundle(model._to_java(), f"jar:file:{path}", model.transform(sample_df)._jdf)
    return path


def load_mleap(spark, bundle_path):
    """The bundle deserialized back into a Spark ``PipelineModel``."""
    from pyspark.ml import PipelineModel

    jmodel = _mleap_serializer(spark).deserializeFromBundle(f"jar:file:{Path(bundle_path).resolve()}")
    return PipelineModel._from_java(jmodel)


def score_mleap(bundle_path, pandas_df, spark=None) -> np.ndarray:
    """P(class 1) per row of ``pandas_df`` from an MLeap bundle.

    The MLeap runtime (leap frames) is JVM-only and the Python package has no scorer, so the
    bundle is deserialized into the active Spark session and scored with ``transform``."""
    from pyspark.sql import SparkSession

    spark = spark or SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError("score_mleap needs a Spark session with the MLeap jars (the MLeap runtime is JVM-only)")
    return score_spark(load_mleap(spark, bundle_path), pandas_df, spark)


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


# --------------------------------------------------------------------------- ONNX: graph walking


def _stages(model) -> list:
    from pyspark.ml import PipelineModel

    if isinstance(model, PipelineModel):
        return [s for st in model.stages for s in _stages(st)]
    return [model]


def _io(stage) -> tuple[list[str], list[str]]:
    from onnxmltools.convert.sparkml.ops_input_output import get_input_names, get_output_names

    return list(get_input_names(stage)), list(get_output_names(stage))


def onnx_input_types(model, sample_df) -> list[tuple[str, str]]:
    """(column, "double" | "string") for each raw column the pipeline reads: what the
    VectorAssembler's inputs are built from, typed from ``sample_df``'s schema."""
    from pyspark.ml.feature import StringIndexerModel
    from pyspark.sql import types as T

    produced, needed, as_string = set(), [], set()
    for st in _stages(model):
        ins, outs = _io(st)
        for c in ins:
            if c not in produced and c not in needed:
                needed.append(c)
            if isinstance(st, StringIndexerModel):
                as_string.add(c)
        produced.update(outs)
    schema = {f.name: f.dataType for f in sample_df.schema.fields}
    out = []
    for c in needed:
        if c not in schema:
            raise NotConvertible(f"the pipeline reads column {c!r}, which the sample rows do not have")
        t = schema[c]
        if c in as_string and isinstance(t, T.StringType):
            out.append((c, "string"))
        elif c not in as_string and isinstance(t, T.NumericType | T.BooleanType):
            out.append((c, "double"))
        else:
            raise NotConvertible(f"column {c!r} of type {t.simpleString()} has no ONNX input type here")
    return out


# --------------------------------------------------------------------------- ONNX: converters


def _types():
    from onnxmltools.convert.common.data_types import DoubleTensorType, Int64TensorType

    return DoubleTensorType, Int64TensorType


def _n(operator):
    return operator.inputs[0].type.shape[0] if operator.inputs and operator.inputs[0].type.shape else None


def _const(scope, container, name: str, values, dtype=np.float64, shape=None) -> str:
    from onnx import numpy_helper

    arr = np.asarray(values, dtype=dtype)
    if shape is not None:
        arr = arr.reshape(shape)
    var = scope.get_unique_variable_name(name)
    container.initializers.append(numpy_helper.from_array(arr, var))
    return var


def _node(scope, container, op: str, inputs, outputs=None, domain: str = "", version: int | None = None, **attrs) -> str:
    out = outputs or scope.get_unique_variable_name(op.lower())
    kw = {"op_domain": domain, "op_version": version} if domain else {"op_version": ONNX_OPSET}
    container.add_node(op, inputs, out, name=scope.get_unique_operator_name(op), **kw, **attrs)
    return out if isinstance(out, str) else out[0]


def _imputer(scope, operator, container):
    st = operator.raw_operator
    surrogates = st.surrogateDF.collect()[0].asDict()
    missing = float(st.getOrDefault("missingValue"))
    ins, _ = _io(st)
    for col, x, y in zip(ins, operator.inputs, operator.outputs, strict=True):
        bad = _node(scope, container, "IsNaN", [x.full_name])
        if not np.isnan(missing):
            eq = _node(scope, container, "Equal", [x.full_name, _const(scope, container, "missing", [missing])])
            bad = _node(scope, container, "Or", [bad, eq])
        fill = _const(scope, container, "surrogate", [float(surrogates[col])])
        _node(scope, container, "Where", [bad, fill, x.full_name], y.full_name)


def _string_indexer(scope, operator, container):
    st = operator.raw_operator
    mode = st.getOrDefault("handleInvalid")
    if mode == "skip":
        raise NotConvertible("StringIndexer handleInvalid='skip' drops rows; a model cannot")
    labels = st.labelsArray
    for lab, x, y in zip(labels, operator.inputs, operator.outputs, strict=True):
        if NULL_STRING in lab:
            raise NotConvertible(f"a StringIndexer label equals the null marker {NULL_STRING!r}")
        default = len(lab) if mode == "keep" else -1  # 'error': Spark raises on an unseen value
        idx = _node(
            scope, container, "LabelEncoder", [x.full_name], domain="ai.onnx.ml", version=2,
            keys_strings=list(lab), values_int64s=list(range(len(lab))), default_int64=default,
        )
        _node(scope, container, "Cast", [idx], y.full_name, to=11)  # double, as StringIndexer outputs


def _one_hot(scope, operator, container):
    st = operator.raw_operator
    keep, drop_last = st.getOrDefault("handleInvalid") == "keep", st.getOrDefault("dropLast")
    for size, x, y in zip(st.categorySizes, operator.inputs, operator.outputs, strict=True):
        # Spark: categories 0..size-1, plus 'invalid' = size when keep; dropLast drops the last slot
        n_slots = size + (1 if keep else 0) - (1 if drop_last else 0)
        v = x.full_name
        if keep:  # every invalid index goes to slot `size`
            cap = _const(scope, container, "invalid", [float(size)])
            big = _node(scope, container, "Greater", [v, cap])
            neg = _node(scope, container, "Less", [v, _const(scope, container, "zero", [0.0])])
            v = _node(scope, container, "Where", [_node(scope, container, "Or", [big, neg]), cap, v])
        slots = _const(scope, container, "slots", np.arange(n_slots, dtype=np.float64), shape=(1, n_slots))
        hit = _node(scope, container, "Equal", [v, slots])
        _node(scope, container, "Cast", [hit], y.full_name, to=11)


def _assembler(scope, operator, container):
    _node(scope, container, "Concat", [x.full_name for x in operator.inputs], operator.outputs[0].full_name, axis=1)


def _outputs(scope, container, operator, p1: str):
    """probability = [1 - p1, p1]; prediction as MLlib's transform decides it."""
    st = operator.raw_operator
    one = _const(scope, container, "one", [1.0])
    p0 = _node(scope, container, "Sub", [one, p1])
    _node(scope, container, "Concat", [p0, p1], operator.outputs[1].full_name, axis=1)
    from pyspark.ml.classification import LogisticRegressionModel

    if isinstance(st, LogisticRegressionModel):  # binary LR: 1 iff P(1) > threshold
        hit = _node(scope, container, "Greater", [p1, _const(scope, container, "threshold", [st.getThreshold()])])
    elif st.isSet("thresholds"):  # argmax of P(i) / thresholds(i), ties to class 0
        t0, t1 = st.getOrDefault("thresholds")
        s0 = _node(scope, container, "Div", [p0, _const(scope, container, "t0", [t0])])
        s1 = _node(scope, container, "Div", [p1, _const(scope, container, "t1", [t1])])
        hit = _node(scope, container, "Greater", [s1, s0])
    else:
        hit = _node(scope, container, "Greater", [p1, p0])
    flat = _node(scope, container, "Flatten", [hit], axis=0)
    flat = _node(scope, container, "Squeeze", [flat, _const(scope, container, "axis0", [0], dtype=np.int64)])
    _node(scope, container, "Cast", [flat], operator.outputs[0].full_name, to=7)  # int64 [N]


def _logistic(scope, operator, container):
    st = operator.raw_operator
    if st.numClasses != 2:
        raise NotConvertible("only binary logistic regression is converted")
    w = _const(scope, container, "coef", st.coefficients.toArray(), shape=(-1, 1))
    m = _node(scope, container, "MatMul", [operator.inputs[0].full_name, w])
    m = _node(scope, container, "Add", [m, _const(scope, container, "intercept", [st.intercept])])
    # MLlib: P(1) = 1 / (1 + exp(-margin))
    e = _node(scope, container, "Exp", [_node(scope, container, "Neg", [m])])
    p1 = _node(scope, container, "Reciprocal", [_node(scope, container, "Add", [_const(scope, container, "one", [1.0]), e])])
    _outputs(scope, container, operator, p1)


def _walk(jnode, leaf_value) -> dict:
    """One Spark tree as flat lists, read through py4j: interior nodes and leaves."""
    nodes, leaves = [], []

    def visit(n) -> tuple[int, int]:  # (is_leaf, index)
        if n.getClass().getSimpleName() == "LeafNode":
            leaves.append(leaf_value(n))
            return 1, len(leaves) - 1
        split = n.split()
        rec = {"feature": split.featureIndex()}
        if split.getClass().getSimpleName() == "CategoricalSplit":
            rec["mode"], rec["split"], rec["members"] = 6, 0.0, [float(c) for c in split.leftCategories()]
        else:
            rec["mode"], rec["split"] = 0, float(split.threshold())  # left iff x <= threshold
        i = len(nodes)
        nodes.append(rec)
        rec["true"] = visit(n.leftChild())
        rec["false"] = visit(n.rightChild())
        return 0, i

    root = visit(jnode)
    if root[0]:  # a tree that is a single leaf: one node whose branches both reach it
        nodes.append({"feature": 0, "mode": 0, "split": 0.0, "true": root, "false": root})
    return {"nodes": nodes, "leaves": leaves}


def _tree_ensemble(scope, container, x: str, trees: list[dict], name: str) -> str:
    """SUM over ``trees`` (each: nodes, leaves as values) in ONE float64 TreeEnsemble node."""
    from onnx import TensorProto, helper

    a = {k: [] for k in ["nodes_featureids", "nodes_truenodeids", "nodes_trueleafs", "nodes_falsenodeids", "nodes_falseleafs"]}
    modes, splits, members, roots, leaf_w = [], [], [], [], []
    for t in trees:
        n0, l0 = len(modes), len(leaf_w)
        roots.append(n0)
        for nd in t["nodes"]:
            a["nodes_featureids"].append(nd["feature"])
            for side in ("true", "false"):
                is_leaf, i = nd[side]
                a[f"nodes_{side}leafs"].append(is_leaf)
                a[f"nodes_{side}nodeids"].append(i + (l0 if is_leaf else n0))
            modes.append(nd["mode"])
            splits.append(nd["split"])
            if nd["mode"] == 6:
                members.extend(nd["members"] + [np.nan])
        leaf_w.extend(t["leaves"])
    attrs = dict(
        a,
        aggregate_function=1,
        post_transform=0,
        n_targets=1,
        tree_roots=roots,
        nodes_modes=helper.make_tensor("nodes_modes", TensorProto.UINT8, [len(modes)], modes),
        nodes_splits=helper.make_tensor("nodes_splits", TensorProto.DOUBLE, [len(splits)], splits),
        leaf_targetids=[0] * len(leaf_w),
        leaf_weights=helper.make_tensor("leaf_weights", TensorProto.DOUBLE, [len(leaf_w)], leaf_w),
    )
    if members:
        attrs["membership_values"] = helper.make_tensor("membership_values", TensorProto.DOUBLE, [len(members)], members)
    return _node(scope, container, "TreeEnsemble", [x], scope.get_unique_variable_name(name), domain="ai.onnx.ml",
                 version=ONNX_ML_OPSET, **attrs)


def _gbt(scope, operator, container):
    st = operator.raw_operator
    trees = []
    for jtree, w in zip(list(st._java_obj.trees()), st.treeWeights, strict=True):
        # MLlib: margin = sum_i weight_i * prediction_i; the products are the leaf values here
        trees.append(_walk(jtree.rootNode(), lambda leaf, w=w: leaf.prediction() * w))
    m = _tree_ensemble(scope, container, operator.inputs[0].full_name, trees, "margin")
    # MLlib (log loss): P(1) = 1 / (1 + exp(-2 * margin))
    e = _node(scope, container, "Exp", [_node(scope, container, "Mul", [m, _const(scope, container, "minus_two", [-2.0])])])
    p1 = _node(scope, container, "Reciprocal", [_node(scope, container, "Add", [_const(scope, container, "one", [1.0]), e])])
    _outputs(scope, container, operator, p1)


def _random_forest(scope, operator, container):
    st = operator.raw_operator
    if st.numClasses != 2:
        raise NotConvertible("only binary random forests are converted")

    def share(k):  # MLlib: each tree votes its leaf's class shares counts(k) / sum(counts)
        def f(leaf):
            c = list(leaf.impurityStats().stats())
            return c[k] / sum(c) if sum(c) != 0 else 0.0
        return f

    jtrees = list(st._java_obj.trees())
    votes = [_tree_ensemble(scope, container, operator.inputs[0].full_name, [_walk(t.rootNode(), share(k)) for t in jtrees], f"votes{k}")
             for k in (0, 1)]
    total = _node(scope, container, "Add", votes)
    _outputs(scope, container, operator, _node(scope, container, "Div", [votes[1], total]))


_CONVERTERS = {
    "pyspark.ml.feature.ImputerModel": _imputer,
    "pyspark.ml.feature.StringIndexerModel": _string_indexer,
    "pyspark.ml.feature.OneHotEncoderModel": _one_hot,
    "pyspark.ml.feature.VectorAssembler": _assembler,
    "pyspark.ml.classification.LogisticRegressionModel": _logistic,
    "pyspark.ml.classification.GBTClassificationModel": _gbt,
    "pyspark.ml.classification.RandomForestClassificationModel": _random_forest,
}


def _shape(operator):
    Double, Int64 = _types()
    st, n = operator.raw_operator, _n(operator)
    kind = operator.type.rsplit(".", 1)[1]
    if kind in ("ImputerModel", "StringIndexerModel"):
        for y in operator.outputs:
            y.type = Double([n, 1])
    elif kind == "OneHotEncoderModel":
        keep, drop_last = st.getOrDefault("handleInvalid") == "keep", st.getOrDefault("dropLast")
        for size, y in zip(st.categorySizes, operator.outputs, strict=True):
            y.type = Double([n, size + (1 if keep else 0) - (1 if drop_last else 0)])
    elif kind == "VectorAssembler":
        operator.outputs[0].type = Double([n, sum(x.type.shape[1] for x in operator.inputs)])
    else:  # classifiers: prediction, probability
        operator.outputs[0].type = Int64([n])
        operator.outputs[1].type = Double([n, 2])


def to_onnx(spark, model, sample_df, path) -> Path | None:
    """Write ``model`` as ONNX at ``path``, or return ``None`` (reason logged) when a stage
    has no faithful ONNX form. ``sample_df`` gives the input column types."""
    import onnx
    import onnxmltools
    from onnxmltools.convert.common.data_types import DoubleTensorType, StringTensorType

    try:
        unknown = [type(s).__name__ for s in _stages(model) if _op_name(s) not in _CONVERTERS]
        if unknown:
            raise NotConvertible(f"no ONNX converter for stage(s) {', '.join(unknown)}")
        inputs = onnx_input_types(model, sample_df)
        initial = [(c, StringTensorType([None, 1]) if t == "string" else DoubleTensorType([None, 1])) for c, t in inputs]
        onx = onnxmltools.convert_sparkml(
            model, "lakeml", initial, spark_session=spark, target_opset=ONNX_OPSET,
            custom_conversion_functions=_CONVERTERS, custom_shape_calculators=dict.fromkeys(_CONVERTERS, _shape),
        )
    except NotConvertible as e:
        log.warning("no ONNX model: %s", e)
        return None
    keep = {"probability", "prediction"}
    for o in [o for o in onx.graph.output if o.name not in keep]:
        onx.graph.output.remove(o)
    for imp in onx.opset_import:
        if imp.domain == "ai.onnx.ml":
            imp.version = max(imp.version, ONNX_ML_OPSET)
    onnx.helper.set_model_props(onx, {"lakeml.null_string": NULL_STRING, "lakeml.inputs": ",".join(f"{c}:{t}" for c, t in inputs)})
    onnx.checker.check_model(onx)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onx.SerializeToString())
    return path


def _op_name(stage) -> str:
    from onnxmltools.convert.sparkml.ops_names import sparkml_operator_name_map

    return sparkml_operator_name_map.get(type(stage), type(stage).__name__)


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


# --------------------------------------------------------------------------- MLflow


def log_portable(model, sample_df, run_id: str, ref=None, spec: ExportSpec | None = None) -> dict[str, str]:
    """Export ``model`` to the formats ``spec`` asks for, compare each with the Spark model
    on ``spec.parity_rows`` rows of ``sample_df`` (raw feature rows), and log the ones within
    ``spec.parity_tolerance`` as artifacts of run ``run_id``.

    Logs metric ``portable_<fmt>_max_abs_diff`` and tag ``portable_formats`` on the run,
    and the same tag on model version ``ref`` (a ``tracking.ModelRef``) when given. A
    format that cannot be made (no MLeap jars, a stage ONNX cannot express, parity not met)
    is not logged; its reason goes to the log and to tag ``portable_<fmt>_missing``: the
    Spark model stays the served one, so this never fails training.
    Returns ``{format: artifact path}`` of what was logged."""
    from mlflow.tracking import MlflowClient
    from pyspark.sql import functions as F

    spec = spec or ExportSpec()
    spark = sample_df.sparkSession
    client = MlflowClient()
    sample = sample_df.limit(spec.parity_rows).withColumn("__row", F.monotonically_increasing_id()).localCheckpoint()
    pdf = sample.orderBy("__row").toPandas()
    native = _spark_p1(model, sample)
    raw = sample.drop("__row")
    logged, missing = {}, {}
    with tempfile.TemporaryDirectory() as d:
        steps = []
        if spec.mleap:
            steps.append(("mleap", MLEAP_ARTIFACT, lambda p: to_mleap(spark, model, raw, p), lambda p: score_mleap(p, pdf.drop(columns="__row"), spark)))
        if spec.onnx:
            steps.append(("onnx", ONNX_ARTIFACT, lambda p: to_onnx(spark, model, raw, p), lambda p: score_onnx(p, pdf)))
        for fmt, artifact, export, score in steps:
            local = Path(d) / artifact
            try:
                if export(local) is None:
                    raise NotConvertible("a pipeline stage has no ONNX form (see the log)")
                diff = float(np.max(np.abs(score(local) - native))) if len(native) else 0.0
            except (MleapUnavailable, NotConvertible) as e:
                missing[fmt] = str(e)
                log.warning("no %s export: %s", fmt, e)
                continue
            except Exception as e:  # a converter bug must not fail training: the Spark model is the served one
                missing[fmt] = f"{type(e).__name__}: {e}"
                log.warning("no %s export (converter failed): %s", fmt, missing[fmt], exc_info=True)
                continue
            client.log_metric(run_id, f"portable_{fmt}_max_abs_diff", diff)
            if not diff <= spec.parity_tolerance:
                missing[fmt] = f"max |P(1) - Spark P(1)| = {diff:.3g} over {len(native)} rows > parity_tolerance {spec.parity_tolerance}"
                log.warning("no %s export: %s", fmt, missing[fmt])
                continue
            client.log_artifact(run_id, str(local), str(Path(artifact).parent))
            logged[fmt] = artifact
            log.info("logged %s (max |diff| %.3g on %d rows)", artifact, diff, len(native))
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


__all__ = [
    "ExportSpec", "MleapUnavailable", "NotConvertible", "NULL_STRING", "download", "load_mleap", "log_portable",
    "onnx_input_types", "run_onnx", "score_mleap", "score_onnx", "score_spark", "to_mleap", "to_onnx",
]
