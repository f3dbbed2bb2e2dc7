"""The errors every RPC may return, documented once (docs/api/README.md) rather than on
each RPC: they come from the runtime that wraps every call (telemesh/interceptor.py,
telemesh/auth.py, telemesh/errors.py, telemesh/validation.py, telemesh/paging.py,
telemesh/idempotency.py), not from the RPC's own rules.

Everything else an RPC may answer is declared on the RPC itself with the
`(telemesh.common.v1.errors)` method option, including its PERMISSION_DENIED refusals
and the UNAVAILABLE of a service it depends on.
"""

from __future__ import annotations

from telemesh_tools.apidocs.model import ErrorCase

COMMON_ERRORS: tuple[ErrorCase, ...] = (
    ErrorCase(
        "UNAUTHENTICATED",
        "UNAUTHENTICATED",
        "the call carries no bearer token (and comes from no service identity of the mesh)",
    ),
    ErrorCase(
        "UNAUTHENTICATED",
        "BAD_AUTHORIZATION",
        "the `authorization` header is not `Bearer <token>`",
    ),
    ErrorCase(
        "UNAUTHENTICATED",
        "INVALID_TOKEN",
        "the token does not verify: signature, unknown or removed key, expiry, issuer, "
        "audience, or a claim of the wrong type",
    ),
    ErrorCase(
        "UNAUTHENTICATED",
        "UNKNOWN_ROLE",
        "the token's `role` is none of `patient`, `clinician`, `billing`, `admin`, "
        "`partner`, `service`",
    ),
    ErrorCase(
        "UNAUTHENTICATED",
        "IDENTITY_MISMATCH",
        "a service token names another service than the caller's mTLS identity",
    ),
    ErrorCase(
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "bad input; a `BadRequest` detail names every bad field: a missing, malformed or "
        "out-of-range field, request bytes that do not parse, a `request_id` that is not a "
        "UUID or was used before for a different request, a `page_size` out of range, a "
        "`page_token` this service did not issue or that belongs to another query",
    ),
    ErrorCase(
        "UNAVAILABLE",
        "DATABASE_UNAVAILABLE",
        "the service's database could not be reached or dropped the connection (a restart, "
        "a failover); retry with the same `request_id`: a write that did commit answers "
        "from its stored result",
    ),
    ErrorCase(
        "INTERNAL",
        "INTERNAL",
        "an unexpected failure; no detail (and never a stack trace) reaches the client",
    ),
    ErrorCase(
        "INTERNAL",
        "DEPENDENCY_FAILED",
        "a service this RPC asks answered with an unexpected error (one that cannot be "
        "reached is `UNAVAILABLE` `DEPENDENCY_UNAVAILABLE`, listed on the RPCs that ask one)",
    ),
)
