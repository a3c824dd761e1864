"""The web view's routes: each page as HTML (Jinja2, escaped) and the same data as JSON under
/api/, read through `modelspec.api` exactly as the CLI reads it. Every route is a GET; no
route writes. An error is a page (or JSON) saying what is wrong, never a traceback."""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

from .. import api
from ..errors import ModelspecError, UsageError
from . import draw
from .auditcheck import AuditCheck
from .formatting import human_bytes, link, metric_text, model_path, retention_of

try:
    import jinja2
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, Response
    from starlette.exceptions import HTTPException
except ImportError as exc:  # the `web` extra is optional
    raise UsageError(
        f"the web view needs {exc.name}, which is not installed", hint="pip install 'modelspec[web]'"
    ) from None

log = logging.getLogger("modelspec.web")

# No script runs on any page, styles come from /static only, nothing is framed or fetched
# from elsewhere: an escaping mistake still cannot run code.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
STATIC = {"style.css": "text/css", "favicon.svg": "image/svg+xml"}
PAGE_SIZES = (25, 50, 100, 200, 500)
CHART_SPANS = (20, 50, 200, 1000)


class NotFound(UsageError):
    """What the URL's path names does not exist (404; a bad query parameter is a 400)."""


@contextmanager
def named_in_path() -> Iterator[None]:
    try:
        yield
    except UsageError as exc:
        raise NotFound(exc.message, exc.hint) from None


def key_values(pairs: list[str]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"tag {pair!r} is not KEY=VALUE", hint="e.g. tag=team=fraud")
        found[key] = value
    return found


def parse_moment(day: str, clock: str = "") -> float:
    """`2026-11-30` (and `14:00`) as a UTC timestamp, the end of the day when no time is given."""
    try:
        moment = datetime.datetime.fromisoformat(f"{day}T{clock or '23:59:59'}")
    except ValueError:
        raise UsageError(f"{day} {clock}".strip() + " is not a date", hint="write e.g. 2026-11-30 and 14:00") from None
    return moment.replace(tzinfo=moment.tzinfo or datetime.UTC).timestamp()


def as_json(value: Any, status: int = 200) -> Response:
    """What the CLI's --json prints, the same way."""
    text = json.dumps(value, indent=2, sort_keys=True, default=str)
    return Response(text + "\n", status_code=status, media_type="application/json")


def create_app(catalog: Any, warm: bool = False) -> FastAPI:
    """The web view over an open catalog (`api.open_catalog(..., read_only=True)`), which
    the caller closes; `warm` verifies the audit log at once, in the background, so that the
    audit page has its verdict when a person first opens it."""
    checker = AuditCheck(catalog)
    if warm:
        threading.Thread(target=checker.warm, name="audit-verify", daemon=True).start()
    app = FastAPI(title="modelspec", docs_url=None, redoc_url=None, openapi_url=None)
    pages = jinja2.Environment(
        loader=jinja2.PackageLoader("modelspec.web", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    pages.filters.update(
        when=draw.when, short=draw.short, metric=metric_text, size=human_bytes, targets=draw.targets_text
    )
    pages.globals.update(link=link, model_path=model_path, version_link=draw.version_link)

    def trend(delta: float | None, metric: str) -> str:
        """The class of a change: `up` (better, green), `down` (worse, red), by the metric's name."""
        if not delta:
            return "dim"
        return "up" if (delta > 0) == catalog.higher_is_better(metric) else "down"

    pages.globals.update(trend=trend)
    static = resources.files("modelspec.web").joinpath("static")
    files = {name: (static.joinpath(name).read_bytes(), kind) for name, kind in STATIC.items()}  # read once

    def render(template: str, code: int = 200, **values: Any) -> HTMLResponse:
        html = pages.get_template(template).render(**values)
        return HTMLResponse(html, status_code=code)

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    def failure(request: Request, status: int, kind: str, message: str, hint: str = "") -> Response:
        if wants_json(request):
            return as_json({"error": kind, "message": message, "hint": hint}, status)
        return render(
            "error.html", status, title=f"{status} {kind}", status=status, kind=kind, message=message, hint=hint
        )

    @app.middleware("http")
    async def secure(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(ModelspecError)
    async def modelspec_error(request: Request, exc: ModelspecError) -> Response:
        status = 404 if isinstance(exc, NotFound) else 400 if isinstance(exc, UsageError) else 500
        return failure(request, status, type(exc).__name__, exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> Response:
        said = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return failure(request, 400, "UsageError", f"bad parameter: {said}", "see the README's web view section")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return failure(request, 404, "NotFound", f"no page {request.url.path}", "start from the models: /")
        if exc.status_code == 405:  # every route is read-only
            response = failure(
                request, 405, "MethodNotAllowed", f"{request.method} is not allowed: the view is read-only"
            )
            response.headers["Allow"] = "GET, HEAD"
            return response
        return failure(request, exc.status_code, "HTTPError", str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)  # the server's log has the traceback
        return failure(request, 500, type(exc).__name__, "the server failed on this page", "its log says why")

    # -- static ------------------------------------------------------------------------------

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        if name not in files:  # only the package's own files, by name: no path reaches the disk
            raise NotFound(f"no file /static/{name}")
        content, kind = files[name]
        return Response(content, media_type=kind, headers={"Cache-Control": "max-age=3600"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return static_file("favicon.svg")

    # -- models ------------------------------------------------------------------------------

    @app.get("/api/models")
    def api_models() -> Response:
        return as_json(catalog.models())

    @app.get("/", response_class=HTMLResponse)
    def models_page() -> HTMLResponse:
        return render("models.html", models=catalog.models(), title="models")

    # -- versions ----------------------------------------------------------------------------

    def versions_data(
        name: str, where: str, tag: list[str], sort: str | None, order: str, after: str | None,
        before: str | None, last: bool, size: int,
    ) -> dict[str, Any]:  # fmt: skip
        tags = key_values(tag)
        page = api.Page(after or None, before or None, last, size)
        with named_in_path():
            catalog.aliases(name)  # a model that is not there: 404, before the query's own errors
        return catalog.versions_page(name, where, tags, page, sort or None, order != "asc")

    order_query = Query("desc", pattern="^(asc|desc)$")
    size_query = Query(50, ge=1, le=500)
    tags_query = Query([])  # a repeated ?tag=KEY=VALUE

    @app.get("/api/models/{name}/versions")
    def api_versions(
        name: str, where: str = "", tag: list[str] = tags_query, sort: str | None = None, order: str = order_query,
        after: str | None = None, before: str | None = None, last: bool = False, size: int = size_query,
    ) -> Response:  # fmt: skip
        return as_json(versions_data(name, where, tag, sort, order, after, before, last, size))

    @app.get("/models/{name}", response_class=HTMLResponse)
    def versions_page(
        name: str, where: str = "", tag: list[str] = tags_query, sort: str | None = None, order: str = order_query,
        after: str | None = None, before: str | None = None, last: bool = False, size: int = size_query,
    ) -> HTMLResponse:  # fmt: skip
        started = time.perf_counter()
        found = versions_data(name, where, tag, sort, order, after, before, last, size)
        rows = found["versions"]
        metrics = sorted({k for r in rows for k in r["metrics"]})[:6]
        if sort and sort not in metrics:
            metrics = [sort, *metrics[:5]]
        keep = {"where": where, "tag": tag, "sort": sort, "order": order, "size": size if size != 50 else None}
        return render(
            "versions.html",
            title=name,
            name=name,
            found=found,
            rows=rows,
            metrics=metrics,
            aliases=catalog.aliases(name),
            where=where,
            tags=[t for t in tag if t],
            sort=sort,
            order=order,
            size=size,
            sizes=PAGE_SIZES,
            keep=keep,
            here=model_path(name),
            millis=(time.perf_counter() - started) * 1000,
        )

    # -- metrics over versions ----------------------------------------------------------------

    def history_of(name: str, metric: str | None, last: int | None) -> Any:
        with named_in_path():
            catalog.aliases(name)
        return api.metric_history(catalog, name, metric or None, None, last)

    last_query = Query(200, ge=1, le=100_000)

    @app.get("/api/models/{name}/metrics")
    def api_metrics(name: str, metric: str | None = None, last: int | None = last_query) -> Response:
        return as_json(history_of(name, metric, last).to_dict())

    @app.get("/models/{name}/metrics", response_class=HTMLResponse)
    def metrics_page(name: str, metric: str | None = None, last: int = last_query) -> HTMLResponse:
        history = history_of(name, metric, last)
        chart = api.metrics_svg(history) if history.points and history.metrics else ""
        points = list(reversed(history.points))[:200]  # the table: the newest 200
        return render(
            "metrics.html", title=f"{name} metrics", name=name, history=history, chart=chart, points=points,
            summary={m: history.summary(m) for m in history.metrics}, metric=metric or "", last=last, spans=CHART_SPANS,
        )  # fmt: skip

    # -- aliases -----------------------------------------------------------------------------

    def alias_data(name: str, alias: str, day: str, clock: str) -> dict[str, Any]:
        at = parse_moment(day, clock) if day else None
        with named_in_path():
            return dict(catalog.alias_history(name, alias, at))

    @app.get("/api/models/{name}/aliases")
    def api_aliases(name: str) -> Response:
        with named_in_path():
            return as_json(catalog.aliases(name))

    @app.get("/api/models/{name}/aliases/{alias}")
    def api_alias(name: str, alias: str, at: str = "", time: str = "") -> Response:
        return as_json(alias_data(name, alias, at, time))

    @app.get("/models/{name}/aliases/{alias}", response_class=HTMLResponse)
    def alias_page(name: str, alias: str, at: str = "", time: str = "") -> HTMLResponse:
        found = alias_data(name, alias, at, time)
        now = datetime.datetime.now(datetime.UTC).timestamp()
        chart = draw.timeline_svg(found["history"], now, found.get("at", {}).get("time"))
        return render(
            "alias.html", title=f"{name}@{alias}", name=name, alias=alias, found=found, chart=chart, day=at,
            clock=time, history=list(reversed(found["history"])),
        )  # fmt: skip

    # -- diff and drift ----------------------------------------------------------------------

    def ref_of(name: str, given: str, what: str) -> str:
        if not given:
            raise UsageError(f"say which version {what} is: ?{what}=VERSION", hint="e.g. ?a=1.0.0&b=1.0.1")
        return given if "@" in given else f"{name}@{given}"

    def diff_data(name: str, a: str, b: str) -> dict[str, Any]:
        with named_in_path():
            catalog.aliases(name)
        ref_a, ref_b = ref_of(name, a, "a"), ref_of(name, b, "b")
        exact_a, exact_b = catalog.resolve(ref_a).version.ref, catalog.resolve(ref_b).version.ref
        return dict(catalog.diff(exact_a, exact_b, catalog.repo_root))

    @app.get("/api/models/{name}/diff")
    def api_diff(name: str, a: str = "", b: str = "") -> Response:
        return as_json(diff_data(name, a, b))

    @app.get("/models/{name}/diff", response_class=HTMLResponse)
    def diff_page(name: str, a: str = "", b: str = "") -> HTMLResponse:
        found = diff_data(name, a, b) if a or b else None
        return render("diff.html", title=f"{name} diff", name=name, a=a, b=b, found=found)

    def drift_data(name: str, a: str, b: str) -> list[Any]:
        with named_in_path():
            catalog.aliases(name)
        return list(api.drift(catalog, ref_of(name, a, "a"), ref_of(name, b, "b") if b else None))

    @app.get("/api/models/{name}/drift")
    def api_drift(name: str, a: str = "", b: str = "") -> Response:
        found = drift_data(name, a, b)
        drifted = any(item.report.dataset_drift for item in found)
        return as_json({"dataset_drift": drifted, "inputs": [item.report.to_dict() for item in found], "plot": None})

    @app.get("/models/{name}/drift", response_class=HTMLResponse)
    def drift_page(name: str, a: str = "", b: str = "") -> HTMLResponse:
        found = drift_data(name, a, b) if a else []
        chart = api.drift_svg(found) if found else ""
        reports = [item.report for item in found]
        return render("drift.html", title=f"{name} drift", name=name, a=a, b=b, reports=reports, chart=chart)

    # -- one version ---------------------------------------------------------------------------

    def version_data(name: str, version: str) -> dict[str, Any]:
        with named_in_path():
            return dict(catalog.show(f"{name}@{version}"))

    @app.get("/api/models/{name}/{version}/lineage")
    def api_lineage(name: str, version: str) -> Response:
        with named_in_path():
            ref = catalog.resolve(f"{name}@{version}").version.ref
        return as_json(catalog.lineage(ref))

    def statement_of(info: dict[str, Any]) -> dict[str, Any]:
        return api.read_statement(catalog.store, info)

    @app.get("/api/models/{name}/{version}/provenance")
    def api_provenance(name: str, version: str) -> Response:
        return as_json(statement_of(version_data(name, version)))

    @app.get("/models/{name}/{version}/provenance", response_class=HTMLResponse)
    def provenance_page(name: str, version: str) -> HTMLResponse:
        info = version_data(name, version)
        statement = statement_of(info)
        return render(
            "provenance.html", title=f"{info['ref']} provenance", name=name, info=info, statement=statement,
            document=json.dumps(statement, indent=2, sort_keys=True),
        )  # fmt: skip

    @app.get("/api/models/{name}/{version}")
    def api_version(name: str, version: str) -> Response:
        return as_json(version_data(name, version))

    @app.get("/models/{name}/{version}", response_class=HTMLResponse)
    def version_page(name: str, version: str) -> HTMLResponse:
        info = version_data(name, version)
        return render(
            "version.html", title=info["ref"], name=name, info=info, lineage=draw.lineage_svg(info),
            retention=retention_of(info), marks=api.MARKS,
        )  # fmt: skip

    # -- audit ---------------------------------------------------------------------------------

    audit_limit = Query(100, ge=1, le=10_000)
    limit_query = Query(None, ge=1)

    @app.get("/api/audit")
    def api_audit(verify: bool = False, fresh: bool = False, limit: int | None = limit_query) -> Response:
        found = catalog.audit(False, limit)
        if verify:
            check = checker.verdict(fresh)
            found.update({k: check[k] for k in ("ok", "problem", "problems", "checkpoint")})
        return as_json(found)

    @app.get("/audit", response_class=HTMLResponse)
    def audit_page(verify: bool = True, fresh: bool = False, limit: int = audit_limit) -> HTMLResponse:
        found = catalog.audit(False, limit)
        check = checker.verdict(fresh) if verify else None
        events = list(reversed(found["events"]))
        return render("audit.html", title="audit log", check=check, events=events, verify=verify, limit=limit)

    return app
