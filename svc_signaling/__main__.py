"""`python -m svc_signaling`: serve SignalingService (see telemesh.server)."""

from svc_signaling.app import SignalingApp
from telemesh.server import run

if __name__ == "__main__":
    run("signaling", SignalingApp)
