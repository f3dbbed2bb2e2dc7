"""SessionService: availability, race-free booking, the visit's life and join tokens."""
