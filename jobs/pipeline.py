"""Run the stages in order in one Spark session (ingest -> quality -> features -> train ->
validate -> score -> monitor) and print what is in the warehouse now.

    ./spark-submit.sh jobs/pipeline.py [--from STAGE | --only STAGE[,STAGE]] [--score-date YYYY-MM-DD]
    ./spark-submit.sh jobs/pipeline.py --scheduled [--full]
    (both take --skip-leakage-check: see jobs/features.py)

Stages: ingest, quality, features, train, validate, score, monitor.
--scheduled is the daily run a scheduler calls: ingest -> quality -> features -> score ->
monitor, then the retraining policy; when it fires: train -> shadow score -> validate ->
promote or refuse. Every trigger and decision lands in <db>.model_decisions.
Features are incremental (what the new batches bring); --full recomputes every snapshot.
"""

from lakeml import cli


def run(args):
    from lakeml import pipeline
    from lakeml.core import session
    from lakeml.core.errors import UsageError

    env, uc = cli.load(args)

    if args.scheduled and (args.from_stage or args.only or args.score_date):
        raise UsageError("--scheduled runs its own stages: it takes no --from, --only or --score-date")
    stages = pipeline.select_stages(args.from_stage, args.only.split(",") if args.only else None)
    spark = session.get_spark(env, "lakeml-pipeline")
    if args.scheduled:
        summary = pipeline.run_scheduled(spark, env, uc, full=args.full, leakage_check=not args.skip_leakage_check)
    else:
        summary = pipeline.run(spark, env, uc, stages, score_date=args.score_date, full=args.full,
                               leakage_check=not args.skip_leakage_check)
    print(pipeline.describe(summary, uc))
    return None


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--from", dest="from_stage", help="start at this stage")
    p.add_argument("--only", help="comma-separated stages to run")
    p.add_argument("--score-date", type=cli.iso_date, help="snapshot to score (default: the newest)")
    p.add_argument("--scheduled", action="store_true", help="the daily run: monitor, and retrain when the policy fires")
    p.add_argument("--full", action="store_true", help="recompute every feature snapshot instead of what is new")
    p.add_argument("--skip-leakage-check", action="store_true", help="see jobs/features.py")
    cli.main(run, p.parse_args())
