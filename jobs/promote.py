"""Move the champion by hand: roll back, force a version, or end a canary. All are recorded.

    ./spark-submit.sh jobs/promote.py --rollback [--reason TEXT]
    ./spark-submit.sh jobs/promote.py --to VERSION --reason TEXT
    ./spark-submit.sh jobs/promote.py --end-canary --reason TEXT

--rollback gives the champion alias back to the version the current champion replaced (from
<db>.model_decisions). --to makes VERSION the champion (a version in canary made champion
this way ends its canary as promoted). --end-canary stops the running canary: the champion
serves every entity again from the next scoring on, the challenger alias is removed. All
append to model_decisions and tag the MLflow model version.
"""

from lakeml import cli


def run(args):
    from dataclasses import asdict

    from lakeml.core import session
    from lakeml.core.errors import UsageError
    from lakeml.lifecycle import promote, release

    env, uc = cli.load(args)
    if [bool(args.rollback), bool(args.to), bool(args.end_canary)].count(True) != 1:
        raise UsageError("give exactly one of --rollback, --to VERSION or --end-canary")
    spark = session.get_spark(env, "lakeml-promote")
    if args.rollback:
        d = promote.rollback(spark, env, uc, args.reason or "")
    elif args.end_canary:
        d = release.end_canary(spark, env, uc, args.reason or "")
    else:
        d = promote.force(spark, env, uc, args.to, args.reason or "")
    return {k: v for k, v in asdict(d).items() if k != "details"}


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--rollback", action="store_true", help="restore the previous champion")
    p.add_argument("--to", metavar="VERSION", help="make this model version the champion")
    p.add_argument("--end-canary", action="store_true", help="end the running canary (the champion serves everyone again)")
    p.add_argument("--reason", help="why (required with --to and --end-canary)")
    cli.main(run, p.parse_args())
