"""A typed Python client for Telemesh's published gRPC contract.

The generated stubs come with it as `telemesh.<service>.v1` (for example
`telemesh.consent.v1.consent_pb2`); `TelemeshClient` adds what every call needs.
"""

from telemesh_client.client import TelemeshClient, edge_target
from telemesh_client.errors import FieldViolation, TelemeshError
from telemesh_client.retry import Retry, is_idempotent

__all__ = [
    "FieldViolation",
    "Retry",
    "TelemeshClient",
    "TelemeshError",
    "edge_target",
    "is_idempotent",
]
