"""A service whose PostgreSQL connections are cut (a restart, a failover, an
administrator) answers the calls that hit a dead connection UNAVAILABLE, which callers
and the mesh retry, and serves the next ones on new connections without a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy.engine import make_url

from telemesh.errors import reason_of
from telemesh.session.v1 import session_pb2, session_pb2_grpc
from tests.support.errors import refused
from tests.support.flows import Flows
from tests.support.harness import Stack, cut_pg_connections

pytestmark = pytest.mark.postgres


@pytest.fixture
def session_on_postgres(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path, "postgres")
    try:
        stack.start("session")
        yield stack
    finally:
        stack.close()


async def test_a_cut_connection_is_unavailable_then_the_service_recovers(
    session_on_postgres: Stack,
) -> None:
    stack = session_on_postgres
    flows = Flows(stack)
    try:
        clinician_id, md = await flows.clinician()
        pid = stack["session"].pid
        request = session_pb2.GetClinicianRequest(clinician_id=clinician_id)
        async with stack.channel("session") as channel:
            stub = session_pb2_grpc.SessionServiceStub(channel)
            await stub.GetClinician(request, metadata=md)  # a pooled connection now
            database = make_url(stack["session"].env["TELEMESH_DATABASE_URL"]).database
            assert database is not None
            assert cut_pg_connections(database) > 0
            error = await refused(stub.GetClinician(request, metadata=md))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert reason_of(error) == "DATABASE_UNAVAILABLE"
            again = await stub.GetClinician(request, metadata=md)
            assert again.clinician.clinician_id == clinician_id
        assert stack["session"].running
        assert stack["session"].pid == pid, "no restart"
    finally:
        await flows.close()
