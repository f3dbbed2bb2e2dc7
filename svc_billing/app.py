"""The billing service's wiring: its settings and data files (coding rules, fee
schedule), its database and its servicer on the shared bootstrap."""

from __future__ import annotations

import grpc

from svc_billing.access import ChargeAccess
from svc_billing.coding import RuleBook, load_rule_sets
from svc_billing.fees import load_fee_schedule
from svc_billing.phi_rotation import SEALED_COLUMNS
from svc_billing.servicer import BillingServicer
from svc_billing.settings import BillingSettings
from telemesh.access_log import remote_recorder
from telemesh.app import ServiceAppBase
from telemesh.billing.v1 import billing_pb2, billing_pb2_grpc
from telemesh.care import PatientAccess, RemoteCareSource
from telemesh.config import RuntimeSettings, load
from telemesh.field_crypto import FieldCipher, service_keyring


class BillingApp(ServiceAppBase):
    name = "billing"
    package = "svc_billing"
    service_names = (billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name,)
    cipher: FieldCipher

    def __init__(self, settings: RuntimeSettings) -> None:
        super().__init__(settings)
        self.billing = load(BillingSettings)
        # Charges hold diagnosis codes: sealed with billing's own PHI keys.
        self.cipher = FieldCipher(
            service_keyring(
                settings.home, self.name, self.billing.phi_keys, self.billing.phi_key_file
            )
        )
        self.sealed_columns = SEALED_COLUMNS
        # Bad rules, fees or mappings stop the start here, with the file and the reason.
        self.rules = RuleBook(
            load_rule_sets(self.billing.rules_file),
            self.billing.default_rule_set,
            self.billing.payer_mapping(),
        )
        self.fees = load_fee_schedule(self.billing.fee_schedule_file)
        self.fees.require(self.rules.codes)

    async def register(self, server: grpc.aio.Server) -> None:
        # Channels are made on the server's event loop, so here and not in __init__.
        access = ChargeAccess(
            PatientAccess(RemoteCareSource(self.clients), remote_recorder(self.clients, self.name))
        )
        servicer = BillingServicer(self.db, self.cipher, self.rules, self.fees, access)
        billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)
