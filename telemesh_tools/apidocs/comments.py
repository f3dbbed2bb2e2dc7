"""The comment of each element of a proto file, read from its SourceCodeInfo.

An element is named by its SourceCodeInfo path: the field numbers and indexes that lead
to it from the FileDescriptorProto (`(4, 0)` the first message, `(4, 0, 2, 1)` its
second field, `(6, 0, 2, 3)` the fourth method of the first service, ...).
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2

# Field numbers of the descriptor messages, as SourceCodeInfo paths use them.
FILE_MESSAGE = 4
FILE_ENUM = 5
FILE_SERVICE = 6
FILE_EXTENSION = 7
MESSAGE_FIELD = 2
MESSAGE_NESTED = 3
MESSAGE_ENUM = 4
ENUM_VALUE = 2
SERVICE_METHOD = 2

Path = tuple[int, ...]


def _clean(text: str) -> str:
    """A comment's text without the space after `//`, trailing blanks and empty edges."""
    lines = [line[1:] if line.startswith(" ") else line for line in text.split("\n")]
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def comments(file: descriptor_pb2.FileDescriptorProto) -> dict[Path, str]:
    """Element path -> its leading comment (and trailing comment, after a blank line)."""
    found: dict[Path, str] = {}
    for location in file.source_code_info.location:
        parts = [
            _clean(text)
            for text in (location.leading_comments, location.trailing_comments)
            if text.strip()
        ]
        if parts:
            found[tuple(location.path)] = "\n\n".join(parts)
    return found
