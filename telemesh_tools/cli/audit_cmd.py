"""`telemesh audit verify`: walk a hash-chained log and name the first bad entry.

Two logs: the consent audit trail (`--log consent`, the default) and the HIPAA access
log (`--log access`). By default it asks the service that keeps the log
(VerifyAuditTrail at TELEMESH_CONSENT_ADDR, VerifyAccessLog at TELEMESH_SESSION_ADDR),
with an administrator's dev token; `--database URL` verifies that service's database
directly, for when the service is down. Exit status: 0 intact, 1 broken, 2 not reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Protocol

import grpc

from telemesh.config import RuntimeSettings, load
from telemesh.consent.v1 import consent_pb2, consent_pb2_grpc
from telemesh.hash_chain import ChainProblem
from telemesh.identity.tokens import DevIssuer
from telemesh.session.v1 import session_pb2, session_pb2_grpc

INTACT, BROKEN, UNREACHABLE = 0, 1, 2
CLI_ADMIN = "telemesh-cli"
# --log -> (the service that keeps it, its name in the report)
LOGS = {"consent": ("consent", "audit trail"), "access": ("session", "access log")}


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("audit", help="the consent audit trail and the access log")
    actions = parser.add_subparsers(dest="audit_command", required=True)
    verify = actions.add_parser(
        "verify", help="walk the hash chain and name the first edited, deleted or moved entry"
    )
    verify.add_argument(
        "--log",
        choices=sorted(LOGS),
        default="consent",
        help="the consent audit trail (consent service) or the access log (session service)",
    )
    verify.add_argument(
        "--database",
        metavar="URL",
        help="verify this database (of the service that keeps the log) instead of asking it",
    )
    verify.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for it")
    verify.set_defaults(func=run_verify)


class AuditVerdict(Protocol):
    """What a verification found: the service's answer or the verifier's own verdict."""

    @property
    def intact(self) -> bool: ...
    @property
    def entries_checked(self) -> int: ...
    @property
    def first_bad_sequence(self) -> int: ...
    @property
    def problem(self) -> int: ...
    @property
    def detail(self) -> str: ...


def report(verdict: AuditVerdict, what: str = "audit trail") -> int:
    checked = verdict.entries_checked
    if verdict.intact:
        print(f"{what} intact: {checked} entries checked")
        return INTACT
    name = ChainProblem(verdict.problem).name.lower()
    print(f"{what} BROKEN at entry {verdict.first_bad_sequence}: {name} ({verdict.detail})")
    print(f"{checked} entries before it are intact")
    return BROKEN


async def _ask_service(
    settings: RuntimeSettings, log: str, deadline_seconds: float
) -> AuditVerdict:
    token = DevIssuer(settings.home).mint(CLI_ADMIN, "admin", ttl_seconds=600)
    metadata = (("authorization", f"Bearer {token}"),)
    service, _ = LOGS[log]
    async with grpc.aio.insecure_channel(settings.address_of(service)) as channel:
        if log == "access":
            return await session_pb2_grpc.SessionServiceStub(channel).VerifyAccessLog(
                session_pb2.VerifyAccessLogRequest(), metadata=metadata, timeout=deadline_seconds
            )
        return await consent_pb2_grpc.ConsentServiceStub(channel).VerifyAuditTrail(
            consent_pb2.VerifyAuditTrailRequest(), metadata=metadata, timeout=deadline_seconds
        )


async def _verify_database(url: str, log: str) -> int:
    # The keeping service's own chain, run on its database (an operator's tool).
    from telemesh.db import Database

    if log == "access":
        from svc_session.access_log import CHAIN
    else:
        from svc_consent.audit_chain import CHAIN
    db = Database(url)
    try:
        verdict = await CHAIN.verify_stored(db)
    finally:
        await db.dispose()
    return report(verdict, LOGS[log][1])


def run_verify(args: argparse.Namespace) -> int:
    if args.database:
        return asyncio.run(_verify_database(args.database, args.log))
    settings = load(RuntimeSettings)
    service, what = LOGS[args.log]
    try:
        reply = asyncio.run(_ask_service(settings, args.log, args.timeout))
    except grpc.aio.AioRpcError as error:
        print(
            f"cannot verify: the {service} service at {settings.address_of(service)} "
            f"answered {error.code().name}: {error.details()}",
            file=sys.stderr,
        )
        return UNREACHABLE
    return report(reply, what)
