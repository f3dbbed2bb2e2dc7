"""Synthetic media for peers that have no camera, and counting what arrives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError


class SyntheticVideoTrack(VideoStreamTrack):
    """A small moving gradient at 30 frames per second."""

    def __init__(self, width: int = 160, height: int = 120) -> None:
        super().__init__()
        row = np.linspace(0, 255, width, dtype=np.uint8)
        self._image = np.repeat(np.tile(row, (height, 1))[:, :, None], 3, axis=2)
        self._shift = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        self._shift = (self._shift + 4) % self._image.shape[1]
        frame = av.VideoFrame.from_ndarray(
            np.roll(self._image, self._shift, axis=1), format="bgr24"
        )
        frame.pts = pts
        frame.time_base = time_base
        return frame


class CountingTrack(MediaStreamTrack):
    """Passes another track's frames through, counting them (the echo peer sends it)."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.frames = 0

    async def recv(self) -> av.frame.Frame | av.packet.Packet[Any]:
        frame = await self.source.recv()
        self.frames += 1
        return frame


def count_frames(track: MediaStreamTrack, on_frame: Callable[[], None]) -> asyncio.Task[None]:
    """Reads `track` until it ends, calling `on_frame` for each frame."""

    async def drain() -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            on_frame()

    return asyncio.ensure_future(drain())
