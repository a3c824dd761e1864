"""Fixed paths a stage sees, and interpolation of `${…}` placeholders into its argv.

Keys are computed with the canonical root `/ms`, so no host path ever enters a key; a
runner without a sandbox interpolates the same template with its scratch directory.

    /ms/code/…                 code snapshot of the resolved commit (the working directory)
    /ms/in/<input>/<basename>  each input, read-only
    /ms/out/<path>             declared outputs, the only writable place
    /ms/config.json            the stage's config subtree
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from .model import PLACEHOLDER

SANDBOX_ROOT = "/ms"


def code_dir(root: str) -> str:
    return f"{root}/code"


def input_path(root: str, input_id: str, basename: str) -> str:
    return f"{root}/in/{input_id}/{basename}"


def output_dir(root: str) -> str:
    return f"{root}/out"


def config_file(root: str) -> str:
    return f"{root}/config.json"


def interpolate(
    argv: list[str],
    root: str,
    inputs: Mapping[str, str],
    outputs: Mapping[str, str],
    params: Mapping[str, Any],
    shell: bool,
) -> list[str]:
    """Replace placeholders in each token. `inputs` maps input id → basename.

    Where a token is a shell script — shell mode (`/bin/sh -c TEXT`), or a command that is
    itself `sh -c TEXT` — values are shell-quoted in it, so that no value, however hostile,
    can add shell syntax. Elsewhere a value is one argument, passed as it is.
    """
    script = script_token(argv, shell)

    def value(name: str, quoted: bool) -> str:
        space, _, rest = name.partition(".")
        if space == "inputs":
            text = input_path(root, rest, inputs[rest])
        elif space == "outputs":
            text = f"{output_dir(root)}/{outputs[rest]}"
        elif space == "config" and not rest:
            text = config_file(root)
        else:
            node: Any = params
            for part in rest.split("."):
                node = node[part]
            text = node if isinstance(node, str) else json.dumps(node, sort_keys=True)
        return shlex.quote(text) if quoted else text

    def substitute(token: str, quoted: bool) -> str:
        return PLACEHOLDER.sub(lambda m: value(m.group(1), quoted), token)

    return [substitute(token, i == script) for i, token in enumerate(argv)]


SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash"})


def script_token(argv: list[str], shell: bool) -> int | None:
    """The index of the token a shell will parse as a script, if any."""
    if shell:
        return len(argv) - 1
    if len(argv) >= 3 and argv[0].rsplit("/", 1)[-1] in SHELLS and argv[1] == "-c":
        return 2
    return None
