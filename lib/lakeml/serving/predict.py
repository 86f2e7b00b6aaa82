"""One predict request, from its parsed JSON to its answer and its answer-log rows, without
HTTP: validation by hand (every item gets an answer or its own error), the features of
entities from the online store, the canary split, one ONNX run per model.

Request: ``{"entities": ["E1", ...]}`` (features from the online store) or ``{"rows":
[{feature: value, ...}, ...]}`` (features given; a row may carry the entity under its column
name, which puts it in the canary like a stored entity). Answer: ``{"request_id",
"results": [...], "errors": n}``, one result per item in order, either
``{"entity", "probability", "prediction", "model_name", "model_version", "model_alias",
"as_of_date", "feature_version"}`` or ``{"entity"?, "index", "error": {"status", "code",
"message"}}``.

HTTP status: 200 when at least one item was answered (item errors inside); when every item
failed, the items' status if they all share one (404: all unknown), else 422. A body that is
no request at all: 400 (not JSON) or 422 (wrong shape); 413 beyond ``serving.max_entities``
items; 503 when there is no model (or no online store, for entities).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from lakeml.ml.canary import in_canary
from lakeml.serving.models import CHALLENGER, CHAMPION, Loaded, Serving

MAX_ENTITY_CHARS = 256


class Refused(Exception):
    """The whole request is refused: an HTTP status and a message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self, request_id: str) -> dict:
        return {"request_id": request_id, "error": {"status": self.status, "code": self.code, "message": self.message}}


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse(body: bytes) -> dict:
    """The request's JSON object (NaN and Infinity refused: not JSON)."""
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise Refused(400, "invalid_json", f"the body is not JSON: {e}") from None
    if not isinstance(payload, dict):
        raise Refused(422, "invalid_request", 'the body must be a JSON object: {"entities": [...]} or {"rows": [...]}')
    keys = set(payload)
    if len(keys & {"entities", "rows"}) != 1 or keys - {"entities", "rows"}:
        raise Refused(422, "invalid_request",
                      'the body must have exactly one of "entities" (a list of ids) or "rows" (a list of feature objects), '
                      f"and nothing else; it has {sorted(keys) or 'no key'}")
    items = payload.get("entities", payload.get("rows"))
    if not isinstance(items, list) or not items:
        raise Refused(422, "invalid_request", f'"{next(iter(keys))}" must be a non-empty list')
    return payload


@dataclass(slots=True)
class Item:
    index: int
    entity: str | None
    features: dict | None = None
    as_of_date: str | None = None  # ISO
    as_of: object = None  # the date, for the answer log
    feature_version: int | None = None
    error: tuple[int, str, str] | None = None  # (status, code, message)
    model: Loaded | None = None
    alias: str = CHAMPION
    probability: float | None = None
    prediction: int | None = None


def request_id(header: bytes | None) -> str:
    """The caller's X-Request-ID when it is a plain token, else a new one."""
    if header and len(header) <= 64 and header.replace(b"-", b"").replace(b"_", b"").replace(b".", b"").isalnum():
        return header.decode("ascii")
    return uuid.uuid4().hex


class Predictor:
    """Answers predict requests for one use case with ``serving`` (read once per request)."""

    def __init__(self, entity_key: str, share: float, max_items: int, metrics):
        self.entity_key, self.share, self.max_items, self.metrics = entity_key, share, max_items, metrics

    def items_of(self, payload: dict, serving: Serving, store) -> list[Item]:
        champ = serving.champion
        if "entities" in payload:
            ids = payload["entities"]
            self._bound(len(ids), "entities")
            items = []
            for i, e in enumerate(ids):
                if type(e) is not str or not 0 < len(e) <= MAX_ENTITY_CHARS:
                    items.append(Item(i, None, error=(422, "invalid_entity",
                                                      f"an entity is a non-empty string of at most {MAX_ENTITY_CHARS} characters")))
                else:
                    items.append(Item(i, e))
            wanted = [it.entity for it in items if it.error is None]
            if store is None:
                raise Refused(503, "no_store", "the online store is not available (see /ready); send the features as rows")
            found = store.get_many(wanted) if wanted else {}
            needed = champ.needed if serving.challenger is None else champ.needed | serving.challenger.needed
            iso: dict = {}  # date -> its ISO text (a snapshot has one date: one isoformat a request)
            for it in items:
                if it.error is not None:
                    continue
                row = found.get(it.entity)
                if row is None:
                    it.error = (404, "unknown_entity", f"{self.entity_key} {it.entity!r} is not in the online store")
                    continue
                f = row.features
                if not needed <= f.keys():  # a model newer than the store's snapshot: never guess a value
                    missing = sorted(needed - f.keys())
                    it.error = (503, "features_missing", f"the online store's row lacks feature(s) {', '.join(missing[:5])} "
                                                         "the model needs; materialize the features again")
                    continue
                d = row.as_of_date
                text = iso.get(d)
                if text is None:
                    text = iso[d] = d.isoformat()
                it.features, it.as_of, it.as_of_date, it.feature_version = f, d, text, row.feature_version
        else:
            rows = payload["rows"]
            self._bound(len(rows), "rows")
            items = []
            for i, r in enumerate(rows):
                why = champ.check_row(r, self.entity_key)
                if why is None and serving.challenger is not None:
                    why = serving.challenger.check_row(r, self.entity_key)
                entity = r.get(self.entity_key) if isinstance(r, dict) and isinstance(r.get(self.entity_key), str) else None
                items.append(Item(i, entity, features=r) if why is None else Item(i, entity, error=(422, "invalid_row", why)))
        return items

    def _bound(self, n: int, what: str) -> None:
        if n > self.max_items:
            raise Refused(413, "too_many_items", f"{n} {what} in one request; at most {self.max_items} (serving.max_entities)")

    def answer(self, payload: dict, serving: Serving, store, rid: str) -> tuple[int, dict, list[tuple]]:
        """(HTTP status, answer, answer-log rows) of one parsed request."""
        if serving.champion is None:
            raise Refused(503, "no_model", serving.error or "no model is loaded")
        items = self.items_of(payload, serving, store)
        ok = [it for it in items if it.error is None]
        for it in ok:
            it.model = serving.champion
            if serving.challenger is not None and it.entity is not None and in_canary(it.entity, self.share):
                it.model, it.alias = serving.challenger, CHALLENGER
        now = time.time_ns() // 1000
        results, log_rows = [], []
        for model in {id(it.model): it.model for it in ok}.values():
            group = [it for it in ok if it.model is model]
            probs, preds = model.score([it.features for it in group])
            alias = group[0].alias
            self.metrics.scored[(alias, model.version)] += len(group)
            for it, p, y in zip(group, probs, preds, strict=True):
                it.probability, it.prediction = p, y
                log_rows.append((it.entity, it.as_of, it.feature_version, model.name, model.version, alias, p, y, rid, now))
        errors = 0
        for it in items:
            if it.error is None:
                results.append({"entity": it.entity, "probability": it.probability, "prediction": it.prediction,
                                "model_name": it.model.name,
                                "model_version": it.model.version, "model_alias": it.alias, "as_of_date": it.as_of_date,
                                "feature_version": it.feature_version})
            else:
                errors += 1
                status, code, message = it.error
                self.metrics.error(code)
                res = {"index": it.index, "error": {"status": status, "code": code, "message": message}}
                if it.entity is not None:
                    res = {"entity": it.entity, **res}
                results.append(res)
        status = 200
        if errors == len(items):
            statuses = {it.error[0] for it in items}
            status = statuses.pop() if len(statuses) == 1 else 422
        return status, {"request_id": rid, "results": results, "errors": errors}, log_rows
