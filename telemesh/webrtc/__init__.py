"""WebRTC pieces the signaling service's echo peer and the tools' call peer share: ICE
settings for loopback-only machines, synthetic and counting media tracks, and call
quality from aiortc's stats. Import the modules: this package imports nothing, so a
process that needs only `stats` does not load aiortc."""
