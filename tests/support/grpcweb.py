"""gRPC-web through the edge: a real client in Node, and hand-framed HTTP/1.1 requests.

The Node client (tests/mesh/node/, Connect's gRPC-web transport; `scripts/setup.sh`
installs it) is what a browser app does. The hand-framed requests show the wire format
itself and the CORS headers, with nothing but the standard library.
"""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The Node client lives with the mesh tests (scripts/setup.sh installs it there).
NODE_CLIENT = Path(__file__).resolve().parents[1] / "mesh" / "node"
CONTENT_TYPE = "application/grpc-web+proto"


def node_missing() -> str | None:
    """Why the Node client cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed (scripts/debian-packages.txt)"
    if not (NODE_CLIENT / "node_modules" / "@connectrpc" / "connect-node").exists():
        return "the Node gRPC-web client is not installed: run scripts/setup.sh"
    return None


def node_command(call: dict[str, Any]) -> list[str]:
    return ["node", str(NODE_CLIENT / "grpc-web-call.mjs"), json.dumps(call)]


def node_call(call: dict[str, Any], timeout: float = 30) -> list[dict[str, Any]]:
    """Runs one call to its end; returns the events it printed."""
    done = subprocess.run(node_command(call), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"node client failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


@dataclass
class GrpcWebReply:
    http_status: int
    headers: dict[str, str]
    messages: list[bytes] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def grpc_status(self) -> int | None:
        value = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return None if value is None else int(value)

    @property
    def grpc_message(self) -> str:
        return self.trailers.get("grpc-message", self.headers.get("grpc-message", ""))


def frame(message: bytes) -> bytes:
    """A gRPC(-web) data frame: flag 0, big-endian length, the message."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def parse_frames(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    """Data frames and the trailer frame (flag 0x80) of a gRPC-web response body."""
    messages, trailers, offset = [], {}, 0
    while offset + 5 <= len(body):
        flags, length = body[offset], struct.unpack(">I", body[offset + 1 : offset + 5])[0]
        payload = body[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if flags & 0x80:
            for line in payload.decode().split("\r\n"):
                if ":" in line:
                    key, _, value = line.partition(":")
                    trailers[key.strip().lower()] = value.strip()
        else:
            messages.append(payload)
    return messages, trailers


def _connection(address: str, ca_bundle: Path) -> http.client.HTTPSConnection:
    _host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca_bundle))
    context.set_alpn_protocols(["http/1.1"])
    return http.client.HTTPSConnection("localhost", int(port), context=context, timeout=10)


def post(
    address: str, ca_bundle: Path, path: str, message: bytes, headers: dict[str, str]
) -> GrpcWebReply:
    """One unary gRPC-web call as an HTTP/1.1 POST."""
    connection = _connection(address, ca_bundle)
    try:
        connection.request(
            "POST",
            path,
            body=frame(message),
            headers={"content-type": CONTENT_TYPE, "x-grpc-web": "1", **headers},
        )
        response = connection.getresponse()
        body = response.read()
        reply_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
    messages, trailers = parse_frames(body)
    return GrpcWebReply(response.status, reply_headers, messages, trailers)


def preflight(
    address: str, ca_bundle: Path, path: str, origin: str, request_headers: str
) -> tuple[int, dict[str, str]]:
    """A browser's CORS preflight (OPTIONS) for a gRPC-web POST."""
    connection = _connection(address, ca_bundle)
    try:
        connection.request(
            "OPTIONS",
            path,
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": request_headers,
            },
        )
        response = connection.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
