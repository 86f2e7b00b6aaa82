"""The drift statistics, on two count vectors over the same bins (reference, current).

- ``psi`` (population stability index) = sum_i (c_i - r_i) * ln(c_i / r_i), with r_i, c_i
  the reference and current shares and empty shares replaced by ``EPS`` = 1e-4;
- ``js_distance``: Jensen-Shannon distance, base 2 (0 = same, 1 = disjoint);
- ``chi2_p``: p-value of the chi-square test of homogeneity on the 2 x bins table;
- ``ks_binned``: max |CDF_ref - CDF_cur| over the upper edges of ordered bins;
- ``status``: ``alert`` / ``warn`` / ``ok`` by the thresholds of ``monitoring``.
"""

from __future__ import annotations

import numpy as np

from lakeml.core.config import MonitoringSpec

EPS = 1e-4  # share used for an empty bin in PSI
STATUS_ORDER = {"ok": 0, "warn": 1, "alert": 2}


def psi(ref_counts, cur_counts, eps: float = EPS) -> float | None:
    """Population stability index of two count vectors over the same bins."""
    r, c = np.asarray(ref_counts, float), np.asarray(cur_counts, float)
    if r.sum() <= 0 or c.sum() <= 0:
        return None
    r, c = np.maximum(r / r.sum(), eps), np.maximum(c / c.sum(), eps)
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(ref_counts, cur_counts) -> float | None:
    """Jensen-Shannon distance (base 2) of two count vectors over the same bins."""
    from scipy.spatial.distance import jensenshannon

    r, c = np.asarray(ref_counts, float), np.asarray(cur_counts, float)
    if r.sum() <= 0 or c.sum() <= 0:
        return None
    return float(jensenshannon(r, c, base=2))


def chi2_p(ref_counts, cur_counts) -> float | None:
    """p-value of the chi-square test of homogeneity (bins empty on both sides dropped)."""
    from scipy.stats import chi2_contingency

    table = np.array([ref_counts, cur_counts], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) <= 0).any():
        return None
    return float(chi2_contingency(table).pvalue)


def ks_binned(ref_counts, cur_counts) -> float | None:
    """max |CDF_ref - CDF_cur| over the upper edges of ordered bins."""
    r, c = np.asarray(ref_counts, float), np.asarray(cur_counts, float)
    if r.sum() <= 0 or c.sum() <= 0:
        return None
    return float(np.max(np.abs(np.cumsum(r) / r.sum() - np.cumsum(c) / c.sum())))


def status(kind: str, psi_v: float | None, ks_v: float | None, js_v: float | None, mon: MonitoringSpec) -> str:
    if (psi_v is not None and psi_v >= mon.psi_alert) or (ks_v is not None and ks_v >= mon.ks_alert) or (
        js_v is not None and js_v >= mon.js_alert
    ):
        return "alert"
    if psi_v is not None and psi_v >= mon.psi_warn:
        return "warn"
    return "ok"
