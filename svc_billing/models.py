"""The billing service's tables (its own database; no other service reads them)."""

from __future__ import annotations

from sqlmodel import SQLModel

from telemesh.idempotency import IdempotencyRecord

metadata = SQLModel.metadata

__all__ = ["IdempotencyRecord", "metadata"]
