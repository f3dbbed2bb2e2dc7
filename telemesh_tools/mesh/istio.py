"""The Kubernetes + Istio base manifests (mesh/istio/base/), rendered from the allow-list.

One namespace with sidecar injection; per service a ServiceAccount (its SPIFFE
identity), a Deployment of the image `make image` builds (the Containerfile: its user,
its TELEMESH_HOME, its ports; native gRPC probes on the health service; non-root,
read-only root filesystem with emptyDir scratch, no capabilities, seccomp RuntimeDefault;
requests and limits; spread across nodes and zones), a PodDisruptionBudget and a
Service (`appProtocol: grpc`); the edge is an Istio ingress gateway deployed in the namespace
(gateway injection) behind a `grpc-web` Service. Security: PeerAuthentication STRICT, a
deny-all AuthorizationPolicy plus ALLOW policies by source principal and method path
(from the allow-list), a RequestAuthentication for end-user JWTs and, at the gateway and
for edge traffic, policies that require a valid token and check its role claim. Traffic:
DestinationRules with ISTIO_MUTUAL (signaling hashed on the visit header), a Gateway and
a VirtualService with a CORS policy. Telemetry sends traces to an OpenTelemetry Collector
deployed beside the services.

Environments differ only in the hand-written overlays (mesh/istio/overlays/).
"""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

from telemesh.config import DEFAULT_PORTS
from telemesh_tools.mesh.allowlist import AllowList

NAMESPACE = "telemesh"
TRUST_DOMAIN = "cluster.local"
# What `make image` names the image it builds (scripts/build-image.sh): the package's
# version as the tag, so a release's manifests name that release's image.
IMAGE_NAME = "telemesh/telemesh"
IMAGE = f"{IMAGE_NAME}:{version('telemesh')}"
EDGE_SELECTOR = {"istio": "telemesh-edge"}
EDGE_HOSTS = ["api.telemesh.example"]
EDGE_PORT = 8443
EDGE_TLS_SECRET = "telemesh-edge-tls"
JWKS_CONFIGMAP = "telemesh-jwks"
COLLECTOR = "otel-collector"
COLLECTOR_IMAGE = "otel/opentelemetry-collector:0.120.0"
TRACING_PROVIDER = "otel-collector"  # meshConfig.extensionProviders entry (mesh/istio/README.md)
RUN_AS = 10001  # the Containerfile's user and group
STATE_DIR = "/var/lib/telemesh"  # the Containerfile's TELEMESH_HOME
JWKS_DIR = "/etc/telemesh/jwks"
# The services read their caller's SPIFFE id from the last element of
# x-forwarded-client-cert (telemesh.identity.forwarded). Istio's sidecars default to
# APPEND_FORWARD, which keeps what the caller sent before that element and forwards a
# plaintext caller's header untouched; SANITIZE_SET leaves exactly the sidecar's own
# element (or no header at all).
SIDECAR_PROXY_CONFIG = {"proxyHeaders": {"forwardedClientCert": "SANITIZE_SET"}}
# The gateway never passes on a client's XFCC (it has no client certificates to vouch for).
EDGE_PROXY_CONFIG = {"gatewayTopology": {"forwardClientCertDetails": "SANITIZE"}}
PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"

HEADER = (
    "# Rendered by `telemesh mesh render` from mesh/allowlist.yaml: do not edit by hand;\n"
    "# environments change it in mesh/istio/overlays/.\n"
)


def _meta(name: str, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NAMESPACE}
    if labels:
        meta["labels"] = labels
    meta.update(extra)
    return meta


def _labels(app: str) -> dict[str, str]:
    return {"app": app, "app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "telemesh"}


def principal(service: str) -> str:
    """An Istio source principal (the SPIFFE id without `spiffe://`)."""
    return f"{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{service}"


def host(service: str) -> str:
    return f"{service}.{NAMESPACE}.svc.cluster.local"


def _port(service: str) -> int:
    return DEFAULT_PORTS.get(service, 50050)


def _restricted_container() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _spread(app: str) -> list[dict[str, Any]]:
    """Replicas across nodes, then zones; preferred, so a one-node cluster still runs."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": app}},
        }
        for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
    ]


def _pod_security(user: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": user,
        "runAsGroup": user,
        "fsGroup": user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def namespace() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": NAMESPACE,
                "labels": {"istio-injection": "enabled", "app.kubernetes.io/part-of": "telemesh"},
            },
        }
    ]


def service_accounts(allowlist: AllowList) -> list[dict[str, Any]]:
    names = [*allowlist.services, allowlist.edge.identity, COLLECTOR]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(name, _labels(name)),
            # Identity comes from the mesh; no workload talks to the Kubernetes API.
            "automountServiceAccountToken": False,
        }
        for name in names
    ]


def _service_env(allowlist: AllowList, service: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "TELEMESH_LISTEN", "value": f"0.0.0.0:{_port(service)}"},
        {"name": "TELEMESH_HOME", "value": STATE_DIR},
        {"name": "TELEMESH_DEV_ISSUER", "value": "0"},
        {"name": "TELEMESH_JWKS_FILE", "value": f"{JWKS_DIR}/jwks.json"},
        # Service identity comes from Istio mTLS, forwarded by the sidecar.
        {"name": "TELEMESH_SERVICE_TOKENS", "value": "0"},
        {"name": "TELEMESH_TRUST_FORWARDED_IDENTITY", "value": "1"},
        {"name": "TELEMESH_TRUST_DOMAIN", "value": TRUST_DOMAIN},
        {"name": "TELEMESH_NAMESPACE", "value": NAMESPACE},
        {"name": "TELEMESH_DRAIN_SECONDS", "value": "20"},
        {
            "name": "TELEMESH_DATABASE_URL",
            "valueFrom": {
                "secretKeyRef": {"name": f"{service}-database", "key": "url", "optional": True}
            },
        },
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": f"http://{host(COLLECTOR)}:4317"},
    ]
    for peer in allowlist.services:
        env.append(
            {"name": f"TELEMESH_{peer.upper()}_ADDR", "value": f"{host(peer)}:{_port(peer)}"}
        )
    return env


def _service_deployment(allowlist: AllowList, service: str) -> dict[str, Any]:
    port = _port(service)
    probe = {"grpc": {"port": port}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(service, _labels(service)),
        "spec": {
            "replicas": 2 if service in allowlist.affinity else 1,
            "selector": {"matchLabels": {"app": service}},
            "template": {
                "metadata": {
                    "labels": {**_labels(service), "version": "v1"},
                    "annotations": {
                        PROXY_CONFIG_ANNOTATION: json.dumps(SIDECAR_PROXY_CONFIG, sort_keys=True)
                    },
                },
                "spec": {
                    "serviceAccountName": service,
                    "automountServiceAccountToken": False,
                    "securityContext": _pod_security(RUN_AS),
                    # Longer than TELEMESH_DRAIN_SECONDS: in-flight calls finish first.
                    "terminationGracePeriodSeconds": 30,
                    "topologySpreadConstraints": _spread(service),
                    "containers": [
                        {
                            "name": service,
                            "image": IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["python", "-m", f"svc_{service}"],
                            "ports": [{"name": "grpc", "containerPort": port, "protocol": "TCP"}],
                            "env": _service_env(allowlist, service),
                            # Migrations run on start: give them time before liveness counts.
                            "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 60},
                            "readinessProbe": {**probe, "periodSeconds": 5},
                            "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
                            # A service idles at about 100 MiB (RSS, in the image). No
                            # CPU limit: throttling a gRPC server only adds latency; the
                            # request is what the scheduler and the autoscaler count.
                            "resources": {
                                "requests": {
                                    "cpu": "100m",
                                    "memory": "192Mi",
                                    "ephemeral-storage": "64Mi",
                                },
                                "limits": {"memory": "512Mi", "ephemeral-storage": "1Gi"},
                            },
                            "securityContext": _restricted_container(),
                            # The root filesystem is read-only: the service writes only
                            # its state (TELEMESH_HOME: keys; SQLite without a database
                            # Secret) and scratch, both emptyDir.
                            "volumeMounts": [
                                {"name": "state", "mountPath": STATE_DIR},
                                {"name": "tmp", "mountPath": "/tmp"},
                                {"name": "jwks", "mountPath": JWKS_DIR, "readOnly": True},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "state", "emptyDir": {"sizeLimit": "512Mi"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                        {"name": "jwks", "configMap": {"name": JWKS_CONFIGMAP, "optional": True}},
                    ],
                },
            },
        },
    }


def _edge_deployment(allowlist: AllowList) -> dict[str, Any]:
    name = allowlist.edge.identity
    labels = {**_labels(name), **EDGE_SELECTOR}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, labels),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name, **EDGE_SELECTOR}},
            "template": {
                "metadata": {
                    # Istio gateway injection: the `gateway` template fills in the proxy.
                    "annotations": {
                        "inject.istio.io/templates": "gateway",
                        PROXY_CONFIG_ANNOTATION: json.dumps(EDGE_PROXY_CONFIG, sort_keys=True),
                    },
                    "labels": {**labels, "sidecar.istio.io/inject": "true"},
                },
                "spec": {
                    "serviceAccountName": name,
                    "securityContext": _pod_security(1337),
                    "topologySpreadConstraints": _spread(name),
                    "containers": [
                        {
                            "name": "istio-proxy",
                            "image": "auto",
                            "ports": [
                                {"name": "grpc-web", "containerPort": EDGE_PORT, "protocol": "TCP"}
                            ],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"memory": "512Mi"},
                            },
                            "securityContext": _restricted_container(),
                        }
                    ],
                },
            },
        },
    }


def deployments(allowlist: AllowList) -> list[dict[str, Any]]:
    return [
        *(_service_deployment(allowlist, service) for service in allowlist.services),
        _edge_deployment(allowlist),
    ]


def disruption_budgets(allowlist: AllowList) -> list[dict[str, Any]]:
    """Voluntary disruptions (node drains, upgrades) take one replica at a time."""
    return [
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(name, _labels(name)),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": name}}},
        }
        for name in (*allowlist.services, allowlist.edge.identity)
    ]


def services(allowlist: AllowList) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(service, _labels(service)),
            "spec": {
                "selector": {"app": service},
                "ports": [
                    {
                        "name": "grpc",
                        "port": _port(service),
                        "targetPort": "grpc",
                        "protocol": "TCP",
                        "appProtocol": "grpc",
                    }
                ],
            },
        }
        for service in allowlist.services
    ]
    edge = allowlist.edge.identity
    result.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(edge, {**_labels(edge), **EDGE_SELECTOR}),
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": edge, **EDGE_SELECTOR},
                "ports": [
                    {
                        "name": "grpc-web",
                        "port": 443,
                        "targetPort": EDGE_PORT,
                        "protocol": "TCP",
                        "appProtocol": "grpc-web",
                    }
                ],
            },
        }
    )
    return result


def peer_authentication() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": _meta("default"),
            "spec": {"mtls": {"mode": "STRICT"}},
        }
    ]


def _role_condition(roles: list[str]) -> list[dict[str, Any]]:
    return [{"key": "request.auth.claims[role]", "values": roles}]


def authorization_policies(allowlist: AllowList) -> list[dict[str, Any]]:
    policies: list[dict[str, Any]] = [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": _meta("deny-all"),
            # An ALLOW policy with no rules: nothing is allowed unless another policy says so.
            "spec": {},
        }
    ]
    edge_principal = principal(allowlist.edge.identity)
    for service in allowlist.services:
        rules: list[dict[str, Any]] = [
            {
                "from": [{"source": {"principals": [principal(caller)]}}],
                "to": [{"operation": {"methods": ["POST"], "paths": paths}}],
            }
            for caller, paths in allowlist.callers_of(service).items()
        ]
        for roles, paths in allowlist.edge_rules(service):
            # Through the edge: the gateway's identity, a valid end-user token, its role.
            rules.append(
                {
                    "from": [
                        {"source": {"principals": [edge_principal], "requestPrincipals": ["*"]}}
                    ],
                    "to": [{"operation": {"methods": ["POST"], "paths": paths}}],
                    "when": _role_condition(roles),
                }
            )
        policies.append(
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": _meta(f"{service}-allow"),
                "spec": {
                    "selector": {"matchLabels": {"app": service}},
                    "action": "ALLOW",
                    "rules": rules,
                },
            }
        )
    gateway_rules: list[dict[str, Any]] = [
        {
            # CORS preflights carry no token; the gateway's CORS filter answers them.
            "to": [{"operation": {"methods": ["OPTIONS"], "paths": ["/telemesh.*"]}}],
        }
    ]
    for role, paths in allowlist.role_paths().items():
        gateway_rules.append(
            {
                "from": [{"source": {"requestPrincipals": ["*"]}}],
                "to": [{"operation": {"methods": ["POST"], "paths": paths}}],
                "when": _role_condition([role]),
            }
        )
    policies.append(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": _meta(f"{allowlist.edge.identity}-require-token"),
            "spec": {
                "selector": {"matchLabels": dict(EDGE_SELECTOR)},
                "action": "ALLOW",
                "rules": gateway_rules,
            },
        }
    )
    return policies


def request_authentication(allowlist: AllowList) -> list[dict[str, Any]]:
    jwt = allowlist.edge
    return [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            # No selector: the gateway and every sidecar in the namespace verify tokens.
            "metadata": _meta("end-user-jwt"),
            "spec": {
                "jwtRules": [
                    {
                        "issuer": jwt.issuer,
                        "audiences": list(jwt.audiences),
                        "jwksUri": jwt.jwks_uri,
                        # Only `authorization: Bearer`: naming a location turns off the
                        # default ones (the `access_token` query parameter among them).
                        "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}],
                        # Services verify the token again: keep it on the request.
                        "forwardOriginalToken": True,
                    }
                ]
            },
        }
    ]


def destination_rules(allowlist: AllowList) -> list[dict[str, Any]]:
    rules = []
    for service in allowlist.services:
        policy: dict[str, Any] = {
            "tls": {"mode": "ISTIO_MUTUAL"},
            "outlierDetection": {
                "consecutive5xxErrors": 5,
                "interval": "10s",
                "baseEjectionTime": "30s",
            },
        }
        header = allowlist.affinity.get(service)
        if header:
            # A visit's stream and its unary calls reach the same replica.
            policy["loadBalancer"] = {"consistentHash": {"httpHeaderName": header}}
        rules.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": _meta(service),
                "spec": {"host": host(service), "trafficPolicy": policy},
            }
        )
    return rules


def gateway(allowlist: AllowList) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": _meta(allowlist.edge.identity),
            "spec": {
                "selector": dict(EDGE_SELECTOR),
                "servers": [
                    {
                        "port": {"number": EDGE_PORT, "name": "https", "protocol": "HTTPS"},
                        "hosts": list(EDGE_HOSTS),
                        "tls": {
                            "mode": "SIMPLE",
                            "credentialName": EDGE_TLS_SECRET,
                            "minProtocolVersion": "TLSV1_2",
                        },
                    }
                ],
            },
        }
    ]


def virtual_service(allowlist: AllowList) -> list[dict[str, Any]]:
    cors = allowlist.edge.cors
    cors_policy = {
        "allowOrigins": [{"exact": origin} for origin in cors.allowed_origins],
        "allowMethods": ["POST", "OPTIONS"],
        "allowHeaders": list(cors.allowed_headers),
        "exposeHeaders": list(cors.exposed_headers),
        "maxAge": f"{cors.max_age_seconds}s",
    }
    routes = [
        {
            "name": service,
            "match": [{"uri": {"prefix": allowlist.prefix(service)}}],
            # No timeout: Istio's default route timeout is off, which server streams need.
            "route": [{"destination": {"host": host(service), "port": {"number": _port(service)}}}],
            "corsPolicy": cors_policy,
        }
        for service in allowlist.services
    ]
    return [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": _meta(allowlist.edge.identity),
            "spec": {
                "hosts": list(EDGE_HOSTS),
                "gateways": [allowlist.edge.identity],
                "http": routes,
            },
        }
    ]


def telemetry() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "telemetry.istio.io/v1",
            "kind": "Telemetry",
            "metadata": _meta("default"),
            "spec": {
                "tracing": [
                    {"providers": [{"name": TRACING_PROVIDER}], "randomSamplingPercentage": 100.0}
                ]
            },
        }
    ]


COLLECTOR_CONFIG = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
      http:
        endpoint: 0.0.0.0:4318
processors:
  memory_limiter:
    check_interval: 1s
    limit_percentage: 80
    spike_limit_percentage: 20
  batch: {}
exporters:
  # Overlays replace this with the backend of their environment (otlp, ...).
  debug:
    verbosity: basic
extensions:
  health_check:
    endpoint: 0.0.0.0:13133
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [debug]
"""


def otel_collector() -> list[dict[str, Any]]:
    labels = _labels(COLLECTOR)
    health = {"httpGet": {"path": "/", "port": 13133}}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(f"{COLLECTOR}-config", labels),
            "data": {"config.yaml": COLLECTOR_CONFIG},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(COLLECTOR, labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": COLLECTOR}},
                "template": {
                    "metadata": {
                        # Proxies send it spans themselves; it needs no sidecar of its own.
                        "labels": {**labels, "sidecar.istio.io/inject": "false"},
                    },
                    "spec": {
                        "serviceAccountName": COLLECTOR,
                        "automountServiceAccountToken": False,
                        "securityContext": _pod_security(RUN_AS),
                        "containers": [
                            {
                                "name": "collector",
                                "image": COLLECTOR_IMAGE,
                                "args": ["--config=/etc/otelcol/config.yaml"],
                                "ports": [
                                    {"name": "otlp-grpc", "containerPort": 4317, "protocol": "TCP"},
                                    {"name": "otlp-http", "containerPort": 4318, "protocol": "TCP"},
                                    {"name": "health", "containerPort": 13133, "protocol": "TCP"},
                                ],
                                "readinessProbe": health,
                                "livenessProbe": health,
                                "resources": {
                                    "requests": {"cpu": "100m", "memory": "128Mi"},
                                    "limits": {"memory": "512Mi"},
                                },
                                "securityContext": _restricted_container(),
                                "volumeMounts": [
                                    {
                                        "name": "config",
                                        "mountPath": "/etc/otelcol",
                                        "readOnly": True,
                                    }
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "config", "configMap": {"name": f"{COLLECTOR}-config"}}
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(COLLECTOR, labels),
            "spec": {
                "selector": {"app": COLLECTOR},
                "ports": [
                    {
                        "name": "otlp-grpc",
                        "port": 4317,
                        "targetPort": "otlp-grpc",
                        "protocol": "TCP",
                        "appProtocol": "grpc",
                    },
                    {
                        "name": "otlp-http",
                        "port": 4318,
                        "targetPort": "otlp-http",
                        "protocol": "TCP",
                        "appProtocol": "http",
                    },
                ],
            },
        },
    ]


def render_base(allowlist: AllowList) -> dict[str, list[dict[str, Any]]]:
    """File name in mesh/istio/base/ -> its documents (kustomization.yaml last)."""
    files = {
        "namespace.yaml": namespace(),
        "serviceaccounts.yaml": service_accounts(allowlist),
        "deployments.yaml": deployments(allowlist),
        "poddisruptionbudgets.yaml": disruption_budgets(allowlist),
        "services.yaml": services(allowlist),
        "peerauthentication.yaml": peer_authentication(),
        "authorizationpolicies.yaml": authorization_policies(allowlist),
        "requestauthentication.yaml": request_authentication(allowlist),
        "destinationrules.yaml": destination_rules(allowlist),
        "gateway.yaml": gateway(allowlist),
        "virtualservice.yaml": virtual_service(allowlist),
        "telemetry.yaml": telemetry(),
        "otel-collector.yaml": otel_collector(),
    }
    files["kustomization.yaml"] = [
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": list(files),
        }
    ]
    return files
