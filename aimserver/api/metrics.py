# -*- test-case-name: tests.test_e2e_api -*-
"""``GET /metrics`` in the Prometheus text format, from the live server.

Nothing is counted twice: a collector reads, at each scrape, the counts the
services already keep (sign-ons and refusals, IMs routed, deliveries, rate
limit hits) and the registry's live state, and renders them with
``prometheus_client`` (its text format and escaping are its job, not ours).
A scrape walks the users once: with 10,000 sessions online that is a few
milliseconds in the reactor thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from aimserver.api.http import ApiRequest, ApiResponse


class ServerCollector(Collector):
    def __init__(self, server: Any) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        per_user = server.registry.sessions_per_user()
        yield GaugeMetricFamily(
            "aimserver_users_online",
            "Screen names with at least one online session.",
            value=sum(per_user.values()),
        )
        yield GaugeMetricFamily(
            "aimserver_sessions",
            "Online sessions (client-ready sent).",
            value=sum(n * users for n, users in per_user.items()),
        )
        histogram = GaugeMetricFamily(
            "aimserver_users_by_session_count",
            "Users online, by how many sessions each has.",
            labels=["sessions"],
        )
        for n in sorted(per_user):
            histogram.add_metric([str(n)], per_user[n])
        yield histogram
        yield CounterMetricFamily(
            "aimserver_signons", "Sessions signed on since start.", value=server.sessions.signons
        )
        refusals = CounterMetricFamily(
            "aimserver_refusals", "Sign-ons and logins refused since start.", labels=["reason"]
        )
        for reason, count in sorted(server.refusals().items()):
            refusals.add_metric([reason], count)
        yield refusals
        yield CounterMetricFamily(
            "aimserver_ims_routed",
            "IMs delivered to online sessions since start.",
            value=server.icbm.routed,
        )
        yield CounterMetricFamily(
            "aimserver_deliveries",
            "Pushes queued to connections (IM copies, presence, chat lines) since start.",
            value=server.registry.delivered,
        )
        yield CounterMetricFamily(
            "aimserver_rate_limited",
            "SNACs dropped by rate limits since start.",
            value=server.rate_limits.dropped,
        )
        yield GaugeMetricFamily(
            "aimserver_chat_rooms", "Chat rooms with members.", value=len(server.chat.rooms.rooms)
        )
        lag = server.reactor_lag
        yield GaugeMetricFamily(
            "aimserver_reactor_lag_seconds",
            "How late the reactor ran a 1-second timer, worst of the last minute.",
            value=lag.worst(),
        )
        backing = getattr(server.store, "store", server.store)  # behind the account cache
        store_latency = getattr(backing, "latency", None)
        if store_latency is not None:
            yield GaugeMetricFamily(
                "aimserver_store_latency_seconds",
                "The slowest of the store's latest 64 batches, run to answered on its thread.",
                value=store_latency(),
            )


class Metrics:
    """The /metrics endpoint over one collector registry per server (no
    process-global state, so tests can run several servers)."""

    def __init__(self, server: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServerCollector(server))

    def render(self, request: ApiRequest) -> ApiResponse:
        return ApiResponse(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
