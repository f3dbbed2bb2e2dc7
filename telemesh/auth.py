"""Who is calling: end-user and service authentication for every service.

The server interceptor authenticates each call once and keeps the result in a context
variable; servicers ask `current_principal()` and use the `require_*` helpers.

- End users (and, without a mesh, services) present `authorization: Bearer <JWT>`.
- Behind a sidecar that forwards the verified client certificate
  (`x-forwarded-client-cert`, with TELEMESH_TRUST_FORWARDED_IDENTITY on), the caller's
  service identity is its SPIFFE id, taken only from the element the sidecar wrote and
  only when it is exactly one of this mesh's (telemesh.identity.forwarded). An end-user
  token forwarded by a service keeps the user as the principal and names the service in
  `via_service`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from telemesh.config import SERVICES, RuntimeSettings
from telemesh.errors import PermissionDenied, Unauthenticated
from telemesh.identity import forwarded
from telemesh.identity.tokens import InvalidToken, JwksVerifier

USER_ROLES = frozenset({"patient", "clinician", "billing", "admin", "partner"})
# The service accounts a forwarded identity may name: the services and the edge (the
# allow-list's `edge.identity`).
EDGE_ACCOUNT = "edge"
MESH_ACCOUNTS = frozenset({*SERVICES, EDGE_ACCOUNT})


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a role and an id (a user id or a service name)."""

    role: str
    subject: str
    via_service: str | None = None

    @property
    def is_service(self) -> bool:
        return self.role == "service"

    def is_user(self, role: str, subject: str) -> bool:
        return self.role == role and self.subject == subject


_principal: ContextVar[Principal | None] = ContextVar("telemesh_principal", default=None)
_bearer: ContextVar[str | None] = ContextVar("telemesh_bearer", default=None)


def current_principal() -> Principal:
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("UNAUTHENTICATED", "this call needs credentials")
    return principal


def current_bearer_token() -> str | None:
    """The caller's own token, for calls made on the caller's behalf."""
    return _bearer.get()


def bind(principal: Principal | None, bearer: str | None) -> None:
    """Sets the caller for the current task (the interceptor calls this per RPC)."""
    _principal.set(principal)
    _bearer.set(bearer)


def require_role(*roles: str) -> Principal:
    """The caller, who must hold one of `roles`."""
    principal = current_principal()
    if principal.role not in roles:
        raise PermissionDenied(
            "ROLE_NOT_ALLOWED", f"role {principal.role!r} may not call this method"
        )
    return principal


def require_service(*services: str) -> Principal:
    """The caller, who must be one of the named services."""
    principal = current_principal()
    if not principal.is_service or principal.subject not in services:
        raise PermissionDenied("SERVICE_NOT_ALLOWED", "only a named service may call this method")
    return principal


def require_self_or(principal: Principal, role: str, subject: str, *others: str) -> None:
    """`principal` must be user `subject` in `role`, or hold one of `others`."""
    if not (principal.is_user(role, subject) or principal.role in others):
        raise PermissionDenied("NOT_OWNER", f"the caller may not act for this {role}")


class Authenticator:
    """Turns a call's metadata into a Principal."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.verifier = JwksVerifier(
            settings.jwks_path(), refresh_seconds=settings.jwks_refresh_seconds
        )
        self.trust_forwarded_identity = settings.trust_forwarded_identity
        self.trust_domain = settings.trust_domain
        self.namespace = settings.namespace

    def forwarded_service(self, metadata: Mapping[str, str]) -> str | None:
        """The service account of the mTLS peer, as our own sidecar forwarded it."""
        if not self.trust_forwarded_identity:
            return None
        return forwarded.service_account(
            metadata.get(forwarded.HEADER, ""), self.trust_domain, self.namespace, MESH_ACCOUNTS
        )

    def authenticate(self, metadata: Mapping[str, str]) -> tuple[Principal | None, str | None]:
        """(principal, bearer token); (None, None) for an anonymous call.

        Raises Unauthenticated for a token that is present but does not verify.
        """
        service = self.forwarded_service(metadata)
        header = metadata.get("authorization", "")
        token: str | None = None
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Unauthenticated(
                    "BAD_AUTHORIZATION", "expected 'authorization: Bearer <token>'"
                )
            token = value.strip()
        if token is None:
            # The edge only ever speaks for a user: on its own it is nobody.
            if service is None or service == EDGE_ACCOUNT:
                return None, None
            return Principal("service", service), None
        try:
            claims = self.verifier.verify(token)
        except InvalidToken as exc:
            raise Unauthenticated("INVALID_TOKEN", str(exc)) from None
        if claims.role == "service":
            # A service token is accepted only where no mTLS identity contradicts it.
            if service is not None and service != claims.subject:
                raise Unauthenticated("IDENTITY_MISMATCH", "service token and peer identity differ")
            return Principal("service", claims.subject), token
        if claims.role not in USER_ROLES:
            raise Unauthenticated("UNKNOWN_ROLE", f"token role {claims.role!r} is not known")
        return Principal(claims.role, claims.subject, via_service=service), token


def metadata_dict(pairs: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """Invocation metadata as a dict of text values (binary headers dropped)."""
    result: dict[str, str] = {}
    for key, value in pairs or ():
        if isinstance(value, str):
            result[key.lower()] = value
    return result
