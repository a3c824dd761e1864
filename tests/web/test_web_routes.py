"""The web view's routes in-process (FastAPI's TestClient) over real builds: each page
renders, its JSON is what the CLI's --json prints, pages of versions follow one another,
errors are pages (or JSON) without a traceback, nothing but GET is served, and a tag
holding markup is shown as text."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Repo
from webspace import XSS, shared_workspace

from modelspec import api
from modelspec.web import create_app, is_loopback


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_workspace(tmp_path_factory)


@pytest.fixture(scope="module")
def client(root: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with contextlib.chdir(root), api.open_catalog(read_only=True) as catalog:
        yield TestClient(create_app(catalog), raise_server_exceptions=False)


def cli_json(root: Path, *args: str) -> Any:
    result = Repo.__new__(Repo)
    result.path = root
    done = result.cli(*args, "--json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def page(client: Any, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, f"{url}: {response.status_code}\n{response.text[:2000]}"
    assert "Traceback" not in response.text
    return str(response.text)


def test_every_page_renders_with_what_the_registry_holds(client: Any) -> None:
    home = page(client, "/")
    assert 'href="/models/fraud"' in home and "production → 1.0.1" in home and "staging → 1.0.1" in home
    assert "auc <b>0.88</b> at" in home  # the best by the gate's metric, higher is better
    versions = page(client, "/models/fraud")
    assert versions.index(">1.0.3<") < versions.index(">1.0.0<")  # newest first
    assert "rejected" in versions and "pinned" in versions and "4 versions" in versions
    version = page(client, "/models/fraud/1.0.2")
    for expected in ("fit.model", "blake3:", "pinned", "team=risk", "latency_ms", "passed", "never reproduced",
                     "<dt>provenance</dt><dd>unsigned"):  # fmt: skip
        assert expected in version, expected
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="lineage"' in version
    assert "data · transactions" in version and 'href="/models/scorer/1.0.0"' in version  # upstream and consumer
    assert 'href="/models/fraud/1.0.2"' in page(client, "/models/scorer/1.0.0")  # the lineage back upstream
    diff = page(client, "/models/fraud/diff?a=1.0.0&b=1.0.2")
    assert "auc" in diff and "latency" in diff and "transactions" in diff
    drift = page(client, "/models/fraud/drift?a=1.0.1&b=1.0.0")
    assert "DATASET DRIFT" in drift and "amount" in drift and "<svg" in drift
    audit = page(client, "/audit")
    assert "intact" in audit and "promote" in audit
    assert '<a href="/models/fraud/aliases/production">fraud@production</a>' in audit  # a move: the alias's history
    assert '<a href="/models/scorer/1.0.0">scorer@1.0.0</a>' in audit


def test_the_metrics_chart_has_a_point_per_version_and_marks_the_aliases(client: Any) -> None:
    html = page(client, "/models/fraud/metrics")
    chart = html[html.index("<svg") : html.index("</svg>")]
    assert chart.count("<circle") == 4 * 2  # 4 versions, 2 metrics (auc, latency_ms)
    assert "production, staging" in chart
    assert page(client, "/models/fraud/metrics?last=2").count("<circle") == 2 * 2
    assert '15 <span class="up">-5</span>' in html  # a latency going down is better
    assert '0.7 <span class="down">-0.17</span>' in html
    assert page(client, "/models/fraud/metrics?metric=auc").count("<circle") == 4


def test_a_versions_provenance_statement_has_its_page(client: Any, root: Path) -> None:
    """The statement `show --statement` prints: as JSON, and as a page of its subjects and
    dependencies, linked from the version's page."""
    statement = cli_json(root, "show", "fraud@1.0.2", "--statement")
    assert client.get("/api/models/fraud/1.0.2/provenance").json() == statement
    assert 'href="/models/fraud/1.0.2/provenance"' in page(client, "/models/fraud/1.0.2")
    html = page(client, "/models/fraud/1.0.2/provenance")
    assert statement["subject"]  # every artifact file, each with both digests on the page
    for subject in statement["subject"]:
        row = f'<td>{subject["name"]}</td><td class="mono">{subject["digest"]["sha256"]}</td>'
        assert row + f'<td class="mono">{subject["digest"]["blake3"]}</td>' in html, subject["name"]
    commit = next(d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"] if d["name"] == "source")
    assert f"gitCommit:{commit['digest']['gitCommit']}" in html
    assert "Unsigned" in html or "Signed by" in html
    assert 'href="/api/models/fraud/1.0.2/provenance"' in html
    missing = client.get("/api/models/fraud/9.9.9/provenance")
    assert missing.status_code == 404 and "Traceback" not in missing.text


def test_the_json_api_mirrors_the_cli(client: Any, root: Path) -> None:
    assert client.get("/api/models/fraud/1.0.2").json() == cli_json(root, "show", "fraud@1.0.2")
    listed = client.get("/api/models/fraud/versions?order=asc&size=500").json()
    assert listed["versions"] == cli_json(root, "versions", "fraud")
    assert client.get("/api/models/fraud/diff?a=1.0.0&b=1.0.2").json() == cli_json(
        root, "diff", "fraud@1.0.0", "fraud@1.0.2"
    )
    assert client.get("/api/models/fraud/1.0.2/lineage").json() == cli_json(root, "lineage", "fraud@1.0.2")
    history = client.get("/api/models/fraud/aliases/production").json()
    assert history == cli_json(root, "alias", "history", "fraud", "production")
    metrics = client.get("/api/models/fraud/metrics?last=100000").json()
    assert {k: v for k, v in metrics.items()} == {
        k: v for k, v in cli_json(root, "metrics", "fraud").items() if k != "plot"
    }
    drift = client.get("/api/models/fraud/drift?a=1.0.1&b=1.0.0").json()
    assert drift == cli_json(root, "drift", "fraud@1.0.1", "fraud@1.0.0")
    audit = client.get("/api/audit?verify=true").json()
    assert audit == cli_json(root, "audit", "--verify")
    models = client.get("/api/models").json()
    assert [m["name"] for m in models] == ["fraud", "scorer"] and models[0]["versions"] == 4


def test_pages_of_versions_follow_one_another_both_ways(client: Any) -> None:
    def versions(url: str) -> tuple[list[str], str | None, str | None]:
        found = client.get(url).json()
        return [r["version"] for r in found["versions"]], found["before"], found["after"]

    assert versions("/api/models/fraud/versions?size=3") == (["1.0.3", "1.0.2", "1.0.1"], None, "1.0.1")
    assert versions("/api/models/fraud/versions?size=3&after=1.0.1") == (["1.0.0"], "1.0.0", None)
    assert versions("/api/models/fraud/versions?size=3&before=1.0.0") == (["1.0.3", "1.0.2", "1.0.1"], None, "1.0.1")
    assert versions("/api/models/fraud/versions?size=3&last=true") == (["1.0.2", "1.0.1", "1.0.0"], "1.0.2", None)
    assert versions("/api/models/fraud/versions?size=2&order=asc&after=1.0.1") == (["1.0.2", "1.0.3"], "1.0.2", None)
    by_auc = versions("/api/models/fraud/versions?sort=auc&size=2")
    assert by_auc == (["1.0.1", "1.0.2"], None, "1.0.2")  # 0.88, 0.87, then 0.85 and 0.7
    assert versions("/api/models/fraud/versions?sort=auc&size=2&after=1.0.2")[0] == ["1.0.0", "1.0.3"]
    html = page(client, "/models/fraud?size=2")
    assert 'rel="next" class="next" href="/models/fraud?after=1.0.2&amp;order=desc&amp;size=2"' in html


def test_filters_are_those_of_versions_where(client: Any, root: Path) -> None:
    found = client.get("/api/models/fraud/versions?where=auc>0.86&order=asc").json()
    assert found["versions"] == cli_json(root, "versions", "fraud", "--where", "auc>0.86") and found["count"] == 2
    tagged = client.get("/api/models/fraud/versions?tag=team=risk").json()
    assert [r["version"] for r in tagged["versions"]] == ["1.0.2"]
    html = page(client, "/models/fraud?where=auc%3E0.86")
    assert "2 versions match" in html and ">1.0.0<" not in html


def test_what_production_served_on_a_date(client: Any) -> None:
    found = client.get("/api/models/fraud/aliases/production?at=2000-01-01").json()
    assert found["at"]["targets"] == []
    later = client.get("/api/models/fraud/aliases/production?at=2999-01-01").json()
    assert later["at"]["targets"] == [["1.0.1", 1.0]]
    html = page(client, "/models/fraud/aliases/production?at=2999-01-01&time=12:00")
    assert "pointed to" in html and "<b>1.0.1</b>" in html and 'class="timeline"' in html


def test_a_tag_holding_markup_is_shown_as_text(client: Any) -> None:
    response = client.get("/models/fraud/1.0.2")
    assert (
        XSS not in response.text
        and "<script" not in response.text
        and "onerror=alert" not in response.text.replace("onerror=alert(1)&gt;", "")
    )
    assert "&lt;script&gt;alert(&#34;tag&#34;)&lt;/script&gt;" in response.text
    assert "script-src" not in response.headers["content-security-policy"]  # so no script may run at all
    assert "default-src 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("url", "status", "said"),
    [
        ("/models/nope", 404, "no model named 'nope'"),
        ("/models/fraud/9.9.9", 404, "no version fraud@9.9.9"),
        ("/models/fraud/..%2F..%2Fetc%2Fpasswd", 404, "no page /models/fraud/../../etc/passwd"),
        ("/models/fraud/aliases/canary", 404, "fraud@canary has never been set"),
        ("/models/fraud?where=bogus%3E1", 400, "no version of fraud has a metric 'bogus'"),
        ("/models/fraud?where=auc%3E%3E1", 400, "auc>>1"),
        ("/models/fraud?size=abc", 400, "bad parameter: size"),
        ("/models/fraud?after=7.7.7", 400, "no version fraud@7.7.7"),
        ("/models/fraud?tag=oops", 400, "is not KEY=VALUE"),
        ("/models/fraud/aliases/production?at=yesterday", 400, "is not a date"),
        ("/models/fraud/diff?a=1.0.0", 400, "say which version b is"),
        ("/models/fraud/drift?a=1.0.0&b=scorer@1.0.0", 400, "scorer@1.0.0 has no data profiles"),
        ("/no/such/page", 404, "no page /no/such/page"),
    ],
)
def test_errors_are_clear_pages_and_json(client: Any, url: str, status: int, said: str) -> None:
    text = page(client, url, status)
    assert said in text.replace("&#39;", "'").replace("&gt;", ">"), text
    if url.startswith("/models/"):
        path, _, query = url.partition("?")
        if path.count("/") == 2:  # the versions page's data is at /api/models/NAME/versions
            path += "/versions"
        found = client.get(f"/api{path}?{query}")
        assert found.status_code == status and found.json()["message"] and "Traceback" not in found.text


def test_nothing_but_get_is_served(client: Any) -> None:
    for url in ("/", "/models/fraud", "/models/fraud/1.0.2", "/api/models", "/audit"):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            response = client.request(method, url)
            assert response.status_code == 405, (method, url)
    assert not re.search(r"<form[^>]*method=\"post\"", page(client, "/models/fraud/1.0.2"), re.IGNORECASE)
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404


def test_serve_without_the_web_extra_says_what_to_install(tmp_path: Path) -> None:
    # A fastapi that cannot be imported, as on a machine without the extra.
    blocker = tmp_path / "block"
    (blocker / "fastapi").mkdir(parents=True)
    (blocker / "fastapi" / "__init__.py").write_text("raise ImportError('no fastapi', name='fastapi')\n")
    repo = Repo(tmp_path / "repo")
    repo.write("modelspec.yaml", "")
    repo.commit("init")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    done = subprocess.run([sys.executable, "-m", "modelspec", "serve", "--port", "1"], cwd=repo.path, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "pip install 'modelspec[web]'" in done.stderr and "Traceback" not in done.stderr


def test_loopback_is_told_apart() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.3.2.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.com")


def test_the_audit_page_finds_a_table_edited_behind_its_back(root: Path, tmp_path: Path) -> None:
    import sqlite3

    from fastapi.testclient import TestClient

    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    with contextlib.chdir(copy), api.open_catalog(read_only=True) as catalog:
        client = TestClient(create_app(catalog), raise_server_exceptions=False)
        assert "intact" in page(client, "/audit")
        with sqlite3.connect(copy / ".modelspec" / "registry.db") as db:
            db.execute("UPDATE metrics SET value = 0.99 WHERE key = 'auc'")
        assert "intact" in page(client, "/audit")  # the verdict kept: no new event
        fresh = page(client, "/audit?fresh=true")
        assert "TAMPERED" in fresh and "intact" not in fresh
        found = client.get("/api/audit?verify=true").json()
        assert found["ok"] is False and found["problems"]


def test_serve_on_a_port_that_is_taken_is_a_clear_error(root: Path) -> None:
    repo = Repo.__new__(Repo)
    repo.path = root
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = repo.cli("serve", "--port", str(port))
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr, done.stderr
    assert "--port" in done.stderr and "Traceback" not in done.stderr
    assert "read-only web view" in repo.cli("serve", "--help").stdout


def test_the_same_view_over_a_postgresql_registry(root: Path, tmp_path: Path, postgres_url: str, client: Any) -> None:
    """The registry copied to PostgreSQL (`registry copy`) and named in modelspec.yaml: every
    JSON answer is the one the SQLite registry gives, pages and charts included."""
    from fastapi.testclient import TestClient

    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    repo = Repo.__new__(Repo)
    repo.path = copy
    assert repo.cli("registry", "copy", "--to", postgres_url).returncode == 0
    (copy / "modelspec.yaml").write_text(f"registry: {postgres_url}\n")
    urls = [
        "/api/models",
        "/api/models/fraud/versions?size=3",
        "/api/models/fraud/versions?size=3&after=1.0.1",
        "/api/models/fraud/versions?size=3&last=true",
        "/api/models/fraud/versions?sort=auc&size=2&after=1.0.2",
        "/api/models/fraud/versions?where=auc>0.86&tag=team=risk",
        "/api/models/fraud/metrics?last=3",
        "/api/models/fraud/1.0.2",
        "/api/models/fraud/aliases/production?at=2999-01-01",
        "/api/models/fraud/diff?a=1.0.0&b=1.0.2",
        "/api/audit?verify=true&limit=5",
    ]
    with contextlib.chdir(copy), api.open_catalog(read_only=True) as catalog:
        assert catalog.info()["backend"] == "postgresql"
        served = TestClient(create_app(catalog), raise_server_exceptions=False)
        for url in urls:
            assert served.get(url).json() == client.get(url).json(), url
        assert served.get("/models/fraud/metrics").text.count("<circle") == 4 * 2
