"""@telemesh/client on its own, as a partner clinic gets it: `npm pack` of web/client (its
prepack builds dist/ with tsc), the tarball installed into a scratch Node project outside
the repository, and examples/partner/typescript run there through the edge of the running
mesh with a partner token.

The patient's side is set up first through the edge in Python: a profile, then consents
(sharing with the partner clinic, sharing with another clinic, telehealth). The partner
then checks its sharing consent (PERMIT), lists the patient's consents (only its own
sharing one) and is refused a telehealth check (PERMISSION_DENIED, PARTNER_SCOPE, read
with the client's describeError).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.harness import REPO
from tests.support.mesh import MeshUnderTest

WEB = REPO / "web"
CLIENT = WEB / "client"
EXAMPLE = REPO / "examples" / "partner" / "typescript"
# Where the package's build tools (tsc) and dependencies are installed (`npm ci` in web/).
WEB_MODULES = WEB / "node_modules"
TARBALL = "telemesh-client-0.1.0.tgz"  # what examples/partner/typescript/package.json names
# Quiet, local-first npm: dependencies come from the npm cache, the registry only if not.
NPM_FLAGS = ["--prefer-offline", "--no-audit", "--no-fund", "--no-update-notifier"]


def npm_missing() -> str | None:
    """Why the package cannot be built and installed here, or None."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/debian-packages.txt)"
    if not (WEB_MODULES / ".bin" / "tsc").exists():
        return "web/node_modules is missing (the client's build tools): run scripts/setup.sh"
    return None


def run(command: list[str], cwd: Path, timeout: float = 180) -> str:
    done = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (
        f"{command} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def pack(folder: Path) -> Path:
    """`npm pack` of web/client as it is now, into `folder`. It packs a copy of the
    package folder (without build output) whose node_modules is web/'s, so that dist/ is
    built fresh from src/ and nothing in the repository changes."""
    source = folder / "client"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("dist", "node_modules", "*.tgz"))
    (source / "node_modules").symlink_to(WEB_MODULES)
    out = folder / "packed"
    out.mkdir()
    packed = json.loads(
        run(["npm", "pack", "--json", "--pack-destination", str(out), *NPM_FLAGS], source)
    )
    files = {entry["path"] for entry in packed[0]["files"]}
    assert {"package.json", "README.md", "dist/index.js", "dist/index.d.ts"} <= files, files
    return out / str(packed[0]["filename"])


@pytest.fixture(scope="module")
def partner_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch Node project outside the repository: the example, and the packed client
    installed from its tarball (with its dependencies, as npm resolves them)."""
    missing = npm_missing()
    if missing:
        pytest.skip(missing)
    scratch = tmp_path_factory.mktemp("partner-ts")
    assert not scratch.resolve().is_relative_to(REPO), (
        "the scratch project must be outside the repo"
    )
    tarball = pack(scratch)
    app = scratch / "app"
    shutil.copytree(
        EXAMPLE, app, ignore=shutil.ignore_patterns("node_modules", "*.tgz", "package-lock.json")
    )
    shutil.copy(tarball, app / TARBALL)
    run(["npm", "install", *NPM_FLAGS], app)
    installed = app / "node_modules" / "@telemesh" / "client"
    assert not installed.is_symlink(), "installed from the tarball, not linked to the repo"
    assert (installed / "dist" / "index.js").is_file()
    return app


def run_example(
    mesh: MeshUnderTest, app: Path, clinic: str, patient_id: str
) -> subprocess.CompletedProcess[str]:
    """`node partner.mjs <clinic> <patient>` with the clinic's partner token."""
    env = {
        **os.environ,
        "TELEMESH_EDGE": mesh.edge_url,
        "TELEMESH_TOKEN": mesh.token("partner", clinic),
        "NODE_EXTRA_CA_CERTS": str(mesh.ca_bundle),
    }
    env.pop("NODE_PATH", None)
    return subprocess.run(
        ["node", "partner.mjs", clinic, patient_id],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_partner_runs_the_example_with_the_packed_client(
    partner_app: Path, mesh: MeshUnderTest
) -> None:
    suffix = uuid.uuid4().hex[:8]
    patient_id, clinic, other_clinic = f"p-partner-{suffix}", f"clinic-{suffix}", f"other-{suffix}"
    mesh.patient_shares_with(patient_id, [clinic, other_clinic])

    done = run_example(mesh, partner_app, clinic, patient_id)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 4, done.stdout
    assert lines[0].startswith("sharing check: PERMIT ACTIVE_CONSENT (consent "), done.stdout
    # Only the sharing consent naming this clinic: not the other clinic's, not telehealth.
    assert lines[1:3] == ["consents visible: 1", f"consent: PARTNER_SHARING {clinic} ACTIVE v1"]
    assert lines[3].startswith("telehealth check: refused PERMISSION_DENIED PARTNER_SCOPE: ")


def test_a_clinic_the_patient_did_not_name_gets_no_permit(
    partner_app: Path, mesh: MeshUnderTest
) -> None:
    """The same example with another clinic's token: the check denies (exit 1), no
    consent is visible, telehealth is still out of scope."""
    suffix = uuid.uuid4().hex[:8]
    patient_id, clinic = f"p-partner-{suffix}", f"clinic-{suffix}"
    mesh.patient_shares_with(patient_id, [clinic])

    done = run_example(mesh, partner_app, f"stranger-{suffix}", patient_id)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stdout
    assert lines[0].startswith("sharing check: DENY "), done.stdout
    assert lines[1] == "consents visible: 0"
    assert lines[2].startswith("telehealth check: refused PERMISSION_DENIED PARTNER_SCOPE: ")
