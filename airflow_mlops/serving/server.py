"""Start the seldon-core model server for one local deployment (runs in the ``serving`` runtime).

    python -m airflow_mlops.serving.server DEPLOYMENT_DIR --host 127.0.0.1 --port 9000 \\
        [--prediction-log DIR] [--workers 1] [--threads 4]

``seldon-core-microservice`` always binds ``0.0.0.0`` and also starts a gRPC server that
loads the model a second time. This builds the same Flask app with seldon-core's own
factory (:func:`seldon_core.wrapper.get_rest_microservice`) and runs it with seldon-core's
gunicorn application, bound to ``--host`` (127.0.0.1 by default), with the Prometheus
metrics on the same port (``/metrics``) and no gRPC. Endpoints: ``/api/v1.0/predictions``,
``/health/ping``, ``/health/status`` (the served version), ``/metrics``.

In a container (the project's model-server image, ``docker/serving/Dockerfile``) there is no
deployment directory: ``--model-uri`` (default ``$MODEL_URI``, as the SeldonDeployment sets it)
and ``--model-version`` (``$MODEL_VERSION``) name the SavedModel, local or on object storage
TensorFlow reads (``gs://``, ``s3://`` with its filesystem plugins); ``--prediction-log``
(``$PREDICTION_LOG``) and ``--name`` (``$DEPLOYMENT_NAME``, else Seldon's
``$SELDON_DEPLOYMENT_ID``) are what monitoring reads there.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from functools import partial


def fixed_model_dir(model_uri: str, version: int) -> str:
    """A deployment directory whose ``current.json`` names one model (the container case)."""
    import json
    import tempfile

    directory = tempfile.mkdtemp(prefix="model-")
    with open(os.path.join(directory, "current.json"), "w") as handle:
        json.dump({"version": version, "path": model_uri}, handle)
    return directory


def build_app(user_object, seldon_metrics):
    from flask import Response, request
    from seldon_core.wrapper import get_rest_microservice

    app = get_rest_microservice(user_object, seldon_metrics)

    def metrics():
        body, mimetype = seldon_metrics.generate_metrics()
        return Response(body, mimetype=mimetype)

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])

    @app.after_request
    def count_errors(response):  # failed prediction requests, by status, as mlops_request_errors_total
        if response.status_code >= 400 and request.path.startswith("/api/"):
            seldon_metrics.update([{"type": "COUNTER", "key": "mlops_request_errors", "value": 1,
                                    "tags": {"status": str(response.status_code)}}], "predict")
        return response

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("deployment_dir", nargs="?", default="",
                        help="the deployment's directory (holds current.json); empty: use --model-uri")
    parser.add_argument("--model-uri", default=os.environ.get("MODEL_URI", ""))
    parser.add_argument("--model-version", type=int, default=int(os.environ.get("MODEL_VERSION") or 1))
    parser.add_argument("--name", default=os.environ.get("DEPLOYMENT_NAME") or os.environ.get("SELDON_DEPLOYMENT_ID", ""))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PREDICTIVE_UNIT_HTTP_SERVICE_PORT") or 9000))
    parser.add_argument("--prediction-log", default=os.environ.get("PREDICTION_LOG", ""))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4, help=">1 keeps HTTP connections alive")
    parser.add_argument("--max-rows", type=int, default=10_000)
    args = parser.parse_args(argv)
    if not args.deployment_dir:
        if not args.model_uri:
            parser.error("give a deployment directory, or --model-uri (or MODEL_URI)")
        args.deployment_dir = fixed_model_dir(args.model_uri, args.model_version)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
                        force=True)
    from seldon_core.gunicorn_utils import UserModelApplication, post_worker_init, worker_exit
    from seldon_core.metrics import SeldonMetrics

    from airflow_mlops.serving.model import TfxSavedModel

    user_object = TfxSavedModel(args.deployment_dir, deployment=args.name, prediction_log=args.prediction_log,
                                max_rows=args.max_rows)
    seldon_metrics = SeldonMetrics(worker_id_func=os.getpid)
    app = build_app(user_object, seldon_metrics)
    options = {
        "bind": f"{args.host}:{args.port}",
        "workers": args.workers,
        "threads": args.threads,
        "timeout": 300,
        "keepalive": 5,
        "loglevel": "info",
        "accesslog": None,
        "post_worker_init": post_worker_init,
        "worker_exit": partial(worker_exit, seldon_metrics=seldon_metrics),
    }
    logging.getLogger("airflow_mlops.serving").info(
        "model server for %s on http://%s:%s (pid %s)", args.deployment_dir, args.host, args.port, os.getpid())
    UserModelApplication(app, user_object, False, None, "airflow_mlops.serving.model.TfxSavedModel",
                         options=options).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
