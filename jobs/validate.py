"""Compare the challenger with the champion on the newest labelled snapshot; promote or refuse.

    ./spark-submit.sh jobs/validate.py

Thresholds: `validation` in the use case. The decision goes to <db>.model_decisions and is
tagged on both MLflow model versions.
"""

from lakeml import cli


def run(args):
    from dataclasses import asdict

    from lakeml.core import session
    from lakeml.lifecycle import gate


    env, uc = cli.load(args)
    spark = session.get_spark(env, "lakeml-validate")
    d = gate.validate(spark, env, uc)
    return {k: v for k, v in asdict(d).items() if k != "details"}


if __name__ == "__main__":
    cli.main(run, cli.parser(__doc__).parse_args())
