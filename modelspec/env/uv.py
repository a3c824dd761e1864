"""uv environments: a relocatable venv installed from a hash-pinned lock, and `env lock`.

uv installs with `--require-hashes --no-build`: without `--no-build`, a wheel whose hash
does not match would silently be replaced by a build from source. It copies (never
hardlinks) from its cache, so a write into one environment reaches neither uv's cache nor
any other environment. Every helper runs with `die_with_parent`: killed, modelspec leaves
no uv writing into a half-made environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ..children import die_with_parent
from ..errors import EnvironmentBuildError
from ..spec.locklines import option_lines
from ..spec.yamlsource import open_regular
from ..store.files import remove_path


def uv_bin() -> str:
    import uv

    return str(uv.find_uv_bin())


def create_uv(temp: Path, python: str, lock_object: Path, lock_name: str, offline: bool) -> dict[str, Any]:
    interpreter = find_interpreter(python)
    uv = uv_bin()
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "VIRTUAL_ENV": ""}
    _uv([uv, "venv", "--quiet", "--relocatable", "--python", interpreter, str(temp)], env)
    requirements = lock_object
    if lock_name.endswith("uv.lock"):
        requirements = _export_uv_lock(uv, lock_object, temp, env)
    else:
        problems = option_lines(lock_object.read_text(errors="replace"))
        if problems:  # a lock made before such lines were refused at resolution
            line, message = problems[0]
            raise EnvironmentBuildError(f"{lock_name}:{line}: {message}")
    sync = [
        uv,
        "pip",
        "sync",
        "--quiet",
        "--python",
        str(temp / "bin" / "python"),
        "--require-hashes",
        "--no-build",
        # A copy, never a hardlink into uv's cache: a write into this environment must not
        # reach the cache and, through it, every other environment.
        "--link-mode",
        "copy",
        str(requirements),
    ]
    if offline:
        sync.append("--offline")
    _uv(sync, env, hint="with --offline, run once without it (online) to fill uv's cache" if offline else "")
    (temp / "requirements.txt").unlink(missing_ok=True)  # the exported uv.lock: not part of the venv
    base = _base_prefix(temp)  # the venv's python is a symlink to it: mount it where it is
    return {"binds": [[base, base]] if base else [], "hidden": _site_packages(interpreter)}


def _site_packages(interpreter: str) -> list[str]:
    """The base interpreter's site-packages (and dist-packages) directories that exist."""
    script = (
        "import json, os, site, sysconfig\n"
        "found = site.getsitepackages() + [sysconfig.get_path('purelib'), sysconfig.get_path('platlib')]\n"
        "print(json.dumps(sorted({os.path.normpath(p) for p in found if os.path.isdir(p)})))"
    )
    found = _run([interpreter, "-I", "-S", "-c", script], {**os.environ})
    if found.returncode != 0:
        raise EnvironmentBuildError(f"{interpreter} could not name its site-packages:\n{found.stderr.strip()}")
    return [str(p) for p in json.loads(found.stdout)]


def find_interpreter(python: str) -> str:
    """The path of an interpreter of version `python` on this machine, or a clear error."""
    uv = uv_bin()
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    found = _run([uv, "python", "find", "--no-project", python], env)
    if found.returncode == 0:
        return found.stdout.strip()
    listing = _run([uv, "python", "list", "--only-installed", "--output-format", "json"], env)
    try:
        versions = sorted({f"{e['version']} ({e['path']})" for e in json.loads(listing.stdout)})
    except ValueError:
        versions = []
    raise EnvironmentBuildError(
        f"no Python {python} interpreter on this machine; found: {', '.join(versions) or 'none'}",
        hint=f"install Python {python} (e.g. apt-get install python{python}) or change environment.python",
    )


def _export_uv_lock(uv: str, lock_object: Path, temp: Path, env: dict[str, str]) -> Path:
    project = Path(tempfile.mkdtemp(dir=temp, prefix="uvlock-"))  # inside: a kill leaves nothing else
    try:
        (project / "uv.lock").write_bytes(lock_object.read_bytes())
        out = _uv(
            [
                uv,
                "export",
                "--frozen",
                "--no-emit-project",
                "--format",
                "requirements-txt",
                "--directory",
                str(project),
            ],
            env,
        )
        requirements = temp / "requirements.txt"
        requirements.write_text(out)
        return requirements
    finally:
        remove_path(project)


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a helper that dies with modelspec: killed, modelspec must leave no uv writing
    into a half-made environment."""
    return subprocess.run(argv, capture_output=True, text=True, env=env, preexec_fn=die_with_parent)


def _uv(argv: list[str], env: dict[str, str], hint: str = "") -> str:
    result = _run(argv, env)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        if "hash" in detail.lower() and "mismatch" in detail.lower():
            raise EnvironmentBuildError(
                f"hash mismatch while installing the environment:\n{detail}",
                hint="the lock does not match the published packages; re-lock with `modelspec env lock`",
            )
        raise EnvironmentBuildError(f"`uv {argv[1]}` failed:\n{detail}", hint=hint)
    return result.stdout


def _base_prefix(venv: Path) -> str:
    """The base interpreter's prefix (pyvenv.cfg `home` is its bin directory)."""
    for line in (venv / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return str(Path(value.strip()).parent)
    return ""


def lock_requirements(requirements_in: Path, output: Path, python: str) -> None:
    """Write a hash-pinned lock for `requirements_in` (`uv pip compile --generate-hashes`)."""
    open_regular(requirements_in, os.path.relpath(requirements_in)).close()  # uv would block on a FIFO
    env = {
        **os.environ,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_CUSTOM_COMPILE_COMMAND": f"modelspec env lock {requirements_in.name}",
    }
    _uv(
        [
            uv_bin(),
            "pip",
            "compile",
            "--quiet",
            "--generate-hashes",
            "--python-version",
            python,
            str(requirements_in),
            "-o",
            str(output),
        ],
        env,
    )

