"""A config that needs no composition: one file, `NAME.yaml`, with no defaults list, no
`hydra:` settings and no interpolation, composed without overrides, is that file as
OmegaConf reads it, which is all Hydra would do; importing Hydra and scanning its plugins
costs 0.4-0.9 s, and OmegaConf's pure-Python YAML scanner 60 ms for a 1,000-key config."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any


def plain_config(files: dict[str, Path], name: str) -> dict[str, Any] | None:
    """The composition of `files` (a config dir's) without overrides, when it is plain; None
    when the config is anything more, or OmegaConf refuses it: Hydra then composes it, and
    reports what is wrong."""
    if list(files) != [f"{name}.yaml"]:
        return None
    import yaml

    try:
        text = files[f"{name}.yaml"].read_text(encoding="utf-8")
        if "${" in text or "\0" in text or "@package" in text:  # interpolation, a NUL, a package header
            return None
        loaded = yaml.load(text, Loader=_omegaconf_loader()) or {}
    except (OSError, ValueError, yaml.YAMLError):
        return None
    if not isinstance(loaded, dict) or "defaults" in loaded or "hydra" in loaded or not _kept_as_is(loaded):
        return None
    return loaded


@functools.cache
def _omegaconf_loader() -> Any:
    """The loader OmegaConf (so Hydra) reads files with: its implicit types and its refusal
    of duplicate keys, over libyaml's parser when PyYAML has it (the pure-Python scanner
    took 60 ms of a 1,000-key config, libyaml 6 ms); the tags are still resolved by OmegaConf's rules."""
    import yaml
    from omegaconf._utils import get_yaml_loader

    omegaconf_loader = get_yaml_loader()
    if not yaml.__with_libyaml__:  # a PyYAML built without libyaml
        return omegaconf_loader
    from yaml._yaml import CParser

    class Loader(CParser, omegaconf_loader):  # type: ignore[misc, valid-type]
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    return Loader


def _kept_as_is(value: Any) -> bool:
    """Values OmegaConf keeps as they are: no `???` (a missing value), no Path or bytes, string keys."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _kept_as_is(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_kept_as_is(v) for v in value)
    return value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and value != "???")
