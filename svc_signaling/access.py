"""Who may act in a room. Missing rights are PERMISSION_DENIED.

A room is its visit's: only the patient and the clinician it was booked for, each with a
join token the session service issued to them for that visit (a token issued to someone
else is refused). The session service alone closes rooms; calls only a clinician makes
(admit, recording) say so.
"""

from __future__ import annotations

from svc_signaling.join_tokens import JoinClaims, JoinTokenVerifier
from svc_signaling.registry import RoomRegistry
from svc_signaling.room_hosts import RoomHosts
from svc_signaling.rooms import Role, Room
from telemesh.auth import Principal, require_role
from telemesh.errors import PermissionDenied


class RoomAccess:
    def __init__(
        self, join_tokens: JoinTokenVerifier, registry: RoomRegistry, hosts: RoomHosts
    ) -> None:
        self.join_tokens = join_tokens
        self.registry = registry
        self.hosts = hosts

    async def own_join_token(self, token: str, principal: Principal) -> JoinClaims:
        """The claims of a valid join token issued to the caller (JoinRoom, GetIceServers)."""
        claims = await self.join_tokens.verify(token)
        if claims.subject != principal.subject or claims.role != principal.role:
            raise PermissionDenied(
                "JOIN_TOKEN_NOT_YOURS", "the join token was issued to someone else"
            )
        return claims

    async def member(self, room_id: str) -> tuple[Room, Role]:
        """The room and the caller's role in it (a participant only)."""
        principal = require_role("patient", "clinician")
        await self.hosts.check(room_id)  # where the room's streams are (with replicas)
        room = await self.registry.get(room_id)
        return room, room.role_of(principal)
