"""Push and pull against a real S3 server on loopback (moto, started here): many small
objects and a few large ones, through modelspec's RemoteStore, beside the naive way (one
existence check and one upload after another) and, when they are installed, boto3 (the raw
client), `aws s3 cp` and `s5cmd` on the same files.

    python benchmarks/remote_bench.py                       # 10,000 x 4 KiB, 3 x 64 MiB
    python benchmarks/remote_bench.py --small 1000 --small-kib 64 --large 1 --large-mib 1024

moto is a single Python process: its per-request cost (~2-4 ms here) bounds every client,
so the figures compare clients against the same server, not against AWS.
"""

from __future__ import annotations

import argparse
import contextlib
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelspec.store.blobs import RemoteConfig, open_blobs
from modelspec.store.objects import LocalStore
from modelspec.store.remote import RemoteStore, object_name

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


def naive_upload(remote: RemoteStore, local: LocalStore, digests: list[str]) -> None:
    """What a simple remote does: per object, ask whether it is there, then upload it."""
    for digest in digests:
        if not remote.has(digest):
            remote.blobs.create(object_name(digest), local.path_of(digest).read_bytes())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=10_000, help="small objects")
    parser.add_argument("--small-kib", type=int, default=4)
    parser.add_argument("--large", type=int, default=3, help="large objects")
    parser.add_argument("--large-mib", type=int, default=64)
    parser.add_argument("--naive-sample", type=int, default=1000, help="small objects the naive way (extrapolated)")
    parser.add_argument("-j", "--jobs", type=int, default=16)
    parser.add_argument(
        "--latency-ms", type=float, default=0, help="add this much to every request (a proxy in front of moto)"
    )
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)
    rows: list[tuple[str, float, str]] = []
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
        timed(
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
        timed(
            f"pull {args.small} small (verified, -j {args.jobs})",
            lambda: remote.download(pulled, small, jobs=args.jobs),
            rows,
            rate,
        )
        big = f"{large_bytes / 2**20:.0f} MiB"
        timed(f"push {args.large} large (modelspec)", lambda: remote.upload(local, large, jobs=args.jobs), rows, big)
        timed(f"pull {args.large} large (verified)", lambda: remote.download(pulled, large, jobs=args.jobs), rows, big)
        baselines(endpoint, local, small, large, rows, args, root)
    print("\nsummary (seconds):")
    for what, seconds, note in rows:
        print(f"  {what:<58} {seconds:8.2f}  {note}")
    return 0


def baselines(
    endpoint: str,
    local: LocalStore,
    small: list[str],
    large: list[str],
    rows: list[tuple[str, float, str]],
    args: argparse.Namespace,
    root: Path,
) -> None:
    """The same files through other clients, where they are installed."""
    try:
        import boto3
    except ImportError:
        print("boto3 not installed: no raw-client baseline")
        boto3 = None
    if boto3 is not None:
        client = boto3.client("s3", endpoint_url=endpoint)
        bucket(endpoint, "boto3")

        def upload_large() -> None:
            for digest in large:
                client.upload_file(str(local.path_of(digest)), "boto3", f"large/{digest[7:]}")

        timed(f"push {args.large} large (boto3 upload_file, the raw client)", upload_large, rows)
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
        timed(f"push {len(small)} small ({tool})", lambda command=command: subprocess.run(command, check=True), rows)


if __name__ == "__main__":
    sys.exit(main())
