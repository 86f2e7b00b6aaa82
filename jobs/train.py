"""Train, evaluate and register the model; it becomes `challenger` (and `champion` if the
model has none yet).

    ./spark-submit.sh jobs/train.py
"""

from lakeml import cli


def run(args):
    from lakeml.core import session
    from lakeml.ml import train

    env, uc = cli.load(args)
    spark = session.get_spark(env, "lakeml-train")
    r = train.run(spark, env, uc)
    return {"model": r.model.name, "version": r.model.version, "run_id": r.model.run_id, "became_champion": r.became_champion,
            "threshold": r.threshold, "test_as_of": r.test_date, "metrics": r.metrics, "best_params": r.best_params}


if __name__ == "__main__":
    cli.main(run, cli.parser(__doc__).parse_args())
