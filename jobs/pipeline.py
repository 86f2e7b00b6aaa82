"""Run ingest -> features -> train -> score in one Spark session and print a summary.

    ./spark-submit.sh jobs/pipeline.py [--from STAGE | --only STAGE[,STAGE]] [--score-date YYYY-MM-DD]

Stages: ingest, features, train, score.
"""

from lakeml import cli


def run(args):
    from lakeml import pipeline, session

    env, uc = cli.load(args)
    stages = pipeline.select_stages(args.from_stage, args.only.split(",") if args.only else None)
    spark = session.get_spark(env, "lakeml-pipeline")
    summary = pipeline.run(spark, env, uc, stages, score_date=args.score_date)
    print(pipeline.describe(summary, uc))
    return None


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--from", dest="from_stage", help="start at this stage")
    p.add_argument("--only", help="comma-separated stages to run")
    p.add_argument("--score-date", type=cli.iso_date, help="snapshot to score (default: the newest)")
    cli.main(run, p.parse_args())
