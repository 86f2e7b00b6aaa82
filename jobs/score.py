"""Score one snapshot of the feature table with a registered model into the predictions table.

    ./spark-submit.sh jobs/score.py [--date YYYY-MM-DD] [--alias champion]

Default date: the newest snapshot. Re-scoring a date replaces that date's rows.
"""

from lakeml import cli


def run(args):
    from lakeml.core import session
    from lakeml.ml import score

    env, uc = cli.load(args)
    spark = session.get_spark(env, "lakeml-score")
    return score.run(spark, env, uc, score_date=args.date, alias=args.alias)


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--date", type=cli.iso_date, help="snapshot (as_of_date) to score; default: the newest")
    p.add_argument("--alias", default="champion", help="model alias to score with (default: champion)")
    cli.main(run, p.parse_args())
