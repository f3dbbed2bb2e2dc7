"""Alembic environment of the signaling service (shared body in telemesh.db)."""

from svc_signaling.models import metadata
from telemesh.db import run_migrations_env

run_migrations_env(metadata)
