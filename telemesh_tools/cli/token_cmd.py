"""`telemesh token`: mint a dev JWT for a patient, a clinician, a role or a service."""

from __future__ import annotations

import argparse
from typing import Any

from telemesh.config import RuntimeSettings, load
from telemesh.identity.tokens import DevIssuer


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "token", help="mint a dev token (ES256 JWT) with the local issuer's key"
    )
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--patient", metavar="ID", help="a patient's token")
    who.add_argument("--clinician", metavar="ID", help="a clinician's token")
    who.add_argument("--billing", metavar="ID", help="a billing clerk's token")
    who.add_argument("--admin", metavar="ID", help="an administrator's token")
    who.add_argument("--partner", metavar="CLINIC", help="a partner clinic's token")
    who.add_argument("--service", metavar="NAME", help="a service's token (session, ...)")
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load(RuntimeSettings)
    issuer = DevIssuer(settings.home)
    for role in ("patient", "clinician", "billing", "admin", "partner", "service"):
        subject = getattr(args, role)
        if subject:
            print(issuer.mint(subject, role, args.ttl))
            return 0
    return 2
