"""Prometheus metrics of `hotline serve`, on a registry of their own (tests stay isolated).

Counters and histograms are moved by the app (`call_ended`); gauges that describe shared
state (queue length, agents by exposed presence) are set from Postgres at scrape time by
`update_from`, so every node reports the same truth whoever changed it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ari_app.domain.presence import Presence
from ari_app.services.hotline_stats import HotlineStats
from ari_app.services.presence import AgentPresence

log = logging.getLogger(__name__)

# Seconds a caller waited; the default service level threshold (20 s) is a bucket edge.
WAIT_BUCKETS = (5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)
LAG_INTERVAL_S = 0.5
# The lag peak gauge covers this many seconds of samples: a scraper that comes every few
# seconds (a benchmark, a Prometheus with a short interval) sees every peak, where the
# last-sample gauge shows one sample of many.
LAG_WINDOW_S = 10.0
# The classic text format generate_latest writes; what prometheus_client serves by default
# and every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _AriCollector(Collector):
    """ARI connection state read from the event stream at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        connected, reconnects = self._metrics.ari_connected, self._metrics.ari_reconnects
        up = GaugeMetricFamily("hotline_ari_connected", "1 while the ARI event stream is up")
        up.add_metric([], 1.0 if connected is not None and connected() else 0.0)
        total = CounterMetricFamily(
            "hotline_ari_reconnects", "ARI event stream reconnections since start"
        )
        total.add_metric([], float(reconnects() if reconnects is not None else 0))
        requests = self._metrics.ari_requests
        sent = CounterMetricFamily("hotline_ari_requests", "ARI REST requests sent since start")
        sent.add_metric([], float(requests() if requests is not None else 0))
        return iter((up, total, sent))

    def describe(self) -> Iterator[Metric]:
        return iter(())


class Metrics:
    """What /metrics shows. The app calls `call_ended()` once per ended hotline call and
    `bind_ari()` once; the panel server runs `monitor_loop_lag()` and `update_from()`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.calls = Counter(
            "hotline_calls", "Hotline calls ended, by outcome", ["hotline", "outcome"], registry=r
        )
        self.wait = Histogram(
            "hotline_wait_seconds",
            "Seconds callers waited before being answered or leaving the queue",
            ["hotline"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.queue_length = Gauge(
            "hotline_queue_length", "Callers waiting now", ["hotline"], registry=r
        )
        self.longest_wait = Gauge(
            "hotline_longest_wait_seconds",
            "Wait of the longest-waiting caller",
            ["hotline"],
            registry=r,
        )
        self.logged_in = Gauge(
            "hotline_agents_logged_in",
            "Agents logged in to the hotline and shown as available or on a call",
            ["hotline"],
            registry=r,
        )
        self.service_level = Gauge(
            "hotline_service_level_ratio",
            "Share of today's offered calls answered within the hotline's service level time",
            ["hotline"],
            registry=r,
        )
        self.agents = Gauge(
            "hotline_agents", "Agents by exposed presence", ["presence"], registry=r
        )
        self.loop_lag = Gauge(
            "hotline_event_loop_lag_seconds",
            "How late the event loop ran a timer, last sample",
            registry=r,
        )
        self.loop_lag_max = Gauge(
            "hotline_event_loop_lag_max_seconds",
            f"How late the event loop ran a timer, the most in the last {LAG_WINDOW_S:g} s",
            registry=r,
        )
        self.db_up = Gauge(
            "hotline_db_up", "1 when the last scrape could read PostgreSQL", registry=r
        )
        self.pin_checks = Counter(
            "hotline_pin_checks",
            "PIN attempts on the phone, by result (ok, wrong, locked)",
            ["result"],
            registry=r,
        )
        self.pin_alerts = Counter(
            "hotline_pin_failure_alerts",
            "Alerts raised because failed PINs on all agents exceeded"
            " HOTLINE_PIN_ALERT_FAILURES within HOTLINE_PIN_ALERT_WINDOW",
            registry=r,
        )
        self.flow_anomalies = Counter(
            "hotline_flow_anomalies",
            "Call flow events that need a look: slow_handler (an event handler took longer"
            " than 0.5 s), illegal_transition (a move its transition table does not list)",
            ["flow", "kind"],
            registry=r,
        )
        self.ari_connected: Callable[[], bool] | None = None
        self.ari_reconnects: Callable[[], int] | None = None
        self.ari_requests: Callable[[], int] | None = None
        r.register(_AriCollector(self))
        for presence in Presence:
            self.agents.labels(presence.value).set(0)

    # -- called by the app ------------------------------------------------------------------
    def call_ended(self, hotline: str | None, outcome: str, wait_s: float | None = None) -> None:
        """Count one ended call; `wait_s` for calls that were queued (else None)."""
        label = hotline or "unknown"
        self.calls.labels(label, str(outcome)).inc()
        if wait_s is not None:
            self.wait.labels(label).observe(max(0.0, wait_s))

    def flow_anomaly(self, flow: str, kind: str) -> None:
        self.flow_anomalies.labels(flow, kind).inc()

    def pin_checked(self, result: str, *, alert: bool) -> None:
        """Count one PIN attempt; `alert`: it raised the guessing alert."""
        self.pin_checks.labels(result).inc()
        if alert:
            self.pin_alerts.inc()

    def bind_ari(
        self,
        *,
        connected: Callable[[], bool],
        reconnects: Callable[[], int],
        requests: Callable[[], int] | None = None,
    ) -> None:
        """Read ARI state from the event stream (e.g. `stream.connected`/`stream.reconnects`)
        and the client's request count."""
        self.ari_connected = connected
        self.ari_reconnects = reconnects
        self.ari_requests = requests

    # -- called by the panel server ---------------------------------------------------------
    def update_from(
        self, presences: Sequence[AgentPresence], hotlines: Sequence[HotlineStats]
    ) -> None:
        """Set the shared-state gauges from one DB read (no await: a scrape sees one state)."""
        for presence in Presence:
            self.agents.labels(presence.value).set(sum(p.presence is presence for p in presences))
        for gauge in (self.queue_length, self.longest_wait, self.logged_in, self.service_level):
            gauge.clear()  # a deleted hotline disappears
        for stats in hotlines:
            self.queue_length.labels(stats.number).set(stats.waiting)
            self.longest_wait.labels(stats.number).set(stats.longest_wait_s)
            self.logged_in.labels(stats.number).set(stats.logged_in)
            if stats.service_level is not None:
                self.service_level.labels(stats.number).set(stats.service_level)
        self.db_up.set(1)

    def db_unreachable(self) -> None:
        self.db_up.set(0)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def monitor_loop_lag(self, interval_s: float = LAG_INTERVAL_S) -> None:
        """Forever: how much later than asked a sleep wakes up = time the loop was blocked."""
        loop = asyncio.get_running_loop()
        recent: collections.deque[float] = collections.deque(
            maxlen=max(1, round(LAG_WINDOW_S / interval_s))
        )
        while True:
            start = loop.time()
            await asyncio.sleep(interval_s)
            lag = max(0.0, loop.time() - start - interval_s)
            recent.append(lag)
            self.loop_lag.set(lag)
            self.loop_lag_max.set(max(recent))
            if lag > 1.0:
                log.warning("event loop blocked for %.2fs", lag)
