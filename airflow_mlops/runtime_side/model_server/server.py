"""Start the seldon-core model server for one local deployment (runs in the ``serving`` runtime).

    python -m airflow_mlops.runtime_side.model_server.server DEPLOYMENT_DIR --host 127.0.0.1 --port 9000 \\
        [--prediction-log DIR] [--workers 1] [--threads 4]

``seldon-core-microservice`` always binds ``0.0.0.0`` and also starts a gRPC server that
loads the model a second time. This builds the same Flask app with seldon-core's own
factory (:func:`seldon_core.wrapper.get_rest_microservice`) and runs it with seldon-core's
gunicorn application behind :mod:`.front` (an asyncio layer on ``--host``, 127.0.0.1 by default,
that passes only whole requests to gunicorn on a Unix socket, so slow clients cannot take its
threads), with the Prometheus metrics on the same port (``/metrics``) and no gRPC. Endpoints: ``/api/v1.0/predictions``,
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

from airflow_mlops.runtime_side.model_server.front import FrontLimits

FRONT_DEFAULTS = FrontLimits()


def fixed_model_dir(model_uri: str, version: int) -> str:
    """A deployment directory whose ``current.json`` names one model (the container case)."""
    import json
    import tempfile

    directory = tempfile.mkdtemp(prefix="model-")
    with open(os.path.join(directory, "current.json"), "w") as handle:
        json.dump({"version": version, "path": model_uri}, handle)
    return directory


PREDICTION_PATHS = ("/predict", "/api/v1.0/predictions", "/api/v0.1/predictions")
#: Seldon's feedback endpoints (ground truth of an earlier prediction, by its request id).
FEEDBACK_PATHS = ("/send-feedback", "/api/v1.0/feedback", "/api/v0.1/feedback")


def json_too_deep(body: bytes) -> bool:
    """Whether a JSON body nests deeper than Python's parser can follow (a RecursionError in seldon-core)."""
    if body.count(b"[") + body.count(b"{") < 500:  # cheap: cannot be that deep
        return False
    import json

    try:
        json.loads(body)
    except RecursionError:
        return True
    except ValueError:
        return False  # not JSON at all: seldon-core says so
    return False


def _shown_path(path: str) -> str:
    """A request's path as an error message names it: whole when short, else cut (see :func:`quoted`)."""
    from airflow_mlops.shared import quoted

    return path if len(path) <= 120 else quoted(path, 120)


def _error(status: int, reason: str, message: str):
    """An error answer in seldon-core's shape (``status.info`` holds the message)."""
    from flask import jsonify

    response = jsonify({"status": {"code": -1, "info": message, "reason": reason, "status": 1}})
    response.status_code = status
    return response


def set_metric_labels(deployment: str) -> dict[str, str]:
    """The labels of every ``/metrics`` series: this deployment and this server, not seldon-core's
    ``NOT_IMPLEMENTED`` placeholders (read from a SeldonDeployment's environment, absent here).
    ``model_version`` is not a server-wide label: the served version changes without a restart, so
    each series of the provider's own metrics carries the version that answered."""
    import seldon_core.metrics as seldon_metrics

    import airflow_mlops

    name = deployment or "local"
    labels = seldon_metrics.DEFAULT_LABELS
    for key in ("deployment_name", "seldon_deployment_name", "model_name", "predictor_name"):
        if labels.get(key, "NOT_IMPLEMENTED").startswith("NOT_IMPLEMENTED"):
            labels[key] = name
    for key, value in (("model_image", "airflow-mlops-serving"), ("image_name", "airflow-mlops-serving"),
                       ("image_version", airflow_mlops.__version__),
                       ("predictor_version", airflow_mlops.__version__)):
        if labels.get(key, "NOT_IMPLEMENTED").startswith("NOT_IMPLEMENTED"):
            labels[key] = value
    labels.pop("model_version", None)
    return dict(labels)


def build_app(user_object, seldon_metrics):
    from flask import Response, request
    from seldon_core.wrapper import get_rest_microservice
    from werkzeug.exceptions import HTTPException

    from airflow_mlops.runtime_side.model_server.model import FEEDBACK_BYTES_PER_ROW

    app = get_rest_microservice(user_object, seldon_metrics)
    feedback_max_bytes = FEEDBACK_BYTES_PER_ROW * int(user_object.max_rows) + 256 * 1024

    @app.before_request
    def refuse_what_cannot_be_a_prediction():  # client mistakes answered 4xx before seldon-core parses them
        if request.path not in PREDICTION_PATHS + FEEDBACK_PATHS:
            return None
        if request.method != "POST":
            response = _error(405, "METHOD_NOT_ALLOWED", f"{request.method} {_shown_path(request.path)}: send the request "
                              "with POST and a JSON body")
            response.headers["Allow"] = "POST"
            return response
        if not request.is_json and "json" not in request.form:
            return _error(415, "UNSUPPORTED_MEDIA_TYPE", "send the JSON body with the header "
                          f"Content-Type: application/json (got {request.content_type or 'no Content-Type'})")
        if request.path in FEEDBACK_PATHS and (request.content_length or 0) > feedback_max_bytes:
            return _error(413, "PAYLOAD_TOO_LARGE", f"a feedback body may be at most {feedback_max_bytes} bytes "
                          f"(256 KiB and {FEEDBACK_BYTES_PER_ROW} per row of at most {user_object.max_rows}); send the labels "
                          "and the prediction's meta.puid, not its request")
        if json_too_deep(request.get_data(cache=True)):
            return _error(400, "BAD_REQUEST", "the JSON body nests too deeply to be parsed")
        return None

    @app.errorhandler(HTTPException)
    def http_error(error):  # an unknown path or method: its own status, not seldon-core's 500
        return _error(error.code or 500, error.name.upper().replace(" ", "_"),
                      f"{request.method} {_shown_path(request.path)}: {error.description}")

    @app.errorhandler(RecursionError)
    def too_deep(error):
        return _error(400, "BAD_REQUEST", "the JSON body nests too deeply")

    @app.errorhandler(UnicodeError)
    def bad_text(error):
        return _error(400, "BAD_REQUEST", f"the body is not valid UTF-8 JSON: {error}")

    def metrics():
        body, mimetype = seldon_metrics.generate_metrics()
        return Response(body, mimetype=mimetype)

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])

    @app.after_request
    def count_errors(response):  # failed prediction requests, by status, as mlops_request_errors_total
        if response.status_code >= 400 and request.path.startswith("/api/"):
            version = getattr(user_object, "version", None)
            seldon_metrics.update([{"type": "COUNTER", "key": "mlops_request_errors", "value": 1,
                                    "tags": {"status": str(response.status_code),
                                             "model_version": str(version) if version is not None else "none"}}],
                                  "predict")
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
    parser.add_argument("--max-body-bytes", type=int, default=FRONT_DEFAULTS.max_body_bytes,
                        help="a request body over this is a 413")
    parser.add_argument("--max-buffered-bytes", type=int, default=FRONT_DEFAULTS.max_buffered_bytes,
                        help="bytes of requests held at once, across connections; over it a request waits, then 503")
    parser.add_argument("--no-front", action="store_true",
                        help="let gunicorn accept the clients itself (slow clients can then take its threads)")
    args = parser.parse_args(argv)
    if not args.deployment_dir:
        if not args.model_uri:
            parser.error("give a deployment directory, or --model-uri (or MODEL_URI)")
        args.deployment_dir = fixed_model_dir(args.model_uri, args.model_version)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
                        force=True)
    from seldon_core.gunicorn_utils import UserModelApplication, post_worker_init, worker_exit
    from seldon_core.metrics import SeldonMetrics

    from airflow_mlops.runtime_side.model_server.model import TfxSavedModel

    set_metric_labels(args.name)
    user_object = TfxSavedModel(args.deployment_dir, deployment=args.name, prediction_log=args.prediction_log,
                                max_rows=args.max_rows)
    seldon_metrics = SeldonMetrics(worker_id_func=os.getpid)
    app = build_app(user_object, seldon_metrics)
    bind = f"{args.host}:{args.port}"
    if not args.no_front:  # clients meet the asyncio front; gunicorn gets whole requests on a Unix socket
        import tempfile

        from airflow_mlops.runtime_side.model_server.front import Front

        upstream = os.path.join(tempfile.mkdtemp(prefix="mlops-serve-"), "gunicorn.sock")
        bind = f"unix:{upstream}"
        try:
            limits = FrontLimits(max_body_bytes=args.max_body_bytes, max_buffered_bytes=args.max_buffered_bytes)
        except ValueError as err:
            parser.error(str(err))
        Front(args.host, args.port, upstream, limits).start_in_thread()
    options = {
        "bind": bind,
        "workers": args.workers,
        "threads": args.threads,
        "timeout": 300,
        "keepalive": 5,
        # the front bounds request lines and heads (414/431) before gunicorn sees them: let gunicorn take them
        "limit_request_line": 8190,
        "limit_request_fields": 200,
        "limit_request_field_size": 0,
        "loglevel": "info",
        "accesslog": None,
        "post_worker_init": post_worker_init,
        "worker_exit": partial(worker_exit, seldon_metrics=seldon_metrics),
    }
    logging.getLogger("airflow_mlops.serving").info(
        "model server for %s on http://%s:%s (pid %s)", args.deployment_dir, args.host, args.port, os.getpid())
    UserModelApplication(app, user_object, False, None, "airflow_mlops.runtime_side.model_server.model.TfxSavedModel",
                         options=options).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
