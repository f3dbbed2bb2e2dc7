"""Builds the Telemesh Grafana dashboard (ops/grafana/telemesh.json) with grafana-foundation-sdk.

    .venv/bin/python scripts/grafana_dashboard.py           # rewrite ops/grafana/telemesh.json
    .venv/bin/python scripts/grafana_dashboard.py --check   # exit 1 if the file is stale

The panels read only what the services and Envoys export (telemesh/metrics.py:
`rpc_server_duration_milliseconds`, the `telemesh_*` product metrics) and the SLO
recording rules of ops/prometheus/rules/slo.yaml. The queries use Grafana's `$__range`
and `$__rate_interval`; the Prometheus data source is the `datasource` variable, chosen on
import. tests/ops/test_dashboard.py checks the file is current and runs every query
against a real Prometheus scraping a stack after two demo visits.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    prometheus,
    stat,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models

OUTPUT = Path(__file__).resolve().parent.parent / "ops" / "grafana" / "telemesh.json"
UID = "telemesh-overview"
DATASOURCE = common_models.DataSourceRef(type_val="prometheus", uid="${datasource}")

RPC = "rpc_server_duration_milliseconds"
SERVER_FAULT = "2|4|12|13|14|15"  # telemesh/interceptor.py's _SERVER_ERRORS (docs/slo.md)
CALLER_REFUSAL = "3|5|6|7|8|9|10|11|16"  # refused for the caller's own reasons
BY_RPC = "rpc_service, rpc_method"
FIVE_SECONDS = 'le=~"5(\\\\.0)?"'  # "5" or "5.0": Prometheus 3 normalises the label


@dataclass(frozen=True)
class Query:
    legend: str
    expr: str


def _target(query: Query, ref: str, instant: bool = False) -> prometheus.Dataquery:
    target = (
        prometheus.Dataquery()
        .expr(query.expr)
        .legend_format(query.legend)
        .ref_id(ref)
        .datasource(DATASOURCE)
    )
    return target.instant() if instant else target.range()


def _refs(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def _series(
    title: str, description: str, unit: str, queries: list[Query], width: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .span(width)
        .height(8)
        .fill_opacity(10)
        .legend(
            common.VizLegendOptions()
            .display_mode(common_models.LegendDisplayMode.TABLE)
            .placement(common_models.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
    )
    for ref, query in zip(_refs(len(queries)), queries, strict=True):
        panel = panel.with_target(_target(query, ref))
    return panel


def _rate(metric: str, selector: str = "") -> str:
    matchers = f"{{{selector}}}" if selector else ""
    return f"rate({metric}{matchers}[$__rate_interval])"


def _quantile(q: float, metric: str, by: str = "", selector: str = "") -> str:
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) ({_rate(metric + '_bucket', selector)}))"


def _ratio_or_zero(numerator: str, denominator: str, by: str) -> str:
    """numerator/denominator by `by`, 0 where the numerator has no series (no errors yet)."""
    return (
        f"(sum by ({by}) ({numerator}) or sum by ({by}) ({denominator}) * 0)"
        f"\n/\nsum by ({by}) ({denominator})"
    )


# The visit funnel, in the order a visit goes through it (the product counters of
# svc_session and svc_signaling; see ops/README.md).
FUNNEL = [
    Query("booked", "sum(increase(telemesh_visits_booked_total[$__range]))"),
    Query("checked in", "sum(increase(telemesh_visits_checked_in_total[$__range]))"),
    Query(
        "joined (patients)",
        'sum(increase(telemesh_signaling_joins_total{role="patient",resumed="false"}[$__range]))',
    ),
    Query("admitted", "sum(increase(telemesh_visits_joined_total[$__range]))"),
    Query("completed", "sum(increase(telemesh_visits_completed_total[$__range]))"),
    Query("billed", "sum(increase(telemesh_billing_charges_total[$__range]))"),
]


def funnel_panel() -> bargauge.Panel:
    panel = (
        bargauge.Panel()
        .title("Visit funnel (over the time range)")
        .description(
            "Visits at each step over the dashboard's time range. 'checked in' counts "
            "check-ins committed; 'joined' counts patients' room streams accepted by "
            "signaling (a resumed stream is not counted; a fresh rejoin is); 'admitted' is "
            "telemesh_visits_joined_total (counted at AdmitPatient); 'billed' counts "
            "charges created, not-billable records included."
        )
        .datasource(DATASOURCE)
        .unit("short")
        .min(0)
        .decimals(0)
        .span(12)
        .height(9)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    for ref, query in zip(_refs(len(FUNNEL)), FUNNEL, strict=True):
        panel = panel.with_target(_target(query, ref, instant=True))
    return panel


def funnel_rates_panel() -> timeseries.Panel:
    return _series(
        "Visit steps per minute",
        "The funnel's steps as rates: a gap between two lines is visits stuck between steps.",
        "short",
        [
            Query(q.legend, q.expr.replace("[$__range]", "[$__rate_interval]") + " * 60")
            for q in FUNNEL
        ],
    )


def slo_panel() -> stat.Panel:
    panel = (
        stat.Panel()
        .title("SLO error ratio (1 h), by SLO")
        .description(
            "telemesh:slo_errors:ratio_rate1h from ops/prometheus/rules/slo.yaml (load the "
            "rules for this panel); docs/slo.md gives each SLO's budget. A consent revocation "
            "SLO with no revocation in the hour shows NaN."
        )
        .datasource(DATASOURCE)
        .unit("percentunit")
        .decimals(2)
        .span(24)
        .height(5)
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .color_mode(common_models.BigValueColorMode.VALUE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(
            dashboard.ThresholdsConfig()
            .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
            .steps(
                [
                    dashboard_models.Threshold(value=None, color="green"),
                    dashboard_models.Threshold(value=0.001, color="orange"),
                    dashboard_models.Threshold(value=0.05, color="red"),
                ]
            )
        )
    )
    return panel.with_target(
        _target(Query("{{slo}}", "telemesh:slo_errors:ratio_rate1h"), "A", instant=True)
    )


def call_quality_panels() -> list[timeseries.Panel]:
    setup = "telemesh_call_setup_time_seconds"
    rtt = "telemesh_call_round_trip_time_milliseconds"
    lost = "telemesh_call_fraction_lost"
    return [
        _series(
            "Call set-up time (admission to both connected)",
            "Signaling's telemesh_call_setup_time_seconds. The call_setup SLO wants 95 % "
            "of calls within 5 s (the histogram's finest bound there).",
            "s",
            [
                Query("p50", _quantile(0.5, setup)),
                Query("p95", _quantile(0.95, setup)),
                Query(
                    "within 5 s (ratio)",
                    f"sum({_rate(setup + '_bucket', FIVE_SECONDS)})"
                    f"\n/\nsum({_rate(setup + '_count')})",
                ),
            ],
            width=8,
        ),
        _series(
            "Call round-trip time (participants' reports)",
            "telemesh_call_round_trip_time_milliseconds, from ReportCallQuality.",
            "ms",
            [
                Query("p50", _quantile(0.5, rtt)),
                Query("p95", _quantile(0.95, rtt)),
            ],
            width=8,
        ),
        _series(
            "Call packet loss (participants' reports)",
            "telemesh_call_fraction_lost, from ReportCallQuality: the mean and the p95.",
            "percentunit",
            [
                Query("mean", f"sum({_rate(lost + '_sum')}) / sum({_rate(lost + '_count')})"),
                Query("p95", _quantile(0.95, lost)),
            ],
            width=8,
        ),
    ]


def red_panels() -> list[timeseries.Panel]:
    total = _rate(f"{RPC}_count")
    return [
        _series(
            "Requests per second, per RPC",
            "Every inbound RPC the services answered (rpc_server_duration_milliseconds).",
            "reqps",
            [Query("{{rpc_method}}", f"sum by ({BY_RPC}) ({total})")],
            width=8,
        ),
        _series(
            "Errors per RPC (share of calls)",
            "Server faults (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, "
            "DATA_LOSS: what the SLOs count) and refusals for the caller's own reasons "
            "(INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION, ...).",
            "percentunit",
            [
                Query(
                    "fault {{rpc_method}}",
                    _ratio_or_zero(
                        _rate(f"{RPC}_count", f'rpc_grpc_status_code=~"{SERVER_FAULT}"'),
                        total,
                        BY_RPC,
                    ),
                ),
                Query(
                    "refused {{rpc_method}}",
                    _ratio_or_zero(
                        _rate(f"{RPC}_count", f'rpc_grpc_status_code=~"{CALLER_REFUSAL}"'),
                        total,
                        BY_RPC,
                    ),
                ),
            ],
            width=8,
        ),
        _series(
            "Duration per RPC (p50, p95)",
            "Server-side duration of each RPC (streams: their whole life).",
            "ms",
            [
                Query("p50 {{rpc_method}}", _quantile(0.5, RPC, BY_RPC)),
                Query("p95 {{rpc_method}}", _quantile(0.95, RPC, BY_RPC)),
            ],
            width=8,
        ),
    ]


def outbox_consent_panels() -> list[timeseries.Panel]:
    gated = 'rpc_method=~"IssueJoinToken|JoinRoom|SetRecording",rpc_grpc_status_code="14"'
    check = 'rpc_service="telemesh.consent.v1.ConsentService",rpc_method="CheckConsent"'
    return [
        _series(
            "Outbox backlog and dead letters",
            "Events waiting in each service's outbox (telemesh_outbox_backlog) and those a "
            "receiver refused for good (telemesh_outbox_dead_letters). Alerts: "
            "OutboxBacklogStuck, OutboxDeadLetters.",
            "short",
            [
                Query("backlog {{job}}", "max by (job) (telemesh_outbox_backlog)"),
                Query("dead letters {{job}}", "max by (job) (telemesh_outbox_dead_letters)"),
            ],
            width=6,
        ),
        _series(
            "Outbox oldest waiting event",
            "How long the oldest event still waiting for delivery has waited, per service "
            "(telemesh_outbox_oldest_age_seconds; 0 when none waits). Alert: "
            "OutboxBacklogStuck (above 15 minutes).",
            "s",
            [Query("oldest {{job}}", "max by (job) (telemesh_outbox_oldest_age_seconds)")],
            width=6,
        ),
        _series(
            "Outbox deliveries and charge delay",
            "Events delivered per minute by target; the p95 minutes from a visit's "
            "completion to its charge (the charge_delay SLO: within 5 minutes).",
            "short",
            [
                Query(
                    "delivered/min {{target}}",
                    f"sum by (target) ({_rate('telemesh_outbox_delivered_total')}) * 60",
                ),
                Query(
                    "charge delay p95 (min)",
                    _quantile(0.95, "telemesh_billing_charge_delay_minutes"),
                ),
            ],
            width=6,
        ),
        _series(
            "Consent health",
            "CheckConsent calls and their p95 duration; refusals because consent was "
            "unreachable (UNAVAILABLE on IssueJoinToken, JoinRoom, SetRecording: fail "
            "closed); the p95 lag of consent changes reaching the watchers, by kind; whether "
            "Prometheus reaches the consent service.",
            "short",
            [
                Query(
                    "CheckConsent/s",
                    f"sum({_rate(f'{RPC}_count', check)})",
                ),
                Query(
                    "CheckConsent p95 (ms)",
                    _quantile(0.95, RPC, "", check),
                ),
                Query(
                    "fail-closed refusals/s",
                    f"sum({_rate(f'{RPC}_count', gated)}) or vector(0)",
                ),
                Query(
                    "change lag p95 (ms) {{kind}}",
                    _quantile(0.95, "telemesh_consent_change_lag_milliseconds", "kind"),
                ),
                Query("consent up", 'sum(up{job="telemesh-consent"})'),
            ],
            width=6,
        ),
    ]


def signaling_audit_panels() -> list[timeseries.Panel]:
    return [
        _series(
            "Signaling rooms and joins",
            "Open rooms per signaling process (telemesh_signaling_rooms_open; a room lives "
            "in the process that holds its visit) and room streams accepted per minute, by "
            "role, resumed streams apart (telemesh_signaling_joins_total). Alerts: "
            "SignalingRoomsHigh, and ServiceMemoryHigh for the memory they take.",
            "short",
            [
                Query(
                    "open rooms {{instance}}", "sum by (instance) (telemesh_signaling_rooms_open)"
                ),
                Query(
                    "joins/min {{role}} resumed={{resumed}}",
                    f"sum by (role, resumed) ({_rate('telemesh_signaling_joins_total')}) * 60",
                ),
            ],
        ),
        _series(
            "Audit chain verification failures",
            "Verifications (VerifyAuditTrail, VerifyAccessLog, telemesh audit verify) that "
            "found a chain broken over the time range, by chain: consent_audit (the consent "
            "service's audit trail), access_log (the session service's HIPAA access log). "
            "Alert: AuditChainBroken.",
            "short",
            [
                Query(
                    "failed verifications {{chain}}",
                    "sum by (chain) (increase(telemesh_audit_verify_failures_total[$__range]))",
                ),
            ],
        ),
    ]


def build() -> dashboard.Dashboard:
    board = (
        dashboard.Dashboard("Telemesh: visits, calls, RPCs, outbox, consent, rooms and audit")
        .uid(UID)
        .tags(["telemesh"])
        .description(
            "Generated by scripts/grafana_dashboard.py (grafana-foundation-sdk); "
            "do not edit the JSON by hand."
        )
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("utc")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        )
        .with_row(dashboard.Row("Visit funnel and SLOs"))
        .with_panel(funnel_panel())
        .with_panel(funnel_rates_panel())
        .with_panel(slo_panel())
        .with_row(dashboard.Row("Call quality"))
    )
    for panel in call_quality_panels():
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("RED per RPC"))
    for panel in red_panels():
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Outbox and consent health"))
    for panel in outbox_consent_panels():
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Signaling rooms and audit chains"))
    for panel in signaling_audit_panels():
        board = board.with_panel(panel)
    return board


def render() -> str:
    """The dashboard as the JSON Grafana imports (stable: sorted keys, trailing newline)."""
    model = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    return json.dumps(model, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    rendered = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != rendered:
            print(f"{args.output} is stale: run scripts/grafana_dashboard.py", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(rendered)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
