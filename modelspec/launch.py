"""The `modelspec` script: a command goes to this installation's resident modelspec when one
runs (`modelspec resident start`; `resident` asks it, `forkserver` is the resident), else it
runs here. Without a resident this costs one directory listing."""

from __future__ import annotations

import os
import sys

from . import resident


def main() -> None:
    """The `modelspec` console script."""
    if os.environ.get("MODELSPEC_NO_RESIDENT") != "1" and len(sys.argv) > 1 and sys.argv[1] in resident.SERVED:
        code = resident.forward(sys.argv)
        if code is not None:
            sys.exit(code)
    resident.collect_less()
    from .cli import main as cli_main

    cli_main()
