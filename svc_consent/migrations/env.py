"""Alembic environment of the consent service (shared body in telemesh.db)."""

from svc_consent.models import metadata
from telemesh.db import run_migrations_env

run_migrations_env(metadata)
