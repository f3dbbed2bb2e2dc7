"""SignalingService: WebRTC signaling rooms for video visits."""
