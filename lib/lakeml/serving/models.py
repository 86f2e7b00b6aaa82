"""The models the scoring server answers with: the ``@champion`` version's ONNX copy (and the
``@challenger``'s, for a canary) in ONNX Runtime, and the blue-green switch between versions.

A canary runs when ``scoring.canary.share > 0`` and ``@challenger`` names another version
than ``@champion`` that the validation gate tagged ``lakeml.canary = running`` (the rule of
``lakeml.ml.canary.running``, which batch scoring follows too); the entities of the share
(``in_canary``) are scored by it and answered with the alias ``challenger``.

``Models.current`` is one immutable ``Serving`` (a champion, perhaps a challenger). A request
reads the reference once and scores with what it got; ``refresh`` (a background task, every
``serving.reload_seconds``) reads the registry's aliases and, when one moved, loads the new
version beside the old ones and replaces the reference in one assignment. So a switch never
fails a request or makes one wait: a request that started before it finishes on the old
version, the next one gets the new.

The registry is read with a plain ``MlflowClient`` (``lakeml.core.tracking`` imports
``mlflow.spark``, and the server imports no Spark); the ONNX bytes are the artifact
``portable.ONNX_ARTIFACT`` of the version's run, as batch scoring reads them
(``lakeml.ml.score.onnx_model``).
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from lakeml.core.config import EnvConfig, UseCaseConfig
from lakeml.core.errors import MissingDataError
from lakeml.ml import portable
from lakeml.ml.canary import RUNNING, TAG  # the rule batch and streaming follow (no Spark import)
from lakeml.ml.onnx_export import NULL_STRING

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"  # the registry aliases (lakeml.core.tracking's)
NUMBER, CATEGORY = "number", "category"
CANARY_TAG, CANARY_RUNNING = TAG, RUNNING


@dataclass(frozen=True)
class Loaded:
    """One registered version, ready to score: its ONNX session and its inputs."""

    name: str
    version: str
    run_id: str
    session: object  # onnxruntime.InferenceSession
    inputs: tuple[tuple[str, str], ...]  # (feature, NUMBER | CATEGORY), in the graph's order

    def __post_init__(self):
        names = [n for n, _ in self.inputs]
        # one C-level pass over the rows takes every input of a row at once
        getter = itemgetter(*names) if len(names) > 1 else (lambda r, n=names[0]: (r[n],))
        object.__setattr__(self, "_getter", getter)
        object.__setattr__(self, "_numbers", [i for i, (_, k) in enumerate(self.inputs) if k == NUMBER])
        object.__setattr__(self, "_categories", [i for i, (_, k) in enumerate(self.inputs) if k == CATEGORY])
        object.__setattr__(self, "needed", frozenset(names))
        for attr, kind in (("_number_getter", NUMBER), ("_category_getter", CATEGORY)):
            some = [n for n, k in self.inputs if k == kind]
            getter = itemgetter(*some) if len(some) > 1 else (lambda r, some=tuple(some): tuple(r[n] for n in some))
            object.__setattr__(self, attr, getter)

    def score(self, rows: list[dict]) -> tuple[list[float], list[int]]:
        """P(label = 1) and the prediction (the version's threshold, as the graph encodes
        it) of each row (feature -> value, every input present, values validated), in one
        run of the graph. Numbers become float64 with None as NaN (the graph's Imputer fills
        it, as in batch scoring); categories strings with None as ``NULL_STRING``. Built as
        one object matrix, then sliced: faster than a list per input, at 1 row and at 1000."""
        names = [n for n, _ in self.inputs]
        grid = np.array(list(map(self._getter, rows)), dtype=object)
        feeds = {}
        if self._numbers:
            nums = grid[:, self._numbers].astype(np.float64)
            for j, i in enumerate(self._numbers):
                feeds[names[i]] = np.ascontiguousarray(nums[:, j: j + 1])
        if self._categories:
            cats = grid[:, self._categories]
            cats[cats == None] = NULL_STRING  # noqa: E711 - elementwise on an object array
            for j, i in enumerate(self._categories):
                feeds[names[i]] = np.ascontiguousarray(cats[:, j: j + 1])
        prob, pred = self.session.run(["probability", "prediction"], feeds)
        return prob[:, 1].tolist(), pred.astype(np.int64).tolist()

    def check_row(self, row: dict, entity_key: str) -> str | None:
        """Why ``row`` (a caller's features) cannot be scored, or None. Exact: a number is a
        JSON number (not a boolean, not a string), a category a string, either may be null;
        every feature is present; no unknown name (``entity_key`` aside)."""
        if type(row) is not dict:
            return f"a row is a JSON object of features, not {_json_type(row)}"
        if self._plainly_valid(row, entity_key):
            return None
        known = self.kinds
        unknown = [k for k in row if k not in known and k != entity_key]
        if unknown:
            return f"unknown feature(s): {', '.join(sorted(map(str, unknown))[:10])}"
        missing = [k for k in known if k not in row]
        if missing:
            return f"missing feature(s): {', '.join(missing[:10])} (send null for a missing value)"
        bad = []
        for name, kind in self.inputs:
            v = row[name]
            if v is None:
                continue
            if kind == NUMBER:
                if type(v) is bool or not isinstance(v, int | float):
                    bad.append(f"{name} must be a number or null, not {_json_type(v)}")
                elif isinstance(v, float) and not math.isfinite(v):
                    bad.append(f"{name} must be a finite number, not {v}")
                elif isinstance(v, int) and not -_MAX_DOUBLE <= v <= _MAX_DOUBLE:
                    bad.append(f"{name} is beyond the range of a double")
            elif not isinstance(v, str):
                bad.append(f"{name} must be a string or null, not {_json_type(v)}")
        if entity_key in row and not (isinstance(row[entity_key], str) and row[entity_key]):
            bad.append(f"{entity_key} must be a non-empty string")
        return "; ".join(bad[:10]) or None

    def _plainly_valid(self, row: dict, entity_key: str) -> bool:
        """A fast test (set operations and one pass in C) that accepts most valid rows; a
        row it does not accept gets the exact check, which names what is wrong."""
        keys = row.keys()
        if not self.needed <= keys or len(keys) - (entity_key in keys) != len(self.needed):
            return False
        nums = self._number_getter(row)
        if not set(map(type, nums)) <= _NUMBER_TYPES:
            return False
        try:
            # filter(None, ...) drops None (and zeros, which change no sum)
            if not math.isfinite(math.fsum(filter(None, nums))):  # NaN, inf or a sum beyond a double
                return False
        except OverflowError:  # an int beyond a double
            return False
        if not set(map(type, self._category_getter(row))) <= _CATEGORY_TYPES:
            return False
        return entity_key not in keys or (type(row[entity_key]) is str and row[entity_key] != "")

    @property
    def kinds(self) -> dict[str, str]:
        return dict(self.inputs)

    def describe(self, alias: str) -> str:
        return f"{self.name} version {self.version} ({alias})"


_MAX_DOUBLE = 1.7976931348623157e308
_NUMBER_TYPES = frozenset({int, float, type(None)})  # bool is a subclass of int, not int: refused
_CATEGORY_TYPES = frozenset({str, type(None)})


def _json_type(v) -> str:
    return {bool: "a boolean", str: "a string", list: "an array", dict: "an object"}.get(type(v), type(v).__name__)


@dataclass(frozen=True)
class Serving:
    """What answers now: the champion, and the challenger when a canary runs."""

    champion: Loaded | None
    challenger: Loaded | None = None  # set only when it differs from the champion and share > 0
    error: str | None = None  # why there is no champion (for /ready)


def session_of(model: bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # one request is one small batch: threads cost more to wake than they save, and the
    # machine's other core serves the next request
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def inputs_of(session) -> tuple[tuple[str, str], ...]:
    return tuple((i.name, CATEGORY if i.type == "tensor(string)" else NUMBER) for i in session.get_inputs())


class Models:
    """The registry's ``@champion`` (and ``@challenger``) of one use case, loaded; ``current``
    is swapped whole when an alias moves (``refresh``)."""

    def __init__(self, env: EnvConfig, uc: UseCaseConfig):
        import mlflow
        from mlflow import MlflowClient

        self.env, self.uc = env, uc
        self.name = uc.model.name
        self.share = uc.scoring.canary.share
        # portable.download resolves the run's artifacts through the process's tracking URI
        mlflow.set_tracking_uri(env.tracking_uri)
        mlflow.set_registry_uri(env.registry_uri)
        self.client = MlflowClient(tracking_uri=env.tracking_uri, registry_uri=env.registry_uri)
        self.current = Serving(None, error="the registry was not read yet")
        self.switches = 0  # how often the champion or challenger changed after the first load
        self._cache: dict[str, Loaded] = {}  # version -> loaded (the ones in use)
        self._lock = threading.Lock()  # one refresh at a time

    def _alias(self, alias: str):
        """The version ``alias`` names, None when it names none; a registry that does not
        answer raises (the caller keeps what it serves)."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException as e:
            if e.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):  # no such alias, no such model
                return None
            raise

    def _load(self, mv) -> Loaded:
        version = str(mv.version)
        hit = self._cache.get(version)
        if hit is not None and hit.run_id == mv.run_id:
            return hit
        formats = (mv.tags or {}).get(portable.FORMATS_TAG, "")
        if "onnx" not in formats.split(","):
            why = (mv.tags or {}).get("portable_onnx_missing", "it was trained without an ONNX copy (export.onnx)")
            raise MissingDataError(f"{self.name} version {version} has no ONNX copy, which the scoring server needs: {why}")
        with tempfile.TemporaryDirectory() as d:
            model = portable.download(mv.run_id, portable.ONNX_ARTIFACT, d).read_bytes()
        sess = session_of(model)
        names = {o.name for o in sess.get_outputs()}
        if not {"probability", "prediction"} <= names:
            raise MissingDataError(f"{self.name} version {version}: its ONNX copy has outputs {sorted(names)}, "
                                   "not probability and prediction")
        loaded = Loaded(self.name, version, mv.run_id, sess, inputs_of(sess))
        # the startup line and the switch line say it on the console
        log.info("loaded %s version %s (run %s, %d inputs)", self.name, version, mv.run_id, len(loaded.inputs),
                 extra={"file_only": True})
        return loaded

    def refresh(self) -> bool:
        """Read the aliases; load what moved; swap ``current``. Returns whether it changed.
        Blocking (registry reads, a download, a session built): run it off the event loop."""
        with self._lock:
            cur = self.current
            try:
                champ_mv = self._alias(CHAMPION)
            except Exception as e:  # noqa: BLE001 - a registry down for a moment: keep serving what is loaded
                if cur.champion is None:
                    self.current = Serving(None, error=f"the registry at {self.env.registry_uri} does not answer: {e}")
                raise
            if champ_mv is None:
                if cur.champion is None:
                    self.current = Serving(None, error=f"no version of {self.name!r} has the alias @{CHAMPION} in the registry "
                                                       f"at {self.env.registry_uri}; train one (jobs/pipeline.py)")
                    return False
                # an alias removed by hand: keep answering with what was loaded, say so
                log.warning("%s@%s is gone from the registry: still serving version %s", self.name, CHAMPION, cur.champion.version)
                return False
            # a canary runs when the share is > 0 and @challenger is another version tagged
            # lakeml.canary = running (by the validation gate; lakeml.ml.canary.running)
            chall_mv = self._alias(CHALLENGER) if self.share > 0 else None
            if chall_mv is not None and (str(chall_mv.version) == str(champ_mv.version)
                                         or (chall_mv.tags or {}).get(CANARY_TAG) != CANARY_RUNNING):
                chall_mv = None
            want = (str(champ_mv.version), None if chall_mv is None else str(chall_mv.version))
            have = (cur.champion and cur.champion.version, cur.challenger and cur.challenger.version)
            if want == have:
                return False
            try:
                champ = self._load(champ_mv)
            except Exception as e:  # noqa: BLE001 - a version that cannot load must not stop the one serving
                if cur.champion is None:
                    self.current = Serving(None, error=str(e))
                log.error("cannot load %s version %s: %s", self.name, champ_mv.version, e, exc_info=True)
                return False
            chall = None
            if chall_mv is not None:
                try:
                    chall = self._load(chall_mv)
                except Exception as e:  # noqa: BLE001 - the champion answers every entity then
                    log.error("cannot load the challenger %s version %s: %s", self.name, chall_mv.version, e, exc_info=True)
            new = Serving(champ, chall)
            first = cur.champion is None
            self.current = new  # the switch: one reference, read once per request
            self._cache = {m.version: m for m in (champ, chall) if m is not None}
            if not first:
                self.switches += 1
                log.info("switched to %s%s (was %s%s)", champ.describe(CHAMPION),
                         f", {chall.describe(CHALLENGER)} for {self.share:.0%} of the entities" if chall else "",
                         cur.champion.describe(CHAMPION), f", {cur.challenger.describe(CHALLENGER)}" if cur.challenger else "")
            return True
