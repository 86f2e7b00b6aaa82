"""The stages in order, in one Spark session, and the summary a user reads at the end."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from datetime import date

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakeml import features
from lakeml.core import tables, tracking
from lakeml.core.config import EnvConfig, UseCaseConfig
from lakeml.core.errors import UsageError
from lakeml.features import job as features_job
from lakeml.lake import ingest
from lakeml.ml import score, train

log = logging.getLogger(__name__)

STAGES = ["ingest", "quality", "features", "materialize", "train", "validate", "score", "monitor"]


def check_conf(spark: SparkSession, uc: UseCaseConfig, stages: list[str] | None = None) -> None:
    """What conf validation cannot check without a Spark session, checked before any data
    is read: the SQL files parse, the model's parameters are accepted by the classifier."""
    if stages is None or "features" in stages:
        features.check_sql(spark, uc)
    if stages is None or "train" in stages:
        train.check_model(uc.model, uc.label.column, uc.source_file)


def select_stages(from_stage: str | None = None, only: list[str] | None = None) -> list[str]:
    if only:
        unknown = [s for s in only if s not in STAGES]
        if unknown:
            raise UsageError(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
        return [s for s in STAGES if s in only]
    if from_stage:
        if from_stage not in STAGES:
            raise UsageError(f"unknown stage {from_stage!r}; stages: {', '.join(STAGES)}")
        return STAGES[STAGES.index(from_stage) :]
    return list(STAGES)


def _bronze_and_feature_checks(uc: UseCaseConfig) -> tuple[list[str], list[str]]:
    bronze = {s.table for s in uc.sources.values()}
    checked = list(uc.quality.checks)
    return [t for t in checked if t in bronze], [t for t in checked if t not in bronze]


def _train_result(r) -> dict:
    return {
        "model": r.model.name,
        "version": r.model.version,
        "run_id": r.model.run_id,
        "became_champion": r.became_champion,
        "threshold": round(r.threshold, 4),
        "test_as_of": str(r.test_date),
        "metrics": {k: round(v, 4) for k, v in r.metrics.items()},
    }


def _decision(d) -> dict:
    return {k: v for k, v in asdict(d).items() if k not in ("details", "decided_at")}


class _Run:
    """Runs stages in one session, timing each into the summary."""

    def __init__(self, spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, full: bool = False, leakage_check: bool = True):
        self.spark, self.env, self.uc, self.full, self.leakage_check = spark, env, uc, full, leakage_check
        self.summary: dict = {"usecase": uc.name, "env": env.name, "stages": {}}
        # what this run brought: the batches it ingested and the snapshots it computed (None:
        # the stage did not run, so quality checks each table's newest batch)
        self.ingested: list | None = None
        self.computed: list | None = None

    def stage(self, name: str, fn, *args, **kwargs):
        t0 = time.time()
        log.info("stage %s ...", name)
        out = fn(*args, **kwargs)
        key, n = name, 2
        while key in self.summary["stages"]:
            key, n = f"{name}#{n}", n + 1
        self.summary["stages"][key] = {"seconds": round(time.time() - t0, 1), **({"result": out} if out is not None else {})}
        return out

    # the stages -------------------------------------------------------------------
    def ingest(self):
        generated = _demo_data_if_new(self.spark, self.env, self.uc)
        if generated:
            self.summary["generated"] = generated
        reports = ingest.ingest(self.spark, self.env, self.uc)
        if reports.refused:
            self.summary["refused_batches"] = [{"folder": r.folder, "reason": r.reason} for r in reports.refused]
        self.ingested = sorted({d for r in reports for d in r.batch_dates})
        if self.full:  # a full recompute starts from bronze: the silver tables too
            from lakeml.lake import silver

            for source in self.uc.sources:
                silver.rebuild(self.spark, self.uc, source)
        return [asdict(r) for r in reports]

    def quality(self, which: str):
        """The checks of the bronze tables on every batch this run ingested, or of the feature
        table on every snapshot it computed (a bad batch in the middle of a backfill is
        checked too); each table's newest batch when that stage did not run."""
        from lakeml.lake import quality

        bronze, other = _bronze_and_feature_checks(self.uc)
        only = [t for t in (bronze if which == "bronze" else other) if tables.exists(self.spark, self.uc.table(t))]
        dates = self.ingested if which == "bronze" else self.computed
        if not only or dates == []:
            return None
        return quality.run(self.spark, self.uc, batch_dates=dates, only=only)

    def features(self):
        out = features_job.run(self.spark, self.uc, backfill=(None, None) if self.full else None, leakage_check=self.leakage_check)
        self.computed = [date.fromisoformat(d) for d in out["as_of_dates"]]
        return out

    def materialize(self):
        """The newest feature snapshot into the online store the scoring server reads
        (lakeml.serving.materialize); nothing when the store holds it already."""
        from lakeml.serving import answer_log, materialize

        try:  # the server's answers, queryable by name
            answer_log.register(self.spark, self.env, self.uc)
        except OSError as e:  # delta-rs cannot reach the warehouse: the batch side goes on, the line says why
            log.warning("the scoring server's answer log %s is not registered: %s", self.uc.table(self.uc.tables.online_predictions),
                        str(e).splitlines()[0] if str(e) else type(e).__name__)
        return materialize.run(self.spark, self.env, self.uc)

    def rescore(self):
        """Score again, with the model version that scored it, every earlier score date whose
        features this run recomputed (late rows changed them): predictions stay those of the
        features the table holds."""
        pt = self.uc.table(self.uc.tables.predictions)
        newest = max(self.computed) if self.computed else None
        redo = [d for d in (self.computed or []) if d != newest]
        if not redo or not tables.exists(self.spark, pt):
            return None
        served = (tables.read(self.spark, pt).where(F.col("score_date").isin(redo))
                  .select("score_date", "model_alias", "model_version").distinct().collect())
        if served:  # one write for them all
            score.run_many(self.spark, self.env, self.uc,
                           [(r.score_date, r.model_alias, r.model_version)
                            for r in sorted(served, key=lambda r: (r.score_date, r.model_alias))])
        return {"rescored": sorted({str(r.score_date) for r in served})} if served else None

    def train(self):
        return _train_result(train.run(self.spark, self.env, self.uc))

    def validate(self, trigger: str = "pipeline"):
        from lakeml.lifecycle import gate

        return _decision(gate.validate(self.spark, self.env, self.uc, trigger=trigger))

    def score(self, score_date=None, alias: str = tracking.CHAMPION):
        return score.run(self.spark, self.env, self.uc, score_date, alias=alias)

    def monitor(self, score_date=None):
        from lakeml import monitor

        out = monitor.run(self.spark, self.env, self.uc, score_date)
        self.summary["monitor_text"] = monitor.describe(out)
        return out


def run(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, stages: list[str], score_date=None, full: bool = False,
        leakage_check: bool = True) -> dict:
    """The stages in order: ingest -> quality (bronze) -> features -> quality (features) ->
    train -> validate -> score -> monitor. Features are incremental unless ``full``."""
    check_conf(spark, uc, stages)
    r = _Run(spark, env, uc, full=full, leakage_check=leakage_check)
    for stage in stages:
        if stage == "ingest":
            r.stage("ingest", r.ingest)
            if "quality" in stages:
                r.stage("quality", r.quality, "bronze")
        elif stage == "quality":
            if "ingest" not in stages:
                r.stage("quality", r.quality, "bronze")
        elif stage == "features":
            r.stage("features", r.features)
            if "quality" in stages:
                r.stage("quality", r.quality, "features")
            if "score" in stages:
                r.stage("rescore", r.rescore)
        elif stage == "materialize":
            r.stage("materialize", r.materialize)
        elif stage == "train":
            r.stage("train", r.train)
        elif stage == "validate":
            r.stage("validate", r.validate)
        elif stage == "score":
            r.stage("score", r.score, score_date)
        elif stage == "monitor":
            r.stage("monitor", r.monitor, score_date)
    return _finish(r)


def run_scheduled(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, full: bool = False, leakage_check: bool = True) -> dict:
    """The daily run a scheduler calls: ingest -> quality -> features -> score -> monitor ->
    release (the verdicts on a watched promotion and on a running canary, from the live
    performance the monitor just measured: ``lakeml.lifecycle.release``; the live batch is
    scored again when they changed what serves), then the retraining policy; when it fires:
    train -> (shadow score) -> validate, and the live batch is scored again if the champion
    changed or a canary started. The live batch is the champion's, with the canary's share
    scored by the challenger while a canary runs, and the replaced champion in shadow
    (``previous``) while a promotion is watched. A retrain that fails its AUC floor while a
    champion serves is recorded (action ``train``, decision ``rejected``) and the run ends
    normally. Every trigger and decision is recorded in the model_decisions table."""
    from lakeml.lifecycle import decisions, policy, release

    check_conf(spark, uc)
    r = _Run(spark, env, uc, full=full, leakage_check=leakage_check)
    r.stage("ingest", r.ingest)
    r.stage("quality", r.quality, "bronze")
    r.stage("features", r.features)
    r.stage("quality", r.quality, "features")
    r.stage("rescore", r.rescore)
    r.stage("materialize", r.materialize)
    client = tracking.configure(env)
    has_champion = tracking.get_alias(client, uc.model.name, tracking.CHAMPION) is not None
    if has_champion:
        r.stage("score", release.score_live, spark, env, uc)
        r.stage("monitor", r.monitor)
        verdicts = r.stage("release", lambda: [_decision(x) for x in release.review(spark, env, uc)])
        if any(v["decision"] in release.CHANGES_SERVING for v in verdicts):
            r.stage("score", release.score_live, spark, env, uc)
            r.stage("monitor", r.monitor)
    d = r.stage("policy", lambda: asdict(policy.decide(spark, env, uc, features.newest_snapshot(spark, uc))))
    decisions.record(spark, uc, decisions.Decision(
        uc.model.name, "policy", "retrain" if d["retrain"] else "hold", None, d["champion_version"], d["champion_version"],
        holdout_date=d["score_date"], reasons=d["reasons"], trigger="scheduled", details=d["evidence"],
    ))
    if d["retrain"]:
        trigger = "policy: " + "; ".join(d["reasons"])
        try:
            trained = r.stage("train", r.train)
        except train.TrainingError as e:
            if not has_champion:
                raise  # nothing serves yet: the run cannot end well
            # the champion keeps serving: the rejected retrain is a decision, not a crash of the daily run
            rejected = decisions.Decision(uc.model.name, "train", "rejected", None, d["champion_version"], d["champion_version"],
                                          holdout_date=d["score_date"], reasons=[str(e)], trigger=trigger)
            decisions.record(spark, uc, rejected)
            r.summary["stages"]["train"] = {"rejected": str(e)}
            log.warning("retraining rejected, champion %s keeps serving: %s", d["champion_version"], e)
            return _finish(r)
        champion = tracking.get_alias(client, uc.model.name, tracking.CHAMPION)
        if uc.validation.shadow and champion is not None and champion.version != trained["version"]:
            r.stage("shadow", r.score, None, tracking.CHALLENGER)
        dec = r.stage("validate", r.validate, trigger)
        if dec["decision"] in ("promoted", "started") or not has_champion:
            r.stage("score", release.score_live, spark, env, uc)
            r.stage("monitor", r.monitor)
    return _finish(r)


def _finish(r: _Run) -> dict:
    r.summary["tables"] = table_summary(r.spark, r.uc)
    client = tracking.configure(r.env)
    for alias in (tracking.CHAMPION, tracking.CHALLENGER):
        ref = tracking.get_alias(client, r.uc.model.name, alias)
        r.summary[f"{alias}_version"] = ref.version if ref else None
    return r.summary


def _demo_data_if_new(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig) -> dict | None:
    """A brand-new lake (nothing ever ingested) with an empty landing zone gets the use
    case's demo data set first, as ``jobs/generate.py`` would write it, if the use case has
    a demo maker; any landed batch or any earlier ingest turns this off."""
    from lakeml.demo import maker
    from lakeml.lake import landing

    zone = env.landing_zone(uc.name)
    if uc.demo is None or tables.exists(spark, uc.table(uc.tables.ingest_log)):
        return None
    if landing.list_batches(spark, zone):
        return None
    log.warning("brand-new lake, empty landing zone %s: writing the demo data of %s first (jobs/generate.py)", zone, uc.name)
    return maker.run(spark, uc, zone)["rows"]


def table_summary(spark: SparkSession, uc: UseCaseConfig) -> dict:
    names = [uc.table(s.table) for s in uc.sources.values()] + [uc.silver(s) for s in uc.sources]
    t = uc.tables
    names += [uc.table(x) for x in (t.quarantine, t.ingest_log, t.dq_results, t.features, t.labels, t.predictions,
                                    t.model_decisions, t.drift_metrics, t.drift_reference, t.performance_metrics)]
    return tables.row_counts(spark, names)  # counts from the Delta log: no table is read


def describe(summary: dict, uc: UseCaseConfig) -> str:
    """What was built and the SQL to look at it."""
    lines = ["", f"== {uc.name}: what is in the warehouse now", ""]
    for t, n in summary["tables"].items():
        lines.append(f"  {t:<40} {'-' if n is None else f'{n:,} rows'}")
    lines.append("")
    lines.append(f"  model {uc.model.name}: champion = version {summary.get('champion_version')}, "
                 f"challenger = version {summary.get('challenger_version')}")
    for key, st in summary["stages"].items():
        if key.startswith("validate") and st.get("result"):
            v = st["result"]
            if v.get("action") == "canary":
                lines.append(f"  validation: challenger {v['challenger_version']} passed and starts a canary "
                             f"(share {uc.scoring.canary.share}; champion {v['champion_before']} serves the rest): "
                             f"{'; '.join(v['reasons'])}")
            else:
                lines.append(f"  validation: challenger {v['challenger_version']} {v['decision']} "
                             f"(champion {v['champion_before']} -> {v['champion_after']}): {'; '.join(v['reasons'])}")
        if key.startswith("release") and st.get("result"):
            for v in st["result"]:
                lines.append(f"  release: {v['action']} {v['decision']} (version {v['challenger_version']}; champion "
                             f"{v['champion_before']} -> {v['champion_after']}): {'; '.join(v['reasons'])}")
        if key.startswith("score") and (st.get("result") or {}).get("canary"):
            c = st["result"]["canary"]
            lines.append(f"  canary: version {c['version']} served {c['rows']:,} rows (share {c['share']}) of {st['result']['score_date']}")
        if key == "policy" and st.get("result"):
            p = st["result"]
            lines.append(f"  retraining policy: {'RETRAIN' if p['retrain'] else 'hold'} ({'; '.join(p['reasons'])})")
        if key.startswith("quality") and st.get("result"):
            for w in st["result"].get("warnings", []):
                lines.append(f"  data quality warning: {w}")
    for key, st in summary["stages"].items():
        if key.startswith("materialize") and st.get("result"):
            m = st["result"]
            lines.append(f"  online store ({m['store']}): {m['rows']:,} rows of {m['as_of_date']} "
                         f"(feature table version {m['feature_version']}), for ./scripts/serve.sh")
    for r in summary.get("refused_batches", []):
        lines.append(f"  batch folder refused: {r['folder']}: {r['reason']}")
    rejected = summary["stages"].get("train", {}).get("rejected")
    if rejected:
        lines.append(f"  retraining rejected (the champion keeps serving): {rejected}")
    tr = summary["stages"].get("train", {}).get("result")
    if tr:
        m = tr["metrics"]
        lines.append(
            f"  trained version {tr['version']}: test ROC AUC {m['roc_auc']}, PR AUC {m['pr_auc']}, "
            f"log loss {m['log_loss']}, F1 {m['f1']} at {tr['threshold']}, top-decile lift {m['lift_top_decile']}"
        )
    if summary.get("monitor_text"):
        lines.append(summary["monitor_text"])
    pt, e, p = uc.table(uc.tables.predictions), uc.entity, uc.probability
    where = "" if summary.get("env", "embedded") == "embedded" else f" --env {summary['env']}"
    lines += [
        "",
        f"Look at it with ./scripts/sql.sh{where} -e \"...\", for example:",
        f"  SELECT score_date, model_alias, model_version, count(*) AS rows, round(avg({p}), 4) AS avg_p "
        f"FROM {pt} GROUP BY 1, 2, 3 ORDER BY 1",
        f"  SELECT {e}, {p}, model_alias FROM {pt} WHERE served AND score_date = (SELECT max(score_date) FROM {pt}) "
        f"ORDER BY {p} DESC LIMIT 20",
        f"  SELECT source, reason, count(*) FROM {uc.table(uc.tables.quarantine)} GROUP BY 1, 2 ORDER BY 3 DESC",
        "  SELECT decided_at, action, decision, challenger_version, champion_before, champion_after, reasons "
        f"FROM {uc.table(uc.tables.model_decisions)} ORDER BY decided_at",
        "",
    ]
    return "\n".join(lines)
