"""Local Envoy configs rendered from the allow-list: a sidecar per service and the edge.

A sidecar has two listeners:
- inbound: mutual TLS on a TCP port (client certificate required, from the local CA,
  with a SPIFFE id in the trust domain), RBAC on the caller's identity and method path,
  the verified identity handed to the service in `x-forwarded-client-cert`
  (SANITIZE_SET drops forged copies), then the service on its Unix socket;
- outbound: plaintext from the service on a Unix socket, routed by the gRPC path prefix
  to the target service's inbound listener over mutual TLS, checking the target's SPIFFE
  id.

The edge terminates TLS for browsers and apps (HTTP/1.1 and HTTP/2), answers CORS
(exposing the gRPC status headers), translates gRPC-web, verifies the end user's JWT
(from the `authorization` header only) against the JWKS that `telemesh up` serves over
HTTP, fetched again every `${JWKS_CACHE_DURATION}` so a removed key stops working without
a restart (no cache of verified tokens outlives it), answers every bad token 401 /
UNAUTHENTICATED (a wrong audience too), applies RBAC on the token's role, and forwards
to the services' inbound listeners over mutual TLS with its own identity.

Configs are rendered with `${NAME}` placeholders for what only a running stack knows
(ports, socket paths, folders); `materialize()` fills them in.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from telemesh_tools.mesh.allowlist import AllowList
from telemesh_tools.mesh.identities import SECRET_FILE, SECRET_NAME

HOST = "127.0.0.1"
OTLP_CLUSTER = "otlp_collector"
JWKS_CLUSTER = "jwks"
JWKS_PATH = "/jwks.json"  # served by telemesh_tools.stack.jwks_endpoint
# Where jwt_authn leaves why a token failed (dynamic metadata of the filter).
JWT_FAILURE_METADATA = "jwt_failure"
# Keepalives on every HTTP/2 connection: dead peers are noticed and long streams
# (signaling rooms, consent watches) survive idle proxies.
KEEPALIVE = {"interval": "30s", "timeout": "10s"}
HEADER = (
    "# Rendered by `telemesh mesh render` from mesh/allowlist.yaml: do not edit by hand.\n"
    "# `telemesh up` fills in the ${...} placeholders.\n"
)

_TYPES = {
    "hcm": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
    ".HttpConnectionManager",
    "downstream_tls": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"
    ".DownstreamTlsContext",
    "upstream_tls": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"
    ".UpstreamTlsContext",
    "http_options": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "rbac": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
    "router": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
    "cors": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors",
    "cors_policy": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
    "grpc_web": "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb",
    "jwt_authn": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
    "otel": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
    "previous_hosts": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3"
    ".PreviousHostsPredicate",
}
# A call a replica could not take (it is gone, or its sidecar could not reach it) is
# tried again on another replica: every write carries its request_id, so a retry of one
# that did commit gets the stored answer. A stream is retried only before it answers.
RETRY_POLICY = {
    "retry_on": "connect-failure,refused-stream,unavailable",
    "num_retries": 2,
    "retry_host_predicate": [
        {
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {"@type": _TYPES["previous_hosts"]},
        }
    ],
    "host_selection_retry_max_attempts": 3,
}
# A replica that keeps failing leaves the rotation for a while (the values of the Istio
# DestinationRules).
OUTLIER_DETECTION = {
    "consecutive_5xx": 5,
    "consecutive_gateway_failure": 5,
    "interval": "10s",
    "base_ejection_time": "30s",
}


def inbound_port(service: str) -> str:
    """The placeholder of `service`'s sidecar inbound port."""
    return f"${{{service.upper()}_INBOUND_PORT}}"


def _spiffe(service: str) -> str:
    return f"spiffe://${{TRUST_DOMAIN}}/ns/${{NAMESPACE}}/sa/{service}"


def _socket_address(host: str, port: str) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _identity_sds() -> list[dict[str, Any]]:
    return [
        {
            "name": SECRET_NAME,
            "sds_config": {
                "path_config_source": {
                    "path": f"${{IDENTITY_DIR}}/{SECRET_FILE}",
                    "watched_directory": {"path": "${IDENTITY_DIR}"},
                },
                "resource_api_version": "V3",
            },
        }
    ]


def _validation(san: dict[str, str]) -> dict[str, Any]:
    return {
        "trusted_ca": {"filename": "${CA_BUNDLE}"},
        "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": san}],
    }


def _tls_socket(context: dict[str, Any], kind: str) -> dict[str, Any]:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {"@type": _TYPES[kind], **context},
    }


def _http2_options() -> dict[str, Any]:
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": _TYPES["http_options"],
            "explicit_http_config": {
                "http2_protocol_options": {"connection_keepalive": dict(KEEPALIVE)}
            },
        }
    }


def _cluster(
    name: str, address: dict[str, Any], *, http2: bool = True, **extra: Any
) -> dict[str, Any]:
    protocol = {"typed_extension_protocol_options": _http2_options()} if http2 else {}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        # Long streams hold a request each: the default 1024 is too few for a busy edge.
        "circuit_breakers": {
            "thresholds": [{"max_requests": 100000, "max_pending_requests": 10000}]
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
        **protocol,
        **extra,
    }


def _mesh_cluster(service: str, lb_policy: str | None = None) -> dict[str, Any]:
    """A cluster to `service`'s inbound listener: mTLS with our identity, its SPIFFE id."""
    context = {
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "tls_certificate_sds_secret_configs": _identity_sds(),
            "validation_context": _validation({"exact": _spiffe(service)}),
        }
    }
    extra: dict[str, Any] = {
        "transport_socket": _tls_socket(context, "upstream_tls"),
        "outlier_detection": dict(OUTLIER_DETECTION),
    }
    if lb_policy:
        extra["lb_policy"] = lb_policy
    return _cluster(service, _socket_address(HOST, inbound_port(service)), **extra)


def _otlp_cluster() -> dict[str, Any]:
    cluster = _cluster(OTLP_CLUSTER, _socket_address("${OTLP_HOST}", "${OTLP_PORT}"))
    cluster["type"] = "STRICT_DNS"
    return cluster


def _tracing(service_name: str) -> dict[str, Any]:
    return {
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": _TYPES["otel"],
                "grpc_service": {"envoy_grpc": {"cluster_name": OTLP_CLUSTER}, "timeout": "2s"},
                "service_name": service_name,
            },
        }
    }


def _route(
    prefix: str, cluster: str, hash_header: str | None = None, *, retry: bool = True
) -> dict[str, Any]:
    action: dict[str, Any] = {
        "cluster": cluster,
        # No route timeout: server streams (signaling rooms) stay open; a unary call's
        # deadline comes from its own grpc-timeout header.
        "timeout": "0s",
        "max_stream_duration": {"grpc_timeout_header_max": "0s"},
    }
    if retry:
        action["retry_policy"] = dict(RETRY_POLICY)
    if hash_header:
        action["hash_policy"] = [{"header": {"header_name": hash_header}}]
    # Spans are named after the gRPC service (not after the caller's :authority).
    return {
        "match": {"prefix": prefix},
        "route": action,
        "decorator": {"operation": prefix.strip("/")},
    }


def _hcm(
    stat_prefix: str,
    virtual_host: dict[str, Any],
    filters: list[dict[str, Any]],
    tracing_name: str,
    **options: Any,
) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": _TYPES["hcm"],
            "stat_prefix": stat_prefix,
            "http2_protocol_options": {"connection_keepalive": dict(KEEPALIVE)},
            **options,
            "tracing": _tracing(tracing_name),
            "route_config": {"name": stat_prefix, "virtual_hosts": [virtual_host]},
            "http_filters": [
                *filters,
                {"name": "envoy.filters.http.router", "typed_config": {"@type": _TYPES["router"]}},
            ],
        },
    }


def _url_paths(paths: list[str]) -> list[dict[str, Any]]:
    return [{"url_path": {"path": {"exact": path}}} for path in paths]


def _bootstrap(
    node: str, cluster: str, listeners: list[Any], clusters: list[Any]
) -> dict[str, Any]:
    return {
        "node": {"id": node, "cluster": cluster},
        "admin": {"address": _socket_address(HOST, "${ADMIN_PORT}")},
        "layered_runtime": {
            "layers": [
                {
                    "name": "static",
                    "static_layer": {
                        "overload.global_downstream_max_connections": 50000,
                        # Spans leave within half a second (default 5 s), so a visit's
                        # trace is whole soon after it ends, and when a stack stops; in
                        # batches (of 5 by default), not one export per span.
                        "tracing.opentelemetry.flush_interval_ms": 500,
                    },
                }
            ]
        },
        "static_resources": {"listeners": listeners, "clusters": [*clusters, _otlp_cluster()]},
    }


def sidecar(allowlist: AllowList, service: str) -> dict[str, Any]:
    """The sidecar of `service`: inbound mTLS + RBAC, outbound plaintext-in mTLS-out."""
    policies: dict[str, Any] = {}
    for caller, paths in allowlist.callers_of(service).items():
        policies[f"service:{caller}"] = {
            "permissions": _url_paths(paths),
            "principals": [{"authenticated": {"principal_name": {"exact": _spiffe(caller)}}}],
        }
    edge_paths = list(allowlist.edge_methods(service))
    if edge_paths:
        # The edge has checked the user's role; the service verifies the token again.
        identity = allowlist.edge.identity
        policies[f"service:{identity}"] = {
            "permissions": _url_paths(edge_paths),
            "principals": [{"authenticated": {"principal_name": {"exact": _spiffe(identity)}}}],
        }
    inbound_context = {
        "require_client_certificate": True,
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "tls_certificate_sds_secret_configs": _identity_sds(),
            "validation_context": _validation({"prefix": "spiffe://${TRUST_DOMAIN}/"}),
        },
    }
    inbound = {
        "name": "inbound",
        "stat_prefix": "inbound",
        "traffic_direction": "INBOUND",
        "address": _socket_address(HOST, inbound_port(service)),
        "filter_chains": [
            {
                "transport_socket": _tls_socket(inbound_context, "downstream_tls"),
                "filters": [
                    _hcm(
                        "inbound",
                        {
                            "name": service,
                            "domains": ["*"],
                            # One local service: no other replica to retry on.
                            "routes": [
                                _route(allowlist.prefix(service), "local_service", retry=False)
                            ],
                        },
                        [
                            {
                                "name": "envoy.filters.http.rbac",
                                "typed_config": {
                                    "@type": _TYPES["rbac"],
                                    "rules": {"action": "ALLOW", "policies": policies},
                                },
                            }
                        ],
                        f"telemesh-{service}-sidecar",
                        codec_type="HTTP2",
                        forward_client_cert_details="SANITIZE_SET",
                        set_current_client_cert_details={"uri": True},
                    )
                ],
            }
        ],
    }
    peers = [peer for peer in allowlist.services if peer != service]
    outbound = {
        "name": "outbound",
        "stat_prefix": "outbound",
        "traffic_direction": "OUTBOUND",
        "address": {"pipe": {"path": "${OUTBOUND_SOCKET}", "mode": 0o600}},
        "filter_chains": [
            {
                "filters": [
                    _hcm(
                        "outbound",
                        {
                            "name": "peers",
                            "domains": ["*"],
                            "routes": [
                                _route(allowlist.prefix(peer), peer, allowlist.affinity.get(peer))
                                for peer in peers
                            ],
                        },
                        [],
                        f"telemesh-{service}-sidecar",
                        codec_type="HTTP2",
                        forward_client_cert_details="SANITIZE",
                    )
                ],
            }
        ],
    }
    local = _cluster("local_service", {"pipe": {"path": "${SERVICE_SOCKET}"}})
    clusters = [
        local,
        *(
            _mesh_cluster(peer, "RING_HASH" if peer in allowlist.affinity else None)
            for peer in peers
        ),
    ]
    return _bootstrap(f"sidecar-{service}", service, [inbound, outbound], clusters)


def edge(allowlist: AllowList) -> dict[str, Any]:
    """The edge: TLS, CORS, gRPC-web, JWT, RBAC on the token's role, mTLS upstream."""
    policy = allowlist.edge
    cors = policy.cors
    role_policies = {
        f"role:{role}": {
            "permissions": _url_paths(paths),
            "principals": [
                {
                    "sourced_metadata": {
                        "metadata_matcher": {
                            "filter": "envoy.filters.http.jwt_authn",
                            "path": [{"key": "jwt_payload"}, {"key": "role"}],
                            "value": {"string_match": {"exact": role}},
                        }
                    }
                }
            ],
        }
        for role, paths in allowlist.role_paths().items()
    }
    filters = [
        {"name": "envoy.filters.http.cors", "typed_config": {"@type": _TYPES["cors"]}},
        {"name": "envoy.filters.http.grpc_web", "typed_config": {"@type": _TYPES["grpc_web"]}},
        {
            "name": "envoy.filters.http.jwt_authn",
            "typed_config": {
                "@type": _TYPES["jwt_authn"],
                "providers": {
                    "telemesh": {
                        "issuer": policy.issuer,
                        "audiences": list(policy.audiences),
                        # As the services: a token without `exp` never expires.
                        "require_expiration": True,
                        # Fetched when the cached copy is older than the duration (on the
                        # next request; a failed fetch refuses the token): a key removed
                        # from the JWKS stops verifying within it. No `jwt_cache_config`:
                        # Envoy's cache of verified tokens would skip the key check.
                        "remote_jwks": {
                            "http_uri": {
                                "uri": f"http://{HOST}:${{JWKS_PORT}}{JWKS_PATH}",
                                "cluster": JWKS_CLUSTER,
                                "timeout": "2s",
                            },
                            "cache_duration": "${JWKS_CACHE_DURATION}",
                        },
                        # Only `authorization: Bearer`; not the default `access_token`
                        # query parameter (URLs end up in logs and histories).
                        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                        # Services verify the token again: pass it on.
                        "forward": True,
                        "payload_in_metadata": "jwt_payload",
                        "failed_status_in_metadata": JWT_FAILURE_METADATA,
                    }
                },
                "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "telemesh"}}],
                "bypass_cors_preflight": True,
            },
        },
        {
            "name": "envoy.filters.http.rbac",
            "typed_config": {
                "@type": _TYPES["rbac"],
                "rules": {"action": "ALLOW", "policies": role_policies},
            },
        },
    ]
    virtual_host = {
        "name": "telemesh",
        "domains": ["*"],
        "typed_per_filter_config": {
            "envoy.filters.http.cors": {
                "@type": _TYPES["cors_policy"],
                "allow_origin_string_match": [{"exact": origin} for origin in cors.allowed_origins],
                "allow_methods": "POST, OPTIONS",
                "allow_headers": ",".join(cors.allowed_headers),
                "expose_headers": ",".join(cors.exposed_headers),
                "max_age": str(cors.max_age_seconds),
            }
        },
        "routes": [
            _route(allowlist.prefix(service), service, allowlist.affinity.get(service))
            for service in allowlist.services
        ],
    }
    context = {
        "common_tls_context": {
            "alpn_protocols": ["h2", "http/1.1"],
            "tls_certificate_sds_secret_configs": _identity_sds(),
        }
    }
    listener = {
        "name": "edge",
        "stat_prefix": "edge",
        "traffic_direction": "INBOUND",
        "address": _socket_address(HOST, "${EDGE_PORT}"),
        "filter_chains": [
            {
                "transport_socket": _tls_socket(context, "downstream_tls"),
                "filters": [
                    _hcm(
                        "edge",
                        virtual_host,
                        filters,
                        "telemesh-edge",
                        codec_type="AUTO",
                        use_remote_address=True,
                        common_http_protocol_options={"idle_timeout": "3600s"},
                        local_reply_config=_bad_token_is_unauthenticated(),
                    )
                ],
            }
        ],
    }
    clusters = [
        _mesh_cluster(service, "RING_HASH" if service in allowlist.affinity else None)
        for service in allowlist.services
    ]
    jwks = _cluster(JWKS_CLUSTER, _socket_address(HOST, "${JWKS_PORT}"), http2=False)
    return _bootstrap("edge", "edge", [listener], [*clusters, jwks])


def _bad_token_is_unauthenticated() -> dict[str, Any]:
    """Every token jwt_authn refuses is 401 (gRPC UNAUTHENTICATED): jwt_authn itself
    answers 403 for a wrong audience, which a client would read as PERMISSION_DENIED.
    RBAC's 403 for a role the allow-list does not name stays PERMISSION_DENIED."""
    failed = {
        "metadata_filter": {
            "matcher": {
                "filter": "envoy.filters.http.jwt_authn",
                "path": [{"key": JWT_FAILURE_METADATA}],
                "value": {"present_match": True},
            },
            # The default (true) would also match every request without a failure.
            "match_if_key_not_found": False,
        }
    }
    return {"mappers": [{"filter": failed, "status_code": 401}]}


def render_all(allowlist: AllowList) -> dict[str, dict[str, Any]]:
    """Config name -> config: `sidecar-<service>` for each service, and `edge`."""
    configs = {f"sidecar-{service}": sidecar(allowlist, service) for service in allowlist.services}
    configs["edge"] = edge(allowlist)
    return configs


_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


def placeholders(config: Any) -> set[str]:
    """Every `${NAME}` used in `config`."""
    if isinstance(config, dict):
        return set().union(*(placeholders(v) for v in config.values())) if config else set()
    if isinstance(config, list):
        return set().union(*(placeholders(v) for v in config)) if config else set()
    if isinstance(config, str):
        return set(_PLACEHOLDER.findall(config))
    return set()


def without_tracing(config: Any) -> Any:
    """`config` minus its tracing: for a stack that has no trace receiver."""
    if isinstance(config, dict):
        result = {key: without_tracing(value) for key, value in config.items() if key != "tracing"}
        if isinstance(result.get("clusters"), list):
            result["clusters"] = [c for c in result["clusters"] if c.get("name") != OTLP_CLUSTER]
        return result
    if isinstance(config, list):
        return [without_tracing(item) for item in config]
    return config


def with_replicas(config: Any, ports: Mapping[str, Sequence[int]]) -> Any:
    """A materialized `config` whose cluster to each service lists every replica's
    sidecar inbound port (`ports`, by service), for Envoy to balance across."""
    clusters = config["static_resources"]["clusters"]
    for cluster in clusters:
        replicas = ports.get(cluster["name"])
        if not replicas:
            continue
        [group] = cluster["load_assignment"]["endpoints"]
        [template] = group["lb_endpoints"]
        group["lb_endpoints"] = []
        for port in replicas:
            endpoint = copy.deepcopy(template)
            endpoint["endpoint"]["address"]["socket_address"]["port_value"] = port
            group["lb_endpoints"].append(endpoint)
    return config


def materialize(config: Any, values: Mapping[str, str | int]) -> Any:
    """`config` with every `${NAME}` replaced; a value that is only a placeholder keeps
    its type (ports stay integers). A placeholder without a value is an error."""
    if isinstance(config, dict):
        return {key: materialize(value, values) for key, value in config.items()}
    if isinstance(config, list):
        return [materialize(item, values) for item in config]
    if isinstance(config, str):
        whole = _PLACEHOLDER.fullmatch(config)
        if whole:
            return values[whole.group(1)]
        return _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), config)
    return config
