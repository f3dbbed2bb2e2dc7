"""`telemesh audit verify`: walk the consent audit trail and name the first bad entry.

By default it asks the consent service (VerifyAuditTrail at TELEMESH_CONSENT_ADDR, with
an administrator's dev token); `--database URL` verifies the consent database directly,
for when the service is down. Exit status: 0 intact, 1 broken, 2 not reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Protocol

import grpc

from telemesh.config import RuntimeSettings, load
from telemesh.consent.v1 import consent_pb2, consent_pb2_grpc
from telemesh.identity.tokens import DevIssuer

INTACT, BROKEN, UNREACHABLE = 0, 1, 2
CLI_ADMIN = "telemesh-cli"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("audit", help="the consent audit trail")
    actions = parser.add_subparsers(dest="audit_command", required=True)
    verify = actions.add_parser(
        "verify", help="walk the hash chain and name the first edited, deleted or moved entry"
    )
    verify.add_argument(
        "--database",
        metavar="URL",
        help="verify this consent database directly instead of asking the service",
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
    def problem(self) -> consent_pb2.AuditProblem.ValueType: ...
    @property
    def detail(self) -> str: ...


def report(verdict: AuditVerdict) -> int:
    checked = verdict.entries_checked
    if verdict.intact:
        print(f"audit trail intact: {checked} entries checked")
        return INTACT
    name = consent_pb2.AuditProblem.Name(verdict.problem).removeprefix("AUDIT_PROBLEM_").lower()
    print(f"audit trail BROKEN at entry {verdict.first_bad_sequence}: {name} ({verdict.detail})")
    print(f"{checked} entries before it are intact")
    return BROKEN


async def _ask_service(
    settings: RuntimeSettings, deadline_seconds: float
) -> consent_pb2.VerifyAuditTrailResponse:
    token = DevIssuer(settings.home).mint(CLI_ADMIN, "admin", ttl_seconds=600)
    async with grpc.aio.insecure_channel(settings.address_of("consent")) as channel:
        stub = consent_pb2_grpc.ConsentServiceStub(channel)
        return await stub.VerifyAuditTrail(
            consent_pb2.VerifyAuditTrailRequest(),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=deadline_seconds,
        )


async def _verify_database(url: str) -> int:
    # The consent service's own verifier, run on its database (an operator's tool).
    from svc_consent.audit_store import verify_stored_chain
    from telemesh.db import Database

    db = Database(url)
    try:
        verdict = await verify_stored_chain(db)
    finally:
        await db.dispose()
    return report(verdict)


def run_verify(args: argparse.Namespace) -> int:
    if args.database:
        return asyncio.run(_verify_database(args.database))
    settings = load(RuntimeSettings)
    try:
        reply = asyncio.run(_ask_service(settings, args.timeout))
    except grpc.aio.AioRpcError as error:
        print(
            f"cannot verify: the consent service at {settings.address_of('consent')} answered "
            f"{error.code().name}: {error.details()}",
            file=sys.stderr,
        )
        return UNREACHABLE
    return report(reply)
