"""The contract as a binary FileDescriptorSet, for clients that read descriptors at run
time (the Node gRPC-web client), made from the generated Python modules."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FileDescriptor

from telemesh.billing.v1 import billing_pb2
from telemesh.consent.v1 import consent_pb2
from telemesh.session.v1 import session_pb2
from telemesh.signaling.v1 import signaling_pb2

CONTRACT = (session_pb2, signaling_pb2, consent_pb2, billing_pb2)


def _json_names(proto: descriptor_pb2.DescriptorProto, descriptor: Descriptor) -> None:
    """protoc fills `json_name` in descriptor sets; CopyToProto does not."""
    for field in proto.field:
        field.json_name = descriptor.fields_by_name[field.name].json_name
    for nested in proto.nested_type:
        _json_names(nested, descriptor.nested_types_by_name[nested.name])


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """Every file of the contract and its imports, each after its dependencies."""
    ordered: list[descriptor_pb2.FileDescriptorProto] = []
    seen: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        for message in proto.message_type:
            _json_names(message, file.message_types_by_name[message.name])
        ordered.append(proto)

    for module in CONTRACT:
        add(module.DESCRIPTOR)
    return descriptor_pb2.FileDescriptorSet(file=ordered)


def write_descriptor_set(path: Path) -> Path:
    path.write_bytes(descriptor_set().SerializeToString())
    return path
