"""The API reference (docs/api, `make docs`): fresh, complete, and true to the code.

docs/api/ is generated from the protos (comments, the `(telemesh.common.v1.errors)` and
`(telemesh.common.v1.phi)` options) and mesh/allowlist.yaml by `python -m
telemesh_tools.apidocs`. These tests regenerate it and compare; check that every RPC documents
its errors and callers and every PHI field is marked; and that the declared error
reasons are the ones the services really raise (a cheap reading of the sources).
"""

from __future__ import annotations

import ast
import filecmp
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FileDescriptor, MethodDescriptor

from telemesh import errors
from telemesh.billing.v1 import billing_pb2
from telemesh.common.v1 import options_pb2
from telemesh.consent.v1 import consent_pb2
from telemesh.phi import is_phi, phi_paths
from telemesh.session.v1 import session_pb2
from telemesh.signaling.v1 import signaling_pb2
from telemesh_tools.apidocs.common_errors import COMMON_ERRORS
from telemesh_tools.mesh import allowlist
from tests.support.harness import REPO

DOCS = REPO / "docs" / "api"
FILES: list[FileDescriptor] = [
    options_pb2.DESCRIPTOR,
    session_pb2.DESCRIPTOR,
    signaling_pb2.DESCRIPTOR,
    consent_pb2.DESCRIPTOR,
    billing_pb2.DESCRIPTOR,
]
METHODS: list[MethodDescriptor] = [
    method
    for file in FILES
    for service in file.services_by_name.values()
    for method in service.methods
]
COMMON_ANCHOR = "errors-every-rpc-may-return"

# RPCs that can fail only in the ways every RPC can (docs/api/README.md). Each says why.
ONLY_COMMON_ERRORS = {
    # Any authenticated caller gets the public keys: there is nothing else to refuse.
    "telemesh.session.v1.SessionService.GetJoinTokenKeys",
}
# Reasons the code raises that no RPC declares, on purpose. Each says why.
UNDECLARED_REASONS = {
    # The interceptor's answer for a method of the contract not built yet: all are built.
    "UNIMPLEMENTED",
}
# Where reasons are raised: the services and the shared runtime. Not the generated stubs
# (their descriptors hold the declared reasons) and not the generator itself.
SOURCES = ["svc_session", "svc_consent", "svc_signaling", "svc_billing", "telemesh"]
NOT_SOURCES = ["telemesh_tools/apidocs"]


def errors_of(method: MethodDescriptor) -> list[options_pb2.ErrorCase]:
    return list(method.GetOptions().Extensions[options_pb2.errors])


def pages() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(DOCS.glob("*.md"))}


def sections() -> dict[str, str]:
    """Anchor (a proto full name) -> its part of the reference, up to the next anchor."""
    found: dict[str, str] = {}
    for text in pages().values():
        parts = re.split(r'^<a id="([^"]+)"></a>$', text, flags=re.MULTILINE)
        found.update(zip(parts[1::2], parts[2::2], strict=True))
    return found


def line_of(section: str, label: str) -> str:
    """The bullet `- **label:** ...` of an RPC's section."""
    for line in section.splitlines():
        if line.startswith(f"- **{label}:**"):
            return line
    raise AssertionError(f"no {label!r} line in:\n{section}")


def all_messages() -> Iterator[Descriptor]:
    def walk(message: Descriptor) -> Iterator[Descriptor]:
        if not message.GetOptions().map_entry:
            yield message
            for nested in message.nested_types:
                yield from walk(nested)

    for file in FILES:
        for message in file.message_types_by_name.values():
            yield from walk(message)


# --- fresh ---------------------------------------------------------------------------


def test_reference_is_fresh(tmp_path: Path) -> None:
    """docs/api is exactly what `make docs` makes from protos/ and the allow-list now."""
    out = tmp_path / "api"
    subprocess.run(
        [sys.executable, "-m", "telemesh_tools.apidocs", "--out", str(out)], cwd=REPO, check=True
    )
    fresh = sorted(p.name for p in out.glob("*.md"))
    committed = sorted(p.name for p in DOCS.glob("*.md"))
    assert fresh == committed, f"pages differ in name, run `make docs`: {fresh} != {committed}"
    stale = [name for name in fresh if not filecmp.cmp(out / name, DOCS / name, shallow=False)]
    assert not stale, f"stale API reference, run `make docs`: {stale}"


# --- complete ------------------------------------------------------------------------


def test_every_element_has_its_place() -> None:
    """Every service, RPC, message (with each field) and enum (with each value)."""
    found = sections()
    for file in FILES:
        for service in file.services_by_name.values():
            assert service.full_name in found
            for method in service.methods:
                assert method.full_name in found
        for enum in file.enum_types_by_name.values():
            for value in enum.values:
                assert f"| `{value.name}` | {value.number} |" in found[enum.full_name]
        for extension in file.extensions_by_name.values():
            assert extension.full_name in found
    for message in all_messages():
        for enum in message.enum_types:
            assert enum.full_name in found
        for field in message.fields:
            assert f"| `{field.name}` | {field.number} |" in found[message.full_name], (
                message.full_name,
                field.name,
            )


def test_the_protos_comments_come_along() -> None:
    found = sections()
    assert "SessionService owns people's profiles" in found["telemesh.session.v1.SessionService"]
    assert (
        "A newer stream of the same participant replaces an older one"
        in found["telemesh.signaling.v1.SignalingService.JoinRoom"]
    )
    assert "The patient is in the waiting room." in found["telemesh.session.v1.VisitState"]
    assert "The name shown to the clinician." in found["telemesh.session.v1.Patient"]


# --- errors --------------------------------------------------------------------------


def test_the_common_errors_are_documented_once() -> None:
    index = pages()["README.md"]
    assert f'<a id="{COMMON_ANCHOR}"></a>' in index
    for case in COMMON_ERRORS:
        assert f"| `{case.code}` | `{case.reason}` |" in index, case
    declared = {(c.code, c.reason) for method in METHODS for c in errors_of(method)}
    repeated = declared & {(c.code, c.reason) for c in COMMON_ERRORS}
    assert not repeated, f"declared on RPCs but documented as common: {repeated}"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_every_rpc_documents_its_errors(method: MethodDescriptor) -> None:
    declared = errors_of(method)
    if method.full_name in ONLY_COMMON_ERRORS:
        assert not declared, f"{method.full_name} declares errors: drop it from the list"
    else:
        assert declared, (
            f"{method.full_name} declares no (telemesh.common.v1.errors): add the errors it "
            "returns beyond the common ones"
        )
    section = sections()[method.full_name]
    assert f"README.md#{COMMON_ANCHOR}" in section
    for case in declared:
        assert f"| `{case.code}` | `{case.reason}` |" in section, case
        assert case.when.strip(), f"{method.full_name} {case.reason}: say when"
    assert len({(c.code, c.reason) for c in declared}) == len(declared), "a case twice"


# --- callers -------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_every_rpc_lists_its_callers(method: MethodDescriptor) -> None:
    rules = allowlist.load()
    short = next(
        s for s, full in rules.services.items() if full == method.containing_service.full_name
    )
    path = rules.path(short, method.name)
    roles = rules.edge_methods(short).get(path, [])
    services = [caller for caller, paths in rules.callers_of(short).items() if path in paths]
    internal = method.name in rules.internal_only.get(short, ())
    assert roles or internal, f"{method.full_name} is placed nowhere in the allow-list"
    line = line_of(sections()[method.full_name], "Who may call").lower()
    for name in [*roles, *services]:
        assert f"`{name}`" in line, (name, line)
    assert ("internal only" in line) == internal, line
    assert ("through the edge, role" in line) == bool(roles), line


# --- PHI -----------------------------------------------------------------------------


def test_every_phi_field_is_marked() -> None:
    found = sections()
    marked = 0
    for message in all_messages():
        rows = {
            line.split("|")[1].strip(): line
            for line in found[message.full_name].splitlines()
            if line.startswith("| `")
        }
        for field in message.fields:
            row = rows[f"`{field.name}`"]
            assert ("**PHI**" in row) == is_phi(field), (message.full_name, row)
            marked += is_phi(field)
    assert marked >= 8  # the profiles' names, birth dates and contact details at least


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_every_rpc_names_its_phi(method: MethodDescriptor) -> None:
    line = line_of(sections()[method.full_name], "PHI")
    paths = phi_paths(method.input_type) | phi_paths(method.output_type)
    for path in paths:
        assert f"`{path}`" in line, (path, line)
    assert ("none" in line) == (not paths), line


# --- true to the code ----------------------------------------------------------------


def _source_files() -> list[Path]:
    skipped = [REPO / name for name in NOT_SOURCES]
    return sorted(
        path
        for root in SOURCES
        for path in (REPO / root).rglob("*.py")
        if not any(path.is_relative_to(skip) for skip in skipped)
    )


def _error_classes() -> dict[str, grpc.StatusCode]:
    """Name -> status code of every TelemeshError class in telemesh.errors."""
    return {
        name: value.code
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.TelemeshError)
    }


class _Reading:
    """What the sources say about reasons: every string literal, every f-string that
    builds one, and the reasons passed straight to an error class (with its code)."""

    def __init__(self) -> None:
        self.literals: set[str] = set()
        self.templates: list[re.Pattern[str]] = []
        self.raised: dict[str, set[str]] = {}
        classes = _error_classes()
        for path in _source_files():
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    self.literals.add(node.value)
                elif isinstance(node, ast.JoinedStr):
                    self._template(node)
                elif isinstance(node, ast.Call):
                    self._call(node, classes)

    def _template(self, node: ast.JoinedStr) -> None:
        fixed = "".join(
            part.value
            for part in node.values
            if isinstance(part, ast.Constant) and isinstance(part.value, str)
        )
        if not re.search(r"[A-Z_]{3,}", fixed):
            return  # not the shape of a reason
        pattern = "".join(
            re.escape(part.value)
            if isinstance(part, ast.Constant) and isinstance(part.value, str)
            else "(.+?)"
            for part in node.values
        )
        self.templates.append(re.compile(pattern))

    def _call(self, node: ast.Call, classes: dict[str, grpc.StatusCode]) -> None:
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if name not in classes or not node.args:
            return
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            return
        if name == "NotFound":  # NotFound(resource, id): reason `<RESOURCE>_NOT_FOUND`
            reason = f"{first.value.upper()}_NOT_FOUND"
        elif name == "InvalidArgument":
            return
        else:
            reason = first.value
        self.raised.setdefault(reason, set()).add(classes[name].name)

    def builds(self, reason: str) -> bool:
        """The reason is a literal, or an f-string's result whose every placeholder is
        (upper-cased) a literal too (`f"CHARGE_ALREADY_{target.upper()}"`, "billed")."""
        if reason in self.literals:
            return True
        for template in self.templates:
            match = template.fullmatch(reason)
            if match and all(part.lower() in self.literals for part in match.groups()):
                return True
        return False


@pytest.fixture(scope="module")
def reading() -> _Reading:
    return _Reading()


def _declared() -> list[tuple[str, options_pb2.ErrorCase]]:
    cases = [(m.full_name, c) for m in METHODS for c in errors_of(m)]
    cases += [
        ("common", options_pb2.ErrorCase(code=c.code, reason=c.reason, when=c.when))
        for c in COMMON_ERRORS
    ]
    return cases


def test_declared_reasons_are_raised_by_the_code(reading: _Reading) -> None:
    """Each declared reason appears in the services' or the runtime's sources, with a
    valid status code (the one its error class carries, where the code names it)."""
    problems = []
    for where, case in _declared():
        if case.code not in grpc.StatusCode.__members__ or case.code == "OK":
            problems.append(f"{where}: {case.code!r} is not a gRPC status code name")
        if not reading.builds(case.reason):
            problems.append(f"{where}: reason {case.reason!r} appears nowhere in the sources")
        raised_as = reading.raised.get(case.reason)
        if raised_as and case.code not in raised_as:
            problems.append(
                f"{where}: {case.reason} is raised as {sorted(raised_as)}, not {case.code}"
            )
    assert not problems, "\n".join(problems)


def test_raised_reasons_are_declared(reading: _Reading) -> None:
    """Every reason the code passes straight to an error class is documented somewhere:
    on an RPC or among the common errors (a new reason needs its place in the protos)."""
    declared = {case.reason for _, case in _declared()}
    missing = sorted(set(reading.raised) - declared - UNDECLARED_REASONS)
    assert not missing, (
        f"raised but documented nowhere (add a (telemesh.common.v1.errors)): {missing}"
    )
