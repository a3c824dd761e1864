"""Configuration: compose a Hydra config directory into one canonical, fully resolved tree.

Hydra's Compose API keeps global state, so each composition runs inside its own
`initialize_config_dir` context and the global instance is cleared even after errors.
Hydra is imported only when a composition is not already cached.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import did_you_mean
from ..spec.yamlsource import file_kind
from .plainconfig import plain_config

# Resolvers whose value depends only on the config itself; anything else (`now`,
# `oc.env`, `hydra:…`, custom resolvers) could change a value without changing a key.
# `oc.create` and `oc.decode` are not here: they evaluate a string assembled at resolve
# time (`${oc.decode:${a}${b}}` can become `${oc.env:HOME}`), which no text check can see.
DETERMINISTIC_RESOLVERS = frozenset({"oc.select", "oc.deprecated", "oc.dict.keys", "oc.dict.values"})
_RESOLVER_CALL = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*:")


class ConfigError(Exception):
    """A composition problem. `key` is the dotted config key it concerns, if any,
    `override` the index (in the list given to `compose`) of the override that caused it,
    and `field` the spec's `config` field it concerns (`dir`, `name`), if any."""

    def __init__(self, message: str, key: str = "", override: int | None = None, field: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.override = override
        self.field = field


def compose(config_dir: Path, name: str, overrides: list[str]) -> dict[str, Any]:
    """The composed, resolved config as plain containers."""
    import yaml

    for index, override in enumerate(overrides):
        try:
            _check_resolvers(override, "")
            _check_confined(override, config_dir)
        except ConfigError as exc:
            raise ConfigError(str(exc), exc.key, index) from None
    _check_name(name)
    files = config_files(config_dir)
    plain = None if overrides else plain_config(files, name)
    if plain is not None:
        _walk_strings(plain, "")  # what every composed config must pass (no NUL byte, say)
        return plain
    _check_defaults_lists(config_dir, files)
    from hydra.errors import HydraException  # Hydra only past the plain case: its import is 0.15-0.2 s
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = _hydra_compose(config_dir, name, overrides)
        raw = OmegaConf.to_container(cfg, resolve=False)
        _walk_strings(raw, "")
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        # ValueError: e.g. an unparsable override, raised by Hydra's grammar.
        raise _config_error(exc, config_dir, name, overrides) from None
    except yaml.YAMLError as exc:  # a config file that is not YAML
        raise ConfigError(_plain(f"invalid YAML in the config: {exc}")) from None
    except OSError as exc:  # Hydra looked for a file no filesystem can name
        raise ConfigError(f"Hydra could not read a config: {exc.strerror}") from None
    if not isinstance(resolved, dict):
        raise ConfigError("the composed config is not a mapping")
    return {str(key): value for key, value in resolved.items()}


def _hydra_compose(config_dir: Path, name: str, overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return hydra_compose(config_name=name, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


# Hydra's messages quote the key an override could not set or delete.
_MISSING_KEY = re.compile(r"Could not override '([^']+)'|Could not delete from config\. '([^']+)' does not exist")
_OMEGACONF_DETAILS = ("full_key:", "object_type=", "reference_type=")
_OPTIONS = re.compile(r"^Available options in '([^']+)':$")


def _config_error(exc: Exception, config_dir: Path, name: str, overrides: list[str]) -> ConfigError:
    """Hydra's message with its own help kept (the `+key` suggestion, a group's options),
    a did-you-mean for a misspelled key, and which override caused it."""
    text = str(exc).strip() or type(exc).__name__
    key = str(getattr(exc, "full_key", "") or "")
    index = _failing_override(text, key, overrides)
    lines = _describe(text)
    missing = _MISSING_KEY.search(text)
    if missing and index is not None:
        others = overrides[:index] + overrides[index + 1 :]
        suggestion = did_you_mean(missing[1] or missing[2], _known_keys(config_dir, name, others))
        if suggestion:
            lines[0] = f"{lines[0].rstrip('.')} ({suggestion.removeprefix('; ')})."
    return ConfigError(_join(lines), key, index)


def _describe(text: str) -> list[str]:
    """Hydra's lines, without the config search path, a group's options on one line."""
    lines = [
        line.strip()
        for line in text.split("Config search path:")[0].splitlines()
        if line.strip() and not line.strip().startswith(_OMEGACONF_DETAILS)
    ]
    described: list[str] = []
    options: list[str] | None = None
    for line in lines:
        group = _OPTIONS.match(line)
        if group:
            options = []
            described.append(f"the options of the group are {group[1]}: ")
        elif options is not None:
            options.append(line)
            described[-1] = described[-1].split(": ", 1)[0] + ": " + ", ".join(options)
        else:
            described.append(line)
    return described or [text]


def _join(lines: list[str]) -> str:
    text = lines[0]
    for line in lines[1:]:
        text += (" " if text.endswith((".", ":", "?", "!")) else "; ") + line
    return _plain(text)


def _failing_override(text: str, full_key: str, overrides: list[str]) -> int | None:
    """The override Hydra's message names: by its text, its key, or its `group/option`;
    else the one setting the key an OmegaConf error concerns."""
    keys = [override.lstrip("+~").partition("=") for override in overrides]
    for index, (key, _, value) in enumerate(keys):
        if any(f"'{quoted}'" in text for quoted in (overrides[index], key, f"{key}/{value}")):
            return index
    return next((index for index, (key, _, _) in enumerate(keys) if full_key and key == full_key), None)


def _known_keys(config_dir: Path, name: str, overrides: list[str]) -> list[str]:
    """The keys and group names there are, to suggest one for a misspelled key."""
    from omegaconf import OmegaConf

    groups = [str(p.relative_to(config_dir)) for p in config_dir.rglob("*") if p.is_dir()]
    try:
        raw = OmegaConf.to_container(_hydra_compose(config_dir, name, overrides), resolve=False)
    except Exception:  # a suggestion is a nicety; the real error is reported anyway
        return groups
    return [*groups, *(config_keys({str(k): v for k, v in raw.items()}) if isinstance(raw, dict) else [])]


def _walk_strings(value: Any, key: str) -> None:
    """Check every string of the composed config: no nondeterministic resolver, no NUL byte
    (a value put in a command or environment variable cannot carry one)."""
    if isinstance(value, dict):
        for k, v in value.items():
            child = f"{key}.{k}" if key else str(k)
            if "\0" in str(k):
                raise ConfigError(f"the key {child!r} holds a NUL byte; remove it", key)
            _walk_strings(v, child)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _walk_strings(v, f"{key}[{i}]")
    elif isinstance(value, str):
        if "\0" in value:
            raise ConfigError(f"the value of {key} holds a NUL byte, which no command can carry; remove it", key)
        _check_resolvers(value, key)


# Composition is confined to the config dir. Hydra would also read from wherever
# `hydra.searchpath` points, a config name or group choice given as a path (`../../x`,
# `/abs`) or one of its schemes (`file://`, `pkg://`).
_SCHEME = re.compile(r"^[A-Za-z][\w+.-]*:")
_CONFINE_HINT = "composition reads only the config dir; put the configs there"


def config_files(config_dir: Path, shown: str = "") -> dict[str, Path]:
    """Every file of the config dir by its path inside it: what a composition may read.
    Symlinks are followed (each directory once, so a symlink loop ends) and must stay inside
    the config dir; a FIFO or device is refused (Hydra would block on it, or read without end)."""
    root = config_dir.resolve()
    prefix = f"{shown or config_dir}/"
    files: dict[str, Path] = {}
    seen = {root}
    pending = [(config_dir, "")]
    while pending:
        directory, relative = pending.pop()
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        for entry in entries:
            name = f"{relative}{entry.name}"
            path = Path(entry.path)
            if entry.is_symlink() and not _resolved(path).is_relative_to(root):
                raise ConfigError(
                    f"{prefix}{name} is a symlink leading out of the config dir (to {os.readlink(path)});"
                    f" {_CONFINE_HINT}",
                    field="dir",
                )
            try:
                mode = path.stat().st_mode
            except OSError:
                continue  # a dangling symlink: Hydra reports it if a config names it
            if stat.S_ISDIR(mode):
                real = _resolved(path)
                if real not in seen:
                    seen.add(real)
                    pending.append((path, f"{name}/"))
            elif stat.S_ISREG(mode):
                files[name] = path
            else:
                raise ConfigError(
                    f"{prefix}{name} is not a regular file ({file_kind(mode)}); a config dir holds only files",
                    field="dir",
                )
    return dict(sorted(files.items()))


def _resolved(path: Path) -> Path:
    """Where a path leads; a symlink loop leads nowhere (and cannot be read): to itself."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))


def _is_group(config_dir: Path, key: str) -> bool:
    try:
        return "/" in key or (config_dir / key).is_dir()
    except (OSError, ValueError):  # a name too long for a path, a NUL: no group has it
        return False


def _check_confined(override: str, config_dir: Path) -> None:
    """An override may not set Hydra's own settings (`hydra.searchpath` adds places to read
    configs from), and a group choice must name a config of the group, not a path."""
    key, _, value = override.partition("=")
    key = key.strip().lstrip("+~").strip()
    target, _, package = key.partition("@")
    if any(len(part.encode()) > 255 for part in re.split(r"[./@]", key)):
        raise ConfigError("the key has a name longer than 255 bytes, which no config or file can have", key[:40] + "…")
    for part in (target, package.removeprefix("_global_.")):
        if re.split(r"[./]", part)[0] == "hydra":
            raise ConfigError(f"an override may not change Hydra's own settings ({key!r}); {_CONFINE_HINT}", target)
    if _is_group(config_dir, target):
        for choice in value.strip().strip("[]").split(","):
            if _path_like(choice.strip().strip("'\"")) or len(choice.encode()) > 255:
                raise ConfigError(
                    f"the group choice {choice.strip()!r} is a path; name a config of the group {target!r}"
                    f" (a file in {target}/ of the config dir)",
                    target,
                )


def _path_like(text: str) -> bool:
    return text.startswith("/") or _leaves(text)


def _leaves(text: str) -> bool:
    """`..` or a scheme: a path Hydra would look for outside the config dir. (A leading `/`
    in a defaults list is relative to the config dir, the only search path left.)"""
    return ".." in PurePosixPath(text).parts or bool(_SCHEME.match(text))


def _check_name(name: str) -> None:
    if _path_like(name):
        raise ConfigError(
            f"config name {name!r} leads out of the config dir; name a config in it, without .yaml", field="name"
        )


def _check_defaults_lists(config_dir: Path, files: dict[str, Path]) -> None:
    """Defaults lists (and `hydra:` settings) choose what is composed but are not part of the
    result, so a resolver there (`- model: ${oc.env:MODEL}`), a search path or an entry
    naming a path out of the config dir is looked for in the files."""
    import yaml

    for relative, file in files.items():
        if not relative.endswith((".yaml", ".yml")):
            continue
        try:
            data = yaml.safe_load(file.read_bytes())
        except yaml.YAMLError:
            continue  # Hydra reports it when it loads the file
        if not isinstance(data, dict):
            continue
        for key in ("defaults", "hydra"):
            if key in data:
                _check_resolvers(str(data[key]), "", f"the {key} of {relative}")
        if "searchpath" in str(data.get("hydra", "")):
            raise ConfigError(f"{relative} sets hydra.searchpath; {_CONFINE_HINT}", field="dir")
        for entry in _strings(data.get("defaults")):
            words = entry.split()
            if words and _leaves(words[-1]):
                raise ConfigError(
                    f"the defaults list of {relative} names {entry!r}, a path out of the config dir; {_CONFINE_HINT}",
                    field="dir",
                )


def _strings(value: Any) -> list[str]:
    """The strings of a defaults list: entries, and the keys and values of `group: option`."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [*map(str, value), *(s for v in value.values() for s in _strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _check_resolvers(text: str, key: str, place: str = "") -> None:
    for resolver in _RESOLVER_CALL.findall(text):
        if resolver not in DETERMINISTIC_RESOLVERS:
            where = f" in {key or place}" if key or place else ""
            raise ConfigError(
                f"resolver {resolver!r}{where} is not deterministic (or unknown); "
                "a build may only depend on declared inputs, so write the value into the config",
                key,
            )


def _plain(message: str) -> str:
    return message.replace("\n", " ")


def subtree(config: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """(found, value) of a dotted key in a composed config."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def config_keys(config: dict[str, Any], prefix: str = "") -> list[str]:
    """Every dotted key of a composed config, inner nodes included (for suggestions)."""
    keys = []
    for key, value in config.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        keys.append(dotted)
        if isinstance(value, dict):
            keys += config_keys(value, dotted)
    return keys


def select_params(config: dict[str, Any], params: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The part of the config a stage declares: each dotted param kept at its own path."""
    selected: dict[str, Any] = {}
    for dotted in sorted(params):
        _found, value = subtree(config, dotted)
        node = selected
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return selected
