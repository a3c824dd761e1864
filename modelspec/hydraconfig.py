"""Configuration: compose a Hydra config directory into one canonical, fully resolved tree.

Hydra's Compose API keeps global state, so each composition runs inside its own
`initialize_config_dir` context and the global instance is cleared even after errors.
Hydra is imported only when a composition is not already cached.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .errors import did_you_mean

# Resolvers whose value depends only on the config itself; anything else (`now`,
# `oc.env`, `hydra:…`, custom resolvers) could change a value without changing a key.
# `oc.create` and `oc.decode` are not here: they evaluate a string assembled at resolve
# time (`${oc.decode:${a}${b}}` can become `${oc.env:HOME}`), which no text check can see.
DETERMINISTIC_RESOLVERS = frozenset({"oc.select", "oc.deprecated", "oc.dict.keys", "oc.dict.values"})
_RESOLVER_CALL = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*:")


class ConfigError(Exception):
    """A composition problem. `key` is the dotted config key it concerns, if any, and
    `override` the index (in the list given to `compose`) of the override that caused it."""

    def __init__(self, message: str, key: str = "", override: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.override = override


def compose(config_dir: Path, name: str, overrides: list[str]) -> dict[str, Any]:
    """The composed, resolved config as plain containers."""
    import yaml
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for index, override in enumerate(overrides):
        try:
            _check_resolvers(override, "")
        except ConfigError as exc:
            raise ConfigError(str(exc), exc.key, index) from None
    _check_defaults_lists(config_dir)
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


def _check_defaults_lists(config_dir: Path) -> None:
    """Defaults lists (and `hydra:` settings) choose what is composed but are not part of the
    result, so a resolver there (`- model: ${oc.env:MODEL}`) is looked for in the files."""
    import yaml

    for file in sorted(config_dir.rglob("*.y*ml")):
        try:
            data = yaml.safe_load(file.read_bytes())
        except yaml.YAMLError:
            continue  # Hydra reports it when it loads the file
        for key in ("defaults", "hydra"):
            if isinstance(data, dict) and key in data:
                _check_resolvers(str(data[key]), "", f"the {key} of {file.relative_to(config_dir)}")


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
