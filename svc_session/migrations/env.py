"""Alembic environment of the session service (shared body in telemesh.db)."""

from svc_session.models import metadata
from telemesh.db import run_migrations_env

run_migrations_env(metadata)
