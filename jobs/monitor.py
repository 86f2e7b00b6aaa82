"""Monitor the scored model: feature and prediction drift of a score date, live performance of
every score date whose labels are now observed, and an HTML report.

    ./spark-submit.sh jobs/monitor.py [--date YYYY-MM-DD] [--alias champion] [--no-mlflow]

Default date: the newest scored date. Writes <database>.drift_metrics (replacing the rows of that
date and model version) and <database>.performance_metrics (replacing the rows of the labelled
score dates); the report goes to <data_dir>/reports/<usecase>/<score_date>/report.html and, as
artifacts, to an MLflow run in the use case's experiment.
"""

from lakeml import cli


def run(args):
    from lakeml import monitor
    from lakeml.core import session

    env, uc = cli.load(args)
    spark = session.get_spark(env, "lakeml-monitor")
    summary = monitor.run(spark, env, uc, score_date=args.date, alias=args.alias, to_mlflow=not args.no_mlflow)
    print(monitor.describe(summary))
    return None


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--date", type=cli.iso_date, help="score date to check for drift; default: the newest scored")
    p.add_argument("--alias", default="champion", help="model alias whose predictions are monitored (default: champion)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log the report to MLflow")
    cli.main(run, p.parse_args())
