"""Alembic environment of the billing service (shared body in telemesh.db)."""

from svc_billing.models import metadata
from telemesh.db import run_migrations_env

run_migrations_env(metadata)
