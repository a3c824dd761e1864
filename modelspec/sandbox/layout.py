"""Fixed paths a stage sees, and interpolation of `${…}` placeholders into its command.

Keys are computed with the canonical root `/ms`, so no host path ever enters a key; a
runner without a sandbox interpolates the same template with its scratch directory.

    /ms/code/…                 code snapshot of the resolved commit (the working directory)
    /ms/in/<input>/<basename>  each input, read-only
    /ms/out/<path>             declared outputs (writable)
    /ms/config.json            the stage's config subtree
    /ms/home                   $HOME, writable scratch, empty for each run
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..spec.model import PLACEHOLDER
from .shellvars import reference_placeholders, script_token, variable_names

SANDBOX_ROOT = "/ms"


def code_dir(root: str) -> str:
    return f"{root}/code"


def input_path(root: str, input_id: str, basename: str) -> str:
    return f"{root}/in/{input_id}/{basename}"


def output_dir(root: str) -> str:
    return f"{root}/out"


def config_file(root: str) -> str:
    return f"{root}/config.json"


@dataclass(frozen=True, slots=True)
class Command:
    """What a stage runs: its argv, and the variables a shell script among it refers to
    (each placeholder's value, see `shellvars`), which the runner adds to the environment."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


def interpolate(
    argv: Sequence[str],
    root: str,
    inputs: Mapping[str, str],
    outputs: Mapping[str, str],
    params: Mapping[str, Any],
    shell: bool,
) -> Command:
    """Replace placeholders in each token. `inputs` maps input id → basename.

    A value is one argument, passed as it is. In the one token a shell parses as a script —
    shell mode (`/bin/sh -c TEXT`), or a command that is itself `sh -c TEXT` — a placeholder
    becomes a reference to an environment variable holding its value, so that no value,
    however hostile, is ever parsed by the shell.
    """
    script = script_token(argv, shell)

    def value(name: str) -> str:
        space, _, rest = name.partition(".")
        if space == "inputs":
            return input_path(root, rest, inputs[rest])
        if space == "outputs":
            return f"{output_dir(root)}/{outputs[rest]}"
        if space == "config" and not rest:
            return config_file(root)
        node: Any = params
        for part in rest.split("."):
            node = node[part]
        return node if isinstance(node, str) else json.dumps(node, sort_keys=True)

    tokens = [
        token if i == script else PLACEHOLDER.sub(lambda m: value(m.group(1)), token) for i, token in enumerate(argv)
    ]
    if script is None or script >= len(argv):
        return Command(tuple(tokens))
    names = variable_names(m.group(1) for m in PLACEHOLDER.finditer(argv[script]))
    tokens[script] = reference_placeholders(argv[script], names.__getitem__)
    return Command(tuple(tokens), {variable: value(name) for name, variable in sorted(names.items())})
