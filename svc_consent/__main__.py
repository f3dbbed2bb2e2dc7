"""`python -m svc_consent`: serve ConsentService (see telemesh.server)."""

from svc_consent.app import ConsentApp
from telemesh.server import run

if __name__ == "__main__":
    run("consent", ConsentApp)
