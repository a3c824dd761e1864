"""Configuration: compose a Hydra config directory into one canonical, fully resolved tree.

Hydra's Compose API keeps global state, so each composition runs inside its own
`initialize_config_dir` context and the global instance is cleared even after errors.
Hydra is imported only when a composition is not already cached.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# Resolvers whose value depends only on the config itself; anything else (`now`,
# `oc.env`, `hydra:…`, custom resolvers) could change a value without changing a key.
# `oc.create` and `oc.decode` are not here: they evaluate a string assembled at resolve
# time (`${oc.decode:${a}${b}}` can become `${oc.env:HOME}`), which no text check can see.
DETERMINISTIC_RESOLVERS = frozenset({"oc.select", "oc.deprecated", "oc.dict.keys", "oc.dict.values"})
_RESOLVER_CALL = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*:")


class ConfigError(Exception):
    """A composition problem; `key` is the dotted config key it concerns, if any."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


def compose(config_dir: Path, name: str, overrides: list[str]) -> dict[str, Any]:
    """The composed, resolved config as plain containers."""
    import yaml
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for override in overrides:
        _check_resolvers(override, "")
    _check_defaults_lists(config_dir)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = hydra_compose(config_name=name, overrides=list(overrides))
        raw = OmegaConf.to_container(cfg, resolve=False)
        _walk_strings(raw, "")
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except (HydraException, OmegaConfBaseException) as exc:
        key = str(getattr(exc, "full_key", "") or "")
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(_plain(message), key) from None
    except ValueError as exc:  # e.g. an unparsable override, raised by Hydra's grammar
        raise ConfigError(str(exc).strip().splitlines()[0]) from None
    except yaml.YAMLError as exc:  # a config file that is not YAML
        raise ConfigError(_plain(f"invalid YAML in the config: {exc}")) from None
    finally:
        GlobalHydra.instance().clear()
    if not isinstance(resolved, dict):
        raise ConfigError("the composed config is not a mapping")
    return {str(key): value for key, value in resolved.items()}


def _walk_strings(value: Any, key: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _walk_strings(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _walk_strings(v, f"{key}[{i}]")
    elif isinstance(value, str):
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
