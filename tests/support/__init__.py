"""Helpers that only tests use, shared by several test packages (a helper that serves
one package stays in it). Tests import helpers from here, never from a test module.

- `harness`: service processes (`Stack`), databases, tokens, `telemesh up` (`MeshUp`);
- `flows`: the demo's visit steps against a `Stack`, and `rid()`, the request id;
- `errors`: failed calls and what they carry; `polling`: waiting with a deadline;
- `billing`, `consent_api`, `signaling`: a service's stack or client as tests drive it;
- `mesh`, `grpcweb`, `contract`: the mesh under test and gRPC-web calls through its edge;
- `dumps`: a service's database as text; `kustomize`, `schemas`: the Istio manifests.
"""
