"""The MLOps pages and their JSON API: a FastAPI app Airflow's API server mounts at ``/mlops``.

Every route needs a user Airflow's auth manager authenticated (its session cookie or a bearer
token): an anonymous API call gets 401, an anonymous page view the login page. The pages only
read; their buttons (roll back, promote, undeploy) trigger ``mlops_rollback`` from the browser
through Airflow's own REST API, as the signed-in user, so Airflow checks the permission and the
change is a DAG run with its logs. Everything shown is escaped (Jinja2 autoescape, SVG text
escaped) and the Content-Security-Policy allows no inline script.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from airflow_mlops.exceptions import MlopsException
from airflow_mlops.links.pages import PREFIX
from airflow_mlops.plugins import charts
from airflow_mlops.plugins.data import PAGE_SIZE, PageData, gate_value, health_series, when
from airflow_mlops.utils.run_records import safe_name

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
ACTION_DAG = "mlops_rollback"
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'self'")
_DATA_TTL = 30.0  # seconds the resolved settings are kept
_data_cache: dict[str, Any] = {}


def page_data() -> PageData:
    """The readers over the provider's settings (resolved at most every 30 s)."""
    cached = _data_cache.get("data")
    if cached is not None and time.monotonic() - _data_cache["at"] < _DATA_TTL:
        return cached
    from airflow_mlops.hooks.seldon import SeldonHook

    data = PageData(SeldonHook(mlops_conn_id=SeldonHook.default_conn_name))
    _data_cache.update(data=data, at=time.monotonic())
    return data


async def current_user(request: Request) -> Any:
    """The signed-in user (Airflow's ``get_user``: bearer token, else the UI's session cookie); 401 otherwise."""
    from fastapi.security import HTTPAuthorizationCredentials

    from airflow.api_fastapi.core_api.security import get_user

    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    bearer = HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if token else None
    return await get_user(request, None, bearer)


def can_trigger(user: Any, dag_id: str = ACTION_DAG) -> bool:
    """Whether ``user`` may trigger ``dag_id`` (Airflow checks again when the button is used)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    try:
        return bool(get_auth_manager().is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN,
                                                         details=DagDetails(id=dag_id), user=user))
    except Exception as err:  # an auth manager that cannot answer: hide the buttons, Airflow decides anyway
        log.warning("cannot tell whether %s may trigger %s: %s", getattr(user, "get_name", lambda: "?")(), dag_id, err)
        return False


def _templates():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(when=when, gate_value=gate_value, quote=quote, PAGE_SIZE=PAGE_SIZE)
    env.filters["num"] = lambda v, digits=4: (f"{v:.{digits}g}" if isinstance(v, float) else
                                               ("" if v is None else v))
    return env


_env: list[Any] = []


def render(request: Request, template: str, user: Any, **values: Any) -> HTMLResponse:
    if not _env:
        _env.append(_templates())
    root = request.scope.get("root_path", "")
    airflow_base = root[:-len(PREFIX)] if root.endswith(PREFIX) else ""
    html = _env[0].get_template(template).render(
        base=root, airflow=airflow_base, user_name=user.get_name() if user else "", page=template.split(".")[0],
        action_dag=ACTION_DAG, **values)
    return HTMLResponse(html, headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"})


def _offset(request: Request) -> int:
    try:
        return max(0, int(request.query_params.get("offset", 0)))
    except ValueError:
        raise HTTPException(400, "offset must be a non-negative integer") from None


def _pipeline(data: PageData, asked: str | None) -> tuple[list[str], str | None]:
    """The pipelines there are, and the one a page shows: ``asked``, else the first; 404 for an unknown one."""
    pipelines = data.pipelines()
    chosen = asked or (pipelines[0] if pipelines else None)
    if chosen is not None and chosen not in pipelines:
        raise HTTPException(404, f"no pipeline {chosen!r}; known: {', '.join(pipelines) or 'none'}")
    return pipelines, chosen


# -- what Airflow knows about runs ----------------------------------------------------------------
def dag_runs(keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """``(dag_id, run_id)`` → state, who triggered it and how (from Airflow's database)."""
    keys = [k for k in keys if k[0] and k[1]]
    if not keys:
        return {}
    from sqlalchemy import select, tuple_

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            rows = session.execute(select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.triggering_user_name,
                                          DagRun.run_type).where(tuple_(DagRun.dag_id, DagRun.run_id).in_(keys))).all()
    except Exception as err:  # the page still shows the files' data, without the runs' states
        log.warning("cannot read the DAG runs from Airflow's database: %s", err)
        return {}
    return {(r[0], r[1]): {"state": str(r[2]), "user": r[3], "run_type": str(r[4])} for r in rows}


def caused_runs(dag_id: str, run_id: str) -> list[dict[str, str]]:
    """The DAG runs an asset event of run ``dag_id``/``run_id`` triggered (a drift check's retraining)."""
    if not dag_id or not run_id:
        return []
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            events = session.scalars(select(AssetEvent).where(AssetEvent.source_dag_id == dag_id,
                                                              AssetEvent.source_run_id == run_id)).all()
            return [{"dag_id": r.dag_id, "run_id": r.run_id, "state": str(r.state)}
                    for e in events for r in e.created_dagruns]
    except Exception as err:
        log.warning("cannot read the asset events of %s/%s from Airflow's database: %s", dag_id, run_id, err)
        return []


# -- the app ------------------------------------------------------------------------------------
def create_app() -> FastAPI:
    app = FastAPI(title="airflow-mlops", description="The MLOps pages of airflow-mlops and their JSON API",
                  docs_url=None, redoc_url=None)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        is_api = request.url.path.startswith(f"{request.scope.get('root_path', '')}/api/")
        if exc.status_code in (401, 403) and not is_api and request.method == "GET":
            from airflow.api_fastapi.app import get_auth_manager

            target = str(request.url)
            return RedirectResponse(get_auth_manager().get_url_login(next_url=target), status_code=303)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    user_dep = Depends(current_user)

    @app.get("/", include_in_schema=False)
    def home(request: Request, user: Any = user_dep) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/models", status_code=307)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str, user: Any = user_dep) -> Response:
        files = {"actions.js": "text/javascript", "mlops.css": "text/css", "icon.svg": "image/svg+xml"}
        if name not in files:
            raise HTTPException(404, "no such file")
        return FileResponse(HERE / "static" / name, media_type=files[name],
                            headers={"Cache-Control": "private, max-age=300"})

    # model versions
    def models_values(request: Request, pipeline: str | None) -> dict[str, Any]:
        data = page_data()
        pipelines, chosen = _pipeline(data, pipeline)
        offset = _offset(request)
        deployments, errors = data.deployments()
        rows, total = data.versions(chosen, offset, PAGE_SIZE, data.served(deployments)) if chosen else ([], 0)
        runs = data.runs(chosen) if chosen else None
        return {"pipelines": pipelines, "pipeline": chosen, "rows": rows, "total": total, "offset": offset,
                "runs": runs, "errors": errors}

    @app.get("/models", response_class=HTMLResponse, include_in_schema=False)
    def models_page(request: Request, pipeline: str | None = None, user: Any = user_dep) -> Response:
        values = models_values(request, pipeline)
        airflow_runs = dag_runs([(r.run.get("dag_id", ""), r.record.run_id) for r in values["rows"] if r.run])
        return render(request, "models.html", user, airflow_runs=airflow_runs, **values)

    @app.get("/models/{pipeline}/{version}", response_class=HTMLResponse, include_in_schema=False)
    def version_page(request: Request, pipeline: str, version: int, user: Any = user_dep) -> Response:
        data = page_data()
        deployments, errors = data.deployments()
        try:
            row = data.version(pipeline, version, data.served(deployments))
        except LookupError as err:
            raise HTTPException(404, str(err)) from None
        run = dag_runs([(row.run.get("dag_id", ""), row.record.run_id)]) if row.run else {}
        return render(request, "version.html", user, row=row, deployments=deployments,
                      airflow_runs=run, may_trigger=can_trigger(user), errors=errors)

    @app.get("/api/models")
    def models_api(request: Request, pipeline: str | None = None, user: Any = user_dep) -> dict[str, Any]:
        values = models_values(request, pipeline)
        return {"pipelines": values["pipelines"], "pipeline": values["pipeline"], "total": values["total"],
                "offset": values["offset"], "versions": [
                    {**r.record.__dict__, "run": r.run, "served_by": r.served_by,
                     "gate_value": gate_value(r.run)} for r in values["rows"]]}

    # deployments
    @app.get("/deployments", response_class=HTMLResponse, include_in_schema=False)
    def deployments_page(request: Request, user: Any = user_dep) -> Response:
        deployments, errors = page_data().deployments()
        return render(request, "deployments.html", user, deployments=deployments, errors=errors)

    def deployment_values(name: str) -> dict[str, Any]:
        data = page_data()
        try:
            dep = data.deployment(name)
        except MlopsException as err:
            raise HTTPException(404, str(err)) from None
        health = health_series(dep.prediction_log)
        quality = data.quality_report(name)
        return {"deployment": dep, "health": health, "quality": quality}

    @app.get("/deployments/{name}", response_class=HTMLResponse, include_in_schema=False)
    def deployment_page(request: Request, name: str, user: Any = user_dep) -> Response:
        values = deployment_values(name)
        dep = values["deployment"]
        shown = list(reversed(dep.history[-PAGE_SIZE:]))  # the newest changes
        keys = [((h.get("by") or {}).get("dag_id", ""), (h.get("by") or {}).get("run_id", "")) for h in shown]
        versions = PageData.version_numbers(Path(dep.model_path).parent) if dep.model_path else []
        pipeline = Path(dep.model_path).parent.name if dep.model_path else None
        charts_html = [charts.line_chart(values["health"]["points"], "error_rate", title="error rate", percent=True),
                       charts.line_chart(values["health"]["points"], "p99_ms", title="p99 latency", unit=" ms"),
                       charts.line_chart(values["health"]["points"], "requests", title="requests per interval")]
        return render(request, "deployment.html", user, airflow_runs=dag_runs(keys), versions=versions, history=shown,
                      pipeline=pipeline, charts=charts_html, may_trigger=can_trigger(user), **values)

    @app.get("/api/deployments")
    def deployments_api(user: Any = user_dep) -> dict[str, Any]:
        deployments, errors = page_data().deployments()
        return {"deployments": [d.as_dict() for d in deployments], "errors": errors}

    @app.get("/api/deployments/{name}")
    def deployment_api(name: str, user: Any = user_dep) -> dict[str, Any]:
        values = deployment_values(name)
        return {"deployment": values["deployment"].as_dict(), "health": values["health"],
                "quality": values["quality"]}

    @app.get("/quality/{name}/plot.svg", include_in_schema=False)
    def quality_plot(name: str, user: Any = user_dep) -> Response:
        report = page_data().quality_report(name)
        plot = Path(str((report or {}).get("plot") or ""))
        directory = page_data().quality_dir(name).resolve()
        if not report or not plot.is_file() or plot.resolve().parent != directory:
            raise HTTPException(404, f"deployment {name!r} has no quality plot")
        return FileResponse(plot, media_type="image/svg+xml",
                            headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    # drift
    @app.get("/drift", response_class=HTMLResponse, include_in_schema=False)
    def drift_index(request: Request, user: Any = user_dep) -> Response:
        found = page_data().drift_deployments()
        if len(found) == 1:
            return RedirectResponse(f"{request.scope.get('root_path', '')}/drift/{quote(found[0][0])}", status_code=307)
        return render(request, "drift_index.html", user, found=found)

    def drift_values(request: Request, name: str) -> dict[str, Any]:
        data = page_data()
        if safe_name(name) != name or not data.drift_dir(name).is_dir():
            raise HTTPException(404, f"deployment {name!r} has no drift report")
        return {"name": name, "reports": data.drift_reports(name, _offset(request), PAGE_SIZE)}

    @app.get("/drift/{name}", response_class=HTMLResponse, include_in_schema=False)
    def drift_page(request: Request, name: str, user: Any = user_dep) -> Response:
        return render(request, "drift.html", user, found=page_data().drift_deployments(),
                      **drift_values(request, name))

    @app.get("/api/drift/{name}")
    def drift_api(request: Request, name: str, user: Any = user_dep) -> dict[str, Any]:
        page = drift_values(request, name)["reports"]
        return {"deployment": name, "total": page.total, "offset": page.offset, "reports": page.reports}

    def report_values(name: str, report: str) -> dict[str, Any]:
        found = page_data().drift_report(name, report)
        if found is None:
            raise HTTPException(404, f"deployment {name!r} has no drift report {report!r}")
        return found

    @app.get("/drift/{name}/{report}.png", include_in_schema=False)
    def drift_png(name: str, report: str, user: Any = user_dep) -> Response:
        directory = page_data().drift_dir(name)
        if safe_name(name) != name or safe_name(report) != report or not (directory / f"{report}.png").is_file():
            raise HTTPException(404, "no such plot")
        return FileResponse(directory / f"{report}.png", media_type="image/png")

    @app.get("/drift/{name}/{report}", response_class=HTMLResponse, include_in_schema=False)
    def drift_report_page(request: Request, name: str, report: str, user: Any = user_dep) -> Response:
        found = report_values(name, report)
        has_png = (page_data().drift_dir(name) / f"{report}.png").is_file()
        caused = caused_runs(str(found.get("dag_id") or ""), str(found.get("run_id") or ""))
        return render(request, "drift_report.html", user, name=name, report=found, has_png=has_png, caused=caused)

    @app.get("/api/drift/{name}/{report}")
    def drift_report_api(name: str, report: str, user: Any = user_dep) -> dict[str, Any]:
        found = report_values(name, report)
        return {**found, "caused_runs": caused_runs(str(found.get("dag_id") or ""), str(found.get("run_id") or ""))}

    # data validation
    def data_values(request: Request, pipeline: str | None) -> dict[str, Any]:
        data = page_data()
        pipelines, chosen = _pipeline(data, pipeline)
        runs = data.runs(chosen, _offset(request), PAGE_SIZE) if chosen else None
        return {"pipelines": pipelines, "pipeline": chosen, "schema": data.schema(chosen) if chosen else None,
                "runs": runs}

    @app.get("/data", response_class=HTMLResponse, include_in_schema=False)
    def data_page(request: Request, pipeline: str | None = None, user: Any = user_dep) -> Response:
        return render(request, "data.html", user, **data_values(request, pipeline))

    @app.get("/api/data")
    def data_api(request: Request, pipeline: str | None = None, user: Any = user_dep) -> dict[str, Any]:
        values = data_values(request, pipeline)
        runs = values["runs"]
        return {"pipelines": values["pipelines"], "pipeline": values["pipeline"], "schema": values["schema"],
                "runs": runs.reports if runs else [], "total": runs.total if runs else 0}

    return app


app = create_app()
