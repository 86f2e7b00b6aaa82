"""Releasing a model in steps: the canary, and the watch after a promotion that rolls the
champion back by itself. The scheduled pipeline calls ``score_live`` and ``review``.

Canary (``scoring.canary``, ``share > 0``). A challenger that passes the validation gate
does not become champion: the gate tags its version ``lakeml.canary = running`` (decision
``canary`` / ``started``) and it serves the entities of the canary share
(``lakeml.ml.canary``) from then on, in batch (``lakeml.ml.score`` writes champion rows
outside the share, challenger rows inside it, both ``served``) and online. Once the labels
of at least ``min_dates`` score dates on which it served are observed, ``review`` compares
its live ROC AUC with the champion's on THE SAME dates: the mean over those dates of each
model's per-date ROC AUC, as the monitor measured it in ``performance_metrics`` (each on
the entities it served: disjoint random halves of one population, so a per-date mean keeps
each date's base rate out of the comparison; pooling the rows would mix them). It is
promoted (decision ``promoted``; the champion alias moves, the replaced champion is
watched) when its mean is not more than ``max_auc_drop`` below the champion's (with 0: at
least as good), ended otherwise (decision ``ended``: the version is tagged ``ended`` and
the ``challenger`` alias removed, so nothing serves it again). One verdict per canary; the
retraining policy holds while a canary runs (a retrain would take the ``challenger`` alias
and lose its evidence). ``end_canary`` ends one by hand (``jobs/promote.py --end-canary``).

Watch and automatic rollback (``scoring.rollback``). After a promotion by the gate or by a
canary, the replaced champion carries the MLflow alias ``previous`` and is scored beside
the new champion (``model_alias = 'previous'``, a shadow: not served) on the next
``watch_dates`` score dates. Once at least ``min_dates`` of them are labelled and measured,
``review`` compares the two the same way (mean per-date ROC AUC on the same dates): when the
new champion is more than ``max_auc_drop`` below its predecessor, the champion alias goes
back (``promote.rollback``, trigger ``automatic``; with ``automatic: false`` only a decision
``rollback_advised`` is recorded, once per set of evidence dates). When every watched date
is measured and the new champion held, the watch ends (decision ``kept``). A watch ends with
its verdict (the ``previous`` alias is removed), so a daily run never rolls back twice on
the same evidence; a predecessor that has become an orphan is never rolled back to
(decision ``refused``). A watch whose champion was moved otherwise (forced, rolled back by
hand) is dropped. Every decision is a row of ``model_decisions`` with both AUCs, the dates,
the rows per date and model (``details``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakeml.core import tables, tracking
from lakeml.core.config import EnvConfig, UseCaseConfig
from lakeml.lifecycle import canary, promote
from lakeml.lifecycle.decisions import Decision, PromotionError, record
from lakeml.ml import score

log = logging.getLogger(__name__)

# decisions after which the live batch is served by other models: the scheduled run scores it again
CHANGES_SERVING = ("promoted", "ended", "rolled_back", "started")


@dataclass
class Evidence:
    """Live ROC AUC of model ``a`` and model ``b`` on the score dates both were measured on."""

    a: str
    b: str
    dates: list[date] = field(default_factory=list)
    per_date: list[dict] = field(default_factory=list)

    def mean(self, side: str) -> float | None:
        vals = [p[f"{side}_roc_auc"] for p in self.per_date]
        return sum(vals) / len(vals) if vals else None

    def details(self, rule: dict) -> dict:
        return {"method": "mean over the dates of each model's per-date live ROC AUC (performance_metrics)",
                "models": {"a": self.a, "b": self.b}, "a_roc_auc": self.mean("a"), "b_roc_auc": self.mean("b"),
                "dates": [str(d) for d in self.dates], "per_date": self.per_date, "rule": rule}


def _perf(spark: SparkSession, uc: UseCaseConfig, alias: str, version: str | None, dates: list[date]) -> dict[date, tuple]:
    """score_date -> (roc_auc, n, version) of the alias's (and version's) measured rows."""
    pt = uc.table(uc.tables.performance_metrics)
    if not dates or not tables.exists(spark, pt):
        return {}
    rows = tables.read(spark, pt).where(F.col("score_date").isin(dates) & (F.col("model_alias") == alias) & F.col("roc_auc").isNotNull())
    if version is not None:
        rows = rows.where(F.col("model_version") == version)
    return {r.score_date: (r.roc_auc, r.n, r.model_version) for r in rows.select("score_date", "roc_auc", "n", "model_version").collect()}


def evidence(spark: SparkSession, uc: UseCaseConfig, a: tuple[str, str | None], b: tuple[str, str | None], dates: list[date]) -> Evidence:
    """Live ROC AUC of ``a`` and ``b`` ((alias, version or None for any)) on those of ``dates``
    where the monitor measured both."""
    pa, pb = _perf(spark, uc, *a, dates), _perf(spark, uc, *b, dates)
    common = sorted(set(pa) & set(pb))
    ev = Evidence(f"{a[0]} {a[1] or ''}".strip(), f"{b[0]} {b[1] or ''}".strip(), common)
    ev.per_date = [{"score_date": str(d), "a_version": pa[d][2], "a_roc_auc": pa[d][0], "a_n": pa[d][1],
                    "b_version": pb[d][2], "b_roc_auc": pb[d][0], "b_n": pb[d][1]} for d in common]
    return ev


def _scored_dates(spark: SparkSession, uc: UseCaseConfig, alias: str, version: str, served: bool | None = None,
                  among: list[date] | None = None) -> list[date]:
    """The score dates (``among`` those, if given) with rows of (alias, version) in the
    predictions table. Cheap for a shadow or canary alias: files holding only other aliases'
    rows are skipped by their model_alias statistics."""
    pt = uc.table(uc.tables.predictions)
    if not tables.exists(spark, pt) or among == []:
        return []
    rows = tables.read(spark, pt).where((F.col("model_alias") == alias) & (F.col("model_version") == version))
    if among is not None:
        rows = rows.where(F.col("score_date").isin(among))
    if served is not None:
        if score.SERVED not in rows.columns:
            return []
        rows = rows.where(F.col(score.SERVED) == F.lit(served))
    return sorted(r[0] for r in rows.select("score_date").distinct().collect())


# ------------------------------------------------------------------------------- the canary


def start_canary(spark: SparkSession, client, uc: UseCaseConfig, d: Decision) -> Decision:
    """The gate's pass of a challenger while a champion serves and ``canary.share > 0``: its
    version is tagged running and serves the share from the next scoring on; ``d`` (the
    gate's numbers) is recorded as ``canary`` / ``started``."""
    d.action, d.decision = "canary", "started"
    d.champion_after = d.champion_before
    d.reasons = [*d.reasons, f"passed the gate: serves the canary share {uc.scoring.canary.share} of the entities "
                 f"until the live ROC AUC of {uc.scoring.canary.min_dates} labelled score dates decides"]
    tracking.tag_version(client, tracking.ModelRef(uc.model.name, d.challenger_version, ""), {canary.TAG: canary.RUNNING})
    record(spark, uc, d)
    return d


def _stale_canaries(client, uc: UseCaseConfig, trigger: str, spark: SparkSession) -> list[Decision]:
    """Versions tagged running that no longer serve: ``@challenger`` moved on (a version
    trained by hand) ends them; one made champion by hand (``--to``) counts as promoted."""
    challenger = tracking.get_alias(client, uc.model.name, tracking.CHALLENGER)
    champion = tracking.get_alias(client, uc.model.name, tracking.CHAMPION)
    out = []
    for mv in tracking.versions(client, uc.model.name):
        v = str(mv.version)
        if (mv.tags or {}).get(canary.TAG) != canary.RUNNING or (challenger is not None and challenger.version == v
                                                                  and (champion is None or champion.version != v)):
            continue
        ref = tracking.ModelRef(uc.model.name, v, mv.run_id)
        if champion is not None and champion.version == v:
            tracking.tag_version(client, ref, {canary.TAG: canary.PROMOTED})
            continue
        tracking.tag_version(client, ref, {canary.TAG: canary.ENDED})
        d = Decision(uc.model.name, "canary", "ended", v, champion.version if champion else None, champion.version if champion else None,
                     reasons=[f"@challenger moved to version {challenger.version if challenger else None}: the canary of version {v} "
                              "no longer serves"], trigger=trigger)
        record(spark, uc, d)
        out.append(d)
    return out


def review_canary(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, trigger: str = "scheduled") -> list[Decision]:
    """The verdict on the running canary once enough of its dates are labelled (module doc)."""
    client = tracking.configure(env)
    out = _stale_canaries(client, uc, trigger, spark)
    c = canary.running(client, uc)
    if c is None:
        return out
    champion = tracking.get_alias(client, uc.model.name, tracking.CHAMPION)
    cs = uc.scoring.canary
    served = _scored_dates(spark, uc, tracking.CHALLENGER, c.version, served=True)
    ev = evidence(spark, uc, (tracking.CHALLENGER, c.version), (tracking.CHAMPION, None), served)
    if len(ev.dates) < cs.min_dates:
        log.info("canary of version %s: %d of %d labelled score dates measured (served on %d): no verdict yet",
                 c.version, len(ev.dates), cs.min_dates, len(served))
        return out
    ca, ka = ev.mean("a"), ev.mean("b")
    delta = ca - ka
    ok = delta >= -cs.max_auc_drop
    nums = (f"canary version {c.version} live ROC AUC {ca:.4f} vs champion {ka:.4f} (delta {delta:+.4f}, mean over "
            f"{len(ev.dates)} score dates {', '.join(map(str, ev.dates))}; n {sum(p['a_n'] for p in ev.per_date)} vs "
            f"{sum(p['b_n'] for p in ev.per_date)})")
    rule = f"promoted when not more than max_auc_drop {cs.max_auc_drop} below"
    d = Decision(uc.model.name, "canary", "promoted" if ok else "ended", c.version, champion.version,
                 c.version if ok else champion.version, holdout_date=ev.dates[-1], challenger_roc_auc=ca, champion_roc_auc=ka,
                 reasons=[nums, rule if ok else f"more than max_auc_drop {cs.max_auc_drop} below the champion: canary ended"],
                 trigger=trigger, details=ev.details(cs.model_dump()))
    if ok:
        why = tracking.usable(client, uc.model.name, c.version)
        if why is not None:  # an orphan is never promoted
            d.decision, d.champion_after = "ended", champion.version
            d.reasons.append(f"not promoted: {why}")
    if d.decision == "promoted":
        tracking.set_alias(client, uc.model.name, tracking.CHAMPION, c.version)
        start_watch(client, uc, champion.version)
        tracking.tag_version(client, c, {canary.TAG: canary.PROMOTED})
    else:
        tracking.tag_version(client, c, {canary.TAG: canary.ENDED})
        tracking.delete_alias(client, uc.model.name, tracking.CHALLENGER)
    record(spark, uc, d)
    return [*out, d]


def end_canary(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, reason: str, trigger: str = "manual") -> Decision:
    """End the running canary by hand: its version is tagged ended, ``@challenger`` removed."""
    if not reason.strip():
        raise PromotionError("--end-canary needs --reason: every decision is recorded with why")
    client = tracking.configure(env)
    c = canary.running(client, uc)
    if c is None:
        raise PromotionError(f"{uc.model.name} has no canary running (scoring.canary.share {uc.scoring.canary.share} in {uc.source_file})")
    champion = tracking.get_alias(client, uc.model.name, tracking.CHAMPION)
    tracking.tag_version(client, c, {canary.TAG: canary.ENDED})
    tracking.delete_alias(client, uc.model.name, tracking.CHALLENGER)
    d = Decision(uc.model.name, "canary", "ended", c.version, champion.version, champion.version, reasons=[reason], trigger=trigger)
    record(spark, uc, d)
    return d


# ------------------------------------------------------------------ the watch and the rollback


def start_watch(client, uc: UseCaseConfig, replaced: str | None) -> None:
    """After a promotion: the replaced champion is watched (alias ``previous``)."""
    if replaced is None:
        tracking.delete_alias(client, uc.model.name, tracking.PREVIOUS)
    else:
        tracking.set_alias(client, uc.model.name, tracking.PREVIOUS, replaced)


@dataclass
class Watch:
    champion: tracking.ModelRef
    previous: tracking.ModelRef
    since: datetime  # when the promotion was decided


def watching(spark: SparkSession, client, uc: UseCaseConfig) -> Watch | None:
    """The watch in force, or None; a ``previous`` alias that no longer describes the newest
    move of the champion (a forced promotion, a rollback by hand) is removed."""
    prev = tracking.get_alias(client, uc.model.name, tracking.PREVIOUS)
    if prev is None:
        return None
    champion = tracking.get_alias(client, uc.model.name, tracking.CHAMPION)
    last = None
    name = uc.table(uc.tables.model_decisions)
    if champion is not None and tables.exists(spark, name):
        last = (tables.read(spark, name)
                .where((F.col("model_name") == uc.model.name) & F.col("decision").isin("promoted", "forced", "rolled_back")
                       & (F.col("champion_before").isNull() | (F.col("champion_before") != F.col("champion_after"))))
                .orderBy(F.col("decided_at").desc()).first())
    if (champion is None or last is None or last.decision != "promoted" or last.champion_after != champion.version
            or last.champion_before != prev.version):
        log.info("%s@%s (version %s) no longer watches a promotion (the champion moved otherwise): removed",
                 uc.model.name, tracking.PREVIOUS, prev.version)
        tracking.delete_alias(client, uc.model.name, tracking.PREVIOUS)
        return None
    return Watch(champion, prev, last.decided_at)


def _watched_dates(spark: SparkSession, uc: UseCaseConfig, w: Watch) -> list[date]:
    """The score dates of this watch: scored by the predecessor (alias ``previous``) beside
    the new champion serving."""
    prev = _scored_dates(spark, uc, tracking.PREVIOUS, w.previous.version)
    return _scored_dates(spark, uc, tracking.CHAMPION, w.champion.version, served=True, among=prev)


def score_live(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, score_date: date | None = None) -> dict:
    """The live batch of a scheduled run: the champion (and, while a canary runs, the
    challenger on its share: ``lakeml.ml.score``), and while a promotion is watched and fewer
    than ``rollback.watch_dates`` dates have been, the predecessor in shadow (``previous``).
    Returns the champion's result, with the shadow's under ``previous``."""
    client = tracking.configure(env)
    todo = [(score_date, tracking.CHAMPION, None)]
    w = watching(spark, client, uc)
    if w is not None:
        d = score_date
        if d is None:
            from lakeml import features

            d = features.newest_snapshot(spark, uc)
        done = _watched_dates(spark, uc, w)
        if d in done or len(done) < uc.scoring.rollback.watch_dates:
            todo.append((d, tracking.PREVIOUS, None))
    out = score.run_many(spark, env, uc, todo)
    res = dict(out[0])
    if len(out) > 1:
        res["previous"] = {k: out[1][k] for k in ("model_version", "rows", "served")}
    return res


def review_watch(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, trigger: str = "scheduled") -> Decision | None:
    """The verdict on the watched promotion once enough of its dates are labelled (module doc)."""
    client = tracking.configure(env)
    w = watching(spark, client, uc)
    if w is None:
        return None
    rb = uc.scoring.rollback
    scored = _watched_dates(spark, uc, w)
    ev = evidence(spark, uc, (tracking.CHAMPION, w.champion.version), (tracking.PREVIOUS, w.previous.version), scored)
    if len(ev.dates) < rb.min_dates:
        log.info("watch of version %s (previous %s): %d of %d labelled dates measured: no verdict yet",
                 w.champion.version, w.previous.version, len(ev.dates), rb.min_dates)
        return None
    na, pa = ev.mean("a"), ev.mean("b")
    delta = na - pa
    complete = len(scored) >= rb.watch_dates and len(ev.dates) == len(scored)
    nums = (f"champion version {w.champion.version} live ROC AUC {na:.4f} vs its predecessor {w.previous.version} {pa:.4f} "
            f"(delta {delta:+.4f}, mean over {len(ev.dates)} score dates {', '.join(map(str, ev.dates))}; "
            f"n {sum(p['a_n'] for p in ev.per_date)} vs {sum(p['b_n'] for p in ev.per_date)})")
    fields = {"holdout_date": ev.dates[-1], "challenger_roc_auc": na, "champion_roc_auc": pa, "details": ev.details(rb.model_dump())}
    if delta >= -rb.max_auc_drop:
        if not complete:
            log.info("watch of version %s: holds so far (%s); %d of %d dates scored", w.champion.version, nums, len(scored), rb.watch_dates)
            return None
        d = Decision(uc.model.name, "rollback", "kept", w.champion.version, w.champion.version, w.champion.version,
                     reasons=[nums, f"not more than max_auc_drop {rb.max_auc_drop} below on every watched date: kept, watch ended"],
                     trigger=trigger, **fields)
        record(spark, uc, d)
        tracking.delete_alias(client, uc.model.name, tracking.PREVIOUS)
        return d
    why = f"{nums}: more than max_auc_drop {rb.max_auc_drop} below its predecessor"
    if not rb.automatic:
        return _advise(spark, client, uc, w, ev, why, complete, trigger, fields)
    try:
        d = promote.rollback(spark, env, uc, why, trigger=f"automatic ({trigger})", evidence=fields)
    except PromotionError as e:  # no recorded predecessor, or it is an orphan: never rolled back to
        d = Decision(uc.model.name, "rollback", "refused", w.champion.version, w.champion.version, w.champion.version,
                     reasons=[why, f"not rolled back: {e}"], trigger=f"automatic ({trigger})", **fields)
        record(spark, uc, d)
    tracking.delete_alias(client, uc.model.name, tracking.PREVIOUS)
    return d


def _advise(spark, client, uc, w: Watch, ev: Evidence, why: str, complete: bool, trigger: str, fields: dict) -> Decision | None:
    """``automatic: false``: the finding is recorded once per set of evidence dates."""
    name = uc.table(uc.tables.model_decisions)
    dates = ", ".join(map(str, ev.dates))
    if tables.exists(spark, name):
        seen = (tables.read(spark, name)
                .where((F.col("model_name") == uc.model.name) & (F.col("decision") == "rollback_advised")
                       & (F.col("challenger_version") == w.champion.version) & (F.col("champion_after") == w.champion.version)
                       & (F.col("decided_at") >= F.lit(w.since)))
                .select("details").collect())
        if any(json.loads(r.details or "{}").get("dates") == [str(d) for d in ev.dates] for r in seen):
            return None
    d = Decision(uc.model.name, "rollback", "rollback_advised", w.champion.version, w.champion.version, w.champion.version,
                 reasons=[why, f"rollback.automatic is false: roll back with jobs/promote.py --rollback (evidence dates {dates})"],
                 trigger=trigger, **fields)
    record(spark, uc, d)
    if complete:
        tracking.delete_alias(client, uc.model.name, tracking.PREVIOUS)
    return d


def review(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, trigger: str = "scheduled") -> list[Decision]:
    """The scheduled run's verdicts, after the monitor measured the labelled dates: the
    watched promotion first (a rollback changes the champion the canary is compared with on
    later dates), then the canary."""
    out = []
    w = review_watch(spark, env, uc, trigger)
    if w is not None:
        out.append(w)
    return out + review_canary(spark, env, uc, trigger)
