"""`python -m svc_billing`: serve BillingService (see telemesh.server)."""

from svc_billing.app import BillingApp
from telemesh.server import run

if __name__ == "__main__":
    run("billing", BillingApp)
