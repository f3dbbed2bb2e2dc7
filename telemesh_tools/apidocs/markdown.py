"""The Markdown pages of the API reference: one per package, and the index.

Anchors are proto full names (`#telemesh.session.v1.Visit`, and for an RPC
`#telemesh.session.v1.SessionService.GetVisit`), so links never depend on how a
renderer turns headings into ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from telemesh_tools.apidocs.callers import NOBODY, Callers
from telemesh_tools.apidocs.common_errors import COMMON_ERRORS
from telemesh_tools.apidocs.model import (
    Contract,
    Enum,
    ErrorCase,
    Extension,
    Field,
    Message,
    Method,
    Package,
    Service,
    TypeRef,
)

INDEX = "README.md"
COMMON_ANCHOR = "errors-every-rpc-may-return"
GENERATED = (
    "<!-- Generated from protos/ and mesh/allowlist.yaml by `make docs` "
    "(python -m telemesh_tools.apidocs). Do not edit: change the protos and run it again. -->"
)
PHI_MARK = "**PHI**"


def cell(text: str) -> str:
    """`text` as one Markdown table cell: paragraphs joined by <br>, `|` escaped."""
    paragraphs = [" ".join(p.split()) for p in text.replace("|", "\\|").split("\n\n")]
    return "<br>".join(p for p in paragraphs if p)


def code(text: str) -> str:
    return f"`{text}`"


def codes(items: Iterable[str]) -> str:
    return ", ".join(code(item) for item in items)


def anchor(full_name: str) -> str:
    return f'<a id="{full_name}"></a>'


class Links:
    """Links to the documented elements, as seen from one page."""

    def __init__(self, contract: Contract, page: str, package: str) -> None:
        self.contract = contract
        self.page = page
        self.package = package

    def short(self, full_name: str) -> str:
        """The name as the page's own protos write it (relative inside the package)."""
        return full_name.removeprefix(f"{self.package}.")

    def to(self, full_name: str, text: str | None = None) -> str:
        label = code(text or self.short(full_name))
        page = self.contract.page_of(full_name)
        if page is None:
            return label
        where = "" if page == self.page else page
        return f"[{label}]({where}#{full_name})"

    def type(self, ref: TypeRef) -> str:
        return self.to(ref.name) if ref.is_named else code(ref.name)


def error_table(cases: Sequence[ErrorCase]) -> list[str]:
    lines = ["| Code | Reason | When |", "| --- | --- | --- |"]
    lines += [f"| {code(e.code)} | {code(e.reason)} | {cell(e.when)} |" for e in cases]
    return lines


def who_may_call(callers: Callers) -> str:
    parts = []
    if callers.edge_roles:
        noun = "role" if len(callers.edge_roles) == 1 else "roles"
        parts.append(f"through the edge, {noun} {codes(callers.edge_roles)}")
    if callers.internal_only:
        parts.append("internal only (no end user reaches it through the edge)")
    if callers.services:
        noun = "service" if len(callers.services) == 1 else "services"
        parts.append(f"{noun} {codes(callers.services)} (mTLS identity)")
    if not parts:
        parts.append("nobody: the allow-list names no caller")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def _kind(method: Method) -> str:
    if method.server_streaming:
        return "server stream"
    return "unary, read-only" if method.read_only else "unary"


def _phi(links: Links, method: Method) -> str:
    found = []
    for side, message in (("request", method.input_type), ("response", method.output_type)):
        paths = links.contract.phi_paths(message)
        if paths:
            found.append(f"{side} {codes(paths)}")
    return "; ".join(found) + "." if found else "none."


def method_section(links: Links, service: Service, method: Method, callers: Callers) -> list[str]:
    stream = "stream " if method.server_streaming else ""
    lines = [
        anchor(method.full_name),
        f"### {service.name}.{method.name}",
        "",
        f"`rpc {method.name}({links.short(method.input_type)}) returns "
        f"({stream}{links.short(method.output_type)})`",
        "",
    ]
    if method.comment:
        lines += [method.comment, ""]
    lines += [
        f"- **Request:** {links.to(method.input_type)} · **Response:** "
        f"{stream}{links.to(method.output_type)} · {_kind(method)}",
        f"- **Who may call:** {who_may_call(callers)}",
        f"- **PHI:** {_phi(links, method)}",
        f"- **Errors** (besides [those every RPC may return]({INDEX}#{COMMON_ANCHOR})):"
        + ("" if method.errors else " none of its own."),
        "",
    ]
    if method.errors:
        lines += [*error_table(method.errors), ""]
    return lines


def service_section(links: Links, service: Service, callers: Mapping[str, Callers]) -> list[str]:
    lines = [anchor(service.full_name), f"## {service.name}", ""]
    if service.comment:
        lines += [service.comment, ""]
    lines += [
        "| RPC | Kind | Roles through the edge | Services |",
        "| --- | --- | --- | --- |",
    ]
    for method in service.methods:
        who = callers.get(method.path, NOBODY)
        roles = codes(who.edge_roles) or ("internal only" if who.internal_only else "none")
        lines.append(
            f"| {links.to(method.full_name, method.name)} | {_kind(method)} | {roles} "
            f"| {codes(who.services) or 'none'} |"
        )
    lines.append("")
    for method in service.methods:
        lines += method_section(links, service, method, callers.get(method.path, NOBODY))
    return lines


def _field_type(links: Links, field: Field) -> str:
    if field.map_key is not None:
        return f"map<{links.type(field.map_key)}, {links.type(field.type)}>"
    label = f"{field.label} " if field.label else ""
    return label + links.type(field.type)


def _field_phi(links: Links, field: Field) -> str:
    if field.phi:
        return PHI_MARK
    if field.type.is_named:
        nested = links.contract.phi_paths(field.type.name)
        if nested:
            return "holds " + codes(nested)
    return ""


def message_section(links: Links, message: Message) -> list[str]:
    lines = [anchor(message.full_name), f"### {message.name}", ""]
    if message.comment:
        lines += [message.comment, ""]
    if not message.fields:
        return [*lines, "No fields.", ""]
    lines += ["| Field | Number | Type | PHI | Description |", "| --- | --- | --- | --- | --- |"]
    for field in message.fields:
        description = cell(field.comment)
        if field.oneof:
            description = f"One of `{field.oneof}`. {description}".rstrip()
        lines.append(
            f"| {code(field.name)} | {field.number} | {_field_type(links, field)} "
            f"| {_field_phi(links, field)} | {description} |"
        )
    return [*lines, ""]


def enum_section(enum: Enum) -> list[str]:
    lines = [anchor(enum.full_name), f"### {enum.name}", ""]
    if enum.comment:
        lines += [enum.comment, ""]
    lines += ["| Value | Number | Description |", "| --- | --- | --- |"]
    lines += [f"| {code(v.name)} | {v.number} | {cell(v.comment)} |" for v in enum.values]
    return [*lines, ""]


def extension_section(links: Links, extension: Extension) -> list[str]:
    label = f"{extension.label} " if extension.label else ""
    lines = [
        anchor(extension.full_name),
        f"### ({extension.full_name})",
        "",
        f"Extends {code(extension.extendee)} · field {extension.number} · "
        f"{label}{links.type(extension.type)}",
        "",
    ]
    if extension.comment:
        lines += [extension.comment, ""]
    return lines


def package_page(contract: Contract, package: Package, callers: Mapping[str, Callers]) -> str:
    links = Links(contract, package.page, package.name)
    lines = [
        f"# {package.name}",
        "",
        GENERATED,
        "",
        f"[API reference]({INDEX}) · source: {codes('protos/' + f for f in package.files)}",
        "",
    ]
    contents = [f"[{s.name}](#{s.full_name}) ({len(s.methods)} RPCs)" for s in package.services]
    for title, count in (
        ("Messages", len(package.messages)),
        ("Enums", len(package.enums)),
        ("Extensions", len(package.extensions)),
    ):
        if count:
            contents.append(f"[{title}](#{title.lower()}) ({count})")
    lines += [f"- {item}" for item in contents] + [""]
    for service in package.services:
        lines += service_section(links, service, callers)
    if package.messages:
        lines += ["## Messages", ""]
        for message in package.messages:
            lines += message_section(links, message)
    if package.enums:
        lines += ["## Enums", ""]
        for enum in package.enums:
            lines += enum_section(enum)
    if package.extensions:
        lines += ["## Extensions", ""]
        for extension in package.extensions:
            lines += extension_section(links, extension)
    return "\n".join(lines).rstrip("\n") + "\n"


READING = """\
## How to read this reference

- **Comments** are the protos' own: every service, RPC, message, field, enum value and
  extension is documented where it is declared, and this reference repeats it.
- **Who may call** comes from the mesh's one allow-list, `mesh/allowlist.yaml`: the end-user
  roles (the `role` claim of the caller's JWT) the edge lets through to the RPC, the
  service identities (SPIFFE ids over mutual TLS) that may call it inside the mesh, and
  whether it is *internal only* (no end user reaches it through the edge). This is the
  outer wall: the edge and the sidecars refuse every other caller (`PERMISSION_DENIED`,
  HTTP 403, without an `ErrorInfo`). Each service then applies its own rules (a patient
  reaches only their own record, a clinician only patients they treat, ...); those
  refusals are the RPC's own `PERMISSION_DENIED` errors.
- **PHI** marks the fields that carry protected health information: those declared with
  `(telemesh.common.v1.phi) = true` (column *PHI* of a message; *holds* names the PHI
  fields inside a field's message), and for each RPC the PHI paths in its request and
  response. PHI never reaches logs, span attributes or metrics, and is encrypted at rest.
- **Errors** are part of the API. A failure is a standard gRPC status with
  `google.rpc.Status` details in `grpc-status-details-bin`: an `ErrorInfo` with a stable
  `reason` (domain `telemesh.dev`; clients branch on it, never on the message) and, for
  bad input, a `BadRequest` with the field violations. Each RPC lists the errors of its
  own rules (its `(telemesh.common.v1.errors)` method options); the errors below may come
  from any RPC and are not repeated on each.
"""

PROXY_ERRORS = """\
Calls through the edge or a sidecar may also end at Envoy, before any service, without an
`ErrorInfo`: `UNAUTHENTICATED` (HTTP 401) for a missing or bad JWT at the edge,
`PERMISSION_DENIED` (HTTP 403) for a caller the allow-list does not let through,
`UNAVAILABLE` when the service cannot be reached. `DEADLINE_EXCEEDED` and `CANCELLED` are
the client's own deadline and cancellation. Retry only `UNAVAILABLE`, and a mutating RPC
only with the same `request_id`.
"""


def _ref(contract: Contract, method: Method) -> str:
    page = contract.page_of(method.full_name) or ""
    service = method.full_name.rsplit(".", 2)[-2]
    return f"[{service}.{method.name}]({page}#{method.full_name})"


def index_page(contract: Contract, callers: Mapping[str, Callers]) -> str:
    lines = [
        "# Telemesh API reference",
        "",
        GENERATED,
        "",
        "The published contract, `protos/` (one buf module), for the patient and clinician "
        "apps, partner clinics and the services themselves. Generated by `make docs` from "
        "the protos' own comments, their error and PHI options, and `mesh/allowlist.yaml`.",
        "",
        "| Package | Page | Services | RPCs | Messages | Enums |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for package in contract.packages:
        rpcs = sum(len(s.methods) for s in package.services)
        services = ", ".join(f"[{s.name}]({package.page}#{s.full_name})" for s in package.services)
        lines.append(
            f"| {code(package.name)} | [{package.page}]({package.page}) | {services or 'none'} "
            f"| {rpcs} | {len(package.messages)} | {len(package.enums)} |"
        )
    lines += ["", READING, f'<a id="{COMMON_ANCHOR}"></a>', "## Errors every RPC may return", ""]
    lines += [*error_table(COMMON_ERRORS), "", PROXY_ERRORS]
    lines += _roles_section(contract, callers)
    lines += _reasons_section(contract)
    return "\n".join(lines).rstrip("\n") + "\n"


def _roles_section(contract: Contract, callers: Mapping[str, Callers]) -> list[str]:
    by_role: dict[str, list[Method]] = {}
    by_service: dict[str, list[Method]] = {}
    for method in contract.methods():
        who = callers.get(method.path, NOBODY)
        for role in who.edge_roles:
            by_role.setdefault(role, []).append(method)
        for service in who.services:
            by_service.setdefault(service, []).append(method)
    lines = [
        "## Callers at a glance",
        "",
        "From `mesh/allowlist.yaml`: what each end-user role may call through the edge, and "
        "what each service identity may call inside the mesh.",
        "",
        "| Caller | RPCs |",
        "| --- | --- |",
    ]
    for kind, table in (("role", by_role), ("service", by_service)):
        for name in sorted(table):
            refs = sorted(_ref(contract, m) for m in table[name])
            lines.append(f"| {kind} {code(name)} | {', '.join(refs)} |")
    return [*lines, ""]


def _reasons_section(contract: Contract) -> list[str]:
    by_reason: dict[tuple[str, str], list[Method]] = {}
    for method in contract.methods():
        for case in method.errors:
            by_reason.setdefault((case.reason, case.code), []).append(method)
    lines = [
        "## Error reasons",
        "",
        "Every `ErrorInfo` reason an RPC declares, with its status code and the RPCs that may "
        "return it (the reasons every RPC may return are above).",
        "",
        "| Reason | Code | RPCs |",
        "| --- | --- | --- |",
    ]
    for (reason, status), methods in sorted(by_reason.items()):
        refs = sorted({_ref(contract, m) for m in methods})
        lines.append(f"| {code(reason)} | {code(status)} | {', '.join(refs)} |")
    return [*lines, ""]
