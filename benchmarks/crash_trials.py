"""Crash-injection trials at scale: SIGKILL build / gc / promote / reproduce at random
instants and check the workspace after each kill (the suite runs 52 of these).

    python benchmarks/crash_trials.py --trials 1000 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reliability"))

from crash import check, init_workspace, trial


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.monotonic()
    by_operation: collections.Counter[str] = collections.Counter()
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="modelspec-crash-") as folder:
        root = Path(folder) / "repo"
        root.mkdir()
        init_workspace(root)
        assert check(root) == [], "the workspace is inconsistent before any crash"
        for i in range(args.trials):
            result = trial(root, rng, counter=i)
            by_operation[result.operation] += 1
            if result.problems:
                failed.append(f"trial {i}: {result.operation} killed after {result.delay:.2f} s: {result.problems}")
                print(failed[-1], flush=True)
            if (i + 1) % 50 == 0:
                print(f"{i + 1} trials, {len(failed)} with problems, {time.monotonic() - started:.0f} s", flush=True)
    print(f"trials: {args.trials} ({dict(sorted(by_operation.items()))}), seed {args.seed}")
    print(f"trials with a failed next command or an inconsistency: {len(failed)}")
    print(f"time: {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
