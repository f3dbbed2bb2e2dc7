"""The JWKS file over HTTP, for the local edge Envoy.

Envoy's jwt_authn reads a `local_jwks` file once, at start; a `remote_jwks` it fetches
again whenever its cached copy is older than `cache_duration`. `telemesh up` serves the
dev issuer's JWKS file here (read afresh on every request) so that a key removed from
the file stops verifying at the edge within that duration, without a restart.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from telemesh_tools.mesh.envoy import HOST, JWKS_PATH


class _Handler(BaseHTTPRequestHandler):
    server: _JwksServer

    def do_GET(self) -> None:
        if self.path != JWKS_PATH:
            self.send_error(404)
            return
        try:
            body = self.server.jwks_path.read_bytes()
        except OSError:
            # No file, no keys: Envoy's fetch fails and it refuses every token.
            self.send_error(503, "the JWKS file cannot be read")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # one line per fetch would only be noise in `telemesh up`'s log


class _JwksServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], jwks_path: Path) -> None:
        super().__init__(address, _Handler)
        self.jwks_path = jwks_path


class JwksEndpoint:
    """Serves `jwks_path` at http://127.0.0.1:`port`/jwks.json from a thread."""

    def __init__(self, jwks_path: Path, port: int) -> None:
        self.jwks_path = jwks_path
        self.port = port
        self._server: _JwksServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{JWKS_PATH}"

    def start(self) -> None:
        self._server = _JwksServer((HOST, self.port), self.jwks_path)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="jwks-endpoint", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
