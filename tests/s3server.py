"""A real S3 protocol server on loopback for the tests: moto in server mode.

`.ci/run` starts one for the whole run and passes its URL in MODELSPEC_TEST_S3_ENDPOINT;
without it the first test that needs one starts a server for the session. In CI (`CI` set)
a missing server is a failure, never a skip. Each test gets a bucket of its own.
"""

from __future__ import annotations

import logging
import os
import secrets
import urllib.request
from collections.abc import Iterator

import pytest

ENDPOINT_VARIABLE = "MODELSPEC_TEST_S3_ENDPOINT"


def start_moto() -> Iterator[str]:
    """The endpoint of a moto server started on a free loopback port, stopped afterwards."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        message = f"moto[server] is not installed and {ENDPOINT_VARIABLE} is not set: pip install -e '.[test]'"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(message)
        pytest.skip(message)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request drowns a failure
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def new_bucket(endpoint: str) -> str:
    """A fresh, empty bucket on the server (moto accepts any credentials)."""
    name = f"ms-{secrets.token_hex(6)}"
    request = urllib.request.Request(f"{endpoint}/{name}", method="PUT")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    return name


def s3_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The usual AWS variables, pointing at nothing real."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "modelspec-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "modelspec-test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("MODELSPEC_REMOTE_RETRIES", "2")
    monkeypatch.setenv("MODELSPEC_REMOTE_RETRY_SECONDS", "10")
