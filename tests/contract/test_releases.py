"""Released contracts hold: `make lint` runs scripts/buf-breaking.sh, which compares the
protos with every release image in protos/releases/ (FILE rules). Here an edited copy of
the protos shows that each kind of break a partner would feel fails the check, and that
an additive change passes. Every release image has its CHANGELOG entry."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.harness import REPO

RELEASES = REPO / "protos" / "releases"
CONSENT = Path("protos/telemesh/consent/v1/consent.proto")
BILLING = Path("protos/telemesh/billing/v1/billing.proto")


def _edit(path: Path, old: str, new: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        target = root / path
        text = target.read_text()
        assert text.count(old) == 1, f"{old!r} is not once in {path}: update this test"
        target.write_text(text.replace(old, new))

    return apply


def _in_message(path: Path, message: str, old: str, new: str) -> Callable[[Path], None]:
    """Replaces `old` inside the body of `message` only."""

    def apply(root: Path) -> None:
        target = root / path
        text = target.read_text()
        match = re.search(rf"^message {message} \{{\n(.*?)^\}}", text, re.M | re.S)
        assert match, f"no message {message} in {path}: update this test"
        assert old in match.group(1), f"{old!r} not in {message}: update this test"
        body = match.group(1).replace(old, new, 1)
        target.write_text(text[: match.start(1)] + body + text[match.end(1) :])

    return apply


BREAKS: dict[str, tuple[Callable[[Path], None], str]] = {
    "field renumbered": (
        _in_message(
            CONSENT, "CheckConsentRequest", "string patient_id = 1;", "string patient_id = 9;"
        ),
        "CheckConsentRequest",
    ),
    "field removed": (
        _in_message(
            CONSENT,
            "CheckConsentRequest",
            "  google.protobuf.Timestamp at_time = 4;\n",
            "",
        ),
        "CheckConsentRequest",
    ),
    "RPC renamed": (
        _edit(BILLING, "rpc GetCharge(GetChargeRequest)", "rpc FetchCharge(GetChargeRequest)"),
        "GetCharge",
    ),
}


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "contract"
    shutil.copytree(REPO / "protos", root / "protos", ignore=shutil.ignore_patterns("releases"))
    shutil.copy(REPO / "buf.yaml", root / "buf.yaml")
    return root


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "scripts" / "buf-breaking.sh"), str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_there_is_a_release_and_each_has_its_changelog_entry() -> None:
    images = sorted(RELEASES.glob("v*.binpb"))
    assert images, "no release image: scripts/release-contract.sh v1.0.0"
    changelog = (REPO / "protos" / "CHANGELOG.md").read_text()
    for image in images:
        assert f"\n## {image.stem}" in changelog, f"protos/CHANGELOG.md lacks ## {image.stem}"


def test_the_protos_as_they_stand_keep_every_release(tmp_path: Path) -> None:
    result = _check(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    for image in RELEASES.glob("v*.binpb"):
        assert f"compatible with {image.stem}" in result.stdout


def test_an_added_field_and_rpc_keep_the_release(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _in_message(
        CONSENT,
        "CheckConsentRequest",
        "  google.protobuf.Timestamp at_time = 4;\n",
        "  google.protobuf.Timestamp at_time = 4;\n  // A new field.\n  string note = 99;\n",
    )(root)
    result = _check(root)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kind", BREAKS)
def test_a_breaking_change_fails_the_check(tmp_path: Path, kind: str) -> None:
    edit, named = BREAKS[kind]
    root = _copy(tmp_path)
    edit(root)
    result = _check(root)
    assert result.returncode != 0, f"{kind} passed the check:\n{result.stdout}"
    assert "BREAKS v1.0.0" in result.stderr
    assert named in result.stdout + result.stderr
