"""An S3 endpoint that fails on purpose: a loopback HTTP proxy in front of the moto server.

It answers ``403 AccessDenied`` to GETs of chosen objects (``failing``: an error of this run
that a client does not retry), and injects transient faults (``Faults``) into one kind of
operation at a 5% rate: ``503`` SlowDown, a connection ``reset`` (TCP RST, no answer), or a
``stall`` (no answer for 30 s). Every other request is forwarded.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied (injected by the test)</Message></Error>"
)
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate (injected by the test)</Message></Error>"
)
OPERATIONS = ("listing", "xml", "tar-range", "part-put", "marker-put")
HOP_HEADERS = {"transfer-encoding", "connection", "content-length", "keep-alive", "server", "date"}


def _read_chunked(rfile) -> bytes:
    body = b""
    while size := int(rfile.readline().split(b";")[0], 16):
        body += rfile.read(size)
        rfile.readline()
    while rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
        pass
    return body


@dataclass(frozen=True)
class Faults:
    """Fault ``kind`` on every ``every``-th request of each of ``operations``, from the
    first: a 5% rate that hits each operation at least once, the same requests every run."""

    kind: str  # "503" | "reset" | "stall"
    operations: tuple[str, ...] = OPERATIONS
    every: int = 20
    stall_s: float = 30.0


def operation(method: str, path: str, query: str, headers) -> str | None:
    """Which of ``OPERATIONS`` a request is (None: another)."""
    key = path.split("/", 2)[2] if path.count("/") >= 2 else ""
    if method == "GET" and not key and ("list-type" in query or "prefix=" in query):
        return "listing"
    if method == "GET" and key.endswith(".xml"):
        return "xml"
    if method == "GET" and key.endswith(".tar") and headers.get("Range"):
        return "tar-range"
    if method == "PUT" and "/_done/" in path:
        return "marker-put"
    if method == "PUT" and key.endswith(".parquet"):
        return "part-put"
    return None


class FaultyS3:
    """``with FaultyS3(upstream, {"/bucket/key", ...}) as proxy:`` use ``proxy.endpoint``;
    ``proxy.injected`` counts the faults injected per operation."""

    def __init__(
        self, upstream: str, failing: set[str] = frozenset(), faults: Faults | None = None
    ):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.failing = set(failing)
        self.faults = faults
        self.denied: Counter = Counter()
        self.seen: Counter = Counter()
        self.injected: Counter = Counter()
        self.lock = threading.Lock()

    def fault_for(self, op: str | None) -> str | None:
        if self.faults is None or op not in self.faults.operations:
            return None
        with self.lock:
            n = self.seen[op]
            self.seen[op] += 1
            if n % self.faults.every:
                return None
            self.injected[op] += 1
        return self.faults.kind

    def __enter__(self) -> FaultyS3:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _forward(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                path = urllib.parse.unquote(url.path)
                if self.command == "GET" and path in proxy.failing:
                    proxy.denied[path] += 1
                    self._reply(403, [("Content-Type", "application/xml")], DENIED)
                    return
                op = operation(self.command, path, url.query, self.headers)
                if fault := proxy.fault_for(op):
                    self._read_body()  # the request arrived whole; the answer fails
                    self._inject(fault)
                    return
                self._reply(*self._upstream())

            def _inject(self, fault: str) -> None:
                if fault == "503":
                    self._reply(503, [("Content-Type", "application/xml")], SLOW_DOWN)
                    return
                if fault == "stall":  # the client's read timeout must give up first
                    time.sleep(proxy.faults.stall_s)
                # reset: linger 0 makes close() send a TCP RST, as a dropped connection does
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    return _read_chunked(self.rfile)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _upstream(self):
                body = self._read_body()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=60
                )
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    return resp.status, resp.getheaders(), data
                finally:
                    conn.close()

            def _reply(self, status: int, headers, data: bytes) -> None:
                self.send_response(status)
                length = str(len(data))
                for k, v in headers:
                    if k.lower() == "content-length" and self.command == "HEAD":
                        length = v  # a HEAD answers with the object's size and no body
                    elif k.lower() not in HOP_HEADERS:
                        self.send_header(k, v)
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        return Handler
