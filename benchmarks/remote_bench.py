"""Push and pull against a real S3 server on loopback (moto, started here): many small
objects and a few large ones, through modelspec's RemoteStore, beside the naive way (one
existence check and one upload after another) and, when they are installed, boto3 (the raw
client), `aws s3 cp` and `s5cmd` on the same files, and DVC 3 with dvc-s3 (benchmarks/dvc_side.py:
installed on first use in a venv of its own under ~/.cache/modelspec-bench, never a modelspec
dependency) pushing and pulling the same files to the same server, with the ratios at the end.

    python benchmarks/remote_bench.py                       # 10,000 x 4 KiB, 3 x 64 MiB
    python benchmarks/remote_bench.py --small 1000 --small-kib 64 --large 1 --large-mib 1024 --fraud
    python benchmarks/remote_bench.py --only dvc            # modelspec, boto3 and DVC only
    python benchmarks/remote_bench.py --versions 10 --version-mib 256   # a model's versions only

`--versions N`: N versions of a float32 model each changing 5% in runs of 64 KiB
(storage_bench.py's), pushed one after another, then pulled into a fresh store one after
another: per version the bytes and requests sent (counted by a proxy in front of moto), the
remote's stored bytes, and seconds. MODELSPEC_BENCH_SOURCE=DIR runs it on another checkout's
modelspec (e.g. main's, to compare).

moto is a single Python process: its per-request cost (~2-4 ms here) bounds every client,
so the figures compare clients against the same server, not against AWS.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, os.environ.get("MODELSPEC_BENCH_SOURCE") or str(Path(__file__).resolve().parents[1]))

from dvc_side import DvcBench, default_venv, ensure_dvc

from modelspec.store.blobs import RemoteConfig, open_blobs
from modelspec.store.objects import LocalStore
from modelspec.store.remote import RemoteStore
from modelspec.store.remote_objects import object_name
from modelspec.store.workspace import STORE_DIR

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [shutil.which("moto_server") or "moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(endpoint, timeout=1)
                break
            time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait()


def bucket(endpoint: str, name: str) -> str:
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{name}", method="PUT"), timeout=30)
    return name


def timed(what: str, work: Callable[[], object], rows: list[tuple[str, float, str]], note: str = "") -> float:
    started = time.monotonic()
    work()
    seconds = time.monotonic() - started
    rows.append((what, seconds, note))
    print(f"{what:<58} {seconds:8.2f} s  {note}", flush=True)
    return seconds


def make_objects(store: LocalStore, count: int, size: int, seed: int) -> list[str]:
    digests = []
    for i in range(count):
        digests.append(store.put_bytes(seed.to_bytes(4, "big") + i.to_bytes(8, "big") + os.urandom(size - 12)))
    return digests


def model_versions(args: argparse.Namespace) -> int:
    """Push N versions of a model one after another, then pull them into a fresh store."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from faultproxy import fault_proxy
    from storage_bench import runs_versions

    os.environ.update(CREDENTIALS)
    size = args.version_mib << 20
    import modelspec

    print(f"modelspec from {Path(modelspec.__file__).parent}; {args.versions} versions of {args.version_mib} MiB")
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modelspec-versions-bench-")))
        upstream = stack.enter_context(moto_server())
        endpoint, faults = stack.enter_context(fault_proxy(upstream))
        faults.latency = args.latency_ms / 1000
        config = RemoteConfig(f"s3://{bucket(upstream, 'versions')}/bench", endpoint=endpoint)
        remote = RemoteStore(open_blobs(config))
        counter = RemoteStore(open_blobs(RemoteConfig(config.url, endpoint=upstream)))  # not counted
        local = LocalStore(root / "store")
        local.tmp.mkdir(parents=True)
        digests = []
        header = f"{'':>10} {'sent MiB':>9} {'requests':>8} {'PUTs':>5} {'seconds':>8} {'remote MiB':>10}"
        print(header)
        totals = [0, 0, 0.0]
        for i, data in enumerate(runs_versions(size, args.versions, 64 << 10, 0.05, 1)):
            path = root / "model.bin"
            path.write_bytes(data)
            digests.append(local.put_file(path))
            path.unlink()
            faults.bytes_in, faults.requests, faults.methods = 0, 0, {}
            started = time.monotonic()
            remote.upload(local, [digests[-1]], jobs=args.jobs)
            seconds = time.monotonic() - started
            stored = sum(info.size for info in counter.blobs.scan(""))
            totals = [totals[0] + faults.bytes_in, totals[1] + faults.requests, totals[2] + seconds]
            print(
                f"push v{i + 1:<3} {faults.bytes_in / 2**20:>13.1f} {faults.requests:>8} "
                f"{faults.methods.get('PUT', 0):>5} {seconds:>8.2f} {stored / 2**20:>10.1f}",
                flush=True,
            )
        print(f"push total {totals[0] / 2**20:>9.1f} {totals[1]:>8} {'':>5} {totals[2]:>8.2f}")
        pulled = LocalStore(root / "pulled")
        pulled.tmp.mkdir(parents=True)
        totals = [0, 0, 0.0]
        fresh = RemoteStore(open_blobs(config))
        print(f"{'':>10} {'recv MiB':>9} {'requests':>8} {'':>5} {'seconds':>8}")
        for i, digest in enumerate(digests):
            faults.bytes_out, faults.requests = 0, 0
            started = time.monotonic()
            fresh.download(pulled, [digest], jobs=args.jobs)
            seconds = time.monotonic() - started
            totals = [totals[0] + faults.bytes_out, totals[1] + faults.requests, totals[2] + seconds]
            print(
                f"pull v{i + 1:<3} {faults.bytes_out / 2**20:>13.1f} {faults.requests:>8} {'':>5} {seconds:>8.2f}",
                flush=True,
            )
        print(f"pull total {totals[0] / 2**20:>9.1f} {totals[1]:>8} {'':>5} {totals[2]:>8.2f}")
        started = time.monotonic()
        for digest in digests[-2:]:
            assert pulled.verify(digest), digest  # reassembled (if chunked) and hashed whole
        print(f"verify the last 2 pulled: {time.monotonic() - started:.2f} s")
    return 0


def naive_upload(remote: RemoteStore, local: LocalStore, digests: list[str]) -> None:
    """What a simple remote does: per object, ask whether it is there, then upload it."""
    for digest in digests:
        if remote.blobs.head(object_name(digest)) is None:  # one request (`has` would also list packs)
            remote.blobs.create(object_name(digest), local.path_of(digest).read_bytes())


PARTS = ("naive", "clients", "dvc", "fraud")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=10_000, help="small objects")
    parser.add_argument("--small-kib", type=int, default=4)
    parser.add_argument("--large", type=int, default=3, help="large objects")
    parser.add_argument("--large-mib", type=int, default=64)
    parser.add_argument("--naive-sample", type=int, default=1000, help="small objects the naive way (extrapolated)")
    parser.add_argument("-j", "--jobs", type=int, default=16)
    parser.add_argument(
        "--fraud", action="store_true", help="also: the fraud example built in one workspace, then in a fresh clone"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="run only this part beside modelspec's own push and pull (repeatable); "
        "default: naive, clients, dvc, and fraud with --fraud",
    )
    parser.add_argument("--dvc-venv", type=Path, default=default_venv(), help="where DVC is installed on first use")
    parser.add_argument(
        "--latency-ms", type=float, default=0, help="add this much to every request (a proxy in front of moto)"
    )
    parser.add_argument("--versions", type=int, default=0, help="only: push and pull this many versions of a model")
    parser.add_argument("--version-mib", type=int, default=256, help="the size of that model")
    args = parser.parse_args()
    if args.versions:
        return model_versions(args)
    parts = set(args.only or PARTS[:3]) | ({"fraud"} if args.fraud else set())
    os.environ.update(CREDENTIALS)
    rows: list[tuple[str, float, str]] = []
    figures: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="modelspec-remote-bench-"))
        endpoint = stack.enter_context(moto_server())
        if args.latency_ms:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from faultproxy import fault_proxy

            endpoint, faults = stack.enter_context(fault_proxy(endpoint))
            faults.latency = args.latency_ms / 1000
        root = Path(folder)
        local = LocalStore(root / "store")
        local.tmp.mkdir(parents=True)
        shape = f"{args.small} x {args.small_kib} KiB and {args.large} x {args.large_mib} MiB"
        print(f"moto at {endpoint} (+{args.latency_ms:g} ms a request); {shape}")
        small = make_objects(local, args.small, args.small_kib * 1024, 1)
        large = make_objects(local, args.large, args.large_mib << 20, 2)
        small_bytes = args.small * args.small_kib * 1024
        large_bytes = args.large * (args.large_mib << 20)

        def remote_for(name: str) -> RemoteStore:
            config = RemoteConfig(f"s3://{bucket(endpoint, name)}/bench", endpoint=endpoint)
            return RemoteStore(open_blobs(config))

        remote = remote_for("modelspec")
        rate = f"{small_bytes / 2**20:.0f} MiB"
        figures["push small"] = timed(
            f"push {args.small} small (modelspec, -j {args.jobs})",
            lambda: remote.upload(local, small, jobs=args.jobs),
            rows,
            rate,
        )
        timed(
            f"push {args.small} small again (nothing to send)",
            lambda: remote.upload(local, small, jobs=args.jobs),
            rows,
        )
        timed(f"existence check of {args.small} (listing)", lambda: remote.missing(small, args.jobs), rows)
        if "naive" in parts:
            sample = small[: args.naive_sample]
            naive = remote_for("naive")
            seconds = timed(
                f"push {len(sample)} small the naive way (HEAD+PUT, serial)",
                lambda: naive_upload(naive, local, sample),
                rows,
            )
            rows.append((f"  naive, extrapolated to {args.small}", seconds * args.small / max(1, len(sample)), ""))
            print(f"{rows[-1][0]:<58} {rows[-1][1]:8.2f} s")
        pulled = LocalStore(root / "pulled")
        pulled.tmp.mkdir(parents=True)
        figures["pull small"] = timed(
            f"pull {args.small} small (verified, -j {args.jobs})",
            lambda: remote.download(pulled, small, jobs=args.jobs),
            rows,
            rate,
        )
        big = f"{large_bytes / 2**20:.0f} MiB"
        figures["push large"] = timed(
            f"push {args.large} large (modelspec)", lambda: remote.upload(local, large, jobs=args.jobs), rows, big
        )
        figures["pull large"] = timed(
            f"pull {args.large} large (verified)", lambda: remote.download(pulled, large, jobs=args.jobs), rows, big
        )
        if parts & {"clients", "dvc"}:
            figures.update(raw_client(endpoint, local, large, rows, args, root))
        if "clients" in parts:
            baselines(endpoint, local, small, rows, root)
        dvc = dvc_side(endpoint, root, args, rows) if "dvc" in parts else None
        if dvc is not None:
            for case, digests in (("small", small), ("large", large)):
                steps = dvc.push_pull(case, [local.path_of(d) for d in digests], lambda w, f: timed(w, f, rows))
                figures.update({f"dvc {step} {case}": seconds for step, seconds in steps.items()})
        if "fraud" in parts:
            fraud_store = fraud(endpoint, root, rows)
            figures.update(fraud_objects(endpoint, fraud_store, root, args, rows, dvc))
    print("\nsummary (seconds):")
    for what, seconds, note in rows:
        print(f"  {what:<58} {seconds:8.2f}  {note}")
    side_by_side(figures, args)
    return 0


def raw_client(
    endpoint: str,
    local: LocalStore,
    large: list[str],
    rows: list[tuple[str, float, str]],
    args: argparse.Namespace,
    root: Path,
) -> dict[str, float]:
    """The large objects through boto3's own transfer manager: the raw client's figures."""
    try:
        import boto3
        from boto3.s3.transfer import TransferConfig
    except ImportError:
        print("boto3 not installed: no raw-client baseline")
        return {}
    client = boto3.client("s3", endpoint_url=endpoint)
    bucket(endpoint, "boto3")
    names = {digest: f"large/{digest[7:]}" for digest in large}
    into = root / "boto3-pulled"
    into.mkdir()

    def upload_large() -> None:
        for digest in large:
            client.upload_file(str(local.path_of(digest)), "boto3", names[digest])

    # One GET an object: boto3's default (8 MiB ranged GETs in parallel) took 148 s for 1 GiB
    # against moto here, one GET 2 s: that measured moto's handling of ranges, not the client.
    whole = TransferConfig(multipart_threshold=1 << 62)

    def download_large() -> None:
        for digest in large:
            client.download_file("boto3", names[digest], str(into / digest[7:]), Config=whole)

    return {
        "boto3 push large": timed(f"push {args.large} large (boto3 upload_file, the raw client)", upload_large, rows),
        "boto3 pull large": timed(f"pull {args.large} large (boto3 download_file, one GET)", download_large, rows),
    }


def baselines(
    endpoint: str, local: LocalStore, small: list[str], rows: list[tuple[str, float, str]], root: Path
) -> None:
    """The small objects through the command-line clients, where they are installed."""
    files = root / "files"
    files.mkdir()
    for digest in small:
        os.link(local.path_of(digest), files / digest[7:])
    for tool, command in (
        (
            "aws",
            ["aws", "s3", "cp", "--recursive", "--quiet", "--endpoint-url", endpoint, str(files), "s3://cli/small"],
        ),
        ("s5cmd", ["s5cmd", "--endpoint-url", endpoint, "cp", f"{files}/*", "s3://cli5/small/"]),
    ):
        if shutil.which(tool) is None:
            print(f"{tool} not installed: no baseline from it")
            continue
        bucket(endpoint, "cli" if tool == "aws" else "cli5")
        timed(f"push {len(small)} small ({tool})", functools.partial(subprocess.run, command, check=True), rows)


def dvc_side(
    endpoint: str, root: Path, args: argparse.Namespace, rows: list[tuple[str, float, str]]
) -> DvcBench | None:
    """DVC (installed on first use in its own venv) on a remote of its own on the same server."""
    dvc = ensure_dvc(args.dvc_venv)
    if dvc is None:
        return None
    bench = DvcBench(dvc, endpoint, bucket(endpoint, "dvc"), root, args.jobs)
    # Each dvc command pays DVC's start-up: its "push again" figure shows that fixed cost.
    print(f"DVC {bench.version()} at {dvc}")
    return bench


def fraud_objects(
    endpoint: str,
    store: LocalStore,
    root: Path,
    args: argparse.Namespace,
    rows: list[tuple[str, float, str]],
    dvc: DvcBench | None,
) -> dict[str, float]:
    """Every object fraud's build left in workspace A's store, pushed to a fresh remote and
    pulled into a fresh store by modelspec, and the same files by DVC."""
    digests = list(store.iter())
    size = sum(store.path_of(d).stat().st_size for d in digests)
    note = f"{len(digests)} objects, {size / 2**20:.1f} MiB"
    config = RemoteConfig(f"s3://{bucket(endpoint, 'fraud-objects')}/bench", endpoint=endpoint)
    remote = RemoteStore(open_blobs(config))
    pulled = LocalStore(root / "fraud-pulled")
    figures = {
        "push fraud": timed(
            "push fraud's objects (modelspec)", lambda: remote.upload(store, digests, jobs=args.jobs), rows, note
        ),
        "pull fraud": timed(
            "pull fraud's objects (modelspec, verified)",
            lambda: remote.download(pulled, digests, jobs=args.jobs),
            rows,
            note,
        ),
    }
    if dvc is not None:
        steps = dvc.push_pull("fraud", [store.path_of(d) for d in digests], lambda w, f: timed(w, f, rows))
        figures.update({f"dvc {step} fraud": seconds for step, seconds in steps.items()})
    return figures


def side_by_side(figures: dict[str, float], args: argparse.Namespace) -> None:
    """modelspec beside DVC (DVC's time over modelspec's: above 1, modelspec is faster) and,
    for the large objects, beside the raw client (modelspec's time over boto3's)."""
    cases = {
        "small": f"{args.small} x {args.small_kib} KiB",
        "large": f"{args.large} x {args.large_mib} MiB",
        "fraud": "fraud's objects",
    }
    lines = []
    for case, shape in cases.items():
        for step in ("push", "pull"):
            ours = figures.get(f"{step} {case}")
            if ours is None:
                continue
            line = f"  {step} {shape:<22} modelspec {ours:8.2f}"
            theirs = figures.get(f"dvc {step} {case}")
            if theirs is not None:
                line += f"   DVC {theirs:8.2f}  DVC/modelspec {theirs / max(ours, 1e-9):6.2f}x"
            raw = figures.get(f"boto3 {step} {case}")
            if raw is not None:
                line += f"   boto3 {raw:8.2f}  modelspec/boto3 {ours / max(raw, 1e-9):5.2f}x"
            lines.append(line)
    if any("DVC" in line or "boto3" in line for line in lines):
        print(
            "\nside by side (seconds; goals: DVC/modelspec >= 5x on the small, modelspec/boto3 <= 1.5x on the large):"
        )
        print("\n".join(lines))


def fraud(endpoint: str, root: Path, rows: list[tuple[str, float, str]]) -> LocalStore:
    """specs/fraud.yaml built in workspace A (which uploads as it goes), then in a fresh clone B
    whose remote traffic goes through a counting proxy: B's wall time and bytes downloaded,
    beside the bytes of the version's artifacts. Returns A's store."""
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from faultproxy import fault_proxy

    source = Path(__file__).resolve().parents[1]
    first = root / "fraud-a"
    shutil.copytree(
        source / "examples" / "fraud", first / "examples" / "fraud", ignore=shutil.ignore_patterns("__pycache__")
    )
    (first / "specs").mkdir()
    shutil.copy(source / "specs" / "fraud.yaml", first / "specs" / "fraud.yaml")
    name = bucket(endpoint, "fraud")
    (first / "modelspec.yaml").write_text(f"remote: {{url: 's3://{name}/team', endpoint: '{endpoint}'}}\n")
    git = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@e", "GIT_COMMITTER_NAME": "b"}
    git["GIT_COMMITTER_EMAIL"] = "b@e"
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "fraud"]):
        subprocess.run(["git", "-C", str(first), *command], check=True, env=git, capture_output=True)
    modelspec = [sys.executable, "-m", "modelspec"]
    timed(
        "fraud: build in A (runs every stage, uploads)",
        lambda: subprocess.run(
            [*modelspec, "build", "specs/fraud.yaml", "--no-gate-exit"], cwd=first, check=True, capture_output=True
        ),
        rows,
    )
    second = root / "fraud-b"
    subprocess.run(["git", "clone", "-q", str(first), str(second)], check=True, capture_output=True)
    with fault_proxy(endpoint) as (counted, faults):
        (second / "modelspec.yaml").write_text(f"remote: {{url: 's3://{name}/team', endpoint: '{counted}'}}\n")
        out: list[str] = []

        def build_b() -> None:
            done = subprocess.run(
                [*modelspec, "build", "specs/fraud.yaml", "--json", "--no-gate-exit"],
                cwd=second,
                check=True,
                capture_output=True,
                text=True,
            )
            out.append(done.stdout)

        report = (
            json.loads(out[0]) if timed("fraud: build in a fresh clone B (remote hits)", build_b, rows) and out else {}
        )
    ran = sum(1 for node in report.get("nodes", []) if node["state"] == "ran")
    artifacts = sum(int(a["size"]) for a in report["specs"]["fraud"]["artifacts"].values())
    note = f"{ran} stages ran; downloaded {faults.bytes_out / 1024:.0f} KiB; artifacts {artifacts / 1024:.0f} KiB"
    rows.append(("  fraud in B", 0.0, note))
    print(f"  {note}")
    return LocalStore(first / STORE_DIR)


if __name__ == "__main__":
    sys.exit(main())
