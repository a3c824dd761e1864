"""Action keys: the digest of everything a stage's result depends on (DESIGN.md §4.2).

An upstream stage contributes its *output* digest, so a rebuild upstream that produces
the same bytes leaves every downstream key unchanged (early cutoff). Before an upstream
output exists, its key stands in for it (`pending:<key>`).
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..digest import digest_json
from ..sandbox.layout import SANDBOX_ROOT, Command, interpolate
from ..spec.lockdata import StageLock

KEY_FORMAT = 2  # 2: the isolation used (not the policy asked for); shell placeholders as variables


@dataclass(frozen=True, slots=True)
class InputDigest:
    """One input as the stage sees it: its basename under /ms/in/<id>/ and its digest."""

    basename: str
    digest: str


def host_platform(python: str | None) -> dict[str, str]:
    """OS, architecture and Python (the environment's, else this interpreter's minor)."""
    return {
        "os": sys.platform,
        "arch": platform.machine(),
        "python": python or f"{sys.version_info.major}.{sys.version_info.minor}",
    }


def stage_command(stage: StageLock, basenames: Mapping[str, str]) -> Command:
    """The command as the sandbox runs it (placeholders filled in, inputs by `basenames`):
    what the key holds of it. It depends on no digest, so a build computes it once per node."""
    return interpolate(stage.argv, SANDBOX_ROOT, basenames, stage.outputs, stage.params, stage.shell)


def key_document(
    stage: StageLock,
    inputs: Mapping[str, InputDigest],
    environment: str | None,
    platform_: Mapping[str, str],
    isolation: str,
    command: Command | None = None,
) -> dict[str, Any]:
    """`isolation` is the sandbox the stage runs in ("bwrap" or "none"), not the policy that
    chose it: `auto` with bubblewrap present is the same run as `strict`, and `auto` without it
    is not. `command` is `stage_command` of these inputs' basenames, when known already."""
    if command is None:
        command = stage_command(stage, {name: item.basename for name, item in inputs.items()})
    return {
        "format": KEY_FORMAT,
        "argv": list(command.argv),
        "env": dict(command.env),  # a shell script's placeholder values (derived from the rest; kept explicit)
        "config": stage.params,
        "code": stage.code_digest,
        "environment": environment,
        "platform": dict(platform_),
        "isolation": isolation,
        "inputs": {name: [item.basename, item.digest] for name, item in sorted(inputs.items())},
        "outputs": stage.outputs,
    }


def action_key(document: Mapping[str, Any]) -> str:
    return digest_json(document)
