"""PHI keys rotate: a new key first, a re-encryption pass, then the old key can go."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from telemesh.session.v1 import session_pb2
from tests.support.flows import Flows
from tests.support.harness import REPO, Stack

NEW_KEY = base64.b64encode(bytes(range(32))).decode()


async def test_after_rotation_the_old_key_is_no_longer_needed(
    make_stack: Callable[..., Stack], home: Path
) -> None:
    stack = make_stack("sqlite", "session")
    flows = Flows(stack)
    try:
        visit = await flows.book(display_name="Rota Tion", email="rota@example.org")
    finally:
        await flows.close()
    old = json.loads((home / "session" / "phi-keys.json").read_text())
    old_kid, old_key = old["active"], old["keys"][old["active"]]
    stack["session"].stop()
    env = {
        **stack["session"].env,
        "TELEMESH_SESSION_PHI_KEYS": f"k-new:{NEW_KEY},{old_kid}:{old_key}",
    }
    rotation = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "svc_session.phi_rotation"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "re-encrypted" in rotation.stdout
    # Now only the new key: everything must still read.
    stack["session"].env["TELEMESH_SESSION_PHI_KEYS"] = f"k-new:{NEW_KEY}"
    stack["session"].start().wait_ready()
    flows = Flows(stack)
    try:
        patient = await flows.session.GetPatient(
            session_pb2.GetPatientRequest(patient_id=visit.patient_id), metadata=visit.patient
        )
        assert patient.patient.display_name == "Rota Tion"
        assert patient.patient.email == "rota@example.org"
    finally:
        await flows.close()
