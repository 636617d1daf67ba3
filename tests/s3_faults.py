"""An S3 endpoint that fails on purpose: a loopback HTTP proxy in front of the moto server that
answers ``403 AccessDenied`` to GETs of chosen objects and forwards every other request."""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied (injected by the test)</Message></Error>"
)
HOP_HEADERS = {"transfer-encoding", "connection", "content-length", "keep-alive", "server", "date"}


def _read_chunked(rfile) -> bytes:
    body = b""
    while size := int(rfile.readline().split(b";")[0], 16):
        body += rfile.read(size)
        rfile.readline()
    while rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
        pass
    return body


class FaultyS3:
    """``with FaultyS3(upstream, {"/bucket/key", ...}) as proxy:`` use ``proxy.endpoint``."""

    def __init__(self, upstream: str, failing: set[str]):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.failing = set(failing)
        self.denied: Counter = Counter()

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
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                if self.command == "GET" and path in proxy.failing:
                    proxy.denied[path] += 1
                    self._reply(403, [("Content-Type", "application/xml")], DENIED)
                    return
                self._reply(*self._upstream())

            def _upstream(self):
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    body = _read_chunked(self.rfile)
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
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
