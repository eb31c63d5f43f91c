"""The HTTP layer of the simulator: turns sockets into `Request`s and `Step`s into bytes."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sim.steps import Request, Step


class HttpServer(ThreadingHTTPServer):
    """Threaded server that hands each request to `answer` and can cut live connections."""

    daemon_threads = True  # a stalled Step.slow must never keep the process alive

    def __init__(
        self,
        address: tuple[str, int],
        answer: Callable[[Request], Step],
        stopping: threading.Event,
    ) -> None:
        self.answer = answer
        self.stopping = stopping
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, is_open: bool) -> None:
        with self._connections_lock:
            if is_open:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        # Keep-alive connections would otherwise outlive stop() and keep
        # answering from a "stopped" server.
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (timeouts, drops) is expected here, not a bug.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1: keep-alive and chunked bodies, as CDF's front end does.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each answer
    # would wait ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: HttpServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the CLI's stdout carries only its URL line."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        step = self.server.answer(self._read())
        try:
            self._write(step)
        except ConnectionError:
            self.close_connection = True  # the client gave up, e.g. on its timeout

    def _read(self) -> Request:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        return Request.received(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            time=time.monotonic(),
        )

    def _write(self, step: Step) -> None:
        if step.delay and self.server.stopping.wait(step.delay):
            step = Step.drop()  # stopped while stalling: just go away
        if step.kind == "drop":
            self.close_connection = True
            return
        self.send_response(step.code)
        self.send_header("Content-Type", step.content_type)
        self.send_header("X-Request-ID", uuid.uuid4().hex)
        for name, value in step.headers:
            self.send_header(name, value)
        if step.kind == "stream" and step.chunks is not None:
            self._write_chunked(step.chunks())
            return
        self.send_header("Content-Length", str(len(step.body)))
        self.end_headers()
        self.wfile.write(step.body)

    def _write_chunked(self, chunks: Iterator[bytes]) -> None:
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            if chunk:  # an empty chunk would end the body early
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")
