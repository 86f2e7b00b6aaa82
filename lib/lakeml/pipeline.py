"""The stages in order, in one Spark session, and the summary a user reads at the end."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

from pyspark.sql import SparkSession

from lakeml import features, ingest, score, tables, tracking, train
from lakeml.config import EnvConfig, UsageError, UseCaseConfig

log = logging.getLogger(__name__)

STAGES = ["ingest", "features", "train", "score"]


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


def run(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig, stages: list[str], score_date=None) -> dict:
    summary: dict = {"usecase": uc.name, "env": env.name, "stages": {}}
    for stage in stages:
        t0 = time.time()
        log.info("stage %s ...", stage)
        if stage == "ingest":
            generated = _demo_data_if_new(spark, env, uc)
            if generated:
                summary["generated"] = generated
            out = [asdict(r) for r in ingest.ingest(spark, env, uc)]
        elif stage == "features":
            out = features.run(spark, uc)
            out["as_of_dates"] = [str(d) for d in out["as_of_dates"]]
        elif stage == "train":
            r = train.run(spark, env, uc)
            out = {
                "model": r.model.name,
                "version": r.model.version,
                "run_id": r.model.run_id,
                "became_champion": r.became_champion,
                "threshold": round(r.threshold, 4),
                "test_as_of": str(r.test_date),
                "metrics": {k: round(v, 4) for k, v in r.metrics.items()},
            }
        else:
            out = score.run(spark, env, uc, score_date)
        summary["stages"][stage] = {"seconds": round(time.time() - t0, 1), **({"result": out} if out is not None else {})}
    summary["tables"] = table_summary(spark, uc)
    client = tracking.configure(env)
    for alias in (tracking.CHAMPION, tracking.CHALLENGER):
        ref = tracking.get_alias(client, uc.model.name, alias)
        summary[f"{alias}_version"] = ref.version if ref else None
    return summary


def _demo_data_if_new(spark: SparkSession, env: EnvConfig, uc: UseCaseConfig) -> dict | None:
    """A brand-new lake (nothing ever ingested) with an empty landing zone gets the use
    case's demo data set first, as ``jobs/generate.py`` would write it; any landed batch or
    any earlier ingest turns this off."""
    from lakeml import generate, landing

    if uc.generator is None or spark.catalog.tableExists(uc.table(uc.tables.ingest_log)):
        return None
    if landing.list_batches(spark, env.landing_dir):
        return None
    log.warning("brand-new lake, empty landing zone %s: generating the demo data set first (jobs/generate.py)", env.landing_dir)
    return generate.run(spark, uc.generator, env.landing_dir)["rows"]


def table_summary(spark: SparkSession, uc: UseCaseConfig) -> dict:
    names = [uc.table(s.table) for s in uc.sources.values()]
    names += [uc.table(t) for t in (uc.tables.quarantine, uc.tables.ingest_log, uc.tables.features, uc.tables.labels, uc.tables.predictions)]
    return tables.row_counts(spark, names)


def describe(summary: dict, uc: UseCaseConfig) -> str:
    """What was built and the SQL to look at it."""
    lines = ["", f"== {uc.name}: what is in the warehouse now", ""]
    for t, n in summary["tables"].items():
        lines.append(f"  {t:<40} {'-' if n is None else f'{n:,} rows'}")
    lines.append("")
    lines.append(f"  model {uc.model.name}: champion = version {summary.get('champion_version')}, challenger = version {summary.get('challenger_version')}")
    tr = summary["stages"].get("train", {}).get("result")
    if tr:
        m = tr["metrics"]
        lines.append(
            f"  trained version {tr['version']}: test ROC AUC {m['roc_auc']}, PR AUC {m['pr_auc']}, "
            f"log loss {m['log_loss']}, F1 {m['f1']} at {tr['threshold']}, top-decile lift {m['lift_top_decile']}"
        )
    pt = uc.table(uc.tables.predictions)
    lines += [
        "",
        "Look at it with ./scripts/sql.sh -e \"...\", for example:",
        f"  SELECT score_date, model_version, count(*) AS customers, round(avg(churn_probability), 4) AS avg_p FROM {pt} GROUP BY 1, 2 ORDER BY 1",
        f"  SELECT customer_id, churn_probability FROM {pt} WHERE score_date = (SELECT max(score_date) FROM {pt}) ORDER BY churn_probability DESC LIMIT 20",
        f"  SELECT source, reason, count(*) FROM {uc.table(uc.tables.quarantine)} GROUP BY 1, 2 ORDER BY 3 DESC",
        "",
    ]
    return "\n".join(lines)
