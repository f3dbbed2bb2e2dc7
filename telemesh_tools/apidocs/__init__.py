"""The API reference of the published contract, generated from the protos into docs/api/.

`make docs` (`python -m telemesh_tools.apidocs`) builds the protos with buf (source info kept,
so the protos' own comments come along), reads every service, RPC, message, field, enum
and extension, the error cases each RPC declares (`(telemesh.common.v1.errors)`), the
fields marked `(telemesh.common.v1.phi)` and who may call each RPC (mesh/allowlist.yaml),
and writes one Markdown page per package plus an index. The output is deterministic:
tests/contract/test_api_docs.py fails while docs/api/ is stale.

- `image`: the protos as a FileDescriptorSet (buf build, with source info)
- `comments`: the comment of each element, from SourceCodeInfo
- `model`: the contract as plain data (packages, services, RPCs, messages, enums, PHI)
- `callers`: who may call each RPC, from the allow-list
- `common_errors`: the errors every RPC may return (documented once)
- `markdown`: the pages
- `generate`: all of it, to a folder or compared with one
"""
