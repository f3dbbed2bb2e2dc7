"""`python -m svc_session`: serve SessionService (see telemesh.server)."""

from svc_session.app import SessionApp
from telemesh.server import run

if __name__ == "__main__":
    run("session", SessionApp)
