"""The online scoring server: the registry's @champion in ONNX Runtime, features from the
online store, over HTTP (no JVM in the process).

    ./scripts/serve.sh [--env NAME] [--usecase NAME] [--port N] [--host H] [--access-log]

Default address: serving.host and serving.port of the env file (127.0.0.1:8000); --port 0
takes any free port (the startup line names it). A host that is not a loopback address needs
a bearer token (the environment variable serving.token_env, LAKEML_SERVE_TOKEN by default, or
serving.token_file). It takes no data-folder lock: the pipeline runs beside it, and the server
switches to a newly promoted model by itself. Stop it with Ctrl-C or SIGTERM (the answer log
is written before it exits).
"""

from lakeml.serving.app import keep_spark_out

keep_spark_out()  # before anything imports MLflow, which imports pyspark when it can

from lakeml import cli  # noqa: E402


def run(args):
    from lakeml.core.config import load_env, load_usecase
    from lakeml.serving import app

    env = load_env(args.conf_dir, args.env)
    uc = load_usecase(args.conf_dir, args.usecase, env)
    port = env.serving.port if args.port is None else args.port
    app.serve(env, uc, args.host or env.serving.host, port, access_log=args.access_log)


def port_number(s: str) -> int:
    import argparse

    if not s.isdigit() or int(s) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0-65535): {s!r}")
    return int(s)


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--host", help="address to listen on (default: serving.host of the env, 127.0.0.1)")
    p.add_argument("--port", type=port_number, help="port (default: serving.port of the env, 8000; 0: any free port)")
    p.add_argument("--access-log", action="store_true", help="log every request (to the log file)")
    cli.main(run, p.parse_args())
