"""Resolution: a validated `Spec` → its `Lock` (commit, code digests, data digests,
composed config, environment digest). Every problem is a located `SpecError`."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..digest import canonical_json, digest_json, hex_of
from ..errors import GitError, ModelspecError, Problem, SpecError, StoreError, did_you_mean
from ..spec.lockdata import (
    FromData,
    FromStage,
    LockData,
    PathData,
    RegisteredData,
    SpecOutputData,
    StageInput,
    StageLock,
)
from ..spec.model import PLACEHOLDER, ConfigSource, Lock, Override, Spec, Stage
from ..store.objects import digest_path, walk_path
from ..store.statcache import StatCache
from . import gitcode
from .hydraconfig import ConfigError, compose, config_files, config_keys, select_params, subtree


@dataclass
class ResolveContext:
    """What resolution may read and cache: the stat cache and a cache of composed configs."""

    statcache: StatCache
    cache_dir: Path
    temp_dir: Path
    allow_dirty: bool = False
    # Every check, but no hashing of data or environments: what `validate` does. The lock
    # it produces lacks those digests and must never be written or keyed.
    check_only: bool = False
    # (model, range or alias, output, allowed marks) → the lock's data entry of a registered
    # artifact; injected by the API layer, which owns the registry.
    registered: Callable[[str, str, str, tuple[str, ...]], dict[str, Any]] | None = None
    # Cache files to write once every spec resolved: a rejected spec writes nothing.
    pending: dict[Path, bytes] = field(default_factory=dict)
    # The workspace's own directories (store, registry): no data path may point into them,
    # nor hold them, or a stage would be handed the registry database.
    private: tuple[Path, ...] = ()


def resolve_spec(spec: Spec, overrides: Sequence[Override], ctx: ResolveContext) -> tuple[Lock, list[gitcode.CodeFile]]:
    """The spec's lock, and the code files it pins (for exporting the snapshot), composed
    with the command-line `overrides` that apply to it."""
    problems: list[Problem] = []
    code, files = _resolve_code(spec, ctx, problems)
    data = _resolve_data(spec, ctx, problems)
    config = _resolve_config(spec, overrides, ctx, problems)
    environment = _resolve_environment(spec, ctx, problems)
    stages = {}
    code_known = "commit" in code  # else the ref did not resolve, reported already
    index = _CodeIndex(files) if code_known else None
    # Every key of the config, to suggest one: listed only on a mistake, once for all stages.
    keys = functools.cache(functools.partial(config_keys, config)) if config is not None else list
    for stage in spec.stages.values():
        dirty = bool(code.get("dirty"))
        stages[stage.name] = _lock_stage(spec, stage, index, dirty, config, keys, problems)
    if problems:
        raise SpecError(problems)
    lock = Lock(
        name=spec.name,
        version=spec.version,
        spec_path=os.path.relpath(spec.path, spec.repo_root),
        code=code,
        data=data,
        config=config or {},
        environment=environment,
        hermetic=spec.hermetic,
        stages=stages,
        artifacts=spec.artifacts,
    )
    return lock, files


def _resolve_code(
    spec: Spec, ctx: ResolveContext, problems: list[Problem]
) -> tuple[dict[str, Any], list[gitcode.CodeFile]]:
    repo = spec.repo_root
    try:
        commit = gitcode.resolve_commit(repo, spec.ref)
    except GitError as exc:
        problems.append(spec.document.problem(("code", "ref"), exc.message))
        return {"ref": spec.ref}, []
    paths = sorted({p for stage in spec.stages.values() for p in stage.code})
    # `dirty` records what was built, not the flag: --allow-dirty on files that match the
    # commit is a clean build, the same version as one without the flag.
    dirty = gitcode.dirty_files(repo, commit.sha, paths)
    if dirty and not ctx.allow_dirty:
        shown = "\n  ".join(dirty[:20]) + ("\n  …" if len(dirty) > 20 else "")
        raise GitError(
            f"{spec.shown}: declared code paths differ from commit {commit.sha[:12]}:\n  {shown}",
            hint="commit the changes, or build the working files with --allow-dirty",
        )
    files = gitcode.working_files(repo, paths) if dirty else gitcode.committed_files(repo, commit.sha, paths)
    for bad in gitcode.escaping_symlinks(repo, files, bool(dirty)):
        problems.append(spec.document.problem(("code",), f"symlink points out of the repository: {bad}"))
    code = {"ref": spec.ref, "commit": commit.sha, "time": commit.time, "dirty": bool(dirty)}
    return code, files


def _resolve_data(spec: Spec, ctx: ResolveContext, problems: list[Problem]) -> dict[str, LockData]:
    data: dict[str, LockData] = {}
    root = spec.repo_root.resolve()
    for name, source in spec.data.items():
        where = ("data", name)
        if source.path is not None:
            full = spec.repo_root / source.path
            if not full.exists():
                problems.append(spec.document.problem((*where, "path"), f"{source.path} does not exist"))
                continue
            if not full.resolve().is_relative_to(root):
                problems.append(spec.document.problem((*where, "path"), f"{source.path} leads out of the repository"))
                continue
            private = _private_overlap(full.resolve(), ctx.private)
            if private is not None:
                shown = os.path.relpath(private, spec.repo_root) if private.is_relative_to(root) else str(private)
                inside = full.resolve().is_relative_to(private)
                problems.append(
                    spec.document.problem(
                        (*where, "path"),
                        f"{source.path} {'points into' if inside else 'holds'} the workspace's own directory"
                        f" {shown} (store and registry), which no stage may read; name data outside it",
                    )
                )
                continue
            try:
                if ctx.check_only:  # walk the tree for what a snapshot refuses, reading no bytes
                    walk_path(full, lambda _file: "", lambda _tree: "")
                    data[name] = PathData(source.path, {})
                    continue
                entry = digest_path(full, ctx.statcache.digest)
            except StoreError as exc:
                problems.append(spec.document.problem((*where, "path"), exc.message))
                continue
            data[name] = PathData(source.path, entry.to_dict())
        elif source.selector is not None:
            if ctx.registered is None:
                problems.append(spec.document.problem((*where, "spec"), "no registry to resolve it from"))
                continue
            try:
                pinned = ctx.registered(str(source.spec), source.selector, str(source.output), source.allow)
                data[name] = RegisteredData.from_dict(pinned)
            except ModelspecError as exc:
                problems.append(
                    spec.document.problem((*where, "spec"), exc.message + (f"; {exc.hint}" if exc.hint else ""))
                )
        else:
            data[name] = SpecOutputData(str(source.spec), str(source.output))
    return data


def _private_overlap(path: Path, private: Sequence[Path]) -> Path | None:
    """The workspace directory that `path` lies in or contains, if any."""
    for directory in private:
        if path.is_relative_to(directory) or directory.is_relative_to(path):
            return directory
    return None


def _resolve_config(
    spec: Spec, overrides: Sequence[Override], ctx: ResolveContext, problems: list[Problem]
) -> dict[str, Any] | None:
    if spec.config is None:
        for override in overrides:
            problems.append(override.problem(f"{spec.shown} has no `config` to override"))
        return {}
    config_dir = spec.repo_root / spec.config.dir
    if not config_dir.is_dir():
        problems.append(spec.document.problem(("config", "dir"), f"{spec.config.dir} is not a directory"))
        return None
    if not config_dir.resolve().is_relative_to(spec.repo_root.resolve()):
        problems.append(spec.document.problem(("config", "dir"), f"{spec.config.dir} leads out of the repository"))
        return None
    own = len(spec.config.overrides)
    all_overrides = [*spec.config.overrides, *(o.text for o in overrides)]
    try:
        return _cached_compose(config_dir, spec.config, all_overrides, ctx)
    except ConfigError as exc:
        key = f" ({exc.key})" if exc.key else ""
        message = f"cannot compose the config{key}: {exc}"
        if exc.override is not None and exc.override >= own:  # given on the command line
            problems.append(overrides[exc.override - own].problem(f"{spec.shown}: {message}"))
        else:
            where: tuple[str | int, ...] = ("config", exc.field) if exc.field else ("config",)
            if exc.override is not None:
                where = ("config", "overrides", exc.override)
            problems.append(spec.document.problem(where, message))
        return None


def _cached_compose(
    config_dir: Path, source: ConfigSource, overrides: list[str], ctx: ResolveContext
) -> dict[str, Any]:
    """Compose once per (config files, name, overrides); importing Hydra costs ~0.3 s.
    The key holds every file a composition can read: composition is confined to the config
    dir, whose files are walked through symlinks (which must stay inside it)."""
    files = {name: ctx.statcache.digest(path) for name, path in config_files(config_dir, source.dir).items()}
    # Bump the format when composition itself changes, so that stale results are not reused.
    key = digest_json({"format": 3, "files": files, "name": source.name, "overrides": overrides})
    cached = ctx.cache_dir / "config" / f"{hex_of(key)}.json"
    try:
        result: dict[str, Any] = json.loads(cached.read_bytes())
        return result
    except (FileNotFoundError, ValueError):
        pass
    config = compose(config_dir, source.name, overrides)
    ctx.pending[cached] = canonical_json(config)
    return config


def _resolve_environment(spec: Spec, ctx: ResolveContext, problems: list[Problem]) -> dict[str, Any] | None:
    env = spec.environment
    if env is None:
        return None
    field = "lock" if env.lock else "nix"
    relative = env.lock or env.nix or ""
    full = spec.repo_root / relative
    if not full.is_file():
        problems.append(spec.document.problem(("environment", field), f"{relative} is not a file"))
        return None
    if not full.resolve().is_relative_to(spec.repo_root.resolve()):
        problems.append(spec.document.problem(("environment", field), f"{relative} leads out of the repository"))
        return None
    kind = "uv" if env.lock else "nix"
    if kind == "nix" and full.parent.resolve() == spec.repo_root.resolve():
        # A nix file may import the files beside it: they are part of the environment.
        problems.append(
            spec.document.problem(
                ("environment", "nix"), "put the nix file in a directory of its own (its directory is hashed)"
            )
        )
        return None
    if ctx.check_only:
        return {"kind": kind, "python": env.python, "file": relative}
    file_digest = ctx.statcache.digest(full)
    pinned = {"kind": kind, "python": env.python, "file": relative, "file_digest": file_digest}
    content = file_digest
    if kind == "nix":
        content = digest_path(full.parent, ctx.statcache.digest).digest
        pinned["dir_digest"] = content
    # The digest names the environment by what it contains, not where its file lives.
    return {**pinned, "digest": digest_json({"kind": kind, "python": env.python, "content": content})}


class _CodeIndex:
    """The code files at the resolved commit, and the files and digest under each set of code
    paths, each worked out once: stages of a spec mostly share their code paths, and a walk of
    every file for each of 10,000 stages would cost seconds in a large repository."""

    def __init__(self, files: list[gitcode.CodeFile]) -> None:
        self.files = files
        self._under: dict[tuple[str, ...], list[gitcode.CodeFile]] = {}
        self._digests: dict[tuple[str, ...], str] = {}

    def under(self, paths: tuple[str, ...]) -> list[gitcode.CodeFile]:
        if paths not in self._under:
            self._under[paths] = gitcode.files_under(self.files, paths)
        return self._under[paths]

    def digest(self, paths: tuple[str, ...]) -> str:
        if paths not in self._digests:
            self._digests[paths] = gitcode.code_digest(self.under(paths))
        return self._digests[paths]


def _lock_stage(
    spec: Spec,
    stage: Stage,
    files: _CodeIndex | None,
    dirty: bool,
    config: dict[str, Any] | None,
    keys: Callable[[], list[str]],
    problems: list[Problem],
) -> StageLock:
    """The stage's lock entry. `files` is None when the commit is unknown; `config` is None
    when it could not be composed (both reported already)."""
    where = ("stages", stage.name)
    for i, path in enumerate(stage.code):
        if files is not None and not files.under((path,)):
            place = "in the working tree" if dirty else "at the resolved commit (is it committed?)"
            problems.append(spec.document.problem((*where, "code", i), f"{path} holds no files {place}"))
    params: dict[str, Any] = {}
    if config is not None:
        for i, dotted in enumerate(stage.params):
            found, _value = subtree(config, dotted)
            if not found:
                problems.append(
                    spec.document.problem(
                        (*where, "params", i), f"config key {dotted!r} does not exist{did_you_mean(dotted, keys())}"
                    )
                )
        for token in stage.argv:
            for match in PLACEHOLDER.finditer(token):
                space, _, dotted = match.group(1).partition(".")
                if space == "config" and dotted and not subtree(config, dotted)[0]:
                    problems.append(
                        spec.document.problem(
                            (*where, "cmd"),
                            f"placeholder ${{{match.group(1)}}} names no key of the composed config"
                            f"{did_you_mean(dotted, keys())}",
                        )
                    )
        params = select_params(config, [p for p in stage.params if subtree(config, p)[0]])
    code_digest = files.digest(tuple(stage.code)) if files is not None else gitcode.code_digest([])
    inputs: dict[str, StageInput] = {}
    for item in stage.inputs:
        if "." in item:
            upstream, _, output = item.partition(".")
            inputs[item] = FromStage(upstream, output)
        else:
            inputs[item] = FromData(item)
    return StageLock(
        argv=tuple(stage.argv),
        shell=stage.shell,
        code_paths=tuple(stage.code),
        code_digest=code_digest,
        params=params,
        inputs=inputs,
        outputs=dict(stage.outputs),
        metrics=stage.metrics,
        limits=dict(stage.limits) if stage.limits else None,
        resources=dict(stage.resources) if stage.resources else None,
    )
