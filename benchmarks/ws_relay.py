"""A minimal WebSocket signaling relay, the usual choice for WebRTC signaling.

The comparison point for the signaling benchmark: `ws://HOST:PORT/<room>/<role>`
joins a room; every text message is forwarded to the other participant of the room.
No authentication, no rules, no buffering: the least a relay can do.

    python -m benchmarks.ws_relay PORT
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, serve

ROOMS: dict[str, dict[str, ServerConnection]] = {}


async def relay(connection: ServerConnection) -> None:
    path = connection.request.path if connection.request else "/"
    room_id, _, role = path.strip("/").partition("/")
    peers = ROOMS.setdefault(room_id, {})
    peers[role] = connection
    try:
        async for message in connection:
            for other_role, other in peers.items():
                if other_role != role:
                    await other.send(message)
    finally:
        peers.pop(role, None)
        if not peers:
            ROOMS.pop(room_id, None)


async def main(port: int) -> None:
    async with serve(relay, "127.0.0.1", port, max_size=2**20, compression=None):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
