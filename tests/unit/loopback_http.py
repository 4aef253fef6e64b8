"""A scripted HTTP/1.1 server on loopback, for the client tests that need answers no farm gives on
demand: a gateway's 503, a connection dropped before its answer, an idle connection closed, an
upload refused before it has all been sent."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Asked:
    """A request as the server read it; header names in lower case."""

    method: str
    target: str  # the path with its query
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    # Close the connection after answering without saying so, as a server's idle timeout does.
    then_close: bool = False


Script = Callable[[Asked], Reply | None]  # None: drop the connection without an answer


@contextmanager
def scripted_server(script: Script, read_bodies: bool = True) -> Iterator[str]:
    """A server on a free port of 127.0.0.1 that keeps connections alive and answers each request
    with `script`; yields its base URL. Without `read_bodies` it answers as soon as a request's head
    has arrived and then hangs up, the body unread, as a server refusing an upload by its size does."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script, read_bodies))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="scripted-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _handler(script: Script, read_bodies: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # connections are kept alive unless a reply says otherwise

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def do_DELETE(self) -> None:
            self._answer()

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: pytest shows what failed

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if read_bodies else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            reply = script(Asked(self.command, self.path, headers, body))
            if reply is None:
                self.close_connection = True
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            self.close_connection = reply.then_close
            if not read_bodies:
                self._hang_up_unread()

        def _hang_up_unread(self) -> None:
            self.connection.shutdown(socket.SHUT_WR)
            time.sleep(0.2)  # the answer stays readable a while before the unread body resets the line
            self.close_connection = True

    return Handler
