"""Spec files → validated `Spec` values: YAML, schema, then the checks a schema cannot express.

Every problem of a file is collected and raised together as one `SpecError`.
"""

from __future__ import annotations

import graphlib
import os
import shlex
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import Location, Problem, SpecError, UsageError
from .gates import drift_problems, gate_problems, gates_of
from .locklines import option_lines
from .markers import known_valid, marker_path
from .model import (
    PLACEHOLDER,
    ConfigSource,
    DataSource,
    EnvironmentSpec,
    Spec,
    Stage,
)
from .schema import WORKSPACE_FILE, validate
from .yamlsource import Document, parse_document, read_regular_file, read_spec_bytes


def shown_path(path: Path) -> str:
    """How a file is named in messages: relative to the working directory when inside it."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def load_spec(path: Path, cache_dir: Path | None = None) -> Spec:
    """Load and check one spec. With `cache_dir`, a spec whose bytes already passed the
    schema is not validated again (importing jsonschema costs a no-op build ~0.1 s): the
    caller records `spec.schema_marker` once the spec has been resolved without error."""
    path = Path(os.path.abspath(path))
    shown = shown_path(path)
    if path.suffix == ".lock":
        raise UsageError(f"{shown}: this is a lock file, pass the spec ({shown_path(spec_of_lock(path))})")
    if path.name == WORKSPACE_FILE:
        raise UsageError(
            f"{shown}: this is the workspace file, not a spec",
            hint=f"pass a spec (e.g. specs/fraud.yaml); `modelspec validate {shown}` checks the workspace file",
        )
    raw = read_spec_bytes(path, shown)
    marker = None
    if cache_dir is not None:
        marker = marker_path(cache_dir, raw)
    known = known_valid(marker)
    checked = known is not None
    if isinstance(known, dict):
        document = Document(shown, known, source=raw)  # located from `raw` if a problem needs it
    else:
        document = parse_document(raw, shown, checked=checked)
    # The schema and the checks of `check_semantics` read nothing but these bytes: bytes that
    # passed them before pass them again.
    problems = [] if checked else [*validate(document), *check_semantics(document)]
    if problems:
        raise SpecError(problems)
    repo_root = find_repo_root(path.parent / document.data.get("code", {}).get("repo", "."))
    if repo_root is None:
        raise SpecError(
            [document.problem(("code", "repo"), "is not inside a git repository")],
            hint="point code.repo at a git checkout (run `git init` there first)",
        )
    problems = _environment_lock_problems(document, repo_root)
    if problems:
        raise SpecError(problems)
    return _to_spec(document, path, repo_root, marker if marker is not None and not marker.exists() else None)


def spec_of_lock(lock: Path) -> Path:
    """The spec a lock file was written for (`specs/x.lock` → `specs/x.yaml`)."""
    candidates = [lock.with_suffix(suffix) for suffix in (".yaml", ".yml")]
    return next((c for c in candidates if c.is_file()), candidates[0])


_MAX_LOCK_BYTES = 64 << 20


def _environment_lock_problems(document: Document, repo_root: Path) -> list[Problem]:
    """Option lines in a requirements lock (`-r FILE`, `--index-url`…): uv would install what
    they bring in, but the environment's digest covers only the lock's own bytes."""
    relative = (document.data.get("environment") or {}).get("lock")
    if not isinstance(relative, str) or relative.endswith("uv.lock"):
        return []
    full = repo_root / relative
    if not full.is_file() or not full.resolve().is_relative_to(repo_root.resolve()):
        return []  # reported when the spec is resolved
    shown = shown_path(full)
    text = read_regular_file(full, shown, _MAX_LOCK_BYTES, "an environment lock").decode("utf-8", "replace")
    return [Problem(Location(shown, line, 1), "", message) for line, message in option_lines(text)]


def find_repo_root(start: Path) -> Path | None:
    """The top level of the git work tree containing `start` (walks up to a `.git`)."""
    probe = Path(os.path.abspath(start))
    if not probe.exists():
        return None
    for candidate in (probe, *probe.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def parse_cmd(cmd: str | list[str], shell: bool) -> list[str]:
    """The argv template: a string is split like a shell would, but never run by one."""
    if shell:
        text = cmd if isinstance(cmd, str) else shlex.join(cmd)
        return ["/bin/sh", "-c", text]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def check_semantics(document: Document) -> list[Problem]:
    """Problems the schema cannot see. Defensive: runs on documents that failed the schema."""
    data: dict[str, Any] = document.data if isinstance(document.data, dict) else {}
    stages: dict[str, Any] = data["stages"] if isinstance(data.get("stages"), dict) else {}
    sources: dict[str, Any] = data["data"] if isinstance(data.get("data"), dict) else {}
    problems: list[Problem] = [*_nul_bytes(document, document.data, ()), *_long_paths(document, data)]
    outputs_of: dict[str, set[str] | None] = {  # None: missing or malformed, reported already
        name: set(stage["outputs"]) if isinstance(stage, dict) and isinstance(stage.get("outputs"), dict) else None
        for name, stage in stages.items()
    }
    for name, source in sources.items():
        spec_ref = source.get("spec") if isinstance(source, dict) else None
        if isinstance(spec_ref, str) and spec_ref.partition("@")[0] == data.get("name"):
            problems.append(document.problem(("data", name, "spec"), "a spec cannot depend on itself"))
        if isinstance(spec_ref, str) and "@" not in spec_ref and "allow" in source:
            # Another spec of the same build is built now, as it is: there is no version to choose.
            problems.append(
                document.problem(
                    ("data", name, "allow"),
                    f"allow applies to a registered version only; write spec: {spec_ref}@RANGE or {spec_ref}@ALIAS",
                )
            )
    dependencies: dict[str, set[str]] = {}
    for name, stage in stages.items():
        if isinstance(stage, dict):
            path = ("stages", name)
            problems += _check_stage(document, path, stage, set(sources), outputs_of)
            dependencies[name] = {
                item.partition(".")[0]
                for item in _list(stage.get("inputs"))
                if isinstance(item, str) and "." in item and item.partition(".")[0] in stages
            } - {name}  # reading its own output is reported by _check_stage, not as a cycle
    for i, ref in enumerate(_list(data.get("artifacts")) if "stages" in data else []):
        if isinstance(ref, str) and "." in ref and not _names_output(ref, outputs_of):
            problems.append(document.problem(("artifacts", i), f"{ref!r} is not an output of any stage"))
    problems += _check_cycle(document, dependencies)
    problems += gate_problems(document, data) + drift_problems(document, data)
    return problems


def _nul_bytes(document: Document, value: Any, path: tuple[str | int, ...]) -> Iterator[Problem]:
    """Strings holding a NUL byte: no argument, environment variable or file name can carry
    one, so a command holding it would crash the build after the stages before it ran."""
    if isinstance(value, str) and "\0" in value:
        yield document.problem(path, "holds a NUL byte, which no command, path or name can carry; remove it")
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\0" in key:
                yield document.problem((*path, key), "the key holds a NUL byte; remove it", key=True)
            else:
                yield from _nul_bytes(document, item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_bytes(document, item, (*path, index))


MAX_PATH_BYTES = 1024
MAX_NAME_BYTES = 255


def _long_paths(document: Document, data: dict[str, Any]) -> Iterator[Problem]:
    """Paths the filesystem cannot hold (PATH_MAX, NAME_MAX count bytes; the schema counts
    characters, so a path of non-ASCII names can pass it and still be too long)."""
    config, environment = _dict(data.get("config")), _dict(data.get("environment"))
    fields: list[tuple[tuple[str | int, ...], Any]] = [
        (("config", "dir"), config.get("dir")),
        *((("environment", key), environment.get(key)) for key in ("lock", "nix")),
    ]
    for name, source in _dict(data.get("data")).items():
        fields.append((("data", name, "path"), _dict(source).get("path")))
    for name, stage in _dict(data.get("stages")).items():
        fields += [(("stages", name, "code", i), path) for i, path in enumerate(_list(_dict(stage).get("code")))]
        fields += [(("stages", name, "outputs", key), path) for key, path in _dict(_dict(stage).get("outputs")).items()]
    for where, value in fields:
        if (
            not isinstance(value, str)
            or len(value) > MAX_PATH_BYTES
            or any(len(n) > MAX_NAME_BYTES for n in value.split("/"))
        ):
            continue  # not a path, or too long in characters already: the schema says so
        encoded = value.encode("utf-8", "surrogatepass")
        if len(encoded) > MAX_PATH_BYTES or any(len(n) > MAX_NAME_BYTES for n in encoded.split(b"/")):
            yield document.problem(
                where,
                f"is too long: a path may be at most {MAX_PATH_BYTES} bytes in UTF-8,"
                f" each name in it at most {MAX_NAME_BYTES}",
            )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _check_stage(
    document: Document,
    path: tuple[str, ...],
    stage: dict[str, Any],
    data_names: set[str],
    outputs_of: dict[str, set[str] | None],
) -> list[Problem]:
    problems: list[Problem] = []
    # A field of the wrong type is reported by the schema; here it is unknown (None), not empty.
    inputs = [i for i in _list(stage.get("inputs")) if isinstance(i, str)]
    for i, item in enumerate(_list(stage.get("inputs"))):
        if not isinstance(item, str):
            continue
        if "." in item:
            if item.partition(".")[0] == path[1]:
                problems.append(document.problem((*path, "inputs", i), f"stage cannot read its own output {item!r}"))
            elif not _names_output(item, outputs_of):
                problems.append(document.problem((*path, "inputs", i), f"{item!r} is not an output of any stage"))
        elif item not in data_names:
            known = ", ".join(sorted(data_names)) or "none declared"
            problems.append(document.problem((*path, "inputs", i), f"undefined input {item!r} (data: {known})"))
    outputs_known = isinstance(stage.get("outputs"), dict)  # required: absent is a schema error
    outputs = stage["outputs"] if outputs_known else {}
    problems += _check_output_paths(document, path, outputs)
    metrics = stage.get("metrics")
    if isinstance(metrics, str) and outputs_known and metrics not in outputs:
        problems.append(document.problem((*path, "metrics"), f"{metrics!r} is not an output of this stage"))
    params = [p for p in _list(stage.get("params")) if isinstance(p, str)]
    cmd = stage.get("cmd")
    if isinstance(cmd, (str, list)) and all(isinstance(t, str) for t in (cmd if isinstance(cmd, list) else [cmd])):
        try:
            argv = parse_cmd(cmd, bool(stage.get("shell")))
        except ValueError as exc:
            return [*problems, document.problem((*path, "cmd"), f"cannot split the command: {exc}")]
        for token in argv:
            for match in PLACEHOLDER.finditer(token):
                if "${" in match.group(1):
                    problems.append(
                        document.problem(
                            (*path, "cmd"),
                            f"a placeholder holds another ({match.group(0)}…): placeholders cannot nest;"
                            " name the key in full",
                        )
                    )
                    continue
                message = _placeholder_problem(
                    match.group(1),
                    set(inputs) if _known(stage, "inputs", list) else None,
                    set(outputs) if outputs_known else None,
                    params if _known(stage, "params", list) else None,
                )
                if message:
                    problems.append(document.problem((*path, "cmd"), message))
    return problems


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _known(stage: dict[str, Any], key: str, kind: type) -> bool:
    """Absent (an empty default) or of the right type: not already a schema error."""
    return key not in stage or isinstance(stage[key], kind)


def _placeholder_problem(name: str, inputs: set[str] | None, outputs: set[str] | None, params: list[str] | None) -> str:
    """What is wrong with `${name}`; None for a field whose own error the schema reports."""
    space, _, rest = name.partition(".")
    if space == "inputs" and inputs is not None and rest not in inputs:
        return f"placeholder ${{{name}}} names no input of this stage (inputs: {', '.join(sorted(inputs)) or 'none'})"
    if space == "outputs" and outputs is not None and rest not in outputs:
        return (
            f"placeholder ${{{name}}} names no output of this stage (outputs: {', '.join(sorted(outputs)) or 'none'})"
        )
    if space == "config":
        if params is None:
            return ""
        if rest and not any(rest == p or rest.startswith(p + ".") for p in params):
            return f"placeholder ${{{name}}} is not under the stage's params; add {rest.split('.')[0]!r} to params"
        return ""
    if space not in ("inputs", "outputs"):
        return (
            f"unknown placeholder ${{{name}}}; use ${{inputs.NAME}}, ${{outputs.NAME}}, ${{config}} or ${{config.KEY}}"
        )
    return ""


def _check_output_paths(document: Document, path: tuple[str, ...], outputs: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[PurePosixPath, str] = {}
    for name, value in outputs.items():
        if not isinstance(value, str):
            continue
        normal = PurePosixPath(os.path.normpath(value))
        if str(normal) == ".":
            problems.append(
                document.problem((*path, "outputs", name), "must name a file or directory inside the output directory")
            )
            continue
        for other_path, other in seen.items():
            if normal == other_path or normal in other_path.parents or other_path in normal.parents:
                problems.append(
                    document.problem((*path, "outputs", name), f"path {value!r} collides with output {other!r}")
                )
        seen[normal] = name
    return problems


def _names_output(ref: str, outputs_of: dict[str, set[str] | None]) -> bool:
    """Whether `stage.output` names an output; a stage whose outputs are missing or malformed
    is already reported by the schema, so references into it are not reported again."""
    stage, _, output = ref.partition(".")
    names = outputs_of.get(stage, set())
    return names is None or output in names


def _check_cycle(document: Document, dependencies: dict[str, set[str]]) -> list[Problem]:
    try:
        graphlib.TopologicalSorter(dependencies).prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        name = document.data.get("name", "?")
        text = " → ".join(f"{name}:{stage}" for stage in cycle)
        return [document.problem(("stages", cycle[0], "inputs"), f"dependency cycle: {text}")]
    return []


def _to_spec(document: Document, path: Path, repo_root: Path, schema_marker: Path | None) -> Spec:
    raw: dict[str, Any] = document.data
    data = {}
    for name, source in (raw.get("data") or {}).items():
        spec_ref, _, selector = (source.get("spec") or "").partition("@")
        data[name] = DataSource(
            name=name,
            path=source.get("path"),
            spec=spec_ref or None,
            selector=selector or None,
            output=source.get("output"),
            allow=tuple(source.get("allow") or ()),
        )
    stages = {
        name: Stage(
            name=name,
            argv=tuple(parse_cmd(stage["cmd"], stage.get("shell", False))),
            shell=stage.get("shell", False),
            code=tuple(stage.get("code") or ()),
            inputs=tuple(stage.get("inputs") or ()),
            params=tuple(stage.get("params") or ()),
            outputs=dict(stage["outputs"]),
            metrics=stage.get("metrics"),
            limits={**stage.get("limits", {}), **({"timeout": stage["timeout"]} if "timeout" in stage else {})},
            resources=dict(stage.get("resources", {})),
        )
        for name, stage in raw["stages"].items()
    }
    config = raw.get("config")
    environment = raw.get("environment")
    code = raw.get("code") or {}
    return Spec(
        path=path,
        shown=document.file,
        name=raw["name"],
        version=raw["version"],
        description=raw.get("description", ""),
        repo_root=repo_root,
        ref=code.get("ref", "HEAD"),
        data=data,
        config=ConfigSource(config["dir"], config.get("name", "config"), tuple(config.get("overrides") or ()))
        if config
        else None,
        environment=EnvironmentSpec(**environment) if environment else None,
        hermetic=raw.get("hermetic", "auto"),
        stages=stages,
        artifacts=tuple(raw["artifacts"]),
        retention=raw.get("retention") or {},
        document=document,
        schema_marker=schema_marker,
        gates=gates_of(raw),
    )
