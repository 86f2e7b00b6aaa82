"""The scoring server's metrics in Prometheus' text exposition format (version 0.0.4),
written by hand: requests by route and status, a latency histogram with fixed buckets, errors
by kind, entities scored, the loaded model versions as gauges, the answer log's progress.

Every update happens on the server's event loop (one thread), so plain integers suffice; the
answer log's counters are read from its own object when the page is rendered.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

# seconds; the targets (p99 <= 10 ms, <= 25 ms) fall on bucket bounds
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PREFIX = "lakeml_serving"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _esc(v) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kw) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in kw.items()) + "}" if kw else ""


def _num(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


class Metrics:
    def __init__(self):
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)  # (route, method, status)
        self.latency: dict[str, list[int]] = {}  # route -> count per bucket (+Inf last), not cumulative
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.errors: dict[str, int] = defaultdict(int)  # kind -> count
        self.scored: dict[tuple[str, str], int] = defaultdict(int)  # (alias, version) -> entities/rows scored

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests[(route, method, status)] += 1
        counts = self.latency.get(route)
        if counts is None:
            counts = self.latency[route] = [0] * (len(BUCKETS) + 1)
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum[route] += seconds

    def error(self, kind: str, n: int = 1) -> None:
        self.errors[kind] += n

    def render(self, models: list[tuple[str, object]], switches: int, store: dict | None, log_stats: dict) -> str:
        """The page. ``models``: (alias, Loaded) served now; ``store``: the online store's
        meta (or None); ``log_stats``: the answer log's counters."""
        out: list[str] = []

        def head(name: str, kind: str, text: str) -> str:
            full = f"{PREFIX}_{name}"
            out.append(f"# HELP {full} {text}")
            out.append(f"# TYPE {full} {kind}")
            return full

        n = head("requests_total", "counter", "HTTP requests answered, by route, method and status.")
        for (route, method, status), v in sorted(self.requests.items()):
            out.append(f"{n}{_labels(route=route, method=method, status=status)} {v}")
        n = head("request_duration_seconds", "histogram", "Time from a request's arrival to the end of its answer.")
        for route, counts in sorted(self.latency.items()):
            acc = 0
            for le, c in zip([*BUCKETS, "+Inf"], counts, strict=True):
                acc += c
                out.append(f"{n}_bucket{_labels(route=route, le=le if le == '+Inf' else _num(le))} {acc}")
            out.append(f"{n}_sum{_labels(route=route)} {_num(self.latency_sum[route])}")
            out.append(f"{n}_count{_labels(route=route)} {acc}")
        n = head("errors_total", "counter",
                 "Errors by kind: per-item (unknown_entity, invalid_row, invalid_entity) and per-request (auth, too_large, ...).")
        for kind, v in sorted(self.errors.items()):
            out.append(f"{n}{_labels(kind=kind)} {v}")
        n = head("scored_total", "counter", "Entities and rows scored, by model alias and version.")
        for (alias, version), v in sorted(self.scored.items()):
            out.append(f"{n}{_labels(alias=alias, version=version)} {v}")
        n = head("model_version", "gauge", "The registered version each alias is served by (its number).")
        for alias, m in models:
            out.append(f"{n}{_labels(alias=alias, name=m.name)} {_version_number(m.version)}")
        n = head("model_info", "gauge", "1 for each loaded model: alias, name, version, MLflow run.")
        for alias, m in models:
            out.append(f"{n}{_labels(alias=alias, name=m.name, version=m.version, run_id=m.run_id)} 1")
        plain = [  # one sample each, no labels
            ("model_switches_total", "counter", "Blue-green switches since start (an alias moved, the new version loaded).", switches),
            ("store_rows", "gauge", "Rows of the online store's current snapshot (0 when there is none).",
             int(store.get("rows", 0)) if store else 0),
            ("store_feature_version", "gauge", "The feature table version the online store's snapshot was read from.",
             int(store.get("feature_version", -1)) if store else -1),
            ("answer_log_rows_total", "counter", "Answers written to the answer log's Delta table.", log_stats.get("written", 0)),
            ("answer_log_pending", "gauge", "Answers buffered, not yet written.", log_stats.get("pending", 0)),
            ("answer_log_failures_total", "counter", "Answer log writes that failed (their rows are retried).",
             log_stats.get("failures", 0)),
            ("answer_log_dropped_total", "counter", "Answers dropped because the buffer was full while writes failed.",
             log_stats.get("dropped", 0)),
        ]
        for name, kind, text, value in plain:
            out.append(f"{head(name, kind, text)} {value}")
        return "\n".join(out) + "\n"


def _version_number(v: str) -> str:
    return v if str(v).isdigit() else "NaN"
