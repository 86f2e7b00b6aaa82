"""The stored form of a model version's drift reference: the rows of ``<db>.drift_reference``
(one per model, version and feature) and back to a :class:`~lakeml.monitor.profile.Profile`.

The reference is the labelled rows a model version was trained on (or its test snapshot),
scored again by that version: quantile edges and bin counts of every feature and of the
probability (``lakeml.monitor.drift.profile``). It does not change after training, so the
monitor job (``lakeml.monitor.job``) computes it the first time a version is monitored and
keeps it; every later day reads it instead of re-reading and re-scoring the history. A
change of the monitoring conf that decides the bins (``bins``, ``ks_bins``,
``quantile_error``, ``reference``) computes it again: the rows carry its ``settings``.
"""

from __future__ import annotations

import hashlib
import json

from lakeml.core.config import UseCaseConfig
from lakeml.monitor.profile import Profile

SCHEMA = (
    "model_name string, model_version string, settings string, reference string, feature string, kind string, "
    "fine_edges array<double>, coarse_edges array<double>, bin_keys array<string>, bin_counts array<bigint>"
)
COLUMNS = [c.split()[0] for c in SCHEMA.split(", ")]


def settings(uc: UseCaseConfig) -> str:
    """What in conf decides the reference's bins, as a short hash."""
    m = uc.monitoring
    key = {"bins": m.bins, "ks_bins": m.ks_bins, "quantile_error": m.quantile_error, "reference": m.reference,
           "numeric": uc.model.numeric, "categorical": uc.model.categorical}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def to_rows(uc: UseCaseConfig, name: str, version: str, prof: Profile) -> list[tuple]:
    """The rows of ``SCHEMA`` that store ``prof`` as the reference of ``name`` version ``version``."""
    rows = []
    for c, kind in prof.kinds.items():
        keys = [k for (f, k) in prof.counts if f == c]
        values = {
            "model_name": name,
            "model_version": str(version),
            "settings": settings(uc),
            "reference": prof.description,
            "feature": c,
            "kind": kind,
            "fine_edges": prof.fine.get(c),
            "coarse_edges": prof.coarse.get(c),
            "bin_keys": keys,
            "bin_counts": [prof.counts[(c, k)] for k in keys],
        }
        rows.append(tuple(values[col] for col in COLUMNS))
    return rows


def from_rows(uc: UseCaseConfig, rows: list) -> Profile | None:
    """The profile stored in ``rows`` (the rows of one version and ``settings``), or None."""
    if not rows:
        return None
    kinds, fine, coarse, counts = {}, {}, {}, {}
    for r in sorted(rows, key=lambda r: ({"numeric": 0, "categorical": 1, "prediction": 2}[r.kind], r.feature)):
        kinds[r.feature] = r.kind
        if r.kind != "categorical":
            fine[r.feature], coarse[r.feature] = list(r.fine_edges), list(r.coarse_edges)
        counts.update({(r.feature, k): int(n) for k, n in zip(r.bin_keys, r.bin_counts, strict=True)})
    # the order drift reports in: numeric features as conf lists them, categorical, then the probability
    order = [c for c in uc.model.numeric if c in kinds] + [c for c in uc.model.categorical if c in kinds]
    order += [c for c, k in kinds.items() if k == "prediction"]
    return Profile({c: kinds[c] for c in order}, fine, coarse, counts, rows[0].reference)
