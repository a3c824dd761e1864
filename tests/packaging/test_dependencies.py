"""The install a user gets: every third-party import is a declared dependency, and every
subpackage ships. A machine with extra packages installed hides both mistakes from the
rest of the suite."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "modelspec"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    """The dependencies and the optional extras a user installs for a feature (`s3`); the
    `test` extra is not for users, so it declares nothing modelspec may import."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [req for name, reqs in project["optional-dependencies"].items() if name != "test" for req in reqs]
    return {_normalized(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0]) for req in [*project["dependencies"], *extras]}


def _optional() -> set[str]:
    """The extras a user may leave out (`plot`), not those of the test suite."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("optional-dependencies", {})
    return {
        _normalized(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0])
        for extra, requirements in extras.items()
        if extra != "test"
        for req in requirements
    }


def _guarded(tree: ast.AST) -> set[ast.AST]:
    """Imports inside `try: … except ImportError:`: an optional extra's, which say what to install."""
    found: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            found |= {inner for statement in node.body for inner in ast.walk(statement)}
    return found


def _third_party_imports(optional: bool = False) -> dict[str, list[str]]:
    """Top-level module name → the places that import it: unguarded imports, or with
    `optional` those inside `try: … except ImportError`."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        guarded = _guarded(tree)
        for node in ast.walk(tree):
            if (node in guarded) != optional:
                continue
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top != "modelspec" and top not in sys.stdlib_module_names:
                    found.setdefault(top, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_third_party_import_is_a_declared_dependency() -> None:
    declared = _declared()
    providers = packages_distributions()
    undeclared = []
    for module, places in _third_party_imports().items():
        distributions = {_normalized(d) for d in providers.get(module, [])}
        if not distributions & declared:
            undeclared.append(f"{module!r} (from {', '.join(sorted(distributions)) or 'no installed distribution'}),"
                              f" imported at {places[0]}")
    assert not undeclared, "imports not declared in pyproject.toml [project].dependencies:\n" + "\n".join(undeclared)


def test_an_optional_import_is_an_extra_and_guarded() -> None:
    """matplotlib (the `plot` extra) may be missing: its import must say what to install."""
    optional = _optional()
    providers = packages_distributions()
    for module, places in _third_party_imports(optional=True).items():
        distributions = {_normalized(d) for d in providers.get(module, [module])}
        assert distributions & optional, f"{module!r}, imported at {places[0]}, is not an optional extra"
    assert "matplotlib" in optional


def test_the_checker_sees_an_undeclared_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The test above must be able to fail: a module importing something undeclared is reported.
    fake = tmp_path / "modelspec"
    fake.mkdir()
    (fake / "x.py").write_text("import pytest\nimport json\nfrom modelspec import y\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert list(_third_party_imports()) == ["pytest"]


def test_every_subpackage_is_in_the_distribution() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = config["packages"]["find"]["include"]
    shipped = set(find_packages(str(ROOT), include=include))
    on_disk = {".".join(p.relative_to(ROOT).parent.parts) for p in PACKAGE.rglob("__init__.py")}
    assert on_disk <= shipped, f"subpackages missing from the wheel: {sorted(on_disk - shipped)}"
