"""The mesh: service identities, the one allow-list, and what is rendered from it.

- `ca`: the local certificate authority that issues SPIFFE X.509 identities.
- `identities`: writing and rotating them as Envoy SDS secret files.
- `allowlist`: who may call what (mesh/allowlist.yaml), checked against the contract.
- `envoy`: the local sidecar and edge Envoy configs (mesh/local/).
- `istio`: the Kubernetes and Istio base manifests (mesh/istio/base/).
- `kustomize`, `schemas`: building the overlays and validating what they produce.
- `render`: regenerating mesh/ and telling which rendered files are stale.
"""
