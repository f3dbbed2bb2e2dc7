"""Telemesh's tools: what people run, never what a service imports.

The `telemesh` command (cli), the local stack (`telemesh up`: processes, Envoys, the
JWKS endpoint), mesh rendering (allow-list to Envoy and Istio), the demo, the aiortc call
peer, the trace store and its views, the web app server and the API reference generator.
They import the runtime (`telemesh`) and the services; neither imports them
(import-linter contracts in pyproject.toml, run by `make lint`).
"""
