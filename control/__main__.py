"""python -m control: serve the control room on 127.0.0.1 and print its address."""

import argparse
import os
import sys
from pathlib import Path

import uvicorn

DEFAULT_PORT = 8090


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m control", description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument(
        "--state-dir", type=Path, default=Path(os.environ.get("DEPLOY_STATE_DIR", "state/cluster")),
        help="the cluster's folder, as deploy's --state-dir (default: state/cluster, or $DEPLOY_STATE_DIR)")
    parser.add_argument("--runs", type=Path, default=Path("results/control"),
                        help="where each run's history goes (default: results/control)")
    args = parser.parse_args(argv)
    os.environ["DJANGO_SETTINGS_MODULE"] = "control.settings"
    os.environ["CONTROL_STATE_DIR"] = str(args.state_dir)
    os.environ["CONTROL_RUNS_DIR"] = str(args.runs)

    from django.core.asgi import get_asgi_application

    from control import views

    application = get_asgi_application()
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=args.port, log_level="warning",
                                           lifespan="off", timeout_graceful_shutdown=2))
    print(f"control room: http://127.0.0.1:{args.port}/", flush=True)
    try:
        server.run()
    finally:
        views.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
