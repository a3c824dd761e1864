"""The registry's read-only web view (`modelspec serve`): models, versions, a version with its
lineage, metrics over versions, alias history, diff, drift and the audit log, as HTML pages
and as the JSON the CLI's --json prints. A front end beside the CLI: it reads through
`modelspec.api` only (import-linter checks it); FastAPI, Jinja2 and uvicorn are the `web`
extra, imported only when the view is started."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from ..errors import UsageError

LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require() -> None:
    """A UsageError naming the `web` extra when FastAPI, Jinja2 or uvicorn is missing."""
    from . import app  # noqa: F401  (raises, naming the extra)

    try:
        import uvicorn  # noqa: F401
    except ImportError:
        raise UsageError(
            "the web view needs uvicorn, which is not installed", hint="pip install 'modelspec[web]'"
        ) from None


def create_app(catalog: Any, warm: bool = False) -> Any:
    """The FastAPI application over an open catalog (see app.create_app)."""
    from .app import create_app as make

    return make(catalog, warm)


def check_port(host: str, port: int) -> None:
    """A port that is taken (or a host that is not this machine's) is a clear error before
    the server starts, not a traceback from inside it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="choose another port with --port (another modelspec serve may hold this one)",
            ) from None


def serve(catalog: Any, host: str, port: int, started: Callable[[str], None] = lambda url: None) -> None:
    """Serve the view until interrupted; `started` is told the URL once it listens."""
    require()
    import uvicorn

    check_port(host, port)
    app = create_app(catalog, warm=True)
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, server_header=False)
    server = uvicorn.Server(config)
    original = server.startup

    async def startup(*args: Any, **kwargs: Any) -> None:
        await original(*args, **kwargs)
        if server.started:
            started(f"http://{shown}:{port}/")

    server.startup = startup  # type: ignore[method-assign]
    server.run()
