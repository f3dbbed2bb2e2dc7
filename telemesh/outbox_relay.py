"""`python -m telemesh.outbox_relay --service session`: a standalone outbox relay.

It delivers the service's outbox (its database, TELEMESH_DATABASE_URL) with the
service's own identity, beside or instead of the relay inside the service
(TELEMESH_OUTBOX_RELAY=0 there). Several relays share the work through leases. A
service whose outbox holds sealed payloads (the session service's completions) lends
the relay its PHI keys, read from its own settings exactly as the service reads them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal

from telemesh.clients import ServiceClients
from telemesh.config import RuntimeSettings, load
from telemesh.db import Database
from telemesh.field_crypto import FieldCipher, service_keyring
from telemesh.file_modes import owner_only
from telemesh.logs import log, setup_logging
from telemesh.outbox import OutboxRelay, grpc_deliverer
from telemesh.telemetry import setup_telemetry

logger = logging.getLogger("telemesh.outbox_relay")

# The services whose outbox holds sealed payloads, and their settings (which name the
# PHI keys).
PHI_KEY_SETTINGS = {"session": "svc_session.settings:SessionSettings"}


def service_cipher(service: str, settings: RuntimeSettings) -> FieldCipher | None:
    """The service's PHI cipher, for an outbox that holds sealed payloads."""
    where = PHI_KEY_SETTINGS.get(service)
    if where is None:
        return None
    module, _, name = where.partition(":")
    own = load(getattr(importlib.import_module(module), name))
    return FieldCipher(service_keyring(settings.home, service, own.phi_keys, own.phi_key_file))


async def relay(service: str, settings: RuntimeSettings) -> None:
    db = Database(settings.database(service))
    clients = ServiceClients(settings, service)
    worker = OutboxRelay(
        db, grpc_deliverer(clients.channel, cipher=service_cipher(service, settings))
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await worker.start()
    log(logger, logging.INFO, "relaying", service=service)
    await stopping.wait()
    await worker.stop()
    await clients.close()
    await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--service", required=True, help="whose outbox (and identity): session, signaling"
    )
    args = parser.parse_args()
    owner_only()
    settings = load(RuntimeSettings)
    setup_logging(f"{args.service}-relay", settings.log_level)
    telemetry = setup_telemetry(f"{args.service}-relay")
    try:
        asyncio.run(relay(args.service, settings))
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    main()
