"""The contract as plain data, read from the descriptors and their comments.

Declaration order is kept wherever the protos give one (services, RPCs, messages,
fields, enum values): it is the order the authors chose to explain things in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from google.protobuf import descriptor_pb2

from telemesh.common.v1 import options_pb2
from telemesh_tools.apidocs import comments as c

FieldProto = descriptor_pb2.FieldDescriptorProto

SCALARS: Mapping[int, str] = {
    FieldProto.TYPE_DOUBLE: "double",
    FieldProto.TYPE_FLOAT: "float",
    FieldProto.TYPE_INT64: "int64",
    FieldProto.TYPE_UINT64: "uint64",
    FieldProto.TYPE_INT32: "int32",
    FieldProto.TYPE_FIXED64: "fixed64",
    FieldProto.TYPE_FIXED32: "fixed32",
    FieldProto.TYPE_BOOL: "bool",
    FieldProto.TYPE_STRING: "string",
    FieldProto.TYPE_BYTES: "bytes",
    FieldProto.TYPE_UINT32: "uint32",
    FieldProto.TYPE_SFIXED32: "sfixed32",
    FieldProto.TYPE_SFIXED64: "sfixed64",
    FieldProto.TYPE_SINT32: "sint32",
    FieldProto.TYPE_SINT64: "sint64",
}


@dataclass(frozen=True)
class TypeRef:
    """A field's type: a scalar (`name` only) or a message or enum by full name."""

    name: str  # `string`, or the full name `telemesh.session.v1.Visit`
    is_named: bool  # a message or enum (linkable), not a scalar


@dataclass(frozen=True)
class ErrorCase:
    """One error an RPC may return: status code name, ErrorInfo reason, when."""

    code: str
    reason: str
    when: str


@dataclass(frozen=True)
class Field:
    name: str
    number: int
    type: TypeRef
    map_key: TypeRef | None  # set for a map field: `type` is then the value's type
    label: str  # "repeated", "optional" or ""
    oneof: str | None  # the real oneof it belongs to
    phi: bool
    comment: str


@dataclass(frozen=True)
class Message:
    full_name: str
    name: str  # relative to the package (`Outer.Inner` for a nested message)
    comment: str
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class EnumValue:
    name: str
    number: int
    comment: str


@dataclass(frozen=True)
class Enum:
    full_name: str
    name: str
    comment: str
    values: tuple[EnumValue, ...]


@dataclass(frozen=True)
class Method:
    name: str
    full_name: str  # `telemesh.session.v1.SessionService.GetVisit`
    input_type: str  # full names
    output_type: str
    server_streaming: bool
    read_only: bool  # idempotency_level NO_SIDE_EFFECTS
    comment: str
    errors: tuple[ErrorCase, ...]

    @property
    def path(self) -> str:
        """The HTTP/2 path, `/package.Service/Method`, as the allow-list names it."""
        service, _, method = self.full_name.rpartition(".")
        return f"/{service}/{method}"


@dataclass(frozen=True)
class Service:
    name: str
    full_name: str
    comment: str
    methods: tuple[Method, ...]


@dataclass(frozen=True)
class Extension:
    name: str
    full_name: str
    extendee: str
    number: int
    type: TypeRef
    label: str
    comment: str


@dataclass(frozen=True)
class Package:
    name: str  # `telemesh.session.v1`
    files: tuple[str, ...]  # `telemesh/session/v1/session.proto`
    services: tuple[Service, ...]
    messages: tuple[Message, ...]
    enums: tuple[Enum, ...]
    extensions: tuple[Extension, ...]

    @property
    def page(self) -> str:
        """Its page in docs/api: `session.md` for `telemesh.session.v1` (a later major
        version gets its own, `session-v2.md`)."""
        parts = self.name.split(".")
        middle = parts[1:-1] if len(parts) > 2 else parts
        version = "" if parts[-1] == "v1" else f"-{parts[-1]}"
        return "-".join(middle) + version + ".md"


@dataclass(frozen=True)
class Contract:
    packages: tuple[Package, ...]

    def messages(self) -> dict[str, Message]:
        return {m.full_name: m for p in self.packages for m in p.messages}

    def enums(self) -> dict[str, Enum]:
        return {e.full_name: e for p in self.packages for e in p.enums}

    def methods(self) -> Iterator[Method]:
        for package in self.packages:
            for service in package.services:
                yield from service.methods

    def page_of(self, full_name: str) -> str | None:
        """The page that documents the message or enum `full_name` (None: not ours)."""
        for package in self.packages:
            if full_name.startswith(f"{package.name}."):
                return package.page
        return None

    def phi_paths(self, message: str) -> list[str]:
        """Dotted paths of the PHI fields reachable from `message`, in field order."""
        messages = self.messages()

        def walk(name: str, prefix: str, seen: frozenset[str]) -> Iterator[str]:
            found = messages.get(name)
            if found is None or name in seen:
                return
            for field in found.fields:
                if field.phi:
                    yield f"{prefix}{field.name}"
                elif field.type.is_named:
                    yield from walk(field.type.name, f"{prefix}{field.name}.", seen | {name})

        return list(walk(message, "", frozenset()))


def _type(field: FieldProto) -> TypeRef:
    if field.type in (FieldProto.TYPE_MESSAGE, FieldProto.TYPE_ENUM):
        return TypeRef(field.type_name.lstrip("."), is_named=True)
    return TypeRef(SCALARS[field.type], is_named=False)


def _label(field: FieldProto) -> str:
    if field.label == FieldProto.LABEL_REPEATED:
        return "repeated"
    if field.proto3_optional:
        return "optional"
    return ""


class _Reader:
    """Reads one file's elements with their comments."""

    def __init__(
        self,
        file: descriptor_pb2.FileDescriptorProto,
        map_entries: Mapping[str, descriptor_pb2.DescriptorProto],
    ) -> None:
        self.file = file
        self.package = file.package
        self.comments = c.comments(file)
        self.map_entries = map_entries

    def comment(self, path: c.Path) -> str:
        return self.comments.get(path, "")

    def field(self, message: descriptor_pb2.DescriptorProto, index: int, path: c.Path) -> Field:
        proto = message.field[index]
        value_type, key_type, label = _type(proto), None, _label(proto)
        entry = self.map_entries.get(value_type.name) if value_type.is_named else None
        if entry is not None and label == "repeated":
            key_type, value_type, label = _type(entry.field[0]), _type(entry.field[1]), ""
        oneof = None
        if proto.HasField("oneof_index") and not proto.proto3_optional:
            oneof = message.oneof_decl[proto.oneof_index].name
        return Field(
            name=proto.name,
            number=proto.number,
            type=value_type,
            map_key=key_type,
            label=label,
            oneof=oneof,
            phi=bool(proto.options.Extensions[options_pb2.phi]),
            comment=self.comment((*path, c.MESSAGE_FIELD, index)),
        )

    def enum(self, proto: descriptor_pb2.EnumDescriptorProto, name: str, path: c.Path) -> Enum:
        return Enum(
            full_name=f"{self.package}.{name}",
            name=name,
            comment=self.comment(path),
            values=tuple(
                EnumValue(value.name, value.number, self.comment((*path, c.ENUM_VALUE, i)))
                for i, value in enumerate(proto.value)
            ),
        )

    def messages(
        self, proto: descriptor_pb2.DescriptorProto, prefix: str, path: c.Path
    ) -> tuple[list[Message], list[Enum]]:
        """The message at `path` and every message and enum nested in it."""
        name = f"{prefix}{proto.name}"
        if proto.options.map_entry:
            return [], []
        messages = [
            Message(
                full_name=f"{self.package}.{name}",
                name=name,
                comment=self.comment(path),
                fields=tuple(self.field(proto, i, path) for i in range(len(proto.field))),
            )
        ]
        enums = [
            self.enum(nested, f"{name}.{nested.name}", (*path, c.MESSAGE_ENUM, i))
            for i, nested in enumerate(proto.enum_type)
        ]
        for i, nested_message in enumerate(proto.nested_type):
            more, more_enums = self.messages(
                nested_message, f"{name}.", (*path, c.MESSAGE_NESTED, i)
            )
            messages += more
            enums += more_enums
        return messages, enums

    def method(
        self, service: descriptor_pb2.ServiceDescriptorProto, index: int, path: c.Path
    ) -> Method:
        proto = service.method[index]
        options = proto.options
        return Method(
            name=proto.name,
            full_name=f"{self.package}.{service.name}.{proto.name}",
            input_type=proto.input_type.lstrip("."),
            output_type=proto.output_type.lstrip("."),
            server_streaming=proto.server_streaming,
            read_only=options.idempotency_level == options.NO_SIDE_EFFECTS,
            comment=self.comment((*path, c.SERVICE_METHOD, index)),
            errors=tuple(
                ErrorCase(case.code, case.reason, case.when)
                for case in options.Extensions[options_pb2.errors]
            ),
        )

    def services(self) -> list[Service]:
        return [
            Service(
                name=proto.name,
                full_name=f"{self.package}.{proto.name}",
                comment=self.comment((c.FILE_SERVICE, i)),
                methods=tuple(
                    self.method(proto, m, (c.FILE_SERVICE, i)) for m in range(len(proto.method))
                ),
            )
            for i, proto in enumerate(self.file.service)
        ]

    def extensions(self) -> list[Extension]:
        return [
            Extension(
                name=proto.name,
                full_name=f"{self.package}.{proto.name}",
                extendee=proto.extendee.lstrip("."),
                number=proto.number,
                type=_type(proto),
                label=_label(proto),
                comment=self.comment((c.FILE_EXTENSION, i)),
            )
            for i, proto in enumerate(self.file.extension)
        ]

    def all_messages(self) -> tuple[list[Message], list[Enum]]:
        messages: list[Message] = []
        enums = [
            self.enum(proto, proto.name, (c.FILE_ENUM, i))
            for i, proto in enumerate(self.file.enum_type)
        ]
        for i, proto in enumerate(self.file.message_type):
            more, more_enums = self.messages(proto, "", (c.FILE_MESSAGE, i))
            messages += more
            enums += more_enums
        return messages, enums


def _map_entries(
    image: descriptor_pb2.FileDescriptorSet,
) -> dict[str, descriptor_pb2.DescriptorProto]:
    """Full name -> the synthetic entry message of every map field."""
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def visit(proto: descriptor_pb2.DescriptorProto, prefix: str) -> None:
        name = f"{prefix}.{proto.name}"
        if proto.options.map_entry:
            found[name] = proto
        for nested in proto.nested_type:
            visit(nested, name)

    for file in image.file:
        for proto in file.message_type:
            visit(proto, file.package)
    return found


def read(image: descriptor_pb2.FileDescriptorSet) -> Contract:
    """The contract in `image`, one Package per proto package (sorted by name)."""
    entries = _map_entries(image)
    by_package: dict[str, list[_Reader]] = {}
    for file in image.file:
        by_package.setdefault(file.package, []).append(_Reader(file, entries))
    packages = []
    for name in sorted(by_package):
        readers = sorted(by_package[name], key=lambda reader: reader.file.name)
        services: list[Service] = []
        messages: list[Message] = []
        enums: list[Enum] = []
        extensions: list[Extension] = []
        for reader in readers:
            services += reader.services()
            more_messages, more_enums = reader.all_messages()
            messages += more_messages
            enums += more_enums
            extensions += reader.extensions()
        packages.append(
            Package(
                name=name,
                files=tuple(reader.file.name for reader in readers),
                services=tuple(services),
                messages=tuple(messages),
                enums=tuple(enums),
                extensions=tuple(extensions),
            )
        )
    return Contract(tuple(packages))
