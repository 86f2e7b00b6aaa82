"""A fitted PipelineModel as one ONNX graph.

``onnxmltools.convert_sparkml`` walks the pipeline; this module registers its own
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
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

NULL_STRING = "<null>"  # a missing category in an ONNX feed (to_onnx refuses a StringIndexer label equal to it)
ONNX_OPSET = 15  # default domain; the newest onnxmltools 1.16 accepts (Where, IsNaN, Squeeze with axes input)
ONNX_ML_OPSET = 5  # TreeEnsemble (float64 splits and leaves) needs ai.onnx.ml 5


class NotConvertible(ValueError):
    """A pipeline stage that has no faithful ONNX form."""


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
        if type(st).__name__ in ("SparkXGBClassifierModel", "PositiveThreshold"):
            continue  # they read what the stages before them made (features, probability)
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


def _ensemble_attrs(trees: list[dict]) -> dict:
    """The attributes of ONE float64 TreeEnsemble that sums ``trees`` (each: nodes, leaves as
    values; a node may say where a missing value goes, ``missing_true``)."""
    from onnx import TensorProto, helper

    a = {k: [] for k in ["nodes_featureids", "nodes_truenodeids", "nodes_trueleafs", "nodes_falsenodeids", "nodes_falseleafs"]}
    modes, splits, members, roots, leaf_w, missing = [], [], [], [], [], []
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
            missing.append(nd.get("missing_true", 0))
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
    if any(missing):
        attrs["nodes_missing_value_tracks_true"] = missing
    if members:
        attrs["membership_values"] = helper.make_tensor("membership_values", TensorProto.DOUBLE, [len(members)], members)
    return attrs


def _tree_ensemble(scope, container, x: str, trees: list[dict], name: str) -> str:
    """SUM over ``trees`` in ONE float64 TreeEnsemble node."""
    return _node(scope, container, "TreeEnsemble", [x], scope.get_unique_variable_name(name), domain="ai.onnx.ml",
                 version=ONNX_ML_OPSET, **_ensemble_attrs(trees))


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

    from lakeml.ml import xgb

    booster = xgb.classifier_stage(model) if hasattr(model, "stages") else None
    try:
        if booster is not None:  # the MLlib stages before it converted as usual, the booster grafted on
            from pyspark.ml import PipelineModel

            pre = PipelineModel(stages=model.stages[: model.stages.index(booster)])
            onx, inputs = _convert(spark, pre, sample_df, {"features"})
            after = model.stages[-1]
            _graft_xgb(onx, booster, after.getOrDefault("threshold") if isinstance(after, xgb.PositiveThreshold) else 0.5)
        else:
            onx, inputs = _convert(spark, model, sample_df, {"probability", "prediction"})
    except NotConvertible as e:
        log.warning("no ONNX model: %s", e)
        return None
    for imp in onx.opset_import:
        if imp.domain == "ai.onnx.ml":
            imp.version = max(imp.version, ONNX_ML_OPSET)
    onnx.helper.set_model_props(onx, {"lakeml.null_string": NULL_STRING, "lakeml.inputs": ",".join(f"{c}:{t}" for c, t in inputs)})
    onnx.checker.check_model(onx)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onx.SerializeToString())
    return path


def _convert(spark, model, sample_df, keep: set[str]):
    """The MLlib stages of ``model`` as an ONNX graph whose outputs are ``keep``; and its inputs."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import DoubleTensorType, StringTensorType

    unknown = [type(s).__name__ for s in _stages(model) if _op_name(s) not in _CONVERTERS]
    if unknown:
        raise NotConvertible(f"no ONNX converter for stage(s) {', '.join(unknown)}")
    inputs = onnx_input_types(model, sample_df)
    initial = [(c, StringTensorType([None, 1]) if t == "string" else DoubleTensorType([None, 1])) for c, t in inputs]
    onx = onnxmltools.convert_sparkml(
        model, "lakeml", initial, spark_session=spark, target_opset=ONNX_OPSET,
        custom_conversion_functions=_CONVERTERS, custom_shape_calculators=dict.fromkeys(_CONVERTERS, _shape),
    )
    for o in [o for o in onx.graph.output if o.name not in keep]:
        onx.graph.output.remove(o)
    return onx, inputs


def _graft_xgb(onx, booster, threshold: float) -> None:
    """After the graph's ``features`` output: the booster's trees on the features as float32
    (what XGBoost compares), P(1) = sigmoid(base margin + sum of leaves), ``probability`` and
    ``prediction`` (1 iff P(1) >= threshold)."""
    from onnx import TensorProto, helper, numpy_helper

    from lakeml.ml import xgb

    try:
        trees, base = xgb.trees(booster)
    except ValueError as e:
        raise NotConvertible(str(e)) from None
    g = onx.graph
    feats = next(o for o in g.output if o.name == "features")
    g.output.remove(feats)

    def const(name, values, dtype=np.float64):
        g.initializer.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    def node(op, ins, out, domain="", **attrs):
        g.node.append(helper.make_node(op, ins, [out], name=f"xgb_{out}", domain=domain, **attrs))
        return out

    x = node("Cast", [node("Cast", ["features"], "xgb_x32", to=TensorProto.FLOAT)], "xgb_x", to=TensorProto.DOUBLE)
    m = node("TreeEnsemble", [x], "xgb_leaves", domain="ai.onnx.ml", **_ensemble_attrs(trees))
    m = node("Add", [m, const("xgb_base_margin", [base])], "xgb_margin")
    p1 = node("Sigmoid", [m], "xgb_p1")
    p0 = node("Sub", [const("xgb_one", [1.0]), p1], "xgb_p0")
    node("Concat", [p0, p1], "probability", axis=1)
    hit = node("GreaterOrEqual", [p1, const("xgb_threshold", [threshold])], "xgb_hit")
    flat = node("Squeeze", [node("Flatten", [hit], "xgb_flat", axis=0), const("xgb_axis0", [0], np.int64)], "xgb_hit_n")
    node("Cast", [flat], "prediction", to=TensorProto.INT64)
    g.output.extend([
        helper.make_tensor_value_info("prediction", TensorProto.INT64, [None]),
        helper.make_tensor_value_info("probability", TensorProto.DOUBLE, [None, 2]),
    ])


def _op_name(stage) -> str:
    from onnxmltools.convert.sparkml.ops_names import sparkml_operator_name_map

    return sparkml_operator_name_map.get(type(stage), type(stage).__name__)
