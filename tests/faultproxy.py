"""A small fault-injecting HTTP proxy on loopback, in front of the test S3 server: it forwards
every request, or instead answers 503 SlowDown, drops the connection, stalls, delays, or flips
bytes in an object's body, as a test asks. Used by tests/integration/test_remote_faults.py and
by benchmarks/remote_bench.py (`--latency-ms`)."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


@dataclass
class Faults:
    """What the next requests meet; counters say what happened."""

    fail: int = 0  # answer 503 SlowDown to this many requests
    drop: int = 0  # close this many connections without answering
    stall: int = 0  # hold this many requests for `stall_seconds` before forwarding
    stall_seconds: float = 0.0
    corrupt: int = 0  # flip a byte in this many object bodies (GET of objects/ or of a pack)
    latency: float = 0.0  # seconds added to every request
    requests: int = 0
    methods: dict[str, int] = field(default_factory=dict)  # requests by HTTP method (PUT: uploads)
    log: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of each request
    access_keys: set[str] = field(default_factory=set)  # the AWS access key ids requests were signed with
    bytes_out: int = 0  # body bytes sent back to the client (what it downloaded)
    bytes_in: int = 0  # body bytes the client sent (what it uploaded)
    injected: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, kind: str) -> bool:
        with self.lock:
            left = getattr(self, kind)
            if left <= 0:
                return False
            setattr(self, kind, left - 1)
            self.injected[kind] = self.injected.get(kind, 0) + 1
            return True


def _handler(upstream: str, faults: Faults) -> type[BaseHTTPRequestHandler]:
    target = urlparse(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _any(self) -> None:
            body = self._body()
            with faults.lock:
                faults.requests += 1
                faults.methods[self.command] = faults.methods.get(self.command, 0) + 1
                faults.log.append((self.command, self.path))
                faults.bytes_in += len(body)
                signed = self.headers.get("Authorization", "").partition("Credential=")[2]
                faults.access_keys.add(signed.split("/", 1)[0])
            if faults.latency:
                time.sleep(faults.latency)
            if faults.take("drop"):
                self.close_connection = True
                self.connection.close()
                return
            if faults.take("fail"):
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(SLOW_DOWN)))
                self.end_headers()
                self.wfile.write(SLOW_DOWN)
                return
            if faults.take("stall"):
                time.sleep(faults.stall_seconds)
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            body_of_object = "/objects/" in self.path or ".pack" in self.path
            is_object = self.command == "GET" and body_of_object and data and response.status < 300
            if is_object and faults.take("corrupt"):
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            # A HEAD has no body: its length is the object's, as upstream said (s3fs sizes reads by it).
            length = response.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
                with faults.lock:
                    faults.bytes_out += len(data)
            connection.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up on a stalled or failed request: not the test's business


@contextmanager
def fault_proxy(upstream: str) -> Iterator[tuple[str, Faults]]:
    """(the proxy's endpoint, its faults), forwarding to `upstream` until the block ends."""
    faults = Faults()
    server = _Server(("127.0.0.1", 0), _handler(upstream, faults))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", faults
    finally:
        server.shutdown()
        server.server_close()
