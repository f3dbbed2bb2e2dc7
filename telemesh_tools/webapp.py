"""`python -m telemesh_tools.webapp`: serves the built patient and clinician apps (web/dist).

A small static server for local use and the browser tests. The pages call the edge
(gRPC-web) themselves; this server only hands them files and `/config.json`, which names
the edge: TELEMESH_WEB_EDGE_URL, or the edge of the `telemesh up` running in
TELEMESH_HOME (its endpoints.json, read once per request), or https://localhost:8443.

Its default address, http://localhost:5173, is an origin the edge's CORS policy allows
(mesh/allowlist.yaml), as is Vite's dev server on the same port (`npm run dev`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import dataclass, replace
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from telemesh.config import RuntimeSettings, load, setting
from telemesh_tools.stack.endpoints import read_endpoints

REPO = Path(__file__).resolve().parent.parent
DEFAULT_EDGE_URL = "https://localhost:8443"


@dataclass(frozen=True)
class WebAppSettings:
    listen: str = setting(
        "TELEMESH_WEB_LISTEN",
        "127.0.0.1:5173",
        "`HOST:PORT` the web apps are served on (http://localhost:5173 is a CORS origin "
        "the edge allows).",
    )
    dist: Path = setting(
        "TELEMESH_WEB_DIST", REPO / "web" / "dist", "The built web apps (`npm run build`)."
    )
    edge_url: str = setting(
        "TELEMESH_WEB_EDGE_URL",
        "",
        f"The edge the pages call; default the running `telemesh up`'s, else {DEFAULT_EDGE_URL}.",
    )


def edge_url(settings: WebAppSettings, home: Path) -> str:
    """The edge the pages should call, as of now."""
    if settings.edge_url:
        return settings.edge_url
    endpoints = read_endpoints(home)
    if endpoints is not None:
        return str(endpoints["edge"]["url"])
    return DEFAULT_EDGE_URL


def security_headers(edge: str) -> dict[str, str]:
    """Headers for every page: scripts only from here, calls only here and to the edge."""
    parts = urlsplit(edge)
    edge_origin = f"{parts.scheme}://{parts.netloc}"
    policy = "; ".join(
        (
            "default-src 'self'",
            f"connect-src 'self' {edge_origin}",
            "img-src 'self' data: blob:",
            "media-src 'self' blob: mediastream:",
            "style-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Permissions-Policy": "camera=(self), microphone=(self)",
    }


class WebAppHandler(SimpleHTTPRequestHandler):
    """Files from the build folder, `/config.json`, and no directory listings."""

    settings: WebAppSettings
    home: Path

    def __init__(self, *args: Any, settings: WebAppSettings, home: Path, **kwargs: Any) -> None:
        self.settings = settings
        self.home = home
        self._edge: str | None = None
        super().__init__(*args, directory=str(settings.dist), **kwargs)

    def handle_one_request(self) -> None:
        self._edge = None  # a request sees one edge: looked up once, when first needed
        super().handle_one_request()

    @property
    def edge(self) -> str:
        if self._edge is None:
            self._edge = edge_url(self.settings, self.home)
        return self._edge

    def end_headers(self) -> None:
        for name, value in security_headers(self.edge).items():
            self.send_header(name, value)
        # Built assets carry a content hash in their names; pages and config do not.
        cacheable = self.path.startswith("/assets/")
        self.send_header("Cache-Control", "public, max-age=31536000" if cacheable else "no-store")
        super().end_headers()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/config.json":
            body = json.dumps({"edgeUrl": self.edge}).encode()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        self.send_error(HTTPStatus.NOT_FOUND)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # One line per request on stderr, without the query string.
        sys.stderr.write(f"webapp: {self.command} {urlsplit(self.path).path} {code}\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # log_request says it all; the default would repeat errors with the query


def serve(settings: WebAppSettings, home: Path) -> ThreadingHTTPServer:
    host, _, port = settings.listen.rpartition(":")
    handler = partial(WebAppHandler, settings=settings, home=home)
    return ThreadingHTTPServer((host or "127.0.0.1", int(port)), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve Telemesh's web apps (web/dist).")
    parser.add_argument("--listen", help="HOST:PORT (default TELEMESH_WEB_LISTEN)")
    parser.add_argument("--dist", type=Path, help="build folder (default TELEMESH_WEB_DIST)")
    args = parser.parse_args(argv)
    settings = load(WebAppSettings)
    if args.listen:
        settings = replace(settings, listen=args.listen)
    if args.dist:
        settings = replace(settings, dist=args.dist)
    if not (settings.dist / "index.html").is_file():
        print(f"webapp: no build in {settings.dist}; run `npm run build` in web/", file=sys.stderr)
        return 1
    server = serve(settings, load(RuntimeSettings).home.resolve())

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    host, _, port = settings.listen.rpartition(":")
    shown = "localhost" if host in ("", "127.0.0.1") else host
    print(f"webapp: http://{shown}:{port}/patient.html and /clinician.html", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
